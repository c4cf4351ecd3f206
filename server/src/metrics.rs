//! Prometheus metrics (prometheus-client), served as OpenMetrics text on `metrics_addr/metrics`.
//!
//! Names follow the seed (`simple_cache_*`, `raft_*`) plus what etcd operators rely on. Counters
//! are registered without `_total`: the library appends it. Label values are bounded: `api`,
//! `op` and `status` come from fixed sets, `peer` is a cluster member id.
//!
//! Client requests are labelled `api="http"` or `api="grpc"`, with the same `op` names (`get`,
//! `set`, `delete`, `expire`, `ttl`, `search`, `reset`, ...) on both; a write a follower forwards
//! counts under its own op on the follower and as `op="forward"` on the leader. `status` is the HTTP status
//! of the outcome on both front ends (a gRPC INVALID_ARGUMENT for a bad duration counts as 400,
//! as the same request over HTTP would), so one alert on `status=~"5.."` covers both.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpStatus {
    pub api: &'static str,
    pub op: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Op {
    pub api: &'static str,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node_id: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: u64,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<OpStatus, Counter>,
    pub request_duration: Family<Op, Histogram>,
    pub keys: Gauge,
    pub expiration_heap_size: Gauge,
    pub peers: Gauge,
    pub role: Family<NodeLabel, Gauge>,
    pub commit_index: Gauge,
    pub last_applied: Gauge,
    pub term: Gauge,
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    pub leader_changes: Counter,
    pub append_entries_latency: Histogram,
    pub proposals_committed: Counter,
    pub proposals_applied: Counter,
    pub proposals_pending: Gauge,
    pub proposals_failed: Counter,
    pub wal_fsync_duration: Histogram,
    pub snapshot_saves: Counter,
    pub snapshot_save_duration: Histogram,
    pub snapshot_installs: Counter,
    pub peer_sent_bytes: Family<PeerLabel, Counter>,
    pub peer_received_bytes: Family<PeerLabel, Counter>,
    pub peer_send_failures: Family<PeerLabel, Counter>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<OpStatus, Counter>::default();
        registry.register(
            "simple_cache_requests",
            "Client requests by API (http, grpc), operation and outcome (as an HTTP status)",
            requests.clone(),
        );
        let request_duration =
            Family::<Op, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "simple_cache_request_duration_seconds",
            "Client request latency by API and operation",
            request_duration.clone(),
        );
        let keys = Gauge::default();
        registry.register(
            "simple_cache_keys_total",
            "Keys stored on this node (including expired keys not yet removed through the log)",
            keys.clone(),
        );
        let expiration_heap_size = Gauge::default();
        registry.register(
            "simple_cache_expiration_heap_size",
            "Keys with a TTL (entries of the expiration index)",
            expiration_heap_size.clone(),
        );
        let peers = Gauge::default();
        registry.register(
            "simple_cache_peers_total",
            "Cluster members (voters and learners) known to this node",
            peers.clone(),
        );
        let role = Family::<NodeLabel, Gauge>::default();
        registry.register(
            "raft_role",
            "Raft role: 0 follower, 1 candidate, 2 leader",
            role.clone(),
        );
        let commit_index = Gauge::default();
        registry.register(
            "raft_commit_index",
            "Highest log index known committed",
            commit_index.clone(),
        );
        let last_applied = Gauge::default();
        registry.register(
            "raft_last_applied",
            "Highest log index applied to the cache",
            last_applied.clone(),
        );
        let term = Gauge::default();
        registry.register("raft_term", "Current Raft term", term.clone());
        let has_leader = Gauge::default();
        registry.register("raft_has_leader", "1 if this node knows a leader", has_leader.clone());
        let is_leader = Gauge::default();
        registry.register("raft_is_leader", "1 if this node is the leader", is_leader.clone());
        let leader_changes = Counter::default();
        registry.register(
            "raft_leader_changes",
            "Times the known leader changed",
            leader_changes.clone(),
        );
        let append_entries_latency = latency_histogram();
        registry.register(
            "raft_append_entries_latency_seconds",
            "Round trip of a Raft message batch carrying AppendEntries to a peer",
            append_entries_latency.clone(),
        );
        let proposals_committed = Counter::default();
        registry.register(
            "raft_proposals_committed",
            "Client writes proposed here that committed",
            proposals_committed.clone(),
        );
        let proposals_applied = Counter::default();
        registry.register(
            "raft_proposals_applied",
            "Log entries applied to the cache",
            proposals_applied.clone(),
        );
        let proposals_pending = Gauge::default();
        registry.register(
            "raft_proposals_pending",
            "Client requests waiting on Raft on this node",
            proposals_pending.clone(),
        );
        let proposals_failed = Counter::default();
        registry.register(
            "raft_proposals_failed",
            "Client writes refused or superseded",
            proposals_failed.clone(),
        );
        let wal_fsync_duration = latency_histogram();
        registry.register(
            "raft_wal_fsync_duration_seconds",
            "WAL fsync latency",
            wal_fsync_duration.clone(),
        );
        let snapshot_saves = Counter::default();
        registry.register(
            "raft_snapshot_saves",
            "Snapshots taken and saved",
            snapshot_saves.clone(),
        );
        let snapshot_save_duration = latency_histogram();
        registry.register(
            "raft_snapshot_save_duration_seconds",
            "Time to save a snapshot and compact the WAL",
            snapshot_save_duration.clone(),
        );
        let snapshot_installs = Counter::default();
        registry.register(
            "raft_snapshot_installs",
            "Snapshots received from the leader and installed",
            snapshot_installs.clone(),
        );
        let peer_sent_bytes = Family::<PeerLabel, Counter>::default();
        registry.register(
            "raft_peer_sent_bytes",
            "Raft bytes sent per peer",
            peer_sent_bytes.clone(),
        );
        let peer_received_bytes = Family::<PeerLabel, Counter>::default();
        registry.register(
            "raft_peer_received_bytes",
            "Raft bytes received per peer",
            peer_received_bytes.clone(),
        );
        let peer_send_failures = Family::<PeerLabel, Counter>::default();
        registry.register(
            "raft_peer_send_failures",
            "Raft message batches that could not be delivered or were dropped, per peer",
            peer_send_failures.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            keys,
            expiration_heap_size,
            peers,
            role,
            commit_index,
            last_applied,
            term,
            has_leader,
            is_leader,
            leader_changes,
            append_entries_latency,
            proposals_committed,
            proposals_applied,
            proposals_pending,
            proposals_failed,
            wal_fsync_duration,
            snapshot_saves,
            snapshot_save_duration,
            snapshot_installs,
            peer_sent_bytes,
            peer_received_bytes,
            peer_send_failures,
        }
    }

    /// The OpenMetrics text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Converts a u64 for a gauge (saturating; an index never gets near i64::MAX).
pub fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
