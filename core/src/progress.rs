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

/// The appends in flight to one follower (the last index each carried), oldest first, bounded
/// by the replication window (`Config::inflight_appends_max`), as raft-rs's `Inflights`.
#[derive(Clone, Debug)]
pub struct Inflights {
    last_indexes: VecDeque<LogIndex>,
    cap: usize,
}

impl Inflights {
    pub fn new(cap: usize) -> Inflights {
        Inflights { last_indexes: VecDeque::new(), cap: cap.max(1) }
    }
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
    pub fn is_full(&self) -> bool {
        self.last_indexes.len() >= self.cap
    }
    /// An append ending at `last` left. Panics when the window is full: callers check first.
    fn add(&mut self, last: LogIndex) {
        assert!(!self.is_full(), "an append is sent only with room in the window");
        self.last_indexes.push_back(last);
    }
    /// The follower acknowledged up to `index`: every append ending there or before is done.
    fn free_to(&mut self, index: LogIndex) {
        while self.last_indexes.front().is_some_and(|&last| last <= index) {
            self.last_indexes.pop_front();
        }
    }
    /// Forgets the oldest append (its answer may have been lost).
    fn free_first_one(&mut self) {
        self.last_indexes.pop_front();
    }
    fn clear(&mut self) {
        self.last_indexes.clear();
    }
}

/// What a leader knows about one follower's log and how it replicates to it. Fields are read
/// through accessors and changed only by the methods below, each named for the event it records.
#[derive(Clone, Debug)]
pub struct Progress {
    match_index: LogIndex,
    next_index: LogIndex,
    state: ReplicationState,
    /// In `Probe`: an append is outstanding, wait for its answer or the next heartbeat.
    probe_sent: bool,
    inflight: Inflights,
    /// Heard from since the last check-quorum round.
    recent_active: bool,
    last_contact: Option<Instant>,
    /// The newest ReadIndex round this follower has acknowledged.
    read_seq_acked: u64,
    /// For a learner: the commit index when its promotion was first asked for. It is caught up
    /// once it holds that much; a moving target (the current commit index) could stay ahead of
    /// a learner a little slower than the voters forever under steady writes.
    promotion_target: Option<LogIndex>,
}

impl Progress {
    /// A follower whose log is not known yet: probe from `next_index`, with a window of
    /// `window` appends once replicating.
    pub fn new(next_index: LogIndex, window: usize) -> Progress {
        Progress {
            match_index: LogIndex(0),
            next_index,
            promotion_target: None,
            state: ReplicationState::Probe,
            probe_sent: false,
            inflight: Inflights::new(window),
            recent_active: false,
            last_contact: None,
            read_seq_acked: 0,
        }
    }

    pub fn match_index(&self) -> LogIndex {
        self.match_index
    }
    pub fn next_index(&self) -> LogIndex {
        self.next_index
    }
    pub fn state(&self) -> &ReplicationState {
        &self.state
    }
    pub fn last_contact(&self) -> Option<Instant> {
        self.last_contact
    }
    pub fn read_seq_acked(&self) -> u64 {
        self.read_seq_acked
    }
    pub fn inflight(&self) -> &Inflights {
        &self.inflight
    }

