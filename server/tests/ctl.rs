//! `simple-cache-ctl` against real processes: key commands with endpoint failover and exit
//! statuses, cluster status, join, transfer and leave, and a backup restored into a new cluster
//! with every key, revision and TTL deadline as it was.

mod common;

use common::{Cluster, Node, call, eventually, free_port};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CTL: &str = env!("CARGO_BIN_EXE_simple-cache-ctl");

/// Runs the CLI; returns its exit status and stdout (stderr is shown on failure).
fn ctl(endpoints: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(CTL)
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("SIMPLE_CACHE_ADMIN_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.is_empty() {
        eprintln!("simple-cache-ctl {args:?}: {stderr}");
    }
    (out.status.code().unwrap_or(-1), stdout)
}

fn ctl_json(endpoints: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let (code, out) = ctl(endpoints, &all);
    assert_eq!(code, 0, "{args:?}: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// `cluster status -o json`, which exits 3 while a member is unhealthy.
fn status(endpoints: &str) -> Value {
    let (code, out) = ctl(endpoints, &["cluster", "status", "-o", "json"]);
    assert!(code == 0 || code == 3, "cluster status exited {code}: {out}");
    serde_json::from_str(out.trim()).unwrap()
}

fn leader_id(endpoints: &str) -> Option<u64> {
    status(endpoints)["leader"].as_u64()
}

// Keys, TTLs and revisions of every key a node holds, and when they were read.
/// Every key of `n` with its item and TTL, and when its TTL was asked and answered.
type KeyState = (String, Value, Option<u64>, (Instant, Instant));

async fn state(n: &Node) -> Vec<KeyState> {
    let (_, b) = call("GET", &n.url("/v1/search?pattern=*&limit=10000"), None).await;
    let mut out = Vec::new();
    for k in b["keys"].as_array().unwrap() {
        let k = k.as_str().unwrap();
        let (_, item) = call("GET", &n.url(&format!("/v1/keys/{k}")), None).await;
        let asked = Instant::now();
        let (_, ttl) = call("GET", &n.url(&format!("/v1/keys/{k}/ttl")), None).await;
        out.push((k.to_string(), item, ttl["ttl_ms"].as_u64(), (asked, Instant::now())));
    }
    out
}

#[tokio::test]
async fn the_cli_runs_a_cluster_and_restores_its_backup_into_a_new_one() {
    let mut c = Cluster::start(3).await;
    // The first endpoint is dead: every command fails over to the next.
    let dead = format!("127.0.0.1:{}", free_port());
    let all: Vec<String> = c.nodes.iter().map(|n| n.http.clone()).collect();
    let endpoints = format!("{dead},{}", all.join(","));

    // Keys: set, get, a missing key (exit 1), a usage error (exit 2), nothing reachable (3).
    assert_eq!(ctl(&endpoints, &["set", "user:1", "ada", "--ttl", "1h"]).0, 0);
    assert_eq!(ctl(&endpoints, &["get", "user:1"]), (0, "ada\n".to_string()));
    assert_eq!(ctl(&endpoints, &["set", "n", "{\"a\": [1, 2]}", "--json"]).0, 0);
    assert_eq!(ctl_json(&endpoints, &["get", "n"])["value"], json!({"a": [1, 2]}));
    assert_eq!(ctl(&endpoints, &["get", "nope"]).0, 1);
    assert_eq!(ctl(&endpoints, &["del", "nope"]).0, 1);
    assert_eq!(ctl(&endpoints, &["ttl", "nope"]).0, 1);
    assert_eq!(ctl(&endpoints, &["get"]).0, 2);
    assert_eq!(ctl(&endpoints, &["reset"]).0, 2, "reset without --yes");
    assert_eq!(ctl(&dead, &["get", "user:1"]).0, 3);
    // health asks the first endpoint only (a container's own node).
    assert_eq!(ctl(&all[0], &["health"]).0, 0);
    assert_eq!(ctl(&all[1], &["health", "--ready"]).0, 0);
    assert_eq!(ctl(&endpoints, &["health"]).0, 3, "the dead first endpoint");
    let (code, ttl) = ctl(&endpoints, &["ttl", "user:1"]);
    let secs: f64 = ttl.trim().trim_end_matches('s').parse().unwrap();
    assert!(code == 0 && secs > 3500.0 && secs <= 3600.0, "{ttl}");
    for i in 0..60 {
        let ttl = if i % 2 == 0 { r#", "expire": "2h""# } else { "" };
        let body = format!(r#"{{"value": "v{i}"{ttl}}}"#);
        assert_eq!(
            call("PUT", &c.nodes[i % 3].url(&format!("/v1/k{i}")), Some(&body)).await.0,
            200
        );
    }
    let (code, keys) = ctl(&endpoints, &["search", "k1*"]);
    assert_eq!(code, 0);
    assert_eq!(keys.lines().count(), 11, "k1, k10..k19: {keys}");

    // Status: three healthy voters, one leader, every member's indexes.
    let s = ctl_json(&endpoints, &["cluster", "status"]);
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{s}");
    assert!(members.iter().all(|m| m["health"] == json!("healthy") && m["voter"] == json!(true)));
    assert_eq!(members.iter().filter(|m| m["role"] == json!("leader")).count(), 1, "{s}");
    assert!(members.iter().all(|m| m["commit_index"].as_u64().unwrap() > 60), "{s}");

    // Join a fourth node (it waits to be added: its own join target is dead), see it promoted,
    // move leadership, and remove the fourth node again.
    let d4 = c.dir.path().join("n4");
    std::fs::create_dir_all(&d4).unwrap();
    let dead_raft = format!("127.0.0.1:{}", free_port());
    let mut n4 = Node::new(4, &d4, &["--mode", "distributed", "--join", &dead_raft]);
    let (raft4, http4) = (n4.raft.clone(), n4.http.clone());
    eventually("node 4 to be added", Duration::from_secs(20), || {
        let args = ["cluster", "join", "--id", "4", "--addr", &raft4, "--http-addr", &http4];
        let ok = ctl(&endpoints, &args).0 == 0;
        async move { ok.then_some(()) }
    })
    .await;
    eventually("node 4 to be a healthy voter", Duration::from_secs(20), || {
        let s = status(&endpoints);
        let m4 = s["members"].as_array().unwrap().iter().find(|m| m["id"] == json!(4)).cloned();
        async move {
            let m4 = m4?;
            (m4["voter"] == json!(true) && m4["health"] == json!("healthy")).then_some(())
        }
    })
    .await;
    // `cluster member`: 0 and the member for a member, 1 for a stranger.
    let m4 = ctl_json(&endpoints, &["cluster", "member", "--id", "4"]);
    assert_eq!((m4["id"].as_u64(), m4["voter"].as_bool()), (Some(4), Some(true)), "{m4}");
    assert!(m4["match_index"].as_u64().unwrap() > 0, "{m4}");
    assert_eq!(ctl(&endpoints, &["cluster", "member", "--id", "9"]).0, 1);
    let leader = leader_id(&endpoints).unwrap();
    let target = if leader == 2 { 3 } else { 2 };
    assert_eq!(ctl(&endpoints, &["cluster", "transfer", "--id", &target.to_string()]).0, 0);
    eventually("the new leader", Duration::from_secs(20), || {
        let l = leader_id(&endpoints);
        async move { (l == Some(target)).then_some(()) }
    })
    .await;
    assert_eq!(ctl(&endpoints, &["cluster", "leave", "--id", "4"]).0, 0);
    let status = n4.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(status.code(), Some(3), "a removed node exits 3: {}", n4.logs());

    // Back up through the CLI, then lose the whole cluster.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cache.backup");
    let file_s = file.to_str().unwrap();
    let before = state(&c.nodes[0]).await;
    assert_eq!(before.len(), 62);
    let (code, out) = ctl(&endpoints, &["snapshot", "save", file_s]);
    assert_eq!(code, 0, "{out}");
    // FILE a directory: refused before anything is downloaded, nothing left beside it (a
    // partial download used to stay behind when the final rename failed).
    let (code, _) = ctl(&endpoints, &["snapshot", "save", dir.path().to_str().unwrap()]);
    assert_eq!(code, 2);
    let parent = dir.path().parent().unwrap();
    let partial =
        parent.join(format!(".{}.partial", dir.path().file_name().unwrap().to_str().unwrap()));
    assert!(!partial.exists(), "{partial:?} was left behind");
    let info = ctl_json(&endpoints, &["snapshot", "status", file_s]);
    assert_eq!(info["keys"], json!(62), "{info}");
    let old_cluster_id = std::fs::read_to_string(c.nodes[0].dir.join("data/cluster_id")).unwrap();
    for n in &mut c.nodes {
        n.kill();
    }

    // A damaged copy is refused and writes nothing.
    let bad = dir.path().join("bad.backup");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&bad, bytes).unwrap();
    let nowhere = dir.path().join("nowhere");
    let args = ["snapshot", "restore", bad.to_str().unwrap(), "--data-dir"];
    let (code, _) = ctl(
        &dead,
        &[&args[..], &[nowhere.to_str().unwrap(), "--node-id", "1"], &["--peers", "1=127.0.0.1:1"]]
            .concat(),
    );
    assert_eq!(code, 4);
    assert!(!nowhere.exists());

    // Restore into three new members on new ports.
    let (addrs, peers) = common::member_addrs(3);
    let mut nodes = Vec::new();
    for (i, (http, raft, metrics)) in addrs.into_iter().enumerate() {
        let id = (i + 1).to_string();
        let d = dir.path().join(format!("new{id}"));
        let data = d.join("data");
        let data_s = data.to_str().unwrap();
        let restore = ["snapshot", "restore", file_s, "--data-dir", data_s, "--node-id", &id];
        let (code, out) = ctl(&dead, &[&restore[..], &["--peers", &peers]].concat());
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("62 keys"), "{out}");
        // Not over an existing member.
        assert_eq!(ctl(&dead, &[&restore[..], &["--peers", &peers]].concat()).0, 4);
        let extra = ["--mode", "distributed", "--peers", &peers];
        nodes.push(Node::with_addrs(i as u64 + 1, &d, http, raft, metrics, &extra));
    }
    for n in &mut nodes {
        n.wait_ready().await;
    }
    let new_cluster_id = std::fs::read_to_string(nodes[0].dir.join("data/cluster_id")).unwrap();
    assert_ne!(new_cluster_id, old_cluster_id, "a restored cluster is a new cluster");

    // Every key with its value and revisions; every deadline the same: a TTL read later is
    // shorter by at most the time from asking the first to the answer of the second (per key:
    // a test that measured from the start of each scan failed when a loaded machine took
    // seconds to read the 62 keys).
    let after = state(&nodes[2]).await;
    assert_eq!(after.len(), before.len());
    for ((k, item, ttl, (asked, _)), (k2, item2, ttl2, (_, answered))) in before.iter().zip(&after)
    {
        assert_eq!((k, item), (k2, item2));
        let gap_ms = answered.duration_since(*asked).as_millis() as u64;
        match (ttl, ttl2) {
            (None, None) => {}
            (Some(t), Some(t2)) => {
                assert!(*t2 <= *t && *t2 + gap_ms + 1000 >= *t, "{k}: ttl {t} then {t2} ms")
            }
            _ => panic!("{k}: ttl {ttl:?} then {ttl2:?}"),
        }
    }
    let new_endpoints = nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>().join(",");
    assert_eq!(ctl(&new_endpoints, &["set", "after", "restore"]).0, 0);
    assert_eq!(ctl(&new_endpoints, &["get", "user:1"]), (0, "ada\n".to_string()));
    let s = ctl_json(&new_endpoints, &["cluster", "status"]);
    assert_eq!(s["members"].as_array().unwrap().len(), 3, "{s}");
}

// A backup needs the admin token when one is set, and its answer names its index.
#[tokio::test]
async fn backups_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &["--admin-token", "s3cret"]);
    n.wait_ready().await;
    assert_eq!(call("PUT", &n.url("/v1/k"), Some(r#"{"value": 1}"#)).await.0, 200);
    let (s, b) = call("GET", &n.url("/admin/snapshot"), None).await;
    assert_eq!(s, 401, "{b}");
    let file = dir.path().join("b");
    let file = file.to_str().unwrap();
    assert_eq!(ctl(&n.http, &["snapshot", "save", file]).0, 4);
    assert!(!Path::new(file).exists(), "nothing is left behind");
    let (code, out) = ctl(&n.http, &["--admin-token", "s3cret", "snapshot", "save", file]);
    assert_eq!(code, 0, "{out}");
    let r =
        common::client().get(n.url("/admin/snapshot")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let index: u64 =
        r.headers()["x-simple-cache-snapshot-index"].to_str().unwrap().parse().unwrap();
    let len: usize = r.headers()["content-length"].to_str().unwrap().parse().unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), len);
    assert_eq!(&body[..8], b"SCBACKUP");
    assert!(index >= 2, "at least the write acknowledged before it: {index}");
}

// One backup at a time per node: while a client that reads nothing holds a node's backup, a
// second gets 429 and the CLI takes it from the next endpoint; once that client goes away, the
// node's slot is free again.
#[tokio::test]
async fn a_busy_backup_slot_fails_over_and_is_freed() {
    use std::io::Write;
    let c = Cluster::start(2).await;
    // 16 MiB of values: more than the chunk queue and the socket buffers hold, so the encoder
    // waits for the reader that never reads.
    let client = redis::Client::open(format!("redis://{}/", c.nodes[0].redis)).unwrap();
    // redis's default 500 ms answer timeout failed a 400 KiB MSET on a loaded CI machine.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(15)));
    let mut con = client.get_multiplexed_async_connection_with_config(&config).await.unwrap();
    let value = "v".repeat(4096);
    for batch in 0..40 {
        let mut mset = redis::cmd("MSET");
        for i in 0..100 {
            mset.arg(format!("k{batch}-{i}")).arg(&value);
        }
        let () = mset.query_async(&mut con).await.unwrap();
    }
    let (a, b) = (c.nodes[0].http.clone(), c.nodes[1].http.clone());
    let mut holder = std::net::TcpStream::connect(&a).unwrap();
    holder.write_all(b"GET /admin/snapshot HTTP/1.1\r\nhost: a\r\n\r\n").unwrap();
    // Its answer has begun: it holds the slot (and reads nothing more).
    let mut status = [0u8; 12];
    std::io::Read::read_exact(&mut holder, &mut status).unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let busy = format!("http://{a}/admin/snapshot");
    let r = common::client().get(&busy).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b");
    let (code, out) = ctl(&format!("{a},{b}"), &["snapshot", "save", file.to_str().unwrap()]);
    assert_eq!(code, 0, "the second endpoint serves it: {out}");
    assert!(out.contains("saved") && out.contains("crc32c"), "{out}");
    let info = ctl_json(&b, &["snapshot", "status", file.to_str().unwrap()]);
    assert_eq!(info["keys"], json!(4000), "{info}");
    drop(holder);
    eventually("the slot to be freed", Duration::from_secs(20), || {
        let busy = busy.clone();
        async move {
            let r = common::client().get(&busy).send().await.ok()?;
            let ok = r.status() == 200 && r.bytes().await.ok()?.starts_with(b"SCBACKUP");
            ok.then_some(())
        }
    })
    .await;
}
