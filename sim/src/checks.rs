//! Raft safety checkers, fed by the node drivers as the run goes. Each violation is recorded as a
//! sentence naming the property, and the run fails on the first one.

use simple_cache_core::message::{Entry, EntryPayload, Message, MessageBody};
use simple_cache_core::raft::Role;
use simple_cache_core::types::{LogIndex, NodeId, Term};
use std::collections::{BTreeMap, HashMap};

/// What one node looked like after it handled a `Ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeState {
    pub role: Role,
    pub term: Term,
    pub commit_index: LogIndex,
    pub last_applied: LogIndex,
}

/// A stable fingerprint of an entry's payload (FNV-1a over its encoding).
pub fn entry_fingerprint(e: &Entry) -> u64 {
    let mut h = Fnv::new();
    match &e.payload {
        EntryPayload::Noop => h.write(&[0]),
        EntryPayload::Command(d) => {
            h.write(&[1]);
            h.write(d);
        }
        EntryPayload::Membership(m) => {
            h.write(&[2]);
            h.write(&simple_cache_core::codec::encode(m));
        }
    }
    h.finish()
}

/// 64-bit FNV-1a, for trace digests and fingerprints.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

#[derive(Debug, Default)]
pub struct RaftChecker {
    /// The leader of each term (election safety).
    leaders: BTreeMap<Term, NodeId>,
    /// The entry first applied at each index, by any node (state machine safety).
    applied: HashMap<LogIndex, (Term, u64, NodeId)>,
    /// Each node's state after its last `Ready` in its current incarnation.
    last: BTreeMap<NodeId, NodeState>,
    /// The highest term each node put on a message that requires that term to be durable.
    sent_term: BTreeMap<NodeId, Term>,
    pub violations: Vec<String>,
}

impl RaftChecker {
    pub fn new() -> RaftChecker {
        RaftChecker::default()
    }

    fn fail(&mut self, msg: String) {
        self.violations.push(msg);
    }

    /// A node restarted with `term` recovered from its disk: it must not have forgotten a term it
    /// already announced (a term is fsynced before any message carries it).
    pub fn restarted(&mut self, id: NodeId, recovered_term: Term) {
        self.last.remove(&id);
        if let Some(&sent) = self.sent_term.get(&id)
            && recovered_term < sent
        {
            self.fail(format!(
                "durable term: node {id} recovered term {recovered_term} after sending messages \
                 in term {sent}"
            ));
        }
    }

    /// A node's state disappeared with its disk (wiped and replaced).
    pub fn wiped(&mut self, id: NodeId) {
        self.last.remove(&id);
        self.sent_term.remove(&id);
    }

    /// Messages a node sent after persisting the state they depend on.
    pub fn sent(&mut self, id: NodeId, messages: &[Message]) {
        for m in messages {
            // A pre-vote request carries a term the candidate has not moved to; every other
            // message carries the sender's durable current term.
            let durable = !matches!(
                m.body,
                MessageBody::RequestVote { pre_vote: true, .. }
                    | MessageBody::RequestVoteResponse { pre_vote: true, .. }
            );
            if durable {
                let t = self.sent_term.entry(id).or_default();
                *t = (*t).max(m.term);
            }
        }
    }

    /// A node applied `entries` (in index order).
    pub fn applied(&mut self, id: NodeId, entries: &[Entry]) {
        for e in entries {
            let fp = entry_fingerprint(e);
            match self.applied.get(&e.index) {
                Some(&(term, f, first)) => {
                    if term != e.term || f != fp {
                        self.fail(format!(
                            "state machine safety: node {id} applied (term {}, payload {fp:x}) at \
                             index {} where node {first} applied (term {term}, payload {f:x})",
                            e.term, e.index
                        ));
                    }
                }
                None => {
                    self.applied.insert(e.index, (e.term, fp, id));
                }
            }
        }
    }

