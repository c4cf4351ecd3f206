//! `/metrics` on real processes: both exposition formats, checked by the tools that read them
//! (promtool for the classic text, Python's prometheus_client parsers for both), the seed's
//! families with their labels and values, the process and build families, `GET /version` and
//! `--version`, and `raft_leader_changes_total` across leadership transfers.
//!
//! promtool (Debian's `prometheus`) and python3 with `prometheus_client`
//! (`python3-prometheus-client`) are optional: without them the checks that need them print a
//! note and are skipped, unless `SIMPLE_CACHE_METRICS_TOOLS_REQUIRED=1` (which `.ci/run` sets
//! after installing them) makes a missing tool a failure.

mod common;

use common::{Cluster, Node, call, eventually};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

/// What Prometheus sends when it prefers OpenMetrics (its default scrape protocols).
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Scrape {
    content_type: String,
    vary: String,
    text: String,
}

async fn scrape(n: &Node, accept: Option<&str>) -> Scrape {
    let mut req = common::client().get(format!("http://{}/metrics", n.metrics));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default()
    };
    let (content_type, vary) = (header("content-type"), header("vary"));
    Scrape { content_type, vary, text: resp.text().await.unwrap() }
}

/// The value of the sample written exactly `series` (name and labels), if there is one.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{series} has a bad value {v:?}")))
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

/// The `# TYPE` lines: (family name, type).
fn types(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_string(), kind.to_string())
        })
        .collect()
}

fn tools_required() -> bool {
    std::env::var("SIMPLE_CACHE_METRICS_TOOLS_REQUIRED").as_deref() == Ok("1")
}

/// Says that `tool` is missing: a failure when the tools are required, else a note.
fn missing(tool: &str) {
    assert!(
        !tools_required(),
        "{tool} is missing and SIMPLE_CACHE_METRICS_TOOLS_REQUIRED=1 (install: apt-get install \
         prometheus python3-prometheus-client)"
    );
    eprintln!("note: {tool} is not installed; skipping its check of /metrics");
}

/// Runs `program args` with `input` on stdin; None if it cannot be started (not installed).
fn run_with_input(program: &str, args: &[&str], input: &str) -> Option<std::process::Output> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    Some(child.wait_with_output().unwrap())
}

/// `promtool check metrics` on the classic text: it must parse and raise no lint problem.
fn check_with_promtool(classic: &str) {
    let Some(out) = run_with_input("promtool", &["check", "metrics"], classic) else {
        return missing("promtool");
    };
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool: {:?}\n{said}", out.status);
}

/// Parses both texts with Python's prometheus_client (the classic parser and the strict
/// OpenMetrics one) and prints what each found.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as classic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
texts = json.load(sys.stdin)
found = {}
for fmt, parse in (("classic", classic), ("openmetrics", openmetrics)):
    found[fmt] = sorted([f.name, f.type, len(f.samples)] for f in parse(texts[fmt]))
print(json.dumps(found))
"#;

/// A python3 that has prometheus_client: the system's, or the first on PATH.
fn python() -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import prometheus_client"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Both texts parse with Python's prometheus_client, into the same families and samples.
fn check_with_python(classic: &str, openmetrics: &str) {
    let Some(py) = python() else {
        return missing("python3 with prometheus_client");
    };
    let input = json!({"classic": classic, "openmetrics": openmetrics}).to_string();
    let out = run_with_input(py, &["-c", PARSE], &input).unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_slice(&out.stdout).unwrap();
    let samples = |fmt: &str| -> u64 {
        found[fmt].as_array().unwrap().iter().map(|f| f[2].as_u64().unwrap()).sum()
    };
    let families = |fmt: &str| found[fmt].as_array().unwrap().len();
    assert_eq!(families("classic"), families("openmetrics"), "{found}");
    assert_eq!(samples("classic"), samples("openmetrics"), "{found}");
}

/// The classic name and type an OpenMetrics family is served under in the classic format.
fn classic_name(name: &str, kind: &str) -> (String, String) {
    match kind {
        "counter" => (format!("{name}_total"), "counter".into()),
        "info" => (format!("{name}_info"), "gauge".into()),
        "unknown" => (name.into(), "untyped".into()),
        _ => (name.into(), kind.into()),
    }
}

