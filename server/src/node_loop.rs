//! The node loop: one task owns the [`CacheNode`] and drives it through `core::exec`'s
//! [`Executor`] (the code the simulator runs too); everything else talks to it through a bounded
//! channel of [`Input`]s and watches its [`Status`].
//!
//! Each turn: wait for an input or the node's next deadline; drain the queued inputs (bounded),
//! so many proposals share one `Ready` and therefore one fsync (group commit); tick; then let the
//! executor handle `Ready`s until the node has nothing left to do, sending what it queues and
//! answering the requests it resolves. This file adds only the IO: the channel, the clock, the
//! transport, the snapshot writer thread, metrics and the status the rest of the server reads.
//!
//! The loop runs on its own OS thread (with a current-thread runtime) because WAL writes and
//! fsyncs block: they then delay only the loop that must wait for them anyway, never the HTTP
//! servers or the Raft senders.

use crate::metrics::{CacheOpMeter, Metrics, ROLES, RoleLabel, SizeType, gauge_value};
use crate::transport::{MemberAddr, Transport, raft_addresses};
use crate::wal_store::{SnapshotWritten, WalStore, describe_io};
use prometheus_client::metrics::gauge::Gauge;
use simple_cache_core::exec::{Answers, Executor, Fatal};
pub use simple_cache_core::exec::{Query, QueryResult, WriteOp};
use simple_cache_core::node::{CacheNode, RequestIds, WriteResult};
use simple_cache_core::raft::{MembershipError, PeerStatus, ReadError, Role, TransferError};
use simple_cache_core::{Instant, LogIndex, Membership, MembershipChange, Message, NodeId, Term};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Departed members whose addresses are kept (see `NodeLoop::departed`).
const DEPARTED_MAX: usize = 16;

/// `SIMPLE_CACHE_TEST_PANIC_AFTER_WRITES=N` plants a panic on the node loop after N writes, in
/// debug builds only, so a test can check that a node-loop panic ends the process.
fn test_panic_after_writes() -> Option<u64> {
    if !cfg!(debug_assertions) {
        return None;
    }
    std::env::var("SIMPLE_CACHE_TEST_PANIC_AFTER_WRITES").ok().and_then(|v| v.parse().ok())
}

/// Inputs drained per turn before a `Ready` is taken: bounds the latency one turn adds.
const INPUTS_PER_TURN_MAX: usize = 4096;
/// Capacity of the input channel; senders wait (HTTP handlers) or drop (Raft messages) beyond.
pub const INPUT_QUEUE_MAX: usize = 8192;

