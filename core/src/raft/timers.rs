//! Every timer of a node in one table (quinn-proto's `TimerTable`): what may be armed, when it
//! fires, and the earliest of them as the node's next deadline. A timer is armed only while it
//! can fire (the election timer off a leader, the leader's timers while leading, the transfer
//! timer while a transfer runs), so the next deadline is never one nothing would act on: a
//! deadline left in the past with nothing to do was how the simulator once caught a node
//! spinning at one instant.

use crate::types::Instant;

/// The node's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Follower or candidate: campaign (or, a learner, ask for the leader) when it fires.
    Election,
    /// Leader: send heartbeats.
    Heartbeat,
    /// Leader with check-quorum: step down unless a quorum was heard from since the last check.
    CheckQuorum,
    /// Leader handing over: give up the transfer.
    Transfer,
}

const TIMERS: usize = 4;

impl Timer {
    fn slot(self) -> usize {
        match self {
            Timer::Election => 0,
            Timer::Heartbeat => 1,
            Timer::CheckQuorum => 2,
            Timer::Transfer => 3,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Timers {
    at: [Option<Instant>; TIMERS],
}

impl Timers {
    pub(super) fn set(&mut self, timer: Timer, at: Instant) {
        self.at[timer.slot()] = Some(at);
    }
    pub(super) fn clear(&mut self, timer: Timer) {
        self.at[timer.slot()] = None;
    }
    /// Whether `timer` is armed and has fired by `now`.
    pub(super) fn expired(&self, timer: Timer, now: Instant) -> bool {
        self.at[timer.slot()].is_some_and(|at| at <= now)
    }
    /// The earliest armed timer, if any.
    pub(super) fn next(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only armed timers count; clearing one takes it out of the next deadline.
    #[test]
    fn next_is_the_earliest_armed_timer() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Heartbeat, Instant(30));
        t.set(Timer::Transfer, Instant(10));
        assert_eq!(t.next(), Some(Instant(10)));
        assert!(
            t.expired(Timer::Transfer, Instant(10)) && !t.expired(Timer::Heartbeat, Instant(10))
        );
        t.clear(Timer::Transfer);
        assert_eq!(t.next(), Some(Instant(30)));
        assert!(!t.expired(Timer::Transfer, Instant(100)));
    }
}
