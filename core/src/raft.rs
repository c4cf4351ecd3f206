//! The Raft node: a deterministic state machine over explicit inputs.
//!
//! Inputs: [`RaftNode::step`] (a peer message), [`RaftNode::tick`] (time passed),
//! [`RaftNode::propose`], [`RaftNode::read_index`], [`RaftNode::propose_membership`],
//! [`RaftNode::transfer_leadership`] and [`RaftNode::compact`]. Each carries `now`.
//! Output: [`RaftNode::ready`] returns a [`Ready`]; the driver carries it out and calls
//! [`RaftNode::advance`].

use crate::clock::{self, ClockSamples};
use crate::config::Config;
use crate::log::RaftLog;
use crate::message::*;
use crate::progress::{Progress, ReplicationState, quorum_value};
use crate::types::{Instant, LogIndex, NodeId, Term};
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A node's role. A learner is a follower that is not a voter, not a separate role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Campaigning: first for pre-votes (`pre_vote == true`, term unchanged), then for votes.
    Candidate,
    Leader,
}

/// A state machine's check of a snapshot's bytes: `Err` with a reason if it cannot restore them.
pub type SnapshotCheck = fn(&[u8]) -> Result<(), String>;

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

/// What a node needs from disk to restart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    pub hard_state: HardState,
    /// The latest durable snapshot. For a new cluster, a snapshot at index 0 whose meta carries
    /// the initial membership (see [`Persisted::bootstrap`]).
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

impl Persisted {
    /// The state of a member of a brand-new cluster: no log, the initial voters.
    /// Every initial member must start from the same membership.
    pub fn bootstrap(membership: Membership) -> Persisted {
        Persisted {
            snapshot: Some(Snapshot {
                meta: SnapshotMeta { last_index: LogIndex(0), last_term: Term(0), membership },
                data: Bytes::new(),
            }),
            ..Persisted::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    #[error("too many pending proposals (limit {limit})")]
    TooManyPending { limit: usize },
    #[error("too many bytes of pending proposals (limit {limit})")]
    TooManyPendingBytes { limit: usize },
    /// One command larger than any log entry may be (see [`Config::entry_bytes_max`]).
    #[error("the command is {bytes} bytes; a log entry holds at most {limit}")]
    TooLarge { bytes: usize, limit: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("no leader is known")]
    NoLeader,
    /// The leader the read waited on lost its leadership (or this node's link to it) before
    /// confirming it: nothing was read; retry once a leader is known.
    #[error("the read was aborted by a leader change; retry")]
    Aborted,
    #[error("too many pending reads (limit {limit})")]
    TooManyPending { limit: usize },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("not the leader")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("another membership change is not yet committed")]
    ChangePending,
    #[error("the leader has not yet committed an entry of its term")]
    LeaderNotReady,
    #[error("a leadership transfer is in progress")]
    TransferInProgress,
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    #[error("node {id} has not caught up (match index {match_index}, last index {last_index})")]
    NotCaughtUp { id: NodeId, match_index: LogIndex, last_index: LogIndex },
    #[error("cannot remove the last voter")]
    LastVoter,
    #[error("node id 0 is reserved")]
    InvalidNodeId,
    /// The learner was not heard from within an election timeout: it may be unreachable, and
    /// promoting it would raise the quorum with a voter that cannot vote.
    #[error("node {id} has not been heard from within an election timeout")]
    NotResponding { id: NodeId },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not the leader")]
    NotLeader { leader_hint: Option<NodeId> },
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
    #[error("a leadership transfer is already in progress")]
    InProgress,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    #[error("message addressed to node {to}, this is node {this}")]
    WrongRecipient { to: NodeId, this: NodeId },
    #[error("message from node 0")]
    InvalidSender,
    /// A message that no correct peer sends (entries with a gap, terms out of order, an answer
    /// to a question never asked): refused as a whole, changing nothing.
    #[error("impossible message from node {from} refused: {reason}")]
    Refused { from: NodeId, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("index {index} is not yet applied (applied {applied})")]
    NotApplied { index: LogIndex, applied: LogIndex },
    #[error("index {index} is already compacted (snapshot at {snapshot_index})")]
    AlreadyCompacted { index: LogIndex, snapshot_index: LogIndex },
    /// Data given back for the current snapshot describes another one.
    #[error("snapshot data for index {index} given, but the log's snapshot is at {snapshot_index}")]
    NotCurrentSnapshot { index: LogIndex, snapshot_index: LogIndex },
}

/// Bugs planted on purpose to prove that the simulator catches them. Only with the `mutations`
/// feature, which the server never enables.
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Grant a vote to any candidate of the current term, even after voting for another.
    DoubleVote,
    /// Commit by counting replicas of an entry from a previous term.
    CommitPreviousTerm,
    /// Answer reads on the leader without confirming leadership with a quorum.
    LocalReads,
    /// Acknowledge appended entries without requiring an fsync first.
    AckBeforeSync,
    /// A node rebuilt from its disk starts from term 0 with no vote, as a `RaftNode::new` that
    /// did not restore the hard state would (the disk itself is right). Applied by
    /// [`RaftNode::set_mutation`], which drivers call right after building the node.
    ForgetTermOnRestart,
    /// Grant a real (not pre-) vote without checking that the candidate's log is up to date.
    /// With pre-vote on, a candidate reaches the real vote only after a quorum found its log up
    /// to date, which mostly hides this; without pre-vote a stale candidate can win.
    VoteIgnoresLog,
    /// A follower takes the leader's commit index without bounding it by what the append
    /// matched, so it can commit entries of its own that the leader does not have.
    FollowerCommitPastMatch,
    /// The cluster time is the node's own raw clock: a leader stamps proposals and judges reads
    /// with its wall clock, however wrong (the design before [`crate::clock`]).
    RawLeaderClock,
    /// A driver bug, not a core one (core never reads it; the simulator's driver does): on an
    /// fsync error, carry on as if the data were durable instead of crashing.
    ContinueAfterFailedFsync,
    /// A new leader proposes a membership change before an entry of its own term committed
    /// (Ongaro's 2015 single-server change bug): an uncommitted change of the previous leader
    /// and this one can then have disjoint majorities.
    ChangeBeforeOwnTermCommit,
    /// Request ids restart at every start (the driver reads this and numbers its requests from
    /// 0 again) and a ReadIndex answer is taken from whoever sends it: an answer meant for the
    /// node's previous life can complete a new read with the same id, at an old index.
    RequestIdsReset,
}

/// Who is waiting for a read index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    Local(ReadId),
    Remote(NodeId, ReadId),
}

