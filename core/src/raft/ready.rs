//! The `Ready` contract: what the node hands its driver (state to persist, messages to send,
//! entries to apply, reads to answer), in the order documented on [`Ready`], and the driver's
//! acknowledgement, which the node requires once per `Ready` and in order.

use super::*;

/// One batch of work for the driver. **The driver must act on it in this order:**
///
/// 1. `snapshot`: persist it (durably) and restore the state machine from it.
/// 2. `hard_state` and `entries`: persist them. `entries` may start at or below the last index
///    already on disk; everything on disk from `entries[0].index` on is replaced. If `must_sync`,
///    fsync before step 3: the messages may acknowledge exactly this state (a vote, an append).
/// 3. `messages`: send them (any order, best effort; Raft tolerates loss). A leader's appends and
///    heartbeats may go before step 2: see [`Ready::take_early_messages`].
/// 4. `committed_entries`: apply them to the state machine in index order.
/// 5. `read_states`: answer each read once the state machine has applied up to its `index`;
///    `aborted_reads` lost their leader and must be retried or failed by the driver.
/// 6. Call [`RaftNode::advance`] with [`Ready::ack`] to report steps 1, 2 and 4 as done.
///
/// Nothing in a `Ready` is repeated by a later one, so the driver must not drop it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// 1, 2, 3, ... for the non-empty `Ready`s of one node; 0 for an empty one. [`Ready::ack`]
    /// carries it back, and [`RaftNode::advance`] requires acknowledgements in order.
    pub seq: u64,
    pub snapshot: Option<Snapshot>,
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub must_sync: bool,
    pub messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub read_states: Vec<ReadState>,
    pub aborted_reads: Vec<ReadId>,
}

impl Ready {
    /// Nothing to do (the sequence number aside).
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.hard_state.is_none()
            && self.entries.is_empty()
            && !self.must_sync
            && self.messages.is_empty()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.aborted_reads.is_empty()
    }

    /// Removes and returns the leader's AppendEntries and Heartbeat messages, which depend on
    /// nothing this `Ready` persists: a driver may send them *before* step 2, so the leader's
    /// fsync overlaps its followers' (Raft dissertation, section 10.2.1). The leader's own entries
    /// still count toward commitment only once `advance` reports them durable. Every other
    /// message (votes, acknowledgements) must wait for step 2. Calling this is optional.
    pub fn take_early_messages(&mut self) -> Vec<Message> {
        let (early, rest): (Vec<Message>, Vec<Message>) =
            std::mem::take(&mut self.messages).into_iter().partition(|m| {
                matches!(m.body, MessageBody::AppendEntries { .. } | MessageBody::Heartbeat { .. })
            });
        self.messages = rest;
        early
    }

    /// What the driver reports to [`RaftNode::advance`] once it has handled this `Ready`.
    pub fn ack(&self) -> ReadyAck {
        ReadyAck {
            seq: self.seq,
            persisted: self.entries.last().map(|e| (e.index, e.term)),
            snapshot_index: self.snapshot.as_ref().map(|s| s.meta.last_index),
            applied: self.committed_entries.last().map(|e| e.index),
        }
    }
}

/// One line per part, in the order the driver handles them; empty parts are left out. For logs
/// and the transcript tests (`core/testdata/`).
impl std::fmt::Display for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.snapshot {
            writeln!(
                f,
                "snapshot t{}/i{} {}",
                s.meta.last_term, s.meta.last_index, s.meta.membership
            )?;
        }
        if let Some(hs) = &self.hard_state {
            let vote = hs.voted_for.map_or("-".to_string(), |v| v.to_string());
            writeln!(
                f,
                "hard state term={} vote={vote} commit={}",
                hs.current_term, hs.commit_index
            )?;
        }
        for e in &self.entries {
            writeln!(f, "append {e}")?;
        }
        if self.must_sync {
            writeln!(f, "fsync")?;
        }
        for m in &self.messages {
            writeln!(f, "send {m}")?;
        }
        for e in &self.committed_entries {
            writeln!(f, "apply {e}")?;
        }
        for r in &self.read_states {
            writeln!(f, "read id={} index={}", r.id.0, r.index)?;
        }
        for r in &self.aborted_reads {
            writeln!(f, "read id={} aborted", r.0)?;
        }
        Ok(())
    }
}

/// What a driver has done with a [`Ready`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyAck {
    /// The acknowledged `Ready`'s [`Ready::seq`].
    pub seq: u64,
    pub persisted: Option<(LogIndex, Term)>,
    pub snapshot_index: Option<LogIndex>,
    pub applied: Option<LogIndex>,
}

impl RaftNode {
    /// Collects everything the driver must do now. See [`Ready`] for the order.
    pub fn ready(&mut self) -> Ready {
        self.flush_appends();
        let mut ready = Ready::default();
        if let Some(s) = self.snapshot_to_install.take() {
            ready.must_sync = true;
            self.applying = self.applying.max(s.meta.last_index);
            ready.snapshot = Some(s);
        }
        let hs = HardState {
            current_term: self.current_term,
            voted_for: self.voted_for,
            commit_index: self.commit_index,
        };
        if hs != self.hard_state_handed_out {
            if hs.current_term != self.hard_state_handed_out.current_term
                || hs.voted_for != self.hard_state_handed_out.voted_for
            {
                ready.must_sync = true;
            }
            self.hard_state_handed_out = hs.clone();
            ready.hard_state = Some(hs);
        }
        ready.entries = self.log.take_unstable();
        if !ready.entries.is_empty() && !self.mutated_ack_before_sync() {
            ready.must_sync = true;
        }
        if self.must_sync_votes {
            ready.must_sync = true;
            self.must_sync_votes = false;
        }
        ready.messages = std::mem::take(&mut self.messages);
        // The driver persists this Ready's entries before applying, so committed entries may
        // include ones handed out for persistence just above.
        let apply_to = self.commit_index;
        if apply_to > self.applying {
            let from = self.applying.next().max(self.log.first_index());
            let count = (apply_to.0 + 1).saturating_sub(from.0) as usize;
            ready.committed_entries = self.log.slice(from, count, usize::MAX);
            if let Some(last) = ready.committed_entries.last() {
                self.applying = last.index;
            }
        }
        ready.read_states = std::mem::take(&mut self.read_states);
        ready.aborted_reads = std::mem::take(&mut self.aborted_reads);
        if !ready.is_empty() {
            self.readies_issued += 1;
            ready.seq = self.readies_issued;
        }
        ready
    }

    /// The driver has handled a [`Ready`].
    ///
    /// Panics if `ack` is not the acknowledgement of the oldest `Ready` not yet acknowledged: a
    /// driver that skipped or reordered one would have lost state the node believes persisted.
    pub fn advance(&mut self, ack: ReadyAck) {
        if ack.seq == 0 {
            assert!(
                ack == ReadyAck::default(),
                "an empty Ready acknowledges nothing, yet this one carries {ack:?}"
            );
            return;
        }
        assert_eq!(
            ack.seq,
            self.readies_acked + 1,
            "Readies are acknowledged in order, each once ({} handed out)",
            self.readies_issued
        );
        self.readies_acked = ack.seq;
        if let Some(index) = ack.snapshot_index {
            self.last_applied = self.last_applied.max(index);
        }
        if let Some((index, term)) = ack.persisted {
            self.log.persisted_to(index, term);
        }
        if let Some(applied) = ack.applied {
            assert!(applied <= self.commit_index, "applied <= committed");
            self.last_applied = self.last_applied.max(applied);
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.note_committed_membership();
        self.check_invariants();
    }
}
