//! The executor: everything between a [`CacheNode`] and the outside world that does not depend
//! on how bytes reach a disk or a peer. The server's node loop (`server/src/node_loop.rs`) and the
//! simulator (`sim/src/harness`) both drive their nodes through it, so the code the simulator
//! tests is the code that ships; only the IO underneath differs ([`Storage`]: `WalStore` on real
//! files, `SimDisk` in memory).
//!
//! What it owns: the request ids (allocated per incarnation, a new incarnation made durable
//! before its first id, see [`RequestIds`]), the replies waiting on the node, the order in which a
//! [`Ready`] is executed, turning a TTL into a deadline in cluster time, and what happens when a
//! snapshot file the driver wrote in the background is durable (the WAL is compacted to it).
//!
//! The shape is quinn-proto's: calls go in, and what must leave is polled out
//! ([`Executor::take_messages`], [`Executor::take_answers`]). A `Ready` is executed in two halves
//! so a driver can wait for its fsync however it likes (the server blocks its own thread; the
//! simulator lets simulated time pass, during which the node may crash):
//!
//! 1. [`Executor::begin_ready`]: takes the `Ready`; the leader's appends and heartbeats are queued
//!    to leave at once (they depend on nothing this `Ready` persists, Raft dissertation 10.2.1);
//!    the snapshot, entries and hard state are written, not yet synced.
//! 2. The driver sends the queued messages, then makes the writes durable if
//!    [`Persisting::must_sync`] says so. A failed fsync is fatal: the node cannot know what reached
//!    the disk and must stop (PostgreSQL's "fsyncgate").
//! 3. [`Executor::finish_ready`]: the rest of the messages are queued, committed entries applied,
//!    requests answered, a snapshot the node took handed to [`Storage::submit_snapshot`].
//!
//! [`Executor::drain_ready`] does all three for a driver whose fsync blocks.

use crate::cache::{Batch, Command, KeyWrite, Pattern, SearchPage, TtlStatus, Versioned};
use crate::message::{Entry, Message, SnapshotMeta};
use crate::meter::{CacheOp, metered};
use crate::node::{CacheNode, RequestId, RequestIds, WriteError, WriteResult};
use crate::raft::{ReadError, Ready};
use crate::snapshot::{EncodedSnapshot, SnapshotJob};
use crate::types::Instant;
use bytes::Bytes;
use std::collections::HashMap;

/// `Ready`s handled per [`Executor::drain_ready`] call at most. Each makes progress (persisting,
/// applying) and new work only comes from inputs, which are not read meanwhile, so the bound is
/// never reached in practice; it keeps a bug from becoming a hang.
pub const READIES_PER_DRAIN_MAX: usize = 64;

/// The durable storage of one node: a write-ahead log and snapshot files.
///
/// The order of records and the compaction scheme are `core::wal`'s; an implementation only
/// does the IO. Every error is fatal to the node (see [`Fatal`]).
pub trait Storage {
    type Error;
    /// Step 1 and 2 of a `Ready` without the fsync: an installed snapshot (its file durable
    /// first, then its WAL record), the entries, the hard state.
    fn write_ready(&mut self, ready: &Ready) -> Result<(), Self::Error>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), Self::Error>;
    /// After a `Ready`'s writes (and fsync, if it needed one): housekeeping such as removing
    /// snapshot files an installed snapshot made unused, or starting a new segment.
    fn ready_persisted(&mut self, ready: &Ready) -> Result<(), Self::Error>;
    /// Writes and syncs the next incarnation record; returns it.
    fn begin_incarnation(&mut self) -> Result<u64, Self::Error>;
    /// Takes a snapshot job to encode and, if new, write to its file in the background; the
    /// driver reports the result with [`Executor::snapshot_written`]. One is out at a time.
    fn submit_snapshot(&mut self, job: SnapshotJob);
    /// The file of `meta` is durable (or the job was not new); `keep` is whether the node still
    /// wants it. Returns whether to compact to it; if not, removes files nothing refers to.
    fn snapshot_file_written(
        &mut self,
        meta: &SnapshotMeta,
        keep: bool,
    ) -> Result<bool, Self::Error>;
    /// Compacts the WAL to a snapshot whose file is durable: a self-contained segment with the
    /// hard state, the snapshot's metadata and `entries` (the persisted ones after it), then
    /// older segments and snapshot files removed.
    fn compact(&mut self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<(), Self::Error>;
}

