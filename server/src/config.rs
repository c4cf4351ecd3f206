//! The server's configuration: defaults, then a YAML file, then environment variables, then
//! command-line flags, each layer overriding the one before.
//!
//! The file is `CONFIG_PATH` (or `--config`) if set, else `./config.yaml` if it exists, else no
//! file. Every key has an environment variable `SIMPLE_CACHE_<KEY>` and a flag `--<key>` (with
//! dashes); clap reads both, so `--help` lists every key with its variable. Validation names the
//! offending key, and `main` exits non-zero on any error.

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use simple_cache_core::cache::EvictionPolicy;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// How the node forms its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A one-member Raft cluster: every write is still logged, fsynced and applied through Raft.
    Single,
    /// A member of a multi-node cluster: bootstrapped from `peers`, or joining through `join`.
    Distributed,
}

/// One initial cluster member, as listed in `peers`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSpec {
    pub id: u64,
    /// The member's Raft address (`raft_http_addr` in its own config).
    pub addr: String,
    /// The member's client HTTP address, used to forward writes to it when it leads. Optional:
    /// without it a follower answers 503 with the leader's id instead of forwarding.
    #[serde(default)]
    pub http_addr: Option<String>,
}

/// An entry of `peers`: with its id (`{id, addr, http_addr}`), or the seed's form, a Raft URL
/// (`http://host:port`) or address whose id is its position in the list (entry N is node N).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PeerEntry {
    Spec(PeerSpec),
    Url(String),
}

/// `node_id` as a file may give it: a number, or a name ending in one (see [`node_id_of`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum NodeIdText {
    Number(u64),
    Name(String),
}

/// A node id from its written form: a number (`2`), or a name ending in a number (`n2`,
/// `node-2`, `cache_02`: node 2), which is how the Go simple-cache names its nodes. A name
/// without a number is refused: an id must be the same on every node's view, and a hash of a
/// name would hide that two names collide.
pub fn node_id_of(text: &str) -> Result<u64, ConfigError> {
    let t = text.trim();
    let digits = t.len() - t.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let refuse = |why: &str| {
        err(
            "node_id",
            format!(
                "`{text}` {why}: node ids are numbers >= 1 (write `node_id: 2`), or names \
                 ending in one (`n2`, `node-2` are node 2)"
            ),
        )
    };
    if digits == 0 {
        return Err(refuse("has no number"));
    }
    let prefix = &t[..t.len() - digits];
    if prefix.chars().any(|c| c.is_whitespace() || c == ':' || c == '/') {
        return Err(refuse("is not a node name"));
    }
    match t[t.len() - digits..].parse::<u64>() {
        Ok(0) => Err(refuse("ends in 0")),
        Ok(n) => Ok(n),
        Err(_) => Err(refuse("has a number too large")),
    }
}