#[derive(Clone, Debug)]
struct PendingRead {
    reader: Reader,
    index: LogIndex,
    /// The ReadIndex round that confirms this read: it started after the read arrived.
    seq: u64,
}

#[derive(Clone, Debug)]
struct Transfer {
    target: NodeId,
    deadline: Instant,
}

/// A read this follower forwarded to the leader: only that leader's answer, in that term, is
/// taken (a delayed answer to another read with the same id must never serve this one).
#[derive(Clone, Copy, Debug)]
struct ForwardedRead {
    leader: NodeId,
    term: Term,
    /// When the read is given up if no answer came.
    deadline: Instant,
}

/// A snapshot being received in chunks.
#[derive(Clone, Debug)]
struct IncomingSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// Status of one member as the leader sees it, for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: NodeId,
    pub voter: bool,
    pub match_index: LogIndex,
    pub last_contact: Option<Instant>,
}

/// An election this node runs (a pre-vote round or the real one).
struct Campaign {
    /// A pre-vote round asks whether the others would vote, without moving to a new term.
    pre_vote: bool,
    /// Answers so far, this node's own included.
    votes: BTreeMap<NodeId, bool>,
}

/// How an election stands after a vote was counted.
enum Tally {
    Won,
    Lost,
    Pending,
}

/// What exists only while this node leads (openraft's `Option<Box<Leader>>`): created by
/// `become_leader`, dropped with everything in it when the leadership ends
/// (`leave_leadership`), so nothing of one leadership can leak into the next.
struct Leader {
    progress: BTreeMap<NodeId, Progress>,
    transfer: Option<Transfer>,
    /// Bytes of the entries appended and not yet committed (`pending_proposal_bytes_max`).
    uncommitted_bytes: usize,
    /// The ReadIndex round last started by this leader (0: none yet).
    read_seq: u64,
    pending_reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    reads_awaiting_commit: Vec<Reader>,
    /// Members the leader must send appends to when the next `Ready` is built.
    append_needed: BTreeSet<NodeId>,
    heartbeat_deadline: Instant,
    check_quorum_deadline: Instant,
}

/// The leader state of a node that must be leading (its callers checked the role).
macro_rules! lead {
    ($s:ident) => {
        $s.leader.as_deref_mut().expect("leader state exists while leading")
    };
}
macro_rules! lead_ref {
    ($s:ident) => {
        $s.leader.as_deref().expect("leader state exists while leading")
    };
}

pub struct RaftNode {
    cfg: Config,
    id: NodeId,
    rng: ChaCha8Rng,
    now: Instant,

    role: Role,
    current_term: Term,
    voted_for: Option<NodeId>,
    leader_id: Option<NodeId>,
    log: RaftLog,
    commit_index: LogIndex,
    last_applied: LogIndex,
    /// Committed entries up to here have been handed to the driver in a `Ready`.
    applying: LogIndex,

    membership: Membership,
    membership_index: LogIndex,
    /// This node was a member of a committed membership (so a committed membership without it
    /// means it was removed, not that it is still joining).
    was_committed_member: bool,
    /// The leader said this node is not a member (see [`RaftNode::removed`]).
    told_removed: bool,

    election_deadline: Instant,
    last_leader_contact: Option<Instant>,

    /// The election this node runs: `Some` exactly when `role` is `Candidate`.
    campaign: Option<Campaign>,
    /// What exists only while this node leads: `Some` exactly when `role` is `Leader`.
    leader: Option<Box<Leader>>,
    /// Reads this follower forwarded to the leader.
    forwarded_reads: BTreeMap<ReadId, ForwardedRead>,

    /// The latest snapshot, sent to followers that are too far behind. `None` once compacted
    /// only if the driver released the data (see [`RaftNode::release_snapshot_data`]).
    snapshot: Option<Snapshot>,
    /// A follower needs a snapshot and no data is held: the driver must provide one.
    snapshot_wanted: bool,
    incoming_snapshot: Option<IncomingSnapshot>,
    /// Decides whether a snapshot received from a leader can be installed (see
    /// [`RaftNode::set_snapshot_check`]).
    snapshot_check: Option<SnapshotCheck>,

    // What the next Ready carries. The hard state last handed out in a `Ready` (persisted once
    // the driver acknowledges it), to hand out only changes.
    hard_state_handed_out: HardState,
    /// Sequence numbers of the `Ready`s handed out and acknowledged: a driver must acknowledge
    /// every non-empty `Ready`, in order (checked in release builds).
    readies_issued: u64,
    readies_acked: u64,
    snapshot_to_install: Option<Snapshot>,
    messages: Vec<Message>,
    read_states: Vec<ReadState>,
    aborted_reads: Vec<ReadId>,
    must_sync_votes: bool,
    /// Peers' clock offsets, for [`RaftNode::cluster_time`].
    clock: ClockSamples,

    #[cfg(feature = "mutations")]
    mutation: Option<Mutation>,
}

impl RaftNode {
    /// Creates a node from what it persisted (or [`Persisted::bootstrap`] / the default for a
    /// node joining an existing cluster). The driver must already have restored its state
    /// machine from `persisted.snapshot`; the committed entries after it come in `Ready`s.
    pub fn new(
        cfg: Config,
        persisted: Persisted,
        seed: u64,
        now: Instant,
    ) -> Result<RaftNode, crate::config::ConfigError> {
        cfg.validate()?;
        let snapshot_meta = persisted.snapshot.as_ref().map(|s| s.meta.clone()).unwrap_or_default();
        let log = RaftLog::restore(snapshot_meta.clone(), persisted.entries);
        let (membership_index, membership) = log.membership_at(log.last_index());
        let hs = persisted.hard_state;
        let commit_index = hs.commit_index.min(log.last_index()).max(snapshot_meta.last_index);
        let mut node = RaftNode {
            id: cfg.id,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now,
            role: Role::Follower,
            current_term: hs.current_term,
            voted_for: hs.voted_for,
            leader_id: None,
            log,
            commit_index,
            last_applied: snapshot_meta.last_index,
            applying: snapshot_meta.last_index,
            membership,
            membership_index,
            was_committed_member: false,
            told_removed: false,
            election_deadline: now,
            last_leader_contact: None,
            campaign: None,
            leader: None,
            forwarded_reads: BTreeMap::new(),
            snapshot: persisted.snapshot.filter(|s| s.meta.last_index > LogIndex(0)),
            incoming_snapshot: None,
            hard_state_handed_out: HardState {
                current_term: hs.current_term,
                voted_for: hs.voted_for,
                commit_index,
            },
            snapshot_to_install: None,
            readies_issued: 0,
            readies_acked: 0,
            snapshot_check: None,
            snapshot_wanted: false,
            messages: Vec::new(),
            read_states: Vec::new(),
            aborted_reads: Vec::new(),
            must_sync_votes: false,
            clock: ClockSamples::new(4 * cfg.election_timeout_ms),
            #[cfg(feature = "mutations")]
            mutation: None,
            cfg,
        };
        node.reset_election_deadline();
        node.note_committed_membership();
        if node.membership.voters.len() == 1 && node.membership.is_voter(node.id) {
            // The only voter has no one to wait for or to disrupt: campaign at the first tick.
            node.election_deadline = now;
        }
        Ok(node)
    }

