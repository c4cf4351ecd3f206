//! What users of the Go simple-cache (the seed) bring along works unchanged against this
//! server: a gRPC client generated from the seed's .proto files (`pb.CacheService`), the HTTP
//! calls grpc-gateway clients make, and the seed's node config files. Also: HTTP and gRPC behave
//! the same on every edge the two APIs share.

mod common;

use common::{Node, call};
use prost::Message;
use simple_cache_server::pb::seed::{self, cache_service_client::CacheServiceClient as SeedClient};
use simple_cache_server::pb::{self, cache_service_client::CacheServiceClient};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

fn channel(n: &Node) -> Channel {
    Endpoint::from_shared(format!("http://{}", n.grpc))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect_lazy()
}

async fn single() -> (tempfile::TempDir, Node) {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(1, dir.path(), &[]);
    n.wait_ready().await;
    (dir, n)
}

fn string_any(s: &str) -> prost_types::Any {
    prost_types::Any {
        type_url: "type.googleapis.com/google.protobuf.StringValue".into(),
        value: s.to_string().encode_to_vec(),
    }
}

// A client generated from the seed's proto files (package `pb`) calls every method of
// `pb.CacheService`, and what it writes is what the other APIs read, and the reverse.
#[tokio::test]
async fn seed_grpc_client_calls_every_method() {
    let (_d, n) = single().await;
    let mut c = SeedClient::new(channel(&n));
    let set = |key: &str, value: prost_types::Any, expire: &str| seed::SetRequest {
        key: key.into(),
        value: Some(value),
        expire: expire.into(),
    };
    assert!(c.set(set("a1", string_any("x"), "")).await.unwrap().into_inner().success);
    c.set(set("a2", string_any("y"), "1m30s")).await.unwrap();
    c.set(set("b1", string_any("z"), "0")).await.unwrap();
    let got = c.get(seed::GetRequest { key: "a1".into() }).await.unwrap().into_inner();
    assert_eq!(got, seed::GetResponse { value: Some(string_any("x")), found: true });
    let missing = c.get(seed::GetRequest { key: "nope".into() }).await.unwrap().into_inner();
    assert_eq!(missing, seed::GetResponse { value: None, found: false });

    // The TTL the seed client gave is there, as our API reports it.
    let (status, ttl) = call("GET", &n.url("/v1/a2/ttl"), None).await;
    assert_eq!(status, 200);
    let ms = ttl["ttl_ms"].as_u64().unwrap();
    assert!(ms > 60_000 && ms <= 90_000, "{ttl}");

    use seed::search_request::MatchMode;
    let search = |pattern: &str, mode: MatchMode| seed::SearchRequest {
        pattern: pattern.into(),
        mode: mode as i32,
    };
    let keys = c.search(search("a*", MatchMode::Wildcard)).await.unwrap().into_inner().keys;
    assert_eq!(keys, ["a1", "a2"]);
    let keys = c.search(search("^b", MatchMode::Regex)).await.unwrap().into_inner().keys;
    assert_eq!(keys, ["b1"]);

    let r = c.expire_key(seed::ExpireKeyRequest { key: "a2".into() }).await.unwrap().into_inner();
    assert_eq!(r, seed::ExpireKeyResponse { success: true, existed: true });
    let r = c.expire_key(seed::ExpireKeyRequest { key: "a2".into() }).await.unwrap().into_inner();
    assert_eq!(r, seed::ExpireKeyResponse { success: true, existed: false });
    let r = c.del(seed::DelRequest { key: "b1".into() }).await.unwrap().into_inner();
    assert_eq!(r, seed::DelResponse { success: true, existed: true });
    let r = c.del(seed::DelRequest { key: "b1".into() }).await.unwrap().into_inner();
    assert_eq!(r, seed::DelResponse { success: true, existed: false });

    // Values written through the other APIs come back as well-known types.
    assert_eq!(call("PUT", &n.url("/v1/json"), Some(r#"{"value": {"k": [1, "v"]}}"#)).await.0, 200);
    let got = c.get(seed::GetRequest { key: "json".into() }).await.unwrap().into_inner();
    let any = got.value.expect("found");
    assert_eq!(any.type_url, "type.googleapis.com/google.protobuf.Value");
    let v = prost_types::Value::decode(any.value.as_slice()).unwrap();
    let json = format!("{v:?}");
    assert!(json.contains("NumberValue(1.0)") && json.contains("StringValue(\"v\")"), "{json}");
    let (_, read) = call("GET", &n.url("/v1/a1"), None).await;
    assert_eq!(read["encoding"], "any", "the seed's Any reads back over HTTP as an Any: {read}");

    let r = c.reset(seed::ResetRequest {}).await.unwrap().into_inner();
    assert_eq!(r, seed::ResetResponse { success: true, keys_cleared: 2 }, "a1 and json");
    let missing = c.get(seed::GetRequest { key: "a1".into() }).await.unwrap().into_inner();
    assert!(!missing.found);

    // Errors: an empty key and a missing value are INVALID_ARGUMENT naming the problem.
    let e = c.get(seed::GetRequest { key: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().starts_with("bad_key"), "{}", e.message());
    let req = seed::SetRequest { key: "k".into(), value: None, expire: String::new() };
    let e = c.set(req).await.unwrap_err();
    assert!(e.message().starts_with("missing_value"), "{}", e.message());
}

// Server reflection lists both services, so grpcurl finds the seed's names too.
#[tokio::test]
async fn reflection_lists_both_cache_services() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let (_d, n) = single().await;
    let mut r = ServerReflectionClient::new(channel(&n));
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream =
        r.server_reflection_info(tokio_stream::iter([req])).await.unwrap().into_inner();
    let resp = stream.message().await.unwrap().expect("an answer");
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("not a service list: {resp:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in ["pb.CacheService", "simplecache.v1.CacheService"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
}

// grpc-gateway clients send enum names for `mode` and the whole SetRequest (with `key`) as the
// body: both work, and a body `key` that differs from the path's is refused.
#[tokio::test]
async fn seed_http_calls_in_grpc_gateway_form() {
    let (_d, n) = single().await;
    let body = r#"{"key": "gw", "value": "v", "expire": "1m"}"#;
    assert_eq!(call("POST", &n.url("/v1/gw"), Some(body)).await.0, 200);
    let (status, e) = call("POST", &n.url("/v1/other"), Some(body)).await;
    assert_eq!((status, e["code"].as_str()), (400, Some("key_mismatch")), "{e}");
    for mode in ["REGEX", "Regex", "regex", "1"] {
        let (status, r) = call("GET", &n.url(&format!("/v1/search/^g/{mode}")), None).await;
        assert_eq!((status, r["keys"].clone()), (200, serde_json::json!(["gw"])), "{mode}: {r}");
        let (status, r) =
            call("GET", &n.url(&format!("/v1/search?pattern=^g&mode={mode}")), None).await;
        assert_eq!((status, r["keys"].clone()), (200, serde_json::json!(["gw"])), "{mode}: {r}");
    }
    for mode in ["WILDCARD", "wildcard", "0"] {
        let (_, r) = call("GET", &n.url(&format!("/v1/search/g*/{mode}")), None).await;
        assert_eq!(r["keys"], serde_json::json!(["gw"]), "{mode}: {r}");
    }
    let (_, r) = call("DELETE", &n.url("/v1"), None).await;
    assert_eq!(r["keys_cleared"], 1, "proto field names: {r}");

    // The seed's join body: a string id and a URL, or only the URL (the node is asked who it
    // is). Nothing listens there, so both are refused as unreachable, not as malformed.
    let nobody = format!("http://127.0.0.1:{}", common::free_port());
    let body = format!(r#"{{"id": "n2", "addr": "{nobody}"}}"#);
    let (status, e) = call("POST", &n.url("/cluster/join"), Some(&body)).await;
    assert_eq!((status, e["code"].as_str()), (503, Some("member_unreachable")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("node 2 does not answer"), "{e}");
    let body = format!(r#"{{"addr": "{nobody}"}}"#);
    let (status, e) = call("POST", &n.url("/cluster/join"), Some(&body)).await;
    assert_eq!((status, e["code"].as_str()), (503, Some("member_unreachable")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("gives no `id`"), "{e}");
    let (status, e) = call("POST", &n.url("/cluster/leave"), Some(&body)).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("not_member")), "{e}");
}

// Three nodes started from the seed's node files, written exactly as the Go simple-cache's are
// (string ids, `:port` listeners, peers as Raft URLs without ids, its timing keys), form one
// cluster: a seed HTTP write to a follower is forwarded to the leader (whose client address the
// follower learned from its Raft traffic) and reads back on every node.
#[tokio::test]
async fn seed_node_files_form_a_cluster() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<[u16; 4]> = (0..3).map(|_| [0; 4].map(|_| common::free_port())).collect();
    let peers: String = ports.iter().map(|p| format!("  - http://127.0.0.1:{}\n", p[1])).collect();
    let mut nodes = Vec::new();
    for (i, [http, raft, metrics, grpc]) in ports.iter().copied().enumerate() {
        let id = i as u64 + 1;
        let file = format!(
            "mode: distributed\nnode_id: n{id}\ngrpc_addr: \":{grpc}\"\nhttp_addr: \":{http}\"\n\
             raft_http_addr: \":{raft}\"\nmetrics_addr: \":{metrics}\"\npeers:\n{peers}\
             heartbeat_ms: 200\nelection_ms: 1200\nhot_reload: false\n"
        );
        let path = dirs[i].path().join("node.yaml");
        std::fs::write(&path, file).unwrap();
        let addrs = [http, raft, metrics, grpc].map(|p| format!("127.0.0.1:{p}"));
        let args = vec!["--config".to_string(), path.display().to_string()];
        nodes.push(Node::with_args(id, dirs[i].path(), addrs, args));
    }
    for n in &mut nodes {
        n.wait_ready().await;
    }
    let leader = nodes[0].readyz().await["leader"].as_u64().expect("a leader");
    let follower = nodes.iter().find(|n| n.id != leader).unwrap();
    let (status, r) =
        call("POST", &follower.url("/v1/seed"), Some(r#"{"value": "through a follower"}"#)).await;
    assert_eq!(status, 200, "forwarded to the leader: {r}");
    for n in &nodes {
        let (_, r) = call("GET", &n.url("/v1/seed"), None).await;
        assert_eq!(r["value"], "through a follower", "node {}: {r}", n.id);
    }
}

/// One edge case, run through both APIs: what each answered, reduced to comparable facts.
#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(serde_json::Value),
    Err(String),
}

async fn http(n: &Node, method: &str, path: &str, body: Option<&str>) -> Outcome {
    let (status, v) = call(method, &n.url(path), body).await;
    if status == 200 {
        Outcome::Ok(v)
    } else {
        Outcome::Err(v["code"].as_str().unwrap_or("?").to_string())
    }
}

fn grpc<T>(
    r: Result<tonic::Response<T>, tonic::Status>,
    f: impl Fn(T) -> serde_json::Value,
) -> Outcome {
    match r {
        Ok(r) => Outcome::Ok(f(r.into_inner())),
        Err(s) => Outcome::Err(s.message().split(':').next().unwrap_or("?").to_string()),
    }
}

// Every edge the two APIs share answers the same over HTTP and gRPC: limit 0, an empty expire,
// the mode's case and number, an empty key, a key named `search`, a truncated search.
#[tokio::test]
async fn http_and_grpc_agree_on_every_edge() {
    use serde_json::json;
    let (_d, n) = single().await;
    let mut c = CacheServiceClient::new(channel(&n));
    for k in ["e1", "e2", "e3"] {
        assert_eq!(call("PUT", &n.url(&format!("/v1/{k}")), Some(r#"{"value": 1}"#)).await.0, 200);
    }
    let keys = |r: pb::SearchResponse| json!({"keys": r.keys, "truncated": r.truncated});
    let search = |pattern: &str, mode: i32, limit: u32| pb::SearchRequest {
        pattern: pattern.into(),
        mode,
        limit,
        consistency: 0,
    };
    let strip = |o: Outcome| match o {
        Outcome::Ok(v) => Outcome::Ok(json!({"keys": v["keys"], "truncated": v["truncated"]})),
        e => e,
    };
    let cases: Vec<(&str, Outcome, Outcome)> = vec![
        (
            "limit 0 means the default",
            strip(http(&n, "GET", "/v1/search?pattern=e*&limit=0", None).await),
            grpc(c.search(search("e*", 0, 0)).await, keys),
        ),
        (
            "a limit that cuts the result says so",
            strip(http(&n, "GET", "/v1/search?pattern=e*&limit=2", None).await),
            grpc(c.search(search("e*", 0, 2)).await, keys),
        ),
        (
            "a limit the result fits in",
            strip(http(&n, "GET", "/v1/search?pattern=e*&limit=3", None).await),
            grpc(c.search(search("e*", 0, 3)).await, keys),
        ),
        (
            "mode by number",
            strip(http(&n, "GET", "/v1/search?pattern=^e[12]&mode=1", None).await),
            grpc(c.search(search("^e[12]", 1, 0)).await, keys),
        ),
        (
            "mode in capitals",
            strip(http(&n, "GET", "/v1/search/^e3/REGEX", None).await),
            grpc(c.search(search("^e3", 1, 0)).await, keys),
        ),
        (
            "an unknown mode",
            strip(http(&n, "GET", "/v1/search?pattern=e&mode=7", None).await),
            grpc(c.search(search("e", 7, 0)).await, keys),
        ),
        (
            "an empty expire means no expiry",
            http(&n, "PUT", "/v1/noexp", Some(r#"{"value": 2, "expire": ""}"#)).await,
            grpc(
                c.set(pb::SetRequest {
                    key: "noexp".into(),
                    data: Some(pb::set_request::Data::JsonValue("2".into())),
                    expire: String::new(),
                    ..Default::default()
                })
                .await,
                |r| json!({"success": r.success}),
            ),
        ),
        (
            "an empty key: get",
            http(&n, "GET", "/v1/", None).await,
            grpc(c.get(pb::GetRequest { key: String::new(), consistency: 0 }).await, |_| json!({})),
        ),
        (
            "an empty key: set",
            http(&n, "PUT", "/v1/keys/", Some(r#"{"value": 1}"#)).await,
            grpc(
                c.set(pb::SetRequest {
                    key: String::new(),
                    data: Some(pb::set_request::Data::JsonValue("1".into())),
                    expire: String::new(),
                    ..Default::default()
                })
                .await,
                |_| json!({}),
            ),
        ),
        (
            "an empty key: delete",
            http(&n, "DELETE", "/v1/", None).await,
            grpc(c.del(pb::DelRequest { key: String::new(), ..Default::default() }).await, |_| {
                json!({})
            }),
        ),
        (
            "a key named search: set",
            http(&n, "PUT", "/v1/keys/search", Some(r#"{"value": "s"}"#)).await,
            grpc(
                c.set(pb::SetRequest {
                    key: "search".into(),
                    data: Some(pb::set_request::Data::JsonValue("\"s\"".into())),
                    expire: String::new(),
                    ..Default::default()
                })
                .await,
                |r| json!({"success": r.success}),
            ),
        ),
        (
            "a key named search: get",
            match http(&n, "GET", "/v1/keys/search", None).await {
                Outcome::Ok(v) => Outcome::Ok(json!({"found": v["found"], "value": v["value"]})),
                e => e,
            },
            grpc(c.get(pb::GetRequest { key: "search".into(), consistency: 0 }).await, |r| {
                let value = match r.data {
                    Some(pb::get_response::Data::JsonValue(t)) => {
                        serde_json::from_str::<serde_json::Value>(&t).unwrap()
                    }
                    other => json!(format!("{other:?}")),
                };
                json!({"found": r.found, "value": value})
            }),
        ),
    ];
    for (what, over_http, over_grpc) in cases {
        assert_eq!(over_http, over_grpc, "{what}");
        if what.contains("empty key") {
            assert_eq!(over_http, Outcome::Err("bad_key".into()), "{what}");
        }
    }
    // The facts behind the comparisons, so agreeing on a wrong answer fails too.
    let (_, r) = call("GET", &n.url("/v1/search?pattern=e*&limit=2"), None).await;
    assert_eq!(r, json!({"keys": ["e1", "e2"], "truncated": true}));
    let (_, r) = call("GET", &n.url("/v1/search?pattern=e*&limit=0"), None).await;
    assert_eq!(r, json!({"keys": ["e1", "e2", "e3"], "truncated": false}));
    let (_, r) = call("GET", &n.url("/v1/keys/noexp/ttl"), None).await;
    assert_eq!(r, json!({"found": true, "ttl": "none"}));
}
