//! Test support: start real `simple-cache` processes on loopback with free ports and a temporary
//! data directory each, and talk HTTP (or gRPC) to them.
//!
//! Waiting is done by polling an endpoint (or the process) until a condition holds, always with
//! a deadline; never by sleeping a fixed time and hoping.

#![allow(dead_code)]

use serde_json::Value;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;
use tokio::time::Instant;

pub const BIN: &str = env!("CARGO_BIN_EXE_simple-cache");

/// A port that was free a moment ago, outside the kernel's ephemeral range.
///
/// Ports from `bind(":0")` come from the same range the kernel uses for the source ports of
/// outgoing connections, so under load another connection could take one before the server
/// binds it. Ports below that range (Linux: 32768-60999) are never handed out implicitly. Each
/// test process walks them from a random start, skipping ports that are in use.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    if NEXT.load(Ordering::Relaxed) == u32::MAX {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let _ = NEXT.compare_exchange(
            u32::MAX,
            (h.finish() % u64::from(SPAN)) as u32,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

pub struct Node {
    pub id: u64,
    pub http: String,
    pub raft: String,
    pub metrics: String,
    pub grpc: String,
    /// The RESP listener (`SIMPLE_CACHE_REDIS_ADDR`, which a `--redis-addr` in `args`
    /// overrides).
    pub redis: String,
    pub dir: PathBuf,
    pub args: Vec<String>,
    child: Option<Child>,
    run: u32,
}

impl Node {
    /// A node with fresh ports in `dir`, started with `extra` flags.
    pub fn new(id: u64, dir: &Path, extra: &[&str]) -> Node {
        let http = format!("127.0.0.1:{}", free_port());
        let raft = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        Node::with_addrs(id, dir, http, raft, metrics, extra)
    }