/// A storage error the node cannot go on from: the driver stops the node (the server exits
/// with status 70; the simulator crashes the node).
#[derive(Debug)]
pub struct Fatal<E> {
    /// What was being done, in words: "writing the WAL failed".
    pub what: &'static str,
    pub error: E,
}

fn fatal<E>(what: &'static str) -> impl FnOnce(E) -> Fatal<E> {
    move |error| Fatal { what, error }
}

/// A client write, before it is proposed: a relative TTL becomes an absolute deadline in cluster
/// time on the node that proposes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WriteOp {
    Set {
        key: String,
        value: Bytes,
        ttl_ms: Option<u64>,
    },
    Del {
        key: String,
    },
    Expire {
        key: String,
    },
    Reset,
    /// A conditional or atomic write of one key; its TTLs count from the proposal's time.
    Key(KeyWrite),
    /// An atomic batch of compares and writes.
    Batch(Batch),
    /// A Redis transaction: a batch whose refused operations are reported in place.
    Exec(Batch),
}

/// A read of the cache state.
#[derive(Clone, Debug)]
pub enum Query {
    Get(String),
    /// A key with its revisions and deadline.
    Item(String),
    Ttl(String),
    /// The values of several keys, at one point (Redis `MGET`).
    Values(Vec<String>),
    /// How many keys are stored (Redis `DBSIZE`: keys past their deadline that expiry has not
    /// removed yet count too).
    Count,
    /// Several queries answered at one point (a client's pipelined reads): one ReadIndex
    /// round, one message to the node loop. Searches in it are not paged by the caller.
    Batch(Vec<Query>),
    /// One page of a search: at most `limit` matches after `after`, examining at most
    /// `examine_max` keys (see `Cache::search_page`).
    Search {
        pattern: Pattern,
        limit: usize,
        after: Option<String>,
        examine_max: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryResult {
    Value(Option<Bytes>),
    Item(Option<Versioned>),
    Ttl(TtlStatus),
    Keys(SearchPage),
    Values(Vec<Option<Bytes>>),
    Count(u64),
    /// The answers of a [`Query::Batch`], in order.
    Batch(Vec<QueryResult>),
}

/// Replies ready to be sent, polled with [`Executor::take_answers`]. `W` and `R` are whatever
/// the driver answers with (a oneshot sender, a channel).
#[derive(Debug)]
pub struct Answers<W, R> {
    pub writes: Vec<(W, WriteResult)>,
    pub reads: Vec<(R, Result<QueryResult, ReadError>)>,
}

impl<W, R> Default for Answers<W, R> {
    fn default() -> Self {
        Answers { writes: Vec::new(), reads: Vec::new() }
    }
}

impl<W, R> Answers<W, R> {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.reads.is_empty()
    }
}

/// A `Ready` between [`Executor::begin_ready`] and [`Executor::finish_ready`]: written, maybe not
/// yet durable.
#[derive(Debug)]
pub struct Persisting {
    ready: Ready,
}

impl Persisting {
    /// Whether the driver must fsync before [`Executor::finish_ready`]: the `Ready` asks for it,
    /// or installs a snapshot (whose WAL record must be durable before older files go).
    pub fn must_sync(&self) -> bool {
        self.ready.must_sync || self.ready.snapshot.is_some()
    }
    /// The `Ready` (for a simulator's checkers).
    pub fn ready(&self) -> &Ready {
        &self.ready
    }
}

/// What one `Ready` did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadyStats {
    /// Committed entries applied.
    pub applied: u64,
    /// A snapshot from the leader was installed.
    pub snapshot_installed: bool,
}

/// Executes the `Ready`s of one node and keeps its requests. See the module documentation.
pub struct Executor<W, R> {
    ids: RequestIds,
    writes: HashMap<RequestId, W>,
    reads: HashMap<RequestId, (Query, R)>,
    messages: Vec<Message>,
    answers: Answers<W, R>,
}

