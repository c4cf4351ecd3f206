//! Membership: single-server changes (learners first, promotion when caught up, removal), the
//! membership in force from the log, leadership transfer and the hand-over at shutdown.

use super::*;

impl RaftNode {
    /// Proposes a single-server membership change. Returns the index of the membership entry;
    /// the new membership is in force from then on, and final once that index is committed.
    pub fn propose_membership(
        &mut self,
        now: Instant,
        change: MembershipChange,
    ) -> Result<LogIndex, MembershipError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(MembershipError::NotLeader { leader_hint: self.leader_id });
        }
        if lead_ref!(self).transfer.is_some() {
            return Err(MembershipError::TransferInProgress);
        }
        // Until an entry of this term commits, an uncommitted change of a previous leader may
        // still be in the log of some quorum we do not know about (the single-server change bug
        // found by Ongaro in 2015): proposing another one could create two disjoint majorities.
        #[cfg(feature = "mutations")]
        let skip = self.mutation == Some(Mutation::ChangeBeforeOwnTermCommit);
        #[cfg(not(feature = "mutations"))]
        let skip = false;
        if !skip && self.log.term_at(self.commit_index) != Some(self.current_term) {
            return Err(MembershipError::LeaderNotReady);
        }
        if self.membership_change_pending() {
            return Err(MembershipError::ChangePending);
        }
        let next = self.membership_after(change)?;
        let index = self.append_as_leader(EntryPayload::Membership(Box::new(next)));
        Ok(index)
    }

    /// The membership `change` leads to, or why it may not be made: a learner must be new, a
    /// promoted learner caught up and responsive, a removed node a member and not the last voter.
    fn membership_after(
        &mut self,
        change: MembershipChange,
    ) -> Result<Membership, MembershipError> {
        let mut next = self.membership.clone();
        match change {
            MembershipChange::AddLearner { id, address } => {
                if id == NodeId(0) {
                    return Err(MembershipError::InvalidNodeId);
                }
                if next.contains(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                next.learners.insert(id);
                next.addresses.insert(id, address);
            }
            MembershipChange::PromoteLearner { id } => {
                if !next.learners.contains(&id) {
                    return Err(if next.contains(id) {
                        MembershipError::NotLearner(id)
                    } else {
                        MembershipError::NotMember(id)
                    });
                }
                // Promoting raises the quorum, so the learner must be able to vote and to store
                // entries now: heard from within an election timeout, holding everything
                // committed, and not far behind the leader's log. A learner that never answered
                // (an unreachable address) has match index 0 and no contact, and stays a learner.
                let commit_index = self.commit_index;
                let now = self.now;
                let timeout = self.cfg.election_timeout_ms;
                let Some(p) = lead!(self).progress.get_mut(&id) else {
                    return Err(MembershipError::NotResponding { id });
                };
                let target = p.promotion_target(commit_index);
                let recent = p.last_contact().is_some_and(|t| now.saturating_since(t) < timeout);
                if !recent {
                    return Err(MembershipError::NotResponding { id });
                }
                let match_index = p.match_index();
                let last_index = self.log.last_index();
                if match_index < target || match_index.0 + self.cfg.promotion_lag_max < last_index.0
                {
                    return Err(MembershipError::NotCaughtUp { id, match_index, last_index });
                }
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            MembershipChange::Remove { id } => {
                if !next.contains(id) {
                    return Err(MembershipError::NotMember(id));
                }
                if next.voters.len() == 1 && next.voters.contains(&id) {
                    return Err(MembershipError::LastVoter);
                }
                next.voters.remove(&id);
                next.learners.remove(&id);
                next.addresses.remove(&id);
            }
        }
        Ok(next)
    }

    /// Before a graceful shutdown, a leader hands leadership to the voter that holds the most of
    /// its log (the quickest to take over). Returns the successor, `Ok(None)` when this node is
    /// not leader or has no other voter, or why the transfer cannot start. The driver then runs
    /// the node until it is no longer leader or an election timeout has passed.
    pub fn hand_over_for_shutdown(
        &mut self,
        now: Instant,
    ) -> Result<Option<NodeId>, TransferError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Ok(None);
        }
        let me = self.id;
        let successor = self
            .peers()
            .into_iter()
            .filter(|p| p.voter && p.id != me)
            .max_by_key(|p| (p.match_index, std::cmp::Reverse(p.id)))
            .map(|p| p.id);
        match successor {
            Some(target) => self.transfer_leadership(now, target).map(|()| Some(target)),
            None => Ok(None),
        }
    }

    /// Hands leadership to `target`: once its log is up to date it is told to campaign at once.
    /// Proposals are refused meanwhile; the transfer is abandoned after an election timeout.
    pub fn transfer_leadership(
        &mut self,
        now: Instant,
        target: NodeId,
    ) -> Result<(), TransferError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { leader_hint: self.leader_id });
        }
        if target == self.id {
            return Ok(());
        }
        if !self.membership.is_voter(target) {
            return Err(TransferError::NotVoter(target));
        }
        let deadline = self.now.saturating_add_ms(self.cfg.election_timeout_ms);
        let last_index = self.log.last_index();
        let l = lead!(self);
        if l.transfer.is_some() {
            return Err(TransferError::InProgress);
        }
        l.transfer = Some(Transfer { target });
        self.timers.set(Timer::Transfer, deadline);
        let caught_up = l.progress.get(&target).is_some_and(|p| p.match_index() == last_index);
        if !caught_up {
            l.append_needed.insert(target);
        }
        tracing::info!(node = %self.id, term = %self.current_term, %target, "leadership transfer started");
        if caught_up {
            self.send(target, MessageBody::TimeoutNow);
        }
        Ok(())
    }

    /// Records that this node is in a committed membership (see [`RaftNode::removed`]).
    pub(super) fn note_committed_membership(&mut self) {
        if !self.was_committed_member
            && self.membership_index <= self.commit_index
            && self.membership.contains(self.id)
        {
            self.was_committed_member = true;
        }
    }

    /// Recomputes the membership in force from the log (after an append, a truncation or a
    /// snapshot) and, on a leader, the set of followers it tracks.
    pub(super) fn refresh_membership(&mut self) {
        let (index, membership) = self.log.membership_at(self.log.last_index());
        if membership != self.membership {
            tracing::info!(
                node = %self.id, index = %index,
                voters = ?membership.voters, learners = ?membership.learners,
                "membership changed"
            );
        }
        self.membership = membership;
        self.membership_index = index;
        let members = &self.membership;
        self.clock.retain(|id| members.contains(id));
        if let Some(l) = self.leader.as_deref_mut() {
            let next = self.log.last_index().next();
            let window = self.cfg.inflight_appends_max;
            let members: Vec<NodeId> =
                self.membership.members().filter(|&m| m != self.id).collect();
            l.progress.retain(|id, _| members.contains(id));
            for m in members {
                l.progress.entry(m).or_insert_with(|| Progress::new_member(next, window));
                l.append_needed.insert(m);
            }
        }
    }

    pub(super) fn is_member_or_committed_member(&self, id: NodeId) -> bool {
        if self.membership.contains(id) {
            return true;
        }
        self.membership_change_pending() && self.log.membership_at(self.commit_index).1.contains(id)
    }
}