    /// A node's state after it handled a `Ready`.
    pub fn observe(&mut self, id: NodeId, s: NodeState) {
        if s.role == Role::Leader {
            let prev = *self.leaders.entry(s.term).or_insert(id);
            if prev != id {
                self.fail(format!(
                    "election safety: nodes {prev} and {id} were both leader in term {}",
                    s.term
                ));
            }
        }
        if s.last_applied > s.commit_index {
            self.fail(format!(
                "applied <= committed: node {id} applied {} with commit index {}",
                s.last_applied, s.commit_index
            ));
        }
        if let Some(prev) = self.last.get(&id).copied() {
            if s.term < prev.term {
                self.fail(format!(
                    "term monotonic: node {id} went from {} to {}",
                    prev.term, s.term
                ));
            }
            if s.commit_index < prev.commit_index {
                self.fail(format!(
                    "commit index monotonic: node {id} went from {} to {}",
                    prev.commit_index, s.commit_index
                ));
            }
            if s.last_applied < prev.last_applied {
                self.fail(format!(
                    "applied index monotonic: node {id} went from {} to {}",
                    prev.last_applied, s.last_applied
                ));
            }
        }
        self.last.insert(id, s);
    }

    /// The number of terms that had a leader.
    pub fn leader_terms(&self) -> usize {
        self.leaders.len()
    }

    /// The highest index applied anywhere.
    pub fn max_applied(&self) -> LogIndex {
        self.applied.keys().copied().max().unwrap_or_default()
    }
}

/// Log matching between two nodes' logs (the entries each holds in memory): if both hold an
/// entry with the same index and term, the entries are identical, and so are all before it.
pub fn check_log_matching(
    a: (NodeId, &BTreeMap<LogIndex, Entry>),
    b: (NodeId, &BTreeMap<LogIndex, Entry>),
) -> Result<(), String> {
    let mut matched: Option<LogIndex> = None;
    for (index, ea) in a.1.iter().rev() {
        let Some(eb) = b.1.get(index) else { continue };
        if matched.is_some() || ea.term == eb.term {
            if ea.term != eb.term || entry_fingerprint(ea) != entry_fingerprint(eb) {
                return Err(format!(
                    "log matching: nodes {} and {} agree at index {} but differ at index {index}",
                    a.0,
                    b.0,
                    matched.unwrap_or(*index)
                ));
            }
            matched.get_or_insert(*index);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e(index: u64, term: u64, b: u8) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Command(Bytes::from(vec![b])),
        }
    }

    // Two leaders in one term are reported.
    #[test]
    fn election_safety_violation_is_reported() {
        let mut c = RaftChecker::new();
        let s = NodeState {
            role: Role::Leader,
            term: Term(3),
            commit_index: LogIndex(0),
            last_applied: LogIndex(0),
        };
        c.observe(NodeId(1), s);
        c.observe(NodeId(2), s);
        assert!(c.violations[0].starts_with("election safety"));
    }

    // Different entries applied at one index are reported.
    #[test]
    fn state_machine_safety_violation_is_reported() {
        let mut c = RaftChecker::new();
        c.applied(NodeId(1), &[e(1, 1, 1)]);
        c.applied(NodeId(2), &[e(1, 1, 1)]);
        assert!(c.violations.is_empty());
        c.applied(NodeId(3), &[e(1, 1, 2)]);
        assert!(c.violations[0].starts_with("state machine safety"));
    }

    // Logs that agree at some index but differ below it break log matching.
    #[test]
    fn log_matching_violation_is_reported() {
        let a: BTreeMap<_, _> =
            [e(1, 1, 1), e(2, 2, 1)].into_iter().map(|x| (x.index, x)).collect();
        let b: BTreeMap<_, _> =
            [e(1, 1, 9), e(2, 2, 1)].into_iter().map(|x| (x.index, x)).collect();
        let c: BTreeMap<_, _> =
            [e(1, 1, 1), e(2, 3, 7)].into_iter().map(|x| (x.index, x)).collect();
        assert!(check_log_matching((NodeId(1), &a), (NodeId(2), &b)).is_err());
        assert!(check_log_matching((NodeId(1), &a), (NodeId(3), &c)).is_ok());
    }
}
