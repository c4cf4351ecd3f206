//! The madsim harness: a cluster of real `CacheNode`s inside one madsim runtime.
//!
//! Every node is a task that drives its `CacheNode` through the server's own executor
//! (`core::exec`): wait for a message, a client request or the node's next deadline; hand requests
//! to the executor (request ids per incarnation, TTLs to deadlines); then, for each `Ready`, the
//! executor writes to the node's [`SimDisk`] and queues the leader's early messages, the harness
//! sends them and lets the fsync take simulated time (a crash can land there, or the fsync can
//! fail), and the executor finishes the `Ready` (send, apply, answer, hand a snapshot job over).
//! Snapshot jobs are encoded and their files written by a writer task after a delay, as the
//! server's writer thread does; the executor compacts the WAL when the node loop next hears of it.
//! The node state lives in the shared [`World`] so that a crash can drop it and the final checks
//! can inspect it; a crash also aborts the node's task.
//!
//! The network is ours: each message gets a seeded fate (lost, duplicated, delayed, delayed by a
//! spike) and travels as a task that sleeps for its delay. Directed links can be cut. Clients are
//! tasks that run random Set/Get/Del operations over a few keys against random nodes and record a
//! history for `lincheck`. Every random choice comes from one `ChaCha8Rng` seeded with the run's
//! seed (madsim's scheduler is seeded with it too), so a seed replays a run exactly; the trace
//! digest proves it.

mod client;
pub mod hostile;
pub mod nemesis;
mod run;
pub mod service;

pub use run::{
    RunReport, Scenario, run_scenario, run_scenario_seeds, run_seed, seeds_from_env, seeds_scaled,
};

use crate::checks::{Fnv, NodeState, RaftChecker, check_log_matching};
use crate::disk::SimDisk;
use crate::lincheck::{CacheInput, CacheOutput, History, Operation};
use bytes::Bytes;
use madsim::task::JoinHandle;
use madsim::time::{Duration, sleep, timeout};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use simple_cache_core::config::Config;
use simple_cache_core::exec::{Answers, Executor, Query, QueryResult, WriteOp};
use simple_cache_core::message::{Entry, Membership, Message, Snapshot};
use simple_cache_core::node::{CacheNode, NodeConfig, RequestIds, WriteError, WriteResult};
use simple_cache_core::peer_wire;
use simple_cache_core::raft::{Mutation, Persisted, ReadError, Role};
use simple_cache_core::snapshot::EncodedSnapshot;
use simple_cache_core::types::{Instant, LogIndex, NodeId, Term};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The Raft timing every simulated node uses: fast, so a run covers many elections.
pub const HEARTBEAT_MS: u64 = 10;
pub const ELECTION_TIMEOUT_MS: u64 = 100;

/// How far a good simulated wall clock may be from true time (either way).
pub const CLOCK_SKEW_MS: u64 = 20;

/// The longest a snapshot writer task takes to encode a job and write its file.
pub const SNAPSHOT_WRITE_MS_MAX: u64 = 4;

/// The TTL checker's tolerance `eps = 2e` (see `ttlcheck`): `e` bounds how far the cluster time
/// is from true time when more than half of the sampled clocks are good: their skew, 200 ppm of
/// drift over a run of up to a minute (12 ms), and a sample's message delay (up to 5 ms) with
/// margin.
pub fn ttl_eps_ms(cfg: &SimConfig) -> u64 {
    2 * (cfg.clock_skew_ms + 30)
}

/// The wall-clock time true simulated time 0 corresponds to (2023-11-14), so clocks an hour
/// behind stay positive.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// One message in this many crosses the simulated network as encoded frame bytes.
const FRAMED_EVERY: u64 = 8;

/// A node's clock as the server reads it (`node_loop::Clock`): the wall clock once at start,
/// then elapsed monotonic time at the machine's rate. A wall-clock step (NTP) shows only at the
/// next start, so steps are drawn at restarts.
#[derive(Clone, Copy, Debug)]
pub struct NodeClock {
    /// The wall clock minus true time, in ms.
    pub wall_offset_ms: i64,
    /// How fast the oscillator runs, in parts per million (±200).
    pub drift_ppm: i64,
    /// Whether this node has the run's bad clock (an hour off, when it is off).
    pub bad: bool,
    /// True time and the node's clock reading when the current incarnation started.
    started_true_ms: u64,
    started_at_ms: u64,
}

impl NodeClock {
    fn draw(rng: &mut ChaCha8Rng, skew_ms: u64, bad: bool) -> NodeClock {
        let mut c = NodeClock {
            wall_offset_ms: 0,
            drift_ppm: (rng.next_u64() % 401) as i64 - 200,
            bad,
            started_true_ms: 0,
            started_at_ms: EPOCH_MS,
        };
        c.step(rng, skew_ms);
        c
    }

    /// A new wall-clock reading: within the skew, or (a bad clock, most of the time) an hour
    /// fast or slow.
    fn step(&mut self, rng: &mut ChaCha8Rng, skew_ms: u64) {
        let within = (rng.next_u64() % (2 * skew_ms + 1)) as i64 - skew_ms as i64;
        self.wall_offset_ms = if self.bad && !rng.next_u64().is_multiple_of(4) {
            let hour = 3_600_000 + within;
            if rng.next_u64().is_multiple_of(2) { hour } else { -hour }
        } else {
            within
        };
    }

    /// The clock as the node reads it at true time `true_ms`.
    pub fn read(&self, true_ms: u64) -> Instant {
        let elapsed = true_ms.saturating_sub(self.started_true_ms) as i64;
        let drifted = elapsed + elapsed * self.drift_ppm / 1_000_000;
        Instant(self.started_at_ms.saturating_add_signed(drifted))
    }

    /// A (re)start at true time `true_ms` reads the wall clock afresh.
    fn start(&mut self, true_ms: u64) {
        self.started_true_ms = true_ms;
        self.started_at_ms = (EPOCH_MS + true_ms).saturating_add_signed(self.wall_offset_ms);
    }
}

