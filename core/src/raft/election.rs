//! Elections: who may campaign, pre-vote and real rounds, counting votes, the leader lease,
//! and the transitions between roles (the leader state is created and dropped here).

use super::*;

impl RaftNode {
    /// Voters campaign. So does a node whose own removal is appended but not committed: it
    /// may hold the only copy of that entry, and without it no one could commit the change
    /// (it then leads a cluster it is not a voter of, commits the removal and steps down, as
    /// in section 4.2.2 of the Raft dissertation).
    pub(super) fn can_campaign(&self) -> bool {
        if self.told_removed {
            return false;
        }
        if self.membership.is_voter(self.id) {
            return true;
        }
        self.membership_change_pending() && {
            let (_, committed) = self.log.membership_at(self.commit_index);
            committed.is_voter(self.id)
        }
    }

    /// A node that may not campaign (a learner) and heard no leader for an election timeout
    /// tells the members it knows where its log ends. A leader answers with appends, or with
    /// [`MessageBody::Removed`] if the node is no longer a member: a removed learner is
    /// otherwise never told, since the leader stops sending to it.
    pub(super) fn ask_for_leader(&mut self) {
        if self.told_removed || self.membership.voters.is_empty() {
            return;
        }
        let last_index = self.log.last_index();
        let members: Vec<NodeId> = self.membership.members().filter(|&m| m != self.id).collect();
        for m in members {
            let clock = self.now;
            self.send(m, MessageBody::HeartbeatResponse { read_seq: 0, last_index, clock });
        }
    }

    pub(super) fn reset_election_deadline(&mut self) {
        let base = self.cfg.election_timeout_ms;
        // Modulo bias is irrelevant for a timeout jitter.
        let jitter = self.rng.next_u64() % base;
        self.timers.set(Timer::Election, self.now.saturating_add_ms(base + jitter));
    }

    /// Whether this node disregards vote requests (other than a leadership transfer's) because
    /// of the leader lease that keeps a partitioned node from disrupting a healthy cluster: a
    /// follower that heard from a leader within the election timeout, or a leader, when
    /// check-quorum is on (a leader checks its quorum itself and steps down when it loses it).
    pub(super) fn lease_blocks_votes(&self) -> bool {
        if self.role == Role::Leader {
            // A leader checks its quorum itself and steps down when it loses it.
            return self.cfg.check_quorum;
        }
        self.cfg.check_quorum
            && self.leader_id.is_some()
            && self
                .last_leader_contact
                .is_some_and(|t| self.now.saturating_since(t) < self.cfg.election_timeout_ms)
    }

    pub(super) fn set_term(&mut self, term: Term) {
        assert!(term >= self.current_term, "the term never decreases");
        if term > self.current_term {
            self.current_term = term;
            self.voted_for = None;
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        let was_leader = self.role == Role::Leader;
        let leader_changed = leader != self.leader_id || term != self.current_term;
        self.set_term(term);
        self.role = Role::Follower;
        self.campaign = None;
        if leader_changed {
            self.clock.forget_leader();
            if leader.is_some() {
                tracing::info!(node = %self.id, term = %term, leader = ?leader, "following leader");
            }
            self.abort_forwarded_reads();
        }
        self.leader_id = leader;
        if was_leader {
            self.leave_leadership();
        }
        self.reset_election_deadline();
    }

    /// Drops the leader state; reads still waiting on this leadership are aborted.
    pub(super) fn leave_leadership(&mut self) {
        tracing::info!(node = %self.id, term = %self.current_term, "stepped down as leader");
        for t in [Timer::Heartbeat, Timer::CheckQuorum, Timer::Transfer] {
            self.timers.clear(t);
        }
        let Some(l) = self.leader.take() else { return };
        let Leader { pending_reads, reads_awaiting_commit, .. } = *l;
        for r in pending_reads {
            self.abort_read(r.reader);
        }
        for r in reads_awaiting_commit {
            self.abort_read(r);
        }
    }

    /// Starts an election: a pre-vote round (which, once won, becomes the real one) or the real
    /// one. A single voter decides at once; others send vote requests.
    pub(super) fn campaign(&mut self, pre_vote: bool, leadership_transfer: bool) {
        let mut pre_vote = pre_vote;
        loop {
            self.role = Role::Candidate;
            self.leader_id = None;
            self.abort_forwarded_reads();
            let term = if pre_vote {
                self.current_term.next()
            } else {
                self.set_term(self.current_term.next());
                self.voted_for = Some(self.id);
                self.current_term
            };
            tracing::info!(node = %self.id, %term, pre_vote, "starting election");
            let votes = BTreeMap::from([(self.id, true)]);
            self.campaign = Some(Campaign { pre_vote, votes });
            self.reset_election_deadline();
            match self.tally_votes() {
                // This node's own vote decided the pre-vote round: the real election follows.
                Tally::Won if pre_vote => {
                    pre_vote = false;
                    continue;
                }
                Tally::Won => return self.become_leader(),
                Tally::Lost => return self.become_follower(self.current_term, None),
                Tally::Pending => {}
            }
            let body = MessageBody::RequestVote {
                pre_vote,
                last_log_index: self.log.last_index(),
                last_log_term: self.log.last_term(),
                leadership_transfer,
            };
            let voters: Vec<NodeId> =
                self.membership.voters.iter().copied().filter(|&v| v != self.id).collect();
            for v in voters {
                self.messages.push(Message { from: self.id, to: v, term, body: body.clone() });
            }
            return;
        }
    }

    /// Counts the votes of the current voters: won or lost once a quorum decides.
    pub(super) fn tally_votes(&self) -> Tally {
        let Some(c) = &self.campaign else { return Tally::Pending };
        let quorum = self.membership.quorum();
        let voters = &self.membership.voters;
        let granted = c.votes.iter().filter(|(id, g)| **g && voters.contains(id)).count();
        let rejected = c.votes.iter().filter(|(id, g)| !**g && voters.contains(id)).count();
        if granted >= quorum {
            Tally::Won
        } else if rejected >= quorum {
            Tally::Lost
        } else {
            Tally::Pending
        }
    }

    pub(super) fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        tracing::info!(node = %self.id, term = %self.current_term, "became leader");
        self.role = Role::Leader;
        self.campaign = None;
        self.leader_id = Some(self.id);
        let next = self.log.last_index().next();
        let progress = self
            .membership
            .members()
            .filter(|&id| id != self.id)
            .map(|id| (id, Progress::new(next, self.cfg.inflight_appends_max)))
            .collect();
        let mut uncommitted_bytes = 0;
        let mut i = self.commit_index.next();
        while let Some(e) = self.log.get(i) {
            uncommitted_bytes += e.size_bytes();
            i = i.next();
        }
        self.leader = Some(Box::new(Leader {
            progress,
            transfer: None,
            uncommitted_bytes,
            read_seq: 0,
            pending_reads: VecDeque::new(),
            reads_awaiting_commit: Vec::new(),
            append_needed: BTreeSet::new(),
        }));
        // A leader's timers replace the election timer.
        self.timers.clear(Timer::Election);
        self.timers.set(Timer::Heartbeat, self.now);
        if self.cfg.check_quorum {
            let at = self.now.saturating_add_ms(self.cfg.election_timeout_ms);
            self.timers.set(Timer::CheckQuorum, at);
        }
        self.append_as_leader(EntryPayload::Noop);
    }

