//! `simple-cache`: the server binary. Loads the configuration, recovers the WAL, starts the node
//! loop and the listeners (client HTTP API, gRPC API, Raft, metrics), joins a cluster if asked, and on
//! SIGTERM/SIGINT shuts down gracefully (stop accepting, finish in-flight requests, hand
//! leadership over, flush the WAL, exit 0).

/// mimalloc instead of glibc's allocator: a leader under 64 concurrent PUTs spent 12-15% of its
/// CPU in glibc malloc and free (issue 17's profiles; BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use simple_cache_core::message::Membership;
use simple_cache_core::node::RequestIds;
use simple_cache_core::node::{CacheNode, NodeConfig};
use simple_cache_core::raft::Persisted;
use simple_cache_core::{NodeId, SnapshotMeta};
use simple_cache_server::config::{Cli, Command, Config, Mode};
use simple_cache_server::http_serve::DRAIN_TIMEOUT;
use simple_cache_server::metrics::{Format, Metrics};
use simple_cache_server::node_loop::{self, Clock, INPUT_QUEUE_MAX, Input, NodeLoop, Status};
use simple_cache_server::peer_auth::{self, ClusterId};
use simple_cache_server::raft_http;
use simple_cache_server::service::Service;
use simple_cache_server::transport::{MemberAddr, Transport};
use simple_cache_server::wal_store::{DataDirLock, WalStore, describe_io};
use simple_cache_server::{grpc, http_api, http_serve, resp_server};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

/// Exit statuses: 0 after a requested stop, [`EXIT_CONFIG`] for a configuration that cannot
/// work, [`EXIT_STARTUP`] when startup fails (a port in use, a data directory that cannot be
/// used), [`EXIT_REMOVED`] when this node is not (or no longer) a member of its cluster, and
/// `node_loop::EXIT_FATAL` (70) when a running node hits an error it cannot go on from. Each
/// failure prints one line on stderr.
const EXIT_CONFIG: i32 = 2;
const EXIT_STARTUP: i32 = 1;
const EXIT_REMOVED: i32 = 3;

fn main() {
    simple_cache_server::tls::install_default_provider();
    let cli = Cli::parse_or_exit();
    let command = cli.command.clone();
    let cfg = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("simple-cache: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    if let Some(Command::Recover { force_new_cluster }) = command {
        match simple_cache_server::recover::force_new_cluster(&cfg, force_new_cluster) {
            Ok(report) => {
                println!("{report}");
                return;
            }
            Err(e) => {
                eprintln!("simple-cache recover: {e}");
                std::process::exit(EXIT_STARTUP);
            }
        }
    }
    // Certificate files are configuration: one that cannot be used stops the node here, with
    // one line, before anything is logged, bound or written.
    let tls = match simple_cache_server::tls::Tls::load(&cfg) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("simple-cache: invalid configuration: {e}");
            std::process::exit(EXIT_CONFIG);
        }
    };
    let set_log_level = init_logging(&cfg);
    install_panic_hook();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match rt.block_on(run(cfg, tls, set_log_level)) {
        Ok(Stopped::Requested) => {}
        Ok(Stopped::Removed) => std::process::exit(EXIT_REMOVED),
        Err(Failure { status, error }) => {
            eprintln!("simple-cache: {error:#}");
            std::process::exit(status);
        }
    }
}

/// How a run ended without an error.
enum Stopped {
    /// SIGTERM or SIGINT.
    Requested,
    /// The node learned that it is no longer a member.
    Removed,
}

/// Why a run could not start or go on, with the exit status to use.
struct Failure {
    status: i32,
    error: anyhow::Error,
}