/// The shape of a run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub nodes: u64,
    pub clients: u64,
    pub keys: u64,
    /// A client gives up on an operation after this long (its outcome is then unknown).
    pub op_timeout_ms: u64,
    /// The service's `request_timeout_ms` (`service.rs`): how long a node works on one request
    /// (waiting for a leader, forwarding) before it answers with an error. Shorter than
    /// `op_timeout_ms`, so a client whose node cannot reach a leader tries another node.
    pub request_timeout_ms: u64,
    pub snapshot_threshold: u64,
    /// A planted bug in every node (mutation tests).
    pub mutation: Option<Mutation>,
    /// Simulated time an fsync takes.
    pub fsync_ms: u64,
    /// After healing, a leader, a write and a read must succeed within this bound.
    pub liveness_ms: u64,
    /// Entries per AppendEntries message. 1 makes a new leader's followers acknowledge earlier
    /// terms' entries before its no-op (what the Raft figure 8 bug needs).
    pub append_entries_max: usize,
    /// Keys `t0..` that clients also write with TTLs (judged by `ttlcheck`, not by the
    /// linearizability checker). 0: none, and the clients draw exactly as before.
    pub ttl_keys: u64,
    /// Raft's pre-vote and check-quorum (both on in the server). Every election runs pre-vote
    /// when it is on, which hides vote rules broken only outside it, so some seed families run
    /// with one of them off (see `vary_election_rules`).
    pub pre_vote: bool,
    pub check_quorum: bool,
    /// For scenarios that do not depend on pre-vote or check-quorum: a third of the seeds run
    /// without pre-vote, a third without check-quorum (see [`SimConfig::for_seed`]).
    pub vary_election_rules: bool,
    /// Clocks that lie: every node's wall clock is off by up to `clock_skew_ms` either way and
    /// runs up to 200 ppm fast or slow; when `bad_clock` is set, one node's (never a majority's)
    /// is off by an hour (see [`NodeClock`]).
    pub clock_skew_ms: u64,
    pub bad_clock: bool,
    /// Fsyncs of a node's `Ready` that fail, per mille. A failing fsync crashes the node, which
    /// restarts 50-300 ms later (the server exits with status 70 and is restarted by its
    /// supervisor), unless the mutation `ContinueAfterFailedFsync` is planted.
    pub fsync_fail_per_mille: u64,
    /// Leaders promote caught-up learners themselves (`NodeConfig::promote_learners`), as in
    /// the server. Off only where a scenario promotes by hand at a chosen moment.
    pub promote_learners: bool,
    /// A memory bound every node asks for (its leader proposes it through the log): with a
    /// small `max_keys`, most writes evict. Evictions are reported by the state machine with
    /// their index and enter the history as deletes (see [`World::evictions_at`]).
    pub limits: Option<simple_cache_core::cache::Limits>,
}

impl SimConfig {
    /// The configuration seed `seed` runs with.
    pub fn for_seed(&self, seed: u64) -> SimConfig {
        let mut c = self.clone();
        // Half the seeds of every family run with one node's clock an hour off.
        c.bad_clock = c.nodes >= 3 && seed.is_multiple_of(2);
        if c.vary_election_rules {
            match seed % 3 {
                1 => c.pre_vote = false,
                2 => c.check_quorum = false,
                _ => {}
            }
        }
        c
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            nodes: 3,
            clients: 3,
            keys: 5,
            op_timeout_ms: 500,
            request_timeout_ms: 200,
            snapshot_threshold: 40,
            mutation: None,
            fsync_ms: 1,
            liveness_ms: 5_000,
            append_entries_max: 8,
            ttl_keys: 0,
            pre_vote: true,
            check_quorum: true,
            vary_election_rules: false,
            clock_skew_ms: CLOCK_SKEW_MS,
            bad_clock: false,
            fsync_fail_per_mille: 0,
            promote_learners: true,
            limits: None,
        }
    }
}

/// Network faults in force. Probabilities are per mille.
#[derive(Clone, Debug)]
pub struct Net {
    pub loss_per_mille: u64,
    pub dup_per_mille: u64,
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    /// A latency spike: this fraction of messages is delayed by `spike_ms` more.
    pub spike_per_mille: u64,
    pub spike_ms: u64,
    /// Directed links that lose every message: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Extra delay, up to this many ms, of ReadIndex answers only (a slow leader's answers).
    pub read_answer_delay_ms: u64,
    /// Extra delay, up to this many ms, of every message to a node (a node that lags).
    pub slow_to: BTreeMap<NodeId, u64>,
}

impl Default for Net {
    fn default() -> Net {
        Net {
            loss_per_mille: 0,
            dup_per_mille: 0,
            delay_ms_min: 1,
            delay_ms_max: 5,
            spike_per_mille: 0,
            spike_ms: 0,
            cut: BTreeSet::new(),
            read_answer_delay_ms: 0,
            slow_to: BTreeMap::new(),
        }
    }
}

pub type WriteReply = async_channel::Sender<WriteResult>;
pub type ReadReply = async_channel::Sender<Result<Option<Bytes>, ReadError>>;

/// What arrives in a node's inbox.
pub enum Input {
    Msg(Message),
    /// A client write (a set's TTL is relative; the executor turns it into a deadline).
    Write(WriteOp, WriteReply),
    Read(String, ReadReply),
    /// The writer task encoded a snapshot job and, if it was new, wrote its file.
    SnapshotWritten(EncodedSnapshot, bool),
    /// Something changed the node from outside (an admin call): handle its `Ready`.
    Kick,
}

/// One node: its disk survives crashes, everything else does not.
pub struct Slot {
    pub disk: SimDisk,
    pub node: Option<CacheNode>,
    inbox: Option<async_channel::Sender<Input>>,
    task: Option<JoinHandle<()>>,
    incarnation: u64,
    /// The server's executor: request ids from the incarnation the disk recorded at this start,
    /// and the replies waiting on the node. Gone with the node at a crash (clients see their
    /// reply channels close: outcome unknown).
    exec: Option<Executor<WriteReply, ReadReply>>,
}

pub struct World {
    pub seed: u64,
    pub cfg: SimConfig,
    pub net: Net,
    pub rng: ChaCha8Rng,
    start: madsim::time::Instant,
    pub slots: BTreeMap<NodeId, Slot>,
    pub checker: RaftChecker,
    pub history: History<CacheInput, CacheOutput>,
    /// The history's clock: one tick per call or return, so real-time order is exact.
    history_clock: u64,
    digest: Fnv,
    pub stop_clients: bool,
    pub messages_sent: u64,
    pub crashes: u64,
    /// Snapshots from a leader installed by each node (`Ready::snapshot`).
    pub snapshots_installed: BTreeMap<NodeId, u64>,
    /// The last time a leader advanced its commit index to an entry of an earlier term by
    /// counting replicas (what correct Raft never does): (leader, its term, the index). The
    /// figure 8 nemesis reacts to it.
    pub previous_term_commit: Option<(NodeId, Term, LogIndex)>,
    commit_seen: BTreeMap<NodeId, LogIndex>,
    /// Nodes removed from the cluster and shut down for good: never restarted, never a target
    /// of the nemesis (`Sim::node_ids` leaves them out).
    pub retired: BTreeSet<NodeId>,
    /// Membership changes that took effect (committed on the leader), for the run's report.
    pub membership_changes: u64,
    /// Operations on the TTL keys, for `ttlcheck`.
    pub ttl_history: Vec<crate::ttlcheck::TtlOp>,
    /// Each node's clock; drawn from their own RNG, so they do not shift the run's other draws.
    pub clocks: BTreeMap<NodeId, NodeClock>,
    clock_rng: ChaCha8Rng,
    /// Wall-clock steps taken at restarts, for the run's report.
    pub clock_steps: u64,
    /// Hostile messages (`hostile.rs`) the nodes refused, and confusing ones they took.
    pub hostile_refused: u64,
    pub hostile_accepted: u64,
    /// Fsyncs that failed.
    pub fsync_failures: u64,
    /// Graceful stops that started a hand-over, and those after which the leader was no longer
    /// leader (the successor, or another node, took over in time).
    pub handovers: (u64, u64),
    /// The single-server-change reactor (`nemesis::single_server_change`), when armed.
    pub change_reactor: Option<ChangeReactor>,
    /// With `limits`: when each log entry (index, term) was first persisted by any node, on the
    /// history's clock (the earliest it can take effect).
    entry_seen: BTreeMap<(LogIndex, Term), u64>,
    /// With `limits`: the keys the entry at each index evicted, as the first node to apply it
    /// reported them; every other node must report the same.
    pub evictions_at: BTreeMap<LogIndex, Vec<String>>,
    /// The change events of each revision, as the first node to apply it produced them (see
    /// [`World::check_watch`]).
    events_at: BTreeMap<u64, Vec<simple_cache_core::watch::Event>>,
    /// Per node, the revision its change feed has accounted for.
    watch_applied: BTreeMap<NodeId, u64>,
    /// Keys evicted (for the run's report).
    pub evicted: u64,
    /// The cache digest at each applied index, as the first node there computed it, and which
    /// node that was: every replica at the same applied index must have the same.
    cache_digests: BTreeMap<LogIndex, (u64, NodeId)>,
}

