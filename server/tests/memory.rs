//! The memory bound from the outside: limits set in the config reach the replicated state
//! through the leader, `noeviction` refuses writes with a precise error over HTTP and gRPC,
//! eviction policies evict the same keys on every replica, and the metrics and `/readyz` show
//! it.

mod common;

use common::{Cluster, Node, call, eventually};
use serde_json::json;
use std::time::Duration;

async fn single(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), extra);
    n.wait_ready().await;
    (dir, n)
}

/// Waits until the node's replicated limits are the configured ones (the leader proposed them).
async fn limits_in_force(n: &Node, max_keys: u64, policy: &str) {
    eventually("the configured limits in force", Duration::from_secs(10), || async move {
        let r = n.readyz().await;
        (r["memory"]["max_keys"] == json!(max_keys) && r["memory"]["eviction_policy"] == policy)
            .then_some(())
    })
    .await;
}

async fn put(n: &Node, key: &str) -> (u16, serde_json::Value) {
    call("PUT", &n.url(&format!("/v1/{key}")), Some(r#"{"value": "v"}"#)).await
}

async fn metric(n: &Node, name: &str) -> f64 {
    let text = common::client()
        .get(format!("http://{}/metrics", n.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

// noeviction: a write past max_keys is refused with 507 out_of_memory (RESOURCE_EXHAUSTED over
// gRPC) and changes nothing; overwrites, deletes and expiry still work, and make room.
#[tokio::test]
async fn noeviction_refuses_writes_past_the_limit() {
    let (_d, n) = single(&["--max-keys", "2", "--eviction-policy", "noeviction"]).await;
    limits_in_force(&n, 2, "noeviction").await;
    assert_eq!(put(&n, "a").await.0, 200);
    assert_eq!(put(&n, "b").await.0, 200);
    let (status, e) = put(&n, "c").await;
    assert_eq!((status, e["code"].as_str()), (507, Some("out_of_memory")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("max_keys 2"), "{e}");
    assert_eq!(call("GET", &n.url("/v1/c"), None).await.1, json!({"found": false}));
    assert_eq!(put(&n, "a").await.0, 200, "an overwrite does not grow the key count");

    use simple_cache_server::pb::{self, cache_service_client::CacheServiceClient};
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", n.grpc))
        .unwrap()
        .connect_lazy();
    let req = pb::SetRequest {
        key: "c".into(),
        data: Some(pb::set_request::Data::JsonValue("1".into())),
        expire: String::new(),
        ..Default::default()
    };
    let e = CacheServiceClient::new(ch).set(req).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted);
    assert!(e.message().starts_with("out_of_memory"), "{}", e.message());

    assert_eq!(call("DELETE", &n.url("/v1/b"), None).await.0, 200);
    assert_eq!(put(&n, "c").await.0, 200, "a delete made room");
    assert_eq!(
        metric(&n, "simple_cache_writes_refused_total{reason=\"out_of_memory\"}").await,
        2.0
    );
    assert_eq!(metric(&n, "simple_cache_evicted_keys_total").await, 0.0);
}

// allkeys-lru: the least recently written key goes, the key just written stays, a key written
// again is young again; /readyz and the metrics say what happened.
#[tokio::test]
async fn allkeys_lru_evicts_the_least_recently_written() {
    let (_d, n) = single(&["--max-keys", "3", "--eviction-policy", "allkeys-lru"]).await;
    limits_in_force(&n, 3, "allkeys-lru").await;
    for k in ["k1", "k2", "k3"] {
        assert_eq!(put(&n, k).await.0, 200);
    }
    assert_eq!(put(&n, "k1").await.0, 200, "k1 is the most recent again");
    assert_eq!(put(&n, "k4").await.0, 200);
    let (_, r) = call("GET", &n.url("/v1/search?pattern=k*"), None).await;
    assert_eq!(r["keys"], json!(["k1", "k3", "k4"]), "k2 was the least recently written");
    assert_eq!(put(&n, "k5").await.0, 200);
    let (_, r) = call("GET", &n.url("/v1/search?pattern=k*"), None).await;
    assert_eq!(r["keys"], json!(["k1", "k4", "k5"]));
    let ready = n.readyz().await;
    assert_eq!(ready["keys"], 3);
    assert!(ready["memory"]["used_bytes"].as_u64().unwrap() > 0, "{ready}");
    let evicted = "simple_cache_evicted_keys_total{policy=\"allkeys-lru\"}";
    eventually("eviction metrics", Duration::from_secs(5), || async {
        (metric(&n, evicted).await == 2.0 && metric(&n, "cache_evictions_total").await == 2.0)
            .then_some(())
    })
    .await;
    assert_eq!(metric(&n, "simple_cache_max_keys").await, 3.0);
}

// On a 3-node cluster every replica evicts the same keys: at the same applied index each holds
// exactly the same keys, and reports the same used bytes.
#[tokio::test]
async fn every_replica_evicts_the_same_keys() {
    let mut c =
        Cluster::start_with(3, &["--max-keys", "5", "--eviction-policy", "allkeys-random"]).await;
    let leader = c.leader().await;
    limits_in_force(&c.nodes[leader], 5, "allkeys-random").await;
    for i in 0..40 {
        let (s, b) = put(&c.nodes[(i % 3) as usize], &format!("key{i:02}")).await;
        assert_eq!(s, 200, "{b}");
    }
    let states =
        eventually("every replica at the same applied index", Duration::from_secs(10), || {
            let nodes = &c.nodes;
            async move {
                let mut states = Vec::new();
                for n in nodes {
                    let r = n.readyz().await;
                    let (_, keys) =
                        call("GET", &n.url("/v1/search?pattern=*&consistency=stale"), None).await;
                    states.push((
                        r["last_applied"].clone(),
                        r["memory"]["used_bytes"].clone(),
                        keys["keys"].clone(),
                    ));
                }
                states.windows(2).all(|w| w[0] == w[1]).then_some(states)
            }
        })
        .await;
    assert_eq!(states[0].2.as_array().unwrap().len(), 5, "{states:?}");
    assert!(states[0].2.as_array().unwrap().contains(&json!("key39")), "the last write stays");
}
