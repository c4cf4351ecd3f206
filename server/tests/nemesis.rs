//! The real-process nemesis test: three `simple-cache` processes on loopback, concurrent clients
//! on random nodes through the HTTP API, and faults while they run: partitions between nodes,
//! `kill -9` and restart, `SIGSTOP`/`SIGCONT`, and wall clocks off by up to an hour
//! (libfaketime). The history is judged by the project's own linearizability checker
//! (`simple_cache_sim::lincheck`, `CacheModel`, split per key); after healing, every node must
//! hold the same values, and keys written with a 10-minute TTL at the start must still be there.
//!
//! How the faults are made, all on this machine:
//! - Each node runs under its own uid (no account needed: the test sets the uid when it spawns
//!   the process and chowns the node's directory). A partition is a set of `iptables` rules on
//!   `lo` that drop packets a node's uid sends to another node's ports
//!   (`-m owner --uid-owner`). The test's own clients run as root and are never cut off.
//!   Every rule carries a comment naming the test; the test deletes its rules at the end, on
//!   panic (a guard's `Drop`), and at its start (left over from a killed run).
//! - Clocks: `LD_PRELOAD=libfaketime` with `FAKETIME=±Ns` and `FAKETIME_DONT_FAKE_MONOTONIC=1`, so
//!   only the wall clock moves. The server reads it once at start, so a clock fault is a restart
//!   with a new offset; at most one node is an hour off at a time.
//!
//! It needs root, `iptables` and libfaketime (`.ci/run` installs them and sets
//! `SIMPLE_CACHE_NEMESIS_REQUIRED=1`, which turns a missing prerequisite into a failure); without
//! them it says why and passes. Seeded: `SIMPLE_CACHE_NEMESIS_SEED` (default: from the clock;
//! the seed is printed). `SIMPLE_CACHE_NEMESIS_SECS` sets the fault phase (default 60 s). The
//! long mode is one command (see SIMULATION.md):
//! `SIMPLE_CACHE_NEMESIS_SECS=300 cargo test -p simple-cache-server --test nemesis -- --nocapture`.
//!
//! `stale_reads_under_partitions_are_caught` proves the test bites: with reads at
//! `?consistency=stale` on random nodes under partitions, the checker must find a violation.
#![cfg(target_os = "linux")]

mod common;

use common::{BIN, free_port};
use serde_json::Value;
use simple_cache_sim::lincheck::{
    Budget, CacheInput, CacheModel, CacheOp, CacheOutput, History, Operation, Verdict,
    check_partitions, partition,
};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const KEYS: u64 = 5;
const CLIENTS: u64 = 4;

/// A small seeded generator (xorshift64*), so a run's faults replay from its seed.
struct Rng(u64);

impl Rng {
    /// Seeds 2k and 2k + 1 must differ: mix before forcing the state odd (non-zero).
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (seed >> 29) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (iptables rules and processes under other uids)".into());
    }
    if !Command::new("iptables").args(["-S", "OUTPUT"]).output().is_ok_and(|o| o.status.success()) {
        return Some("needs a working `iptables` (Debian package iptables)".into());
    }
    if !Path::new(FAKETIME_LIB).exists() {
        return Some(format!("needs libfaketime at {FAKETIME_LIB} (Debian package faketime)"));
    }
    None
}

/// Whether to run; panics when CI requires the test and it cannot run.
fn may_run(name: &str) -> bool {
    match missing_prerequisite() {
        None => true,
        Some(why) => {
            assert!(
                std::env::var("SIMPLE_CACHE_NEMESIS_REQUIRED").is_err(),
                "{name}: {why}, and SIMPLE_CACHE_NEMESIS_REQUIRED is set"
            );
            println!("{name}: skipped: {why}");
            false
        }
    }
}

/// The iptables rules a test made, removed when it ends however it ends.
struct Firewall {
    tag: String,
}

impl Firewall {
    fn new(tag: &str) -> Firewall {
        let f = Firewall { tag: tag.to_string() };
        f.clear();
        f
    }