/// The node's clock: Unix epoch milliseconds at start plus a monotonic elapsed time.
///
/// TTL deadlines are absolute and replicated, so every node (and a restarted node) must read
/// roughly the same time: epoch milliseconds. Within a process the clock must also never jump:
/// core ignores time going backwards, so a wall clock stepped back by an hour would freeze
/// elections for an hour. Anchoring once and adding `std::time::Instant` elapsed gives both.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch_ms_at_start: u64,
    start: std::time::Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let epoch_ms_at_start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock { epoch_ms_at_start, start: std::time::Instant::now() }
    }
    pub fn now(&self) -> Instant {
        Instant(self.epoch_ms_at_start + self.start.elapsed().as_millis() as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

pub type WriteReply = oneshot::Sender<WriteResult>;
pub type ReadReply = oneshot::Sender<Result<QueryResult, ReadError>>;

pub enum Input {
    Write {
        op: WriteOp,
        reply: WriteReply,
    },
    /// A linearizable read (ReadIndex), or with `stale` a local read.
    Read {
        query: Query,
        stale: bool,
        reply: ReadReply,
    },
    Raft(Vec<Message>),
    Membership {
        change: MembershipChange,
        reply: oneshot::Sender<Result<LogIndex, MembershipError>>,
    },
    Transfer {
        target: NodeId,
        reply: oneshot::Sender<Result<(), TransferError>>,
    },
    Peers {
        reply: oneshot::Sender<(Instant, Vec<PeerStatus>)>,
    },
    /// Extra Raft addresses learned outside the log (the join response gives the joiner the
    /// leader's address before any log entry arrives).
    LearnAddresses(BTreeMap<NodeId, MemberAddr>),
    /// A node that is not a member sent a batch from this Raft address (see `departed`).
    SenderAddress {
        id: NodeId,
        addr: String,
    },
    /// A member's client address, as it advertises it in its Raft batches: used to forward
    /// writes to it when the membership has none (peers listed as the seed's bare URLs).
    ClientAddress {
        id: NodeId,
        addr: String,
    },
    /// Open a watch (see `crate::watch`).
    Watch {
        filter: simple_cache_core::watch::Filter,
        start: Option<u64>,
        reply: oneshot::Sender<Result<crate::watch::Opened, crate::watch::OpenError>>,
    },
    /// The state at the applied index, detached, for a backup (`crate::backup_api`).
    Backup {
        reply: oneshot::Sender<simple_cache_core::snapshot::SnapshotJob>,
    },
    /// Hand leadership over if leader, flush the WAL, stop.
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// What the rest of the server may know about the node without asking it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit_index: LogIndex,
    pub last_applied: LogIndex,
    pub membership: Membership,
    pub membership_change_pending: bool,
    pub transfer_target: Option<NodeId>,
    pub keys: usize,
    /// This node is no longer a member of the cluster (see `RaftNode::removed`).
    pub removed: bool,
    /// The loop has stopped (shutdown or fatal error).
    pub stopped: bool,
    /// Client addresses members advertised, for those the membership has none for.
    pub client_addrs: BTreeMap<NodeId, String>,
    /// The cache's memory estimate and the limits in force (replicated).
    pub used_bytes: u64,
    pub limits: simple_cache_core::cache::Limits,
}

impl Status {
    /// Ready to serve: a leader is known and everything known committed is applied.
    pub fn is_ready(&self) -> bool {
        !self.stopped && self.leader.is_some() && self.last_applied >= self.commit_index
    }
    /// The client address of the leader, if known.
    pub fn leader_http_addr(&self) -> Option<String> {
        self.client_addr(self.leader?)
    }
    /// A member's client address: the membership's, else the one it advertised.
    pub fn client_addr(&self, id: NodeId) -> Option<String> {
        let listed = self.membership.addresses.get(&id).and_then(|a| MemberAddr::decode(a).http);
        listed.or_else(|| self.client_addrs.get(&id).cloned())
    }
}

pub struct NodeLoop {
    node: CacheNode,
    wal: WalStore,
    transport: Transport,
    clock: Clock,
    metrics: Arc<Metrics>,
    rx: mpsc::Receiver<Input>,
    /// Results of the background snapshot writer.
    snapshots_written: mpsc::UnboundedReceiver<SnapshotWritten>,
    status_tx: watch::Sender<Status>,
    exec: Executor<WriteReply, ReadReply>,
    /// Addresses learned outside the log; the membership's win when both know a node.
    learned: BTreeMap<NodeId, MemberAddr>,
    /// Client addresses members advertised (see [`Input::ClientAddress`]).
    client_addrs: BTreeMap<NodeId, String>,
    /// The configured memory limits (see [`NodeLoop::set_memory_limits`]).
    memory_limits: Option<Arc<crate::reload::Limits>>,
    /// The cache's eviction count at the last `publish`, for the eviction counters.
    evicted_seen: u64,
    /// The last index of the log recovered at start: applying up to it replays evictions
    /// counted by the previous process.
    replayed_until: LogIndex,
    /// A snapshot from the leader was installed since the last `publish`.
    installed_snapshot: bool,
    addresses_applied: BTreeMap<NodeId, String>,
    /// Raft addresses of nodes that left the membership, most recent last: a removed node that
    /// did not see its removal commit still campaigns, and must reach the leader to be told.
    departed: Vec<(NodeId, String)>,
    /// Debug builds only: panic after this many writes (tests that the process exits).
    panic_after_writes: Option<u64>,
    last_leader: Option<NodeId>,
    /// The last leader this node knew, kept while none is known (see [`leader_changed`]).
    last_known_leader: Option<NodeId>,
    /// `raft_role`'s series for this node, in the order of [`ROLES`].
    role_gauges: [Gauge; 3],
    /// `cache_size_bytes`'s series: `memory`, `item_count`.
    cache_size_gauges: [Gauge; 2],
    last_membership: Membership,
    /// Samples `raft_append_entries_latency_seconds`.
    append_timer: crate::transport::AppendTimer,
    /// See `Config::clock_skew_max_ms`; when this node last compared its clock with the
    /// cluster's, and whether it was off then.
    clock_skew_max_ms: u64,
    clock_checked_at: Instant,
    clock_warned: bool,
    /// The open watches (see `crate::watch`).
    watchers: crate::watch::Watchers,
}

impl NodeLoop {
    pub fn new(
        mut node: CacheNode,
        mut wal: WalStore,
        transport: Transport,
        clock: Clock,
        metrics: Arc<Metrics>,
        rx: mpsc::Receiver<Input>,
        ids: RequestIds,
    ) -> (NodeLoop, watch::Receiver<Status>) {
        node.set_meter(Box::new(CacheOpMeter::new(&metrics)));
        let node_id = node.raft().id().0;
        let role_gauges =
            ROLES.map(|role| metrics.role.get_or_create_owned(&RoleLabel { node_id, role }));
        let cache_size_gauges = ["memory", "item_count"]
            .map(|r#type| metrics.cache_size.get_or_create_owned(&SizeType { r#type }));
        let status = status_of(&node, false, &BTreeMap::new());
        let evicted_seen = node.cache().evicted_total();
        let replayed_until = node.raft().log().last_index();
        let (status_tx, status_rx) = watch::channel(status);
        let snapshots_written = wal.start_writer();
        let mut l = NodeLoop {
            node,
            wal,
            transport,
            clock,
            metrics,
            rx,
            snapshots_written,
            status_tx,
            exec: Executor::new(ids),
            learned: BTreeMap::new(),
            client_addrs: BTreeMap::new(),
            memory_limits: None,
            // Evictions before this process (in the snapshot it restored) are not counted again.
            evicted_seen,
            replayed_until,
            installed_snapshot: false,
            addresses_applied: BTreeMap::new(),
            departed: Vec::new(),
            panic_after_writes: test_panic_after_writes(),
            last_leader: None,
            last_known_leader: None,
            role_gauges,
            cache_size_gauges,
            last_membership: Membership::default(),
            append_timer: Default::default(),
            clock_skew_max_ms: 500,
            clock_checked_at: Instant(0),
            clock_warned: false,
            watchers: crate::watch::Watchers::new(0),
        };
        l.update_addresses();
        (l, status_rx)
    }

    /// Sets the clock assumption: a node whose own clock is further than this from the cluster
    /// time warns (at most once a minute).
    pub fn set_clock_skew_max_ms(&mut self, ms: u64) {
        self.clock_skew_max_ms = ms;
    }

    /// Where the configured memory limits are read (hot reload updates them): the node proposes
    /// them through the log while it leads.
    /// Serves watches: keeps `history_events` change events and at most `max_watchers` open.
    pub fn serve_watches(&mut self, history_events: usize, max_watchers: usize) {
        self.node.serve_watches(history_events);
        self.watchers = crate::watch::Watchers::new(max_watchers);
    }

    pub fn set_memory_limits(&mut self, limits: Arc<crate::reload::Limits>) {
        self.node.set_desired_limits(limits.memory());
        self.memory_limits = Some(limits);
    }

    /// Warns when this node's wall clock is further from the cluster time than the configured
    /// skew. TTLs stay right (the cluster time is the median of the members' clocks), but the
    /// operator should fix the clock: a majority of bad clocks would move the cluster time.
    fn check_clock(&mut self) {
        let now = self.clock.now();
        // Checked once a second; after a warning, once a minute.
        let quiet_ms = if self.clock_warned { 60_000 } else { 1_000 };
        if now.saturating_since(self.clock_checked_at) < quiet_ms {
            return;
        }
        self.clock_checked_at = now;
        self.clock_warned = false;
        let cluster = self.node.raft().cluster_time();
        let off_ms = simple_cache_core::clock::diff_ms(now, cluster);
        if off_ms.unsigned_abs() > self.clock_skew_max_ms {
            self.clock_warned = true;
            tracing::warn!(
                offset_ms = off_ms,
                clock_skew_max_ms = self.clock_skew_max_ms,
                "this node's wall clock is {off_ms} ms off the cluster time (more than \
                 clock_skew_max_ms): TTLs follow the cluster, but fix this machine's clock (NTP)"
            );
        }
    }

    /// Runs the loop on a dedicated thread; returns when the loop stops.
    pub fn spawn(self) -> std::thread::JoinHandle<()> {
        std::thread::Builder::new()
            .name("node-loop".to_string())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                    .expect("a current-thread runtime builds");
                rt.block_on(self.run());
            })
            .expect("the node loop thread starts")
    }

    async fn run(mut self) {
        loop {
            let now = self.clock.now();
            let wait_ms = self.node.next_deadline().saturating_since(now);
            let first = if wait_ms == 0 {
                self.rx.try_recv().ok()
            } else {
                tokio::select! {
                    input = self.rx.recv() => match input {
                        Some(i) => Some(i),
                        // Every sender is gone: the server is shutting down.
                        None => { self.stop(None).await; return; }
                    },
                    written = self.snapshots_written.recv() => {
                        if let Some(w) = written {
                            self.on_snapshot_written(w);
                        }
                        None
                    }
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => None,
                }
            };
            while let Ok(w) = self.snapshots_written.try_recv() {
                self.on_snapshot_written(w);
            }
            let mut inputs = Vec::new();
            inputs.extend(first);
            while inputs.len() < INPUTS_PER_TURN_MAX {
                match self.rx.try_recv() {
                    Ok(i) => inputs.push(i),
                    Err(_) => break,
                }
            }
            for input in inputs {
                if let Input::Shutdown { reply } = input {
                    self.stop(Some(reply)).await;
                    return;
                }
                self.handle_input(input);
            }
            if let Some(l) = &self.memory_limits {
                self.node.set_desired_limits(l.memory());
            }
            self.node.tick(self.clock.now());
            self.drain_ready();
            self.check_clock();
            self.publish();
        }
    }

    fn handle_input(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Write { op, reply } => {
                if let Some(left) = self.panic_after_writes.as_mut() {
                    if *left == 0 {
                        panic!("SIMPLE_CACHE_TEST_PANIC_AFTER_WRITES: planted node-loop panic");
                    }
                    *left -= 1;
                }
                let r = self.exec.write(&mut self.node, &mut self.wal, now, op, reply);
                r.unwrap_or_else(fatal_exec);
            }
            Input::Read { query, stale, reply } => {
                let r = self.exec.read(&mut self.node, &mut self.wal, now, query, stale, reply);
                r.unwrap_or_else(fatal_exec);
            }
            Input::Watch { filter, start, reply } => {
                // Everything applied so far goes to the open watchers first, so the new one's
                // replay and what it is fed next neither overlap nor leave a gap.
                self.deliver_watch_events();
                let opened = self.watchers.open(self.node.watch_history(), filter, start);
                let _ = reply.send(opened);
                self.metrics.watchers.set(self.watchers.len() as i64);
            }
            Input::Raft(messages) => {
                for m in messages {
                    if let Some(d) = self.append_timer.answered(&m) {
                        self.metrics.append_entries_latency.observe(d.as_secs_f64());
                    }
                    if let Err(e) = self.node.step(now, m) {
                        tracing::debug!(error = %e, "raft message refused");
                    }
                }
            }
            Input::Membership { change, reply } => {
                tracing::info!(?change, "membership change requested");
                let r = self.node.raft_mut().propose_membership(now, change);
                let _ = reply.send(r);
            }
            Input::Transfer { target, reply } => {
                let r = self.node.raft_mut().transfer_leadership(now, target);
                let _ = reply.send(r);
            }
            Input::Peers { reply } => {
                let _ = reply.send((now, self.node.raft().peers()));
            }
            Input::SenderAddress { id, addr } => {
                let known = self.departed.iter().any(|(d, a)| *d == id && *a == addr);
                if !known && !self.node.raft().membership().contains(id) {
                    self.departed.retain(|(d, _)| *d != id);
                    self.departed.push((id, addr));
                    if self.departed.len() > DEPARTED_MAX {
                        self.departed.remove(0);
                    }
                    self.update_addresses();
                }
            }
            Input::ClientAddress { id, addr } => {
                if self.node.raft().membership().contains(id) {
                    self.client_addrs.insert(id, addr);
                }
            }
            Input::LearnAddresses(addrs) => {
                self.learned.extend(addrs);
                self.update_addresses();
            }
            Input::Backup { reply } => {
                let _ = reply.send(self.node.backup_job());
            }
            Input::Shutdown { .. } => unreachable!("handled by the caller"),
        }
    }

    /// Handles `Ready`s until the node has nothing left to do (see `core::exec`), then sends
    /// the answers.
    fn drain_ready(&mut self) {
        let (transport, metrics) = (&mut self.transport, &self.metrics);
        let timer = &mut self.append_timer;
        let mut installed = false;
        let r = self.exec.drain_ready(
            &mut self.node,
            &mut self.wal,
            |messages| {
                timer.sent(&messages);
                transport.send(messages)
            },
            |stats| {
                metrics.proposals_applied.inc_by(stats.applied);
                if stats.snapshot_installed {
                    metrics.snapshot_installs.inc();
                    installed = true;
                }
            },
        );
        r.unwrap_or_else(fatal_exec);
        self.installed_snapshot |= installed;
        if let Some(d) = self.wal.take_fsync_duration() {
            self.metrics.wal_fsync_duration.observe(d.as_secs_f64());
        }
        self.answer();
        self.deliver_watch_events();
    }

    /// Hands the change events applied since the last call to the open watches.
    fn deliver_watch_events(&mut self) {
        let (events, gap) = self.node.take_watch_events();
        if !events.is_empty() || gap.is_some() {
            self.watchers.deliver(&events, gap);
            self.metrics.watchers.set(self.watchers.len() as i64);
        }
    }

    /// Sends the answers the executor resolved.
    fn answer(&mut self) {
        let Answers { writes, reads } = self.exec.take_answers();
        for (reply, result) in writes {
            if result.is_ok() {
                self.metrics.proposals_committed.inc();
            } else {
                self.metrics.proposals_failed.inc();
            }
            let _ = reply.send(result);
        }
        for (reply, result) in reads {
            let _ = reply.send(result);
        }
    }

    /// The background writer encoded a snapshot and, if new, made its file durable: the executor
    /// hands it to the node and compacts the WAL to it.
    fn on_snapshot_written(&mut self, w: SnapshotWritten) {
        if let Err(e) = w.result {
            fatal("writing a snapshot file failed", &e);
        }
        let started = std::time::Instant::now();
        let r = self.exec.snapshot_written(&mut self.node, &mut self.wal, w.snapshot, w.written);
        if r.unwrap_or_else(fatal_exec) {
            self.metrics.snapshot_saves.inc();
            let total = w.duration + started.elapsed();
            self.metrics.snapshot_save_duration.observe(total.as_secs_f64());
        }
    }

    fn update_addresses(&mut self) {
        let membership = self.node.raft().membership();
        for (id, addr) in &self.addresses_applied {
            if !membership.contains(*id) && !self.departed.iter().any(|(d, _)| d == id) {
                self.departed.push((*id, addr.clone()));
                if self.departed.len() > DEPARTED_MAX {
                    self.departed.remove(0);
                }
            }
        }
        self.departed.retain(|(id, _)| !membership.contains(*id));
        let mut addrs: BTreeMap<NodeId, String> =
            self.departed.iter().map(|(id, a)| (*id, a.clone())).collect();
        addrs.extend(self.learned.iter().map(|(id, a)| (*id, a.raft.clone())));
        for (id, a) in raft_addresses(membership) {
            addrs.insert(id, a.raft);
        }
        if addrs != self.addresses_applied {
            self.transport.set_addresses(&addrs);
            self.addresses_applied = addrs;
        }
    }

    fn publish(&mut self) {
        let membership = self.node.raft().membership();
        self.client_addrs.retain(|id, _| membership.contains(*id));
        let status = status_of(&self.node, false, &self.client_addrs);
        if status.leader != self.last_leader {
            match status.leader {
                Some(l) => {
                    tracing::info!(leader = %l, term = %status.term, role = ?status.role, "leader known")
                }
                None => tracing::info!(term = %status.term, "no leader known"),
            }
            self.last_leader = status.leader;
        }
        if leader_changed(&mut self.last_known_leader, status.leader) {
            self.metrics.leader_changes.inc();
        }
        if status.membership != self.last_membership {
            tracing::info!(
                voters = ?status.membership.voters, learners = ?status.membership.learners,
                "membership changed"
            );
            self.last_membership = status.membership.clone();
        }
        let m = &self.metrics;
        let role = match status.role {
            Role::Follower => 0,
            Role::Candidate => 1,
            Role::Leader => 2,
        };
        for (i, g) in self.role_gauges.iter().enumerate() {
            g.set(i64::from(i == role));
        }
        m.term.set(gauge_value(status.term.0));
        m.commit_index.set(gauge_value(status.commit_index.0));
        m.last_applied.set(gauge_value(status.last_applied.0));
        m.has_leader.set(i64::from(status.leader.is_some()));
        m.is_leader.set(i64::from(status.role == Role::Leader));
        m.keys.set(gauge_value(status.keys as u64));
        let [memory, item_count] = &self.cache_size_gauges;
        memory.set(gauge_value(self.node.cache().approx_bytes() as u64));
        item_count.set(gauge_value(status.keys as u64));
        m.expiration_heap_size.set(gauge_value(self.node.cache().expiration_index_len() as u64));
        m.peers.set(gauge_value(status.membership.members().count() as u64));
        let cache = self.node.cache();
        m.used_memory.set(gauge_value(cache.used_bytes()));
        m.max_memory.set(gauge_value(cache.limits().max_memory_bytes));
        m.max_keys.set(gauge_value(cache.limits().max_keys));
        let evicted = cache.evicted_total();
        // Entries replayed from the WAL at start, and snapshots from the leader, bring
        // evictions this process already counted or never made: they are not counted.
        let replaying = status.last_applied <= self.replayed_until;
        if evicted > self.evicted_seen && !replaying && !self.installed_snapshot {
            let n = evicted - self.evicted_seen;
            let policy = cache.limits().policy.name();
            m.evicted_keys.get_or_create(&crate::metrics::PolicyLabel { policy }).inc_by(n);
            m.cache_evictions.inc_by(n);
        }
        self.evicted_seen = evicted;
        self.installed_snapshot = false;
        m.proposals_pending.set(gauge_value(self.node.pending_requests() as u64));
        self.update_addresses();
        self.status_tx.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }

    /// Graceful stop: a leader hands leadership to the most caught-up voter and waits (at most an
    /// election timeout) for it to take over, then the WAL is flushed.
    async fn stop(&mut self, reply: Option<oneshot::Sender<()>>) {
        let now = self.clock.now();
        match self.node.raft_mut().hand_over_for_shutdown(now) {
            Ok(None) => {}
            Ok(Some(target)) => {
                tracing::info!(%target, "shutting down: handing leadership over");
                let deadline = now.saturating_add_ms(self.node.raft().config().election_timeout_ms);
                while self.node.raft().is_leader() && self.clock.now() < deadline {
                    let wait = self
                        .node
                        .next_deadline()
                        .min(deadline)
                        .saturating_since(self.clock.now())
                        .max(1);
                    tokio::select! {
                        input = self.rx.recv() => {
                            // Only Raft traffic matters now; dropping a client's
                            // input drops its reply channel, which answers 503.
                            if let Some(Input::Raft(m)) = input {
                                self.handle_input(Input::Raft(m));
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    }
                    self.node.tick(self.clock.now());
                    self.drain_ready();
                }
                if self.node.raft().is_leader() {
                    tracing::warn!(%target, "leadership transfer did not finish before shutdown");
                } else {
                    tracing::info!(%target, "leadership handed over");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not hand leadership over"),
        }
        self.answer();
        self.deliver_watch_events();
        self.watchers.close_all("resume on another node from the revision given");
        if let Err(e) = self.wal.sync() {
            fatal("flushing the WAL failed", &e);
        }
        let mut status = status_of(&self.node, true, &self.client_addrs);
        status.leader = None;
        self.status_tx.send_replace(status);
        tracing::info!("node loop stopped; WAL flushed");
        if let Some(r) = reply {
            let _ = r.send(());
        }
    }
}

/// Whether `leader` is a change of leader for `raft_leader_changes_total`: a leader other than
/// the last one this node knew. Losing the leader (an election under way, a partition) is not a
/// change by itself; a different node leading next is, and the same node leading again is not
/// (the election shows in `raft_term`). The first leader known after start counts, as etcd's
/// `leader_changes_seen_total` does, so 0 means this node never knew a leader.
fn leader_changed(last_known: &mut Option<NodeId>, leader: Option<NodeId>) -> bool {
    match leader {
        Some(l) if *last_known != Some(l) => {
            *last_known = Some(l);
            true
        }
        _ => false,
    }
}

fn status_of(node: &CacheNode, stopped: bool, client_addrs: &BTreeMap<NodeId, String>) -> Status {
    let raft = node.raft();
    Status {
        id: raft.id(),
        role: raft.role(),
        term: raft.term(),
        leader: raft.leader_id(),
        commit_index: raft.commit_index(),
        last_applied: raft.last_applied(),
        membership: raft.membership().clone(),
        membership_change_pending: raft.membership_change_pending(),
        transfer_target: raft.transfer_target(),
        keys: node.cache().len(),
        removed: raft.removed(),
        stopped,
        client_addrs: client_addrs.clone(),
        used_bytes: node.cache().used_bytes(),
        limits: node.cache().limits(),
    }
}

/// A failed WAL write or fsync: the node cannot vouch for its state, so it stops at once rather
/// than acknowledge anything more (a node must never vouch for what it could not persist).
fn fatal(what: &str, e: &std::io::Error) -> ! {
    eprintln!("simple-cache: fatal: {what}: {}; stopping the node", describe_io(e));
    std::process::exit(EXIT_FATAL);
}

fn fatal_exec<T>(f: Fatal<std::io::Error>) -> T {
    fatal(f.what, &f.error)
}

/// Exit status of a node that hit an error it cannot go on from (an IO error on the WAL, a
/// panic on the node loop).
pub const EXIT_FATAL: i32 = 70;

#[cfg(test)]
mod tests {
    use super::*;

    // A leader change counts once, however long the cluster went without a leader in between,
    // and a leader that loses and regains leadership is no change.
    #[test]
    fn leader_changes_count_changes_of_leader_only() {
        let mut last = None;
        let seen = [None, Some(1), Some(1), None, Some(2), None, None, Some(2), None, Some(1)];
        let changes: Vec<bool> =
            seen.iter().map(|l| leader_changed(&mut last, l.map(NodeId))).collect();
        assert_eq!(
            changes,
            [false, true, false, false, true, false, false, false, false, true],
            "the first leader, 1 to 2, 2 to 1"
        );
    }
}
