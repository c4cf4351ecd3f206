//! An in-memory cluster of [`RaftNode`]s for tests: no threads, no async, no clock.
//!
//! Messages travel through an explicit queue with a seeded delay; a test can drop a fraction of
//! them, cut links (in one or both directions), crash and restart nodes (their "disk" survives),
//! and run time forward. After every `Ready` the cluster checks election safety (one leader per
//! term) and state machine safety (every node applies the same entry at each index), panicking on
//! a violation. Available to core's own tests and, with the `testkit` feature, to fuzz targets.
//!
//! It does not use `crate::exec` (the executor the server and the simulator share) because it
//! drives bare `RaftNode`s, without the cache state machine the executor serves, so that Raft's
//! rules can be tested alone; its `Ready` loop follows the same documented order.

use crate::config::Config;
use crate::message::*;
use crate::raft::{Persisted, RaftNode, Ready, Role};
use crate::types::{Instant, LogIndex, NodeId, Term};
use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

/// What a node has on its (perfect, synchronous) disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, ready: &Ready) {
        if let Some(s) = &ready.snapshot {
            // Like the WAL's Snapshot record: later entries survive only if the log agrees with
            // the snapshot at its last index.
            let agrees = self
                .entries
                .iter()
                .any(|e| e.index == s.meta.last_index && e.term == s.meta.last_term);
            if agrees {
                self.entries.retain(|e| e.index > s.meta.last_index);
            } else {
                self.entries.clear();
            }
            self.snapshot = Some(s.clone());
        }
        if let Some(hs) = &ready.hard_state {
            self.hard_state = hs.clone();
        }
        if let Some(first) = ready.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(ready.entries.iter().cloned());
        }
    }

    fn compact(&mut self, snapshot: Snapshot) {
        self.entries.retain(|e| e.index > snapshot.meta.last_index);
        self.snapshot = Some(snapshot);
    }

    fn persisted(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state.clone(),
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// A node of the test cluster with a trivial state machine: the list of applied commands.
pub struct TestNode {
    pub raft: RaftNode,
    pub disk: Disk,
    /// Applied command payloads by index (the state machine).
    pub applied: BTreeMap<LogIndex, Bytes>,
    pub applied_index: LogIndex,
    /// Reads answered: (id, read index) once applied up to it.
    pub reads_done: Vec<(ReadId, LogIndex)>,
    pub reads_waiting: Vec<ReadState>,
    pub reads_aborted: Vec<ReadId>,
    pub up: bool,
}

struct InFlight {
    deliver_at: Instant,
    seq: u64,
    msg: Message,
}

pub struct Cluster {
    pub now: Instant,
    rng: ChaCha8Rng,
    pub nodes: BTreeMap<NodeId, TestNode>,
    in_flight: Vec<InFlight>,
    seq: u64,
    /// Probability (out of 1000) that a message is lost.
    pub drop_per_mille: u32,
    /// Directed links that lose every message: (from, to).
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    pub delay_ms_min: u64,
    pub delay_ms_max: u64,
    config: Box<dyn Fn(NodeId) -> Config>,
    /// The leader of each term seen so far (election safety).
    pub leaders: BTreeMap<Term, NodeId>,
    /// The entry applied at each index by any node (state machine safety).
    pub applied_log: BTreeMap<LogIndex, (Term, Option<Bytes>)>,
    /// Take a snapshot once this many entries are applied past the last one (0: never).
    pub snapshot_every: u64,
    pub messages_delivered: u64,
    /// FNV-1a over the encoded bytes of every Ready's persisted state and messages, in order:
    /// two runs with the same seed must end with the same digest (byte-for-byte determinism).
    pub trace_digest: u64,
    /// Manual delivery (the transcript tests): sent messages wait in `mailbox`, in order, until
    /// the test delivers or drops them; no delay, no random loss (cut links still drop).
    pub manual: bool,
    pub mailbox: Vec<Message>,
    /// When set, every `Ready` handled is written here, one line per part, prefixed with the
    /// node's id (`Display` of `Ready`).
    pub trace: Option<Vec<String>>,
}

/// A config for tests: fast timeouts, small limits so the limits are exercised.
pub fn test_config(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.heartbeat_interval_ms = 10;
    c.election_timeout_ms = 100;
    c.append_entries_max = 8;
    c.inflight_appends_max = 4;
    c.snapshot_chunk_bytes_max = 64;
    c.promotion_lag_max = 4;
    c
}

impl Cluster {
    /// A new cluster of `voters` voters (ids 1..=voters) with the given seed.
    pub fn new(voters: u64, seed: u64) -> Cluster {
        Cluster::with_config(voters, seed, Box::new(test_config))
    }

    pub fn with_config(voters: u64, seed: u64, config: Box<dyn Fn(NodeId) -> Config>) -> Cluster {
        let mut c = Cluster {
            now: Instant(0),
            rng: ChaCha8Rng::seed_from_u64(seed),
            nodes: BTreeMap::new(),
            in_flight: Vec::new(),
            seq: 0,
            drop_per_mille: 0,
            blocked: BTreeSet::new(),
            delay_ms_min: 1,
            delay_ms_max: 3,
            config,
            leaders: BTreeMap::new(),
            applied_log: BTreeMap::new(),
            snapshot_every: 0,
            messages_delivered: 0,
            trace_digest: 0xcbf2_9ce4_8422_2325,
            manual: false,
            mailbox: Vec::new(),
            trace: None,
        };
        let membership = Membership::with_voters((1..=voters).map(NodeId));
        for id in 1..=voters {
            let disk = Disk {
                snapshot: Persisted::bootstrap(membership.clone()).snapshot,
                ..Disk::default()
            };
            c.start_node(NodeId(id), disk);
        }
        c
    }

    fn start_node(&mut self, id: NodeId, disk: Disk) {
        let seed = self.rng.next_u64();
        let raft = RaftNode::new((self.config)(id), disk.persisted(), seed, self.now)
            .expect("valid test config");
        let applied_index = disk.snapshot.as_ref().map_or(LogIndex(0), |s| s.meta.last_index);
        let mut applied = BTreeMap::new();
        if let Some(s) = &disk.snapshot {
            applied = decode_applied(&s.data);
        }
        self.nodes.insert(
            id,
            TestNode {
                raft,
                disk,
                applied,
                applied_index,
                reads_done: Vec::new(),
                reads_waiting: Vec::new(),
                reads_aborted: Vec::new(),
                up: true,
            },
        );
    }

    /// Starts a brand-new node with an empty disk (to be added through a membership change).
    pub fn add_empty_node(&mut self, id: NodeId) {
        self.start_node(id, Disk::default());
    }

    pub fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[&id]
    }
    pub fn raft(&mut self, id: NodeId) -> &mut RaftNode {
        &mut self.nodes.get_mut(&id).expect("node exists").raft
    }

    /// The live leader with the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.up && n.raft.role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft.term())
            .map(|(id, _)| *id)
    }

    /// Cuts every link between the two groups, both ways.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for &x in a {
            for &y in b {
                self.blocked.insert((x, y));
                self.blocked.insert((y, x));
            }
        }
    }

    /// Cuts `id` off from every other node, both ways.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        self.partition(&[id], &others);
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Stops a node; its disk survives, its in-memory state and in-flight messages do not.
    pub fn crash(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("node exists");
        n.up = false;
        self.in_flight.retain(|f| f.msg.to != id && f.msg.from != id);
    }

    /// Restarts a crashed node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let disk = self.nodes.remove(&id).expect("node exists").disk;
        self.start_node(id, disk);
    }

    /// Proposes a command on `id`, then lets the node emit its Ready.
    pub fn propose(
        &mut self,
        id: NodeId,
        data: &[u8],
    ) -> Result<(LogIndex, Term), crate::raft::ProposeError> {
        let now = self.now;
        let r = self.raft(id).propose(now, Bytes::copy_from_slice(data));
        self.process(id);
        r
    }

    pub fn read(&mut self, id: NodeId, read: ReadId) -> Result<(), crate::raft::ReadError> {
        let now = self.now;
        let r = self.raft(id).read_index(now, read);
        self.process(id);
        r
    }

    /// Runs the cluster for `ms` milliseconds of simulated time.
    pub fn run_for(&mut self, ms: u64) {
        let end = self.now.saturating_add_ms(ms);
        self.run_until_time(end);
    }

    fn run_until_time(&mut self, end: Instant) {
        // A node whose deadline does not move when ticked would spin here forever: that is a
        // livelock bug in core, reported rather than hung on.
        let mut spins_at_same_instant = 0u32;
        let mut last_now = self.now;
        loop {
            if self.now == last_now {
                spins_at_same_instant += 1;
                assert!(
                    spins_at_same_instant < 100_000,
                    "livelock at {}: {:?}",
                    self.now,
                    self.nodes
                        .iter()
                        .map(|(id, n)| (*id, n.up, n.raft.role(), n.raft.next_deadline()))
                        .collect::<Vec<_>>()
                );
            } else {
                spins_at_same_instant = 0;
                last_now = self.now;
            }
            let next_msg = self.in_flight.iter().map(|f| (f.deliver_at, f.seq)).min();
            let next_tick =
                self.nodes.values().filter(|n| n.up).map(|n| n.raft.next_deadline()).min();
            let next = match (next_msg, next_tick) {
                (Some((m, _)), Some(t)) => m.min(t),
                (Some((m, _)), None) => m,
                (None, Some(t)) => t,
                (None, None) => {
                    self.now = self.now.max(end);
                    return;
                }
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = self.now.max(next);
            if let Some((at, seq)) = next_msg
                && at <= self.now
            {
                let pos = self.in_flight.iter().position(|f| f.seq == seq).expect("exists");
                let f = self.in_flight.swap_remove(pos);
                self.deliver(f.msg);
                continue;
            }
            let due: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.up && n.raft.next_deadline() <= self.now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                let now = self.now;
                self.raft(id).tick(now);
                self.process(id);
            }
        }
    }

    /// Runs until `pred` holds, for at most `max_ms`; returns whether it held.
    pub fn run_until(&mut self, max_ms: u64, mut pred: impl FnMut(&Cluster) -> bool) -> bool {
        let end = self.now.saturating_add_ms(max_ms);
        while self.now < end {
            if pred(self) {
                return true;
            }
            let step_end = self.now.saturating_add_ms(1).min(end);
            self.run_until_time(step_end);
        }
        pred(self)
    }

    /// Runs until some node is leader; returns it.
    pub fn elect(&mut self, max_ms: u64) -> Option<NodeId> {
        self.run_until(max_ms, |c| c.leader().is_some());
        self.leader()
    }

    /// Hands `msg` to its receiver now and lets it handle the resulting `Ready`s.
    pub fn deliver(&mut self, msg: Message) {
        let to = msg.to;
        let Some(n) = self.nodes.get_mut(&to) else { return };
        if !n.up {
            return;
        }
        self.messages_delivered += 1;
        let now = self.now;
        n.raft.step(now, msg).expect("message addressed to this node");
        self.process(to);
    }

    /// Drives one node's Ready loop until it has nothing more to do, like a real driver.
    pub fn process(&mut self, id: NodeId) {
        loop {
            let n = self.nodes.get_mut(&id).expect("node exists");
            if !n.up {
                return;
            }
            let ready = n.raft.ready();
            if ready.is_empty() {
                return;
            }
            self.handle_ready(id, ready);
        }
    }

    fn handle_ready(&mut self, id: NodeId, ready: Ready) {
        let ack = ready.ack();
        if let Some(trace) = self.trace.as_mut() {
            trace.extend(ready.to_string().lines().map(|l| format!("{id}: {l}")));
        }
        self.digest(&id.0.to_le_bytes());
        self.digest(&crate::codec::encode(&(&ready.hard_state, &ready.entries, &ready.messages)));
        let n = self.nodes.get_mut(&id).expect("node exists");
        // 1 + 2: persist (the disk is synchronous, so durable at once).
        n.disk.persist(&ready);
        if let Some(s) = &ready.snapshot {
            n.applied = decode_applied(&s.data);
            n.applied_index = s.meta.last_index;
        }
        // 3: send.
        for msg in ready.messages {
            self.send(msg);
        }
        // 4: apply, checking state machine safety across nodes.
        let n = self.nodes.get_mut(&id).expect("node exists");
        for e in &ready.committed_entries {
            assert_eq!(
                e.index,
                n.applied_index.next(),
                "entries are applied in order without gaps"
            );
            n.applied_index = e.index;
            let data = match &e.payload {
                EntryPayload::Command(d) => {
                    n.applied.insert(e.index, d.clone());
                    Some(d.clone())
                }
                _ => None,
            };
            match self.applied_log.get(&e.index) {
                Some((t, d)) => assert!(
                    *t == e.term && *d == data,
                    "state machine safety: node {id} applied a different entry at index {}",
                    e.index
                ),
                None => {
                    self.applied_log.insert(e.index, (e.term, data));
                }
            }
        }
        // 5: reads.
        n.reads_waiting.extend(ready.read_states);
        let applied = n.applied_index;
        let (done, waiting): (Vec<ReadState>, Vec<ReadState>) =
            std::mem::take(&mut n.reads_waiting).into_iter().partition(|r| r.index <= applied);
        n.reads_waiting = waiting;
        n.reads_done.extend(done.into_iter().map(|r| (r.id, r.index)));
        n.reads_aborted.extend(ready.aborted_reads);
        // 6: advance.
        n.raft.advance(ack);
        // Election safety: at most one leader per term.
        if n.raft.role() == Role::Leader {
            let term = n.raft.term();
            let prev = *self.leaders.entry(term).or_insert(id);
            assert_eq!(prev, id, "election safety: two leaders in term {term}");
        }
        // Snapshots, like a server's snapshot threshold.
        let n = self.nodes.get_mut(&id).expect("node exists");
        let snap_index = n.raft.log().snapshot_meta().last_index;
        if self.snapshot_every > 0 && n.applied_index.0 >= snap_index.0 + self.snapshot_every {
            self.compact(id);
        }
        let n = self.nodes.get_mut(&id).expect("node exists");
        // Snapshot data on demand, as `CacheNode` does: encoded again when a follower needs it,
        // released whenever none does.
        if n.raft.wants_snapshot() {
            let index = n.applied_index;
            let data = encode_applied(&n.applied);
            if index > n.raft.log().snapshot_meta().last_index {
                n.raft.compact(index, Some(data.clone())).expect("compacting at the applied index");
                let meta = n.raft.log().snapshot_meta().clone();
                n.disk.compact(Snapshot { meta, data });
            } else {
                let meta = n.raft.log().snapshot_meta().clone();
                let snapshot = Snapshot { meta, data };
                n.raft.provide_snapshot_data(snapshot).expect("the state at the snapshot index");
            }
        }
        n.raft.release_snapshot_data();
    }

    /// Takes a snapshot of node `id` at its applied index and compacts its log and disk to it
    /// (nothing if the log's snapshot is already there).
    pub fn compact(&mut self, id: NodeId) {
        let n = self.nodes.get_mut(&id).expect("node exists");
        let index = n.applied_index;
        if index <= n.raft.log().snapshot_meta().last_index {
            return;
        }
        let data = encode_applied(&n.applied);
        n.raft.compact(index, Some(data.clone())).expect("compacting at the applied index");
        let meta = n.raft.log().snapshot_meta().clone();
        n.disk.compact(Snapshot { meta, data });
    }

    fn digest(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.trace_digest ^= *b as u64;
            self.trace_digest = self.trace_digest.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn send(&mut self, msg: Message) {
        if self.blocked.contains(&(msg.from, msg.to)) {
            return;
        }
        if self.manual {
            self.mailbox.push(msg);
            return;
        }
        if self.drop_per_mille > 0 && (self.rng.next_u64() % 1000) < self.drop_per_mille as u64 {
            return;
        }
        let span = self.delay_ms_max.saturating_sub(self.delay_ms_min) + 1;
        let delay = self.delay_ms_min + self.rng.next_u64() % span;
        self.seq += 1;
        self.in_flight.push(InFlight {
            deliver_at: self.now.saturating_add_ms(delay),
            seq: self.seq,
            msg,
        });
    }

    /// Like a client with retries: proposes on the current leader until the command is applied
    /// at the index it was given (a proposal can be lost to a leader change), within `max_ms`.
    pub fn write(&mut self, data: &[u8], max_ms: u64) -> Option<LogIndex> {
        let end = self.now.saturating_add_ms(max_ms);
        while self.now < end {
            let left = end.saturating_since(self.now);
            let Some(leader) = self.elect(left) else { continue };
            let Ok((index, term)) = self.propose(leader, data) else {
                self.run_for(10);
                continue;
            };
            let left = end.saturating_since(self.now);
            // Wait until applied, or until the proposer lost that leadership (then retry).
            self.run_until(left, |c| {
                let n = c.node(leader);
                c.applied_log.contains_key(&index)
                    || !n.up
                    || !(n.raft.is_leader() && n.raft.term() == term)
            });
            self.run_until(left.min(1_000), |c| c.applied_log.contains_key(&index));
            if self.applied_log.get(&index).is_some_and(|(t, _)| *t == term) {
                return Some(index);
            }
        }
        None
    }

    /// Every up node that is a member applied the same commands (compares up to `index`).
    pub fn all_applied(&self, index: LogIndex) -> bool {
        self.nodes
            .values()
            .filter(|n| n.up && n.raft.membership().contains(n.raft.id()))
            .all(|n| n.applied_index >= index)
    }
}

/// The test state machine's snapshot encoding: the applied commands.
fn encode_applied(applied: &BTreeMap<LogIndex, Bytes>) -> Bytes {
    let v: Vec<(LogIndex, Bytes)> = applied.iter().map(|(i, d)| (*i, d.clone())).collect();
    Bytes::from(crate::codec::encode(&v))
}

fn decode_applied(data: &[u8]) -> BTreeMap<LogIndex, Bytes> {
    if data.is_empty() {
        return BTreeMap::new();
    }
    let v: Vec<(LogIndex, Bytes)> =
        crate::codec::decode(data, usize::MAX).expect("test snapshot decodes");
    v.into_iter().collect()
}