impl<W, R> Executor<W, R> {
    /// An executor whose request ids come from `ids` (an incarnation the storage made durable
    /// at this start, see [`Storage::begin_incarnation`]).
    pub fn new(ids: RequestIds) -> Executor<W, R> {
        Executor {
            ids,
            writes: HashMap::new(),
            reads: HashMap::new(),
            messages: Vec::new(),
            answers: Answers::default(),
        }
    }

    /// Requests proposed or asked and not answered yet.
    pub fn waiting(&self) -> usize {
        self.writes.len() + self.reads.len()
    }

    /// Messages to send now, in order.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.messages)
    }

    /// Replies to send now.
    pub fn take_answers(&mut self) -> Answers<W, R> {
        std::mem::take(&mut self.answers)
    }

    /// The next request id; when an incarnation's ids run out, a new incarnation is made durable
    /// first, so no id is ever given out twice, across restarts too.
    fn alloc_id<S: Storage>(&mut self, storage: &mut S) -> Result<RequestId, Fatal<S::Error>> {
        if let Some(id) = self.ids.next_id() {
            return Ok(id);
        }
        let n = storage
            .begin_incarnation()
            .map_err(fatal("writing the next incarnation to the WAL failed"))?;
        self.ids = RequestIds::new(n);
        Ok(self.ids.next_id().expect("a new incarnation has ids"))
    }

    /// Proposes a client write at `now`; the answer comes out of [`Executor::take_answers`], at
    /// once if the node refused it.
    pub fn write<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
        now: Instant,
        op: WriteOp,
        reply: W,
    ) -> Result<(), Fatal<S::Error>> {
        let command = match op {
            WriteOp::Set { key, value, ttl_ms } => Command::Set {
                key,
                value,
                // The leader (this node, if the proposal succeeds) turns the TTL into an absolute
                // deadline in cluster time, which it also stamps on the entry.
                expires_at: ttl_ms.map(|ms| node.deadline(now, ms)),
            },
            WriteOp::Del { key } => Command::Del { key },
            WriteOp::Expire { key } => Command::Expire { key },
            WriteOp::Reset => Command::Reset,
            WriteOp::Batch(b) => Command::Batch(b),
            WriteOp::Exec(b) => Command::Exec(b),
            WriteOp::Key(w) => match cas_before_apply(node, now, w) {
                Ok(w) => Command::Key(w),
                Err(refused) => {
                    self.answers.writes.push((reply, Ok(*refused)));
                    return Ok(());
                }
            },
        };
        let id = self.alloc_id(storage)?;
        match node.write(now, id, command) {
            Ok(()) => {
                self.writes.insert(id, reply);
            }
            Err(e) => self.answers.writes.push((reply, Err(e))),
        }
        Ok(())
    }

    /// A linearizable read (ReadIndex), or with `stale` a read of the local state judged at the
    /// cluster time.
    pub fn read<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
        now: Instant,
        query: Query,
        stale: bool,
        reply: R,
    ) -> Result<(), Fatal<S::Error>> {
        if stale {
            // Judged at the cluster time, as the leader would, not at this node's own clock.
            let at = node.cluster_time(now);
            let result = run_query(node, &query, at);
            self.answers.reads.push((reply, Ok(result)));
            return Ok(());
        }
        let id = self.alloc_id(storage)?;
        match node.read(now, id) {
            Ok(()) => {
                self.reads.insert(id, (query, reply));
            }
            Err(e) => self.answers.reads.push((reply, Err(e))),
        }
        Ok(())
    }

    /// First half of a `Ready` (see the module documentation); `None` if the node has nothing to
    /// do. The early messages are queued: send them before the fsync.
    pub fn begin_ready<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
    ) -> Result<Option<Persisting>, Fatal<S::Error>> {
        let mut ready = node.ready();
        if ready.is_empty() {
            return Ok(None);
        }
        self.messages.extend(ready.take_early_messages());
        storage.write_ready(&ready).map_err(fatal("writing the WAL failed"))?;
        Ok(Some(Persisting { ready }))
    }

    /// Second half of a `Ready`, once it is durable if [`Persisting::must_sync`].
    pub fn finish_ready<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
        persisting: Persisting,
    ) -> Result<ReadyStats, Fatal<S::Error>> {
        let mut ready = persisting.ready;
        storage.ready_persisted(&ready).map_err(fatal("writing the WAL failed"))?;
        let stats = ReadyStats {
            applied: ready.committed_entries.len() as u64,
            snapshot_installed: ready.snapshot.is_some(),
        };
        // Only now may messages that depend on the persisted state leave.
        self.messages.append(&mut ready.messages);
        let applied = node.ready_done(ready);
        if let Some(job) = applied.snapshot_job {
            storage.submit_snapshot(job);
        }
        for (id, result) in applied.writes {
            if let Some(reply) = self.writes.remove(&id) {
                self.answers.writes.push((reply, result));
            }
        }
        for (id, result) in applied.reads {
            if let Some((query, reply)) = self.reads.remove(&id) {
                let answer = result.map(|at| run_query(node, &query, at));
                self.answers.reads.push((reply, answer));
            }
        }
        Ok(stats)
    }

    /// Handles `Ready`s until the node has nothing left to do (at most
    /// [`READIES_PER_DRAIN_MAX`]), for a driver whose fsync blocks: `send` gets the messages as
    /// they may leave; answers accumulate for [`Executor::take_answers`].
    pub fn drain_ready<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
        mut send: impl FnMut(Vec<Message>),
        mut observe: impl FnMut(ReadyStats),
    ) -> Result<(), Fatal<S::Error>> {
        for _ in 0..READIES_PER_DRAIN_MAX {
            let Some(persisting) = self.begin_ready(node, storage)? else {
                return Ok(());
            };
            send(self.take_messages());
            if persisting.must_sync() {
                storage.sync().map_err(fatal("syncing the WAL failed"))?;
            }
            observe(self.finish_ready(node, storage, persisting)?);
            send(self.take_messages());
        }
        Ok(())
    }

    /// The driver encoded a snapshot job and, if it was new, made its file durable: hand it to
    /// the node, then compact the WAL to it, unless a newer snapshot replaced it meanwhile.
    /// Returns whether the WAL was compacted.
    pub fn snapshot_written<S: Storage>(
        &mut self,
        node: &mut CacheNode,
        storage: &mut S,
        snapshot: EncodedSnapshot,
        written: bool,
    ) -> Result<bool, Fatal<S::Error>> {
        let meta = snapshot.meta.clone();
        let keep = node.snapshot_encoded(snapshot);
        if !written {
            return Ok(false);
        }
        let current = storage
            .snapshot_file_written(&meta, keep)
            .map_err(fatal("removing a replaced snapshot file failed"))?;
        if !current {
            return Ok(false);
        }
        let log = node.raft().log();
        let persisted = log.persisted_index();
        let entries: Vec<Entry> = log
            .slice(meta.last_index.next(), usize::MAX, usize::MAX)
            .into_iter()
            .filter(|e| e.index <= persisted)
            .collect();
        storage
            .compact(&meta, &entries)
            .map_err(fatal("compacting the WAL to a snapshot failed"))?;
        Ok(true)
    }
}

