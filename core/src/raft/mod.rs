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

pub use ready::{Ready, ReadyAck};

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

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
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
    /// Node 2's cache evicts the second candidate of its policy's order instead of the first:
    /// replicas then hold different keys at the same index (what eviction decided per node,
    /// as RedisRaft and the Go system do, would cause).
    EvictionDiverges,
    /// A driver bug (core's executor reads it): a compare-and-set is decided when it is
    /// proposed, against the proposing node's applied state, and proposed without its condition
    /// (a read-modify-write in front of the log). That state lags the log, so two concurrent
    /// compare-and-sets with the same expectation can both succeed.
    CasBeforeApply,
    /// A snapshot installed from the leader does not reset the change feed: the watch history
    /// and the node's watchers go on as if they had seen the changes the snapshot covers.
    WatchGapHidden,
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

mod checks;
mod election;
mod membership;
mod read_index;
mod ready;
mod replication;
mod snapshot;
mod timers;

use timers::{Timer, Timers};

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

    /// Every timer, and the earliest as the next deadline.
    timers: Timers,
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
            timers: Timers::default(),
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
            node.timers.set(Timer::Election, now);
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

    /// Whether the state machine's planted bug is on for this node (see
    /// [`Mutation::EvictionDiverges`]).
    #[cfg(feature = "mutations")]
    pub(crate) fn eviction_diverges(&self) -> bool {
        self.mutated(Mutation::EvictionDiverges) && self.id == NodeId(2)
    }
    #[cfg(not(feature = "mutations"))]
    pub(crate) fn eviction_diverges(&self) -> bool {
        false
    }

    /// Whether the change feed's planted bug is on (see [`Mutation::WatchGapHidden`]).
    #[cfg(feature = "mutations")]
    pub(crate) fn watch_gap_hidden(&self) -> bool {
        self.mutated(Mutation::WatchGapHidden)
    }
    #[cfg(not(feature = "mutations"))]
    pub(crate) fn watch_gap_hidden(&self) -> bool {
        false
    }

    /// Whether the executor's planted bug is on (see [`Mutation::CasBeforeApply`]).
    #[cfg(feature = "mutations")]
    pub(crate) fn cas_before_apply(&self) -> bool {
        self.mutated(Mutation::CasBeforeApply)
    }
    #[cfg(not(feature = "mutations"))]
    pub(crate) fn cas_before_apply(&self) -> bool {
        false
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
                    (p.map_or(LogIndex(0), |p| p.match_index()), p.and_then(|p| p.last_contact()))
                };
                PeerStatus { id, voter: self.membership.is_voter(id), match_index, last_contact }
            })
            .collect()
    }
    /// The earliest instant at which [`RaftNode::tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        // Forwarded reads each have their own deadline (given up when it passes).
        let reads = self.forwarded_reads.values().map(|r| r.deadline).min();
        let timers = self.timers.next();
        // A follower always has its election timer and a leader its heartbeat armed.
        timers.into_iter().chain(reads).min().unwrap_or(Instant(u64::MAX))
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
                if self.timers.expired(Timer::Election, self.now) {
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

    // ----- internals: time and roles -----

    fn observe_time(&mut self, now: Instant) {
        // Time never goes backwards for the node even if a driver's clock does.
        self.now = self.now.max(now);
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        self.messages.push(Message { from: self.id, to, term: self.current_term, body });
    }

    // ----- internals: message handling -----

    /// Handles a message that passed `check_message`: a `Removed` notice, a message from a
    /// node that is no longer a member, a term to move to (or a stale one to answer), then the
    /// message itself by kind.
    fn step_inner(&mut self, msg: Message) {
        if let MessageBody::Removed { membership_index } = msg.body {
            return self.handle_removed(msg.from, msg.term, membership_index);
        }
        if self.refuse_non_member(&msg) || !self.follow_term(&msg) {
            return;
        }
        let (from, term) = (msg.from, msg.term);
        match msg.body {
            MessageBody::RequestVote { pre_vote, last_log_index, last_log_term, .. } => {
                self.handle_request_vote(from, term, pre_vote, last_log_index, last_log_term)
            }
            MessageBody::RequestVoteResponse { pre_vote, granted, clock } => {
                self.observe_clock(from, clock);
                self.handle_vote_response(from, term, pre_vote, granted);
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
                self.handle_heartbeat(from, commit_index, read_seq, cluster_time);
            }
            MessageBody::HeartbeatResponse { read_seq, last_index, clock } => {
                self.observe_clock(from, clock);
                self.handle_heartbeat_response(from, read_seq, last_index);
            }
            MessageBody::InstallSnapshot { meta, offset, data, done } => {
                self.accept_leader(from);
                self.handle_install_snapshot(from, meta, offset, data, done);
            }
            MessageBody::InstallSnapshotResponse { last_index, next_offset, done, rejected } => {
                self.handle_snapshot_response(from, last_index, next_offset, done, rejected)
            }
            MessageBody::ReadIndex { id } => self.handle_read_index(from, id),
            MessageBody::ReadIndexResponse { id, index, leader_time } => {
                self.handle_read_index_response(from, term, id, index, leader_time)
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

    /// The leader says this node is not a member. Believed only from a leader of this node's
    /// term or later (a deposed leader does not know the members added since), and only if this
    /// node's log holds no later membership that includes it. (Anyone who can reach the Raft
    /// port could send it; the peer token and the cluster id are what keep strangers out.)
    fn handle_removed(&mut self, from: NodeId, term: Term, membership_index: LogIndex) {
        let newer_self =
            self.membership_index > membership_index && self.membership.contains(self.id);
        if !self.told_removed
            && self.role != Role::Leader
            && term >= self.current_term
            && !newer_self
        {
            tracing::warn!(node = %self.id, leader = %from, "the leader says this node is not a member");
            self.told_removed = true;
            if self.role == Role::Candidate {
                let term = self.current_term;
                self.become_follower(term, None);
            }
        }
    }

    /// A leader that has committed an entry of its term holds every committed entry and knows
    /// the commit index, so a node in neither its latest nor its committed membership is not in
    /// the cluster: tell it, and ignore the message (a removed voter that campaigns must not
    /// depose the leader). A message of a later term is handled as usual (this leader may be the
    /// one that is behind), except a pre-vote, which asks for term + 1. Returns whether the
    /// message was refused.
    fn refuse_non_member(&mut self, msg: &Message) -> bool {
        let pre_vote = matches!(msg.body, MessageBody::RequestVote { pre_vote: true, .. });
        if self.role == Role::Leader
            && (msg.term <= self.current_term || (pre_vote && msg.term == self.current_term.next()))
            && self.log.term_at(self.commit_index) == Some(self.current_term)
            && !self.is_member_or_committed_member(msg.from)
        {
            tracing::debug!(node = %self.id, from = %msg.from, "message from a node that is not a member");
            let membership_index = self.membership_index;
            self.send(msg.from, MessageBody::Removed { membership_index });
            return true;
        }
        false
    }

    /// Moves to a later term the message carries (following its sender if it leads), or answers
    /// a message of an earlier term so its sender learns ours. Returns whether the message is of
    /// the current term now and should be handled.
    fn follow_term(&mut self, msg: &Message) -> bool {
        let from = msg.from;
        if msg.term > self.current_term {
            match &msg.body {
                MessageBody::RequestVote { leadership_transfer, .. }
                    if !leadership_transfer && self.lease_blocks_votes() =>
                {
                    // A node that cannot hear the leader must not depose it (check-quorum lease).
                    return false;
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {}
                MessageBody::RequestVoteResponse { pre_vote: true, granted: true, .. } => {}
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => self.become_follower(msg.term, Some(from)),
                _ => self.become_follower(msg.term, None),
            }
            true
        } else if msg.term < self.current_term {
            match msg.body {
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    // A deposed leader learns the new term from our answer and steps down.
                    let (last_index, clock) = (self.log.last_index(), self.now);
                    let body = MessageBody::HeartbeatResponse { read_seq: 0, last_index, clock };
                    self.send(from, body);
                }
                MessageBody::RequestVote { pre_vote: true, .. } => {
                    let body = MessageBody::RequestVoteResponse {
                        pre_vote: true,
                        granted: false,
                        clock: self.now,
                    };
                    self.send(from, body);
                }
                _ => {}
            }
            false
        } else {
            true
        }
    }

    /// Samples a member's clock (non-members are not kept: the table stays bounded).
    fn observe_clock(&mut self, from: NodeId, clock: Instant) {
        if self.membership.contains(from) {
            self.clock.observe(from, clock, self.now);
        }
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
}

#[cfg(test)]
mod tests;
