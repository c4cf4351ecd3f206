//! What the node refuses and what it asserts: peer messages that no correct peer could send are
//! refused whole (`check_message`), and the node's own invariants are checked after every input.

use super::*;

impl RaftNode {
    /// What no correct peer sends. Such a message is refused whole before it changes anything:
    /// the log code asserts its invariants, and a peer (or anyone who can reach the Raft port)
    /// must not be able to trip them.
    pub(super) fn check_message(&self, msg: &Message) -> Result<(), String> {
        self.check_leadership_claim(msg)?;
        // Answers from followers of this leader's own term can be checked against what it sent.
        let own_follower = self.role == Role::Leader && msg.term == self.current_term;
        match &msg.body {
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, .. } => {
                check_appended_entries(msg.term, *prev_log_index, *prev_log_term, entries)?;
            }
            MessageBody::InstallSnapshot { meta, .. } => {
                if meta.last_term > msg.term {
                    return Err(format!(
                        "a snapshot of term {} from a leader of term {}",
                        meta.last_term, msg.term
                    ));
                }
                if meta.last_index > LogIndex(0) && meta.membership.voters.is_empty() {
                    return Err("a snapshot whose membership has no voters".into());
                }
            }
            MessageBody::HeartbeatResponse { read_seq, .. }
                if own_follower && *read_seq > lead_ref!(self).read_seq =>
            {
                return Err(format!(
                    "acknowledges ReadIndex round {read_seq}; this leader started {}",
                    lead_ref!(self).read_seq
                ));
            }
            MessageBody::AppendEntriesResponse { index, success: true, .. }
            | MessageBody::InstallSnapshotResponse { last_index: index, done: true, .. }
                if own_follower && *index > self.log.last_index() =>
            {
                return Err(format!(
                    "acknowledges entries up to {index}; this leader's log ends at {}",
                    self.log.last_index()
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// A leader's message in a term this node knows another leader of is a lie (one leader per
    /// term), and no leader is elected in term 0.
    fn check_leadership_claim(&self, msg: &Message) -> Result<(), String> {
        let leader_message = matches!(
            msg.body,
            MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. }
        );
        if leader_message && msg.term == Term(0) {
            return Err("a leader's message in term 0".into());
        }
        if leader_message && msg.term == self.current_term {
            let holder = match self.role {
                Role::Leader => Some(self.id),
                Role::Follower => self.leader_id,
                Role::Candidate => None,
            };
            if let Some(holder) = holder.filter(|&h| h != msg.from) {
                return Err(format!(
                    "claims leadership of term {}, which node {holder} holds",
                    msg.term
                ));
            }
        }
        Ok(())
    }

    /// Cheap invariants, checked in release builds too (after every `Ready` acknowledged and
    /// every message stepped): a node that breaks one would go on to corrupt replicated state, so
    /// it stops instead (TigerBeetle's rule; the server's panic hook exits with status 70).
    pub(super) fn check_invariants(&self) {
        assert!(self.last_applied <= self.commit_index, "applied <= committed");
        assert!(
            self.commit_index <= self.log.last_index(),
            "commit_index never passes the last log index"
        );
        assert!(
            self.role != Role::Leader || self.leader_id == Some(self.id),
            "a leader knows itself as leader"
        );
        assert!(self.log.persisted_index() <= self.log.last_index(), "persisted entries exist");
        assert!(
            self.last_applied
                <= self.log.persisted_index().max(self.log.snapshot_meta().last_index),
            "only durable entries are applied"
        );
        assert!(
            self.readies_acked <= self.readies_issued,
            "only Readies handed out are acknowledged"
        );
        assert_eq!(
            self.leader.is_some(),
            self.role == Role::Leader,
            "leader state exists exactly while leading"
        );
        assert_eq!(
            self.campaign.is_some(),
            self.role == Role::Candidate,
            "an election is run exactly while a candidate"
        );
    }
}

/// Entries of an `AppendEntries` follow `prev_log_index` without a gap, with terms that never
/// decrease and never pass the sender's.
fn check_appended_entries(
    sender_term: Term,
    prev_log_index: LogIndex,
    prev_log_term: Term,
    entries: &[crate::message::Entry],
) -> Result<(), String> {
    if prev_log_term > sender_term {
        return Err(format!(
            "prev_log_term {prev_log_term} is later than the sender's term {sender_term}"
        ));
    }
    if prev_log_index == LogIndex(0) && prev_log_term != Term(0) {
        return Err(format!("prev_log_term {prev_log_term} at index 0"));
    }
    let mut expected = prev_log_index.next();
    let mut term = prev_log_term;
    for e in entries {
        if e.index != expected {
            return Err(format!(
                "entry {} where {expected} was due: entries follow prev_log_index {} \
                 without a gap",
                e.index, prev_log_index
            ));
        }
        if e.term < term || e.term > sender_term {
            return Err(format!(
                "entry {} has term {}, outside [{term}, {}]: terms never decrease \
                 along a log nor pass the leader's",
                e.index, e.term, sender_term
            ));
        }
        term = e.term;
        expected = expected.next();
    }
    Ok(())
}