/// The planted bug [`crate::raft::Mutation::CasBeforeApply`]: with it on, a conditional write
/// is decided here against the node's applied state and proposed unconditionally, or answered
/// "not applied" at once. Without it, `w` goes through unchanged.
fn cas_before_apply(
    node: &CacheNode,
    now: Instant,
    mut w: KeyWrite,
) -> Result<KeyWrite, Box<crate::node::Written>> {
    use crate::cache::{ApplyResult, Condition, KeyOutcome};
    if !node.raft().cas_before_apply() || w.condition == Condition::Always {
        return Ok(w);
    }
    let current = node.cache().get_versioned(&w.key, now);
    let holds = match (w.condition, &current) {
        (Condition::Absent | Condition::Revision(0), c) => c.is_none(),
        (Condition::Present, c) => c.is_some(),
        (Condition::Revision(r), Some(v)) => v.revisions.modified == r,
        _ => false,
    };
    if !holds {
        let revision = node.raft().last_applied().0;
        let outcome = KeyOutcome {
            applied: false,
            revision,
            existed: current.is_some(),
            current: current.map(|v| v.revisions),
            previous: None,
            number: None,
            text: None,
            refusal: None,
        };
        return Err(Box::new(crate::node::Written { revision, result: ApplyResult::Key(outcome) }));
    }
    w.condition = Condition::Always;
    Ok(w)
}

