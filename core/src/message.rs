//! Plain data that crosses a boundary: log entries, persistent state, snapshots and the messages
//! nodes exchange. Each is encoded only through [`crate::codec`].

use crate::types::{Instant, LogIndex, NodeId, Term};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The state a node must persist before anything that depends on it leaves the node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardState {
    pub current_term: Term,
    pub voted_for: Option<NodeId>,
    pub commit_index: LogIndex,
}

/// The members of the cluster. Voters elect and commit; learners only receive the log.
///
/// `addresses` is opaque to core: the driver stores how to reach each member (for the server an
/// HTTP address) so that every node learns it through the log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub addresses: BTreeMap<NodeId, String>,
}

impl Membership {
    /// A cluster of the given voters with no known addresses.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership { voters: voters.into_iter().collect(), ..Membership::default() }
    }
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }
    /// Every member, voters first, each once.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }
    /// The number of voters that make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// A single-server membership change, as a client asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Add a new node as a learner; it is promoted with [`MembershipChange::PromoteLearner`]
    /// once it has caught up.
    AddLearner { id: NodeId, address: String },
    /// Make a caught-up learner a voter.
    PromoteLearner { id: NodeId },
    /// Remove a voter or a learner. Removing the leader makes it step down once committed.
    Remove { id: NodeId },
}

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryPayload {
    /// Appended by every new leader so that it can commit an entry of its own term.
    Noop,
    /// An opaque command for the state machine (for the cache: an encoded `cache::Proposal`).
    Command(Bytes),
    /// The complete new membership. It takes effect as soon as it is appended to a log (the
    /// single-server change rule of the Raft dissertation, section 4.1). Boxed: it is rare
    /// and large, and every entry of the in-memory log would otherwise pay for its size
    /// (96 bytes an entry instead of 56). The encoding is the same.
    Membership(Box<Membership>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub term: Term,
    pub index: LogIndex,
    pub payload: EntryPayload,
}

impl Entry {
    /// Approximate encoded size, used for byte limits on appends and pending proposals.
    pub fn size_bytes(&self) -> usize {
        24 + match &self.payload {
            EntryPayload::Noop => 0,
            EntryPayload::Command(data) => data.len(),
            EntryPayload::Membership(m) => {
                16 * (m.voters.len() + m.learners.len())
                    + m.addresses.values().map(|a| a.len() + 8).sum::<usize>()
            }
        }
    }
}

/// Where a snapshot ends and who the members were at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub last_index: LogIndex,
    pub last_term: Term,
    pub membership: Membership,
}

/// A state machine snapshot: the metadata plus the state machine's own encoding of its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// Identifies a read request of the driver's, so that it can match a [`ReadState`] to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ReadId(pub u64);

/// A read is linearizable once the node has applied up to `index`.
///
/// `leader_time` is the leader's cluster time ([`crate::clock`]) when it confirmed leadership for
/// this read; readers use it to judge which keys have expired, so every node agrees with the
/// leader's view of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub id: ReadId,
    pub index: LogIndex,
    pub leader_time: Instant,
}

/// A message between two nodes. `term` is the sender's current term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageBody {
    /// A (pre-)vote request. A pre-vote carries the term the candidate would use, without the
    /// candidate having moved to it. `leadership_transfer` votes ignore the leader lease.
    RequestVote {
        pre_vote: bool,
        last_log_index: LogIndex,
        last_log_term: Term,
        leadership_transfer: bool,
    },
    RequestVoteResponse {
        pre_vote: bool,
        granted: bool,
        /// The voter's own clock (see [`crate::clock`]).
        clock: Instant,
    },
    AppendEntries {
        prev_log_index: LogIndex,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: LogIndex,
    },
    AppendEntriesResponse {
        /// On success, the index of the last entry the follower now stores that matches the
        /// leader's log. On rejection, the `prev_log_index` that did not match.
        index: LogIndex,
        success: bool,
        /// On rejection: the follower's term at `index` (if it has that entry) and the first
        /// index it holds with that term, or its last index + 1 when its log is too short. Lets
        /// the leader skip a whole term of mismatches in one round trip.
        conflict_term: Option<Term>,
        conflict_index: LogIndex,
    },
    /// Leader liveness, commit propagation and ReadIndex confirmation. `read_seq` is the newest
    /// ReadIndex round the leader has started.
    Heartbeat {
        commit_index: LogIndex,
        read_seq: u64,
        /// The leader's own clock and its cluster time ([`crate::clock`]).
        clock: Instant,
        cluster_time: Instant,
    },
    HeartbeatResponse {
        read_seq: u64,
        /// The follower's last log index, so a leader can resume replication to it.
        last_index: LogIndex,
        /// The follower's own clock (see [`crate::clock`]).
        clock: Instant,
    },
    /// A chunk of a snapshot. `offset` is where `data` starts within the whole snapshot.
    InstallSnapshot { meta: SnapshotMeta, offset: u64, data: Bytes, done: bool },
    InstallSnapshotResponse {
        last_index: LogIndex,
        /// The offset the follower expects next (or the total length once done).
        next_offset: u64,
        done: bool,
        rejected: bool,
    },
    /// A follower asks the leader for a read index on behalf of its own read `id`.
    ReadIndex { id: ReadId },
    /// The leader's answer; `index` is `None` if it cannot serve the read (not leader any more).
    ReadIndexResponse { id: ReadId, index: Option<LogIndex>, leader_time: Instant },
    /// Leadership transfer: the target starts an election at once, skipping pre-vote.
    TimeoutNow,
    /// The leader's answer to a node that is in neither its latest nor its committed membership:
    /// that node was removed (or its join never committed) and must stop. `membership_index` is
    /// the index of the leader's membership: a node whose own log holds a later membership that
    /// includes it ignores the answer (it comes from a leader that is behind).
    Removed { membership_index: LogIndex },
}