/// Command line and environment. Every field is optional so that a value can come from the file
/// or the defaults; clap gives flags precedence over the environment.
#[derive(Parser, Debug, Default)]
#[command(
    name = "simple-cache",
    version,
    long_version = crate::version::LONG_VERSION.as_str(),
    about = "A strongly consistent in-memory cache on Raft"
)]
pub struct Cli {
    /// YAML configuration file (default: ./config.yaml if present).
    #[arg(long, global = true, env = "CONFIG_PATH")]
    pub config: Option<PathBuf>,
    /// single | distributed.
    #[arg(long, global = true, env = "SIMPLE_CACHE_MODE")]
    pub mode: Option<Mode>,
    /// This node's id: a number >= 1, unique in the cluster, or a name ending in one (`n2`,
    /// `node-2`: node 2), as the Go simple-cache writes them.
    #[arg(long, global = true, env = "SIMPLE_CACHE_NODE_ID")]
    pub node_id: Option<String>,
    /// Client HTTP API listen address [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = "SIMPLE_CACHE_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// Raft transport listen address [default: 127.0.0.1:9090].
    #[arg(long, global = true, env = "SIMPLE_CACHE_RAFT_HTTP_ADDR")]
    pub raft_http_addr: Option<String>,
    /// Prometheus metrics listen address [default: 127.0.0.1:2112].
    #[arg(long, global = true, env = "SIMPLE_CACHE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// gRPC listen address; empty disables gRPC [default: 127.0.0.1:5051].
    #[arg(long, global = true, env = "SIMPLE_CACHE_GRPC_ADDR")]
    pub grpc_addr: Option<String>,
    /// Initial voters, `id=raft_addr[@http_addr]` separated by commas (distributed mode); or
    /// the seed's form, Raft URLs in node-id order (`http://10.0.0.1:9090,...`: entry N is
    /// node N).
    #[arg(long, global = true, env = "SIMPLE_CACHE_PEERS")]
    pub peers: Option<String>,
    /// Raft or client address of a member to join through (distributed mode, empty data dir).
    #[arg(long, global = true, env = "SIMPLE_CACHE_JOIN")]
    pub join: Option<String>,
    /// The Raft address other members reach this node at (host:port), when it differs from
    /// raft_http_addr (listening on 0.0.0.0, a container, NAT) [default: from peers, else the
    /// listen address].
    #[arg(long, global = true, env = "SIMPLE_CACHE_ADVERTISE_RAFT_ADDR")]
    pub advertise_raft_addr: Option<String>,
    /// The client address other members forward to (host:port), when it differs from
    /// http_addr [default: from peers, else the listen address].
    #[arg(long, global = true, env = "SIMPLE_CACHE_ADVERTISE_HTTP_ADDR")]
    pub advertise_http_addr: Option<String>,
    /// Leader heartbeat interval in milliseconds [default: 100].
    #[arg(long, global = true, env = "SIMPLE_CACHE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Base election timeout in milliseconds, > heartbeat_ms [default: 1000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_ELECTION_MS")]
    pub election_ms: Option<u64>,
    /// Re-read the config file when it changes and apply reloadable keys [default: false].
    #[arg(long, global = true, env = "SIMPLE_CACHE_HOT_RELOAD")]
    pub hot_reload: Option<bool>,
    /// Directory for the write-ahead log and snapshots [default: ./data].
    #[arg(long, global = true, env = "SIMPLE_CACHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG wins if set [default: info].
    #[arg(long, global = true, env = "SIMPLE_CACHE_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Largest key in bytes [default: 1024].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Largest value (its JSON encoding) in bytes [default: 1048576].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Largest request body in bytes [default: 2097152].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Longest a client request may take, waiting for a leader included [default: 5000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// Requests served at once by the client API; more wait [default: 1024].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Bearer token required for DELETE /v1 and /cluster/* changes (unset: no auth).
    #[arg(long, global = true, env = "SIMPLE_CACHE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Shared secret every node sends to the others' Raft port (unset: not checked).
    #[arg(long, global = true, env = "SIMPLE_CACHE_PEER_TOKEN", hide_env_values = true)]
    pub peer_token: Option<String>,
    /// Snapshot and compact the log after this many applied entries [default: 10000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_SNAPSHOT_THRESHOLD")]
    pub snapshot_threshold: Option<u64>,
    /// A snapshot also waits until the log since the last one holds this percentage of its
    /// size: the log kept in memory against the snapshot bytes written, 0-1000 [default: 25].
    #[arg(long, global = true, env = "SIMPLE_CACHE_SNAPSHOT_LOG_PERCENT")]
    pub snapshot_log_percent: Option<u64>,
    /// How far a healthy node's wall clock may be from true time; a node further from the
    /// cluster time logs a warning. TTLs are exact within twice this [default: 500].
    #[arg(long, global = true, env = "SIMPLE_CACHE_CLOCK_SKEW_MAX_MS")]
    pub clock_skew_max_ms: Option<u64>,
    /// Keys a search examines per turn of the node loop; a search over more keys continues in
    /// later turns, so writes and heartbeats are not held up behind it [default: 10000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_SEARCH_PAGE_KEYS")]
    pub search_page_keys: Option<usize>,
    /// Most memory the cache may use, by its estimate (see README, "Memory"); 0 means no
    /// limit [default: 1073741824, 1 GiB].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_MEMORY_BYTES")]
    pub max_memory_bytes: Option<u64>,
    /// Most keys the cache may hold; 0 means no limit [default: 0].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_KEYS")]
    pub max_keys: Option<u64>,
    /// Change events a node keeps for watches that resume from a revision [default: 10000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_WATCH_HISTORY_EVENTS")]
    pub watch_history_events: Option<usize>,
    /// Most watches open on one node at a time [default: 1000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_MAX_WATCHERS")]
    pub max_watchers: Option<usize>,
    /// What happens when a write would pass a limit: noeviction, allkeys-lru, volatile-lru,
    /// allkeys-lfu, volatile-lfu, allkeys-random, volatile-random, volatile-ttl
    /// [default: allkeys-lru].
    #[arg(long, global = true, env = "SIMPLE_CACHE_EVICTION_POLICY")]
    pub eviction_policy: Option<String>,
    /// Redis protocol (RESP) listen address; empty disables it [default: 127.0.0.1:6379].
    #[arg(long, global = true, env = "SIMPLE_CACHE_REDIS_ADDR")]
    pub redis_addr: Option<String>,
    /// The password RESP clients give with `AUTH` [default: admin_token, if set; else none].
    #[arg(long, global = true, env = "SIMPLE_CACHE_RESP_PASSWORD")]
    pub resp_password: Option<String>,
    /// Most RESP connections open at a time (Redis `maxclients`) [default: 10000].
    #[arg(long, global = true, env = "SIMPLE_CACHE_RESP_MAX_CLIENTS")]
    pub resp_max_clients: Option<usize>,
    /// Certificate chain (PEM) of the client listeners (HTTP, gRPC, RESP); with
    /// tls_key_file, they speak TLS only [default: none, plain TCP].
    #[arg(long, global = true, env = "SIMPLE_CACHE_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of tls_cert_file.
    #[arg(long, global = true, env = "SIMPLE_CACHE_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA bundle (PEM) client certificates must chain to, with client_cert_auth; also trusted
    /// for other members' client listeners.
    #[arg(long, global = true, env = "SIMPLE_CACHE_TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client listeners require a client certificate from tls_ca_file [default: false].
    #[arg(long, global = true, env = "SIMPLE_CACHE_CLIENT_CERT_AUTH")]
    pub client_cert_auth: Option<bool>,
    /// This node's certificate (PEM) for mutual TLS with the other members on the Raft port;
    /// its DNS or IP names must include the host of this node's advertised Raft address.
    #[arg(long, global = true, env = "SIMPLE_CACHE_PEER_TLS_CERT_FILE")]
    pub peer_tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of peer_tls_cert_file.
    #[arg(long, global = true, env = "SIMPLE_CACHE_PEER_TLS_KEY_FILE")]
    pub peer_tls_key_file: Option<PathBuf>,
    /// CA bundle (PEM) the other members' peer certificates must chain to.
    #[arg(long, global = true, env = "SIMPLE_CACHE_PEER_TLS_CA_FILE")]
    pub peer_tls_ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What to do instead of running a node.
#[derive(clap::Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Rewrites the membership recorded in `data_dir` to this node alone, keeping its data, so a
    /// node whose cluster lost its quorum for good can serve again (etcd's
    /// `--force-new-cluster`). Stop the node first. Entries in its log that were never committed
    /// will be committed when it starts. Then add new members with `/cluster/join`.
    Recover {
        /// Required: confirms that the other members are gone for good.
        #[arg(long)]
        force_new_cluster: bool,
    },
}

impl Cli {
    /// Parses the command line and environment. A bad value names where it came from: the
    /// flag, or the environment variable if that is where it was set (clap itself names the
    /// flag either way). `--help`, `--version` and usage errors exit as clap does.
    pub fn parse_or_exit() -> Cli {
        use clap::Parser;
        match Cli::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                if let Some(msg) = env_value_error(&e, std::env::args().collect()) {
                    eprintln!("simple-cache: {msg}");
                    std::process::exit(2);
                }
                e.exit()
            }
        }
    }
}

/// If `e` is about a value that came from an environment variable, the error naming that
/// variable.
fn env_value_error(e: &clap::Error, argv: Vec<String>) -> Option<ConfigError> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let ContextValue::String(arg) = e.get(ContextKind::InvalidArg)? else { return None };
    let ContextValue::String(value) = e.get(ContextKind::InvalidValue)? else { return None };
    let long = arg.trim_start_matches("--").split([' ', '=']).next()?.to_string();
    let cmd = Cli::command();
    let spec = cmd.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?;
    let env = spec.get_env()?.to_string_lossy().into_owned();
    let flag = format!("--{long}");
    let on_command_line = argv.iter().any(|a| *a == flag || a.starts_with(&format!("{flag}=")));
    if on_command_line || std::env::var(&env).ok().as_deref() != Some(value.as_str()) {
        return None;
    }
    let why = match spec.get_possible_values().as_slice() {
        [] => match std::error::Error::source(e) {
            Some(inner) => inner.to_string(),
            None => "it does not parse as the expected type".to_string(),
        },
        values => format!(
            "it must be one of {}",
            values.iter().map(|v| format!("`{}`", v.get_name())).collect::<Vec<_>>().join(", ")
        ),
    };
    Some(err(&env, format!("`{value}` is not a valid value: {why}")))
}

/// The YAML file: the same keys, all optional; unknown keys are an error (a typo must not be
/// silently ignored).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mode: Option<Mode>,
    node_id: Option<NodeIdText>,
    http_addr: Option<String>,
    raft_http_addr: Option<String>,
    metrics_addr: Option<String>,
    grpc_addr: Option<String>,
    peers: Option<Vec<PeerEntry>>,
    join: Option<String>,
    advertise_raft_addr: Option<String>,
    advertise_http_addr: Option<String>,
    heartbeat_ms: Option<u64>,
    election_ms: Option<u64>,
    hot_reload: Option<bool>,
    data_dir: Option<PathBuf>,
    log_level: Option<String>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    max_body_bytes: Option<usize>,
    request_timeout_ms: Option<u64>,
    max_concurrent_requests: Option<usize>,
    admin_token: Option<String>,
    peer_token: Option<String>,
    snapshot_threshold: Option<u64>,
    snapshot_log_percent: Option<u64>,
    clock_skew_max_ms: Option<u64>,
    search_page_keys: Option<usize>,
    max_memory_bytes: Option<u64>,
    max_keys: Option<u64>,
    eviction_policy: Option<String>,
    watch_history_events: Option<usize>,
    max_watchers: Option<usize>,
    redis_addr: Option<String>,
    resp_password: Option<String>,
    resp_max_clients: Option<usize>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_ca_file: Option<PathBuf>,
    client_cert_auth: Option<bool>,
    peer_tls_cert_file: Option<PathBuf>,
    peer_tls_key_file: Option<PathBuf>,
    peer_tls_ca_file: Option<PathBuf>,
}