/// Runs a query against the node's cache, judging expiry at `at`, through the node's meter (see
/// [`crate::meter`]).
pub fn run_query(node: &CacheNode, query: &Query, at: Instant) -> QueryResult {
    let cache = node.cache();
    let op = match query {
        Query::Get(_) | Query::Item(_) | Query::Values(_) | Query::Count => CacheOp::Get,
        Query::Ttl(_) => CacheOp::Ttl,
        Query::Search { .. } => CacheOp::Search,
        Query::Batch(queries) => {
            return QueryResult::Batch(queries.iter().map(|q| run_query(node, q, at)).collect());
        }
    };
    metered(node.meter(), op, || match query {
        Query::Get(key) => QueryResult::Value(cache.get(key, at)),
        Query::Item(key) => QueryResult::Item(cache.get_versioned(key, at)),
        Query::Ttl(key) => QueryResult::Ttl(cache.ttl(key, at)),
        Query::Values(keys) => QueryResult::Values(keys.iter().map(|k| cache.get(k, at)).collect()),
        Query::Count => QueryResult::Count(cache.len() as u64),
        Query::Search { pattern, limit, after, examine_max } => QueryResult::Keys(
            cache.search_page(pattern, at, *limit, after.as_deref(), *examine_max),
        ),
        Query::Batch(_) => unreachable!("answered above"),
    })
}

/// What a front end does after a write came back with an error, the same on every front end and
/// in the simulator's service (see `server/src/service.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterWriteError {
    /// Another node leads: forward the write there (never a write that was itself forwarded).
    Forward(crate::types::NodeId),
    /// It did not take effect and no usable leader is known: wait for one, then retry.
    WaitForLeader,
    /// Give up with this error: the write was refused, or its outcome is unknown.
    Fail,
}

impl AfterWriteError {
    /// The decision for `e`, on node `me`, for a write that was (`forwarded`) or was not itself
    /// forwarded here by another node.
    pub fn of(e: &WriteError, me: crate::types::NodeId, forwarded: bool) -> AfterWriteError {
        use crate::raft::ProposeError;
        match e {
            WriteError::Propose(ProposeError::NotLeader { leader_hint: Some(l) }) if *l != me => {
                // The sender thought we lead; we do not: it retries, we do not bounce.
                if forwarded { AfterWriteError::Fail } else { AfterWriteError::Forward(*l) }
            }
            // No leader yet, a transfer under way, or our entry lost to a new leader's: it did
            // not take effect, so retrying is safe.
            WriteError::Propose(ProposeError::NotLeader { .. })
            | WriteError::Propose(ProposeError::TransferInProgress)
            | WriteError::Superseded => AfterWriteError::WaitForLeader,
            _ => AfterWriteError::Fail,
        }
    }

    /// Whether a forwarded write that failed on the leader with `e` certainly did not take
    /// effect, so the follower may retry it elsewhere: the receiver was not (or no longer) the
    /// leader, or its entry lost to a new leader's. Anything else (an unknown outcome) must not
    /// be retried.
    pub fn proves_not_applied(e: &WriteError) -> bool {
        ForwardFailure::of(e) == ForwardFailure::Retry
    }
}

/// Why a write forwarded to the leader did not produce an answer, as the follower decides it
/// (the server's `service.rs` and the simulator's service alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardFailure {
    /// It certainly did not take effect: wait for another leader and retry.
    Retry,
    /// It may or may not have taken effect: report that, never retry.
    Unknown,
    /// The leader refused it: report the refusal.
    Refused,
}

