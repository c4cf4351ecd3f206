//! Replication on the leader (appends, the pipelining window, heartbeats, commitment by
//! counting replicas of its own term) and on the follower (accepting appends, truncating
//! conflicts, following the commit index).

use super::*;

impl RaftNode {
    pub(super) fn append_as_leader(&mut self, payload: EntryPayload) -> LogIndex {
        let entry = Entry { term: self.current_term, index: self.log.last_index().next(), payload };
        let index = entry.index;
        lead!(self).uncommitted_bytes += entry.size_bytes();
        let is_membership = matches!(entry.payload, EntryPayload::Membership(_));
        self.log.append(entry);
        if is_membership {
            self.refresh_membership();
        }
        let l = lead!(self);
        l.append_needed.extend(l.progress.keys().copied());
        // A single-voter cluster commits as soon as the entry is durable; `advance` handles it.
        index
    }

    pub(super) fn tick_leader(&mut self) {
        let now = self.now;
        let l = lead!(self);
        if self.timers.expired(Timer::CheckQuorum, now) {
            let quorum = self.membership.quorum();
            let mut active = usize::from(self.membership.is_voter(self.id));
            for (id, p) in l.progress.iter_mut() {
                if p.take_recent_active() && self.membership.voters.contains(id) {
                    active += 1;
                }
            }
            if active < quorum {
                tracing::warn!(node = %self.id, term = %self.current_term, active, quorum, "lost contact with a quorum");
                let term = self.current_term;
                self.become_follower(term, None);
                return;
            }
            let at = now.saturating_add_ms(self.cfg.election_timeout_ms);
            self.timers.set(Timer::CheckQuorum, at);
        }
        if self.timers.expired(Timer::Transfer, now)
            && let Some(t) = lead!(self).transfer.take()
        {
            tracing::warn!(node = %self.id, target = %t.target, "leadership transfer timed out");
            self.timers.clear(Timer::Transfer);
        }
        if self.timers.expired(Timer::Heartbeat, now) {
            let at = now.saturating_add_ms(self.cfg.heartbeat_interval_ms);
            self.timers.set(Timer::Heartbeat, at);
            self.broadcast_heartbeat();
        }
    }

    pub(super) fn broadcast_heartbeat(&mut self) {
        let l = lead_ref!(self);
        let peers: Vec<(NodeId, LogIndex)> =
            l.progress.iter().map(|(id, p)| (*id, p.match_index())).collect();
        // The same for every follower: computed once per round, not once per follower.
        let (clock, cluster_time, read_seq) = (self.now, self.cluster_time(), l.read_seq);
        for (id, match_index) in peers {
            // A follower may not have every committed entry yet: never tell it to commit past
            // what it is known to store.
            let commit_index = self.commit_index.min(match_index);
            self.send(id, MessageBody::Heartbeat { commit_index, read_seq, clock, cluster_time });
        }
    }

    pub(super) fn flush_appends(&mut self) {
        let Some(l) = self.leader.as_deref_mut() else { return };
        for id in std::mem::take(&mut l.append_needed) {
            self.send_append(id, false);
        }
    }

    /// Sends the follower what it is missing, respecting its replication state and window.
    /// With `allow_empty`, an append without entries is sent too (to carry the commit index or
    /// to probe).
    pub(super) fn send_append(&mut self, to: NodeId, allow_empty: bool) {
        // Pipelining: keep filling the window while there is more to send.
        let mut allow_empty = allow_empty;
        while self.send_one_append(to, allow_empty) {
            allow_empty = false;
        }
    }