/// The validated configuration the server runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub node_id: u64,
    pub http_addr: SocketAddr,
    pub raft_http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// `None`: gRPC is disabled (`grpc_addr: ""`).
    pub grpc_addr: Option<SocketAddr>,
    pub peers: Vec<PeerSpec>,
    pub join: Option<String>,
    /// What this node tells other members its addresses are, if set (see `Cli`).
    pub advertise_raft_addr: Option<String>,
    pub advertise_http_addr: Option<String>,
    pub heartbeat_ms: u64,
    pub election_ms: u64,
    pub hot_reload: bool,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_body_bytes: usize,
    pub request_timeout_ms: u64,
    pub max_concurrent_requests: usize,
    pub admin_token: Option<String>,
    /// The shared secret of the Raft port (see `peer_auth`).
    pub peer_token: Option<String>,
    pub snapshot_threshold: u64,
    pub snapshot_log_percent: u64,
    /// The clock assumption behind the TTL guarantee (see ARCHITECTURE.md, "Time").
    pub clock_skew_max_ms: u64,
    /// Keys a search examines per turn of the node loop (see `service::Service::search`).
    pub search_page_keys: usize,
    /// The memory bound the leader proposes (see `simple_cache_core::cache::Limits`).
    pub max_memory_bytes: u64,
    pub max_keys: u64,
    pub eviction_policy: EvictionPolicy,
    /// Change events kept for watches that resume (see `core::watch::History`).
    pub watch_history_events: usize,
    /// Most watches open at a time.
    pub max_watchers: usize,
    /// The RESP listener (`None`: disabled by `redis_addr: ""`).
    pub redis_addr: Option<SocketAddr>,
    /// The password of RESP's `AUTH`, if any.
    pub resp_password: Option<String>,
    pub resp_max_clients: usize,
    /// TLS on the client listeners (see `tls`).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub client_cert_auth: bool,
    /// Mutual TLS between members (see `tls`).
    pub peer_tls_cert_file: Option<PathBuf>,
    pub peer_tls_key_file: Option<PathBuf>,
    pub peer_tls_ca_file: Option<PathBuf>,
    /// The file the configuration was read from, for hot reload.
    pub source: Option<PathBuf>,
}