impl ForwardFailure {
    /// The decision for the leader's `e`: the receiver was not (or no longer) the leader, or its
    /// entry lost to a new leader's, proves nothing took effect; an unknown outcome is unknown;
    /// anything else is a refusal.
    pub fn of(e: &WriteError) -> ForwardFailure {
        use crate::raft::ProposeError;
        match e {
            WriteError::Propose(ProposeError::NotLeader { .. })
            | WriteError::Propose(ProposeError::TransferInProgress)
            | WriteError::Superseded => ForwardFailure::Retry,
            WriteError::Unknown | WriteError::Undecodable(_) => ForwardFailure::Unknown,
            WriteError::Propose(_) => ForwardFailure::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Membership, MessageBody};
    use crate::node::NodeConfig;
    use crate::raft::{Persisted, ProposeError};
    use crate::types::NodeId;

    /// A storage that records what it was asked to do, and can be told to fail.
    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
        fail_writes: bool,
        incarnation: u64,
        job: Option<SnapshotJob>,
        compacted: Vec<(u64, Vec<u64>)>,
        file_current: bool,
    }

    impl Storage for Recorder {
        type Error = String;
        fn write_ready(&mut self, ready: &Ready) -> Result<(), String> {
            if self.fail_writes {
                return Err("disk full".into());
            }
            self.log.push(format!("write {}", ready.entries.len()));
            Ok(())
        }
        fn sync(&mut self) -> Result<(), String> {
            self.log.push("sync".into());
            Ok(())
        }
        fn ready_persisted(&mut self, _: &Ready) -> Result<(), String> {
            Ok(())
        }
        fn begin_incarnation(&mut self) -> Result<u64, String> {
            self.incarnation += 1;
            self.log.push(format!("incarnation {}", self.incarnation));
            Ok(self.incarnation)
        }
        fn submit_snapshot(&mut self, job: SnapshotJob) {
            self.job = Some(job);
        }
        fn snapshot_file_written(&mut self, _: &SnapshotMeta, keep: bool) -> Result<bool, String> {
            Ok(keep && self.file_current)
        }
        fn compact(&mut self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<(), String> {
            let indexes = entries.iter().map(|e| e.index.0).collect();
            self.compacted.push((meta.last_index.0, indexes));
            Ok(())
        }
    }

    type Exec = Executor<u32, u32>;

    fn node(voters: &[u64], threshold: u64) -> CacheNode {
        let mut cfg = NodeConfig::new(crate::testkit::test_config(NodeId(1)));
        cfg.snapshot_threshold = threshold;
        let m = Membership::with_voters(voters.iter().map(|&v| NodeId(v)));
        CacheNode::new(cfg, Persisted::bootstrap(m), 1, Instant(0)).unwrap()
    }

    fn set(key: &str) -> WriteOp {
        WriteOp::Set { key: key.into(), value: Bytes::from_static(b"v"), ttl_ms: None }
    }

    /// A single-node leader at 250 ms, driven by `exec` over `disk`.
    fn leader(exec: &mut Exec, disk: &mut Recorder, threshold: u64) -> CacheNode {
        let mut n = node(&[1], threshold);
        n.tick(Instant(250));
        exec.drain_ready(&mut n, disk, |_| {}, |_| {}).unwrap();
        assert!(n.raft().is_leader());
        n
    }

    // A write is answered only after the Ready holding it was written and synced.
    #[test]
    fn a_write_is_answered_after_its_entry_is_synced() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
        let mut n = leader(&mut exec, &mut disk, 1_000);
        disk.log.clear();
        exec.write(&mut n, &mut disk, Instant(300), set("k"), 7).unwrap();
        assert!(exec.take_answers().is_empty());
        let p = exec.begin_ready(&mut n, &mut disk).unwrap().expect("the write's entry");
        assert!(p.must_sync());
        // Not durable yet: nothing may be answered.
        assert!(exec.take_answers().is_empty());
        disk.sync().unwrap();
        exec.finish_ready(&mut n, &mut disk, p).unwrap();
        exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        let answers = exec.take_answers();
        let written = crate::node::Written { revision: 2, result: crate::cache::ApplyResult::Set };
        assert_eq!(answers.writes, vec![(7, Ok(written))]);
        assert_eq!(disk.log[..2], ["write 1".to_string(), "sync".to_string()]);
        let mut read = Vec::new();
        exec.read(&mut n, &mut disk, Instant(310), Query::Get("k".into()), true, 9).unwrap();
        read.extend(exec.take_answers().reads);
        assert_eq!(read, vec![(9, Ok(QueryResult::Value(Some(Bytes::from_static(b"v")))))]);
    }