    /// A message of the current term from the leader: follow it.
    pub(super) fn accept_leader(&mut self, from: NodeId) {
        assert!(
            !(self.role == Role::Leader && self.leader_id != Some(from)),
            "at most one leader per term"
        );
        if self.role != Role::Follower || self.leader_id != Some(from) {
            let term = self.current_term;
            self.become_follower(term, Some(from));
        }
        self.last_leader_contact = Some(self.now);
        self.reset_election_deadline();
    }

    pub(super) fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
    ) {
        // A node that holds no state at all (a fresh joiner, or a voter whose disk was wiped)
        // may have voted in these terms before it lost its disk: it votes only once it has heard
        // from a leader and knows the membership.
        let stateless = self.membership.voters.is_empty();
        let can_vote = !stateless
            && if pre_vote {
                // A pre-vote is a hypothetical vote in a later term: only the log and the lease
                // matter.
                term > self.current_term || (self.voted_for.is_none() && self.leader_id.is_none())
            } else {
                self.voted_for == Some(from)
                    || (self.voted_for.is_none() && self.leader_id.is_none())
                    || self.mutated_double_vote()
            };
        let up_to_date = (last_log_term, last_log_index)
            >= (self.log.last_term(), self.log.last_index())
            || (!pre_vote && self.mutated_vote_ignores_log());
        let granted = can_vote && up_to_date;
        if granted && !pre_vote {
            assert!(
                self.voted_for.is_none()
                    || self.voted_for == Some(from)
                    || self.mutated_double_vote(),
                "a node casts at most one vote per term"
            );
            self.voted_for = Some(from);
            self.must_sync_votes = true;
            self.reset_election_deadline();
        }
        // A pre-vote answer carries the term it was asked about, so the candidate can count it.
        let reply_term = if pre_vote && granted { term } else { self.current_term };
        self.messages.push(Message {
            from: self.id,
            to: from,
            term: reply_term,
            body: MessageBody::RequestVoteResponse { pre_vote, granted, clock: self.now },
        });
    }

    /// A vote (or pre-vote) answer of the current term: counted if it is for the round this
    /// node runs; the round is won, lost or still open.
    pub(super) fn handle_vote_response(
        &mut self,
        from: NodeId,
        term: Term,
        pre_vote: bool,
        granted: bool,
    ) {
        let expected = if pre_vote { self.current_term.next() } else { self.current_term };
        let counts = term == expected || (!granted && term == self.current_term);
        if let Some(c) = self.campaign.as_mut()
            && c.pre_vote == pre_vote
            && counts
        {
            c.votes.insert(from, granted);
            match self.tally_votes() {
                Tally::Won if pre_vote => self.campaign(false, false),
                Tally::Won => self.become_leader(),
                Tally::Lost => self.become_follower(self.current_term, None),
                Tally::Pending => {}
            }
        }
    }
}
