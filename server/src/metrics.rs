//! Prometheus metrics (prometheus-client), served on `metrics_addr/metrics` in the classic text
//! format (0.0.4), or in OpenMetrics 1.0 to a scraper that asks for it (see [`Format`]).
//!
//! The families of the Go system this replaces keep its names, labels and buckets
//! (`simple_cache_*`, `cache_*`, `raft_*`, `process_*`); etcd-style families add what operators
//! of a Raft store rely on. README.md lists them all. Counters are registered without `_total`:
//! the library appends it. Label values are bounded: `api`, `op`, `operation`, `status`, `state`,
//! `type` and `role` come from fixed sets, `code` is an HTTP status, `peer` and `node_id` are
//! cluster member ids.
//!
//! Client requests count twice: in the seed's `simple_cache_requests_total{op,status}` with
//! `status` `success` (HTTP status below 400) or `failure`, and with the full outcome in
//! `simple_cache_api_requests_total{api,op,code}`, where `api` is `http` or `grpc` and `code` is
//! the HTTP status of the outcome on both front ends (a gRPC INVALID_ARGUMENT for a bad duration
//! counts as 400, as the same request over HTTP would), so one alert on `code=~"5.."` covers
//! both. The `op` names (`get`, `set`, `delete`, `expire`, `ttl`, `search`, `reset`, ...) are the
//! same on both; a write a follower forwards counts under its own op on the follower and as
//! `op="forward"` on the leader.
//!
//! The seed named two gauges with `_total`, which promtool rejects for anything but a counter
//! (or an untyped metric). They are served under the seed's names as untyped, so queries and
//! dashboards written for the seed work unchanged, and under conventional names as gauges
//! (`simple_cache_keys`, `simple_cache_peers`).

use crate::version;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use simple_cache_core::meter::{CacheOp, OpMeter};

/// `simple_cache_requests_total`'s labels, the seed's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpStatus {
    pub op: &'static str,
    /// `success` or `failure`.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: &'static str,
}

/// `simple_cache_api_requests_total`'s labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiOpCode {
    pub api: &'static str,
    pub op: &'static str,
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiOp {
    pub api: &'static str,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationStatus {
    pub operation: &'static str,
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SizeType {
    /// `memory` or `item_count`.
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoleLabel {
    pub node_id: u64,
    /// `follower`, `candidate` or `leader`.
    pub role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabel {
    pub peer: u64,
}

/// The roles `raft_role` has a series for, in the order of its one-hot encoding.
pub const ROLES: [&str; 3] = ["follower", "candidate", "leader"];

/// The seed's request latency buckets: 10 µs doubling to ~164 ms.
fn seed_request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00001, 2.0, 15))
}

/// The seed's cache operation buckets.
fn cache_operation_histogram() -> Histogram {
    Histogram::new([0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05])
}

/// A wider latency range: 100 µs doubling to ~6.5 s (requests that wait on a leader, fsyncs,
/// snapshots).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// A gauge exposed as untyped (OpenMetrics `unknown`): for the seed's gauges named `_total`,
/// which promtool rejects when typed as gauges. Shares its value with the gauge it wraps.
#[derive(Clone, Debug, Default)]
pub struct Untyped(pub Gauge);

impl EncodeMetric for Untyped {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

pub struct Metrics {
    pub registry: Registry,
    /// The seed's request count: `{op, status}`, status `success` or `failure`.
    requests: Family<OpStatus, Counter>,
    /// The seed's request latency, with the seed's buckets.
    request_duration: Family<OpLabel, Histogram>,
    api_requests: Family<ApiOpCode, Counter>,
    api_request_duration: Family<ApiOp, Histogram>,
    pub keys: Gauge,
    pub expiration_heap_size: Gauge,
    pub peers: Gauge,
    pub cache_operation_duration: Family<OperationLabel, Histogram>,
    pub cache_operations: Family<OperationStatus, Counter>,
    pub cache_size: Family<SizeType, Gauge>,
    pub role: Family<RoleLabel, Gauge>,
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
    pub used_memory: Gauge,
    pub max_memory: Gauge,
    pub max_keys: Gauge,
    pub evicted_keys: Family<PolicyLabel, Counter>,
    pub cache_evictions: Counter,
    pub writes_refused: Family<Reason, Counter>,
    /// Watches open on this node.
    pub watchers: Gauge,
    /// When each TLS identity's certificate expires (unix seconds), as last loaded.
    pub tls_certificate_expiry: Family<TlsIdentityLabel, Gauge>,
}

/// Which of the node's TLS identities: `client` (the client listeners) or `peer`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TlsIdentityLabel {
    pub identity: &'static str,
}

