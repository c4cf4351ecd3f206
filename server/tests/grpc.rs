//! Integration tests of the gRPC API (`simplecache.v1.CacheService`, health, reflection): a
//! tonic client against real `simple-cache` processes, one node and three.

mod common;

use common::{Cluster, Node, call, eventually};
use serde_json::json;
use simple_cache_server::pb::{self, cache_service_client::CacheServiceClient};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

type Client = CacheServiceClient<Channel>;

fn channel(n: &Node) -> Channel {
    Endpoint::from_shared(format!("http://{}", n.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy()
}

fn client(n: &Node) -> Client {
    CacheServiceClient::new(channel(n))
}

async fn single(extra: &[&str]) -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), extra);
    n.wait_ready().await;
    wait_serving(&n).await;
    (dir, n)
}

/// Polls grpc.health.v1 until both the server and the cache service report SERVING.
async fn wait_serving(n: &Node) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let mut h = HealthClient::new(channel(n));
    eventually("gRPC health SERVING", Duration::from_secs(20), || {
        let mut h = h.clone();
        async move {
            for service in ["", "simplecache.v1.CacheService"] {
                let req = HealthCheckRequest { service: service.into() };
                let s = h.check(req).await.ok()?.into_inner().status;
                (s == ServingStatus::Serving as i32).then_some(())?;
            }
            Some(())
        }
    })
    .await;
    // An unknown service is NOT_FOUND, as the health protocol specifies.
    let req = HealthCheckRequest { service: "no.such.Service".into() };
    assert_eq!(h.check(req).await.unwrap_err().code(), Code::NotFound);
}

fn set_req(key: &str, data: pb::set_request::Data, expire: &str) -> pb::SetRequest {
    pb::SetRequest {
        key: key.into(),
        data: Some(data),
        expire: expire.into(),
        ..Default::default()
    }
}

fn raw(b: &[u8]) -> pb::set_request::Data {
    pb::set_request::Data::RawValue(b.to_vec())
}

fn get_req(key: &str, stale: bool) -> pb::GetRequest {
    let consistency = if stale { pb::Consistency::Stale } else { pb::Consistency::Linearizable };
    pb::GetRequest { key: key.into(), consistency: consistency as i32 }
}

fn search_req(pattern: &str, regex: bool, limit: u32, stale: bool) -> pb::SearchRequest {
    use pb::search_request::MatchMode;
    pb::SearchRequest {
        pattern: pattern.into(),
        mode: if regex { MatchMode::Regex } else { MatchMode::Wildcard } as i32,
        limit,
        consistency: if stale { pb::Consistency::Stale } else { pb::Consistency::Linearizable }
            as i32,
    }
}

/// A Get's answer without its revisions (tests of revisions read them with `c.get`).
async fn get(c: &mut Client, key: &str) -> pb::GetResponse {
    pb::GetResponse { revisions: None, ..c.get(get_req(key, false)).await.unwrap().into_inner() }
}

async fn keys(c: &mut Client, pattern: &str, stale: bool) -> Vec<String> {
    c.search(search_req(pattern, false, 100_000, stale)).await.unwrap().into_inner().keys
}

fn string_any(s: &str) -> prost_types::Any {
    // A google.protobuf.StringValue: field 1, length-delimited.
    let mut value = vec![10, s.len() as u8];
    value.extend_from_slice(s.as_bytes());
    prost_types::Any { type_url: "type.googleapis.com/google.protobuf.StringValue".into(), value }
}