// ----- one-line forms, for logs and the transcript tests (`core/testdata/`) -----

/// `t<term>/i<index>` and the payload: `noop`, `"data"` (escaped, cut at 24 bytes) or the
/// membership's voters and learners.
impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}/i{} ", self.term, self.index)?;
        match &self.payload {
            EntryPayload::Noop => write!(f, "noop"),
            EntryPayload::Command(data) => write!(f, "{}", ShortBytes(data)),
            EntryPayload::Membership(m) => write!(f, "{m}"),
        }
    }
}

/// `voters=[1 2 3] learners=[4]` (learners only when there are any).
impl std::fmt::Display for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids =
            |s: &BTreeSet<NodeId>| s.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(" ");
        write!(f, "voters=[{}]", ids(&self.voters))?;
        if !self.learners.is_empty() {
            write!(f, " learners=[{}]", ids(&self.learners))?;
        }
        Ok(())
    }
}

/// Bytes as an escaped string, cut at 24 bytes.
struct ShortBytes<'a>(&'a [u8]);

impl std::fmt::Display for ShortBytes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MAX: usize = 24;
        let shown = &self.0[..self.0.len().min(MAX)];
        write!(f, "\"{}\"", shown.escape_ascii())?;
        if self.0.len() > MAX {
            write!(f, "+{}B", self.0.len() - MAX)?;
        }
        Ok(())
    }
}

/// `from->to term=T Kind fields...`. Clock samples are left out: they are for the cluster clock,
/// not the protocol's decisions.
impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}->{} term={} ", self.from, self.to, self.term)?;
        let vote = |pre: bool| if pre { "PreVote" } else { "Vote" };
        match &self.body {
            MessageBody::RequestVote {
                pre_vote,
                last_log_index,
                last_log_term,
                leadership_transfer,
            } => {
                write!(f, "{} last=t{last_log_term}/i{last_log_index}", vote(*pre_vote))?;
                if *leadership_transfer {
                    write!(f, " transfer")?;
                }
                Ok(())
            }
            MessageBody::RequestVoteResponse { pre_vote, granted, .. } => {
                let verdict = if *granted { "granted" } else { "rejected" };
                write!(f, "{}Response {verdict}", vote(*pre_vote))
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                write!(f, "Append prev=t{prev_log_term}/i{prev_log_index} commit={leader_commit}")?;
                if !entries.is_empty() {
                    let list: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
                    write!(f, " entries=[{}]", list.join(", "))?;
                }
                Ok(())
            }
            MessageBody::AppendEntriesResponse {
                index,
                success,
                conflict_term,
                conflict_index,
            } => {
                if *success {
                    write!(f, "AppendResponse ok index={index}")
                } else {
                    write!(f, "AppendResponse reject index={index} hint=i{conflict_index}")?;
                    if let Some(t) = conflict_term {
                        write!(f, "/t{t}")?;
                    }
                    Ok(())
                }
            }
            MessageBody::Heartbeat { commit_index, read_seq, .. } => {
                write!(f, "Heartbeat commit={commit_index} seq={read_seq}")
            }
            MessageBody::HeartbeatResponse { read_seq, last_index, .. } => {
                write!(f, "HeartbeatResponse seq={read_seq} last={last_index}")
            }
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                write!(
                    f,
                    "Snapshot t{}/i{} offset={offset} len={}{}",
                    meta.last_term,
                    meta.last_index,
                    data.len(),
                    if *done { " done" } else { "" }
                )
            }
            MessageBody::InstallSnapshotResponse { last_index, next_offset, done, rejected } => {
                write!(f, "SnapshotResponse last={last_index} next_offset={next_offset}")?;
                if *done {
                    write!(f, " done")?;
                }
                if *rejected {
                    write!(f, " rejected")?;
                }
                Ok(())
            }
            MessageBody::ReadIndex { id } => write!(f, "ReadIndex id={}", id.0),
            MessageBody::ReadIndexResponse { id, index, .. } => match index {
                Some(i) => write!(f, "ReadIndexResponse id={} index={i}", id.0),
                None => write!(f, "ReadIndexResponse id={} refused", id.0),
            },
            MessageBody::TimeoutNow => write!(f, "TimeoutNow"),
            MessageBody::Removed { membership_index } => {
                write!(f, "Removed membership_index={membership_index}")
            }
        }
    }
}
