//! Integration tests against a 3-node cluster of real `simple-cache` processes on loopback.

mod common;

use common::{Cluster, Node, call, client, eventually};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

// A write through a follower is forwarded to the leader, and a linearizable read on every node
// then sees it; stale reads catch up too.
#[tokio::test]
async fn write_through_follower_then_read_from_every_node() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let f = (l + 1) % 3;
    assert_eq!(
        call("PUT", &c.nodes[f].url("/v1/k"), Some(r#"{"value": {"a": 1}}"#)).await,
        (200, json!({"success": true}))
    );
    for n in &c.nodes {
        assert_eq!(
            call("GET", &n.url("/v1/k"), None).await,
            (200, json!({"found": true, "value": {"a": 1}})),
            "node {}",
            n.id
        );
    }
    for n in &c.nodes {
        eventually("a stale read to catch up", Duration::from_secs(10), || async {
            (call("GET", &n.url("/v1/k?consistency=stale"), None).await.1["found"] == json!(true))
                .then_some(())
        })
        .await;
    }
    // Deletes, expiry and reset through a follower report the leader's answer.
    assert_eq!(
        call("DELETE", &c.nodes[f].url("/v1/k"), None).await,
        (200, json!({"success": true, "existed": true}))
    );
    assert_eq!(
        call("POST", &c.nodes[f].url("/v1/k/expire"), None).await,
        (200, json!({"success": true, "existed": false}))
    );
    assert_eq!(call("PUT", &c.nodes[f].url("/v1/x"), Some(r#"{"value": 1}"#)).await.0, 200);
    assert_eq!(
        call("DELETE", &c.nodes[f].url("/v1"), None).await,
        (200, json!({"success": true, "keys_cleared": 1}))
    );
    // Bad input on a follower is refused locally, with the same error.
    let (s, b) =
        call("PUT", &c.nodes[f].url("/v1/k"), Some(r#"{"value": 1, "expire": "soon"}"#)).await;
    assert_eq!((s, b["code"].as_str()), (400, Some("bad_duration")));
    // /cluster/peers (answered by the leader) lists three voters, one leader, with progress.
    let (s, b) = call("GET", &c.nodes[f].url("/cluster/peers"), None).await;
    assert_eq!(s, 200, "{b}");
    let members = b["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{b}");
    assert_eq!(members.iter().filter(|m| m["leader"] == json!(true)).count(), 1, "{b}");
    assert!(
        members.iter().all(|m| m["voter"] == json!(true) && m["match_index"].as_u64().unwrap() > 0),
        "{b}"
    );
}

// SIGKILL the leader while clients write through every node: a new leader is elected, no
// acknowledged write is lost, and the killed node restarts from its WAL and catches up.
#[tokio::test]
async fn sigkill_leader_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let urls: Vec<String> = c.nodes.iter().map(|n| n.url("")).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let urls = urls.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = client();
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    let url = &urls[(w + i) % urls.len()];
                    if let Ok(r) = client
                        .put(format!("{url}/v1/{key}"))
                        .body(format!(r#"{{"value": {i}}}"#))
                        .send()
                        .await
                        && r.status() == 200
                    {
                        acked.push(key);
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    let count = |url: String| async move {
        let (_, b) =
            call("GET", &format!("{url}/v1/search?pattern=*&consistency=stale&limit=10000"), None)
                .await;
        b["keys"].as_array().map_or(0, |k| k.len())
    };
    let survivor = urls[(l + 1) % 3].clone();
    eventually("writes before the crash", Duration::from_secs(20), || async {
        (count(survivor.clone()).await >= 100).then_some(())
    })
    .await;
    c.nodes[l].kill();
    let old_leader_id = c.nodes[l].id;
    let before = count(survivor.clone()).await;
    let nl = c.leader().await;
    assert_ne!(c.nodes[nl].id, old_leader_id, "a new leader was elected");
    eventually("writes after the crash", Duration::from_secs(20), || async {
        (count(survivor.clone()).await >= before + 100).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    let check = |url: String, stale: bool| {
        let acked = acked.clone();
        async move {
            let q = if stale { "&consistency=stale" } else { "" };
            let (_, b) =
                call("GET", &format!("{url}/v1/search?pattern=*&limit=10000{q}"), None).await;
            let present: HashSet<String> =
                b["keys"].as_array()?.iter().map(|k| k.as_str().unwrap().to_string()).collect();
            let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
            lost.is_empty().then_some(()).ok_or(lost.len()).ok()
        }
    };
    let (_, b) = call("GET", &format!("{survivor}/v1/search?pattern=*&limit=10000"), None).await;
    let present: HashSet<String> =
        b["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // The killed node restarts from its WAL and catches up.
    c.nodes[l].start();
    c.nodes[l].wait_ready().await;
    let restarted = c.nodes[l].url("");
    eventually("the restarted node to catch up", Duration::from_secs(20), || {
        check(restarted.clone(), true)
    })
    .await;
}

// A fourth node joins through the endpoints (learner, then promoted), catches up by snapshot
// (the log was compacted), serves reads, and is removed again; duplicate joins and unknown
// leaves are refused.
#[tokio::test]
async fn join_and_remove_a_fourth_node() {
    let mut c = Cluster::start_with(3, &["--snapshot-threshold", "20"]).await;
    assert_eq!(
        call("PUT", &c.nodes[0].url("/v1/before"), Some(r#"{"value": "old"}"#)).await.0,
        200
    );
    for i in 0..60 {
        let (s, _) =
            call("PUT", &c.nodes[i % 3].url(&format!("/v1/k{i}")), Some(r#"{"value": 0}"#)).await;
        assert_eq!(s, 200);
    }
    let d = c.dir.path().join("n4");
    std::fs::create_dir_all(&d).unwrap();
    let join = c.nodes[1].raft.clone();
    let mut n4 = Node::new(4, &d, &["--mode", "distributed", "--join", &join]);
    n4.wait_ready().await;
    let peers_url = c.nodes[0].url("/cluster/peers");
    eventually("node 4 to be promoted to voter", Duration::from_secs(20), || async {
        let (_, b) = call("GET", &peers_url, None).await;
        b["members"]
            .as_array()?
            .iter()
            .any(|m| m["id"] == json!(4) && m["voter"] == json!(true))
            .then_some(())
    })
    .await;
    assert_eq!(
        call("GET", &n4.url("/v1/before"), None).await,
        (200, json!({"found": true, "value": "old"}))
    );
    let metrics = client().get(format!("http://{}/metrics", n4.metrics)).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("raft_snapshot_installs_total ") && !l.ends_with(" 0")),
        "node 4 caught up by snapshot:\n{metrics}"
    );
    let (_, b) = call("GET", &n4.url("/v1/search?pattern=k*&consistency=stale"), None).await;
    assert_eq!(b["keys"].as_array().unwrap().len(), 60, "{b}");
    assert_eq!(
        call("PUT", &n4.url("/v1/after"), Some(r#"{"value": "new"}"#)).await.0,
        200,
        "{}",
        n4.logs()
    );
    assert_eq!(call("GET", &c.nodes[2].url("/v1/after"), None).await.1["value"], json!("new"));

    // Joining an existing voter again is a conflict (it may have lost its data: it must be
    // removed and join as a new learner); removing an unknown node is not found.
    let body = json!({"id": 2, "addr": c.nodes[1].raft}).to_string();
    let (s, b) = call("POST", &c.nodes[0].url("/cluster/join"), Some(&body)).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("already_voter")), "{b}");
    let (s, b) = call("POST", &c.nodes[0].url("/cluster/leave"), Some(r#"{"id": 9}"#)).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_member")), "{b}");

    let (s, b) = call("POST", &c.nodes[2].url("/cluster/leave"), Some(r#"{"id": 4}"#)).await;
    assert_eq!(s, 200, "{b}");
    let (_, b) = call("GET", &peers_url, None).await;
    let ids: Vec<u64> =
        b["members"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 2, 3], "{b}");
    assert_eq!(call("PUT", &c.nodes[0].url("/v1/third"), Some(r#"{"value": 3}"#)).await.0, 200);
    let _ = c.leader().await;
}

// The transfer endpoint moves leadership to the named voter.
#[tokio::test]
async fn transfer_leader_endpoint() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let target = c.nodes[(l + 2) % 3].id;
    let body = json!({ "id": target }).to_string();
    // Sent to a follower, it is forwarded to the leader.
    let (s, b) =
        call("POST", &c.nodes[(l + 1) % 3].url("/cluster/transfer-leader"), Some(&body)).await;
    assert_eq!((s, &b), (200, &json!({"success": true, "leader": target})));
    let nl = c.leader().await;
    assert_eq!(c.nodes[nl].id, target);
    assert_eq!(call("PUT", &c.nodes[l].url("/v1/k"), Some(r#"{"value": 1}"#)).await.0, 200);
}

// SIGTERM on the leader hands leadership over, exits 0, and the cluster keeps serving.
#[tokio::test]
async fn graceful_shutdown_of_leader_hands_over() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    assert_eq!(call("PUT", &c.nodes[l].url("/v1/k"), Some(r#"{"value": 1}"#)).await.0, 200);
    let status = c.nodes[l].terminate().await;
    assert!(status.success(), "{status:?}\n{}", c.nodes[l].logs());
    assert!(c.nodes[l].logs().contains("leadership handed over"), "{}", c.nodes[l].logs());
    let nl = c.leader().await;
    assert_ne!(nl, l);
    assert_eq!(call("GET", &c.nodes[nl].url("/v1/k"), None).await.1["value"], json!(1));
    assert_eq!(call("PUT", &c.nodes[nl].url("/v1/k2"), Some(r#"{"value": 2}"#)).await.0, 200);
}

// With a majority down, a write fails with 503 and a reason after a bounded wait; never a hang.
#[tokio::test]
async fn no_quorum_gives_503_with_a_reason() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let survivor = (l + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            c.nodes[i].kill();
        }
    }
    let started = std::time::Instant::now();
    let r =
        client().put(c.nodes[survivor].url("/v1/k")).body(r#"{"value": 1}"#).send().await.unwrap();
    let status = r.status().as_u16();
    let b: Value = r.json().await.unwrap();
    assert_eq!(status, 503, "{b}");
    assert!(b["error"].as_str().is_some_and(|e| !e.is_empty()) && b["code"].is_string(), "{b}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
}