// /metrics answers in the classic text format unless the scraper asks for OpenMetrics, both
// formats pass the tools that read them and hold the same families, and the seed's families
// count what the requests did, with the seed's labels.
#[tokio::test]
async fn both_formats_hold_the_seed_families_and_pass_the_checkers() {
    let started = std::time::SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &[]);
    n.wait_ready().await;
    assert_eq!(call("PUT", &n.url("/v1/k"), Some(r#"{"value": 1, "expire": "1h"}"#)).await.0, 200);
    assert_eq!(call("GET", &n.url("/v1/k"), None).await.0, 200);
    assert_eq!(call("GET", &n.url("/v1/missing"), None).await, (200, json!({"found": false})));
    assert_eq!(call("PUT", &n.url("/v1/k2"), Some(r#"{"value": "#)).await.0, 400);
    assert_eq!(call("GET", &n.url("/v1/k/ttl"), None).await.0, 200);
    // Gauges are published after the node loop's turn: wait for the key to show.
    eventually("the key count to show", Duration::from_secs(10), || async {
        (value(&scrape(&n, None).await.text, "simple_cache_keys") == Some(1.0)).then_some(())
    })
    .await;

    let classic = scrape(&n, None).await;
    assert_eq!(classic.content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(classic.vary, "Accept");
    let om = scrape(&n, Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(om.content_type, "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(om.text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(!classic.text.contains("# EOF"), "the classic format has no # EOF");
    let plain = scrape(&n, Some("text/plain;version=0.0.4")).await;
    assert_eq!(plain.content_type, classic.content_type, "text/plain asks for the classic format");

    check_with_promtool(&classic.text);
    check_with_python(&classic.text, &om.text);

    // The same families in both formats, each under its format's name.
    let from_om: BTreeSet<(String, String)> =
        types(&om.text).iter().map(|(n, k)| classic_name(n, k)).collect();
    assert_eq!(types(&classic.text), from_om);
    for (name, kind) in [
        ("simple_cache_requests_total", "counter"),
        ("simple_cache_request_duration_seconds", "histogram"),
        ("simple_cache_api_requests_total", "counter"),
        ("simple_cache_api_request_duration_seconds", "histogram"),
        ("simple_cache_keys_total", "untyped"),
        ("simple_cache_keys", "gauge"),
        ("simple_cache_expiration_heap_size", "gauge"),
        ("simple_cache_peers_total", "untyped"),
        ("simple_cache_peers", "gauge"),
        ("cache_operation_duration_seconds", "histogram"),
        ("cache_operation_total", "counter"),
        ("cache_size_bytes", "gauge"),
        ("process_memory_bytes", "gauge"),
        ("raft_role", "gauge"),
        ("raft_commit_index", "gauge"),
        ("raft_last_applied", "gauge"),
        ("raft_leader_changes_total", "counter"),
        ("raft_append_entries_latency_seconds", "histogram"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
        ("process_cpu_seconds_total", "counter"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("simple_cache_build_info", "gauge"),
    ] {
        assert!(
            types(&classic.text).contains(&(name.to_string(), kind.to_string())),
            "no {kind} {name} in\n{}",
            classic.text
        );
    }

    let t = &classic.text;
    // Requests: the seed's success/failure, and the full outcome per API.
    assert_eq!(must(t, r#"simple_cache_requests_total{op="set",status="success"}"#), 1.0);
    assert_eq!(must(t, r#"simple_cache_requests_total{op="set",status="failure"}"#), 1.0);
    assert_eq!(must(t, r#"simple_cache_requests_total{op="get",status="success"}"#), 2.0);
    assert_eq!(must(t, r#"simple_cache_api_requests_total{api="http",op="set",code="400"}"#), 1.0);
    assert_eq!(must(t, r#"simple_cache_request_duration_seconds_count{op="get"}"#), 2.0);
    assert!(
        value(t, r#"simple_cache_request_duration_seconds_bucket{op="get",le="0.16384"}"#)
            .is_some()
    );
    // The state machine's work: one write applied, two gets and a ttl executed; the bad request
    // never reached it.
    assert_eq!(must(t, r#"cache_operation_total{operation="set",status="success"}"#), 1.0);
    assert_eq!(must(t, r#"cache_operation_total{operation="get",status="success"}"#), 2.0);
    assert_eq!(must(t, r#"cache_operation_total{operation="ttl",status="success"}"#), 1.0);
    assert_eq!(must(t, r#"cache_operation_duration_seconds_count{operation="get"}"#), 2.0);
    assert_eq!(must(t, r#"cache_operation_total{operation="undecodable",status="failure"}"#), 0.0);
    // The cache.
    for series in
        ["simple_cache_keys", "simple_cache_keys_total", "simple_cache_expiration_heap_size"]
    {
        assert_eq!(must(t, series), 1.0, "{series}");
    }
    assert_eq!(must(t, r#"cache_size_bytes{type="item_count"}"#), 1.0);
    assert!(must(t, r#"cache_size_bytes{type="memory"}"#) > 0.0);
    // Raft: a single node that elected itself once.
    assert_eq!(must(t, "simple_cache_peers"), 1.0);
    assert_eq!(must(t, "simple_cache_peers_total"), 1.0);
    assert_eq!(must(t, r#"raft_role{node_id="1",role="leader"}"#), 1.0);
    assert_eq!(must(t, r#"raft_role{node_id="1",role="follower"}"#), 0.0);
    assert_eq!(must(t, r#"raft_role{node_id="1",role="candidate"}"#), 0.0);
    assert_eq!(must(t, "raft_leader_changes_total"), 1.0);
    assert!(must(t, "raft_commit_index") >= 2.0, "the leader's first entry and the write");
    assert_eq!(must(t, "raft_last_applied"), must(t, "raft_commit_index"));
    // The process.
    let now = std::time::SystemTime::now();
    let epoch = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap();
    let start = must(t, "process_start_time_seconds");
    assert!(
        start >= epoch(started).as_secs_f64() - 2.0 && start <= epoch(now).as_secs_f64() + 1.0,
        "the server started during this test, not at {start}"
    );
    assert!(must(t, "process_resident_memory_bytes") > 1e6);
    assert!(must(t, "process_virtual_memory_bytes") >= must(t, "process_resident_memory_bytes"));
    assert!(must(t, r#"process_memory_bytes{state="resident"}"#) > 1e6);
    assert!(must(t, "process_open_fds") >= 5.0, "listeners and the WAL");
    assert!(must(t, "process_max_fds") >= must(t, "process_open_fds"));
    // Ticks, not seconds, or another field of /proc/self/stat, would be far off.
    let cpu = must(t, "process_cpu_seconds_total");
    let ran = epoch(now).as_secs_f64() - start;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(cpu >= 0.0 && cpu <= ran * cores + 1.0, "{cpu} s of CPU in {ran} s");
    // The build, as GET /version says.
    let (s, v) = call("GET", &n.url("/version"), None).await;
    assert_eq!(s, 200);
    let build = format!(
        r#"simple_cache_build_info{{version="{}",commit="{}"}}"#,
        v["version"].as_str().unwrap(),
        v["commit"].as_str().unwrap()
    );
    assert_eq!(must(t, &build), 1.0);
}

// GET /version and --version tell the same version, commit and format versions, and the
// commit is the checkout's (build.rs) when the tests run in a git checkout.
#[tokio::test]
async fn version_endpoint_and_flag_agree() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &[]);
    n.wait_ready().await;
    let (s, v) = call("GET", &n.url("/version"), None).await;
    assert_eq!(s, 200);
    let keys: BTreeSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let want = ["version", "commit", "wire_format", "peer_protocol", "wal_format"];
    assert_eq!(keys, BTreeSet::from(want), "{v}");
    assert_eq!(v["version"], json!(env!("CARGO_PKG_VERSION")));
    assert!(v["wire_format"].as_u64().is_some_and(|f| f >= 1), "{v}");
    assert!(v["wal_format"].as_u64().is_some_and(|f| f >= 1), "{v}");

    let out = Command::new(common::BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "simple-cache {}\ncommit: {}\nwire_format: {}\npeer_protocol: {}\nwal_format: {}\n",
        v["version"].as_str().unwrap(),
        v["commit"].as_str().unwrap(),
        v["wire_format"],
        v["peer_protocol"],
        v["wal_format"]
    );
    assert_eq!(printed, expected);

    let head = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(o) if o.status.success() && std::env::var_os("SIMPLE_CACHE_COMMIT").is_none() => {
            let head = String::from_utf8(o.stdout).unwrap().trim().to_string();
            assert_eq!(v["commit"], json!(head), "the commit the binary was built from");
        }
        _ => eprintln!("note: not a git checkout; the commit is {}", v["commit"]),
    }
}

/// `raft_leader_changes_total` and `raft_term` on each node.
async fn changes_and_terms(c: &Cluster) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for n in &c.nodes {
        let t = scrape(n, None).await.text;
        out.push((must(&t, "raft_leader_changes_total"), must(&t, "raft_term")));
    }
    out
}

/// Moves leadership to node `to` through node `via` and waits until every node knows it.
async fn transfer(c: &Cluster, via: usize, to: usize) {
    let target = c.nodes[to].id;
    let body = json!({ "id": target }).to_string();
    let (s, b) = call("POST", &c.nodes[via].url("/cluster/transfer-leader"), Some(&body)).await;
    assert_eq!((s, &b), (200, &json!({"success": true, "leader": target})));
    for n in &c.nodes {
        // The status /readyz reads is published after the metrics of the same turn.
        eventually("every node to know the new leader", Duration::from_secs(10), || async {
            (n.readyz().await["leader"] == json!(target)).then_some(())
        })
        .await;
    }
}

// Each leadership transfer moves raft_leader_changes_total by exactly 1 on every node (issue
// 13: it counted the passes through "no leader" too, 2 per change). The election timeout is
// long so that no other election happens meanwhile; the term check says so if one did.
#[tokio::test]
async fn issue_13_each_leader_change_counts_once() {
    let mut c = Cluster::start_with(3, &["--election-ms", "1500"]).await;
    let l = c.leader().await;
    let t = (l + 1) % 3;
    let before = changes_and_terms(&c).await;

    transfer(&c, (l + 2) % 3, t).await;
    let after_one = changes_and_terms(&c).await;
    transfer(&c, l, l).await;
    let after_two = changes_and_terms(&c).await;

    for i in 0..3 {
        let (terms_one, terms_two) = (after_one[i].1 - before[i].1, after_two[i].1 - before[i].1);
        assert_eq!((terms_one, terms_two), (1.0, 2.0), "node {i}: one election per transfer only");
        assert_eq!(
            after_one[i].0 - before[i].0,
            1.0,
            "node {i}: one change for the first transfer"
        );
        assert_eq!(after_two[i].0 - before[i].0, 2.0, "node {i}: one more for the second");
    }
    // raft_role is one-hot: the leader's series on the leader, the follower's on the others.
    for (i, n) in c.nodes.iter().enumerate() {
        let text = scrape(n, None).await.text;
        for role in ["follower", "candidate", "leader"] {
            let want = f64::from(u8::from(role == if i == l { "leader" } else { "follower" }));
            let series = format!(r#"raft_role{{node_id="{}",role="{role}"}}"#, n.id);
            assert_eq!(must(&text, &series), want, "node {i} {series}");
        }
    }
    // Followers measure the commands they apply, as the leader does.
    assert_eq!(call("PUT", &c.nodes[l].url("/v1/k"), Some(r#"{"value": 1}"#)).await.0, 200);
    for n in &c.nodes {
        eventually("every node to apply the write", Duration::from_secs(10), || async {
            let text = scrape(n, None).await.text;
            let set = r#"cache_operation_total{operation="set",status="success"}"#;
            (value(&text, set) == Some(1.0)).then_some(())
        })
        .await;
    }
    // The peer transport's figures: the leader timed append rounds (its answers arrive as
    // frames on the followers' connections), and bytes flowed both ways with every follower.
    let leader = scrape(&c.nodes[l], None).await.text;
    assert!(must(&leader, "raft_append_entries_latency_seconds_count") >= 1.0, "{leader}");
    for (i, n) in c.nodes.iter().enumerate().filter(|(i, _)| *i != l) {
        let peer = n.id;
        for family in ["raft_peer_sent_bytes_total", "raft_peer_received_bytes_total"] {
            let series = format!(r#"{family}{{peer="{peer}"}}"#);
            assert!(must(&leader, &series) > 0.0, "leader {series}");
        }
        let text = scrape(n, None).await.text;
        let from_leader = format!(r#"raft_peer_received_bytes_total{{peer="{}"}}"#, c.nodes[l].id);
        assert!(must(&text, &from_leader) > 0.0, "node {i} {from_leader}");
    }
}