    /// One append to `to`, if its state and window allow; returns whether another may follow at
    /// once (replicating, more entries to send, room in the window).
    pub(super) fn send_one_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(p) = self.leader.as_ref().and_then(|l| l.progress.get(&to)) else { return false };
        if p.is_paused() {
            return false;
        }
        let next = p.next_index();
        let prev = next.prev();
        let Some(prev_term) = self.log.term_at(prev) else {
            self.start_snapshot(to);
            return false;
        };
        let entries = self.log.slice(next, self.cfg.append_entries_max, self.cfg.append_bytes_max);
        if entries.is_empty() && !allow_empty && *p.state() == ReplicationState::Replicate {
            return false;
        }
        let p = lead!(self).progress.get_mut(&to).expect("checked above");
        p.sent_append(entries.last().map(|e| e.index));
        let leader_commit = self.commit_index;
        self.send(
            to,
            MessageBody::AppendEntries {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                leader_commit,
            },
        );
        let last_index = self.log.last_index();
        lead_ref!(self).progress.get(&to).is_some_and(|p| p.can_send_more(last_index))
    }

    /// The largest value a quorum of the voters reaches: this node counts `own`, every other
    /// voter what `of` reads from its progress (the default for a voter without one).
    pub(super) fn voters_quorum_value<T: Ord + Copy + Default>(
        &self,
        own: T,
        of: impl Fn(&Progress) -> T,
    ) -> T {
        let l = lead_ref!(self);
        let mut values: Vec<T> =
            self.membership
                .voters
                .iter()
                .map(|id| {
                    if *id == self.id {
                        own
                    } else {
                        l.progress.get(id).map_or_else(T::default, &of)
                    }
                })
                .collect();
        quorum_value(&mut values)
    }

    pub(super) fn maybe_commit(&mut self) {
        let candidate = self.voters_quorum_value(self.log.persisted_index(), Progress::match_index);
        if candidate <= self.commit_index {
            return;
        }
        let candidate_term = self.log.term_at(candidate);
        let own_term = candidate_term == Some(self.current_term);
        if !own_term && !self.mutated_commit_previous_term() {
            // Raft's commitment rule (section 5.4.2): counting replicas only commits an entry of
            // the leader's own term; earlier entries commit with it.
            return;
        }
        assert!(
            own_term || self.mutated_commit_previous_term(),
            "a leader counts replicas only for entries from its own term"
        );
        self.set_commit(candidate);
        self.on_leader_commit();
    }

    pub(super) fn set_commit(&mut self, index: LogIndex) {
        assert!(index >= self.commit_index, "commit_index never decreases");
        assert!(index <= self.log.last_index(), "commit_index never passes the last log index");
        if index <= self.commit_index {
            return;
        }
        if let Some(l) = self.leader.as_deref_mut() {
            let mut i = self.commit_index.next();
            while i <= index {
                if let Some(e) = self.log.get(i) {
                    l.uncommitted_bytes = l.uncommitted_bytes.saturating_sub(e.size_bytes());
                }
                i = i.next();
            }
        }
        self.commit_index = index;
    }

    pub(super) fn on_leader_commit(&mut self) {
        // Followers learn the new commit index from an append (empty if need be).
        let ids: Vec<NodeId> = lead_ref!(self).progress.keys().copied().collect();
        for id in ids {
            self.send_append(id, true);
        }
        if self.log.term_at(self.commit_index) == Some(self.current_term) {
            for r in std::mem::take(&mut lead!(self).reads_awaiting_commit) {
                self.leader_read(r);
            }
        }
        // A leader that removed itself hands over once the removal is committed.
        if !self.membership.contains(self.id) && self.membership_index <= self.commit_index {
            let successor = lead_ref!(self)
                .progress
                .iter()
                .filter(|(id, _)| self.membership.is_voter(**id))
                .max_by_key(|(_, p)| p.match_index())
                .map(|(id, p)| (*id, p.match_index()));
            if let Some((succ, m)) = successor
                && m == self.log.last_index()
            {
                self.send(succ, MessageBody::TimeoutNow);
            }
            let term = self.current_term;
            self.become_follower(term, None);
        }
    }

    /// An append from this node's leader (already accepted): refused with a conflict hint if
    /// the previous entry does not match, else the entries are stored (conflicting ones cut),
    /// the commit index follows the leader's as far as this append matched, and the leader is
    /// told where the log now matches.
    pub(super) fn handle_append_entries(
        &mut self,
        from: NodeId,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        let Some((prev_log_index, prev_log_term, entries)) =
            self.rebase_on_commit(prev_log_index, prev_log_term, entries)
        else {
            // Our commit index is inside our snapshot: reply with it.
            return self.answer_append(from, self.commit_index, true, None, LogIndex(0));
        };
        if !self.log.matches(prev_log_index, prev_log_term) {
            let (conflict_term, conflict_index) = match self.log.term_at(prev_log_index) {
                Some(t) => (Some(t), self.log.first_index_of_term_at(prev_log_index)),
                None => (None, self.log.last_index().next().min(prev_log_index)),
            };
            return self.answer_append(from, prev_log_index, false, conflict_term, conflict_index);
        }
        assert!(
            self.log.matches(prev_log_index, prev_log_term),
            "an append is accepted only when the previous index and term match"
        );
        let last_new = LogIndex(prev_log_index.0 + entries.len() as u64);
        if let Some(first) = entries.first() {
            assert_eq!(
                first.index,
                prev_log_index.next(),
                "appended entries follow prev_log_index"
            );
        }
        let has_membership =
            entries.iter().any(|e| matches!(e.payload, EntryPayload::Membership(_)));
        assert!(self.role != Role::Leader, "a leader never truncates or overwrites its own log");
        if let Some(at) = self.log.append_after_match(entries) {
            assert!(at > self.commit_index, "a committed entry is never truncated");
            self.refresh_membership();
        } else if has_membership {
            self.refresh_membership();
        }
        let new_commit = if self.mutated_follower_commit_past_match() {
            leader_commit.min(self.log.last_index())
        } else {
            leader_commit.min(last_new)
        };
        if new_commit > self.commit_index {
            self.set_commit(new_commit);
        }
        self.answer_append(from, last_new, true, None, LogIndex(0));
    }

    /// Everything up to our commit index already matches the leader's log: an append that starts
    /// below it is treated as if it started there. `None` if our commit index is inside our
    /// snapshot (its term is not known).
    fn rebase_on_commit(
        &self,
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
    ) -> Option<(LogIndex, Term, Vec<Entry>)> {
        if prev_log_index >= self.commit_index {
            return Some((prev_log_index, prev_log_term, entries));
        }
        let skip = (self.commit_index.0 - prev_log_index.0) as usize;
        let prev_term = self.log.term_at(self.commit_index)?;
        Some((self.commit_index, prev_term, entries.into_iter().skip(skip).collect()))
    }

    fn answer_append(
        &mut self,
        to: NodeId,
        index: LogIndex,
        success: bool,
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
    ) {
        let body =
            MessageBody::AppendEntriesResponse { index, success, conflict_term, conflict_index };
        self.send(to, body);
    }

    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        index: LogIndex,
        success: bool,
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let last = self.log.last_index();
        let Some(p) = lead!(self).progress.get_mut(&from) else { return };
        p.heard_from(now);
        if success {
            let index = index.min(last);
            let advanced = p.update_match(index);
            p.matched_while_probing();
            if advanced {
                self.maybe_commit();
            }
            // A commit can end the leadership (a leader that removed itself steps down).
            if let Some(l) = self.leader.as_deref()
                && let Some(t) = &l.transfer
                && t.target == from
                && l.progress.get(&from).is_some_and(|p| p.match_index() == last)
            {
                self.send(from, MessageBody::TimeoutNow);
            }
            self.send_append(from, false);
            return;
        }
        // Rejection. Stale if it is about an index we already know matches, or (probing) about
        // an append other than the one outstanding.
        if p.is_stale_rejection(index) {
            return;
        }
        let hint = match conflict_term {
            Some(term) => match self.log.last_index_of_term(term) {
                Some(i) => i.next(),
                None => conflict_index,
            },
            None => conflict_index,
        };
        let p = lead!(self).progress.get_mut(&from).expect("checked above");
        p.rejected(index, hint);
        self.send_append(from, false);
    }

    /// A heartbeat of this node's leader (already accepted): follow its cluster time and commit
    /// index, and answer with the ReadIndex round it carries and where this log ends.
    pub(super) fn handle_heartbeat(
        &mut self,
        from: NodeId,
        commit_index: LogIndex,
        read_seq: u64,
        cluster_time: Instant,
    ) {
        self.clock.observe_leader(cluster_time, self.now);
        if commit_index > self.commit_index {
            self.set_commit(commit_index.min(self.log.last_index()));
        }
        let last_index = self.log.last_index();
        let clock = self.now;
        self.send(from, MessageBody::HeartbeatResponse { read_seq, last_index, clock });
    }

    /// A follower answered a heartbeat: it is active, it confirms a ReadIndex round, and if it
    /// is behind, replication to it resumes (an append, or the next snapshot chunk).
    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_seq: u64,
        last_index: LogIndex,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let last = self.log.last_index();
        let now = self.now;
        let Some(p) = lead!(self).progress.get_mut(&from) else { return };
        p.heard_from(now);
        p.heartbeat_answered(read_seq);
        let state = p.state().clone();
        let behind = p.match_index() < last || last_index < last;
        self.advance_reads();
        match state {
            ReplicationState::Snapshot { .. } => self.send_snapshot_chunk(from),
            // In Replicate, `next_index` is already past what was sent: if the follower reports
            // less than that, appends were lost. An (empty) append at `next_index` then gets
            // rejected with a hint and replication resumes from it.
            _ if behind => self.send_append(from, true),
            _ => {}
        }
    }
}