/// Armed by `nemesis::single_server_change`: the first node other than `old` to become leader
/// is cut off, before its first messages leave, from one other voter (`spare`, the lowest id
/// that is neither) and from `learner`, both ways. `fired` records (new leader, spare).
#[derive(Clone, Debug)]
pub struct ChangeReactor {
    pub old: NodeId,
    pub learner: NodeId,
    pub voters: Vec<NodeId>,
    pub fired: Option<(NodeId, NodeId)>,
}

/// A handle on the simulated cluster, for scenarios (the nemesis) and the harness's tasks.
#[derive(Clone)]
pub struct Sim(Arc<Mutex<World>>);

fn raft_config(id: NodeId, sim: &SimConfig) -> Config {
    let append_entries_max = sim.append_entries_max;
    let mut c = Config::new(id);
    c.pre_vote = sim.pre_vote;
    c.check_quorum = sim.check_quorum;
    c.heartbeat_interval_ms = HEARTBEAT_MS;
    c.election_timeout_ms = ELECTION_TIMEOUT_MS;
    // Small limits, so batching, pipelining and chunked snapshots are exercised.
    c.append_entries_max = append_entries_max;
    c.inflight_appends_max = 4;
    c.snapshot_chunk_bytes_max = 128;
    c.promotion_lag_max = 4;
    c
}

/// Change events each simulated node keeps for watches (the server's default).
const WATCH_HISTORY_EVENTS: usize = 10_000;