    /// Whether the leader must wait before sending this follower another append: a snapshot is
    /// being sent, a probe is outstanding, or the window is full.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ReplicationState::Snapshot { .. } => true,
            ReplicationState::Probe => self.probe_sent,
            ReplicationState::Replicate => self.inflight.is_full(),
        }
    }

    /// An append left, ending at `last` (`None`: no entries). Replicating, it is pipelined: the
    /// next one starts after it. Probing, the next waits for an answer.
    pub fn sent_append(&mut self, last: Option<LogIndex>) {
        match self.state {
            ReplicationState::Replicate => {
                if let Some(last) = last {
                    self.next_index = last.next();
                    self.inflight.add(last);
                }
            }
            ReplicationState::Probe => self.probe_sent = true,
            ReplicationState::Snapshot { .. } => {
                unreachable!("no appends while sending a snapshot")
            }
        }
    }

    /// Whether another append may follow at once: replicating, entries up to `last_index` not
    /// all sent, room in the window.
    pub fn can_send_more(&self, last_index: LogIndex) -> bool {
        self.state == ReplicationState::Replicate
            && self.next_index <= last_index
            && !self.inflight.is_full()
    }

    /// Any answer from the follower.
    pub fn heard_from(&mut self, now: Instant) {
        self.recent_active = true;
        self.last_contact = Some(now);
    }

    /// A check-quorum round: whether the follower was heard from since the last one (and start
    /// counting again).
    pub fn take_recent_active(&mut self) -> bool {
        std::mem::take(&mut self.recent_active)
    }

    /// A heartbeat answer confirming ReadIndex round `read_seq`. A probe may be sent again, and
    /// with a full window the oldest append is presumed lost: one more is let through, which
    /// either fills the gap or is rejected and sends the follower back to probing.
    pub fn heartbeat_answered(&mut self, read_seq: u64) {
        self.read_seq_acked = self.read_seq_acked.max(read_seq);
        self.probe_sent = false;
        if self.inflight.is_full() {
            self.inflight.free_first_one();
        }
    }

    /// The follower's log matches up to `index`. Returns whether the match moved forward.
    pub fn update_match(&mut self, index: LogIndex) -> bool {
        self.inflight.free_to(index);
        if index > self.match_index {
            self.match_index = index;
            self.next_index = self.next_index.max(index.next());
            self.probe_sent = false;
            true
        } else {
            false
        }
    }

    /// Whether a rejection of the append after `index` is stale: about an index already known to
    /// match, or (probing) about an append other than the one outstanding.
    pub fn is_stale_rejection(&self, index: LogIndex) -> bool {
        index <= self.match_index
            || (self.state == ReplicationState::Probe && index != self.next_index.prev())
    }

    /// The follower rejected the append after `index` and hints that its log diverges at
    /// `hint`: probe from there, never below what is known to match, never at the rejected
    /// point again.
    pub fn rejected(&mut self, index: LogIndex, hint: LogIndex) {
        self.next_index = hint.min(index).max(self.match_index.next());
        self.become_probe();
    }

    /// Starts sending the snapshot ending at `last_index`, from its first byte.
    pub fn start_snapshot(&mut self, last_index: LogIndex) {
        self.state = ReplicationState::Snapshot { last_index, offset: 0 };
        self.inflight.clear();
    }

    /// The follower took the snapshot's bytes up to `offset` (or asks to resume there).
    pub fn snapshot_sent_to(&mut self, last_index: LogIndex, offset: u64) {
        self.state = ReplicationState::Snapshot { last_index, offset };
    }

    /// The follower installed the snapshot ending at `last_index`: probe right after it.
    pub fn snapshot_installed(&mut self, last_index: LogIndex) {
        self.update_match(last_index);
        self.become_probe();
        self.next_index = self.match_index.next();
    }

    /// The first append matched: replicate, pipelined.
    pub fn matched_while_probing(&mut self) {
        if self.state == ReplicationState::Probe {
            self.become_replicate();
        }
    }

    /// For a learner asked to be promoted: the commit index it must reach (fixed at the first
    /// ask, `commit_index` then).
    pub fn promotion_target(&mut self, commit_index: LogIndex) -> LogIndex {
        *self.promotion_target.get_or_insert(commit_index)
    }

    /// A member added while this node leads counts as active for the next check-quorum round.
    pub fn new_member(next_index: LogIndex, window: usize) -> Progress {
        let mut p = Progress::new(next_index, window);
        p.recent_active = true;
        p
    }

    fn become_probe(&mut self) {
        self.state = ReplicationState::Probe;
        self.next_index = self.next_index.max(self.match_index.next());
        self.probe_sent = false;
        self.inflight.clear();
    }

    fn become_replicate(&mut self) {
        self.state = ReplicationState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.inflight.clear();
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
        let mut p = Progress::new(LogIndex(1), 4);
        p.become_replicate();
        for last in [3, 6, 9] {
            assert!(!p.is_paused());
            p.sent_append(Some(LogIndex(last)));
        }
        assert!(p.update_match(LogIndex(6)));
        assert_eq!(p.inflight().last_indexes, VecDeque::from([LogIndex(9)]));
        assert_eq!(p.next_index(), LogIndex(10));
        assert!(!p.update_match(LogIndex(5)), "an older ack does not move match back");
        assert_eq!(p.match_index(), LogIndex(6));
    }

    // The window bounds the appends in flight: a full window pauses the follower, and a
    // heartbeat answer lets one more through (the oldest is presumed lost).
    #[test]
    fn the_window_pauses_and_a_heartbeat_answer_frees_one() {
        let mut p = Progress::new(LogIndex(1), 2);
        p.update_match(LogIndex(0));
        p.matched_while_probing();
        p.sent_append(Some(LogIndex(2)));
        assert!(!p.is_paused());
        p.sent_append(Some(LogIndex(4)));
        assert!(p.is_paused() && p.inflight().is_full());
        p.heartbeat_answered(3);
        assert!(!p.is_paused());
        assert_eq!((p.inflight().len(), p.read_seq_acked()), (1, 3));
    }

    // A rejection moves the probe back to the hint, never below the match; a stale one is
    // recognized.
    #[test]
    fn rejections_probe_back_to_the_hint() {
        let mut p = Progress::new(LogIndex(10), 4);
        p.update_match(LogIndex(4));
        assert!(p.is_stale_rejection(LogIndex(3)), "at or below the match");
        assert!(p.is_stale_rejection(LogIndex(7)), "not the outstanding probe (next 10)");
        assert!(!p.is_stale_rejection(LogIndex(9)));
        p.rejected(LogIndex(9), LogIndex(2));
        assert_eq!(p.next_index(), LogIndex(5), "never below match + 1");
        assert_eq!(*p.state(), ReplicationState::Probe);
    }
}
