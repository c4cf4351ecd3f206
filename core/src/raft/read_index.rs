//! Linearizable reads (ReadIndex, Raft dissertation 6.4): a leader confirms its leadership with
//! a heartbeat round and answers at its commit index; a follower forwards the read to the
//! leader. Reads arriving while a round is outstanding share the next one.

use super::*;

impl RaftNode {
    /// Asks for a linearizable read. The read may proceed once the state machine has applied up
    /// to the index of the [`ReadState`] with this `id` that a later `Ready` carries; if it
    /// carries the id in `aborted_reads` instead, leadership changed and the read must be retried.
    pub fn read_index(&mut self, now: Instant, id: ReadId) -> Result<(), ReadError> {
        self.observe_time(now);
        let leading = self
            .leader
            .as_ref()
            .map_or(0, |l| l.pending_reads.len() + l.reads_awaiting_commit.len());
        let outstanding = leading + self.forwarded_reads.len();
        if outstanding >= self.cfg.pending_reads_max {
            return Err(ReadError::TooManyPending { limit: self.cfg.pending_reads_max });
        }
        match self.role {
            Role::Leader => {
                self.leader_read(Reader::Local(id));
                Ok(())
            }
            _ => {
                let Some(leader) = self.leader_id else { return Err(ReadError::NoLeader) };
                let deadline = self.now.saturating_add_ms(self.cfg.election_timeout_ms);
                let term = self.current_term;
                self.forwarded_reads.insert(id, ForwardedRead { leader, term, deadline });
                self.send(leader, MessageBody::ReadIndex { id });
                Ok(())
            }
        }
    }

    pub(super) fn abort_read(&mut self, reader: Reader) {
        match reader {
            Reader::Local(id) => self.aborted_reads.push(id),
            Reader::Remote(to, id) => {
                let leader_time = self.cluster_time();
                self.send(to, MessageBody::ReadIndexResponse { id, index: None, leader_time })
            }
        }
    }

    pub(super) fn abort_forwarded_reads(&mut self) {
        let ids = std::mem::take(&mut self.forwarded_reads);
        self.aborted_reads.extend(ids.into_keys());
    }

    pub(super) fn leader_read(&mut self, reader: Reader) {
        if self.log.term_at(self.commit_index) != Some(self.current_term) {
            // The commit index of a new leader may lag what earlier leaders committed until an
            // entry of its own term commits.
            lead!(self).reads_awaiting_commit.push(reader);
            return;
        }
        let index = self.commit_index;
        let single_voter = self.membership.voters.len() == 1 && self.membership.is_voter(self.id);
        if single_voter || self.mutated_local_reads() {
            self.complete_read(reader, index);
            return;
        }
        let l = lead!(self);
        let round_in_flight = l.pending_reads.back().is_some_and(|r| r.seq == l.read_seq);
        let seq = if round_in_flight || l.pending_reads.iter().any(|r| r.seq > l.read_seq) {
            l.read_seq + 1
        } else {
            l.read_seq += 1;
            let seq = l.read_seq;
            self.broadcast_heartbeat();
            seq
        };
        // Batching: every read that arrives while a round is outstanding waits for one next round.
        lead!(self).pending_reads.push_back(PendingRead { reader, index, seq });
    }

    pub(super) fn complete_read(&mut self, reader: Reader, index: LogIndex) {
        let leader_time = self.cluster_time();
        match reader {
            Reader::Local(id) => self.read_states.push(ReadState { id, index, leader_time }),
            Reader::Remote(to, id) => self
                .send(to, MessageBody::ReadIndexResponse { id, index: Some(index), leader_time }),
        }
    }

    pub(super) fn advance_reads(&mut self) {
        let own = lead_ref!(self).read_seq;
        let confirmed = self.voters_quorum_value(own, Progress::read_seq_acked);
        while let Some(r) = lead_ref!(self).pending_reads.front() {
            if r.seq > confirmed {
                break;
            }
            let r = lead!(self).pending_reads.pop_front().expect("front exists");
            self.complete_read(r.reader, r.index);
        }
        let l = lead!(self);
        if confirmed >= l.read_seq && !l.pending_reads.is_empty() {
            l.read_seq += 1;
            self.broadcast_heartbeat();
        }
    }

    /// A follower asks this node to confirm a read: a leader starts (or joins) a round; anyone
    /// else refuses, and the follower's read is aborted.
    pub(super) fn handle_read_index(&mut self, from: NodeId, id: ReadId) {
        if self.role == Role::Leader && self.membership.contains(from) {
            self.leader_read(Reader::Remote(from, id));
        } else {
            let leader_time = self.cluster_time();
            self.send(from, MessageBody::ReadIndexResponse { id, index: None, leader_time });
        }
    }

    /// The leader answered a read this node forwarded: taken only from the leader asked, in the
    /// term asked (an answer to a request of an earlier incarnation or term could be stale).
    pub(super) fn handle_read_index_response(
        &mut self,
        from: NodeId,
        term: Term,
        id: ReadId,
        index: Option<LogIndex>,
        leader_time: Instant,
    ) {
        let asked = self.forwarded_reads.get(&id);
        #[cfg(feature = "mutations")]
        let asked = asked.map(|r| {
            if self.mutation == Some(Mutation::RequestIdsReset) {
                ForwardedRead { leader: from, term, ..*r }
            } else {
                *r
            }
        });
        if asked.is_some_and(|r| r.leader == from && r.term == term) {
            self.forwarded_reads.remove(&id);
            match index {
                Some(index) => self.read_states.push(ReadState { id, index, leader_time }),
                None => self.aborted_reads.push(id),
            }
        }
    }
}
