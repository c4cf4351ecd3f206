//! The peer transport from the outside: a raw TCP client speaking `core::peer_wire` as a broken
//! or hostile peer would, and a fake node of the previous version (HTTP `POST /raft` only) that
//! an upgraded node must still reach. Every other real-process test runs on the transport too:
//! their clusters replicate through it.

mod common;

use common::{Node, call, free_port};
use serde_json::json;
use simple_cache_core::peer_wire::{
    self, Answer, ForwardAnswer, Frame, FrameDecoder, HELLO_BYTES_MAX, Hello, PREAMBLE, Refusal,
};
use simple_cache_core::{LogIndex, Message, MessageBody, NodeId, Term};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on every wait for the node, so a broken node fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

fn hello(from: u64, token: Option<&str>, cluster_id: u64) -> Hello {
    Hello {
        from: NodeId(from),
        cluster_id,
        token: token.map(str::to_string),
        raft_addr: "127.0.0.1:1".into(),
        client_addr: "127.0.0.1:2".into(),
    }
}

/// Opens a peer connection with `hello` and returns it with the node's answer.
async fn open(addr: &str, hello: &Hello) -> (TcpStream, Answer) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut out = PREAMBLE.to_vec();
    peer_wire::encode_frame(hello, &mut out);
    s.write_all(&out).await.unwrap();
    let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(p) = d.next_frame().unwrap() {
                return peer_wire::decode_frame::<Answer>(&p).unwrap();
            }
            assert_ne!(s.read_buf(d.buffer()).await.unwrap(), 0, "closed without an answer");
        }
    })
    .await
    .expect("an answer in time");
    (s, answer)
}

fn refusal(a: &Answer) -> Option<Refusal> {
    match a {
        Answer::Refused { reason, .. } => Some(*reason),
        Answer::Accepted { .. } => None,
    }
}

/// Waits until the node closes `s` (a read returns 0 or fails).
async fn closed_by_node(mut s: TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(WAIT, s.read(&mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("{what}: the node wrote {n} bytes instead of closing"),
        Err(_) => panic!("{what}: the node kept the connection open"),
    }
}

fn heartbeat(from: u64, to: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
        },
    }
}