    pub fn with_addrs(
        id: u64,
        dir: &Path,
        http: String,
        raft: String,
        metrics: String,
        extra: &[&str],
    ) -> Node {
        let grpc = format!("127.0.0.1:{}", free_port());
        let mut args: Vec<String> = vec![
            "--node-id".into(),
            id.to_string(),
            "--http-addr".into(),
            http.clone(),
            "--raft-http-addr".into(),
            raft.clone(),
            "--metrics-addr".into(),
            metrics.clone(),
            "--grpc-addr".into(),
            grpc.clone(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
        ];
        // Fast timings by default; `extra` may set its own (a flag may be given once).
        for (flag, value) in [("--heartbeat-ms", "50"), ("--election-ms", "300")] {
            if !extra.contains(&flag) {
                args.extend([flag.to_string(), value.to_string()]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::with_args(id, dir, [http, raft, metrics, grpc], args)
    }

    /// A node started with exactly `args` (e.g. only `--config FILE`), listening where the
    /// caller configured it to.
    pub fn with_args(
        id: u64,
        dir: &Path,
        [http, raft, metrics, grpc]: [String; 4],
        args: Vec<String>,
    ) -> Node {
        let mut n = Node {
            id,
            http,
            raft,
            metrics,
            grpc,
            redis: format!("127.0.0.1:{}", free_port()),
            dir: dir.to_path_buf(),
            args,
            child: None,
            run: 0,
        };
        n.start();
        n
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} is already running", self.id);
        self.run += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            // Run from the temp dir so no ./config.yaml of the repository is picked up.
            .current_dir(&self.dir)
            .env_remove("CONFIG_PATH")
            .env_remove("RUST_LOG")
            .env("SIMPLE_CACHE_REDIS_ADDR", &self.redis)
            .env("SIMPLE_CACHE_LOG_LEVEL", "info,simple_cache_core=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the server binary starts");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("node{}-run{}.log", self.id, self.run))
    }

    /// The current run's log, for failure messages.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid();
        let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM {pid}");
        self.wait_exit(Duration::from_secs(15)).await
    }

    /// Waits for the process to exit by itself.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("node {} did not exit in time; log:\n{}", self.id, self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub async fn wait_ready(&mut self) {
        let url = self.url("/readyz");
        let client = client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(
                self.is_running(),
                "node {} exited during startup; log:\n{}",
                self.id,
                self.logs()
            );
            assert!(
                Instant::now() < deadline,
                "node {} not ready in time; log:\n{}",
                self.id,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn readyz(&self) -> Value {
        client().get(self.url("/readyz")).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn client() -> reqwest::Client {
    simple_cache_server::tls::install_default_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// Sends a request and returns the status and the JSON body (Null if the body is not JSON).
/// A JSON request, with the revision fields of the answer left out (`revision`, `applied`,
/// `create_revision`, `mod_revision`, `version`): tests of other things compare whole
/// answers. Tests of revisions use [`call_raw`].
pub async fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let (status, mut v) = call_raw(method, url, body).await;
    if let Value::Object(obj) = &mut v {
        // `version` is a key's only next to its `mod_revision` (`/version` has its own).
        if obj.remove("mod_revision").is_some() {
            obj.remove("version");
        }
        for field in ["revision", "applied", "create_revision"] {
            obj.remove(field);
        }
    }
    (status, v)
}

/// A JSON request and its whole answer.
pub async fn call_raw(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(m, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls `check` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fresh `(http, raft, metrics)` addresses for members 1..=n, and the `--peers` value that
/// lists them (`id=raft@http,...`).
pub fn member_addrs(n: u64) -> (Vec<(String, String, String)>, String) {
    let addrs: Vec<(String, String, String)> = (0..n)
        .map(|_| {
            let p = || format!("127.0.0.1:{}", free_port());
            (p(), p(), p())
        })
        .collect();
    let peers = peers_arg(&addrs);
    (addrs, peers)
}

/// The `--peers` value for members 1..=n at `(http, raft, _)` addresses: `id=raft@http,...`.
pub fn peers_arg(addrs: &[(String, String, String)]) -> String {
    addrs
        .iter()
        .enumerate()
        .map(|(i, (http, raft, _))| format!("{}={raft}@{http}", i + 1))
        .collect::<Vec<_>>()
        .join(",")
}

/// A cluster of `n` voters bootstrapped from `--peers`, each node in its own directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Cluster::start_with(n, &[]).await
    }

    pub async fn start_with(n: u64, more: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let (addrs, peers) = member_addrs(n);
        let mut nodes = Vec::new();
        for (i, (http, raft, metrics)) in addrs.into_iter().enumerate() {
            let id = i as u64 + 1;
            let d = dir.path().join(format!("n{id}"));
            std::fs::create_dir_all(&d).unwrap();
            let mut extra = vec!["--mode", "distributed", "--peers", &peers];
            extra.extend_from_slice(more);
            nodes.push(Node::with_addrs(id, &d, http, raft, metrics, &extra));
        }
        for n in &mut nodes {
            n.wait_ready().await;
        }
        Cluster { dir, nodes }
    }

    /// The index of the node every running node agrees is the leader.
    pub async fn leader(&mut self) -> usize {
        let mut running: Vec<usize> = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            if n.is_running() {
                running.push(i);
            }
        }
        let nodes = &self.nodes;
        eventually("an agreed leader", Duration::from_secs(20), || {
            let running = running.clone();
            async move {
                let mut leaders = std::collections::HashSet::new();
                for i in &running {
                    let r = client().get(nodes[*i].url("/readyz")).send().await.ok()?;
                    let v: Value = r.json().await.ok()?;
                    leaders.insert(v["leader"].as_u64()?);
                }
                let l = *leaders.iter().next()?;
                // The survivors may still name a killed leader until their election timeout.
                let at = nodes.iter().position(|n| n.id == l)?;
                (leaders.len() == 1 && running.contains(&at)).then_some(at)
            }
        })
        .await
    }
}
