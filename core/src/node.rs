//! `CacheNode`: the Raft node and the cache together, with the bookkeeping every driver needs
//! (which client write finished with what result, which read may run now, expiring keys through
//! the log, snapshots at a threshold). The server and the simulator both drive a `CacheNode`
//! through `crate::exec`, so the simulator tests the code that ships; they only add IO.
//!
//! The loop `exec::Executor` runs:
//! ```text
//! node.step / tick / write / read / raft_mut().propose_membership(..)   (inputs)
//! let ready = node.ready();
//! persist ready.snapshot, ready.hard_state + ready.entries; fsync if ready.must_sync
//! send ready.messages
//! let applied = node.ready_done(ready);   // applies, resolves writes and reads, advances,
//!                                         // hands out a snapshot job, compacts
//! answer applied.writes and applied.reads
//! if let Some(job) = applied.snapshot_job:  // encode it, on another thread if you like, then
//!     write its file (job.write_data streams it), then
//!     if node.snapshot_encoded(EncodedSnapshot { meta, len, data }): compact the WAL to it
//! ```

use crate::Message;
use crate::cache::{ApplyResult, Cache, Command, Limits, Proposal};
use crate::codec::DecodeError;
use crate::config::{Config, ConfigError};
use crate::message::{Entry, EntryPayload, ReadId, Snapshot};
use crate::meter::{CacheOp, NoMeter, OpMeter, metered};
use crate::raft::{Persisted, ProposeError, RaftNode, ReadError, Ready, Role, StepError};
use crate::snapshot::{EncodedSnapshot, SnapshotJob, Snapshots, Thresholds};
use crate::types::{Instant, LogIndex, NodeId, Term};
use crate::watch::{Event, History};
use std::collections::{BTreeMap, BTreeSet};

/// Identifies a client request of the driver's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Hands out [`RequestId`]s that never repeat across restarts of a node: the high 32 bits are
/// the node's incarnation (one more at every start, persisted in the WAL as
/// `wal::WalRecord::Incarnation` before any request is taken), the low 32 bits count requests
/// within it. A follower's read ids travel to the leader, so an id reused after a restart could
/// be matched by a delayed answer to a read of the previous incarnation: a stale read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestIds {
    incarnation: u64,
    next: u64,
}