    /// Drops what `uid` sends to `port` on loopback.
    fn drop_from_uid(&self, uid: u32, port: u16) {
        let ok = Command::new("iptables")
            .args(["-A", "OUTPUT", "-o", "lo", "-p", "tcp", "--dport", &port.to_string()])
            .args(["-m", "owner", "--uid-owner", &uid.to_string()])
            .args(["-m", "comment", "--comment", &self.tag, "-j", "DROP"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "iptables -A failed");
    }

    /// Deletes every rule carrying this test's tag.
    fn clear(&self) {
        let Ok(out) = Command::new("iptables").args(["-S", "OUTPUT"]).output() else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.contains(&format!("--comment {}", self.tag)) && line.starts_with("-A ") {
                let args: Vec<&str> = line[3..].split_whitespace().collect();
                let _ = Command::new("iptables").arg("-D").args(args).status();
            }
        }
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        self.clear();
    }
}

/// One server process under its own uid.
struct Proc {
    id: u64,
    uid: u32,
    dir: PathBuf,
    http: String,
    ports: Vec<u16>,
    args: Vec<String>,
    child: Option<Child>,
    stopped: bool,
    /// The wall-clock offset (seconds) of the current run.
    clock_offset_s: i64,
    run: u32,
}

impl Proc {
    fn start(&mut self) {
        self.run += 1;
        let log = std::fs::File::create(self.dir.join(format!("run{}.log", self.run))).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .env_remove("CONFIG_PATH")
            .env_remove("RUST_LOG")
            .env("SIMPLE_CACHE_LOG_LEVEL", "info")
            .uid(self.uid)
            .gid(self.uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.clock_offset_s != 0 {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", format!("{:+}s", self.clock_offset_s))
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_NO_CACHE", "1");
        }
        self.child = Some(cmd.spawn().expect("the server binary starts"));
        self.stopped = false;
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.stopped {
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.stopped = false;
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("run{}.log", self.run))).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What one run is asked to do.
#[derive(Clone, Copy)]
struct Plan {
    seed: u64,
    fault_secs: u64,
    /// Reads at `?consistency=stale` (the bite test), and only partitions as faults.
    stale_reads: bool,
    uid_base: u32,
}

/// What one run saw.
#[derive(Default, Debug)]
struct Outcome {
    ops: usize,
    unknown: usize,
    faults: BTreeMap<&'static str, u64>,
    verdict: Option<Verdict>,
    problems: Vec<String>,
    secs: f64,
    /// Node runs whose log warned that their wall clock was off the cluster time.
    clock_warnings: u64,
}

struct Recorder {
    history: Mutex<Vec<Operation<CacheInput, CacheOutput>>>,
    clock: AtomicU64,
}

impl Recorder {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }
}

async fn run(plan: Plan) -> Outcome {
    let started = std::time::Instant::now();
    let tag = format!("simple-cache-nemesis-{}", plan.uid_base);
    let fw = Firewall::new(&tag);
    let mut rng = Rng::new(plan.seed);
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    let addrs: Vec<(u16, u16, u16, u16)> =
        (0..3).map(|_| (free_port(), free_port(), free_port(), free_port())).collect();
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, (http, raft, _, _))| format!("{}=127.0.0.1:{raft}@127.0.0.1:{http}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Proc> = Vec::new();
    for (i, &(http, raft, metrics, grpc)) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let dir = root.path().join(format!("n{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let uid = plan.uid_base + id as u32;
        std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
        let a = |p: u16| format!("127.0.0.1:{p}");
        let args = [
            "--node-id",
            &id.to_string(),
            "--mode",
            "distributed",
            "--peers",
            &peers,
            "--http-addr",
            &a(http),
            "--raft-http-addr",
            &a(raft),
            "--metrics-addr",
            &a(metrics),
            "--grpc-addr",
            &a(grpc),
            "--redis-addr",
            "",
            "--data-dir",
            &dir.join("data").display().to_string(),
            "--heartbeat-ms",
            "50",
            "--election-ms",
            "300",
            "--request-timeout-ms",
            "1500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        procs.push(Proc {
            id,
            uid,
            dir,
            http: a(http),
            ports: vec![http, raft, grpc],
            args,
            child: None,
            stopped: false,
            clock_offset_s: 0,
            run: 0,
        });
    }
    for p in &mut procs {
        p.start();
    }
    let http: Vec<String> = procs.iter().map(|p| p.http.clone()).collect();
    simple_cache_server::tls::install_default_provider();
    let client = reqwest::Client::builder().timeout(Duration::from_millis(2_000)).build().unwrap();
    let mut out = Outcome::default();
    if let Err(e) = all_ready(&client, &http, Duration::from_secs(30)).await {
        out.problems.push(format!("the cluster did not start: {e}; logs:\n{}", logs(&procs)));
        return out;
    }

    // Keys with a 10-minute TTL: no clock fault may make them vanish.
    for i in 0..3 {
        let url = format!("http://{}/v1/ttl-guard-{i}", http[0]);
        let r = client.put(&url).body(r#"{"value": "guard", "expire": "10m"}"#).send().await;
        if !r.is_ok_and(|r| r.status() == 200) {
            out.problems.push(format!("could not write ttl-guard-{i}"));
        }
    }

    let rec = Arc::new(Recorder { history: Mutex::new(Vec::new()), clock: AtomicU64::new(0) });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (rec, stop, http, client) = (rec.clone(), stop.clone(), http.clone(), client.clone());
        let seed = plan.seed.wrapping_add(c * 7919);
        clients.push(tokio::spawn(async move {
            client_loop(c + 1, seed, &http, &client, &rec, &stop, plan.stale_reads).await
        }));
    }

    // The faults, one at a time, each healed before the next.
    let deadline = Instant::now() + Duration::from_secs(plan.fault_secs);
    let mut bad_clock: Option<usize> = None;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500 + rng.below(1_500))).await;
        let n = rng.below(3) as usize;
        let kind = if plan.stale_reads { 0 } else { rng.below(5) };
        let hold = Duration::from_millis(500 + rng.below(2_500));
        match kind {
            0 | 1 => {
                // Isolate node n from both others, or cut one pair, both ways.
                let others: Vec<usize> = if kind == 0 {
                    (0..3).filter(|&o| o != n).collect()
                } else {
                    vec![(n + 1 + rng.below(2) as usize) % 3]
                };
                for &o in &others {
                    for &port in &procs[o].ports {
                        fw.drop_from_uid(procs[n].uid, port);
                    }
                    for &port in &procs[n].ports {
                        fw.drop_from_uid(procs[o].uid, port);
                    }
                }
                *out.faults.entry(if kind == 0 { "isolate" } else { "cut pair" }).or_default() += 1;
                tokio::time::sleep(hold).await;
                fw.clear();
            }
            2 => {
                procs[n].kill9();
                *out.faults.entry("kill -9").or_default() += 1;
                tokio::time::sleep(hold / 2).await;
                procs[n].start();
            }
            3 => {
                procs[n].signal("-STOP");
                procs[n].stopped = true;
                *out.faults.entry("sigstop").or_default() += 1;
                tokio::time::sleep(hold).await;
                procs[n].signal("-CONT");
                procs[n].stopped = false;
            }
            _ => {
                // A restart with a new wall clock: an hour fast or slow (one node at most), or
                // right again.
                let offset = if rng.below(2) == 0 && bad_clock.is_none_or(|b| b == n) {
                    bad_clock = Some(n);
                    if rng.below(2) == 0 { 3_600 } else { -3_600 }
                } else {
                    if bad_clock == Some(n) {
                        bad_clock = None;
                    }
                    0
                };
                procs[n].kill9();
                procs[n].clock_offset_s = offset;
                procs[n].start();
                *out.faults
                    .entry(if offset == 0 { "clock right" } else { "clock 1h" })
                    .or_default() += 1;
            }
        }
    }
    // Heal everything; the cluster must serve again.
    fw.clear();
    for p in &mut procs {
        if p.stopped {
            p.signal("-CONT");
            p.stopped = false;
        }
        if p.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
            out.problems.push(format!("node {} exited on its own; log:\n{}", p.id, p.logs()));
            p.child = None;
        }
        if p.child.is_none() {
            p.start();
        }
    }
    if let Err(e) = all_ready(&client, &http, Duration::from_secs(30)).await {
        out.problems.push(format!("no recovery after healing: {e}; logs:\n{}", logs(&procs)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    // Final linearizable reads of every key (part of the history), then convergence.
    for k in 0..KEYS {
        let call = rec.tick();
        let key = format!("k{k}");
        match get(&client, &http[k as usize % 3], &key, false).await {
            Some(v) => rec.history.lock().unwrap().push(Operation::completed(
                99,
                CacheInput { key: key.into_bytes(), op: CacheOp::Get },
                call,
                rec.tick(),
                CacheOutput::Value(v),
            )),
            None => out.problems.push(format!("final read of k{k} failed")),
        }
    }
    converged(&client, &http, &mut out).await;
    for i in 0..3 {
        let key = format!("ttl-guard-{i}");
        if get(&client, &http[i % 3], &key, false).await != Some(Some(b"guard".to_vec())) {
            out.problems.push(format!("{key} (TTL 10 minutes) is gone: a wall clock moved TTLs"));
        }
    }

    let ops = std::mem::take(&mut *rec.history.lock().unwrap());
    out.ops = ops.len();
    out.unknown = ops.iter().filter(|o| o.is_unknown()).count();
    let mut history = History::new();
    for op in ops {
        history.push(op).expect("well-formed operation");
    }
    let parts = partition(history, |i: &CacheInput| i.key.clone());
    let verdict = check_partitions(&CacheModel, &parts, Budget { steps_max: Some(20_000_000) });
    out.verdict = Some(verdict.verdict);
    if verdict.verdict == Verdict::NotLinearizable {
        let part = &parts[verdict.partition.unwrap_or(0)];
        let stuck = verdict.stuck_op.map(|i| format!("{:?}", part.ops()[i]));
        out.problems.push(format!("not linearizable: stuck at {stuck:?}"));
    }
    // Evidence that the clock faults were real: nodes an hour off say so in their logs.
    for p in &procs {
        for run in 1..=p.run {
            let log = std::fs::read_to_string(p.dir.join(format!("run{run}.log")));
            let warned = log.unwrap_or_default().contains("off the cluster time");
            out.clock_warnings += u64::from(warned);
        }
    }
    out.secs = started.elapsed().as_secs_f64();
    drop(fw);
    out
}

fn logs(procs: &[Proc]) -> String {
    procs.iter().map(|p| format!("--- node {} ---\n{}", p.id, p.logs())).collect()
}

async fn all_ready(
    client: &reqwest::Client,
    http: &[String],
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    for h in http {
        loop {
            let r = client.get(format!("http://{h}/readyz")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{h} not ready"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// A read: `Some(value or None)` when it completed, `None` when it did not.
async fn get(
    client: &reqwest::Client,
    node: &str,
    key: &str,
    stale: bool,
) -> Option<Option<Vec<u8>>> {
    let q = if stale { "?consistency=stale" } else { "" };
    let r = client.get(format!("http://{node}/v1/{key}{q}")).send().await.ok()?;
    if r.status() != 200 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    if v["found"].as_bool()? {
        Some(Some(v["value"].as_str()?.as_bytes().to_vec()))
    } else {
        Some(None)
    }
}

/// Every node holds the same value for every key, once each has applied a marker written last.
async fn converged(client: &reqwest::Client, http: &[String], out: &mut Outcome) {
    let marker = format!("m{}", std::process::id());
    let r = client
        .put(format!("http://{}/v1/converge-marker", http[0]))
        .body(format!(r#"{{"value": "{marker}"}}"#))
        .send()
        .await;
    if !r.is_ok_and(|r| r.status() == 200) {
        out.problems.push("could not write the convergence marker".into());
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for h in http {
        while get(client, h, "converge-marker", true).await
            != Some(Some(marker.clone().into_bytes()))
        {
            if Instant::now() > deadline {
                out.problems.push(format!("{h} never applied the convergence marker"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for k in 0..KEYS {
        let key = format!("k{k}");
        let mut seen = Vec::new();
        for h in http {
            seen.push(get(client, h, &key, true).await);
        }
        if seen.windows(2).any(|w| w[0] != w[1]) {
            out.problems.push(format!("nodes disagree on {key} after healing: {seen:?}"));
        }
    }
}

/// One client: random operations on random nodes until told to stop.
async fn client_loop(
    id: u64,
    seed: u64,
    http: &[String],
    client: &reqwest::Client,
    rec: &Recorder,
    stop: &AtomicBool,
    stale_reads: bool,
) {
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let node = &http[rng.below(http.len() as u64) as usize];
        let key = format!("k{}", rng.below(KEYS));
        let pick = rng.below(100);
        let call = rec.tick();
        let (op, fate): (CacheOp, Option<Option<CacheOutput>>) = if pick < 45 {
            let v = get(client, node, &key, stale_reads).await;
            (CacheOp::Get, v.map(|v| Some(CacheOutput::Value(v))))
        } else if pick < 85 {
            let value = format!("c{id}-{n}");
            let r = client
                .put(format!("http://{node}/v1/{key}"))
                .body(format!(r#"{{"value": "{value}"}}"#))
                .send()
                .await;
            (CacheOp::Set(value.into_bytes()), write_fate(r, |_| CacheOutput::Ok).await)
        } else {
            let r = client.delete(format!("http://{node}/v1/{key}")).send().await;
            let fate =
                write_fate(r, |v| CacheOutput::Existed(v["existed"].as_bool() == Some(true))).await;
            (CacheOp::Del, fate)
        };
        let input = CacheInput { key: key.into_bytes(), op };
        let op = match fate {
            // Not sent, or a read that failed: no effect, not recorded.
            None => continue,
            Some(None) => Operation::unknown(id, input, call),
            Some(Some(output)) => Operation::completed(id, input, call, rec.tick(), output),
        };
        rec.history.lock().unwrap().push(op);
    }
}

/// A write's fate: `None` if it certainly did not take effect (the connection was refused),
/// `Some(None)` if unknown (a timeout, a 5xx, any answer but success), `Some(Some(output))`.
async fn write_fate(
    r: Result<reqwest::Response, reqwest::Error>,
    output: impl FnOnce(&Value) -> CacheOutput,
) -> Option<Option<CacheOutput>> {
    match r {
        Err(e) if e.is_connect() => None,
        Err(_) => Some(None),
        Ok(r) if r.status() == 200 => match r.json::<Value>().await {
            Ok(v) => Some(Some(output(&v))),
            Err(_) => Some(None),
        },
        Ok(_) => Some(None),
    }
}

fn seed() -> u64 {
    std::env::var("SIMPLE_CACHE_NEMESIS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
        },
    )
}

fn report(name: &str, plan: &Plan, o: &Outcome) {
    println!(
        "{name}: seed {} ({} s of faults): {} ops, {} unknown outcomes, faults {:?}, runs that \
         warned of their clock {}, verdict {:?}, {:.1} s wall",
        plan.seed, plan.fault_secs, o.ops, o.unknown, o.faults, o.clock_warnings, o.verdict, o.secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_keep_histories_linearizable() {
    let name = "faults_keep_histories_linearizable";
    if !may_run(name) {
        return;
    }
    let secs = std::env::var("SIMPLE_CACHE_NEMESIS_SECS").ok().and_then(|s| s.parse().ok());
    let plan =
        Plan { seed: seed(), fault_secs: secs.unwrap_or(60), stale_reads: false, uid_base: 61_000 };
    println!("{name}: seed {} (replay: SIMPLE_CACHE_NEMESIS_SEED={})", plan.seed, plan.seed);
    let o = run(plan).await;
    report(name, &plan, &o);
    assert!(o.ops > 100, "too few operations to judge: {o:?}");
    assert!(o.problems.is_empty(), "{name} seed {}:\n{}", plan.seed, o.problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_reads_under_partitions_are_caught() {
    let name = "stale_reads_under_partitions_are_caught";
    if !may_run(name) {
        return;
    }
    // A few short runs: one of them must show a stale read.
    let first = seed();
    for i in 0..4 {
        let plan = Plan { seed: first + i, fault_secs: 12, stale_reads: true, uid_base: 62_000 };
        let o = run(plan).await;
        report(name, &plan, &o);
        if o.verdict == Some(Verdict::NotLinearizable) {
            return;
        }
    }
    panic!("stale reads under partitions were never caught in 4 runs from seed {first}");
}