// Every RPC works on one node, values written over gRPC and HTTP read back over both in the
// form they were stored in, and gRPC requests show up in the metrics with api="grpc".
#[tokio::test]
async fn single_node_every_rpc() {
    use pb::get_response::Data as Got;
    use pb::set_request::Data as Put;
    let (_d, n) = single(&[]).await;
    let mut c = client(&n);

    // Set in each form, with and without a TTL; Get answers in the same form.
    let r = c.set(set_req("raw", raw(b"\x00\xffbytes"), "")).await.unwrap().into_inner();
    assert!(r.success);
    c.set(set_req("any", Put::Value(string_any("hi")), "1h")).await.unwrap();
    c.set(set_req("json", Put::JsonValue(r#"{ "a": [1, 2.5, null] }"#.into()), "0")).await.unwrap();
    assert_eq!(
        get(&mut c, "raw").await,
        pb::GetResponse {
            data: Some(Got::RawValue(b"\x00\xffbytes".to_vec())),
            found: true,
            revisions: None
        }
    );
    assert_eq!(
        get(&mut c, "any").await,
        pb::GetResponse { data: Some(Got::Value(string_any("hi"))), found: true, revisions: None }
    );
    assert_eq!(
        get(&mut c, "json").await,
        pb::GetResponse {
            data: Some(Got::JsonValue(r#"{"a":[1,2.5,null]}"#.into())),
            found: true,
            revisions: None
        }
    );
    let stale = c.get(get_req("raw", true)).await.unwrap().into_inner();
    assert_eq!(stale.data, Some(Got::RawValue(b"\x00\xffbytes".to_vec())));
    assert_eq!(
        get(&mut c, "missing").await,
        pb::GetResponse { data: None, found: false, revisions: None }
    );

    // Across front ends: HTTP JSON reads over gRPC as json_value, gRPC forms read over HTTP.
    assert_eq!(call("PUT", &n.url("/v1/http"), Some(r#"{"value": {"x": "y"}}"#)).await.0, 200);
    assert_eq!(get(&mut c, "http").await.data, Some(Got::JsonValue(r#"{"x":"y"}"#.into())));
    assert_eq!(
        call("GET", &n.url("/v1/json"), None).await,
        (200, json!({"found": true, "value": {"a": [1, 2.5, null]}}))
    );
    assert_eq!(
        call("GET", &n.url("/v1/raw"), None).await,
        (200, json!({"found": true, "value": "AP9ieXRlcw==", "encoding": "base64"}))
    );
    assert_eq!(
        call("GET", &n.url("/v1/any"), None).await,
        (
            200,
            json!({"found": true, "encoding": "any", "value": {
                "@type": "type.googleapis.com/google.protobuf.StringValue", "value": "CgJoaQ=="
            }})
        )
    );

    // Ttl.
    let t = c.ttl(pb::TtlRequest { key: "any".into(), consistency: 0 }).await.unwrap();
    let t = t.into_inner();
    assert!(t.found && !t.no_expiry && t.ttl_ms > 3_500_000 && t.ttl_ms <= 3_600_000, "{t:?}");
    let t = c.ttl(pb::TtlRequest { key: "raw".into(), consistency: 1 }).await.unwrap();
    assert_eq!(t.into_inner(), pb::TtlResponse { found: true, no_expiry: true, ttl_ms: 0 });
    let t = c.ttl(pb::TtlRequest { key: "missing".into(), consistency: 0 }).await.unwrap();
    assert_eq!(t.into_inner(), pb::TtlResponse::default());

    // Search: both modes, a limit, stale.
    assert_eq!(keys(&mut c, "*", false).await, ["any", "http", "json", "raw"]);
    let r = c.search(search_req("^(raw|js)", true, 0, false)).await.unwrap().into_inner();
    assert_eq!(r.keys, ["json", "raw"]);
    let r = c.search(search_req("*", false, 1, true)).await.unwrap().into_inner();
    assert_eq!(r.keys, ["any"]);

    // ExpireKey and Del say whether the key existed.
    let e = c.expire_key(pb::ExpireKeyRequest { key: "http".into() }).await.unwrap();
    assert_eq!(e.into_inner(), pb::ExpireKeyResponse { success: true, existed: true });
    let e = c.expire_key(pb::ExpireKeyRequest { key: "http".into() }).await.unwrap();
    assert_eq!(e.into_inner(), pb::ExpireKeyResponse { success: true, existed: false });
    assert!(!get(&mut c, "http").await.found);
    let d = c
        .del(pb::DelRequest { key: "json".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.success, d.existed, d.applied), (true, true, true));
    assert!(d.revision > 0, "a delete answers the revision it applied at");
    let d = c
        .del(pb::DelRequest { key: "json".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.success, d.existed), (true, false));

    // Reset clears the live keys and says how many.
    let r = c.reset(pb::ResetRequest {}).await.unwrap().into_inner();
    assert_eq!(r, pb::ResetResponse { success: true, keys_cleared: 2 });
    assert!(keys(&mut c, "*", false).await.is_empty());

    // The same metric families as HTTP, told apart by `api`.
    let text = common::client()
        .get(format!("http://{}/metrics", n.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"simple_cache_api_requests_total{api="grpc",op="set",code="200"} 3"#,
        r#"simple_cache_api_requests_total{api="grpc",op="reset",code="200"} 1"#,
        r#"simple_cache_api_requests_total{api="http",op="set",code="200"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(
        text.contains(r#"simple_cache_api_request_duration_seconds_count{api="grpc",op="get"}"#)
    );
}

// A key set with a TTL over gRPC disappears once the TTL passes.
#[tokio::test]
async fn ttl_set_over_grpc_expires() {
    let (_d, n) = single(&[]).await;
    let mut c = client(&n);
    c.set(set_req("t", raw(b"v"), "300ms")).await.unwrap();
    assert!(get(&mut c, "t").await.found, "present before the TTL");
    eventually("the key to expire", Duration::from_secs(10), || {
        let mut c = c.clone();
        async move { (!get(&mut c, "t").await.found).then_some(()) }
    })
    .await;
}

// Bad input gets INVALID_ARGUMENT with a message naming the problem, and changes nothing.
#[tokio::test]
async fn bad_input_is_invalid_argument_and_changes_nothing() {
    use pb::set_request::Data as Put;
    let (_d, n) = single(&["--max-value-bytes", "1000", "--max-key-bytes", "64"]).await;
    let mut c = client(&n);
    c.set(set_req("keep", raw(b"safe"), "")).await.unwrap();
    let long_key = "k".repeat(65);
    let set_cases: Vec<(pb::SetRequest, &str)> = vec![
        (set_req("", raw(b"x"), ""), "bad_key"),
        (set_req(&long_key, raw(b"x"), ""), "key_too_large"),
        (pb::SetRequest { key: "keep".into(), data: None, ..Default::default() }, "missing_value"),
        (set_req("keep", raw(&[0u8; 1001]), ""), "value_too_large"),
        (set_req("keep", Put::JsonValue("{".into()), ""), "bad_json"),
        (set_req("keep", raw(b"x"), "5"), "bad_duration"),
        (set_req("keep", raw(b"x"), "-1s"), "bad_duration"),
        (set_req("keep", raw(b"x"), "1d"), "bad_duration"),
        (set_req("keep", raw(b"x"), "99999999999h"), "bad_duration"),
    ];
    for (req, code) in set_cases {
        let e = c.set(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {e:?}");
        assert!(e.message().starts_with(&format!("{code}: ")), "{req:?}: {e:?}");
    }
    let search_cases = [
        (search_req("(", true, 0, false), "bad_pattern"),
        (search_req("[", false, 0, false), "bad_pattern"),
        (pb::SearchRequest { pattern: "a".into(), mode: 7, limit: 0, consistency: 0 }, "bad_mode"),
        (
            pb::SearchRequest { pattern: "a".into(), mode: 0, limit: 0, consistency: 9 },
            "bad_consistency",
        ),
    ];
    for (req, code) in search_cases {
        let e = c.search(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{req:?}: {e:?}");
        assert!(e.message().starts_with(&format!("{code}: ")), "{req:?}: {e:?}");
    }
    let e = c.get(get_req(&long_key, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c.get(pb::GetRequest { key: "keep".into(), consistency: 5 }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c.del(pb::DelRequest { key: "".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c.expire_key(pb::ExpireKeyRequest { key: long_key.clone() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    wait_serving(&n).await;
    assert_eq!(
        get(&mut c, "keep").await.data,
        Some(pb::get_response::Data::RawValue(b"safe".to_vec()))
    );
    assert_eq!(keys(&mut c, "*", false).await, ["keep"]);
}

// With an admin token, Reset needs `authorization: Bearer <token>` metadata; data RPCs do not.
#[tokio::test]
async fn reset_needs_the_admin_token() {
    let (_d, n) = single(&["--admin-token", "s3cret"]).await;
    let mut c = client(&n);
    c.set(set_req("k", raw(b"1"), "")).await.unwrap();
    let e = c.reset(pb::ResetRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let mut req = tonic::Request::new(pb::ResetRequest {});
    req.metadata_mut().insert("authorization", "Bearer wrong".parse().unwrap());
    assert_eq!(c.reset(req).await.unwrap_err().code(), Code::Unauthenticated);
    assert!(get(&mut c, "k").await.found, "nothing was cleared");
    let mut req = tonic::Request::new(pb::ResetRequest {});
    req.metadata_mut().insert("authorization", "Bearer s3cret".parse().unwrap());
    let r = c.reset(req).await.unwrap().into_inner();
    assert_eq!(r, pb::ResetResponse { success: true, keys_cleared: 1 });
}

// Server reflection lists the cache, health and reflection services and serves the cache's
// descriptor, which is what `grpcurl list` and `grpcurl describe` need.
#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};
    let (_d, n) = single(&[]).await;
    let mut r = ServerReflectionClient::new(channel(&n));
    let ask = |m: MessageRequest| {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(m),
        }])
    };
    async fn first(
        r: &mut ServerReflectionClient<Channel>,
        req: impl tonic::IntoStreamingRequest<Message = ServerReflectionRequest>,
    ) -> MessageResponse {
        let mut s = r.server_reflection_info(req).await.unwrap().into_inner();
        let resp: ServerReflectionResponse = s.message().await.unwrap().unwrap();
        resp.message_response.unwrap()
    }
    let MessageResponse::ListServicesResponse(list) =
        first(&mut r, ask(MessageRequest::ListServices(String::new()))).await
    else {
        panic!("not a service list")
    };
    let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "simplecache.v1.CacheService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(s), "{s} in {names:?}");
    }
    let MessageResponse::FileDescriptorResponse(files) = first(
        &mut r,
        ask(MessageRequest::FileContainingSymbol("simplecache.v1.CacheService".into())),
    )
    .await
    else {
        panic!("not a file descriptor")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

// Three nodes: a write through a follower is forwarded to the leader and read back from every
// node; deletes, expiry and reset through a follower report the leader's answer.
#[tokio::test]
async fn three_nodes_write_through_follower_read_from_each() {
    // Tight limits: a value of max_value_bytes still fits the leader's forwarding route, whose
    // body (base64 in JSON) is larger than max_body_bytes.
    let mut c =
        Cluster::start_with(3, &["--max-value-bytes", "1000", "--max-body-bytes", "1100"]).await;
    let l = c.leader().await;
    let f = (l + 1) % 3;
    let mut fc = client(&c.nodes[f]);
    fc.set(set_req("k", raw(b"via follower"), "")).await.unwrap();
    for n in &c.nodes {
        let got = get(&mut client(n), "k").await;
        assert_eq!(
            got.data,
            Some(pb::get_response::Data::RawValue(b"via follower".to_vec())),
            "node {}",
            n.id
        );
        // Stale reads catch up too.
        eventually("a stale read to catch up", Duration::from_secs(10), || async {
            let r = client(n).get(get_req("k", true)).await.ok()?.into_inner();
            r.found.then_some(())
        })
        .await;
    }
    let d = fc
        .del(pb::DelRequest { key: "k".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(d.existed);
    let e = fc.expire_key(pb::ExpireKeyRequest { key: "k".into() }).await.unwrap().into_inner();
    assert!(!e.existed);
    fc.set(set_req("x", raw(b"1"), "")).await.unwrap();
    let r = fc.reset(pb::ResetRequest {}).await.unwrap().into_inner();
    assert_eq!(r.keys_cleared, 1);
    // Bad input on a follower is refused locally, with the same status.
    let e = fc.set(set_req("k", raw(b"1"), "soon")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let big = vec![7u8; 1000];
    fc.set(set_req("big", raw(&big), "")).await.unwrap();
    let got = get(&mut client(&c.nodes[l]), "big").await;
    assert_eq!(got.data, Some(pb::get_response::Data::RawValue(big)));
    let e = fc.set(set_req("big", raw(&[7u8; 1001]), "")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // The cluster's HTTP and gRPC views agree.
    fc.set(set_req("h", pb::set_request::Data::JsonValue("[1]".into()), "")).await.unwrap();
    assert_eq!(call("GET", &c.nodes[l].url("/v1/h"), None).await.1["value"], json!([1]));
}

// SIGKILL the leader while gRPC clients write through every node: a new leader is elected,
// writes succeed again, and no acknowledged write is lost.
#[tokio::test]
async fn three_nodes_sigkill_leader_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    let l = c.leader().await;
    let channels: Vec<Channel> = c.nodes.iter().map(channel).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let channels = channels.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}-{i}");
                    let mut c = CacheServiceClient::new(channels[(w + i) % channels.len()].clone());
                    if c.set(set_req(&key, raw(i.to_string().as_bytes()), "")).await.is_ok() {
                        acked.push(key);
                    } else {
                        // A node is down or the cluster is electing: do not spin.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    i += 1;
                }
                acked
            })
        })
        .collect();
    let survivor = (l + 1) % 3;
    let mut sc = client(&c.nodes[survivor]);
    let count = |mut sc: Client| async move { keys(&mut sc, "*", true).await.len() };
    eventually("writes before the crash", Duration::from_secs(20), || {
        let sc = sc.clone();
        async move { (count(sc).await >= 100).then_some(()) }
    })
    .await;
    c.nodes[l].kill();
    let old_leader_id = c.nodes[l].id;
    let before = count(sc.clone()).await;
    let nl = c.leader().await;
    assert_ne!(c.nodes[nl].id, old_leader_id, "a new leader was elected");
    eventually("writes after the crash", Duration::from_secs(20), || {
        let sc = sc.clone();
        async move { (count(sc).await >= before + 100).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() >= 200, "only {} writes were acknowledged", acked.len());
    // A linearizable search on a survivor sees every acknowledged write.
    let present: HashSet<String> = keys(&mut sc, "*", false).await.into_iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    // And a write through the other survivor succeeds.
    let other = (0..3).find(|&i| i != l && i != survivor).unwrap();
    client(&c.nodes[other]).set(set_req("after", raw(b"1"), "")).await.unwrap();
}

// With a majority down, a call fails with UNAVAILABLE and a reason after a bounded wait.
#[tokio::test]
async fn no_quorum_is_unavailable() {
    let mut c = Cluster::start_with(3, &["--request-timeout-ms", "2000"]).await;
    let l = c.leader().await;
    let survivor = (l + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            c.nodes[i].kill();
        }
    }
    let started = std::time::Instant::now();
    let e = client(&c.nodes[survivor]).set(set_req("k", raw(b"1"), "")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(!e.message().is_empty());
    let e = client(&c.nodes[survivor]).get(get_req("k", false)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded wait");
    // Without a leader the node is not ready, and health checking says so.
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let h = HealthClient::new(channel(&c.nodes[survivor]));
    eventually("gRPC health NOT_SERVING", Duration::from_secs(20), || {
        let mut h = h.clone();
        async move {
            let req = HealthCheckRequest { service: "simplecache.v1.CacheService".into() };
            let s = h.check(req).await.ok()?.into_inner().status;
            (s == ServingStatus::NotServing as i32).then_some(())
        }
    })
    .await;
}