// The hello is checked before anything else is read: a missing or wrong token, another
// cluster's id, the node's own id, and more connections than the bound are refused with a typed
// answer. After the hello, a frame over the limit, a frame that does not decode, a message
// from another node than the hello named, and a zero-byte opening that is not the preamble all
// close the connection. None of it disturbs the node.
#[tokio::test]
async fn peer_connections_refuse_strangers_and_hostile_frames() {
    let dir = tempfile::tempdir().unwrap();
    let n = Node::new(1, dir.path(), &["--peer-token", "s3cret"]);
    let mut n = n;
    n.wait_ready().await;
    assert_eq!(call("PUT", &n.url("/v1/k"), Some(r#"{"value": 1}"#)).await.0, 200);
    let before = n.readyz().await;
    let addr = n.raft.clone();
    let cluster: u64 = u64::from_str_radix(
        std::fs::read_to_string(n.dir.join("data/cluster_id")).unwrap().trim(),
        16,
    )
    .unwrap();

    for (h, want) in [
        (hello(2, None, 0), Refusal::Unauthorized),
        (hello(2, Some("wrong"), 0), Refusal::Unauthorized),
        (hello(2, Some("s3cret"), cluster ^ 1), Refusal::WrongCluster),
        (hello(1, Some("s3cret"), cluster), Refusal::SameNodeId),
    ] {
        let (s, a) = open(&addr, &h).await;
        assert_eq!(refusal(&a), Some(want), "{h:?}: {a:?}");
        closed_by_node(s, "after a refusal").await;
    }
    // Accepted, answering with the node's own id; then each kind of bad stream is closed.
    let good = hello(2, Some("s3cret"), cluster);
    let (_s, a) = open(&addr, &good).await;
    assert_eq!(a, Answer::Accepted { node_id: NodeId(1) });
    let mut oversized = Vec::new();
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    oversized.extend_from_slice(&[0; 64]);
    let mut wrong_sender = Vec::new();
    peer_wire::encode_frame(&Frame::Raft(vec![heartbeat(3, 1)]), &mut wrong_sender);
    let mut wrong_receiver = Vec::new();
    peer_wire::encode_frame(&Frame::Raft(vec![heartbeat(2, 9)]), &mut wrong_receiver);
    let garbage = [5u8, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff];
    for (what, bytes) in [
        ("a frame over the limit", oversized),
        ("a message from another node", wrong_sender),
        ("a message to another node", wrong_receiver),
        ("a frame that does not decode", garbage.to_vec()),
    ] {
        let (mut s, a) = open(&addr, &good).await;
        assert_eq!(a, Answer::Accepted { node_id: NodeId(1) }, "{what}");
        s.write_all(&bytes).await.unwrap();
        closed_by_node(s, what).await;
    }
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"\0GET / HTTP/1.1\r\n\r\n").await.unwrap();
    closed_by_node(s, "a zero byte without the preamble").await;

    // The bound: connections from distinct senders up to it are accepted, the next is refused.
    let mut held = Vec::new();
    for from in 2..2 + simple_cache_server::raft_http::PEER_CONNECTIONS_MAX as u64 {
        let (s, a) = open(&addr, &hello(from, Some("s3cret"), cluster)).await;
        assert!(matches!(a, Answer::Accepted { .. }), "connection from {from}: {a:?}");
        held.push(s);
    }
    let (_, a) = open(&addr, &hello(1000, Some("s3cret"), cluster)).await;
    assert_eq!(refusal(&a), Some(Refusal::TooManyConnections));
    drop(held);

    let after = n.readyz().await;
    assert_eq!(
        (before["term"].clone(), before["commit_index"].clone()),
        (after["term"].clone(), after["commit_index"].clone())
    );
    assert_eq!(call("GET", &n.url("/v1/k"), None).await, (200, json!({"found": true, "value": 1})));
    assert_eq!(call("PUT", &n.url("/v1/k2"), Some(r#"{"value": 2}"#)).await.0, 200);
}

// A rolling upgrade: node 2 runs the previous version, which serves only `POST /raft` (an
// axum route, as 0.1 did) and answers the peer protocol's preamble with an HTTP 400. The
// upgraded node 1 notices and sends its Raft messages to node 2 as `POST /raft` batches, with
// its address headers.
#[tokio::test]
async fn an_upgraded_node_reaches_a_peer_of_the_previous_version_over_http() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_addr = old.local_addr().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Vec<Message>, Option<String>)>(64);
    let app = axum::Router::new().route(
        "/raft",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let batch: Vec<Message> =
                    simple_cache_core::codec::decode(&body, 1 << 26).expect("a 0.1 batch");
                let sender = headers
                    .get(simple_cache_server::peer_auth::SENDER_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let _ = tx.try_send((batch, sender));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(old, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let (http, raft) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let peers = format!("1={raft}@{http},2={old_addr}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let _n = Node::with_addrs(
        1,
        dir.path(),
        http,
        raft.clone(),
        metrics,
        &["--mode", "distributed", "--peers", &peers],
    );
    // Node 1 cannot win alone; it asks node 2 for its vote, over HTTP.
    let (batch, sender) = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (batch, sender) = rx.recv().await.unwrap();
            if batch.iter().any(|m| matches!(m.body, MessageBody::RequestVote { .. })) {
                return (batch, sender);
            }
        }
    })
    .await
    .expect("node 1 sends to the old node over HTTP");
    assert!(batch.iter().all(|m| m.from == NodeId(1) && m.to == NodeId(2)), "{batch:?}");
    assert_eq!(sender.as_deref(), Some(raft.as_str()));
}

/// Accepts one peer connection on `listener` as node `me` and returns it past the hello.
async fn accept_peer(listener: &tokio::net::TcpListener, me: u64) -> (TcpStream, FrameDecoder) {
    let (mut s, _) = tokio::time::timeout(WAIT, listener.accept()).await.expect("a peer").unwrap();
    let mut preamble = [0u8; PREAMBLE.len()];
    s.read_exact(&mut preamble).await.unwrap();
    peer_wire::check_preamble(&preamble).unwrap();
    let mut d = FrameDecoder::new(HELLO_BYTES_MAX);
    let _hello: Hello = loop {
        if let Some(p) = d.next_frame().unwrap() {
            break peer_wire::decode_frame(&p).unwrap();
        }
        assert_ne!(s.read_buf(d.buffer()).await.unwrap(), 0);
    };
    let mut out = Vec::new();
    peer_wire::encode_frame(&Answer::Accepted { node_id: NodeId(me) }, &mut out);
    s.write_all(&out).await.unwrap();
    d.set_limit(peer_wire::FRAME_BYTES_MAX);
    (s, d)
}

/// The next forward answer on a connection from the node (Raft frames are skipped).
async fn next_answer(s: &mut TcpStream, d: &mut FrameDecoder) -> (u64, ForwardAnswer) {
    tokio::time::timeout(WAIT, async {
        loop {
            while let Some(p) = d.next_frame().unwrap() {
                if let Frame::ForwardAnswer { id, answer } = peer_wire::decode_frame(&p).unwrap() {
                    return (id, answer);
                }
            }
            assert_ne!(s.read_buf(d.buffer()).await.unwrap(), 0, "closed");
        }
    })
    .await
    .expect("an answer in time")
}

// The leader's side of typed forwarding: a peer (the test, as node 2, added as a learner)
// forwards writes over its connection and gets each answer, typed, on the connection the leader
// opens back to it: a set that took effect with its revision, a value over the leader's own
// limit refused with the status and code its own client would get, and a reset without the admin
// token refused. A node that is not a member (the test, as node 3) cannot forward at all.
#[tokio::test]
async fn a_leader_answers_forwarded_writes_on_its_own_connection() {
    use simple_cache_core::exec::WriteOp;
    use simple_cache_core::peer_wire::Forward;
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--admin-token", "adm", "--max-value-bytes", "1000"];
    let mut n = Node::new(1, dir.path(), &flags);
    n.wait_ready().await;
    let me = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h = hello(2, None, 0);
    h.raft_addr = me.local_addr().unwrap().to_string();
    let join = json!({"id": 2, "addr": h.raft_addr, "force": true}).to_string();
    let r = common::client()
        .post(n.url("/cluster/join"))
        .bearer_auth("adm")
        .header("content-type", "application/json")
        .body(join)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let (mut to_leader, a) = open(&n.raft, &h).await;
    assert_eq!(a, Answer::Accepted { node_id: NodeId(1) });
    // Any Raft frame tells a node the sender's address, as a removed node's would; it then
    // connects back, and answers will travel on that connection.
    let mut out = Vec::new();
    peer_wire::encode_frame(&Frame::Raft(vec![]), &mut out);
    to_leader.write_all(&out).await.unwrap();
    let (mut back, mut d) = accept_peer(&me, 2).await;
    out.clear();
    // JSON is stored as its text (see `value.rs`).
    let stored = |json: &str| bytes::Bytes::from(json.to_string());
    let forwards = [
        (7, WriteOp::Set { key: "k".into(), value: stored("1"), ttl_ms: None }, None),
        (
            8,
            WriteOp::Set { key: "big".into(), value: stored(&"9".repeat(2000)), ttl_ms: None },
            None,
        ),
        (9, WriteOp::Reset, None),
        (10, WriteOp::Reset, Some("Bearer adm".to_string())),
    ];
    for (id, op, authorization) in forwards.iter().cloned() {
        let f = Forward { id, op, authorization, timeout_ms: 5000 };
        peer_wire::encode_frame(&Frame::Forward(f), &mut out);
    }
    to_leader.write_all(&out).await.unwrap();
    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..forwards.len() {
        let (id, answer) = next_answer(&mut back, &mut d).await;
        answers.insert(id, answer);
    }
    match &answers[&7] {
        ForwardAnswer::Written(w) => assert!(w.revision > 0, "{w:?}"),
        other => panic!("the set: {other:?}"),
    }
    match &answers[&8] {
        ForwardAnswer::Refused { status, code, .. } => {
            assert_eq!((*status, code.as_str()), (413, "value_too_large"))
        }
        other => panic!("the large value: {other:?}"),
    }
    match &answers[&9] {
        ForwardAnswer::Refused { status, .. } => assert_eq!(*status, 401),
        other => panic!("the reset without a token: {other:?}"),
    }
    let revision = |id| match &answers[&id] {
        ForwardAnswer::Written(w) => w.revision,
        other => panic!("forward {id}: {other:?}"),
    };
    // Forwards run concurrently: the key is there if the set applied after the reset. (A
    // missing key is 200 `{"found": false}`; an earlier version of this test compared the
    // status and passed only when the set came last.)
    let (s, b) = call("GET", &n.url("/v1/k"), None).await;
    assert_eq!(s, 200);
    assert_eq!(b["found"], json!(revision(7) > revision(10)), "{b}");

    // Node 3 is no member: its forward is refused, and nothing is written.
    let stranger = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut h3 = hello(3, None, 0);
    h3.raft_addr = stranger.local_addr().unwrap().to_string();
    let (mut from3, a) = open(&n.raft, &h3).await;
    assert_eq!(a, Answer::Accepted { node_id: NodeId(1) });
    // Its address first, and the connection back (answers travel on it), then the forward.
    let mut out = Vec::new();
    peer_wire::encode_frame(&Frame::Raft(vec![]), &mut out);
    from3.write_all(&out).await.unwrap();
    let (mut back3, mut d3) = accept_peer(&stranger, 3).await;
    out.clear();
    let op = WriteOp::Set { key: "from3".into(), value: stored("1"), ttl_ms: None };
    let f = Forward { id: 11, op, authorization: None, timeout_ms: 5000 };
    peer_wire::encode_frame(&Frame::Forward(f), &mut out);
    from3.write_all(&out).await.unwrap();
    match next_answer(&mut back3, &mut d3).await {
        (11, ForwardAnswer::Refused { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (403, "not_a_member"))
        }
        other => panic!("a non-member's forward: {other:?}"),
    }
    let (_, b) = call("GET", &n.url("/v1/from3"), None).await;
    assert_eq!(b["found"], json!(false), "{b}");
}

// A follower of the new version under a leader of the previous one (a rolling upgrade): the
// follower learns the leader from its heartbeats (sent over `POST /raft`), and a client write
// to the follower is forwarded at once to the leader's `POST /internal/v1/write`, since the
// leader answered the peer protocol with HTTP. The leader's typed answer reaches the client.
#[tokio::test]
async fn a_follower_forwards_to_a_leader_of_the_previous_version_over_http() {
    use axum::http::HeaderMap;
    let old_raft = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (raft_addr, http_addr) =
        (old_raft.local_addr().unwrap().to_string(), old_http.local_addr().unwrap().to_string());
    let (fwd_tx, mut fwd_rx) = tokio::sync::mpsc::channel::<serde_json::Value>(8);
    let app = axum::Router::new()
        .route("/raft", axum::routing::post(|| async { axum::http::StatusCode::NO_CONTENT }))
        .route(
            "/internal/v1/write",
            axum::routing::post(move |_: HeaderMap, body: axum::Json<serde_json::Value>| {
                let fwd_tx = fwd_tx.clone();
                async move {
                    let _ = fwd_tx.try_send(body.0);
                    axum::Json(json!({"result": "set", "revision": 41}))
                }
            }),
        );
    let app2 = app.clone();
    tokio::spawn(async move { axum::serve(old_raft, app).await.unwrap() });
    tokio::spawn(async move { axum::serve(old_http, app2).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let (http, raft) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let peers = format!("1={raft}@{http},2={raft_addr}@{http_addr}");
    let metrics = format!("127.0.0.1:{}", free_port());
    let n = Node::with_addrs(
        1,
        dir.path(),
        http,
        raft.clone(),
        metrics,
        &["--mode", "distributed", "--peers", &peers, "--election-ms", "5000"],
    );
    // The old leader's heartbeats, as 0.1 sends them.
    let beat = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(5),
        body: MessageBody::Heartbeat {
            commit_index: LogIndex(0),
            read_seq: 0,
            clock: simple_cache_core::Instant(1),
            cluster_time: simple_cache_core::Instant(1),
        },
    };
    let beats = tokio::spawn({
        let raft = raft.clone();
        async move {
            let body = simple_cache_core::codec::encode(&vec![beat]);
            loop {
                let _ = common::client()
                    .post(format!("http://{raft}/raft"))
                    .body(body.clone())
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    common::eventually("node 1 to follow node 2", Duration::from_secs(20), || async {
        let r = common::client().get(n.url("/readyz")).send().await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v["leader"] == json!(2)).then_some(())
    })
    .await;
    let (s, b) = call("PUT", &n.url("/v1/k"), Some(r#"{"value": 1}"#)).await;
    assert_eq!(s, 200, "{b}\n{}", n.logs());
    let sent = fwd_rx.try_recv().expect("the write reached the old leader's forward route");
    assert_eq!((sent["op"].as_str(), sent["key"].as_str()), (Some("set"), Some("k")), "{sent}");
    beats.abort();
}
