//! The cluster clock: the time a leader stamps on proposals and judges reads at.
//!
//! Every node's `now` comes from its own wall clock, and any one of them can be wrong by an hour.
//! If the leader stamped its raw clock, one fast leader would push the replicated cache clock
//! (which never goes back) an hour ahead and every key with a shorter TTL would vanish at once on
//! every node; a slow one would keep expired keys alive. So no single clock decides:
//!
//! - Heartbeats, their answers and vote answers carry the sender's raw clock. Every node keeps, per peer,
//!   the offset `their clock - my clock` it observed ([`ClockSamples::observe`]). A message can
//!   only arrive late, which makes the sender look behind, so a newer sample replaces an older
//!   one only if it is larger or the older one has aged out: the estimate keeps the least
//!   delayed recent sample.
//! - The leader's cluster time is its own clock plus the lower median of the offsets of the
//!   voters it has samples from (itself counting as 0). If more than half of those clocks are
//!   within `s` of true time, so is the cluster time (up to message delay and drift): a minority
//!   of bad clocks, the leader's included, cannot move it.
//! - A candidate has samples from at least a quorum (its vote answers) before it can lead, so a
//!   new leader's first proposal is already corrected.
//! - Heartbeats also carry the leader's cluster time; a follower's cluster time follows the leader's
//!   (its own clock plus the offset the last heartbeat showed), so stale reads on followers judge
//!   expiry the way the leader does.

use crate::types::{Instant, NodeId};
use std::collections::BTreeMap;

/// One peer's observed clock offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    /// `their clock - my clock`, in milliseconds, when the sample was taken.
    offset_ms: i64,
    /// My clock when the sample was taken.
    at: Instant,
}

/// Clock offsets observed from peers. Bounded: at most one sample per peer, and callers
/// [`ClockSamples::retain`] only current members.
#[derive(Clone, Debug, Default)]
pub struct ClockSamples {
    samples: BTreeMap<NodeId, Sample>,
    /// The offset of the current leader's cluster time, from its last heartbeat.
    leader_offset_ms: Option<i64>,
    /// How long a sample is preferred over a smaller, newer one.
    window_ms: u64,
}

impl ClockSamples {
    /// Samples are kept at least `window_ms` against smaller newer ones (a few election timeouts:
    /// long enough to skip delayed messages, short enough to follow a peer that restarted with a
    /// different clock).
    pub fn new(window_ms: u64) -> ClockSamples {
        ClockSamples { samples: BTreeMap::new(), leader_offset_ms: None, window_ms }
    }

    /// Records that `peer`'s clock read `their_clock` in a message that arrived at `now`.
    pub fn observe(&mut self, peer: NodeId, their_clock: Instant, now: Instant) {
        let offset_ms = diff_ms(their_clock, now);
        let fresh = Sample { offset_ms, at: now };
        match self.samples.get_mut(&peer) {
            Some(s) if s.offset_ms > offset_ms && now.saturating_since(s.at) < self.window_ms => {}
            Some(s) => *s = fresh,
            None => {
                self.samples.insert(peer, fresh);
            }
        }
    }

    /// Records the cluster time a leader's heartbeat carried.
    pub fn observe_leader(&mut self, leader_time: Instant, now: Instant) {
        self.leader_offset_ms = Some(diff_ms(leader_time, now));
    }

    /// Forgets the leader's offset (a new term began).
    pub fn forget_leader(&mut self) {
        self.leader_offset_ms = None;
    }

    /// Drops samples of nodes `keep` refuses (no longer members).
    pub fn retain(&mut self, keep: impl Fn(NodeId) -> bool) {
        self.samples.retain(|id, _| keep(*id));
    }

    /// The lower median of the offsets of `voters` (this node, `me`, counts as 0; voters with no
    /// sample are left out).
    pub fn median_offset_ms(&self, me: NodeId, voters: impl Iterator<Item = NodeId>) -> i64 {
        let mut offsets: Vec<i64> = voters
            .filter_map(
                |v| if v == me { Some(0) } else { self.samples.get(&v).map(|s| s.offset_ms) },
            )
            .collect();
        if offsets.is_empty() {
            return 0;
        }
        offsets.sort_unstable();
        offsets[(offsets.len() - 1) / 2]
    }