/// A path setting; empty means unset.
fn path_opt(p: Option<PathBuf>) -> Option<PathBuf> {
    p.filter(|p| !p.as_os_str().is_empty())
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

/// Redis's port, on loopback like the other listeners.
pub const REDIS_ADDR_DEFAULT: &str = "127.0.0.1:6379";
/// Redis's default `maxclients`.
pub const RESP_MAX_CLIENTS_DEFAULT: usize = 10_000;

/// The seed's gRPC port, on loopback like the other listeners.
pub const GRPC_ADDR_DEFAULT: &str = "127.0.0.1:5051";

/// Largest accepted request body: generous, but a typo like an extra zero must not let one
/// request allocate gigabytes.
const BODY_BYTES_LIMIT: usize = 64 << 20;
/// What a stored value's log entry holds besides the key and the value: the proposal's time,
/// command tag, length prefixes, expiry and the stored value's own tag (bounded well below).
pub const PROPOSAL_OVERHEAD_BYTES: usize = 256;

/// Keys a search examines per turn of the node loop unless configured: about 1-4 ms of regex
/// matching on this machine (BENCHMARKS.md, "Search").
pub const SEARCH_PAGE_KEYS_DEFAULT: usize = 10_000;

/// `max_memory_bytes` unless configured: 1 GiB of the cache's own estimate. A fixed value, not
/// a share of the machine's memory: the cluster applies its leader's limits, and a default that
/// differed between machines would change the limit (and evict) at every change of leader. The
/// estimate leaves out the in-memory Raft log, index nodes and allocator overhead: the process
/// was measured at up to 2.2 times it (README, "Memory").
pub const MAX_MEMORY_BYTES_DEFAULT: u64 = 1 << 30;

/// `snapshot_log_percent` unless configured: core's default. A snapshot rewrites the whole
/// cache, so this trades the log kept in memory (at most this share of the snapshot's size,
/// stretched by up to 3/8 by node id) against snapshot bytes written (100 / this per byte of
/// log).
pub const SNAPSHOT_LOG_PERCENT_DEFAULT: u64 = 25;

/// The largest `snapshot_log_percent`: a log ten times the size of the cache's snapshot.
pub const SNAPSHOT_LOG_PERCENT_MAX: u64 = 1_000;

/// Change events a node keeps for watches that resume from a revision.
pub const WATCH_HISTORY_EVENTS_DEFAULT: usize = 10_000;

/// Most watches open on one node at a time.
pub const MAX_WATCHERS_DEFAULT: usize = 1_000;

/// The largest `max_value_bytes` for a given `max_key_bytes`: a key and value of the largest
/// sizes, as one proposal, must fit in one log entry (and so in one WAL record).
pub fn value_bytes_limit(max_key_bytes: usize) -> usize {
    simple_cache_core::config::ENTRY_BYTES_LIMIT
        .saturating_sub(max_key_bytes)
        .saturating_sub(PROPOSAL_OVERHEAD_BYTES)
}

impl Config {
    /// Loads the layers for `cli` (parsed by the caller, which also owns `--help`).
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let path = match &cli.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("config.yaml")).filter(|p| p.exists()),
        };
        let file = match &path {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        Config::merge(cli, file, path)
    }

    fn merge(cli: Cli, file: FileConfig, source: Option<PathBuf>) -> Result<Config, ConfigError> {
        let grpc_addr = cli.grpc_addr.or(file.grpc_addr);
        let redis_addr = cli.redis_addr.or(file.redis_addr);
        let peers = match cli.peers {
            Some(s) => parse_peers(&s)?,
            None => file.peers.unwrap_or_default(),
        };
        let https_peers = peers
            .iter()
            .any(|p| matches!(p, PeerEntry::Url(u) if u.trim().starts_with("https://")));
        let node_id = match (cli.node_id, file.node_id) {
            (Some(text), _) | (None, Some(NodeIdText::Name(text))) => node_id_of(&text)?,
            (None, Some(NodeIdText::Number(n))) => n,
            (None, None) => 1,
        };
        let raft_http_addr =
            addr("raft_http_addr", cli.raft_http_addr.or(file.raft_http_addr), "127.0.0.1:9090")?;
        let peers = resolve_peers(peers, node_id, raft_http_addr)?;
        let cfg = Config {
            mode: cli.mode.or(file.mode).unwrap_or(Mode::Single),
            node_id,
            http_addr: addr("http_addr", cli.http_addr.or(file.http_addr), "127.0.0.1:8080")?,
            raft_http_addr,
            metrics_addr: addr(
                "metrics_addr",
                cli.metrics_addr.or(file.metrics_addr),
                "127.0.0.1:2112",
            )?,
            grpc_addr: match grpc_addr.as_deref() {
                None => Some(parse_socket_addr("grpc_addr", GRPC_ADDR_DEFAULT)?),
                Some("") => None,
                Some(s) => Some(parse_socket_addr("grpc_addr", s)?),
            },
            peers,
            join: cli.join.or(file.join).filter(|s| !s.is_empty()),
            advertise_raft_addr: cli
                .advertise_raft_addr
                .or(file.advertise_raft_addr)
                .filter(|s| !s.is_empty()),
            advertise_http_addr: cli
                .advertise_http_addr
                .or(file.advertise_http_addr)
                .filter(|s| !s.is_empty()),
            heartbeat_ms: cli.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(100),
            election_ms: cli.election_ms.or(file.election_ms).unwrap_or(1000),
            hot_reload: cli.hot_reload.or(file.hot_reload).unwrap_or(false),
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data")),
            log_level: cli.log_level.or(file.log_level).unwrap_or_else(|| "info".to_string()),
            max_key_bytes: cli.max_key_bytes.or(file.max_key_bytes).unwrap_or(1024),
            max_value_bytes: cli.max_value_bytes.or(file.max_value_bytes).unwrap_or(1 << 20),
            max_body_bytes: cli.max_body_bytes.or(file.max_body_bytes).unwrap_or(2 << 20),
            request_timeout_ms: cli.request_timeout_ms.or(file.request_timeout_ms).unwrap_or(5000),
            max_concurrent_requests: cli
                .max_concurrent_requests
                .or(file.max_concurrent_requests)
                .unwrap_or(1024),
            admin_token: cli.admin_token.or(file.admin_token).filter(|s| !s.is_empty()),
            peer_token: cli.peer_token.or(file.peer_token).filter(|s| !s.is_empty()),
            snapshot_threshold: cli
                .snapshot_threshold
                .or(file.snapshot_threshold)
                .unwrap_or(10_000),
            snapshot_log_percent: cli
                .snapshot_log_percent
                .or(file.snapshot_log_percent)
                .unwrap_or(SNAPSHOT_LOG_PERCENT_DEFAULT),
            clock_skew_max_ms: cli.clock_skew_max_ms.or(file.clock_skew_max_ms).unwrap_or(500),
            search_page_keys: cli
                .search_page_keys
                .or(file.search_page_keys)
                .unwrap_or(SEARCH_PAGE_KEYS_DEFAULT),
            max_memory_bytes: cli
                .max_memory_bytes
                .or(file.max_memory_bytes)
                .unwrap_or(MAX_MEMORY_BYTES_DEFAULT),
            max_keys: cli.max_keys.or(file.max_keys).unwrap_or(0),
            watch_history_events: cli
                .watch_history_events
                .or(file.watch_history_events)
                .unwrap_or(WATCH_HISTORY_EVENTS_DEFAULT),
            max_watchers: cli.max_watchers.or(file.max_watchers).unwrap_or(MAX_WATCHERS_DEFAULT),
            redis_addr: match redis_addr.as_deref() {
                None => Some(parse_socket_addr("redis_addr", REDIS_ADDR_DEFAULT)?),
                Some("") => None,
                Some(s) => Some(parse_socket_addr("redis_addr", s)?),
            },
            resp_password: cli.resp_password.or(file.resp_password).filter(|s| !s.is_empty()),
            resp_max_clients: cli
                .resp_max_clients
                .or(file.resp_max_clients)
                .unwrap_or(RESP_MAX_CLIENTS_DEFAULT),
            eviction_policy: match cli.eviction_policy.or(file.eviction_policy) {
                None => EvictionPolicy::AllKeysLru,
                Some(name) => EvictionPolicy::parse(&name).ok_or_else(|| {
                    let names: Vec<&str> = EvictionPolicy::ALL.iter().map(|p| p.name()).collect();
                    err(
                        "eviction_policy",
                        format!("`{name}` is not a policy; use one of {}", names.join(", ")),
                    )
                })?,
            },
            tls_cert_file: path_opt(cli.tls_cert_file.or(file.tls_cert_file)),
            tls_key_file: path_opt(cli.tls_key_file.or(file.tls_key_file)),
            tls_ca_file: path_opt(cli.tls_ca_file.or(file.tls_ca_file)),
            client_cert_auth: cli.client_cert_auth.or(file.client_cert_auth).unwrap_or(false),
            peer_tls_cert_file: path_opt(cli.peer_tls_cert_file.or(file.peer_tls_cert_file)),
            peer_tls_key_file: path_opt(cli.peer_tls_key_file.or(file.peer_tls_key_file)),
            peer_tls_ca_file: path_opt(cli.peer_tls_ca_file.or(file.peer_tls_ca_file)),
            source,
        };
        if https_peers && cfg.peer_tls_cert_file.is_none() {
            return Err(err(
                "peers",
                "lists https:// Raft URLs but peer_tls_cert_file, peer_tls_key_file and \
                 peer_tls_ca_file are not set: the Raft port would speak plain TCP",
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(err("node_id", "must be at least 1 (0 means \"no node\" in Raft)"));
        }
        if self.heartbeat_ms == 0 {
            return Err(err("heartbeat_ms", "must be greater than 0"));
        }
        if self.election_ms <= self.heartbeat_ms {
            return Err(err(
                "election_ms",
                format!(
                    "must be greater than heartbeat_ms ({} <= {}), or followers would campaign \
                     against a healthy leader",
                    self.election_ms, self.heartbeat_ms
                ),
            ));
        }
        let positive = [
            ("max_key_bytes", self.max_key_bytes as u64),
            ("max_value_bytes", self.max_value_bytes as u64),
            ("max_body_bytes", self.max_body_bytes as u64),
            ("request_timeout_ms", self.request_timeout_ms),
            ("max_concurrent_requests", self.max_concurrent_requests as u64),
            ("snapshot_threshold", self.snapshot_threshold),
            ("clock_skew_max_ms", self.clock_skew_max_ms),
            ("search_page_keys", self.search_page_keys as u64),
            ("watch_history_events", self.watch_history_events as u64),
            ("max_watchers", self.max_watchers as u64),
            ("resp_max_clients", self.resp_max_clients as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(err(key, "must be greater than 0"));
            }
        }
        if self.snapshot_log_percent > SNAPSHOT_LOG_PERCENT_MAX {
            return Err(err(
                "snapshot_log_percent",
                format!(
                    "must be at most {SNAPSHOT_LOG_PERCENT_MAX} (percent: a log ten times the \
                     size of the snapshot); 0 snapshots every snapshot_threshold entries"
                ),
            ));
        }
        if self.max_key_bytes > core_key_limit() {
            return Err(err("max_key_bytes", format!("must be at most {}", core_key_limit())));
        }
        let value_limit = value_bytes_limit(self.max_key_bytes);
        if self.max_value_bytes > value_limit {
            return Err(err(
                "max_value_bytes",
                format!(
                    "must be at most {value_limit}: a value of max_value_bytes with a key of \
                     max_key_bytes ({}) must fit in one log entry ({} bytes with \
                     {PROPOSAL_OVERHEAD_BYTES} bytes of framing)",
                    self.max_key_bytes,
                    simple_cache_core::config::ENTRY_BYTES_LIMIT
                ),
            ));
        }
        if self.max_body_bytes > BODY_BYTES_LIMIT {
            return Err(err("max_body_bytes", format!("must be at most {BODY_BYTES_LIMIT}")));
        }
        if self.max_body_bytes < self.max_value_bytes {
            return Err(err(
                "max_body_bytes",
                format!(
                    "({}) must be at least max_value_bytes ({}): a request carrying the largest \
                     value would otherwise be refused as too large a body",
                    self.max_body_bytes, self.max_value_bytes
                ),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(err(
                "log_level",
                format!("`{}` is not a valid level or filter (e.g. info, debug)", self.log_level),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.peers {
            if p.id == 0 {
                return Err(err("peers", "a peer id must be at least 1"));
            }
            if !seen.insert(p.id) {
                return Err(err("peers", format!("peer id {} is listed twice", p.id)));
            }
            check_host_port("peers", &p.addr)?;
            if let Some(h) = &p.http_addr {
                check_host_port("peers", h)?;
            }
        }
        if let Some(j) = &self.join {
            check_host_port("join", j)?;
        }
        if let Some(a) = &self.advertise_raft_addr {
            check_host_port("advertise_raft_addr", a)?;
        }
        if let Some(a) = &self.advertise_http_addr {
            check_host_port("advertise_http_addr", a)?;
        }
        match self.mode {
            Mode::Single => {
                if !self.peers.is_empty() {
                    return Err(err("peers", "is only used in mode: distributed"));
                }
                if self.join.is_some() {
                    return Err(err("join", "is only used in mode: distributed"));
                }
            }
            Mode::Distributed => {
                if self.peers.is_empty() && self.join.is_none() {
                    return Err(err(
                        "peers",
                        "mode: distributed needs the initial voters in `peers` or a member to \
                         `join`",
                    ));
                }
                if !self.peers.is_empty() && self.join.is_some() {
                    return Err(err(
                        "join",
                        "set either `peers` (bootstrap a new cluster) or `join` (join an \
                         existing one), not both",
                    ));
                }
                if !self.peers.is_empty() && !seen.contains(&self.node_id) {
                    return Err(err(
                        "peers",
                        format!("must list this node (node_id {})", self.node_id),
                    ));
                }
            }
        }
        self.validate_tls()?;
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => return Err(err("tls_key_file", "must be set with tls_cert_file")),
            (None, Some(_)) => return Err(err("tls_cert_file", "must be set with tls_key_file")),
            _ => {}
        }
        if self.tls_ca_file.is_some() && self.tls_cert_file.is_none() {
            return Err(err(
                "tls_ca_file",
                "verifies client certificates, which needs TLS on the client listeners: set \
                 tls_cert_file and tls_key_file too",
            ));
        }
        if self.client_cert_auth && self.tls_ca_file.is_none() {
            return Err(err(
                "client_cert_auth",
                "needs tls_ca_file (the CA bundle client certificates must chain to) and \
                 tls_cert_file/tls_key_file",
            ));
        }
        let peer = [
            ("peer_tls_cert_file", &self.peer_tls_cert_file),
            ("peer_tls_key_file", &self.peer_tls_key_file),
            ("peer_tls_ca_file", &self.peer_tls_ca_file),
        ];
        let set = peer.iter().filter(|(_, v)| v.is_some()).count();
        if set != 0 && set != peer.len() {
            let missing = peer.iter().find(|(_, v)| v.is_none()).map_or("", |(k, _)| k);
            return Err(err(
                missing,
                "peer TLS is mutual: set peer_tls_cert_file, peer_tls_key_file and \
                 peer_tls_ca_file together",
            ));
        }
        if self.mode == Mode::Distributed
            && self.tls_cert_file.is_some()
            && self.tls_ca_file.is_none()
            && self.peer_tls_ca_file.is_none()
        {
            return Err(err(
                "tls_ca_file",
                "with TLS on the client listeners in mode: distributed, members call each \
                 other's client listeners (forwarding to the leader) and must verify their \
                 certificates: set tls_ca_file (or peer_tls_ca_file, if the same CA signs them)",
            ));
        }
        Ok(())
    }

    /// The client listeners' TLS files, if TLS is on for them.
    pub fn client_tls_files(&self) -> Option<crate::tls::IdentityFiles> {
        let key_file = |key, path: &PathBuf| crate::tls::KeyFile { key, path: path.clone() };
        Some(crate::tls::IdentityFiles {
            cert: key_file("tls_cert_file", self.tls_cert_file.as_ref()?),
            key: key_file("tls_key_file", self.tls_key_file.as_ref()?),
            ca: self.tls_ca_file.as_ref().map(|p| key_file("tls_ca_file", p)),
        })
    }

    /// The peer TLS files, if peer TLS is on.
    pub fn peer_tls_files(&self) -> Option<crate::tls::IdentityFiles> {
        let key_file = |key, path: &PathBuf| crate::tls::KeyFile { key, path: path.clone() };
        Some(crate::tls::IdentityFiles {
            cert: key_file("peer_tls_cert_file", self.peer_tls_cert_file.as_ref()?),
            key: key_file("peer_tls_key_file", self.peer_tls_key_file.as_ref()?),
            ca: Some(key_file("peer_tls_ca_file", self.peer_tls_ca_file.as_ref()?)),
        })
    }

    /// Whether any listener accepts connections from other machines.
    pub fn listens_beyond_loopback(&self) -> bool {
        [self.http_addr, self.raft_http_addr, self.metrics_addr]
            .iter()
            .chain(self.grpc_addr.iter())
            .chain(self.redis_addr.iter())
            .any(|a| !a.ip().is_loopback())
    }
}

/// The key limit the cache itself can handle in a pattern search is `PATTERN_BYTES_MAX`; keys
/// themselves are bounded only by the proposal size, so cap them at a sane 64 KiB.
fn core_key_limit() -> usize {
    64 * 1024
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("config", format!("cannot read {}: {e}", path.display())))?;
    parse_file(&text).map_err(|mut e| {
        e.problem = format!("{} (in {})", e.problem, path.display());
        e
    })
}

/// The keys a config file may have, for "unknown key" errors.
const FILE_KEYS: &[&str] = &[
    "mode",
    "node_id",
    "http_addr",
    "raft_http_addr",
    "metrics_addr",
    "grpc_addr",
    "peers",
    "join",
    "advertise_raft_addr",
    "advertise_http_addr",
    "heartbeat_ms",
    "election_ms",
    "hot_reload",
    "data_dir",
    "log_level",
    "max_key_bytes",
    "max_value_bytes",
    "max_body_bytes",
    "request_timeout_ms",
    "max_concurrent_requests",
    "admin_token",
    "peer_token",
    "snapshot_threshold",
    "snapshot_log_percent",
    "clock_skew_max_ms",
    "search_page_keys",
    "max_memory_bytes",
    "max_keys",
    "eviction_policy",
    "watch_history_events",
    "max_watchers",
    "redis_addr",
    "resp_password",
    "resp_max_clients",
    "tls_cert_file",
    "tls_key_file",
    "tls_ca_file",
    "client_cert_auth",
    "peer_tls_cert_file",
    "peer_tls_key_file",
    "peer_tls_ca_file",
];

/// Parses the YAML text key by key, so that an error names the key it is about (serde's error
/// for the whole document names only a line and column, or nothing useful at all).
fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        // The parser's message continues with a drawing of the line; the first line says it.
        let e = e.to_string();
        let first = e.lines().next().unwrap_or_default().trim_start_matches("error: ");
        err("config", format!("the file is not valid YAML: {first}"))
    })?;
    let map = match doc {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => return Ok(FileConfig::default()),
        other => {
            return Err(err(
                "config",
                format!("the file must be a mapping of `key: value` lines, not {}", kind(&other)),
            ));
        }
    };
    for (key, value) in &map {
        if !FILE_KEYS.contains(&key.as_str()) {
            let hint = FILE_KEYS
                .iter()
                .find(|k| k.starts_with(key.get(..3).unwrap_or(key)))
                .map_or(String::new(), |k| format!(" (did you mean `{k}`?)"));
            return Err(err(key, format!("is not a configuration key{hint}")));
        }
        let one = serde_json::Value::Object([(key.clone(), value.clone())].into_iter().collect());
        if let Err(e) = serde_json::from_value::<FileConfig>(one) {
            return Err(err(key, describe_value_error(key, value, &e)));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| err("config", e.to_string()))
}

fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "nothing",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// Says what is wrong with one key's value in words.
fn describe_value_error(key: &str, value: &serde_json::Value, e: &serde_json::Error) -> String {
    match (key, value) {
        ("mode", serde_json::Value::String(s)) => {
            let hint = if s.contains(char::is_whitespace) || s.contains(':') {
                " (is a line after it indented by mistake?)"
            } else {
                ""
            };
            format!("must be `single` or `distributed`, not `{s}`{hint}")
        }
        ("node_id", _) => {
            format!(
                "must be a number or a name ending in one (`n2` is node 2), not {}",
                kind(value)
            )
        }
        ("peers", serde_json::Value::Array(_)) => {
            "each peer must be `{id: 1, addr: \"host:port\", \
             http_addr: \"host:port\"}` or a Raft URL such as `http://host:port`"
                .to_string()
        }
        _ => {
            let text = e.to_string();
            let expected = text.split(", expected ").nth(1).map(|s| {
                s.replace("u64", "a whole number")
                    .replace("usize", "a whole number")
                    .replace("a boolean", "true or false")
            });
            match expected {
                Some(what) => format!("must be {what}, not {}", kind(value)),
                None => text,
            }
        }
    }
}

fn addr(key: &str, value: Option<String>, default: &str) -> Result<SocketAddr, ConfigError> {
    parse_socket_addr(key, value.as_deref().unwrap_or(default))
}

/// An `IP:port` to listen on; `:port` means every interface, as in Go (and the seed's files).
fn parse_socket_addr(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    full.parse().map_err(|_| {
        err(key, format!("`{s}` is not an IP:port or :port address (e.g. 127.0.0.1:8080)"))
    })
}

/// A peer's Raft address from the seed's URL form: `http://host:port` or `https://host:port` (a
/// trailing `/` allowed), or plain `host:port`. Whether the Raft port speaks TLS is up to
/// `peer_tls_*`; `https://` without them is refused by `Config::merge`.
fn peer_url_addr(url: &str) -> Result<String, ConfigError> {
    let u = url.trim();
    let addr = u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).unwrap_or(u);
    let addr = addr.trim_end_matches('/');
    check_host_port("peers", addr)?;
    Ok(addr.to_string())
}

/// Turns `peers` into specs with ids. The seed's form (URLs, no ids) numbers them by position:
/// entry N is node N. That is safe only if every node's list is in the same order, so this node
/// checks that its own entry is at its id; nodes whose lists differ derive different cluster
/// ids (from the ids and addresses) and refuse each other's messages.
fn resolve_peers(
    entries: Vec<PeerEntry>,
    node_id: u64,
    raft_http_addr: SocketAddr,
) -> Result<Vec<PeerSpec>, ConfigError> {
    let urls = entries.iter().filter(|e| matches!(e, PeerEntry::Url(_))).count();
    if urls == 0 {
        return Ok(entries
            .into_iter()
            .filter_map(|e| match e {
                PeerEntry::Spec(s) => Some(s),
                PeerEntry::Url(_) => None,
            })
            .collect());
    }
    if urls != entries.len() {
        return Err(err(
            "peers",
            "mixes entries with ids and bare URLs: give every entry an id, or none (then entry \
             N is node N)",
        ));
    }
    let mut specs = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let PeerEntry::Url(url) = e else { unreachable!("all are URLs") };
        specs.push(PeerSpec { id: i as u64 + 1, addr: peer_url_addr(&url)?, http_addr: None });
    }
    let mine = specs.iter().find(|p| p.id == node_id);
    let is_me = |p: &PeerSpec| {
        let Some((host, port)) = p.addr.rsplit_once(':') else { return false };
        let ip = raft_http_addr.ip();
        port.parse::<u16>().ok() == Some(raft_http_addr.port())
            && (ip.is_unspecified()
                || host == ip.to_string()
                || (ip.is_loopback() && (host == "localhost" || host.starts_with("127."))))
    };
    match mine {
        Some(p) if is_me(p) => Ok(specs),
        _ => {
            let position = specs
                .iter()
                .find(|p| is_me(p))
                .map_or("is not in the list".to_string(), |p| format!("is entry {}", p.id));
            Err(err(
                "peers",
                format!(
                    "lists URLs without ids, so entry N is node N; but this node (node_id \
                     {node_id}, raft_http_addr {raft_http_addr}) {position}. List the members \
                     in node-id order on every node, or give ids: `- {{id: {node_id}, addr: \
                     \"127.0.0.1:{}\"}}`",
                    raft_http_addr.port()
                ),
            ))
        }
    }
}