trait ExitWith<T> {
    fn exit_with(self, status: i32) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ExitWith<T> for Result<T, E> {
    fn exit_with(self, status: i32) -> Result<T, Failure> {
        self.map_err(|e| Failure { status, error: e.into() })
    }
}

/// A panic on the node loop or the snapshot writer leaves a node that cannot apply, persist or
/// answer anything: the process exits at once (with one line on stderr) so a supervisor sees it
/// fail and restarts it, rather than a zombie that answers "stopping" forever. A panic in a
/// request handler only fails that request; it is logged the same way.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed").to_string();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        let at = info.location().map_or(String::new(), |l| format!(" at {l}"));
        let fatal = matches!(name.as_str(), "node-loop" | "snapshot-writer");
        if fatal {
            eprintln!("simple-cache: fatal: thread {name} panicked{at}: {what}; stopping the node");
            if std::env::var_os("RUST_BACKTRACE").is_some() {
                eprintln!("{}", std::backtrace::Backtrace::force_capture());
            }
            std::process::exit(node_loop::EXIT_FATAL);
        }
        tracing::error!(thread = %name, "panic{at}: {what}");
    }));
}

/// Installs the log subscriber; returns how hot reload changes `log_level` later.
fn init_logging(cfg: &Config) -> simple_cache_server::reload::SetLogLevel {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // RUST_LOG wins over `log_level`, so an operator can turn on debug logs for one module.
    let rust_log =
        std::env::var("RUST_LOG").ok().and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok());
    let from_env = rust_log.is_some();
    let filter = rust_log.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    use std::io::IsTerminal;
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .init();
    Box::new(move |level: &str| {
        if from_env {
            return Err("RUST_LOG is set and takes precedence".into());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}

/// A seed for core's RNG from OS entropy: std's `RandomState` keys are drawn from the OS, mixed
/// with the time and pid. The server need not be deterministic; only core is.
fn os_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

async fn run(
    cfg: Config,
    tls: Arc<simple_cache_server::tls::Tls>,
    set_log_level: simple_cache_server::reload::SetLogLevel,
) -> Result<Stopped, Failure> {
    let cfg = Arc::new(cfg);
    let me = NodeId(cfg.node_id);
    tracing::info!(node_id = cfg.node_id, mode = ?cfg.mode, data_dir = %cfg.data_dir.display(), "simple-cache starting");
    if cfg.admin_token.is_none() && cfg.listens_beyond_loopback() {
        tracing::warn!(
            "a listener is not on loopback and no admin_token is set: anyone who can reach it may reset the cache or change the membership"
        );
    }

    // Startup order: the configuration is validated already; now bind every listener, then lock
    // and open the data directory. A port in use therefore fails before anything is written.
    let http_listener = bind("http_addr", cfg.http_addr).await.exit_with(EXIT_STARTUP)?;
    let raft_listener = bind("raft_http_addr", cfg.raft_http_addr).await.exit_with(EXIT_STARTUP)?;
    let metrics_listener = bind("metrics_addr", cfg.metrics_addr).await.exit_with(EXIT_STARTUP)?;
    // gRPC too, its default included: a node must not run silently without an API the
    // documentation promises (`grpc_addr: ""` turns it off on purpose).
    let grpc_listener = match cfg.grpc_addr {
        None => None,
        Some(addr) => Some(bind("grpc_addr", addr).await.exit_with(EXIT_STARTUP)?),
    };
    // The Redis protocol likewise (`redis_addr: ""` turns it off).
    let redis_listener = match cfg.redis_addr {
        None => None,
        Some(addr) => Some(bind("redis_addr", addr).await.exit_with(EXIT_STARTUP)?),
    };

    let lock = DataDirLock::acquire(&cfg.data_dir).exit_with(EXIT_STARTUP)?;
    simple_cache_server::restore::refuse_unfinished(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!(e))
        .exit_with(EXIT_STARTUP)?;
    let opened = WalStore::open(&cfg.data_dir, simple_cache_core::wal::SEGMENT_BYTES_TARGET)
        .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", cfg.data_dir.display()))
        .exit_with(EXIT_STARTUP)?;
    let mut rejoin = false;
    if !opened.fresh {
        if let Some(m) = simple_cache_server::recover::removed_from(&opened.persisted, me) {
            return Err(anyhow::anyhow!(
                "node {me} was removed from the cluster recorded in data_dir {} (members now: \
                 {:?}). To add it again, empty data_dir and join; to run it alone with this \
                 data, see `simple-cache recover`",
                cfg.data_dir.display(),
                m.members().map(|m| m.0).collect::<Vec<_>>()
            ))
            .exit_with(EXIT_REMOVED);
        }
        // A node that restarted while joining (it holds data from the leader but not yet the
        // entry that adds it) asks again. One that was ever a member does not: if it is not one
        // now, it is being removed, and joining would undo the operator's removal.
        let joining = !simple_cache_server::recover::ever_member(&opened.persisted, me);
        rejoin = cfg.mode == Mode::Distributed && cfg.join.is_some() && joining;
    }
    let cluster_id = ClusterId::load(&cfg.data_dir)
        .map_err(|e| anyhow::anyhow!("data_dir {}: {e}", cfg.data_dir.display()))
        .exit_with(EXIT_STARTUP)?;
    if !opened.fresh && cluster_id.get().is_none() {
        tracing::info!(
            "no cluster id is recorded in data_dir (it was created by an older version): peer \
             batches are accepted from any cluster; set peer_token to authenticate peers"
        );
    }
    let mut wal = opened.store;
    let incarnation = wal
        .begin_incarnation()
        .map_err(|e| {
            anyhow::anyhow!(
                "data_dir {}: writing the WAL: {}",
                cfg.data_dir.display(),
                describe_io(&e)
            )
        })
        .exit_with(EXIT_STARTUP)?;
    let self_addr = advertised(&cfg);
    let mut join_target = None;
    let persisted = if opened.fresh {
        let membership = match cfg.mode {
            Mode::Single => Some(Membership {
                voters: [me].into(),
                learners: Default::default(),
                addresses: [(me, self_addr.encode())].into(),
            }),
            Mode::Distributed if !cfg.peers.is_empty() => Some(Membership {
                voters: cfg.peers.iter().map(|p| NodeId(p.id)).collect(),
                learners: Default::default(),
                addresses: cfg
                    .peers
                    .iter()
                    .map(|p| {
                        let a = MemberAddr { raft: p.addr.clone(), http: p.http_addr.clone() };
                        (NodeId(p.id), a.encode())
                    })
                    .collect(),
            }),
            Mode::Distributed => {
                join_target = cfg.join.clone();
                None
            }
        };
        match membership {
            Some(m) => {
                let id = match cfg.mode {
                    Mode::Single => os_seed().max(1),
                    Mode::Distributed => peer_auth::derive(
                        &cfg.peers.iter().map(|p| (p.id, p.addr.clone())).collect::<Vec<_>>(),
                    ),
                };
                cluster_id
                    .store(&cfg.data_dir, id)
                    .map_err(|e| anyhow::anyhow!("writing the cluster id: {}", describe_io(&e)))
                    .exit_with(EXIT_STARTUP)?;
                tracing::info!(voters = ?m.voters, cluster_id = %peer_auth::hex(id), "bootstrapping a new cluster");
                let meta = SnapshotMeta { membership: m.clone(), ..SnapshotMeta::default() };
                wal.bootstrap(&meta)
                    .map_err(|e| {
                        anyhow::anyhow!("writing the bootstrap record: {}", describe_io(&e))
                    })
                    .exit_with(EXIT_STARTUP)?;
                Persisted::bootstrap(m)
            }
            None => Persisted::default(),
        }
    } else {
        if rejoin {
            tracing::info!(
                "the data directory holds state but not this node's membership: joining again"
            );
            join_target = cfg.join.clone();
        } else if cfg.mode == Mode::Distributed && cfg.join.is_some() {
            tracing::info!("the data directory holds state: not joining again");
        }
        opened.persisted
    };

    let mut raft_cfg = simple_cache_core::Config::new(me);
    raft_cfg.heartbeat_interval_ms = cfg.heartbeat_ms;
    raft_cfg.election_timeout_ms = cfg.election_ms;
    let mut node_cfg = NodeConfig::new(raft_cfg);
    node_cfg.snapshot_threshold = cfg.snapshot_threshold;
    node_cfg.snapshot_log_percent = cfg.snapshot_log_percent;
    let clock = Clock::new();
    let node = CacheNode::new(node_cfg, persisted, os_seed(), clock.now())
        .context("the recovered state cannot start a node")
        .exit_with(EXIT_STARTUP)?;

    let metrics = Arc::new(Metrics::new());
    let transport = Transport::new(
        me,
        (self_addr.raft.clone(), self_addr.http.clone().unwrap_or_default()),
        tokio::runtime::Handle::current(),
        metrics.clone(),
        cfg.peer_token.clone(),
        cluster_id.clone(),
        &tls,
    );
    let links = transport.links();
    let (tx, rx) = mpsc::channel(INPUT_QUEUE_MAX);
    let ids = RequestIds::new(incarnation);
    let (mut node_loop, status) =
        NodeLoop::new(node, wal, transport, clock, metrics.clone(), rx, ids);
    node_loop.set_clock_skew_max_ms(cfg.clock_skew_max_ms);
    node_loop.serve_watches(cfg.watch_history_events, cfg.max_watchers);
    let limits = simple_cache_server::reload::Limits::new(&cfg);
    node_loop.set_memory_limits(limits.clone());
    let loop_thread = node_loop.spawn();

    let client = tls
        .member_http_client()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .context("building the HTTP client")
        .exit_with(EXIT_STARTUP)?;
    let peer_client = tls
        .peer_http_client()
        .connect_timeout(Duration::from_secs(1))
        .build()
        .context("building the HTTP client")
        .exit_with(EXIT_STARTUP)?;
    if cfg.hot_reload {
        match &cfg.source {
            Some(path) => {
                tokio::spawn(simple_cache_server::reload::watch(
                    path.clone(),
                    (*cfg).clone(),
                    limits.clone(),
                    set_log_level,
                    Duration::from_secs(1),
                ));
            }
            None => {
                tracing::warn!("hot_reload is set but no config file is in use: nothing to watch")
            }
        }
    }
    let state = Service {
        tx: tx.clone(),
        status: status.clone(),
        cfg: cfg.clone(),
        limits,
        metrics: metrics.clone(),
        client,
        cluster_id: cluster_id.clone(),
        links,
        tls: tls.clone(),
        peer_client,
    };

    let (stop_client_tx, stop_client_rx) = watch::channel(false);
    let (stop_raft_tx, stop_raft_rx) = watch::channel(false);
    let client_server = tokio::spawn(http_serve::serve(
        http_listener,
        http_api::router(state.clone()),
        stop_client_rx.clone(),
        tls.client_acceptor(&[b"http/1.1"]),
    ));
    tokio::spawn(tls.clone().watch(metrics.clone(), stop_raft_rx.clone()));
    let raft_server =
        tokio::spawn(raft_http::serve(raft_listener, state.clone(), stop_raft_rx.clone()));
    let metrics_router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let m = metrics.clone();
            async move {
                // The classic text format unless the scraper asks for OpenMetrics.
                let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
                let format = Format::negotiate(accept);
                (
                    [
                        (axum::http::header::CONTENT_TYPE, format.content_type()),
                        (axum::http::header::VARY, "Accept"),
                    ],
                    m.encode(format),
                )
            }
        }),
    );
    let metrics_server = tokio::spawn(http_serve::serve(
        metrics_listener,
        metrics_router,
        stop_raft_rx.clone(),
        None,
    ));
    let grpc_addr = grpc_listener.as_ref().and_then(|l| l.local_addr().ok());
    let grpc_server =
        grpc_listener.map(|l| tokio::spawn(grpc::serve(l, state.clone(), stop_client_rx.clone())));
    let redis_addr = redis_listener.as_ref().and_then(|l| l.local_addr().ok());
    let redis_server = redis_listener
        .map(|l| tokio::spawn(resp_server::serve(l, state.clone(), stop_client_rx.clone())));
    tracing::info!(
        http_addr = %cfg.http_addr, raft_http_addr = %cfg.raft_http_addr, metrics_addr = %cfg.metrics_addr,
        grpc_addr = %grpc_addr.map_or("disabled".to_string(), |a| a.to_string()),
        redis_addr = %redis_addr.map_or("disabled".to_string(), |a| a.to_string()),
        client_tls = tls.client.is_some(), client_cert_auth = tls.client_cert_auth,
        peer_tls = tls.peer.is_some(),
        "listening"
    );

    if let Some(target) = join_target {
        tokio::spawn(join_cluster(state.clone(), target, self_addr));
    }

    let removed = tokio::select! {
        _ = shutdown_signal() => false,
        _ = removal(status.clone()) => true,
    };
    if removed {
        tracing::warn!(
            "this node was removed from the cluster; stopping (exit status {EXIT_REMOVED}). To \
             add it again, empty its data_dir and join"
        );
    } else {
        tracing::info!("shutdown requested: no longer accepting client requests");
    }
    let _ = stop_client_tx.send(true);
    let _ = client_server.await;
    if let Some(g) = grpc_server
        && tokio::time::timeout(DRAIN_TIMEOUT, g).await.is_err()
    {
        tracing::warn!("some gRPC calls were still busy when the drain timeout passed");
    }
    if let Some(r) = redis_server
        && tokio::time::timeout(DRAIN_TIMEOUT, r).await.is_err()
    {
        tracing::warn!("some RESP connections were still busy when the drain timeout passed");
    }
    let (reply, done) = oneshot::channel();
    if tx.send(Input::Shutdown { reply }).await.is_ok() {
        let _ = done.await;
    }
    let _ = stop_raft_tx.send(true);
    let _ = raft_server.await;
    let _ = metrics_server.await;
    let _ = tokio::task::spawn_blocking(move || loop_thread.join()).await;
    drop(lock);
    tracing::info!("simple-cache stopped");
    Ok(if removed { Stopped::Removed } else { Stopped::Requested })
}

