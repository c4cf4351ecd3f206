//! What a leader knows about each follower's log, and the quorum arithmetic over it.

use crate::types::{Instant, LogIndex};
use std::collections::VecDeque;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// The leader does not know where the follower's log matches: one append at a time.
    Probe,
    /// The follower's log is known to match: appends are pipelined up to the inflight window.
    Replicate,
    /// The follower is receiving the snapshot ending at `last_index`, chunk by chunk.
    Snapshot { last_index: LogIndex, offset: u64 },
}

#[derive(Clone, Debug)]
pub struct Progress {
    pub match_index: LogIndex,
    pub next_index: LogIndex,
    pub state: ReplicationState,
    /// In `Probe`: an append is outstanding, wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// Last index of each append in flight, oldest first.
    pub inflight: VecDeque<LogIndex>,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    pub last_contact: Option<Instant>,
    /// The newest ReadIndex round this follower has acknowledged.
    pub read_seq_acked: u64,
    /// For a learner: the commit index when its promotion was first asked for. It is caught up
    /// once it holds that much; a moving target (the current commit index) could stay ahead of
    /// a learner a little slower than the voters forever under steady writes.
    pub promotion_target: Option<LogIndex>,
}

impl Progress {
    pub fn new(next_index: LogIndex) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            promotion_target: None,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            recent_active: false,
            last_contact: None,
            read_seq_acked: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.next_index.max(self.match_index.next());
        self.probe_sent = false;
        self.inflight.clear();
    }

    pub fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflight.clear();
    }

    /// Records an acknowledged match. Returns whether it moved forward.
    pub fn update_match(&mut self, index: LogIndex) -> bool {
        while self.inflight.front().is_some_and(|&last| last <= index) {
            self.inflight.pop_front();
        }
        if index > self.match_index {
            self.match_index = index;
            self.next_index = self.next_index.max(index.next());
            self.probe_sent = false;
            true
        } else {
            false
        }
    }
}

/// The largest value that at least a quorum (`values.len() / 2 + 1`) of `values` reach.
/// For match indexes this is the highest index stored on a majority.
pub fn quorum_value<T: Ord + Copy + Default>(values: &mut [T]) -> T {
    if values.is_empty() {
        return T::default();
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The quorum commit index is the highest index that a majority stores, checked against
        // counting replicas for every candidate index.
        #[test]
        fn quorum_value_is_highest_index_on_a_majority(values in proptest::collection::vec(0u64..50, 1..8)) {
            let mut v = values.clone();
            let q = quorum_value(&mut v);
            let majority = values.len() / 2 + 1;
            let count = |x: u64| values.iter().filter(|&&m| m >= x).count();
            prop_assert!(count(q) >= majority);
            prop_assert!(count(q + 1) < majority);
        }
    }

    // Acknowledging an index frees every append in flight up to it.
    #[test]
    fn update_match_frees_inflight_up_to_index() {
        let mut p = Progress::new(LogIndex(1));
        p.inflight.extend([LogIndex(3), LogIndex(6), LogIndex(9)]);
        assert!(p.update_match(LogIndex(6)));
        assert_eq!(p.inflight, VecDeque::from([LogIndex(9)]));
        assert_eq!(p.next_index, LogIndex(7));
        assert!(!p.update_match(LogIndex(5)), "an older ack does not move match back");
        assert_eq!(p.match_index, LogIndex(6));
    }
}