    /// The offset a follower applies: the leader's, if a heartbeat showed it.
    pub fn leader_offset_ms(&self) -> Option<i64> {
        self.leader_offset_ms
    }

    /// This node's own observed offset of `peer`, for status and metrics.
    pub fn offset_of(&self, peer: NodeId) -> Option<i64> {
        self.samples.get(&peer).map(|s| s.offset_ms)
    }
}

/// `a - b` in milliseconds, saturating (never `i64::MIN`, so it can be negated).
pub fn diff_ms(a: Instant, b: Instant) -> i64 {
    if a >= b {
        i64::try_from(a.0 - b.0).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(b.0 - a.0).unwrap_or(i64::MAX)
    }
}

/// `t + offset_ms`, saturating at both ends.
pub fn shift(t: Instant, offset_ms: i64) -> Instant {
    if offset_ms >= 0 {
        t.saturating_add_ms(offset_ms as u64)
    } else {
        Instant(t.0.saturating_sub(offset_ms.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> impl Iterator<Item = NodeId> + '_ {
        v.iter().map(|&i| NodeId(i))
    }

    #[test]
    fn one_bad_clock_of_three_does_not_move_the_median() {
        let now = Instant(10_000_000);
        // Leader (node 1) an hour fast: both followers look an hour behind.
        let mut c = ClockSamples::new(1_000);
        c.observe(NodeId(2), Instant(now.0 - 3_600_000 + 20), now);
        c.observe(NodeId(3), Instant(now.0 - 3_600_000 - 30), now);
        assert_eq!(c.median_offset_ms(NodeId(1), ids(&[1, 2, 3])), -3_599_980);
        // A follower an hour fast, the other one right: the leader's own clock wins.
        let mut c = ClockSamples::new(1_000);
        c.observe(NodeId(2), Instant(now.0 + 3_600_000), now);
        c.observe(NodeId(3), Instant(now.0 + 5), now);
        assert_eq!(c.median_offset_ms(NodeId(1), ids(&[1, 2, 3])), 5);
        // A follower an hour slow, the other right: same.
        c.observe(NodeId(2), Instant(now.0 - 3_600_000), now.saturating_add_ms(2_000));
        assert_eq!(c.median_offset_ms(NodeId(1), ids(&[1, 2, 3])), 0);
        // Learners and unknown nodes do not count; with no samples the own clock is used.
        assert_eq!(c.median_offset_ms(NodeId(1), ids(&[1])), 0);
        assert_eq!(c.median_offset_ms(NodeId(9), ids(&[9, 8])), 0);
    }

    #[test]
    fn delayed_samples_do_not_replace_better_recent_ones() {
        let mut c = ClockSamples::new(1_000);
        c.observe(NodeId(2), Instant(1_000), Instant(1_000));
        // Delivered 300 ms late: the peer seems 300 ms behind. Ignored within the window.
        c.observe(NodeId(2), Instant(1_100), Instant(1_400));
        assert_eq!(c.offset_of(NodeId(2)), Some(0));
        // After the window a smaller sample is taken (the peer may have restarted).
        c.observe(NodeId(2), Instant(2_100), Instant(2_400));
        assert_eq!(c.offset_of(NodeId(2)), Some(-300));
        // A larger one always replaces.
        c.observe(NodeId(2), Instant(2_600), Instant(2_500));
        assert_eq!(c.offset_of(NodeId(2)), Some(100));
    }

    #[test]
    fn shift_saturates() {
        assert_eq!(shift(Instant(5), -10), Instant(0));
        assert_eq!(shift(Instant(u64::MAX - 1), 10), Instant(u64::MAX));
        assert_eq!(shift(Instant(100), -40), Instant(60));
    }
}