    /// The time this node stamps proposals and judges expiry at: its own clock corrected by the
    /// cluster's (see [`crate::clock`]). A leader uses the lower median of the voters' clocks it
    /// has sampled; a follower follows its leader's heartbeats. Not monotonic across changes of
    /// samples or leaders; callers keep their own floor.
    pub fn cluster_time(&self) -> Instant {
        #[cfg(feature = "mutations")]
        if self.mutation == Some(Mutation::RawLeaderClock) {
            return self.now;
        }
        let offset = match (self.role, self.clock.leader_offset_ms()) {
            (Role::Follower, Some(leader)) => leader,
            _ => self.clock.median_offset_ms(self.id, self.membership.voters.iter().copied()),
        };
        clock::shift(self.now, offset)
    }

    /// The clock offset this node observed for `peer` (their clock minus ours), if any.
    pub fn clock_offset_ms(&self, peer: NodeId) -> Option<i64> {
        self.clock.offset_of(peer)
    }

    /// Plants a bug (simulator mutation tests only).
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&mut self, mutation: Option<Mutation>) {
        self.mutation = mutation;
        if mutation == Some(Mutation::ForgetTermOnRestart) {
            self.current_term = Term(0);
            self.voted_for = None;
            self.hard_state_handed_out.current_term = Term(0);
            self.hard_state_handed_out.voted_for = None;
        }
    }

    #[cfg(feature = "mutations")]
    fn mutated(&self, m: Mutation) -> bool {
        self.mutation == Some(m)
    }

    // ----- accessors -----

    pub fn id(&self) -> NodeId {
        self.id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.current_term
    }
    pub fn voted_for(&self) -> Option<NodeId> {
        self.voted_for
    }
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }
    pub fn last_applied(&self) -> LogIndex {
        self.last_applied
    }
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn membership(&self) -> &Membership {
        &self.membership
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Whether a membership change is appended but not yet committed.
    pub fn membership_change_pending(&self) -> bool {
        self.membership_index > self.commit_index
    }
    /// Whether a leadership transfer is under way on this leader.
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.leader.as_ref().and_then(|l| l.transfer.as_ref()).map(|t| t.target)
    }
    /// This node is no longer a member: a membership without it was committed after one with
    /// it, or the leader said so ([`MessageBody::Removed`]). It no longer campaigns; the driver
    /// should stop it.
    pub fn removed(&self) -> bool {
        self.told_removed
            || (self.was_committed_member
                && self.membership_index <= self.commit_index
                && !self.membership.contains(self.id))
    }
    /// Replication status of every member, as known by this node (meaningful on the leader).
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.membership
            .members()
            .map(|id| {
                let p = self.leader.as_ref().and_then(|l| l.progress.get(&id));
                let (match_index, last_contact) = if id == self.id {
                    (self.log.persisted_index(), Some(self.now))
                } else {
                    (p.map_or(LogIndex(0), |p| p.match_index), p.and_then(|p| p.last_contact))
                };
                PeerStatus { id, voter: self.membership.is_voter(id), match_index, last_contact }
            })
            .collect()
    }
    /// The earliest instant at which [`RaftNode::tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        match self.role {
            Role::Leader => {
                let l = lead_ref!(self);
                let mut d = l.heartbeat_deadline;
                if self.cfg.check_quorum {
                    d = d.min(l.check_quorum_deadline);
                }
                if let Some(t) = &l.transfer {
                    d = d.min(t.deadline);
                }
                d
            }
            _ => {
                let read_deadline = self.forwarded_reads.values().map(|r| r.deadline).min();
                read_deadline.map_or(self.election_deadline, |d| d.min(self.election_deadline))
            }
        }
    }

    // ----- inputs -----

    /// Time has passed: maybe start an election, send heartbeats or check the quorum.
    pub fn tick(&mut self, now: Instant) {
        self.observe_time(now);
        // A forwarded read whose answer was lost is given up rather than leaked.
        let now = self.now;
        let expired: Vec<ReadId> = self
            .forwarded_reads
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.forwarded_reads.remove(&id);
            self.aborted_reads.push(id);
        }
        match self.role {
            Role::Leader => self.tick_leader(),
            Role::Follower | Role::Candidate => {
                if self.now >= self.election_deadline {
                    if self.can_campaign() {
                        if self.cfg.pre_vote {
                            self.campaign(true, false);
                        } else {
                            self.campaign(false, false);
                        }
                    } else {
                        self.reset_election_deadline();
                        self.ask_for_leader();
                    }
                }
            }
        }
        self.check_invariants();
    }

    /// Proposes a command. Returns the index and term it was appended at: the proposal took
    /// effect if and only if the entry applied at that index has that term.
    pub fn propose(&mut self, now: Instant, data: Bytes) -> Result<(LogIndex, Term), ProposeError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader_hint: self.leader_id });
        }
        if lead_ref!(self).transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if data.len() > self.cfg.entry_bytes_max {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                limit: self.cfg.entry_bytes_max,
            });
        }
        let pending = (self.log.last_index().0 - self.commit_index.0) as usize;
        if pending >= self.cfg.pending_proposals_max {
            return Err(ProposeError::TooManyPending { limit: self.cfg.pending_proposals_max });
        }
        let uncommitted = lead_ref!(self).uncommitted_bytes;
        if uncommitted + data.len() > self.cfg.pending_proposal_bytes_max && uncommitted > 0 {
            return Err(ProposeError::TooManyPendingBytes {
                limit: self.cfg.pending_proposal_bytes_max,
            });
        }
        let index = self.append_as_leader(EntryPayload::Command(data));
        Ok((index, self.current_term))
    }

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
                let target = *p.promotion_target.get_or_insert(commit_index);
                let recent = p.last_contact.is_some_and(|t| now.saturating_since(t) < timeout);
                if !recent {
                    return Err(MembershipError::NotResponding { id });
                }
                let match_index = p.match_index;
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
        let index = self.append_as_leader(EntryPayload::Membership(next));
        Ok(index)
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
        l.transfer = Some(Transfer { target, deadline });
        let caught_up = l.progress.get(&target).is_some_and(|p| p.match_index == last_index);
        if !caught_up {
            l.append_needed.insert(target);
        }
        tracing::info!(node = %self.id, term = %self.current_term, %target, "leadership transfer started");
        if caught_up {
            self.send(target, MessageBody::TimeoutNow);
        }
        Ok(())
    }

    /// The metadata a snapshot of the state machine at `index` carries: `None` unless `index`
    /// is applied and still in the log.
    pub fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        if index > self.last_applied || index <= self.log.snapshot_meta().last_index {
            return None;
        }
        let last_term = self.log.term_at(index)?;
        let (_, membership) = self.log.membership_at(index);
        Some(SnapshotMeta { last_index: index, last_term, membership })
    }

    /// The driver took a snapshot of the state machine at `index` (which must be applied):
    /// the log up to it is dropped and the snapshot is kept to send to lagging followers (until
    /// [`RaftNode::release_snapshot_data`]).
    pub fn compact(&mut self, index: LogIndex, data: Bytes) -> Result<(), CompactError> {
        if index > self.last_applied {
            return Err(CompactError::NotApplied { index, applied: self.last_applied });
        }
        let snapshot_index = self.log.snapshot_meta().last_index;
        if index <= snapshot_index {
            return Err(CompactError::AlreadyCompacted { index, snapshot_index });
        }
        let meta = self.snapshot_meta_at(index).expect("an applied, uncompacted index");
        self.log.install_snapshot(meta.clone());
        tracing::info!(node = %self.id, index = %index, bytes = data.len(), "log compacted into snapshot");
        self.snapshot = Some(Snapshot { meta, data });
        self.snapshot_wanted = false;
        Ok(())
    }

    /// Drops the snapshot data held for sending to followers, unless one is receiving it or
    /// needs it (its next entry is compacted away). A cache's snapshot is as large as the cache,
    /// so holding it doubles the memory of a node; when a follower needs one later,
    /// [`RaftNode::wants_snapshot`] asks the driver for it.
    pub fn release_snapshot_data(&mut self) {
        let compacted = self.log.snapshot_meta().last_index;
        let needed = self.leader.as_ref().is_some_and(|l| {
            l.progress.values().any(|p| {
                matches!(p.state, ReplicationState::Snapshot { .. }) || p.next_index <= compacted
            })
        });
        if self.snapshot.is_some() && !needed {
            self.snapshot = None;
        }
    }

    /// A follower needs a snapshot and the data was released: the driver provides the state
    /// machine at an applied index, with [`RaftNode::compact`] if that is past the log's
    /// snapshot index, else with [`RaftNode::provide_snapshot_data`]. Replication to that
    /// follower resumes with its next probe.
    pub fn wants_snapshot(&self) -> bool {
        self.snapshot_wanted
    }

    /// Gives back the data of the log's current snapshot (after a release): `snapshot` must be
    /// the state machine at exactly that snapshot's index, else it is refused.
    pub fn provide_snapshot_data(&mut self, snapshot: Snapshot) -> Result<(), CompactError> {
        let current = self.log.snapshot_meta();
        if snapshot.meta != *current {
            return Err(CompactError::NotCurrentSnapshot {
                index: snapshot.meta.last_index,
                snapshot_index: current.last_index,
            });
        }
        self.snapshot = Some(snapshot);
        self.snapshot_wanted = false;
        Ok(())
    }

    /// Sets the check a snapshot received from a leader must pass before it is installed: the
    /// state machine's own decoder, so bytes it cannot restore are refused on receipt (and never
    /// persisted or applied) instead of failing later in the driver.
    pub fn set_snapshot_check(&mut self, check: SnapshotCheck) {
        self.snapshot_check = Some(check);
    }

    /// Handles a message from a peer.
    pub fn step(&mut self, now: Instant, msg: Message) -> Result<(), StepError> {
        self.observe_time(now);
        if msg.to != self.id {
            return Err(StepError::WrongRecipient { to: msg.to, this: self.id });
        }
        if msg.from == NodeId(0) {
            return Err(StepError::InvalidSender);
        }
        if msg.from == self.id {
            return Ok(());
        }
        if let Err(reason) = self.check_message(&msg) {
            return Err(StepError::Refused { from: msg.from, reason });
        }
        self.step_inner(msg);
        self.note_committed_membership();
        self.check_invariants();
        Ok(())
    }

    /// What no correct peer sends. Such a message is refused whole before it changes anything:
    /// the log code asserts its invariants, and a peer (or anyone who can reach the Raft port)
    /// must not be able to trip them.
    fn check_message(&self, msg: &Message) -> Result<(), String> {
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
        // Answers from followers of this leader's own term can be checked against what it sent.
        let own_follower = self.role == Role::Leader && msg.term == self.current_term;
        match &msg.body {
            MessageBody::AppendEntries { prev_log_index, prev_log_term, entries, .. } => {
                if *prev_log_term > msg.term {
                    return Err(format!(
                        "prev_log_term {prev_log_term} is later than the sender's term {}",
                        msg.term
                    ));
                }
                if *prev_log_index == LogIndex(0) && *prev_log_term != Term(0) {
                    return Err(format!("prev_log_term {prev_log_term} at index 0"));
                }
                let mut expected = prev_log_index.next();
                let mut term = *prev_log_term;
                for e in entries {
                    if e.index != expected {
                        return Err(format!(
                            "entry {} where {expected} was due: entries follow prev_log_index {} \
                             without a gap",
                            e.index, prev_log_index
                        ));
                    }
                    if e.term < term || e.term > msg.term {
                        return Err(format!(
                            "entry {} has term {}, outside [{term}, {}]: terms never decrease \
                             along a log nor pass the leader's",
                            e.index, e.term, msg.term
                        ));
                    }
                    term = e.term;
                    expected = expected.next();
                }
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

    /// Records that this node is in a committed membership (see [`RaftNode::removed`]).
    fn note_committed_membership(&mut self) {
        if !self.was_committed_member
            && self.membership_index <= self.commit_index
            && self.membership.contains(self.id)
        {
            self.was_committed_member = true;
        }
    }

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

    // ----- internals: time and roles -----

    fn observe_time(&mut self, now: Instant) {
        // Time never goes backwards for the node even if a driver's clock does.
        self.now = self.now.max(now);
    }

    /// Voters campaign. So does a node whose own removal is appended but not committed: it
    /// may hold the only copy of that entry, and without it no one could commit the change
    /// (it then leads a cluster it is not a voter of, commits the removal and steps down, as
    /// in section 4.2.2 of the Raft dissertation).
    fn can_campaign(&self) -> bool {
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
    fn ask_for_leader(&mut self) {
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

    fn reset_election_deadline(&mut self) {
        let base = self.cfg.election_timeout_ms;
        // Modulo bias is irrelevant for a timeout jitter.
        let jitter = self.rng.next_u64() % base;
        self.election_deadline = self.now.saturating_add_ms(base + jitter);
    }

    /// Whether this node disregards vote requests (other than a leadership transfer's) because
    /// of the leader lease that keeps a partitioned node from disrupting a healthy cluster: a
    /// follower that heard from a leader within the election timeout, or a leader, when
    /// check-quorum is on (a leader checks its quorum itself and steps down when it loses it).
    fn lease_blocks_votes(&self) -> bool {
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

    fn set_term(&mut self, term: Term) {
        assert!(term >= self.current_term, "the term never decreases");
        if term > self.current_term {
            self.current_term = term;
            self.voted_for = None;
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
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
    fn leave_leadership(&mut self) {
        tracing::info!(node = %self.id, term = %self.current_term, "stepped down as leader");
        let Some(l) = self.leader.take() else { return };
        let Leader { pending_reads, reads_awaiting_commit, .. } = *l;
        for r in pending_reads {
            self.abort_read(r.reader);
        }
        for r in reads_awaiting_commit {
            self.abort_read(r);
        }
    }

    fn abort_read(&mut self, reader: Reader) {
        match reader {
            Reader::Local(id) => self.aborted_reads.push(id),
            Reader::Remote(to, id) => {
                let leader_time = self.cluster_time();
                self.send(to, MessageBody::ReadIndexResponse { id, index: None, leader_time })
            }
        }
    }

    fn abort_forwarded_reads(&mut self) {
        let ids = std::mem::take(&mut self.forwarded_reads);
        self.aborted_reads.extend(ids.into_keys());
    }

    /// Starts an election: a pre-vote round (which, once won, becomes the real one) or the real
    /// one. A single voter decides at once; others send vote requests.
    fn campaign(&mut self, pre_vote: bool, leadership_transfer: bool) {
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
    fn tally_votes(&self) -> Tally {
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

    fn become_leader(&mut self) {
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
            .map(|id| (id, Progress::new(next)))
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
            heartbeat_deadline: self.now,
            check_quorum_deadline: self.now.saturating_add_ms(self.cfg.election_timeout_ms),
        }));
        self.append_as_leader(EntryPayload::Noop);
    }

    fn append_as_leader(&mut self, payload: EntryPayload) -> LogIndex {
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

    /// Recomputes the membership in force from the log (after an append, a truncation or a
    /// snapshot) and, on a leader, the set of followers it tracks.
    fn refresh_membership(&mut self) {
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
            let members: Vec<NodeId> =
                self.membership.members().filter(|&m| m != self.id).collect();
            l.progress.retain(|id, _| members.contains(id));
            for m in members {
                l.progress.entry(m).or_insert_with(|| {
                    let mut p = Progress::new(next);
                    p.recent_active = true;
                    p
                });
                l.append_needed.insert(m);
            }
        }
    }

    fn tick_leader(&mut self) {
        let now = self.now;
        let l = lead!(self);
        if self.cfg.check_quorum && now >= l.check_quorum_deadline {
            let quorum = self.membership.quorum();
            let mut active = usize::from(self.membership.is_voter(self.id));
            for (id, p) in l.progress.iter_mut() {
                if p.recent_active && self.membership.voters.contains(id) {
                    active += 1;
                }
                p.recent_active = false;
            }
            if active < quorum {
                tracing::warn!(node = %self.id, term = %self.current_term, active, quorum, "lost contact with a quorum");
                let term = self.current_term;
                self.become_follower(term, None);
                return;
            }
            l.check_quorum_deadline = now.saturating_add_ms(self.cfg.election_timeout_ms);
        }
        if let Some(t) = &l.transfer
            && now >= t.deadline
        {
            tracing::warn!(node = %self.id, target = %t.target, "leadership transfer timed out");
            l.transfer = None;
        }
        if now >= l.heartbeat_deadline {
            l.heartbeat_deadline = now.saturating_add_ms(self.cfg.heartbeat_interval_ms);
            self.broadcast_heartbeat();
        }
    }

    fn broadcast_heartbeat(&mut self) {
        let l = lead_ref!(self);
        let peers: Vec<(NodeId, LogIndex)> =
            l.progress.iter().map(|(id, p)| (*id, p.match_index)).collect();
        // The same for every follower: computed once per round, not once per follower.
        let (clock, cluster_time, read_seq) = (self.now, self.cluster_time(), l.read_seq);
        for (id, match_index) in peers {
            // A follower may not have every committed entry yet: never tell it to commit past
            // what it is known to store.
            let commit_index = self.commit_index.min(match_index);
            self.send(id, MessageBody::Heartbeat { commit_index, read_seq, clock, cluster_time });
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.messages.push(Message { from: self.id, to, term: self.current_term, body });
    }

    // ----- internals: replication (leader) -----

    fn flush_appends(&mut self) {
        let Some(l) = self.leader.as_deref_mut() else { return };
        for id in std::mem::take(&mut l.append_needed) {
            self.send_append(id, false);
        }
    }

    /// Sends the follower what it is missing, respecting its replication state and window.
    /// With `allow_empty`, an append without entries is sent too (to carry the commit index or
    /// to probe).
    fn send_append(&mut self, to: NodeId, allow_empty: bool) {
        // Pipelining: keep filling the window while there is more to send.
        let mut allow_empty = allow_empty;
        while self.send_one_append(to, allow_empty) {
            allow_empty = false;
        }
    }

    /// One append to `to`, if its state and window allow; returns whether another may follow at
    /// once (replicating, more entries to send, room in the window).
    fn send_one_append(&mut self, to: NodeId, allow_empty: bool) -> bool {
        let Some(p) = self.leader.as_ref().and_then(|l| l.progress.get(&to)) else { return false };
        match p.state {
            ReplicationState::Snapshot { .. } => return false,
            ReplicationState::Probe if p.probe_sent => return false,
            ReplicationState::Replicate if p.inflight.len() >= self.cfg.inflight_appends_max => {
                return false;
            }
            _ => {}
        }
        let next = p.next_index;
        let prev = next.prev();
        let Some(prev_term) = self.log.term_at(prev) else {
            self.start_snapshot(to);
            return false;
        };
        let entries = self.log.slice(next, self.cfg.append_entries_max, self.cfg.append_bytes_max);
        if entries.is_empty() && !allow_empty && p.state == ReplicationState::Replicate {
            return false;
        }
        let p = lead!(self).progress.get_mut(&to).expect("checked above");
        let last = entries.last().map(|e| e.index);
        match p.state {
            ReplicationState::Replicate => {
                if let Some(last) = last {
                    p.next_index = last.next();
                    p.inflight.push_back(last);
                }
            }
            ReplicationState::Probe => p.probe_sent = true,
            ReplicationState::Snapshot { .. } => unreachable!(),
        }
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
        lead_ref!(self).progress.get(&to).is_some_and(|p| {
            p.state == ReplicationState::Replicate
                && p.next_index <= self.log.last_index()
                && p.inflight.len() < self.cfg.inflight_appends_max
        })
    }

    fn start_snapshot(&mut self, to: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            // The data was released: ask the driver for it; the next probe sends it.
            self.snapshot_wanted = true;
            return;
        };
        let last_index = snapshot.meta.last_index;
        tracing::info!(node = %self.id, follower = %to, index = %last_index, "sending snapshot");
        if let Some(p) = lead!(self).progress.get_mut(&to) {
            p.state = ReplicationState::Snapshot { last_index, offset: 0 };
            p.inflight.clear();
        }
        self.send_snapshot_chunk(to);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snapshot) = &self.snapshot else { return };
        let Some(p) = self.leader.as_deref_mut().and_then(|l| l.progress.get_mut(&to)) else {
            return;
        };
        let ReplicationState::Snapshot { last_index, offset } = p.state else { return };
        let offset = if last_index == snapshot.meta.last_index {
            offset
        } else {
            // A newer snapshot replaced the one being sent: start over with it.
            let last_index = snapshot.meta.last_index;
            tracing::info!(node = %self.id, follower = %to, index = %last_index, "sending snapshot");
            p.state = ReplicationState::Snapshot { last_index, offset: 0 };
            p.inflight.clear();
            0
        };
        let total = snapshot.data.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + self.cfg.snapshot_chunk_bytes_max).min(snapshot.data.len());
        let data = snapshot.data.slice(start..end);
        let done = end == snapshot.data.len();
        let meta = snapshot.meta.clone();
        self.send(to, MessageBody::InstallSnapshot { meta, offset: start as u64, data, done });
    }

    fn maybe_commit(&mut self) {
        let mut matches: Vec<LogIndex> = self
            .membership
            .voters
            .iter()
            .map(|id| {
                if *id == self.id {
                    self.log.persisted_index()
                } else {
                    lead_ref!(self).progress.get(id).map_or(LogIndex(0), |p| p.match_index)
                }
            })
            .collect();
        let candidate = quorum_value(&mut matches);
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

    fn set_commit(&mut self, index: LogIndex) {
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

    fn on_leader_commit(&mut self) {
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
                .max_by_key(|(_, p)| p.match_index)
                .map(|(id, p)| (*id, p.match_index));
            if let Some((succ, m)) = successor
                && m == self.log.last_index()
            {
                self.send(succ, MessageBody::TimeoutNow);
            }
            let term = self.current_term;
            self.become_follower(term, None);
        }
    }

    // ----- internals: reads -----

    fn leader_read(&mut self, reader: Reader) {
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

    fn complete_read(&mut self, reader: Reader, index: LogIndex) {
        let leader_time = self.cluster_time();
        match reader {
            Reader::Local(id) => self.read_states.push(ReadState { id, index, leader_time }),
            Reader::Remote(to, id) => self
                .send(to, MessageBody::ReadIndexResponse { id, index: Some(index), leader_time }),
        }
    }

    fn advance_reads(&mut self) {
        let l = lead_ref!(self);
        let mut acked: Vec<u64> = self
            .membership
            .voters
            .iter()
            .map(|id| {
                if *id == self.id {
                    l.read_seq
                } else {
                    l.progress.get(id).map_or(0, |p| p.read_seq_acked)
                }
            })
            .collect();
        let confirmed = quorum_value(&mut acked);
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

    // ----- internals: message handling -----

    fn step_inner(&mut self, msg: Message) {
        let from = msg.from;
        if let MessageBody::Removed { membership_index } = msg.body {
            // Only from a leader of this node's term or later (a deposed leader does not know
            // the members added since), and only if this node's log holds no later membership
            // that includes it. (Anyone who can reach the Raft port could send it; the peer
            // token and the cluster id are what keep strangers out.)
            let newer_self =
                self.membership_index > membership_index && self.membership.contains(self.id);
            if !self.told_removed
                && self.role != Role::Leader
                && msg.term >= self.current_term
                && !newer_self
            {
                tracing::warn!(node = %self.id, leader = %from, "the leader says this node is not a member");
                self.told_removed = true;
                if self.role == Role::Candidate {
                    let term = self.current_term;
                    self.become_follower(term, None);
                }
            }
            return;
        }
        // A leader that has committed an entry of its term holds every committed entry and
        // knows the commit index, so a node in neither its latest nor its committed membership is
        // not in the cluster: tell it, and ignore the message (a removed voter that campaigns
        // must not depose the leader). A message of a later term is handled as usual (this
        // leader may be the one that is behind), except a pre-vote, which asks for term + 1.
        let pre_vote = matches!(msg.body, MessageBody::RequestVote { pre_vote: true, .. });
        if self.role == Role::Leader
            && (msg.term <= self.current_term || (pre_vote && msg.term == self.current_term.next()))
            && self.log.term_at(self.commit_index) == Some(self.current_term)
            && !self.is_member_or_committed_member(from)
        {
            tracing::debug!(node = %self.id, %from, "message from a node that is not a member");
            let membership_index = self.membership_index;
            self.send(from, MessageBody::Removed { membership_index });
            return;
        }
        if msg.term > self.current_term {
            match &msg.body {
                MessageBody::RequestVote { leadership_transfer, .. }
                    if !leadership_transfer && self.lease_blocks_votes() =>
                {
                    // A node that cannot hear the leader must not depose it (check-quorum lease).
                    return;
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse { pre_vote: true, granted: true, .. } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => self.become_follower(msg.term, Some(from)),
                _ => self.become_follower(msg.term, None),
            }
        } else if msg.term < self.current_term {
            match msg.body {
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    // A deposed leader learns the new term from our answer and steps down.
                    self.send(
                        from,
                        MessageBody::HeartbeatResponse {
                            read_seq: 0,
                            last_index: self.log.last_index(),
                            clock: self.now,
                        },
                    );
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    self.send(
                        from,
                        MessageBody::RequestVoteResponse {
                            pre_vote: true,
                            granted: false,
                            clock: self.now,
                        },
                    );
                }
                _ => {}
            }
            return;
        }

        match msg.body {
            MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, .. } => {
                self.handle_request_vote(from, msg.term, pre_vote, last_log_index, last_log_term)
            }
            MessageBody::RequestVoteResponse { pre_vote, granted, clock } => {
                self.observe_clock(from, clock);
                let expected = if pre_vote { self.current_term.next() } else { self.current_term };
                let counts = msg.term == expected || (!granted && msg.term == self.current_term);
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
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
            } => {
                self.accept_leader(from);
                self.handle_append_entries(
                    from,
                    prev_log_index,
                    prev_log_term,
                    entries,
                    leader_commit,
                );
            }
            MessageBody::AppendEntriesResponse {
                index,
                success,
                conflict_term,
                conflict_index,
            } => self.handle_append_response(from, index, success, conflict_term, conflict_index),
            MessageBody::Heartbeat { commit_index, read_seq, clock, cluster_time } => {
                self.accept_leader(from);
                self.observe_clock(from, clock);
                self.clock.observe_leader(cluster_time, self.now);
                if commit_index > self.commit_index {
                    self.set_commit(commit_index.min(self.log.last_index()));
                }
                let last_index = self.log.last_index();
                let clock = self.now;
                self.send(from, MessageBody::HeartbeatResponse { read_seq, last_index, clock });
            }
            MessageBody::HeartbeatResponse { read_seq, last_index, clock } => {
                self.observe_clock(from, clock);
                if self.role != Role::Leader {
                    return;
                }
                let last = self.log.last_index();
                let now = self.now;
                let Some(p) = lead!(self).progress.get_mut(&from) else { return };
                p.recent_active = true;
                p.last_contact = Some(now);
                p.read_seq_acked = p.read_seq_acked.max(read_seq);
                p.probe_sent = false;
                if p.inflight.len() >= self.cfg.inflight_appends_max {
                    // Appends may have been lost: let one more through, which either fills the
                    // gap or is rejected and sends the follower back to probing.
                    p.inflight.pop_front();
                }
                let state = p.state.clone();
                let behind = p.match_index < last || last_index < last;
                self.advance_reads();
                match state {
                    ReplicationState::Snapshot { .. } => self.send_snapshot_chunk(from),
                    // In Replicate, `next_index` is already past what was sent: if the follower
                    // reports less than that, appends were lost. An (empty) append at
                    // `next_index` then gets rejected with a hint and replication resumes from it.
                    _ if behind => self.send_append(from, true),
                    _ => {}
                }
            }
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                self.accept_leader(from);
                self.handle_install_snapshot(from, meta, offset, data, done);
            }
            MessageBody::InstallSnapshotResponse { last_index, next_offset, done, rejected } => {
                self.handle_snapshot_response(from, last_index, next_offset, done, rejected)
            }
            MessageBody::ReadIndex { id } => {
                if self.role == Role::Leader && self.membership.contains(from) {
                    self.leader_read(Reader::Remote(from, id));
                } else {
                    let leader_time = self.cluster_time();
                    self.send(
                        from,
                        MessageBody::ReadIndexResponse { id, index: None, leader_time },
                    );
                }
            }
            MessageBody::ReadIndexResponse { id, index, leader_time } => {
                let asked = self.forwarded_reads.get(&id);
                #[cfg(feature = "mutations")]
                let asked = asked.map(|r| {
                    if self.mutation == Some(Mutation::RequestIdsReset) {
                        ForwardedRead { leader: from, term: msg.term, ..*r }
                    } else {
                        *r
                    }
                });
                if asked.is_some_and(|r| r.leader == from && r.term == msg.term) {
                    self.forwarded_reads.remove(&id);
                    match index {
                        Some(index) => self.read_states.push(ReadState { id, index, leader_time }),
                        None => self.aborted_reads.push(id),
                    }
                }
            }
            MessageBody::Removed { .. } => unreachable!("handled at the top"),
            MessageBody::TimeoutNow => {
                if self.role != Role::Leader && self.can_campaign() {
                    tracing::info!(node = %self.id, from = %from, "campaigning at once on leadership transfer");
                    self.campaign(false, true);
                }
            }
        }
    }

    fn is_member_or_committed_member(&self, id: NodeId) -> bool {
        if self.membership.contains(id) {
            return true;
        }
        self.membership_change_pending() && self.log.membership_at(self.commit_index).1.contains(id)
    }

    /// A message of the current term from the leader: follow it.
    /// Samples a member's clock (non-members are not kept: the table stays bounded).
    fn observe_clock(&mut self, from: NodeId, clock: Instant) {
        if self.membership.contains(from) {
            self.clock.observe(from, clock, self.now);
        }
    }

    fn accept_leader(&mut self, from: NodeId) {
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

    fn handle_request_vote(
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

    fn handle_append_entries(
        &mut self,
        from: NodeId,
        mut prev_log_index: LogIndex,
        mut prev_log_term: Term,
        mut entries: Vec<Entry>,
        leader_commit: LogIndex,
    ) {
        if prev_log_index < self.commit_index {
            // Everything up to our commit index already matches the leader's log: go on as if
            // the append started there.
            let skip = (self.commit_index.0 - prev_log_index.0) as usize;
            let rest: Vec<Entry> = entries.into_iter().skip(skip).collect();
            let prev_term = self.log.term_at(self.commit_index);
            if let Some(prev_term) = prev_term {
                prev_log_index = self.commit_index;
                prev_log_term = prev_term;
                entries = rest;
            } else {
                // Our commit index is inside our snapshot: reply with it.
                let index = self.commit_index;
                self.send(
                    from,
                    MessageBody::AppendEntriesResponse {
                        index,
                        success: true,
                        conflict_term: None,
                        conflict_index: LogIndex(0),
                    },
                );
                return;
            }
        }
        if !self.log.matches(prev_log_index, prev_log_term) {
            let (conflict_term, conflict_index) = match self.log.term_at(prev_log_index) {
                Some(t) => (Some(t), self.log.first_index_of_term_at(prev_log_index)),
                None => (None, self.log.last_index().next().min(prev_log_index)),
            };
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    index: prev_log_index,
                    success: false,
                    conflict_term,
                    conflict_index,
                },
            );
            return;
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
        self.send(
            from,
            MessageBody::AppendEntriesResponse {
                index: last_new,
                success: true,
                conflict_term: None,
                conflict_index: LogIndex(0),
            },
        );
    }

    fn handle_append_response(
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
        p.recent_active = true;
        p.last_contact = Some(now);
        if success {
            let index = index.min(last);
            let advanced = p.update_match(index);
            if p.state == ReplicationState::Probe {
                p.become_replicate();
            }
            if advanced {
                self.maybe_commit();
            }
            // A commit can end the leadership (a leader that removed itself steps down).
            if let Some(l) = self.leader.as_deref()
                && let Some(t) = &l.transfer
                && t.target == from
                && l.progress.get(&from).is_some_and(|p| p.match_index == last)
            {
                self.send(from, MessageBody::TimeoutNow);
            }
            self.send_append(from, false);
            return;
        }
        // Rejection. Stale if it is about an index we already know matches, or (probing) about
        // an append other than the one outstanding.
        if index <= p.match_index {
            return;
        }
        if p.state == ReplicationState::Probe && index != p.next_index.prev() {
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
        // Never go below what is known to match, never stay at the rejected point.
        p.next_index = hint.min(index).max(p.match_index.next());
        p.become_probe();
        self.send_append(from, false);
    }

    /// Tells the sender to start the snapshot at `last_index` over from offset 0.
    fn refuse_snapshot(&mut self, to: NodeId, last_index: LogIndex) {
        let body = MessageBody::InstallSnapshotResponse {
            last_index,
            next_offset: 0,
            done: false,
            rejected: true,
        };
        self.send(to, body);
    }

    fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let last_index = meta.last_index;
        if last_index <= self.commit_index {
            // We already have everything it contains.
            self.incoming_snapshot = None;
            self.send(
                from,
                MessageBody::InstallSnapshotResponse {
                    last_index: self.commit_index,
                    next_offset: 0,
                    done: true,
                    rejected: false,
                },
            );
            return;
        }
        if offset == 0 {
            self.incoming_snapshot =
                Some(IncomingSnapshot { meta: meta.clone(), data: Vec::new() });
        }
        let expected = match &self.incoming_snapshot {
            Some(s) if s.meta == meta => s.data.len() as u64,
            _ => 0,
        };
        if offset != expected || (offset != 0 && self.incoming_snapshot.is_none()) {
            self.send(
                from,
                MessageBody::InstallSnapshotResponse {
                    last_index,
                    next_offset: expected,
                    done: false,
                    rejected: true,
                },
            );
            return;
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        if incoming.data.len() as u64 + data.len() as u64 > self.cfg.snapshot_bytes_max {
            tracing::warn!(node = %self.id, limit = self.cfg.snapshot_bytes_max, "incoming snapshot exceeds the size limit");
            self.incoming_snapshot = None;
            self.refuse_snapshot(from, last_index);
            return;
        }
        incoming.data.extend_from_slice(&data);
        let next_offset = incoming.data.len() as u64;
        if !done {
            self.send(
                from,
                MessageBody::InstallSnapshotResponse {
                    last_index,
                    next_offset,
                    done: false,
                    rejected: false,
                },
            );
            return;
        }
        let incoming = self.incoming_snapshot.take().expect("set above");
        if let Some(Err(reason)) = self.snapshot_check.map(|check| check(&incoming.data)) {
            // Nothing was installed: the log, commit index and state machine are untouched, and
            // the sender starts over from offset 0 if it insists.
            tracing::warn!(node = %self.id, %from, index = %last_index, %reason, "refusing a snapshot that does not decode");
            self.refuse_snapshot(from, last_index);
            return;
        }
        tracing::info!(node = %self.id, index = %last_index, bytes = incoming.data.len(), "installing snapshot from leader");
        let snapshot = Snapshot { meta: incoming.meta, data: Bytes::from(incoming.data) };
        self.log.install_snapshot(snapshot.meta.clone());
        self.set_commit(last_index);
        // Entries before the snapshot that were committed but not yet applied are superseded.
        self.refresh_membership();
        self.snapshot_to_install = Some(snapshot.clone());
        self.snapshot = Some(snapshot);
        self.send(
            from,
            MessageBody::InstallSnapshotResponse {
                last_index,
                next_offset,
                done: true,
                rejected: false,
            },
        );
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        _rejected: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let Some(p) = lead!(self).progress.get_mut(&from) else { return };
        p.recent_active = true;
        p.last_contact = Some(now);
        let ReplicationState::Snapshot { last_index: sending, .. } = p.state else {
            if done {
                p.update_match(last_index.min(self.log.last_index()));
            }
            return;
        };
        if done {
            p.update_match(last_index);
            p.become_probe();
            p.next_index = p.match_index.next();
            tracing::info!(node = %self.id, follower = %from, index = %last_index, "follower installed snapshot");
            self.maybe_commit();
            self.send_append(from, true);
            return;
        }
        if last_index != sending {
            return; // about an older snapshot
        }
        // Accepted: continue where the follower is; rejected: resend from where it asks.
        p.state = ReplicationState::Snapshot { last_index: sending, offset: next_offset };
        self.send_snapshot_chunk(from);
    }

    // ----- mutations (test-only planted bugs) -----

    #[cfg(feature = "mutations")]
    fn mutated_double_vote(&self) -> bool {
        self.mutated(Mutation::DoubleVote)
    }
    #[cfg(feature = "mutations")]
    fn mutated_commit_previous_term(&self) -> bool {
        self.mutated(Mutation::CommitPreviousTerm)
    }
    #[cfg(feature = "mutations")]
    fn mutated_local_reads(&self) -> bool {
        self.mutated(Mutation::LocalReads)
    }
    #[cfg(feature = "mutations")]
    fn mutated_ack_before_sync(&self) -> bool {
        self.mutated(Mutation::AckBeforeSync)
    }
    #[cfg(feature = "mutations")]
    fn mutated_vote_ignores_log(&self) -> bool {
        self.mutated(Mutation::VoteIgnoresLog)
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_vote_ignores_log(&self) -> bool {
        false
    }
    #[cfg(feature = "mutations")]
    fn mutated_follower_commit_past_match(&self) -> bool {
        self.mutated(Mutation::FollowerCommitPastMatch)
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_follower_commit_past_match(&self) -> bool {
        false
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_double_vote(&self) -> bool {
        false
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_commit_previous_term(&self) -> bool {
        false
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_local_reads(&self) -> bool {
        false
    }
    #[cfg(not(feature = "mutations"))]
    fn mutated_ack_before_sync(&self) -> bool {
        false
    }

    // ----- invariants -----

    /// Cheap invariants, checked in release builds too (after every `Ready` acknowledged and
    /// every message stepped): a node that breaks one would go on to corrupt replicated state, so
    /// it stops instead (TigerBeetle's rule; the server's panic hook exits with status 70).
    fn check_invariants(&self) {
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

#[cfg(test)]
#[path = "raft_tests.rs"]
mod tests;