async fn bind(key: &str, addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| bind_error(key, addr, e))
}

fn bind_error(key: &str, addr: std::net::SocketAddr, e: std::io::Error) -> anyhow::Error {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "the address is in use (another simple-cache node, or another program?)".to_string()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that IP address".to_string()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_string()
        }
        _ => e.to_string(),
    };
    let hint = match key {
        "grpc_addr" => " (set grpc_addr to a free address, or to \"\" to run without gRPC)",
        "redis_addr" => {
            " (a Redis server may be running there: set redis_addr to a free address, or to \"\" \
             to run without the Redis protocol)"
        }
        _ => "",
    };
    anyhow::anyhow!("cannot listen on {key} {addr}: {why}{hint}; nothing was written")
}

/// Resolves once the node learns it is no longer a member.
async fn removal(mut status: watch::Receiver<Status>) {
    let _ = status.wait_for(|s| s.removed).await;
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Asks a member to add this node as a learner, retrying until it succeeds: the cluster may be
/// electing a leader, or the member not up yet. The answer tells us the members' addresses, so
/// this node can answer the leader before any log entry reaches it.
async fn join_cluster(st: Service, target: String, me: MemberAddr) {
    let body = serde_json::json!({ "id": st.cfg.node_id, "addr": me.raft, "http_addr": me.http });
    // `join` names a client or a Raft address: either way it speaks TLS if this node's matching
    // port does. With TLS on only one of them, `join` must name that kind of port.
    let scheme = if st.tls.client.is_some() || st.tls.peer.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{target}/cluster/join");
    tracing::info!(%target, raft = %me.raft, http = ?me.http, "joining the cluster through this member");
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut req = st
            .client
            .post(&url)
            .json(&body)
            .timeout(Duration::from_millis(st.limits.request_timeout_ms() + 2000));
        if let Some(t) = &st.cfg.admin_token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                let mut learned = BTreeMap::new();
                for m in v["members"].as_array().into_iter().flatten() {
                    if let (Some(id), Some(raft)) = (m["id"].as_u64(), m["addr"].as_str()) {
                        let http = m["http_addr"].as_str().map(str::to_string);
                        learned.insert(NodeId(id), MemberAddr { raft: raft.to_string(), http });
                    }
                }
                if let Some(id) =
                    v["cluster_id"].as_str().and_then(|s| u64::from_str_radix(s, 16).ok())
                    && st.cluster_id.get() != Some(id)
                    && let Err(e) = st.cluster_id.store(&st.cfg.data_dir, id)
                {
                    // The node loop goes on; the id is learned again at the next join.
                    tracing::error!(error = %describe_io(&e), "recording the cluster id failed");
                }
                tracing::info!(%target, members = learned.len(), "joined the cluster as a learner");
                let _ = st.tx.send(Input::LearnAddresses(learned)).await;
                return;
            }
            Ok(resp) if resp.status() == axum::http::StatusCode::CONFLICT => {
                let v: serde_json::Value = resp.json().await.unwrap_or_default();
                match v["code"].as_str().unwrap_or_default() {
                    // A retried join of this node, still a learner: it is in.
                    "already_member" => {
                        tracing::info!(%target, "already a member of the cluster");
                        return;
                    }
                    // This id is a voter (this node lost its data: voting again with an empty
                    // log could elect a leader without committed entries), or the id or the
                    // address belongs to another node. Joining cannot succeed.
                    "already_voter" | "id_in_use" | "address_in_use" | "wrong_cluster" => {
                        eprintln!(
                            "simple-cache: cannot join through {target}: {}",
                            v["error"].as_str().unwrap_or("refused")
                        );
                        std::process::exit(EXIT_REMOVED);
                    }
                    _ => tracing::warn!(%target, answer = %v, "join refused for now; retrying"),
                }
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                tracing::warn!(%target, %status, answer = %text, "join failed; retrying");
            }
            Err(e) => {
                let error = simple_cache_server::tls::error_chain(&e);
                tracing::warn!(%target, %error, "join failed; retrying")
            }
        }
        // A retry delay, not synchronization: we cannot observe when the target becomes able
        // to accept us.
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// The addresses this node gives others: `advertise_raft_addr` / `advertise_http_addr` if set;
/// else its listeners, except that one on every interface (`0.0.0.0`, as the seed's `:port`
/// means) is given with a host others can reach: the host `peers` lists for this node, else the
/// other listener's, else loopback (with a warning, as that only works on one machine).
fn advertised(cfg: &Config) -> MemberAddr {
    let listed = cfg.peers.iter().find(|p| p.id == cfg.node_id);
    let host =
        listed.and_then(|p| p.addr.rsplit_once(':').map(|(h, _)| h.to_string())).or_else(|| {
            [cfg.raft_http_addr, cfg.http_addr]
                .iter()
                .find(|a| !a.ip().is_unspecified())
                .map(|a| a.ip().to_string())
        });
    let with_host = |a: std::net::SocketAddr| {
        if !a.ip().is_unspecified() {
            return a.to_string();
        }
        match &host {
            Some(h) => format!("{h}:{}", a.port()),
            None => {
                tracing::warn!(
                    listen = %a,
                    "listening on every interface with no reachable host known: advertising \
                     127.0.0.1:{} to peers, which works on one machine only; list this node in \
                     `peers` or listen on a specific IP",
                    a.port()
                );
                format!("127.0.0.1:{}", a.port())
            }
        }
    };
    let raft = match (&cfg.advertise_raft_addr, listed) {
        (Some(a), _) => a.clone(),
        (None, Some(p)) if cfg.raft_http_addr.ip().is_unspecified() => p.addr.clone(),
        _ => with_host(cfg.raft_http_addr),
    };
    let http = cfg.advertise_http_addr.clone().unwrap_or_else(|| with_host(cfg.http_addr));
    MemberAddr { raft, http: Some(http) }
}