/// A `host:port` a peer can be reached at; host names are allowed (resolved when connecting).
pub fn check_host_port(key: &str, s: &str) -> Result<(), ConfigError> {
    let bad = || err(key, format!("`{s}` is not a host:port address"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(())
}

/// Parses `1=127.0.0.1:9090@127.0.0.1:8080,2=...`, or the seed's URLs in node-id order
/// (`http://127.0.0.1:9090,http://127.0.0.1:9091`).
pub fn parse_peers(s: &str) -> Result<Vec<PeerEntry>, ConfigError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, rest)) = part.split_once('=') else {
            if part.contains(':') {
                out.push(PeerEntry::Url(part.to_string()));
                continue;
            }
            return Err(err("peers", format!("`{part}` is not id=raft_addr[@http_addr]")));
        };
        let id = id
            .trim()
            .parse::<u64>()
            .map_err(|_| err("peers", format!("`{id}` is not a node id")))?;
        let (addr, http_addr) = match rest.split_once('@') {
            Some((a, h)) => (a.to_string(), Some(h.to_string())),
            None => (rest.to_string(), None),
        };
        out.push(PeerEntry::Spec(PeerSpec { id, addr, http_addr }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Config, ConfigError> {
        Config::merge(Cli::default(), parse_file(text)?, None)
    }

    // With nothing configured the node is a single loopback node with the seed's ports.
    #[test]
    fn defaults_are_a_single_loopback_node() {
        let c = Config::merge(Cli::default(), FileConfig::default(), None).unwrap();
        assert_eq!(c.mode, Mode::Single);
        assert_eq!(c.node_id, 1);
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.raft_http_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(c.metrics_addr.to_string(), "127.0.0.1:2112");
        assert_eq!(c.grpc_addr.unwrap().to_string(), "127.0.0.1:5051");
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.max_key_bytes, 1024);
        assert_eq!(c.max_value_bytes, 1 << 20);
        assert!(!c.listens_beyond_loopback());
    }

    // gRPC can be moved or disabled; a configured address must parse.
    #[test]
    fn grpc_addr_can_be_set_or_disabled() {
        let c = yaml("grpc_addr: \"0.0.0.0:6000\"").unwrap();
        assert_eq!(c.grpc_addr.unwrap().to_string(), "0.0.0.0:6000");
        assert!(c.listens_beyond_loopback());
        let c = yaml("grpc_addr: \"\"").unwrap();
        assert_eq!(c.grpc_addr, None);
        assert_eq!(
            yaml("grpc_addr: \":5051\"").unwrap().grpc_addr.unwrap().to_string(),
            "0.0.0.0:5051"
        );
        assert_eq!(yaml("grpc_addr: \"5051\"").unwrap_err().key, "grpc_addr");
    }

    // The log's share of a snapshot is a setting: the default is core's, 0 snapshots by entry
    // count alone, and a share past the maximum is refused naming the key.
    #[test]
    fn snapshot_log_percent_is_a_setting() {
        assert_eq!(yaml("").unwrap().snapshot_log_percent, SNAPSHOT_LOG_PERCENT_DEFAULT);
        assert_eq!(
            SNAPSHOT_LOG_PERCENT_DEFAULT,
            simple_cache_core::node::NodeConfig::new(simple_cache_core::Config::new(
                simple_cache_core::NodeId(1)
            ))
            .snapshot_log_percent,
            "the server's default is core's"
        );
        assert_eq!(yaml("snapshot_log_percent: 0").unwrap().snapshot_log_percent, 0);
        assert_eq!(yaml("snapshot_log_percent: 10").unwrap().snapshot_log_percent, 10);
        let e = yaml("snapshot_log_percent: 1001").unwrap_err();
        assert_eq!(e.key, "snapshot_log_percent");
        assert!(e.to_string().contains("at most 1000"), "{e}");
    }

    // A flag overrides the file.
    #[test]
    fn cli_overrides_file() {
        let file: FileConfig = serde_saphyr::from_str("node_id: 3\nheartbeat_ms: 50\n").unwrap();
        let cli = Cli { node_id: Some("7".into()), ..Cli::default() };
        let c = Config::merge(cli, file, None).unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.heartbeat_ms, 50);
    }

    // Every error names the key it is about.
    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("node_id: 0", "node_id"),
            ("election_ms: 100\nheartbeat_ms: 100", "election_ms"),
            ("http_addr: nonsense", "http_addr"),
            ("max_value_bytes: 0", "max_value_bytes"),
            ("log_level: \"[\"", "log_level"),
            ("mode: distributed", "peers"),
            ("peers: [{id: 2, addr: \"127.0.0.1:9091\"}]", "peers"),
            ("mode: distributed\npeers: [{id: 2, addr: \"127.0.0.1:9091\"}]", "peers"),
            ("mode: distributed\njoin: \"no-port\"", "join"),
        ];
        for (text, key) in cases {
            let e = yaml(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    // A typo in a key is an error, not a silently ignored setting; so is a wrong type. Each
    // error names the key as written in the file (regression, issue 10 failure 8: type errors
    // named `config`, and a mis-indented line gave "unknown variant `single bad`").
    #[test]
    fn unknown_keys_and_wrong_types_are_rejected_naming_the_key() {
        let cases = [
            ("node_idd: 1", "node_idd", "did you mean `node_id`"),
            ("node_id: [1]", "node_id", "must be a number or a name ending in one"),
            ("peers: [3]", "peers", "each peer must be"),
            ("mode: cluster", "mode", "must be `single` or `distributed`, not `cluster`"),
            ("mode: single\n  bad: x\n", "config", "not valid YAML"),
            ("mode: single bad\n", "mode", "indented by mistake"),
            ("hot_reload: 3", "hot_reload", "must be true or false"),
            ("peers: 3", "peers", "must be"),
            ("- a\n- b\n", "config", "mapping"),
        ];
        for (text, key, words) in cases {
            let e = parse_file(text).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.to_string().contains(words), "{text}: {e}");
            assert_eq!(e.to_string().lines().count(), 1, "one line: {e}");
        }
    }

    // Regression (issue 10, failures 7 and 8): a valid configuration allowed a value too large
    // for one WAL record (the leader's WAL writer asserted), and a body limit below the value
    // limit.
    #[test]
    fn limits_must_fit_a_log_entry_and_each_other() {
        let e = yaml("max_value_bytes: 67108864\nmax_body_bytes: 67108864").unwrap_err();
        assert_eq!(e.key, "max_value_bytes", "{e}");
        let largest = value_bytes_limit(1024);
        let ok = format!("max_value_bytes: {largest}\nmax_body_bytes: {}", 64 << 20);
        assert!(yaml(&ok).is_ok());
        let e = yaml("max_value_bytes: 4096\nmax_body_bytes: 1024").unwrap_err();
        assert_eq!(e.key, "max_body_bytes", "{e}");
    }

    // Regression (issue 10, failure 8): an invalid SIMPLE_CACHE_NODE_ID was reported as a bad
    // `--node-id`; the error names the variable the operator actually set.
    #[test]
    fn bad_environment_values_name_the_variable() {
        use clap::Parser;
        // SAFETY: tests in this module do not read SIMPLE_CACHE_HEARTBEAT_MS concurrently.
        unsafe { std::env::set_var("SIMPLE_CACHE_HEARTBEAT_MS", "fast") };
        let e = Cli::try_parse_from(["simple-cache"]).unwrap_err();
        let named = env_value_error(&e, vec!["simple-cache".into()]).expect("names the variable");
        assert_eq!(named.key, "SIMPLE_CACHE_HEARTBEAT_MS");
        assert!(named.to_string().contains("`fast`"), "{named}");
        // The same bad value given as a flag is clap's own error about the flag.
        let argv = ["simple-cache", "--heartbeat-ms", "fast"];
        let e = Cli::try_parse_from(argv).unwrap_err();
        assert!(env_value_error(&e, argv.iter().map(|s| s.to_string()).collect()).is_none());
        unsafe { std::env::remove_var("SIMPLE_CACHE_HEARTBEAT_MS") };
    }

    // The peers flag format parses ids, Raft addresses and optional client addresses.
    #[test]
    fn peers_flag_parses() {
        let p = parse_peers("1=127.0.0.1:9090@127.0.0.1:8080, 2=h:9091").unwrap();
        assert_eq!(
            p[0],
            PeerEntry::Spec(PeerSpec {
                id: 1,
                addr: "127.0.0.1:9090".into(),
                http_addr: Some("127.0.0.1:8080".into())
            })
        );
        assert_eq!(
            p[1],
            PeerEntry::Spec(PeerSpec { id: 2, addr: "h:9091".into(), http_addr: None })
        );
        assert!(parse_peers("x=1").is_err());
        assert!(parse_peers("1").is_err());
        let p = parse_peers("http://127.0.0.1:9090,http://127.0.0.1:9091").unwrap();
        assert_eq!(p[1], PeerEntry::Url("http://127.0.0.1:9091".into()));
    }

    /// The seed's node file for node `n` of 3, exactly as the Go simple-cache ships them.
    fn seed_node_file(n: u64) -> String {
        format!(
            "mode: distributed\nnode_id: n{n}\ngrpc_addr: \":{grpc}\"\nhttp_addr: \":{http}\"\n\
             raft_http_addr: \":{raft}\"\nmetrics_addr: \":{metrics}\"\npeers:\n  - \
             http://127.0.0.1:9090\n  - http://127.0.0.1:9091\n  - http://127.0.0.1:9092\n\
             heartbeat_ms: 200\nelection_ms: 1200\nhot_reload: false\n",
            grpc = 5050 + n,
            http = 8079 + n,
            raft = 9089 + n,
            metrics = 2111 + n,
        )
    }

    // The seed's node files load as they are: string node ids, `:port` listen addresses (every
    // interface), peers as URLs numbered by position, its timing keys.
    #[test]
    fn seed_node_files_load() {
        for n in 1..=3u64 {
            let c = yaml(&seed_node_file(n)).unwrap_or_else(|e| panic!("node {n}: {e}"));
            assert_eq!(c.mode, Mode::Distributed);
            assert_eq!(c.node_id, n);
            assert_eq!(c.http_addr.to_string(), format!("0.0.0.0:{}", 8079 + n));
            assert_eq!(c.raft_http_addr.to_string(), format!("0.0.0.0:{}", 9089 + n));
            assert_eq!(c.grpc_addr.unwrap().to_string(), format!("0.0.0.0:{}", 5050 + n));
            assert_eq!(c.metrics_addr.to_string(), format!("0.0.0.0:{}", 2111 + n));
            let ids: Vec<(u64, &str)> = c.peers.iter().map(|p| (p.id, p.addr.as_str())).collect();
            assert_eq!(ids, [(1, "127.0.0.1:9090"), (2, "127.0.0.1:9091"), (3, "127.0.0.1:9092")]);
            assert_eq!((c.heartbeat_ms, c.election_ms, c.hot_reload), (200, 1200, false));
        }
    }

    // A string id maps to its trailing number; one without a number is refused saying what to
    // write. URL peers in another order than the ids are refused, naming the fix.
    #[test]
    fn seed_ids_and_peer_order_are_checked() {
        for (text, id) in [("n2", 2), ("node-2", 2), ("cache_02", 2), ("7", 7), (" n12 ", 12)] {
            assert_eq!(node_id_of(text).unwrap(), id, "{text}");
        }
        for bad in ["alpha", "n0", "", "a b1", "n99999999999999999999999"] {
            let e = node_id_of(bad).unwrap_err();
            assert!(e.problem.contains("write `node_id: 2`"), "{bad}: {e}");
        }
        let swapped = seed_node_file(2)
            .replace("9091\n  - http://127.0.0.1:9092", "9092\n  - http://127.0.0.1:9091");
        let e = yaml(&swapped).unwrap_err();
        assert_eq!(e.key, "peers");
        assert!(e.problem.contains("is entry 3") && e.problem.contains("{id: 2"), "{e}");
        let e = yaml(
            &seed_node_file(2)
                .replace("- http://127.0.0.1:9090", "- {id: 1, addr: \"127.0.0.1:9090\"}"),
        )
        .unwrap_err();
        assert!(e.problem.contains("mixes"), "{e}");
        assert_eq!(
            yaml(&seed_node_file(1).replace("http://127.0.0.1:9090", "https://127.0.0.1:9090"))
                .unwrap_err()
                .key,
            "peers"
        );
        assert_eq!(yaml("node_id: alpha").unwrap_err().key, "node_id");
    }

    // The shipped example and cluster configs are valid.
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for f in [
            "config.example.yaml",
            "configs/node1.yaml",
            "configs/node2.yaml",
            "configs/node3.yaml",
        ] {
            let file = read_file(&root.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
            Config::merge(Cli::default(), file, None).unwrap_or_else(|e| panic!("{f}: {e}"));
        }
    }

    // TLS settings that cannot work are refused by key before any file is read: half a pair,
    // a CA bundle or client_cert_auth without TLS, peer TLS without all three files, and a
    // distributed node with client TLS that could not verify the leader it forwards to.
    #[test]
    fn incomplete_tls_settings_are_refused_by_key() {
        let cases = [
            ("tls_cert_file: c.pem", "tls_key_file"),
            ("tls_key_file: k.pem", "tls_cert_file"),
            ("tls_ca_file: ca.pem", "tls_ca_file"),
            (
                "tls_cert_file: c.pem\ntls_key_file: k.pem\nclient_cert_auth: true",
                "client_cert_auth",
            ),
            ("peer_tls_cert_file: c.pem\npeer_tls_key_file: k.pem", "peer_tls_ca_file"),
            ("peer_tls_ca_file: ca.pem", "peer_tls_cert_file"),
            (
                "mode: distributed\npeers: [\"http://127.0.0.1:9090\"]\ntls_cert_file: c.pem\n\
                 tls_key_file: k.pem",
                "tls_ca_file",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(yaml(text).unwrap_err().key, key, "{text}");
        }
        let whole = "mode: distributed\npeers:\n  - https://127.0.0.1:9090\n\
                     tls_cert_file: c.pem\ntls_key_file: k.pem\ntls_ca_file: ca.pem\n\
                     client_cert_auth: true\npeer_tls_cert_file: p.pem\npeer_tls_key_file: p.key\n\
                     peer_tls_ca_file: ca.pem";
        let c = yaml(whole).unwrap();
        assert_eq!(c.peers[0].addr, "127.0.0.1:9090", "an https:// Raft URL with peer TLS");
        assert!(c.client_cert_auth);
        assert_eq!(c.peer_tls_files().unwrap().ca.unwrap().key, "peer_tls_ca_file");
        assert_eq!(c.client_tls_files().unwrap().cert.path, PathBuf::from("c.pem"));
        assert!(
            yaml("tls_cert_file: \"\"").unwrap().client_tls_files().is_none(),
            "empty is unset"
        );
    }
}