impl RequestIds {
    /// Ids for `incarnation`, which must already be durable.
    pub fn new(incarnation: u64) -> RequestIds {
        RequestIds { incarnation, next: 0 }
    }
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    /// Ids of `incarnation` with `left` of them remaining (tests of what happens when they run
    /// out).
    #[cfg(test)]
    pub(crate) fn with_left(incarnation: u64, left: u64) -> RequestIds {
        RequestIds { incarnation, next: (u64::from(u32::MAX) + 1).saturating_sub(left) }
    }
    /// The next id; `None` once this incarnation's 2^32 ids are used up, when the driver must
    /// persist the next incarnation and start a new `RequestIds`.
    pub fn next_id(&mut self) -> Option<RequestId> {
        if self.next > u64::from(u32::MAX) {
            return None;
        }
        let id = RequestId(self.incarnation.wrapping_shl(32) | self.next);
        self.next += 1;
        Some(id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub raft: Config,
    /// Take a snapshot (and compact the log) once this many entries were applied since the last
    /// one, and (see `snapshot_log_percent`) they are large enough to be worth it.
    pub snapshot_threshold: u64,
    /// ... and once the payload bytes applied since the last snapshot reach this percentage of
    /// that snapshot's size. A snapshot rewrites the whole cache, so a count alone would rewrite
    /// a 1 GiB cache every few thousand small writes; this bounds the snapshot bytes written per
    /// byte of log at 100 / `snapshot_log_percent`, while the log kept in memory stays at most
    /// that fraction of the cache (plus `snapshot_threshold` entries).
    pub snapshot_log_percent: u64,
    /// Keys removed by one leader-proposed `RemoveExpired` entry.
    pub expiry_batch_max: usize,
    /// On the leader, promote each learner to voter once it has caught up (Raft refuses with
    /// `NotCaughtUp` until then), one change at a time, tried at most once per heartbeat
    /// interval. The server always does; a test that promotes learners itself turns it off.
    pub promote_learners: bool,
}

impl NodeConfig {
    pub fn new(raft: Config) -> NodeConfig {
        NodeConfig {
            raft,
            snapshot_threshold: 10_000,
            snapshot_log_percent: 25,
            expiry_batch_max: 1_000,
            promote_learners: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("snapshot_threshold and expiry_batch_max must be greater than 0")]
    ZeroLimit,
    #[error("the persisted snapshot does not decode: {0}")]
    Snapshot(DecodeError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum WriteError {
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// Another entry was committed at the write's index: it did not take effect.
    #[error("the write was superseded after a leader change and did not take effect")]
    Superseded,
    /// The write's index was covered by a snapshot from the leader before this node applied it:
    /// it may or may not have taken effect.
    #[error("the outcome of the write is unknown (a snapshot from the leader covered it)")]
    Unknown,
    /// A committed command that does not decode: a bug or a foreign log, never client input.
    #[error("a committed entry did not decode: {0}")]
    Undecodable(DecodeError),
}

/// A write's answer: the state machine's outcome and the revision (log index) it applied at.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub revision: u64,
    pub result: ApplyResult,
}

/// How a write ended.
pub type WriteResult = Result<Written, WriteError>;

/// A request resolved by [`CacheNode::ready_done`].
#[derive(Debug, Clone)]
pub struct Applied {
    /// Writes that finished, with the state machine's answer or why they failed.
    pub writes: Vec<(RequestId, WriteResult)>,
    /// Reads that may run now against [`CacheNode::cache`], judging expiry at the given instant;
    /// or that lost their leader and should be retried or failed.
    pub reads: Vec<(RequestId, Result<Instant, ReadError>)>,
    /// A snapshot to take: the driver encodes it ([`SnapshotJob::encode`], on another thread if
    /// it likes, since the node loop need not wait) and hands the result to
    /// [`CacheNode::snapshot_encoded`], which says whether to persist it.
    pub snapshot_job: Option<SnapshotJob>,
}

/// Raft + cache + the requests waiting on them.
pub struct CacheNode {
    cfg: NodeConfig,
    raft: RaftNode,
    cache: Cache,
    /// Writes proposed here, by the index and term they were appended at.
    writes: BTreeMap<LogIndex, (Term, RequestId)>,
    /// Reads waiting for their read index to be applied, by index.
    reads_ready: BTreeMap<LogIndex, Vec<(RequestId, Instant)>>,
    /// Reads waiting for a read index.
    reads_waiting: BTreeSet<RequestId>,
    /// Writes whose entry was replaced before they were resolved, reported by the next `ready_done`.
    superseded: Vec<RequestId>,
    /// The index of the leader's outstanding `RemoveExpired` entry, to propose one at a time.
    expiry_in_flight: Option<(LogIndex, Term)>,
    /// The limits the driver's configuration asks for: a leader proposes them when the
    /// replicated ones differ (see [`CacheNode::set_desired_limits`]).
    desired_limits: Option<Limits>,
    /// The index of the leader's outstanding `SetLimits` entry, to propose one at a time.
    limits_in_flight: Option<LogIndex>,
    /// Keys evicted by applied entries, with their index, collected only when the driver asks
    /// (see [`CacheNode::report_evictions`]).
    evictions: Option<Vec<(LogIndex, String)>>,
    /// After a refused `RemoveExpired` proposal (a leadership transfer, too many pending), the
    /// next try waits until here, so an expired key cannot make `next_deadline` stay in the past
    /// and spin the driver.
    expiry_not_before: Instant,
    /// The snapshot lifecycle (see [`crate::snapshot`]).
    snapshots: Snapshots,
    now: Instant,
    /// When this node, as leader, last tried to promote a learner.
    last_promote_check: Instant,
    /// The latest cluster time this node stamped as leader: its stamps never go back, even when
    /// the cluster clock estimate does (see [`CacheNode::cluster_time`]).
    time_floor: Instant,
    /// Measures the cache operations (see [`crate::meter`]); measures nothing unless the driver
    /// sets one.
    meter: Box<dyn OpMeter>,
    /// The change feed, while the driver serves watches (see [`CacheNode::serve_watches`]).
    watch: Option<WatchFeed>,
}

/// The change feed of a node that serves watches: its history, and the events applied since
/// the driver last took them (to hand to the watchers it serves).
#[derive(Debug)]
struct WatchFeed {
    history: History,
    fresh: Vec<Event>,
    /// A snapshot from the leader was installed since the driver last took the events: the
    /// feed has a gap there (see [`CacheNode::take_watch_events`]).
    gap_at: Option<u64>,
}

impl CacheNode {
    /// Builds the node from what the driver recovered from disk; the cache is restored from the
    /// persisted snapshot and the rest of the log is re-applied through `Ready`s.
    pub fn new(
        cfg: NodeConfig,
        persisted: Persisted,
        seed: u64,
        now: Instant,
    ) -> Result<CacheNode, NodeError> {
        if cfg.snapshot_threshold == 0 || cfg.expiry_batch_max == 0 {
            return Err(NodeError::ZeroLimit);
        }
        let cache = match &persisted.snapshot {
            Some(s) if !s.data.is_empty() => {
                Cache::restore(&s.data).map_err(NodeError::Snapshot)?
            }
            _ => Cache::new(),
        };
        let thresholds =
            Thresholds { entries: cfg.snapshot_threshold, log_percent: cfg.snapshot_log_percent };
        let snapshots = Snapshots::new(thresholds, persisted.snapshot.as_ref());
        let mut raft = RaftNode::new(cfg.raft.clone(), persisted, seed, now)?;
        raft.set_snapshot_check(|data| Cache::restore(data).map(drop).map_err(|e| e.to_string()));
        Ok(CacheNode {
            cfg,
            raft,
            cache,
            writes: BTreeMap::new(),
            reads_ready: BTreeMap::new(),
            reads_waiting: BTreeSet::new(),
            superseded: Vec::new(),
            expiry_in_flight: None,
            desired_limits: None,
            limits_in_flight: None,
            evictions: None,
            expiry_not_before: now,
            snapshots,
            now,
            last_promote_check: Instant(0),
            time_floor: Instant(0),
            meter: Box::new(NoMeter),
            watch: None,
        })
    }

    /// Has `meter` measure every cache operation from now on (see [`crate::meter`]).
    pub fn set_meter(&mut self, meter: Box<dyn OpMeter>) {
        self.meter = meter;
    }

    pub(crate) fn meter(&self) -> &dyn OpMeter {
        self.meter.as_ref()
    }

    pub fn raft(&self) -> &RaftNode {
        &self.raft
    }
    /// Direct access for membership changes, leadership transfer and status.
    pub fn raft_mut(&mut self) -> &mut RaftNode {
        &mut self.raft
    }
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// A snapshot of everything applied so far, detached from the node (cheap: it shares the
    /// stored entries), for a backup: the driver encodes it off its loop with
    /// [`crate::backup::write`]. Its metadata is the applied index's, with the membership in
    /// force there. Not part of the snapshot lifecycle: the log and its files are untouched.
    pub fn backup_job(&self) -> crate::snapshot::SnapshotJob {
        let applied = self.raft.last_applied();
        let meta = self
            .raft
            .snapshot_meta_at(applied)
            // Nothing applied past the log's snapshot: that snapshot is the state.
            .unwrap_or_else(|| self.raft.log().snapshot_meta().clone());
        crate::snapshot::SnapshotJob::new(meta, &self.cache, false, false)
    }
    /// Writes and reads this node is still waiting on.
    pub fn pending_requests(&self) -> usize {
        self.writes.len()
            + self.superseded.len()
            + self.reads_waiting.len()
            + self.reads_ready.values().map(Vec::len).sum::<usize>()
    }

    /// The earliest instant at which [`CacheNode::tick`] has something to do.
    pub fn next_deadline(&self) -> Instant {
        let raft = self.raft.next_deadline();
        match (self.raft.role(), self.cache.next_deadline()) {
            (Role::Leader, Some(expiry)) if self.expiry_in_flight.is_none() => {
                // Deadlines are in cluster time; the driver's clock is this node's own.
                let cluster = self.raft.cluster_time().max(self.time_floor);
                let ahead_ms = crate::clock::diff_ms(cluster, self.now);
                let local = crate::clock::shift(expiry, -ahead_ms);
                raft.min(local.max(self.expiry_not_before))
            }
            _ => raft,
        }
    }

    /// The cluster time at `now` ([`crate::clock`]): what a write proposed at `now` is stamped
    /// with and what a TTL counts from. Never earlier than the cache clock or than any time this
    /// node handed out before.
    pub fn cluster_time(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.raft.cluster_time().max(self.cache.clock()).max(self.time_floor)
    }

    /// The absolute deadline of a TTL of `ttl_ms` given to a write proposed at `now`.
    pub fn deadline(&mut self, now: Instant, ttl_ms: u64) -> Instant {
        self.cluster_time(now).saturating_add_ms(ttl_ms)
    }

    /// The stamp of a proposal at `now`; only a leader's stamps raise the floor (a follower that
    /// has not heard a leader since it started only has its own clock, which may be bad).
    fn stamp(&mut self, now: Instant) -> Instant {
        let t = self.cluster_time(now);
        if self.raft.role() == Role::Leader {
            self.time_floor = t;
        }
        t
    }

    pub fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.raft.tick(now);
        self.promote_learners();
        self.propose_limits();
        self.propose_expiry();
        self.snapshots.compact_when_caught_up(&mut self.raft, self.now);
    }

    pub fn step(&mut self, now: Instant, msg: Message) -> Result<(), StepError> {
        self.now = self.now.max(now);
        self.raft.step(now, msg)?;
        self.snapshots.compact_when_caught_up(&mut self.raft, self.now);
        Ok(())
    }

    /// Proposes a client write. TTLs must already be absolute deadlines in cluster time
    /// ([`CacheNode::deadline`]); the entry is stamped with [`CacheNode::cluster_time`].
    pub fn write(
        &mut self,
        now: Instant,
        id: RequestId,
        command: Command,
    ) -> Result<(), WriteError> {
        let time = self.stamp(now);
        let proposal = Proposal { time, command };
        let (index, term) = self.raft.propose(self.now, proposal.encode())?;
        // A write still tracked at this index was appended by an earlier leadership of this node
        // whose log was cut: its entry is gone, so it did not take effect. Fail it now rather
        // than leave its client waiting for a timeout.
        if let Some((_, old)) = self.writes.insert(index, (term, id)) {
            self.superseded.push(old);
        }
        Ok(())
    }

    /// Asks for a linearizable read; [`CacheNode::ready_done`] reports when it may run.
    pub fn read(&mut self, now: Instant, id: RequestId) -> Result<(), ReadError> {
        self.now = self.now.max(now);
        self.raft.read_index(self.now, ReadId(id.0))?;
        self.reads_waiting.insert(id);
        Ok(())
    }

    pub fn ready(&mut self) -> Ready {
        self.raft.ready()
    }

    /// Call once the `Ready`'s snapshot, state and entries are persisted and its messages sent:
    /// installs the snapshot into the cache, applies committed entries, resolves requests,
    /// advances the Raft node, hands out a snapshot job when one is due and compacts the log
    /// when it may. (Named for when it is called, since it does all of that.)
    pub fn ready_done(&mut self, ready: Ready) -> Applied {
        let ack = ready.ack();
        let mut out = Applied { writes: Vec::new(), reads: Vec::new(), snapshot_job: None };
        out.writes.extend(self.superseded.drain(..).map(|id| (id, Err(WriteError::Superseded))));
        if let Some(s) = &ready.snapshot {
            self.install_snapshot(s, &mut out);
        }
        self.apply_entries(&ready.committed_entries, &mut out);
        for rs in &ready.read_states {
            let id = RequestId(rs.id.0);
            if self.reads_waiting.remove(&id) {
                self.reads_ready.entry(rs.index).or_default().push((id, rs.leader_time));
            }
        }
        for aborted in &ready.aborted_reads {
            let id = RequestId(aborted.0);
            if self.reads_waiting.remove(&id) {
                out.reads.push((id, Err(ReadError::Aborted)));
            }
        }
        self.raft.advance(ack);
        let applied = self.raft.last_applied();
        let runnable: Vec<LogIndex> = self.reads_ready.range(..=applied).map(|(i, _)| *i).collect();
        for i in runnable {
            for (id, leader_time) in self.reads_ready.remove(&i).expect("listed") {
                // Judge expiry by the later of the leader's clock and the log's.
                out.reads.push((id, Ok(leader_time.max(self.cache.clock()))));
            }
        }
        out.snapshot_job = self.snapshots.after_apply(&mut self.raft, &self.cache, self.now);
        out
    }

    /// A snapshot from the leader replaces the cache; the writes it covers are unknown.
    fn install_snapshot(&mut self, s: &Snapshot, out: &mut Applied) {
        match metered(self.meter.as_ref(), CacheOp::RestoreSnapshot, || Cache::restore(&s.data)) {
            Ok(cache) => self.cache = cache,
            // Raft installs only snapshots that passed this same decoder on receipt (see
            // `set_snapshot_check` in `new`), so a failure here is a bug, never input.
            Err(e) => panic!("a snapshot that passed the check does not decode: {e}"),
        }
        self.snapshots.installed(s);
        if let Some(w) = self.watch.as_mut() {
            // The restored cache records nothing yet; the feed starts over after the snapshot,
            // and events not yet handed out that it covers are dropped with the gap.
            self.cache.record_events(true);
            if self.raft.watch_gap_hidden() {
                return self.writes_covered(s, out);
            }
            let index = s.meta.last_index.0;
            w.history.snapshot_installed(index);
            w.fresh.retain(|e| e.revision > index);
            w.gap_at = Some(w.gap_at.map_or(index, |g| g.max(index)));
        }
        self.writes_covered(s, out);
    }

    /// Writes inside a snapshot from the leader may or may not have been committed: say so.
    fn writes_covered(&mut self, s: &Snapshot, out: &mut Applied) {
        let covered: Vec<LogIndex> =
            self.writes.range(..=s.meta.last_index).map(|(i, _)| *i).collect();
        for i in covered {
            let (_, id) = self.writes.remove(&i).expect("listed");
            out.writes.push((id, Err(WriteError::Unknown)));
        }
    }

    /// Applies committed entries to the cache and resolves the writes proposed here.
    fn apply_entries(&mut self, entries: &[Entry], out: &mut Applied) {
        for e in entries {
            let result = match &e.payload {
                EntryPayload::Command(data) => {
                    self.snapshots.applied(data.len());
                    match Proposal::decode(data) {
                        Ok(p) => {
                            let op = CacheOp::of(&p.command);
                            self.cache.diverge = self.raft.eviction_diverges();
                            let mut evicted = Vec::new();
                            let r = metered(self.meter.as_ref(), op, || {
                                self.cache.apply_reporting(e.index.0, &p, &mut evicted)
                            });
                            if let Some(out) = self.evictions.as_mut() {
                                out.extend(evicted.into_iter().map(|k| (e.index, k)));
                            }
                            Ok(Written { revision: e.index.0, result: r })
                        }
                        Err(err) => {
                            self.meter.failed(CacheOp::Undecodable);
                            Err(WriteError::Undecodable(err))
                        }
                    }
                }
                _ => Ok(Written { revision: e.index.0, result: ApplyResult::Set }),
            };
            if let Some((term, id)) = self.writes.remove(&e.index) {
                if term == e.term {
                    out.writes.push((id, result));
                } else {
                    out.writes.push((id, Err(WriteError::Superseded)));
                }
            }
            if self.expiry_in_flight.is_some_and(|(i, _)| i <= e.index) {
                self.expiry_in_flight = None;
            }
            if self.limits_in_flight.is_some_and(|i| i <= e.index) {
                self.limits_in_flight = None;
            }
            self.feed_watches(e.index.0);
        }
    }

    /// The driver encoded the [`SnapshotJob`] (and, if new, made its file durable), with its
    /// data if the job keeps it. Returns whether the driver must compact the WAL to it: not if
    /// it only gave Raft back the data of its current snapshot, or a snapshot from the leader
    /// superseded it.
    pub fn snapshot_encoded(&mut self, snapshot: EncodedSnapshot) -> bool {
        self.snapshots.encoded(&mut self.raft, snapshot, self.now)
    }

    /// On the leader: promote a caught-up learner (see [`NodeConfig::promote_learners`]).
    fn promote_learners(&mut self) {
        let raft = &self.raft;
        if !self.cfg.promote_learners
            || !raft.is_leader()
            || raft.membership_change_pending()
            || raft.membership().learners.is_empty()
            || self.now.saturating_since(self.last_promote_check)
                < raft.config().heartbeat_interval_ms
        {
            return;
        }
        self.last_promote_check = self.now;
        let learners: Vec<NodeId> = raft.membership().learners.iter().copied().collect();
        for id in learners {
            let change = crate::message::MembershipChange::PromoteLearner { id };
            match self.raft.propose_membership(self.now, change) {
                Ok(index) => {
                    tracing::info!(learner = %id, %index, "learner caught up: promoting it to voter");
                    return;
                }
                Err(e) => tracing::debug!(learner = %id, error = %e, "learner not promoted yet"),
            }
        }
    }

    /// Starts recording the change feed (`crate::watch`), keeping a history of at most
    /// `history_events` events: it starts after what is applied now.
    pub fn serve_watches(&mut self, history_events: usize) {
        self.cache.record_events(true);
        let applied = self.raft.last_applied().0;
        let history = History::new(applied, history_events);
        self.watch = Some(WatchFeed { history, fresh: Vec::new(), gap_at: None });
    }

    /// The change feed's history (`None` unless serving watches): a new watch replays from it.
    pub fn watch_history(&self) -> Option<&History> {
        self.watch.as_ref().map(|w| &w.history)
    }

    /// The events applied since the last call, in order, and the index of a snapshot from the
    /// leader installed meanwhile, if any: its changes are not in the feed, so a watcher that
    /// was following must be told it missed them.
    pub fn take_watch_events(&mut self) -> (Vec<Event>, Option<u64>) {
        match self.watch.as_mut() {
            Some(w) => (std::mem::take(&mut w.fresh), w.gap_at.take()),
            None => (Vec::new(), None),
        }
    }

    /// Moves what the cache recorded into the feed, up to `applied`.
    fn feed_watches(&mut self, applied: u64) {
        if let Some(w) = self.watch.as_mut() {
            let events = self.cache.take_events();
            w.history.applied(applied, events.iter().cloned());
            w.fresh.extend(events);
        }
    }

    /// Collect the keys each applied entry evicts, for [`CacheNode::take_evictions`] (the
    /// simulator's checkers; a driver that asks must drain them).
    pub fn report_evictions(&mut self) {
        self.evictions.get_or_insert_with(Vec::new);
    }

    /// The keys evicted since the last call, with the index of the entry that evicted them.
    pub fn take_evictions(&mut self) -> Vec<(LogIndex, String)> {
        self.evictions.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The memory limits this node's configuration asks for. They take effect through the log:
    /// while this node leads it proposes them whenever the replicated limits differ, so the
    /// cluster runs with its leader's configuration (give every node the same values).
    pub fn set_desired_limits(&mut self, limits: Limits) {
        self.desired_limits = Some(limits);
    }

    /// On the leader: propose the desired limits if the replicated ones differ (one at a time).
    fn propose_limits(&mut self) {
        let Some(limits) = self.desired_limits else { return };
        if self.raft.role() != Role::Leader {
            // A proposal of an earlier leadership may have been cut from the log: the next
            // leadership judges afresh.
            self.limits_in_flight = None;
            return;
        }
        // A duplicate (limits committed but not applied yet) is harmless: applying the same
        // limits again changes nothing.
        if self.limits_in_flight.is_some() || self.cache.limits() == limits {
            return;
        }
        let time = self.stamp(self.now);
        let proposal = Proposal { time, command: Command::SetLimits(limits) };
        if let Ok((at, _)) = self.raft.propose(self.now, proposal.encode()) {
            self.limits_in_flight = Some(at);
        }
    }

    fn propose_expiry(&mut self) {
        if self.raft.role() != Role::Leader
            || self.expiry_in_flight.is_some()
            || self.now < self.expiry_not_before
        {
            return;
        }
        let time = self.stamp(self.now);
        let keys = self.cache.expired_keys(time, self.cfg.expiry_batch_max);
        if keys.is_empty() {
            return;
        }
        let proposal = Proposal { time, command: Command::RemoveExpired { keys } };
        match self.raft.propose(self.now, proposal.encode()) {
            Ok(at) => self.expiry_in_flight = Some(at),
            Err(_) => {
                let retry_ms = self.cfg.raft.heartbeat_interval_ms;
                self.expiry_not_before = self.now.saturating_add_ms(retry_ms);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Membership;
    use crate::types::NodeId;
    use bytes::Bytes;

    fn single(threshold: u64) -> CacheNode {
        let mut cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        cfg.snapshot_threshold = threshold;
        let p = Persisted::bootstrap(Membership::with_voters([NodeId(1)]));
        CacheNode::new(cfg, p, 1, Instant(0)).unwrap()
    }

    /// What one `ready_done` gave, with its snapshot job already encoded and handed back (as a
    /// driver does, here on the same thread): `snapshot` is what the driver would persist.
    struct Out {
        applied: Applied,
        snapshot: Option<Snapshot>,
    }

    impl std::ops::Deref for Out {
        type Target = Applied;
        fn deref(&self) -> &Applied {
            &self.applied
        }
    }

    fn apply(n: &mut CacheNode, r: Ready) -> Out {
        let mut applied = n.ready_done(r);
        let job = applied.snapshot_job.take();
        let snapshot = job
            .map(|j| j.encode())
            .filter(|s| n.snapshot_encoded(EncodedSnapshot::with_data(s.clone())));
        Out { applied, snapshot }
    }

    /// Runs the driver loop with a perfect disk until nothing is left to do.
    fn drive(n: &mut CacheNode, applied: &mut Vec<Out>) {
        loop {
            let r = n.ready();
            if r.is_empty() {
                return;
            }
            applied.push(apply(n, r));
        }
    }

    fn leader() -> CacheNode {
        let mut n = single(1_000);
        n.tick(Instant(250));
        drive(&mut n, &mut Vec::new());
        assert!(n.raft().is_leader());
        n
    }

    fn set(key: &str, v: &str, expires_at: Option<u64>) -> Command {
        Command::Set {
            key: key.into(),
            value: Bytes::from(v.to_owned()),
            expires_at: expires_at.map(Instant),
        }
    }

    // A leader proposes the limits its configuration asks for through the log; the cache
    // applies them (so every replica does) and a write past them is refused, not stored.
    #[test]
    fn leader_proposes_its_limits_through_the_log() {
        use crate::cache::EvictionPolicy;
        let mut n = leader();
        let limits =
            Limits { max_memory_bytes: 0, max_keys: 1, policy: EvictionPolicy::NoEviction };
        n.set_desired_limits(limits);
        n.tick(Instant(300));
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        assert_eq!(n.cache().limits(), limits);
        n.write(Instant(300), RequestId(1), set("a", "1", None)).unwrap();
        n.write(Instant(300), RequestId(2), set("b", "2", None)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let results: Vec<_> = out
            .iter()
            .flat_map(|o| o.applied.writes.clone())
            .map(|(id, r)| (id, r.map(|w| w.result)))
            .collect();
        assert!(matches!(results[0], (RequestId(1), Ok(ApplyResult::Set))));
        assert!(matches!(results[1], (RequestId(2), Ok(ApplyResult::OutOfMemory { keys: 1, .. }))));
        // Once in force, nothing more is proposed.
        let last = n.raft().log().last_index();
        n.tick(Instant(400));
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.raft().log().last_index(), last);
    }

    // A node serving watches hands out the events of what it applied, at their revisions,
    // and keeps them in its history for watches that start from a revision.
    #[test]
    fn applied_writes_feed_the_watch_history() {
        use crate::watch::{EventKind, Filter};
        let mut n = leader();
        n.serve_watches(100);
        let start = n.watch_history().unwrap().first();
        n.write(Instant(300), RequestId(1), set("k", "v", None)).unwrap();
        n.write(Instant(300), RequestId(2), Command::Del { key: "k".into() }).unwrap();
        drive(&mut n, &mut Vec::new());
        let (events, gap) = n.take_watch_events();
        assert_eq!(gap, None);
        let kinds: Vec<_> = events.iter().map(|e| (e.revision, &e.kind)).collect();
        assert!(
            matches!(kinds[..], [(a, EventKind::Put { .. }), (b, EventKind::Delete { .. })] if b == a + 1 && a >= start),
            "{events:?}"
        );
        let (replayed, next) =
            n.watch_history().unwrap().replay(&Filter::Key("k".into()), Some(start)).unwrap();
        assert_eq!(replayed, events);
        assert_eq!(next, n.raft().last_applied().0 + 1);
        assert!(n.take_watch_events().0.is_empty(), "handed out once");
    }

    // A write resolves with the cache's answer once applied; a read then sees it.
    #[test]
    fn write_resolves_when_applied_and_read_sees_it() {
        let mut n = leader();
        n.write(Instant(300), RequestId(1), set("k", "v", None)).unwrap();
        n.write(Instant(300), RequestId(2), Command::Del { key: "k".into() }).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let writes: Vec<_> = out.iter().flat_map(|a| a.writes.clone()).collect();
        let first = n.raft().log().last_index().0 - 1;
        let written = |revision, result| Ok(Written { revision, result });
        assert_eq!(
            writes,
            vec![
                (RequestId(1), written(first, ApplyResult::Set)),
                (RequestId(2), written(first + 1, ApplyResult::Del { existed: true }))
            ],
            "each answer carries the revision (log index) it applied at"
        );
        n.write(Instant(301), RequestId(3), set("k", "w", None)).unwrap();
        n.read(Instant(301), RequestId(4)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let reads: Vec<_> = out.iter().flat_map(|a| a.reads.clone()).collect();
        assert_eq!(reads, vec![(RequestId(4), Ok(Instant(301)))]);
        assert_eq!(n.cache().get("k", Instant(301)), Some(Bytes::from_static(b"w")));
    }

    // An expired key is removed through the log by the leader, never earlier than its deadline.
    #[test]
    fn leader_removes_expired_keys_through_the_log() {
        let mut n = leader();
        n.write(Instant(300), RequestId(1), set("t", "v", Some(400))).unwrap();
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.next_deadline().min(Instant(400)), n.next_deadline());
        n.tick(Instant(399));
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.cache().len(), 1, "not removed before its deadline");
        n.tick(Instant(400));
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.cache().len(), 0, "removed through a RemoveExpired entry");
        assert_eq!(n.cache().expiration_index_len(), 0);
    }

    // Past the threshold the node snapshots the cache and hands the snapshot to the driver; a
    // node restored from that snapshot has the same cache.
    #[test]
    fn snapshot_at_threshold_restores_the_same_cache() {
        let mut n = single(5);
        n.tick(Instant(250));
        drive(&mut n, &mut Vec::new());
        for i in 0..10 {
            n.write(Instant(300), RequestId(i), set(&format!("k{i}"), "v", Some(10_000))).unwrap();
        }
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let snap = out.iter().rev().find_map(|a| a.snapshot.clone()).expect("a snapshot was taken");
        assert!(snap.meta.last_index >= LogIndex(5));
        let p = Persisted { snapshot: Some(snap.clone()), ..Persisted::default() };
        let cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        let restored = CacheNode::new(cfg, p, 2, Instant(0)).unwrap();
        let expected = Cache::restore(&snap.data).unwrap();
        assert_eq!(restored.cache().snapshot(), expected.snapshot());
        assert_eq!(restored.raft().log().snapshot_meta().last_index, snap.meta.last_index);
    }

    // A leader's snapshot whose bytes the cache cannot restore is refused on receipt: nothing is
    // persisted or applied (no panic in `ready_done`), the sender is told to start over, and a good
    // snapshot is still installed afterwards.
    #[test]
    fn undecodable_snapshot_from_a_leader_is_refused() {
        use crate::message::{Message, MessageBody, SnapshotMeta};
        use crate::types::Term;
        let m = Membership::with_voters([NodeId(1), NodeId(2)]);
        let cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        let mut n = CacheNode::new(cfg, Persisted::bootstrap(m.clone()), 1, Instant(0)).unwrap();
        let meta = SnapshotMeta { last_index: LogIndex(7), last_term: Term(3), membership: m };
        let install = |data: Bytes| Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(3),
            body: MessageBody::InstallSnapshot { meta: meta.clone(), offset: 0, data, done: true },
        };
        n.step(Instant(1), install(Bytes::from_static(b"\x01garbage, not a cache"))).unwrap();
        let r = n.ready();
        assert!(r.snapshot.is_none(), "nothing to persist");
        let replies: Vec<_> = r.messages.iter().map(|m| m.body.clone()).collect();
        assert!(
            replies.iter().any(|b| matches!(
                b,
                MessageBody::InstallSnapshotResponse { rejected: true, next_offset: 0, .. }
            )),
            "{replies:?}"
        );
        apply(&mut n, r);
        assert_eq!(n.raft().commit_index(), LogIndex(0));
        assert_eq!(n.raft().log().snapshot_meta().last_index, LogIndex(0));

        let mut good = Cache::new();
        good.apply(&crate::cache::Proposal { time: Instant(1), command: set("k", "v", None) });
        n.step(Instant(2), install(good.snapshot())).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        assert_eq!(n.raft().log().snapshot_meta().last_index, LogIndex(7));
        assert_eq!(n.cache().get("k", Instant(2)), Some(Bytes::from_static(b"v")));
    }

    // The entry count alone does not trigger a snapshot of a large cache: the entries since the
    // last snapshot must also hold `snapshot_log_percent` of its bytes.
    #[test]
    fn snapshot_waits_for_the_log_to_reach_a_share_of_the_cache() {
        let mut n = single(5);
        n.tick(Instant(250));
        drive(&mut n, &mut Vec::new());
        let big = "x".repeat(1000);
        let mut id = 0;
        let mut write = |n: &mut CacheNode, key: String, v: &str| {
            id += 1;
            n.write(Instant(300), RequestId(id), set(&key, v, None)).unwrap();
            let mut out = Vec::new();
            drive(n, &mut out);
            out.into_iter().find_map(|a| a.snapshot)
        };
        let first =
            (0..20).find_map(|i| write(&mut n, format!("big{i}"), &big)).expect("a snapshot");
        // The snapshot holds every big value so far (index 1 is the leader's no-op).
        assert!(first.data.len() >= 4_000, "{}", first.data.len());
        let quarter = first.data.len() / 4;
        // Small writes: far more than 5 entries, far less than a quarter of the snapshot's bytes.
        let small_writes = quarter / 100;
        for i in 0..small_writes {
            assert!(
                write(&mut n, format!("s{i}"), "v").is_none(),
                "snapshot after {i} small writes"
            );
        }
        // Big writes bring the log past a quarter of the snapshot: the next snapshot comes.
        let more = (0..10).position(|i| write(&mut n, format!("more{i}"), &big).is_some());
        let more = more.expect("a second snapshot once the log is large enough");
        assert!(more * 1000 + small_writes * 40 >= quarter - 1000, "came too early: {more}");
    }

    // Replicas stagger their snapshots by node id, so they do not all pause at one index.
    #[test]
    fn snapshots_are_staggered_by_node_id() {
        let first_snapshot_index = |id: u64| {
            let mut cfg = NodeConfig::new(crate::testkit::test_config(NodeId(id)));
            cfg.snapshot_threshold = 8;
            let p = Persisted::bootstrap(Membership::with_voters([NodeId(id)]));
            let mut n = CacheNode::new(cfg, p, 1, Instant(0)).unwrap();
            n.tick(Instant(250));
            drive(&mut n, &mut Vec::new());
            (0..40)
                .find_map(|i| {
                    n.write(Instant(300), RequestId(i), set(&format!("k{i}"), "v", None)).unwrap();
                    let mut out = Vec::new();
                    drive(&mut n, &mut out);
                    out.into_iter().find_map(|a| a.snapshot).map(|s| s.meta.last_index.0)
                })
                .expect("a snapshot")
        };
        assert_eq!(first_snapshot_index(4), 8, "id 4: the threshold itself");
        assert_eq!(first_snapshot_index(3), 11, "id 3: stretched by 3/8");
    }

    fn to_node1(from: u64, body: crate::message::MessageBody) -> crate::message::Message {
        crate::message::Message {
            from: NodeId(from),
            to: NodeId(1),
            term: crate::types::Term(1),
            body,
        }
    }

    fn append_resp(from: u64, index: u64, success: bool) -> crate::message::Message {
        let body = crate::message::MessageBody::AppendEntriesResponse {
            index: LogIndex(index),
            success,
            conflict_term: None,
            conflict_index: LogIndex(index),
        };
        to_node1(from, body)
    }

    /// Node 1 of {1, 2, 3} with `snapshot_threshold` 5, made leader at 200 ms by votes from 2
    /// and 3 (both acknowledged its no-op), with 10 writes proposed and sent; returns it and
    /// its last index.
    fn three_node_leader_with_writes() -> (CacheNode, u64) {
        leader_with_writes(3)
    }

    /// [`three_node_leader_with_writes`] with `voters` voters, all of which voted and
    /// acknowledged the no-op.
    fn leader_with_writes(voters: u64) -> (CacheNode, u64) {
        let m = Membership::with_voters((1..=voters).map(NodeId));
        let mut cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        cfg.snapshot_threshold = 5;
        let mut n = CacheNode::new(cfg, Persisted::bootstrap(m), 7, Instant(0)).unwrap();
        let t = Instant(200);
        n.tick(t);
        drive(&mut n, &mut Vec::new());
        for pre_vote in [true, false] {
            for from in 2..=voters {
                let body = crate::message::MessageBody::RequestVoteResponse {
                    pre_vote,
                    granted: true,
                    clock: Instant(0),
                };
                n.step(t, to_node1(from, body)).unwrap();
            }
            drive(&mut n, &mut Vec::new());
        }
        assert!(n.raft().is_leader());
        for from in 2..=voters {
            n.step(t, append_resp(from, 1, true)).unwrap();
        }
        for i in 0..10 {
            n.write(t, RequestId(i), set(&format!("k{i}"), "v", None)).unwrap();
        }
        drive(&mut n, &mut Vec::new());
        let last = n.raft().log().last_index().0;
        (n, last)
    }

    // A leader hands its snapshot to the driver at once but keeps the log entries a recently
    // active follower still needs, compacting only once that follower has them; so a follower a
    // few entries behind catches up with entries, not with the whole snapshot.
    #[test]
    fn leader_defers_compaction_until_active_followers_caught_up() {
        let (mut n, last) = three_node_leader_with_writes();
        let t = Instant(200);
        // Node 2 has everything, node 3 only the no-op: the entries commit and a snapshot is taken.
        n.step(t, append_resp(2, last, true)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let snap = out.iter().find_map(|a| a.snapshot.clone()).expect("a snapshot for the driver");
        assert_eq!(n.raft().log().snapshot_meta().last_index, LogIndex(0), "log kept for node 3");
        assert_eq!(n.raft().log().first_index(), LogIndex(1));
        // Node 3 catches up: now the log is compacted to the snapshot.
        n.step(t, append_resp(3, last, true)).unwrap();
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.raft().log().snapshot_meta().last_index, snap.meta.last_index);
    }

    // A durable snapshot held back for a follower a few entries behind is compacted to at once
    // when another follower needs a whole snapshot: Raft gets data it can send without a new job
    // encoding the cache again.
    #[test]
    fn a_held_back_snapshot_is_used_when_a_follower_needs_one() {
        // Node 5 went quiet long ago; the others are caught up: compacted at once.
        let (mut n, last) = leader_with_writes(5);
        let late = Instant(700);
        n.tick(late);
        for from in [2, 3, 4] {
            n.step(late, append_resp(from, last, true)).unwrap();
        }
        drive(&mut n, &mut Vec::new());
        let first = n.raft().log().snapshot_meta().last_index;
        assert!(first > LogIndex(1), "compacted once");
        for i in 10..20 {
            n.write(late, RequestId(i), set(&format!("k{i}"), "v", None)).unwrap();
        }
        drive(&mut n, &mut Vec::new());
        let last = n.raft().log().last_index().0;
        // Nodes 2 and 3 have everything, node 4 is a little behind: a second snapshot is durable
        // and held back for node 4.
        n.step(late, append_resp(2, last, true)).unwrap();
        n.step(late, append_resp(3, last, true)).unwrap();
        n.step(late, append_resp(4, last - 2, true)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let second = out.iter().find_map(|a| a.snapshot.clone()).expect("a second snapshot");
        assert_eq!(n.raft().log().snapshot_meta().last_index, first, "held back for node 4");
        // Node 5 is back, missing everything after index 1: it needs a whole snapshot.
        n.step(late, append_resp(5, 2, false)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        assert_eq!(n.raft().log().snapshot_meta().last_index, second.meta.last_index);
        assert!(!n.raft().wants_snapshot(), "the held-back snapshot's data went to Raft");
        assert!(out.iter().all(|a| a.applied.snapshot_job.is_none()), "no new job");
    }

    // A leader drops its snapshot data once compacted (it is as large as the cache) and, when a
    // follower later needs a snapshot, encodes the cache again and sends it.
    #[test]
    fn released_snapshot_data_is_provided_again_when_a_follower_needs_it() {
        use crate::message::MessageBody;
        let (mut n, last) = three_node_leader_with_writes();
        let t = Instant(200);
        // Node 3 went quiet long ago: the leader compacts at once.
        let late = Instant(t.0 + 500);
        n.tick(late);
        n.step(late, append_resp(2, last, true)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let snap = out.iter().find_map(|a| a.snapshot.clone()).expect("a snapshot");
        assert_eq!(n.raft().log().snapshot_meta().last_index, snap.meta.last_index);
        assert!(!n.raft().wants_snapshot());
        // Node 3 is back, missing everything after index 1: it needs the snapshot.
        n.step(late, append_resp(3, 2, false)).unwrap();
        assert!(n.raft().wants_snapshot(), "the data was released");
        // Data of some other snapshot is refused and the want stays.
        let other = Snapshot {
            meta: crate::message::SnapshotMeta::default(),
            data: Bytes::from_static(b"x"),
        };
        assert!(matches!(
            n.raft_mut().provide_snapshot_data(other),
            Err(crate::raft::CompactError::NotCurrentSnapshot { .. })
        ));
        assert!(n.raft().wants_snapshot());
        let mut messages = Vec::new();
        for step in 0..20u64 {
            let now = Instant(late.0 + 10 * step);
            n.tick(now);
            n.step(now, append_resp(3, 1, true)).unwrap();
            loop {
                let r = n.ready();
                if r.is_empty() {
                    break;
                }
                messages.extend(r.messages.clone());
                apply(&mut n, r);
            }
        }
        assert!(!n.raft().wants_snapshot());
        let sent = messages.iter().find_map(|m| match &m.body {
            MessageBody::InstallSnapshot { meta, offset: 0, .. } if m.to == NodeId(3) => {
                Some(meta.last_index)
            }
            _ => None,
        });
        assert_eq!(sent, Some(snap.meta.last_index), "the snapshot went to node 3");
    }

    // A driver that streams snapshots to their files hands back no data: a leader compacts
    // without it, and when a follower needs the snapshot the node takes one that keeps its data
    // (in memory only while a follower waits for it) and sends it.
    #[test]
    fn a_snapshot_streamed_to_its_file_is_encoded_again_for_a_follower() {
        use crate::message::MessageBody;
        let (mut n, last) = three_node_leader_with_writes();
        let late = Instant(700);
        n.tick(late);
        n.step(late, append_resp(2, last, true)).unwrap();
        // The streaming driver's loop; returns the messages sent and each job's keeps_data.
        let drive_streamed = |n: &mut CacheNode, messages: &mut Vec<Message>| {
            let mut kept = Vec::new();
            loop {
                let r = n.ready();
                if r.is_empty() {
                    return kept;
                }
                messages.extend(r.messages.clone());
                let mut applied = n.ready_done(r);
                if let Some(job) = applied.snapshot_job.take() {
                    kept.push(job.keeps_data());
                    let s = job.encode();
                    let data = job.keeps_data().then(|| s.data.clone());
                    let len = s.data.len() as u64;
                    n.snapshot_encoded(EncodedSnapshot { meta: s.meta, len, data });
                }
            }
        };
        let mut messages = Vec::new();
        assert_eq!(drive_streamed(&mut n, &mut messages), vec![false], "one job, data not kept");
        let compacted = n.raft().log().snapshot_meta().last_index;
        assert!(compacted > LogIndex(1), "compacted without the data");
        assert!(!n.raft().wants_snapshot(), "no follower needs it yet");
        // Node 3 is back, missing everything after index 1: it needs a snapshot.
        n.step(late, append_resp(3, 2, false)).unwrap();
        assert!(n.raft().wants_snapshot(), "nothing to send: the data went to the file only");
        let mut kept = Vec::new();
        for step in 0..20u64 {
            let now = Instant(late.0 + 10 * step);
            n.tick(now);
            n.step(now, append_resp(3, 1, true)).unwrap();
            kept.extend(drive_streamed(&mut n, &mut messages));
        }
        assert_eq!(kept, vec![true], "one job for the follower, keeping its data");
        assert!(!n.raft().wants_snapshot());
        let sent = messages.iter().find_map(|m| match &m.body {
            MessageBody::InstallSnapshot { meta, offset: 0, .. } if m.to == NodeId(3) => {
                Some(meta.last_index)
            }
            _ => None,
        });
        assert_eq!(sent, Some(compacted), "the current snapshot, encoded again, went to node 3");
    }

    // Regression (issue 10, failure 11): a leader whose log was cut by a new leader and who
    // leads again appends new writes at the indexes of its old, never-resolved ones. The old
    // write's tracking was overwritten, so its client only timed out. It is now failed as
    // `Superseded` at once.
    #[test]
    fn write_tracked_at_an_overwritten_index_is_superseded() {
        use crate::message::{Entry, EntryPayload, Message, MessageBody};
        use crate::types::Term;
        let (mut n, last) = three_node_leader_with_writes();
        // Requests 0..10 sit at indexes 2..=11, none committed. Node 2 leads term 2 and cuts the
        // log after index 1, replacing index 2 with its no-op.
        assert_eq!(last, 11);
        let noop = Entry { term: Term(2), index: LogIndex(2), payload: EntryPayload::Noop };
        let cut = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            body: MessageBody::AppendEntries {
                prev_log_index: LogIndex(1),
                prev_log_term: Term(1),
                entries: vec![noop],
                leader_commit: LogIndex(1),
            },
        };
        n.step(Instant(300), cut).unwrap();
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.raft().last_index(), LogIndex(2));
        // Node 1 wins term 3: its no-op goes to index 3, new writes to 4, 5, ...
        let t = Instant(2_000);
        n.tick(t);
        drive(&mut n, &mut Vec::new());
        for pre_vote in [true, false] {
            for from in [2, 3] {
                let body =
                    MessageBody::RequestVoteResponse { pre_vote, granted: true, clock: Instant(0) };
                let m = Message { from: NodeId(from), to: NodeId(1), term: Term(3), body };
                n.step(t, m).unwrap();
            }
            drive(&mut n, &mut Vec::new());
        }
        assert!(n.raft().is_leader());
        assert_eq!(n.raft().term(), Term(3));
        n.write(t, RequestId(100), set("new", "v", None)).unwrap();
        let mut out = Vec::new();
        drive(&mut n, &mut out);
        let resolved: Vec<_> = out.iter().flat_map(|a| a.writes.clone()).collect();
        // Request 2 was at index 4, where request 100 now is.
        assert_eq!(resolved, vec![(RequestId(2), Err(WriteError::Superseded))]);
    }

    // Request ids never repeat across incarnations, and an incarnation's ids run out rather
    // than wrap into the next one's.
    #[test]
    fn request_ids_are_unique_across_incarnations() {
        let mut a = RequestIds::new(1);
        let mut b = RequestIds::new(2);
        let first: Vec<_> = (0..3).map(|_| a.next_id().unwrap()).collect();
        let second: Vec<_> = (0..3).map(|_| b.next_id().unwrap()).collect();
        assert!(first.iter().all(|id| !second.contains(id)));
        let mut c = RequestIds { incarnation: 1, next: u64::from(u32::MAX) };
        assert_eq!(c.next_id(), Some(RequestId((1 << 32) | u64::from(u32::MAX))));
        assert_eq!(c.next_id(), None);
    }

    // A write on a follower is refused with the leader hint, and nothing is left pending.
    #[test]
    fn write_on_non_leader_is_refused() {
        let mut n = single(100);
        let err = n.write(Instant(0), RequestId(1), set("k", "v", None)).unwrap_err();
        assert_eq!(err, WriteError::Propose(ProposeError::NotLeader { leader_hint: None }));
        assert_eq!(n.pending_requests(), 0);
    }

    // Regression (found by the simulator, `ttl_with_leadership_transfer` seed 3): while a
    // leadership transfer refuses proposals, an expired key must not keep next_deadline in the
    // past, which made the driver spin.
    #[test]
    fn refused_expiry_proposal_does_not_pin_the_deadline_in_the_past() {
        let m = Membership::with_voters([NodeId(1), NodeId(2)]);
        let cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        let mut n = CacheNode::new(cfg, Persisted::bootstrap(m), 1, Instant(0)).unwrap();
        // Become leader of a 2-node cluster with node 2's votes.
        n.tick(Instant(250));
        drive(&mut n, &mut Vec::new());
        let vote = |pre_vote| crate::message::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: crate::types::Term(1),
            body: crate::message::MessageBody::RequestVoteResponse {
                pre_vote,
                granted: true,
                clock: Instant(0),
            },
        };
        n.step(Instant(250), vote(true)).unwrap();
        drive(&mut n, &mut Vec::new());
        n.step(Instant(250), vote(false)).unwrap();
        drive(&mut n, &mut Vec::new());
        assert!(n.raft().is_leader());
        // Node 2 stores the no-op: the leader commits and can take writes.
        let ack = crate::message::Message {
            from: NodeId(2),
            to: NodeId(1),
            term: crate::types::Term(1),
            body: crate::message::MessageBody::AppendEntriesResponse {
                index: LogIndex(1),
                success: true,
                conflict_term: None,
                conflict_index: LogIndex(0),
            },
        };
        n.step(Instant(251), ack.clone()).unwrap();
        drive(&mut n, &mut Vec::new());
        n.write(Instant(252), RequestId(1), set("t", "v", Some(260))).unwrap();
        drive(&mut n, &mut Vec::new());
        let ack2 = crate::message::Message {
            body: crate::message::MessageBody::AppendEntriesResponse {
                index: LogIndex(2),
                success: true,
                conflict_term: None,
                conflict_index: LogIndex(0),
            },
            ..ack
        };
        n.step(Instant(253), ack2).unwrap();
        drive(&mut n, &mut Vec::new());
        assert_eq!(n.cache().len(), 1);
        // A transfer to node 2 refuses proposals; the key's deadline passes.
        n.raft_mut().transfer_leadership(Instant(254), NodeId(2)).unwrap();
        n.tick(Instant(270));
        assert!(
            n.next_deadline() > Instant(270),
            "next_deadline {} must move past now after a refused expiry proposal",
            n.next_deadline()
        );
    }
}