impl World {
    /// After node `id` applied entries: the keys they evicted must be exactly those the first
    /// node to apply each index reported, and its cache digest the one every other replica had
    /// at the same applied index. The first report of an index enters the history as a delete
    /// of each evicted key, between the moment its entry was first persisted (it cannot take
    /// effect earlier) and now (a node has applied it).
    /// After node `id` applied up to `applied`: the change events its feed handed out (since
    /// the revision it had reached, or since a snapshot gap it announced) must be, revision by
    /// revision, those the first node to apply each revision produced; nothing repeated,
    /// nothing left out.
    fn check_watch(
        &mut self,
        id: NodeId,
        events: Vec<simple_cache_core::watch::Event>,
        gap: Option<u64>,
        applied: u64,
    ) {
        let mut from = self.watch_applied.get(&id).copied().unwrap_or(0);
        if let Some(g) = gap {
            from = from.max(g);
        }
        let mut by_revision: BTreeMap<u64, Vec<simple_cache_core::watch::Event>> = BTreeMap::new();
        for e in events {
            by_revision.entry(e.revision).or_default().push(e);
        }
        if let Some((r, _)) = by_revision.range(..=from).next() {
            self.checker.violations.push(format!(
                "watch feed: node {id} handed out revision {r} again (it had reached {from})"
            ));
        }
        for r in from + 1..=applied {
            let got = by_revision.remove(&r).unwrap_or_default();
            match self.events_at.get(&r) {
                Some(first) if *first != got => {
                    self.checker.violations.push(format!(
                        "watch feed: node {id}'s events at revision {r} are {got:?}, the first \
                         node to apply it had {first:?}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.events_at.insert(r, got);
                }
            }
        }
        if let Some((r, _)) = by_revision.range(applied + 1..).next() {
            self.checker.violations.push(format!(
                "watch feed: node {id} handed out revision {r} beyond what it applied ({applied})"
            ));
        }
        self.watch_applied.insert(id, applied);
    }

    fn check_evictions(
        &mut self,
        id: NodeId,
        evictions: Vec<(LogIndex, String)>,
        applied_terms: &BTreeMap<LogIndex, Term>,
        (applied, digest): (LogIndex, u64),
    ) {
        let mut by_index: BTreeMap<LogIndex, Vec<String>> = BTreeMap::new();
        for (index, key) in evictions {
            by_index.entry(index).or_default().push(key);
        }
        for index in applied_terms.keys() {
            let keys = by_index.remove(index).unwrap_or_default();
            match self.evictions_at.get(index) {
                Some(first) if *first != keys => {
                    self.checker.violations.push(format!(
                        "eviction divergence: node {id} evicted {keys:?} at index {index}, \
                         another replica {first:?}"
                    ));
                }
                Some(_) => {}
                None => {
                    let term = applied_terms[index];
                    let call = self.entry_seen.get(&(*index, term)).copied().unwrap_or(0);
                    for key in &keys {
                        let ret = self.tick_clock();
                        self.trace_event(&format!("evicted {key} at {index} on {id}"));
                        let input = CacheInput {
                            key: key.as_bytes().to_vec(),
                            op: crate::lincheck::CacheOp::Del,
                        };
                        let op = Operation::completed(
                            u64::MAX,
                            input,
                            call,
                            ret,
                            CacheOutput::Existed(true),
                        );
                        self.history.push(op).expect("the history clock only moves forward");
                    }
                    self.evicted += keys.len() as u64;
                    self.evictions_at.insert(*index, keys);
                }
            }
        }
        match self.cache_digests.get(&applied) {
            Some(&(first, node)) if first != digest => {
                self.checker.violations.push(format!(
                    "replica divergence: at applied index {applied} node {id}'s cache digest is \
                     {digest:x}, node {node}'s was {first:x}"
                ));
            }
            Some(_) => {}
            None => {
                self.cache_digests.insert(applied, (digest, id));
            }
        }
    }

    pub fn now(&self) -> Instant {
        Instant(self.start.elapsed().as_millis() as u64)
    }

    /// Node `id`'s own clock now: what its `CacheNode` is given as `now`.
    pub fn node_now(&self, id: NodeId) -> Instant {
        let t = self.now().0;
        self.clocks.get(&id).map_or(Instant(EPOCH_MS + t), |c| c.read(t))
    }

    pub fn trace_event(&mut self, event: &str) {
        let now = self.now().0;
        self.digest.write(&now.to_le_bytes());
        self.digest.write(event.as_bytes());
    }

    pub fn digest(&self) -> u64 {
        self.digest.finish()
    }

    pub fn violation(&mut self, msg: String) {
        self.checker.violations.push(msg);
    }

    fn tick_clock(&mut self) -> u64 {
        self.history_clock += 1;
        self.history_clock
    }

    pub fn is_up(&self, id: NodeId) -> bool {
        self.slots.get(&id).is_some_and(|s| s.node.is_some())
    }

    pub fn up_nodes(&self) -> Vec<NodeId> {
        self.slots.iter().filter(|(_, s)| s.node.is_some()).map(|(id, _)| *id).collect()
    }

    /// The up leader with the highest term.
    pub fn leader(&self) -> Option<(NodeId, Term)> {
        self.slots
            .iter()
            .filter_map(|(id, s)| s.node.as_ref().map(|n| (*id, n)))
            .filter(|(_, n)| n.raft().role() == Role::Leader)
            .map(|(id, n)| (id, n.raft().term()))
            .max_by_key(|(_, t)| *t)
    }

    pub fn node(&self, id: NodeId) -> Option<&CacheNode> {
        self.slots.get(&id).and_then(|s| s.node.as_ref())
    }

    pub fn node_mut(&mut self, id: NodeId) -> Option<&mut CacheNode> {
        self.slots.get_mut(&id).and_then(|s| s.node.as_mut())
    }

    /// Hands a message to the network: it may be lost, duplicated, delayed or cut. Some travel
    /// as the server's transport sends them, a `peer_wire` frame decoded on delivery.
    fn send(&mut self, sim: &Sim, m: Message) {
        self.messages_sent += 1;
        if self.net.cut.contains(&(m.from, m.to)) {
            return;
        }
        if self.rng.next_u64() % 1000 < self.net.loss_per_mille {
            return;
        }
        let copies = if self.rng.next_u64() % 1000 < self.net.dup_per_mille { 2 } else { 1 };
        for _ in 0..copies {
            let span = self.net.delay_ms_max.saturating_sub(self.net.delay_ms_min) + 1;
            let mut delay = self.net.delay_ms_min + self.rng.next_u64() % span;
            if self.rng.next_u64() % 1000 < self.net.spike_per_mille {
                delay += self.net.spike_ms;
            }
            if self.net.read_answer_delay_ms > 0
                && matches!(m.body, simple_cache_core::MessageBody::ReadIndexResponse { .. })
            {
                delay += self.rng.next_u64() % (self.net.read_answer_delay_ms + 1);
            }
            if let Some(&slow) = self.net.slow_to.get(&m.to) {
                delay += self.rng.next_u64() % (slow + 1);
            }
            let sim = sim.clone();
            // One message in `FRAMED_EVERY` travels as frame bytes (chosen by count, not by the
            // seed's random stream): every kind of message meets the listener's decoding over
            // a run, and the scenarios keep their speed (encoding all of them in a debug build
            // made the suite a third slower).
            let framed = self.messages_sent.is_multiple_of(FRAMED_EVERY);
            let item = if framed {
                let mut wire = Vec::new();
                peer_wire::encode_frame(&peer_wire::Frame::Raft(vec![m.clone()]), &mut wire);
                Err(wire)
            } else {
                Ok(m.clone())
            };
            madsim::task::spawn(async move {
                sleep(Duration::from_millis(delay)).await;
                match item {
                    Ok(m) => sim.deliver_message(m),
                    Err(wire) => sim.deliver(&wire),
                }
            });
        }
    }
}

impl Sim {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        // A panic in one task fails the run anyway; the state stays readable for the report.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Builds a cluster of `cfg.nodes` founding voters (ids 1..=n), starts them and the clients.
    pub fn start(seed: u64, cfg: SimConfig) -> Sim {
        let membership = Membership::with_voters((1..=cfg.nodes).map(NodeId));
        let bootstrap = Persisted::bootstrap(membership);
        let mut world = World {
            seed,
            cfg: cfg.clone(),
            net: Net::default(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            start: madsim::time::Instant::now(),
            slots: BTreeMap::new(),
            checker: RaftChecker::new(),
            history: History::new(),
            history_clock: 0,
            digest: Fnv::new(),
            stop_clients: false,
            messages_sent: 0,
            crashes: 0,
            snapshots_installed: BTreeMap::new(),
            previous_term_commit: None,
            commit_seen: BTreeMap::new(),
            retired: BTreeSet::new(),
            membership_changes: 0,
            ttl_history: Vec::new(),
            clocks: BTreeMap::new(),
            clock_rng: ChaCha8Rng::seed_from_u64(seed ^ 0xc10c_c10c),
            clock_steps: 0,
            hostile_refused: 0,
            hostile_accepted: 0,
            fsync_failures: 0,
            change_reactor: None,
            handovers: (0, 0),
            entry_seen: BTreeMap::new(),
            evictions_at: BTreeMap::new(),
            events_at: BTreeMap::new(),
            watch_applied: BTreeMap::new(),
            evicted: 0,
            cache_digests: BTreeMap::new(),
        };
        let bad = cfg.bad_clock.then(|| 1 + world.clock_rng.next_u64() % cfg.nodes);
        for id in 1..=cfg.nodes {
            world.slots.insert(NodeId(id), Slot::new(SimDisk::bootstrap(&bootstrap)));
            let clock = NodeClock::draw(&mut world.clock_rng, cfg.clock_skew_ms, bad == Some(id));
            world.clocks.insert(NodeId(id), clock);
        }
        let sim = Sim(Arc::new(Mutex::new(world)));
        for id in 1..=cfg.nodes {
            sim.restart(NodeId(id));
        }
        for c in 0..cfg.clients {
            let s = sim.clone();
            madsim::task::spawn(async move { client::run(s, c + 1).await });
        }
        sim
    }

    pub fn now(&self) -> Instant {
        self.lock().now()
    }

    pub async fn sleep_ms(&self, ms: u64) {
        sleep(Duration::from_millis(ms)).await;
    }

    /// A random number below `n` from the run's RNG.
    pub fn rand(&self, n: u64) -> u64 {
        self.lock().rng.next_u64() % n.max(1)
    }

    pub fn event(&self, event: &str) {
        self.lock().trace_event(event);
    }

    /// Every node that is not retired (up or down).
    pub fn node_ids(&self) -> Vec<NodeId> {
        let w = self.lock();
        w.slots.keys().copied().filter(|id| !w.retired.contains(id)).collect()
    }

    /// Shuts a removed node down for good: it is never restarted.
    pub fn retire(&self, id: NodeId) {
        self.crash(id, false);
        let mut w = self.lock();
        w.retired.insert(id);
        w.trace_event(&format!("retire {id}"));
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.lock().leader().map(|(id, _)| id)
    }

    /// Waits up to `max_ms` for a leader.
    pub async fn wait_leader(&self, max_ms: u64) -> Option<NodeId> {
        let mut waited = 0;
        loop {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            if waited >= max_ms {
                return None;
            }
            self.sleep_ms(5).await;
            waited += 5;
        }
    }

    pub fn net(&self, f: impl FnOnce(&mut Net)) {
        f(&mut self.lock().net);
    }

    /// Cuts the link from `a` to `b` (one way).
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut w = self.lock();
        w.trace_event(&format!("cut {a}->{b}"));
        w.net.cut.insert((a, b));
    }

    /// Cuts every link between the groups, both ways.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.cut(x, y);
                self.cut(y, x);
            }
        }
    }

    pub fn isolate(&self, id: NodeId) {
        let others: Vec<NodeId> = self.node_ids().into_iter().filter(|&o| o != id).collect();
        self.partition(&[id], &others);
    }

    /// Heals every link and removes loss, duplication and spikes.
    pub fn heal(&self) {
        let mut w = self.lock();
        w.trace_event("heal");
        let cut = std::mem::take(&mut w.net.cut);
        drop(cut);
        w.net = Net::default();
    }

    /// Delivers the messages of one frame, decoded as the server's Raft listener decodes them.
    fn deliver(&self, wire: &[u8]) {
        let mut decoder = peer_wire::FrameDecoder::new(peer_wire::FRAME_BYTES_MAX);
        decoder.push(wire);
        let frame = decoder.next_frame().and_then(|p| {
            let p = p.expect("a whole frame");
            peer_wire::decode_frame::<peer_wire::Frame>(&p)
        });
        let peer_wire::Frame::Raft(messages) = frame.expect("a frame the transport wrote decodes")
        else {
            unreachable!("the network carries Raft frames; forwards go through the service")
        };
        for m in messages {
            self.deliver_message(m);
        }
    }

    fn deliver_message(&self, m: Message) {
        let w = self.lock();
        if w.net.cut.contains(&(m.from, m.to)) {
            return;
        }
        if let Some(tx) = w.slots.get(&m.to).and_then(|s| s.inbox.as_ref()) {
            let _ = tx.try_send(Input::Msg(m));
        }
    }

    /// Sends a client request to a node; `false` if the node is down.
    pub fn submit(&self, id: NodeId, input: Input) -> bool {
        let w = self.lock();
        match w.slots.get(&id).and_then(|s| s.inbox.as_ref()) {
            Some(tx) => tx.try_send(input).is_ok(),
            None => false,
        }
    }

    /// Runs `f` on a node (an admin call) and lets it handle the resulting `Ready`.
    pub fn with_node<R>(
        &self,
        id: NodeId,
        f: impl FnOnce(&mut CacheNode, Instant) -> R,
    ) -> Option<R> {
        let r = {
            let mut w = self.lock();
            let now = w.node_now(id);
            w.node_mut(id).map(|n| f(n, now))
        };
        self.submit(id, Input::Kick);
        r
    }

    /// The figure 8 reactor: whenever a leader commits an earlier term's entry by counting
    /// replicas, crash it and every node holding an entry of its term (its no-op), so that the
    /// next election is among nodes that may prefer a conflicting log. With correct Raft it only
    /// fires when a node's commit index moved in the same `Ready` in which it became leader, so
    /// it mostly sharpens the nemesis against that bug (a reaction to observed state, still
    /// derived from the seed).
    pub fn spawn_figure8_reactor(&self) -> JoinHandle<()> {
        let sim = self.clone();
        madsim::task::spawn(async move {
            loop {
                sleep(Duration::from_millis(1)).await;
                let hit = sim.lock().previous_term_commit.take();
                let Some((leader, term, _)) = hit else { continue };
                let holders: Vec<NodeId> = {
                    let w = sim.lock();
                    w.up_nodes()
                        .into_iter()
                        .filter(|&id| {
                            id == leader
                                || w.node(id).is_some_and(|n| n.raft().log().last_term() >= term)
                        })
                        .collect()
                };
                for &id in &holders {
                    sim.crash(id, false);
                }
                sleep(Duration::from_millis(300 + sim.rand(300))).await;
                for &id in &holders {
                    sim.restart(id);
                }
            }
        })
    }

    /// Power failure of a node: its task and memory are gone, its disk loses unsynced writes
    /// (torn if `tear`).
    pub fn crash(&self, id: NodeId, tear: bool) {
        let mut w = self.lock();
        let w = &mut *w;
        let Some(slot) = w.slots.get_mut(&id) else { return };
        if slot.node.is_none() {
            return;
        }
        if let Some(t) = slot.task.take() {
            t.abort();
        }
        slot.node = None;
        slot.inbox = None;
        // Clients waiting on this node see their reply channel close: outcome unknown.
        slot.exec = None;
        let damage = slot.disk.crash(&mut w.rng, tear);
        w.crashes += 1;
        w.trace_event(&format!("crash {id} {damage:?}"));
    }

    /// A graceful shutdown as the server does it (`node_loop::stop`): a leader hands leadership
    /// to its most caught-up voter (`RaftNode::hand_over_for_shutdown`) and runs until it is no
    /// longer leader or an election timeout passed; then the WAL is flushed and the node stops.
    /// Returns the successor it chose.
    pub async fn graceful_stop(&self, id: NodeId) -> Option<NodeId> {
        let target = self
            .with_node(id, |n, now| n.raft_mut().hand_over_for_shutdown(now))
            .and_then(Result::ok)
            .flatten();
        self.event(&format!("graceful stop of {id}: hand over to {target:?}"));
        let start = self.now();
        while target.is_some() && self.now().saturating_since(start) < ELECTION_TIMEOUT_MS {
            let still = self.lock().node(id).is_some_and(|n| n.raft().is_leader());
            if !still {
                break;
            }
            self.sleep_ms(2).await;
        }
        {
            let mut w = self.lock();
            if target.is_some() {
                w.handovers.0 += 1;
                if w.node(id).is_some_and(|n| !n.raft().is_leader()) {
                    w.handovers.1 += 1;
                }
            }
            if let Some(slot) = w.slots.get_mut(&id) {
                slot.disk.sync();
            }
        }
        self.crash(id, false);
        target
    }

    /// Replaces a node's disk with an empty one (while it is down).
    pub fn wipe(&self, id: NodeId) {
        let mut w = self.lock();
        if let Some(s) = w.slots.get_mut(&id) {
            s.disk.wipe();
        }
        w.checker.wiped(id);
        w.trace_event(&format!("wipe {id}"));
    }

    /// Adds a brand-new node with an empty disk (it joins through a membership change).
    pub fn add_node(&self, id: NodeId) {
        self.lock().slots.entry(id).or_insert_with(|| Slot::new(SimDisk::new()));
        self.restart(id);
    }

    /// Starts (or restarts) a node from its disk, with the server's recovery code.
    pub fn restart(&self, id: NodeId) {
        let mut w = self.lock();
        let w = &mut *w;
        let seed = w.rng.next_u64();
        if w.retired.contains(&id) {
            return;
        }
        if w.slots.get(&id).expect("the node exists").node.is_some() {
            return;
        }
        let true_ms = w.now().0;
        let (skew, restarted) = (w.cfg.clock_skew_ms, w.slots[&id].incarnation > 0);
        let clock =
            w.clocks.entry(id).or_insert_with(|| NodeClock::draw(&mut w.clock_rng, skew, false));
        // A third of restarts find the wall clock stepped (NTP corrected or broke it).
        if restarted && w.clock_rng.next_u64().is_multiple_of(3) {
            clock.step(&mut w.clock_rng, skew);
            w.clock_steps += 1;
        }
        clock.start(true_ms);
        let now = clock.read(true_ms);
        let slot = w.slots.get_mut(&id).expect("the node exists");
        let persisted = match slot.disk.recover() {
            Ok(p) => p,
            Err(e) => {
                w.checker.violations.push(format!("recovery: node {id} cannot restart: {e}"));
                return;
            }
        };
        let term = persisted.hard_state.current_term;
        let voted_for = persisted.hard_state.voted_for;
        let mut ids = RequestIds::new(slot.disk.begin_incarnation());
        if w.cfg.mutation == Some(Mutation::RequestIdsReset) {
            // The bug: ids from 0 again at every start, as before the incarnation record.
            ids = RequestIds::new(0);
        }
        slot.exec = Some(Executor::new(ids));
        let mut cfg = NodeConfig::new(raft_config(id, &w.cfg));
        cfg.snapshot_threshold = w.cfg.snapshot_threshold;
        cfg.promote_learners = w.cfg.promote_learners;
        let mut node = match CacheNode::new(cfg, persisted, seed, now) {
            Ok(n) => n,
            Err(e) => {
                w.checker.violations.push(format!("recovery: node {id} cannot start: {e}"));
                return;
            }
        };
        node.raft_mut().set_mutation(w.cfg.mutation);
        // Every node serves watches, as the server's do; `check_watch` follows each feed.
        node.serve_watches(WATCH_HISTORY_EVENTS);
        w.watch_applied.insert(id, node.raft().last_applied().0);
        if let Some(limits) = w.cfg.limits {
            node.set_desired_limits(limits);
            node.report_evictions();
        }
        // What the rebuilt node holds in memory, not only what its disk says, must be the
        // durable state: a node that forgot its term or vote could vote twice in a term.
        let (mem_term, mem_vote) = (node.raft().term(), node.raft().voted_for());
        let (disk_term, disk_vote) = (term, voted_for);
        if (mem_term, mem_vote) != (disk_term, disk_vote) {
            w.checker.violations.push(format!(
                "durable term: node {id} rebuilt with term {mem_term} vote {mem_vote:?}, its disk \
                 holds term {disk_term} vote {disk_vote:?}"
            ));
        }
        let (tx, rx) = async_channel::unbounded();
        slot.node = Some(node);
        slot.inbox = Some(tx);
        slot.incarnation += 1;
        let incarnation = slot.incarnation;
        let sim = self.clone();
        slot.task =
            Some(madsim::task::spawn(async move { sim.node_main(id, incarnation, rx).await }));
        w.checker.restarted(id, mem_term);
        w.trace_event(&format!("start {id} term {term}"));
    }

    /// The node's event loop, like the server's.
    async fn node_main(self, id: NodeId, incarnation: u64, rx: async_channel::Receiver<Input>) {
        // A node whose `next_deadline()` stays in the past after `tick` would spin forever at one
        // simulated instant (and burn a core in the server): detect it, report it once, and let
        // 1 ms pass so the run can finish.
        let (mut spin_at, mut spins, mut spin_reported) = (Instant(u64::MAX), 0u64, false);
        loop {
            let wait = {
                let w = self.lock();
                let Some(n) = w.node(id) else { return };
                n.next_deadline().saturating_since(w.node_now(id))
            };
            if wait == 0 {
                let now = self.now();
                if now == spin_at {
                    spins += 1;
                } else {
                    (spin_at, spins) = (now, 0);
                }
                if spins >= 10_000 {
                    if !spin_reported {
                        spin_reported = true;
                        let mut w = self.lock();
                        let detail = w.node(id).map(|n| {
                            format!(
                                "{:?} term {} transfer {:?} next_deadline {:?} cache clock {:?} \
                                 earliest expiry {:?}",
                                n.raft().role(),
                                n.raft().term(),
                                n.raft().transfer_target(),
                                n.next_deadline(),
                                n.cache().clock(),
                                n.cache().next_deadline()
                            )
                        });
                        w.violation(format!(
                            "busy loop: node {id} at {now:?}: next_deadline() is still in the past \
                             after {spins} ticks at one instant ({detail:?})"
                        ));
                    }
                    spins = 0;
                    sleep(Duration::from_millis(1)).await;
                    continue;
                }
            }
            let mut inputs = Vec::new();
            if wait > 0 {
                match timeout(Duration::from_millis(wait), rx.recv()).await {
                    Ok(Ok(input)) => inputs.push(input),
                    Ok(Err(_)) => return,
                    Err(_) => {}
                }
            }
            // Take what else has arrived, as a server batches its socket reads.
            while inputs.len() < 64 {
                match rx.try_recv() {
                    Ok(input) => inputs.push(input),
                    Err(_) => break,
                }
            }
            {
                let mut w = self.lock();
                let w = &mut *w;
                let now = w.node_now(id);
                let Some(slot) = w.slots.get_mut(&id) else { return };
                if slot.incarnation != incarnation {
                    return;
                }
                let (Some(node), Some(exec)) = (slot.node.as_mut(), slot.exec.as_mut()) else {
                    return;
                };
                let disk = &mut slot.disk;
                for input in inputs {
                    let done = match input {
                        Input::Msg(m) => {
                            if let Err(e) = node.step(now, m) {
                                w.checker.violations.push(format!("step on node {id}: {e}"));
                            }
                            Ok(())
                        }
                        Input::Write(op, reply) => exec.write(node, disk, now, op, reply),
                        Input::Read(key, reply) => {
                            exec.read(node, disk, now, Query::Get(key), false, reply)
                        }
                        Input::SnapshotWritten(snapshot, written) => {
                            exec.snapshot_written(node, disk, snapshot, written).map(|_| ())
                        }
                        Input::Kick => Ok(()),
                    };
                    let Ok(()) = done;
                }
                if node.next_deadline() <= now {
                    node.tick(now);
                }
            }
            self.process_ready(id, incarnation).await;
        }
    }

    /// Handles `Ready`s until there is none, through the server's executor (`core::exec`).
    async fn process_ready(&self, id: NodeId, incarnation: u64) {
        loop {
            let (persisting, fsync_ms) = {
                let mut w = self.lock();
                let w = &mut *w;
                let Some(slot) = w.slots.get_mut(&id) else { return };
                if slot.incarnation != incarnation {
                    return;
                }
                let (Some(node), Some(exec)) = (slot.node.as_mut(), slot.exec.as_mut()) else {
                    return;
                };
                // 1 + 2: snapshot, entries and hard state to the disk (volatile so far).
                let Ok(persisting) = exec.begin_ready(node, &mut slot.disk);
                let Some(persisting) = persisting else { return };
                // As the server does: a leader's appends and heartbeats leave before its fsync,
                // so a crash during the fsync can leave followers holding entries it lost.
                let early = exec.take_messages();
                let ready = persisting.ready();
                if ready.snapshot.is_some() {
                    *w.snapshots_installed.entry(id).or_default() += 1;
                }
                w.digest.write(&id.0.to_le_bytes());
                w.digest.write(&simple_cache_core::codec::encode(&(
                    &ready.hard_state,
                    &ready.entries,
                    &early,
                    &ready.messages,
                )));
                if w.cfg.limits.is_some() {
                    for e in &persisting.ready().entries {
                        if !w.entry_seen.contains_key(&(e.index, e.term)) {
                            let t = w.tick_clock();
                            w.entry_seen.insert((e.index, e.term), t);
                        }
                    }
                }
                w.checker.sent(id, &early);
                for m in early {
                    w.send(self, m);
                }
                (persisting, w.cfg.fsync_ms)
            };
            if persisting.must_sync() {
                // The fsync takes time: a crash now loses (or tears) what was just written, and
                // nothing that depends on it has left the node.
                sleep(Duration::from_millis(fsync_ms)).await;
                let mut guard = self.lock();
                let w = &mut *guard;
                let per_mille = w.cfg.fsync_fail_per_mille;
                let fails = per_mille > 0 && w.rng.next_u64() % 1000 < per_mille;
                let carry_on = w.cfg.mutation == Some(Mutation::ContinueAfterFailedFsync);
                match w.slots.get_mut(&id) {
                    Some(slot) if slot.incarnation == incarnation && slot.node.is_some() => {
                        if !fails {
                            slot.disk.sync();
                        } else if carry_on {
                            slot.disk.sync_failed();
                            w.fsync_failures += 1;
                            w.trace_event(&format!("fsync failed on {id}; carrying on"));
                        } else {
                            // The node cannot know what reached the disk: it stops (the server
                            // exits with status 70), and its supervisor restarts it.
                            w.fsync_failures += 1;
                            w.trace_event(&format!("fsync failed on {id}: exit"));
                            let delay = 50 + w.rng.next_u64() % 250;
                            drop(guard);
                            // Down at once (this task ends: its node is gone), back later.
                            self.crash(id, false);
                            let sim = self.clone();
                            madsim::task::spawn(async move {
                                sleep(Duration::from_millis(delay)).await;
                                sim.restart(id);
                            });
                            return;
                        }
                    }
                    _ => return,
                }
            }
            let mut w = self.lock();
            let w = &mut *w;
            match w.slots.get(&id) {
                Some(slot) if slot.incarnation == incarnation && slot.node.is_some() => {}
                _ => return,
            }
            // The single-server-change reactor, before the new leader's first messages leave.
            if let Some(r) = w.change_reactor.as_mut()
                && r.fired.is_none()
                && id != r.old
                && id != r.learner
                && w.slots[&id].node.as_ref().is_some_and(|n| n.raft().is_leader())
                && let Some(&spare) = r.voters.iter().find(|&&v| v != id && v != r.old)
            {
                r.fired = Some((id, spare));
                for other in [spare, r.learner] {
                    w.net.cut.insert((id, other));
                    w.net.cut.insert((other, id));
                }
                w.trace_event(&format!("change reactor: leader {id} cut from {spare}"));
            }
            w.checker.applied(id, &persisting.ready().committed_entries);
            // 3 + 4 + 5: send, apply and answer, through the server's code.
            let slot = w.slots.get_mut(&id).expect("checked above");
            let node = slot.node.as_mut().expect("checked above");
            let exec = slot.exec.as_mut().expect("a running node has an executor");
            let applied_terms: BTreeMap<LogIndex, Term> =
                persisting.ready().committed_entries.iter().map(|e| (e.index, e.term)).collect();
            let Ok(_) = exec.finish_ready(node, &mut slot.disk, persisting);
            let evictions = node.take_evictions();
            let (events, gap) = node.take_watch_events();
            let cache_digest = (node.raft().last_applied(), node.cache().digest());
            let messages = exec.take_messages();
            let Answers { writes, reads } = exec.take_answers();
            let job = slot.disk.take_submitted();
            let raft = node.raft();
            let commit = raft.commit_index();
            // Commits happen while stepping a response as well as in `advance`: compare with
            // what this node's last `Ready` showed.
            let commit_before = w.commit_seen.insert(id, commit).unwrap_or_default();
            if raft.is_leader()
                && commit > commit_before
                && raft.log().term_at(commit).is_some_and(|t| t < raft.term())
            {
                w.previous_term_commit = Some((id, raft.term(), commit));
            }
            let state = NodeState {
                role: raft.role(),
                term: raft.term(),
                commit_index: raft.commit_index(),
                last_applied: raft.last_applied(),
            };
            w.checker.sent(id, &messages);
            for m in messages {
                w.send(self, m);
            }
            for (reply, result) in writes {
                if let Err(WriteError::Undecodable(e)) = &result {
                    w.checker
                        .violations
                        .push(format!("node {id}: committed entry undecodable: {e}"));
                }
                let _ = reply.try_send(result);
            }
            for (reply, result) in reads {
                let _ = reply.try_send(result.map(|r| match r {
                    QueryResult::Value(v) => v,
                    _ => None,
                }));
            }
            if let Some(job) = job {
                self.spawn_snapshot_writer(w, id, incarnation, job);
            }
            if w.cfg.limits.is_some() {
                w.check_evictions(id, evictions, &applied_terms, cache_digest);
            }
            w.check_watch(id, events, gap, cache_digest.0.0);
            w.checker.observe(id, state);
        }
    }

    /// The server's snapshot writer thread, as a task: after a delay (encoding and writing take
    /// time), encode the job and, if it is new, write its file durably; then tell the node loop,
    /// whose executor compacts the WAL. A crash at any point in between is possible.
    fn spawn_snapshot_writer(
        &self,
        w: &mut World,
        id: NodeId,
        incarnation: u64,
        job: simple_cache_core::snapshot::SnapshotJob,
    ) {
        let delay = w.rng.next_u64() % (SNAPSHOT_WRITE_MS_MAX + 1);
        let sim = self.clone();
        madsim::task::spawn(async move {
            sleep(Duration::from_millis(delay)).await;
            let mut w = sim.lock();
            let Some(slot) = w.slots.get_mut(&id) else { return };
            if slot.incarnation != incarnation || slot.node.is_none() {
                return;
            }
            let written = job.is_new();
            let snapshot = if job.keeps_data() {
                let snapshot = job.encode();
                if written {
                    slot.disk.write_snapshot_file(&snapshot);
                }
                EncodedSnapshot::with_data(snapshot)
            } else {
                // As the server does: the data streams to the file and only its length comes
                // back, so the node must ask again when a follower needs it.
                let len = job.encoded_len();
                let mut data = Vec::new();
                job.write_data(&mut data).expect("writing into a Vec");
                assert_eq!(data.len() as u64, len, "a snapshot's counted length is its length");
                let snapshot = Snapshot { meta: job.meta.clone(), data: data.into() };
                slot.disk.write_snapshot_file(&snapshot);
                EncodedSnapshot { meta: job.meta.clone(), len, data: None }
            };
            if let Some(tx) = &slot.inbox {
                let _ = tx.try_send(Input::SnapshotWritten(snapshot, written));
            }
        });
    }

    /// Records a completed client operation.
    pub fn record(&self, client: u64, input: CacheInput, call: u64, output: Option<CacheOutput>) {
        let mut w = self.lock();
        let op = match output {
            Some(out) => {
                let ret = w.tick_clock();
                w.trace_event(&format!("c{client} {input:?} -> {out:?}"));
                Operation::completed(client, input, call, ret, out)
            }
            None => {
                w.trace_event(&format!("c{client} {input:?} -> unknown"));
                Operation::unknown(client, input, call)
            }
        };
        w.history.push(op).expect("the history clock only moves forward");
    }

    /// Records an operation on a TTL key (`ret` and `ret_ms` are taken now unless `unknown`).
    pub fn record_ttl(&self, op: crate::ttlcheck::TtlOp, unknown: bool) {
        let mut w = self.lock();
        let mut op = op;
        if !unknown {
            op.ret = Some(w.tick_clock());
            op.ret_ms = Some(w.now().0);
        }
        w.trace_event(&format!("ttl {op:?}"));
        w.ttl_history.push(op);
    }

    pub fn call_time(&self) -> u64 {
        self.lock().tick_clock()
    }

    /// Heals every fault, restarts every down node, then requires, within the liveness bound, a
    /// leader, a write and a linearizable read of it, and every member applying the same state.
    pub async fn heal_and_check_liveness(&self) {
        self.heal();
        for id in self.node_ids() {
            let removed = {
                let w = self.lock();
                w.leader()
                    .and_then(|(l, _)| w.node(l))
                    .is_some_and(|n| !n.raft().membership().contains(id))
            };
            if !removed {
                self.restart(id);
            }
        }
        let bound = self.lock().cfg.liveness_ms;
        let start = self.now();
        let ok = client::probe(self, bound).await;
        if !ok {
            let w = &mut *self.lock();
            let states: Vec<String> = w
                .slots
                .iter()
                .map(|(id, s)| match &s.node {
                    Some(n) => format!(
                        "{id}: {:?} term {} commit {} applied {}",
                        n.raft().role(),
                        n.raft().term(),
                        n.raft().commit_index(),
                        n.raft().last_applied()
                    ),
                    None => format!("{id}: down"),
                })
                .collect();
            w.violation(format!(
                "liveness: no leader + write + read within {bound} ms after healing ({})",
                states.join("; ")
            ));
            return;
        }
        // Every member catches up to the leader's commit index and holds the same cache.
        let spent = self.now().saturating_since(start);
        let mut waited = 0;
        loop {
            let converged = {
                let w = self.lock();
                match w.leader() {
                    None => false,
                    Some((l, _)) => {
                        let leader = w.node(l).expect("the leader is up");
                        let commit = leader.raft().commit_index();
                        let members: Vec<NodeId> = leader.raft().membership().members().collect();
                        members
                            .iter()
                            .all(|m| w.node(*m).is_some_and(|n| n.raft().last_applied() >= commit))
                    }
                }
            };
            if converged {
                break;
            }
            if spent + waited >= bound {
                self.lock().violation(format!(
                    "liveness: members did not all apply the leader's commit index within {bound} ms"
                ));
                return;
            }
            self.sleep_ms(10).await;
            waited += 10;
        }
    }

    /// Stops the clients and runs every end-of-run check. Returns the violations.
    pub async fn finish(&self) -> Vec<String> {
        self.lock().stop_clients = true;
        // Every client finishes its operation within its timeout.
        let t = self.lock().cfg.op_timeout_ms;
        self.sleep_ms(t + 50).await;
        let mut w = self.lock();
        let w = &mut *w;
        // Log matching across every pair of up nodes.
        let logs: Vec<(NodeId, BTreeMap<LogIndex, Entry>)> = w
            .slots
            .iter()
            .filter_map(|(id, s)| s.node.as_ref().map(|n| (*id, node_log(n))))
            .collect();
        for i in 0..logs.len() {
            for j in i + 1..logs.len() {
                if let Err(e) = check_log_matching((logs[i].0, &logs[i].1), (logs[j].0, &logs[j].1))
                {
                    w.checker.violations.push(e);
                }
            }
        }
        // Replicas at the same applied index hold the same cache.
        let mut by_applied: BTreeMap<LogIndex, (NodeId, Bytes)> = BTreeMap::new();
        for (id, s) in &w.slots {
            let Some(n) = &s.node else { continue };
            let snap = n.cache().snapshot();
            match by_applied.get(&n.raft().last_applied()) {
                Some((other, b)) if *b != snap => w.checker.violations.push(format!(
                    "replica agreement: nodes {other} and {id} applied up to {} but hold \
                     different caches",
                    n.raft().last_applied()
                )),
                Some(_) => {}
                None => {
                    by_applied.insert(n.raft().last_applied(), (*id, snap));
                }
            }
        }
        w.checker.violations.clone()
    }
}

/// The entries a node holds in memory, by index.
fn node_log(n: &CacheNode) -> BTreeMap<LogIndex, Entry> {
    let log = n.raft().log();
    let mut out = BTreeMap::new();
    let mut i = log.first_index();
    while i <= log.last_index() {
        if let Some(e) = log.get(i) {
            out.insert(i, e.clone());
        }
        i = i.next();
    }
    out
}

impl Slot {
    fn new(disk: SimDisk) -> Slot {
        Slot { disk, node: None, inbox: None, task: None, incarnation: 0, exec: None }
    }
}