    /// A meter that lists the operations it ran, shared with the test.
    #[derive(Clone, Default)]
    struct Ops(std::sync::Arc<std::sync::Mutex<Vec<CacheOp>>>);

    impl crate::meter::OpMeter for Ops {
        fn measure(&self, op: CacheOp, run: &mut dyn FnMut()) {
            run();
            self.0.lock().unwrap().push(op);
        }
        fn failed(&self, op: CacheOp) {
            panic!("nothing fails here, but {op:?} did");
        }
    }

    // The node's meter sees each committed command applied and each read executed, linearizable
    // or stale, under its own name, and nothing else (no entry that is not a command).
    #[test]
    fn the_meter_sees_each_apply_and_each_read() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
        let mut n = leader(&mut exec, &mut disk, 1_000);
        let ops = Ops::default();
        n.set_meter(Box::new(ops.clone()));
        exec.write(&mut n, &mut disk, Instant(300), set("k"), 1).unwrap();
        exec.write(&mut n, &mut disk, Instant(300), WriteOp::Del { key: "k".into() }, 2).unwrap();
        exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        exec.read(&mut n, &mut disk, Instant(310), Query::Get("k".into()), false, 3).unwrap();
        exec.read(&mut n, &mut disk, Instant(310), Query::Ttl("k".into()), true, 4).unwrap();
        exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        let answers = exec.take_answers();
        assert_eq!((answers.writes.len(), answers.reads.len()), (2, 2));
        let seen = ops.0.lock().unwrap().clone();
        assert_eq!(seen, vec![CacheOp::Set, CacheOp::Delete, CacheOp::Ttl, CacheOp::Get]);
    }

    // A leader's appends are queued before its own write (they may leave before the fsync);
    // nothing else is.
    #[test]
    fn only_a_leaders_appends_leave_before_the_fsync() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
        let mut n = node(&[1, 2, 3], 1_000);
        n.tick(Instant(250));
        // A candidate's vote requests depend on its persisted term and vote: never early.
        let p = exec.begin_ready(&mut n, &mut disk).unwrap().expect("a campaign");
        assert!(exec.take_messages().is_empty());
        exec.finish_ready(&mut n, &mut disk, p).unwrap();
        let votes = exec.take_messages();
        assert!(!votes.is_empty());
        for pre_vote in [true, false] {
            for from in [2, 3] {
                let body = MessageBody::RequestVoteResponse {
                    pre_vote,
                    granted: true,
                    clock: Instant(250),
                };
                // Both answers carry the term the candidate campaigns in (a pre-vote's is the
                // term it would move to).
                let term = crate::types::Term(1);
                let m = Message { from: NodeId(from), to: NodeId(1), term, body };
                n.step(Instant(260), m).unwrap();
            }
            exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        }
        assert!(n.raft().is_leader());
        // Both followers have the leader's no-op: the leader replicates to them freely.
        for from in [2, 3] {
            let body = MessageBody::AppendEntriesResponse {
                index: crate::types::LogIndex(1),
                success: true,
                conflict_term: None,
                conflict_index: crate::types::LogIndex(1),
            };
            let m =
                Message { from: NodeId(from), to: NodeId(1), term: crate::types::Term(1), body };
            n.step(Instant(265), m).unwrap();
        }
        exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        exec.write(&mut n, &mut disk, Instant(270), set("k"), 1).unwrap();
        let p = exec.begin_ready(&mut n, &mut disk).unwrap().expect("the write");
        let early = exec.take_messages();
        assert!(!early.is_empty());
        assert!(early.iter().all(|m| matches!(m.body, MessageBody::AppendEntries { .. })));
        exec.finish_ready(&mut n, &mut disk, p).unwrap();
    }

    // A WAL write that fails is fatal and nothing waiting on it is answered (a node must never
    // acknowledge what it could not persist).
    #[test]
    fn a_failed_wal_write_is_fatal_and_acknowledges_nothing() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
        let mut n = leader(&mut exec, &mut disk, 1_000);
        exec.write(&mut n, &mut disk, Instant(300), set("k"), 7).unwrap();
        disk.fail_writes = true;
        let e = exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap_err();
        assert_eq!((e.what, e.error.as_str()), ("writing the WAL failed", "disk full"));
        assert!(exec.take_answers().is_empty());
    }

    // When an incarnation's ids run out, the next incarnation is made durable before the next
    // id is given out, and ids never repeat.
    #[test]
    fn request_ids_move_to_a_new_durable_incarnation() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::with_left(1, 1)), Recorder::default());
        disk.incarnation = 1;
        let mut n = leader(&mut exec, &mut disk, 1_000);
        disk.log.clear();
        exec.write(&mut n, &mut disk, Instant(300), set("a"), 1).unwrap();
        assert!(disk.log.is_empty(), "one id was left");
        exec.write(&mut n, &mut disk, Instant(300), set("b"), 2).unwrap();
        assert_eq!(disk.log, ["incarnation 2"]);
        exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
        let answers = exec.take_answers();
        assert_eq!(answers.writes.len(), 2, "{answers:?}");
        assert!(answers.writes.iter().all(|(_, r)| r.is_ok()));
    }

    // A snapshot job goes to the storage; once its file is written the WAL is compacted to it
    // with the persisted entries after it, unless the storage says it was replaced.
    #[test]
    fn a_written_snapshot_compacts_the_wal_unless_replaced() {
        for current in [true, false] {
            let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
            disk.file_current = current;
            let mut n = leader(&mut exec, &mut disk, 3);
            for i in 0..3 {
                exec.write(&mut n, &mut disk, Instant(300), set(&format!("k{i}")), i).unwrap();
                exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
            }
            let job = disk.job.take().expect("a snapshot is due");
            let at = job.meta.last_index.0;
            exec.write(&mut n, &mut disk, Instant(300), set("late"), 9).unwrap();
            exec.drain_ready(&mut n, &mut disk, |_| {}, |_| {}).unwrap();
            let compacted = exec
                .snapshot_written(&mut n, &mut disk, EncodedSnapshot::with_data(job.encode()), true)
                .unwrap();
            assert_eq!(compacted, current);
            let last = n.raft().log().last_index().0;
            let expected = if current { vec![(at, (at + 1..=last).collect())] } else { vec![] };
            assert_eq!(disk.compacted, expected);
        }
    }

    // A non-leader refuses at once; the answer names the leader it knows of.
    #[test]
    fn a_refused_write_is_answered_at_once() {
        let (mut exec, mut disk) = (Exec::new(RequestIds::new(1)), Recorder::default());
        let mut n = node(&[1, 2, 3], 1_000);
        exec.write(&mut n, &mut disk, Instant(10), set("k"), 3).unwrap();
        let answers = exec.take_answers();
        assert_eq!(
            answers.writes,
            vec![(3, Err(WriteError::Propose(ProposeError::NotLeader { leader_hint: None })))]
        );
        assert_eq!(exec.waiting(), 0);
    }

    // The front ends' decision after a write error.
    #[test]
    fn after_write_error_decisions() {
        let me = NodeId(1);
        let hint =
            |l| WriteError::Propose(ProposeError::NotLeader { leader_hint: Some(NodeId(l)) });
        assert_eq!(AfterWriteError::of(&hint(2), me, false), AfterWriteError::Forward(NodeId(2)));
        assert_eq!(AfterWriteError::of(&hint(2), me, true), AfterWriteError::Fail);
        assert_eq!(AfterWriteError::of(&hint(1), me, false), AfterWriteError::WaitForLeader);
        assert_eq!(
            AfterWriteError::of(&WriteError::Superseded, me, true),
            AfterWriteError::WaitForLeader
        );
        assert_eq!(AfterWriteError::of(&WriteError::Unknown, me, false), AfterWriteError::Fail);
        let busy = WriteError::Propose(ProposeError::TooManyPending { limit: 1 });
        assert_eq!(AfterWriteError::of(&busy, me, false), AfterWriteError::Fail);
        assert!(AfterWriteError::proves_not_applied(&hint(2)));
        assert!(AfterWriteError::proves_not_applied(&WriteError::Superseded));
        assert!(!AfterWriteError::proves_not_applied(&WriteError::Unknown));
        assert!(!AfterWriteError::proves_not_applied(&busy));
    }
}
