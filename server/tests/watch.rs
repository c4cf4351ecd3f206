//! Watches against real processes: events in revision order through a follower, exactly the
//! writes made; resuming on a node after kill -9 and restart from the last revision seen, with
//! no gap and no repeat; a compacted revision and a full node answered precisely.

mod common;

use common::{Cluster, Node, call_raw};
use serde_json::{Value, json};
use std::time::Duration;

/// An NDJSON watch stream, read line by line.
struct Stream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl Stream {
    async fn open(url: &str) -> (u16, Stream) {
        let resp = common::client().get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, Stream { resp, buf: Vec::new() })
    }

    /// The next message, waiting at most 10 s for it.
    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("a message within 10 s")
                .unwrap()
                .expect("the stream is still open");
            self.buf.extend_from_slice(&chunk);
        }
    }
}

/// The revision of a write's answer.
fn rev(v: &Value) -> u64 {
    v["revision"].as_u64().unwrap_or_else(|| panic!("no revision in {v}"))
}

// Writes through one node, watched on another: one event per change, in order, at the
// revisions the writes answered; a batch's events share its revision; keys outside the prefix
// are not seen.
#[tokio::test]
async fn a_follower_streams_every_change_in_order() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let (watched, writer) = ((leader + 1) % 3, (leader + 2) % 3);
    let url = cluster.nodes[watched].url("/v1/watch?prefix=job:&format=ndjson");
    let (status, mut s) = Stream::open(&url).await;
    assert_eq!(status, 200);
    let created = s.next().await;
    assert_eq!(created["type"], json!("created"), "{created}");
    let w = &cluster.nodes[writer];
    let a = call_raw("PUT", &w.url("/v1/job:1"), Some(r#"{"value": "a"}"#)).await.1;
    call_raw("PUT", &w.url("/v1/other"), Some(r#"{"value": 0}"#)).await;
    let b = call_raw("POST", &w.url("/v1/job:2/incr"), None).await.1;
    let batch = r#"{"then": [{"op": "delete", "key": "job:1"}, {"op": "incr", "key": "job:2"}]}"#;
    let c = call_raw("POST", &w.url("/v1/batch"), Some(batch)).await.1;
    let expected = [
        ("put", "job:1", rev(&a)),
        ("put", "job:2", rev(&b)),
        ("delete", "job:1", rev(&c)),
        ("put", "job:2", rev(&c)),
    ];
    for (kind, key, revision) in expected {
        let e = s.next().await;
        assert_eq!(
            (e["type"].as_str(), e["key"].as_str(), rev(&e)),
            (Some(kind), Some(key), revision),
            "{e}"
        );
    }
    assert!(created["start_revision"].as_u64().unwrap() <= rev(&a), "{created}");
    let e = call_raw("GET", &cluster.nodes[watched].url("/v1/job:2"), None).await.1;
    assert_eq!(e["value"], json!(2));
}

// A node killed with SIGKILL and restarted replays its history from its WAL: a watcher that
// saw revision r resumes there with start_revision r + 1 and gets exactly the changes made
// meanwhile through the other nodes, in order, once.
#[tokio::test]
async fn a_watch_resumes_after_the_node_restarts() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let watched = (leader + 1) % 3;
    let writer = (leader + 2) % 3;
    let url = cluster.nodes[watched].url("/v1/watch?key=k&format=ndjson");
    let (_, mut s) = Stream::open(&url).await;
    s.next().await;
    let first =
        call_raw("PUT", &cluster.nodes[writer].url("/v1/k"), Some(r#"{"value": 1}"#)).await.1;
    let seen = s.next().await;
    assert_eq!(rev(&seen), rev(&first));
    drop(s);
    cluster.nodes[watched].kill();
    let mut made = Vec::new();
    for i in 2..=4 {
        let body = format!(r#"{{"value": {i}}}"#);
        let r = call_raw("PUT", &cluster.nodes[writer].url("/v1/k"), Some(&body)).await.1;
        made.push((rev(&r), i));
    }
    cluster.nodes[watched].start();
    cluster.nodes[watched].wait_ready().await;
    let url = cluster.nodes[watched]
        .url(&format!("/v1/watch?key=k&format=ndjson&start_revision={}", rev(&seen) + 1));
    let (status, mut s) = Stream::open(&url).await;
    assert_eq!(status, 200);
    assert_eq!(s.next().await["start_revision"], json!(rev(&seen) + 1));
    for (revision, value) in made {
        let e = s.next().await;
        assert_eq!((rev(&e), e["value"].as_i64()), (revision, Some(value)), "{e}");
    }
}

// A revision older than the history is refused with 410 `compacted`, naming the oldest one;
// a node at max_watchers refuses another watch with 429; SSE is the default format.
#[tokio::test]
async fn compacted_revisions_and_full_nodes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &["--watch-history-events", "2", "--max-watchers", "1"]);
    n.wait_ready().await;
    for i in 0..5 {
        call_raw("PUT", &n.url(&format!("/v1/k{i}")), Some(r#"{"value": 1}"#)).await;
    }
    let (s, e) = call_raw("GET", &n.url("/v1/watch?prefix=k&start_revision=1"), None).await;
    assert_eq!((s, e["code"].as_str()), (410, Some("compacted")), "{e}");

    assert!(e["error"].as_str().unwrap().contains("oldest revision"), "{e}");
    let resp = common::client().get(n.url("/v1/watch?prefix=")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let (s, e) = call_raw("GET", &n.url("/v1/watch?key=a"), None).await;
    assert_eq!((s, e["code"].as_str()), (429, Some("too_many_watchers")), "{e}");
    drop(resp);
    let (s, e) = call_raw("GET", &n.url("/v1/watch?key=a&prefix=b"), None).await;
    assert_eq!((s, e["code"].as_str()), (400, Some("bad_watch")), "{e}");
    // Revision 0 is "from now", as in etcd, not a compacted revision (once the node has let
    // go of the watch dropped above: max_watchers is 1).
    let url = n.url("/v1/watch?prefix=k&start_revision=0&format=ndjson");
    let mut from_now = common::eventually("a free watch slot", Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let (status, s) = Stream::open(&url).await;
            (status == 200).then_some(s)
        }
    })
    .await;
    assert!(from_now.next().await["start_revision"].as_u64().unwrap() > 5);
    drop(from_now);
    // Without key or prefix, /v1/watch is still the key named `watch`.
    assert_eq!(call_raw("PUT", &n.url("/v1/watch"), Some(r#"{"value": 3}"#)).await.0, 200);
    assert_eq!(call_raw("GET", &n.url("/v1/watch"), None).await.1["value"], json!(3));
}

// The gRPC Watch stream: `created`, then the events, with values in their stored form.
#[tokio::test]
async fn grpc_watch_streams_the_events() {
    use simple_cache_server::pb::{self, cache_service_client::CacheServiceClient};
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &[]);
    n.wait_ready().await;
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", n.grpc))
        .unwrap()
        .connect_lazy();
    let mut c = CacheServiceClient::new(ch);
    let req = pb::WatchRequest {
        target: Some(pb::watch_request::Target::Prefix("g".into())),
        start_revision: None,
    };
    let mut stream = c.watch(req).await.unwrap().into_inner();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created && created.start_revision > 0, "{created:?}");
    let set = call_raw("PUT", &n.url("/v1/g1"), Some(r#"{"value": [1]}"#)).await.1;
    call_raw("DELETE", &n.url("/v1/g1"), None).await;
    let put = stream.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!((put.key.as_str(), put.revision), ("g1", rev(&set)));
    assert_eq!(put.data, Some(pb::watch_event::Data::JsonValue("[1]".into())));
    let del = stream.message().await.unwrap().unwrap().event.unwrap();
    assert_eq!((del.r#type, del.cause.as_str()), (pb::watch_event::Type::Delete as i32, "deleted"));
    let bad = pb::WatchRequest { target: None, start_revision: None };
    assert_eq!(c.watch(bad).await.unwrap_err().code(), tonic::Code::InvalidArgument);
}