/// The eviction policy in force when keys were evicted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabel {
    pub policy: &'static str,
}

/// Why a write was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();

        // Client requests.
        let requests = Family::<OpStatus, Counter>::default();
        r.register(
            "simple_cache_requests",
            "Client requests by operation and outcome (success, or failure for an HTTP status of 400 or more)",
            requests.clone(),
        );
        let request_duration = Family::<OpLabel, Histogram>::new_with_constructor(
            seed_request_histogram as fn() -> Histogram,
        );
        r.register(
            "simple_cache_request_duration_seconds",
            "Client request latency by operation",
            request_duration.clone(),
        );
        let api_requests = Family::<ApiOpCode, Counter>::default();
        r.register(
            "simple_cache_api_requests",
            "Client requests by API (http, grpc), operation and HTTP status of the outcome",
            api_requests.clone(),
        );
        let api_request_duration = Family::<ApiOp, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        r.register(
            "simple_cache_api_request_duration_seconds",
            "Client request latency by API and operation, up to several seconds",
            api_request_duration.clone(),
        );

        // The cache.
        let keys = Gauge::default();
        r.register(
            "simple_cache_keys",
            "Keys stored on this node (including expired keys not yet removed through the log)",
            keys.clone(),
        );
        r.register(
            "simple_cache_keys_total",
            "Keys stored on this node; the seed's name for simple_cache_keys, untyped because it is not a counter",
            Untyped(keys.clone()),
        );
        let expiration_heap_size = Gauge::default();
        r.register(
            "simple_cache_expiration_heap_size",
            "Keys with a TTL (entries of the expiration index)",
            expiration_heap_size.clone(),
        );
        let cache_operation_duration = Family::<OperationLabel, Histogram>::new_with_constructor(
            cache_operation_histogram as fn() -> Histogram,
        );
        r.register(
            "cache_operation_duration_seconds",
            "Time the node loop spent on one cache operation (applying a committed command, executing a read, restoring a snapshot)",
            cache_operation_duration.clone(),
        );
        let cache_operations = Family::<OperationStatus, Counter>::default();
        r.register(
            "cache_operation",
            "Cache operations by operation and outcome (failure: a committed command that does not decode)",
            cache_operations.clone(),
        );
        let cache_size = Family::<SizeType, Gauge>::default();
        r.register(
            "cache_size_bytes",
            "The cache's size: type memory is an estimate of the bytes it holds, type item_count its keys",
            cache_size.clone(),
        );

        // Raft.
        let peers = Gauge::default();
        r.register(
            "simple_cache_peers",
            "Cluster members (voters and learners) known to this node, itself included",
            peers.clone(),
        );
        r.register(
            "simple_cache_peers_total",
            "Cluster members known to this node; the seed's name for simple_cache_peers, untyped because it is not a counter",
            Untyped(peers.clone()),
        );
        let role = Family::<RoleLabel, Gauge>::default();
        r.register(
            "raft_role",
            "1 on the series of this node's current Raft role, 0 on the others",
            role.clone(),
        );
        let commit_index = Gauge::default();
        r.register("raft_commit_index", "Highest log index known committed", commit_index.clone());
        let last_applied = Gauge::default();
        r.register(
            "raft_last_applied",
            "Highest log index applied to the cache",
            last_applied.clone(),
        );
        let term = Gauge::default();
        r.register("raft_term", "Current Raft term", term.clone());
        let has_leader = Gauge::default();
        r.register("raft_has_leader", "1 if this node knows a leader", has_leader.clone());
        let is_leader = Gauge::default();
        r.register("raft_is_leader", "1 if this node is the leader", is_leader.clone());
        let leader_changes = Counter::default();
        r.register(
            "raft_leader_changes",
            "Times this node learned of a leader other than the last one it knew (the first leader after start included)",
            leader_changes.clone(),
        );
        let append_entries_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        r.register(
            "raft_append_entries_latency_seconds",
            "From an AppendEntries leaving for a peer to the peer's answer arriving (one round per peer at a time)",
            append_entries_latency.clone(),
        );
        let proposals_committed = Counter::default();
        r.register(
            "raft_proposals_committed",
            "Client writes proposed here that committed",
            proposals_committed.clone(),
        );
        let proposals_applied = Counter::default();
        r.register(
            "raft_proposals_applied",
            "Log entries applied to the cache",
            proposals_applied.clone(),
        );
        let proposals_pending = Gauge::default();
        r.register(
            "raft_proposals_pending",
            "Client requests waiting on Raft on this node",
            proposals_pending.clone(),
        );
        let proposals_failed = Counter::default();
        r.register(
            "raft_proposals_failed",
            "Client writes refused or superseded",
            proposals_failed.clone(),
        );
        let wal_fsync_duration = latency_histogram();
        r.register(
            "raft_wal_fsync_duration_seconds",
            "WAL fsync latency",
            wal_fsync_duration.clone(),
        );
        let snapshot_saves = Counter::default();
        r.register("raft_snapshot_saves", "Snapshots taken and saved", snapshot_saves.clone());
        let snapshot_save_duration = latency_histogram();
        r.register(
            "raft_snapshot_save_duration_seconds",
            "Time to save a snapshot and compact the WAL",
            snapshot_save_duration.clone(),
        );
        let snapshot_installs = Counter::default();
        r.register(
            "raft_snapshot_installs",
            "Snapshots received from the leader and installed",
            snapshot_installs.clone(),
        );
        let peer_sent_bytes = Family::<PeerLabel, Counter>::default();
        r.register("raft_peer_sent_bytes", "Raft bytes sent per peer", peer_sent_bytes.clone());
        let peer_received_bytes = Family::<PeerLabel, Counter>::default();
        r.register(
            "raft_peer_received_bytes",
            "Raft bytes received per peer",
            peer_received_bytes.clone(),
        );
        let peer_send_failures = Family::<PeerLabel, Counter>::default();
        r.register(
            "raft_peer_send_failures",
            "Raft message batches that could not be delivered or were dropped, per peer",
            peer_send_failures.clone(),
        );

        // The process and the build.
        r.register_collector(Box::new(crate::process::ProcessCollector));
        r.register(
            "simple_cache_build",
            "The version and commit this binary was built from (always 1)",
            Info::new([("version", version::VERSION), ("commit", version::COMMIT)]),
        );

        // The memory bound (see `simple_cache_core::cache::Limits`).
        let used_memory = Gauge::default();
        r.register(
            "simple_cache_used_memory_bytes",
            "The cache's memory estimate: keys, values and per-key overhead, the same on every replica at the same applied index",
            used_memory.clone(),
        );
        let max_memory = Gauge::default();
        r.register(
            "simple_cache_max_memory_bytes",
            "The max_memory_bytes limit in force, as replicated through the log (0: no limit)",
            max_memory.clone(),
        );
        let max_keys = Gauge::default();
        r.register(
            "simple_cache_max_keys",
            "The max_keys limit in force, as replicated through the log (0: no limit)",
            max_keys.clone(),
        );
        let evicted_keys = Family::<PolicyLabel, Counter>::default();
        r.register(
            "simple_cache_evicted_keys",
            "Keys evicted to keep the cache within its limits, by the policy in force",
            evicted_keys.clone(),
        );
        let cache_evictions = Counter::default();
        r.register(
            "cache_evictions",
            "Keys evicted (the Go simple-cache's name for simple_cache_evicted_keys_total)",
            cache_evictions.clone(),
        );
        let writes_refused = Family::<Reason, Counter>::default();
        r.register(
            "simple_cache_writes_refused",
            "Client writes the cache refused, by reason (out_of_memory: the limits and the policy left no room)",
            writes_refused.clone(),
        );
        // The one reason, at zero from the start: `increase()` over a series that appears at
        // its first increment misses that increment, and an alert on it would never fire.
        drop(writes_refused.get_or_create(&Reason { reason: "out_of_memory" }));
        let watchers = Gauge::default();
        r.register("simple_cache_watchers", "Watches open on this node", watchers.clone());
        let tls_certificate_expiry = Family::<TlsIdentityLabel, Gauge>::default();
        r.register(
            "simple_cache_tls_certificate_expiry_timestamp_seconds",
            "When the certificate in use expires, unix seconds, by identity (client listeners, peer); updated when the files are reloaded",
            tls_certificate_expiry.clone(),
        );

        Metrics {
            registry: r,
            used_memory,
            max_memory,
            max_keys,
            evicted_keys,
            cache_evictions,
            writes_refused,
            tls_certificate_expiry,
            watchers,
            requests,
            request_duration,
            api_requests,
            api_request_duration,
            keys,
            expiration_heap_size,
            peers,
            cache_operation_duration,
            cache_operations,
            cache_size,
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

    /// Records one client request in the seed's families and in the API families (see the
    /// module documentation). `code` is the HTTP status of the outcome, for gRPC too.
    pub fn observe_request(
        &self,
        api: &'static str,
        op: &'static str,
        code: u16,
        elapsed: std::time::Duration,
    ) {
        let status = if code < 400 { "success" } else { "failure" };
        let seconds = elapsed.as_secs_f64();
        self.requests.get_or_create(&OpStatus { op, status }).inc();
        self.request_duration.get_or_create(&OpLabel { op }).observe(seconds);
        self.api_requests.get_or_create(&ApiOpCode { api, op, code }).inc();
        self.api_request_duration.get_or_create(&ApiOp { api, op }).observe(seconds);
    }

    /// The exposition of every family in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        let r = match format {
            Format::Classic => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        r.expect("writing to a String cannot fail");
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

/// An exposition format of `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4, what any scraper reads.
    Classic,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format to answer a request with this `Accept` header: OpenMetrics when the header
    /// lists `application/openmetrics-text` with a quality above 0 and at least that of
    /// `text/plain` (Prometheus asks for OpenMetrics first by default), else the
    /// classic format, which is also the answer to no header, `*/*` and anything unparsable.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let (mut openmetrics, mut text) = (0.0_f64, 0.0_f64);
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("q")
                {
                    q = v
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text { Format::OpenMetrics } else { Format::Classic }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Times the node's cache operations into `cache_operation_duration_seconds` and counts them in
/// `cache_operation_total` (see `simple_cache_core::meter`). The series are made up front, so a
/// measurement costs two clock reads and a few atomic operations, and every operation shows (at
/// 0) before it first happens.
pub struct CacheOpMeter {
    /// By `CacheOp as usize`: its latency and its successes (none for `Undecodable`).
    ran: Vec<Option<(Histogram, Counter)>>,
    undecodable: Counter,
}

impl CacheOpMeter {
    pub fn new(m: &Metrics) -> CacheOpMeter {
        let ran = CacheOp::ALL
            .iter()
            .map(|&op| {
                debug_assert_eq!(CacheOp::ALL[op as usize], op, "CacheOp::ALL is in order");
                (op != CacheOp::Undecodable).then(|| {
                    let operation = op.as_str();
                    (
                        m.cache_operation_duration
                            .get_or_create_owned(&OperationLabel { operation }),
                        m.cache_operations
                            .get_or_create_owned(&OperationStatus { operation, status: "success" }),
                    )
                })
            })
            .collect();
        let undecodable = m.cache_operations.get_or_create_owned(&OperationStatus {
            operation: CacheOp::Undecodable.as_str(),
            status: "failure",
        });
        CacheOpMeter { ran, undecodable }
    }
}

impl OpMeter for CacheOpMeter {
    fn measure(&self, op: CacheOp, run: &mut dyn FnMut()) {
        let started = std::time::Instant::now();
        run();
        if let Some((duration, count)) = &self.ran[op as usize] {
            duration.observe(started.elapsed().as_secs_f64());
            count.inc();
        }
    }
    fn failed(&self, op: CacheOp) {
        debug_assert_eq!(op, CacheOp::Undecodable, "only an undecodable command fails");
        self.undecodable.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Accept headers scrapers send pick the format they prefer; anything else gets the
    // classic format.
    #[test]
    fn negotiate_follows_the_accept_header() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let cases = [
            (None, Format::Classic),
            (Some(""), Format::Classic),
            (Some("*/*"), Format::Classic),
            (Some("text/plain"), Format::Classic),
            (Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"), Format::Classic),
            (Some(prometheus), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (Some("Application/OpenMetrics-Text; Version=1.0.0"), Format::OpenMetrics),
            (Some("application/openmetrics-text;q=0.5, text/plain"), Format::Classic),
            (Some("text/plain;q=0.4, application/openmetrics-text;q=0.5"), Format::OpenMetrics),
            (Some("application/openmetrics-text;q=0"), Format::Classic),
            (Some("application/openmetrics-text;q=x"), Format::Classic),
            (Some("application/json"), Format::Classic),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    fn families(text: &str, prefix: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|l| {
                let (name, rest) = l.split_once(' ').unwrap();
                (name.to_string(), rest.to_string())
            })
            .collect()
    }

    /// Metrics with a sample in every family, including the lazily made ones.
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.observe_request("http", "get", 200, std::time::Duration::from_micros(30));
        m.observe_request("grpc", "set", 503, std::time::Duration::from_millis(2));
        let meter = CacheOpMeter::new(&m);
        meter.measure(CacheOp::Set, &mut || {});
        meter.failed(CacheOp::Undecodable);
        m.cache_size.get_or_create(&SizeType { r#type: "memory" }).set(10);
        m.role.get_or_create(&RoleLabel { node_id: 1, role: "leader" }).set(1);
        m.peer_sent_bytes.get_or_create(&PeerLabel { peer: 2 }).inc();
        m.peer_received_bytes.get_or_create(&PeerLabel { peer: 2 }).inc();
        m.peer_send_failures.get_or_create(&PeerLabel { peer: 2 }).inc();
        m
    }

    // In the classic format every family has HELP and TYPE, named as its samples are (a
    // counter's with `_total`), and no OpenMetrics-only line appears.
    #[test]
    fn classic_format_names_each_family_as_its_samples() {
        let text = populated().encode(Format::Classic);
        let helps = families(&text, "# HELP ");
        let types = families(&text, "# TYPE ");
        assert_eq!(
            helps.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            types.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "one HELP and one TYPE per family, in the same order"
        );
        for (name, kind) in &types {
            assert!(
                ["counter", "gauge", "histogram", "untyped"].contains(&kind.as_str()),
                "{name}"
            );
            assert_eq!(kind == "counter", name.ends_with("_total") && kind != "untyped", "{name}");
            let samples: Vec<&str> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| {
                    let sample = l.split(['{', ' ']).next().unwrap();
                    sample == name
                        || (kind == "histogram"
                            && ["_bucket", "_sum", "_count"]
                                .iter()
                                .any(|s| sample.strip_suffix(s) == Some(name)))
                })
                .collect();
            assert!(!samples.is_empty(), "family {name} has samples");
        }
        for line in text.lines() {
            assert!(
                !line.starts_with("# EOF")
                    && !line.starts_with("# UNIT")
                    && !line.contains("_created"),
                "OpenMetrics-only line {line:?}"
            );
        }
        assert!(text.contains("# TYPE simple_cache_keys_total untyped\n"), "{text}");
        assert!(text.contains("# TYPE simple_cache_build_info gauge\n"), "{text}");
        assert!(text.contains("# TYPE raft_leader_changes_total counter\n"), "{text}");
    }

    // The seed's request families keep the seed's labels and buckets; the API families keep the
    // full outcome.
    #[test]
    fn requests_count_in_the_seed_and_api_families() {
        let text = populated().encode(Format::Classic);
        for line in [
            r#"simple_cache_requests_total{op="get",status="success"} 1"#,
            r#"simple_cache_requests_total{op="set",status="failure"} 1"#,
            r#"simple_cache_api_requests_total{api="http",op="get",code="200"} 1"#,
            r#"simple_cache_api_requests_total{api="grpc",op="set",code="503"} 1"#,
            r#"simple_cache_request_duration_seconds_bucket{op="get",le="1e-05"} 0"#,
            r#"simple_cache_request_duration_seconds_bucket{op="get",le="4e-05"} 1"#,
            r#"simple_cache_request_duration_seconds_bucket{op="get",le="0.16384"} 1"#,
            r#"cache_operation_total{operation="set",status="success"} 1"#,
            r#"cache_operation_total{operation="get",status="success"} 0"#,
            r#"cache_operation_total{operation="undecodable",status="failure"} 1"#,
            r#"cache_operation_duration_seconds_bucket{operation="set",le="0.05"} 1"#,
            r#"raft_append_entries_latency_seconds_bucket{le="1.6384"} 0"#,
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        let buckets = |family: &str| {
            text.lines().filter(|l| l.starts_with(family) && l.contains(r#"le=""#)).count()
        };
        // The seed's bucket counts, plus +Inf.
        assert_eq!(buckets("simple_cache_request_duration_seconds_bucket{op=\"get\""), 16);
        assert_eq!(buckets("cache_operation_duration_seconds_bucket{operation=\"set\""), 7);
        assert_eq!(buckets("raft_append_entries_latency_seconds_bucket"), 16);
    }
}
