//! The client HTTP/JSON front end (the seed's routes and shapes), the cluster endpoints and
//! health. The request logic lives in `service`, shared with the gRPC front end; this module
//! only turns HTTP requests into service calls and results into JSON.
//!
//! Every node accepts every request. Reads are linearizable by default (ReadIndex, on any node);
//! `?consistency=stale` reads the local state. Writes on a follower are forwarded to the leader
//! by the service (typed, to `POST /internal/v1/write`); cluster changes on a follower are
//! proxied to the leader's client address (learned from the membership). While no leader is
//! known, a request waits for one until its deadline and then fails with 503 and a JSON reason.
//!
//! Values written over gRPC as raw bytes or a protobuf `Any` (see `value`) read back as
//! `{"found": true, "value": "<base64>", "encoding": "base64"}` and
//! `{"found": true, "value": {"@type": "<type_url>", "value": "<base64>"}, "encoding": "any"}`;
//! JSON values read back as the JSON they are, without `encoding`.
//!
//! TTL route (our design): `GET /v1/{key}/ttl` -> `{"found": true, "ttl_ms": n}` for a key that
//! expires, `{"found": true, "ttl": "none"}` for one that does not, and `{"found": false}` (200,
//! like `GET /v1/{key}`) for a missing or expired key.
//!
//! A key is one path segment (percent-encode `/` as `%2F`). `/v1/{key}` is the seed's route;
//! `/v1/keys/{key}` (with `/expire` and `/ttl`) reaches every key name, `search` included,
//! which `/v1/{key}` cannot because the search routes take precedence.

use crate::error::ApiError;
use crate::node_loop::{Input, Status};
use crate::service::{
    Caller, Consistency, FORWARD_PATH, FORWARDED_HEADER, ForwardedWrite, Item, Service,
    WriteOptions,
};
use crate::transport::MemberAddr;
use crate::value::StoredValue;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use simple_cache_core::cache::{
    Batch, Command, Compare, ExpireWhen, KeyCompare, KeyOp, KeyOutcome, KeyWrite, Revisions,
    SearchMode, TtlStatus,
};
use simple_cache_core::raft::Role;
use simple_cache_core::{MembershipChange, NodeId};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant as TokioInstant;

/// The client router. Layers: metrics, overall timeout, body limit, bounded concurrency.
pub fn router(svc: Service) -> Router {
    let cfg = svc.cfg.clone();
    // A forwarded write carries the value in base64 (4/3 of its size) inside a JSON object.
    let forward_body_max = (cfg.max_value_bytes + cfg.max_key_bytes) / 3 * 4 + 4096;
    Router::new()
        .route("/v1", delete(reset))
        // `/v1/watch` and `/v1/batch` also name the keys `watch` and `batch` (see `named_key`).
        .route("/v1/watch", get(watch).merge(named_key::set_del("watch")))
        .route(
            "/v1/batch",
            post(batch).merge(named_key::get("batch")).merge(named_key::set_del("batch")),
        )
        .route("/v1/search", get(search_query))
        .route("/v1/search/{pattern}", get(search_path))
        .route("/v1/search/{pattern}/{mode}", get(search_path_mode))
        .route("/v1/{key}", get(get_key).post(set_key).put(set_key).delete(del_key))
        .route("/v1/{key}/expire", post(expire_key))
        .route("/v1/{key}/ttl", get(ttl_key))
        .route("/v1/{key}/incr", post(incr))
        .route("/v1/{key}/decr", post(decr))
        .route("/v1/{key}/append", post(append_key))
        .route("/v1/{key}/getdel", post(getdel_key))
        .route("/v1/{key}/persist", post(persist_key))
        // The same operations for every key name, `search` included.
        .route("/v1/keys/{key}", get(get_key).post(set_key).put(set_key).delete(del_key))
        .route("/v1/keys/{key}/expire", post(expire_key))
        .route("/v1/keys/{key}/ttl", get(ttl_key))
        .route("/v1/keys/{key}/incr", post(incr))
        .route("/v1/keys/{key}/decr", post(decr))
        .route("/v1/keys/{key}/append", post(append_key))
        .route("/v1/keys/{key}/getdel", post(getdel_key))
        .route("/v1/keys/{key}/persist", post(persist_key))
        // An empty key: the same 400 as over gRPC, not "no route".
        .route("/v1/", axum::routing::any(empty_key))
        .route("/v1/keys/", axum::routing::any(empty_key))
        .route("/v1//expire", axum::routing::any(empty_key))
        .route("/v1//ttl", axum::routing::any(empty_key))
        .route(
            FORWARD_PATH,
            post(forwarded_write).layer(axum::extract::DefaultBodyLimit::max(
                forward_body_max.max(cfg.max_body_bytes),
            )),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/version", get(crate::version::handler))
        .route("/admin/snapshot", get(crate::backup_api::snapshot))
        .route("/cluster/peers", get(cluster_peers))
        .route("/cluster/join", post(cluster_join))
        .route("/cluster/leave", post(cluster_leave))
        .route("/cluster/transfer-leader", post(cluster_transfer))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(svc.clone(), observe))
        // The body limit applies while the body is read by the `Bytes` extractor, which maps an
        // overflow to 413 (see `body`).
        .layer(axum::extract::DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(cfg.max_concurrent_requests))
        .with_state(svc)
}

// ----- middleware -----

/// Records the request count and latency per operation, and bounds the whole request (reading
/// the body included) by the request timeout plus a margin, so a slow client cannot hold a
/// connection's handler forever.
async fn observe(State(svc): State<Service>, req: Request, next: Next) -> Response {
    let op = op_name(req.method(), req.extensions().get::<MatchedPath>().map(|p| p.as_str()));
    let started = TokioInstant::now();
    let limit = Duration::from_millis(svc.limits.request_timeout_ms()) + Duration::from_secs(1);
    let resp = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request did not complete in time",
        )
        .into_response(),
    };
    svc.observe("http", op, resp.status().as_u16(), started);
    resp
}

fn op_name(method: &Method, path: Option<&str>) -> &'static str {
    match (method.as_str(), path.unwrap_or("")) {
        ("GET", "/v1/{key}" | "/v1/keys/{key}") => "get",
        ("POST" | "PUT", "/v1/{key}" | "/v1/keys/{key}") => "set",
        ("DELETE", "/v1/{key}" | "/v1/keys/{key}") => "delete",
        ("DELETE", "/v1") => "reset",
        ("POST", "/v1/{key}/expire" | "/v1/keys/{key}/expire") => "expire",
        ("GET", "/v1/{key}/ttl" | "/v1/keys/{key}/ttl") => "ttl",
        ("POST", "/v1/{key}/incr" | "/v1/keys/{key}/incr") => "incr",
        ("POST", "/v1/{key}/decr" | "/v1/keys/{key}/decr") => "decr",
        ("POST", "/v1/{key}/append" | "/v1/keys/{key}/append") => "append",
        ("POST", "/v1/{key}/getdel" | "/v1/keys/{key}/getdel") => "getdel",
        ("POST", "/v1/{key}/persist" | "/v1/keys/{key}/persist") => "persist",
        ("POST", FORWARD_PATH) => "forward",
        ("POST", "/v1/batch") => "batch",
        ("GET", "/v1/watch") => "watch",
        ("PUT" | "POST", "/v1/watch") => "set",
        ("DELETE", "/v1/watch") => "delete",
        ("GET", "/v1/batch") => "get",
        ("PUT", "/v1/batch") => "set",
        ("DELETE", "/v1/batch") => "delete",
        (_, p) if p.starts_with("/v1/search") => "search",
        (_, p) if p.starts_with("/cluster") => "cluster",
        (_, "/healthz" | "/readyz") => "health",
        _ => "other",
    }
}

// ----- extraction helpers: every rejection becomes an ApiError -----

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v).map_err(|e| ApiError::bad_request("bad_path", e.body_text()))
}

fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
}

fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is too large",
            )
        } else {
            ApiError::bad_request("bad_body", e.body_text())
        }
    })
}

/// Linearizable unless `consistency=stale`.
fn consistency(q: &HashMap<String, String>) -> Result<Consistency, ApiError> {
    match q.get("consistency").map(String::as_str) {
        None | Some("linearizable") | Some("strong") => Ok(Consistency::Linearizable),
        Some("stale") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::bad_request(
            "bad_consistency",
            format!("consistency must be `linearizable` or `stale`, not `{other}`"),
        )),
    }
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn caller(headers: &HeaderMap) -> Caller {
    Caller {
        authorization: authorization(headers).map(str::to_string),
        forwarded: headers.contains_key(FORWARDED_HEADER),
    }
}

// ----- client routes -----

/// The JSON answer for a found value, in the form it was stored in.
fn found_json(v: StoredValue) -> Result<Value, ApiError> {
    Ok(match v {
        StoredValue::Json(text) => {
            let value: Value = serde_json::from_slice(&text)
                .map_err(|e| ApiError::internal(format!("stored value is not JSON: {e}")))?;
            json!({ "value": value, "found": true })
        }
        StoredValue::Raw(b) => {
            json!({ "value": BASE64.encode(&b), "found": true, "encoding": "base64" })
        }
        StoredValue::Any(a) => json!({
            "value": { "@type": a.type_url, "value": BASE64.encode(&a.value) },
            "found": true,
            "encoding": "any",
        }),
    })
}

async fn get_key(
    State(svc): State<Service>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    svc.check_key(&key)?;
    let c = consistency(&query(q)?)?;
    match svc.get_item(&key, c).await? {
        Some(item) => {
            let mut out = found_json(item.value)?;
            revision_fields(&mut out, Some(item.revisions));
            Ok(Json(out))
        }
        None => Ok(Json(json!({ "found": false }))),
    }
}

/// A parsed set request.
#[derive(Debug)]
pub(crate) struct SetBody {
    pub value: StoredValue,
    pub ttl_ms: Option<u64>,
    pub opts: WriteOptions,
}

/// Parses `{"value": <any JSON>, "expire": "1m30s"?, "key": "<the path's key>"?}` strictly,
/// with the conditions and options `if_absent`, `if_present`, `if_revision`,
/// `return_previous` and `keep_ttl`: `key` is what grpc-gateway clients send (the whole
/// `SetRequest`), and must name the key of the path; an empty `expire` means no expiry, as
/// over gRPC.
pub(crate) fn parse_set_body(path_key: &str, bytes: &[u8]) -> Result<SetBody, ApiError> {
    let mut obj = json_body(bytes, "a `value` field")?;
    let value = obj
        .remove("value")
        .ok_or_else(|| ApiError::bad_request("missing_value", "the body has no `value` field"))?;
    match obj.remove("key") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) if k == path_key => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "key_mismatch",
                format!(
                    "the body's `key` ({other}) differs from the key in the path (`{path_key}`)"
                ),
            ));
        }
    }
    let ttl_ms = match obj.remove("expire") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Service::ttl_ms_from_expire(&s)?,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_duration",
                format!("`expire` must be a duration string such as \"1m30s\", not {other}"),
            ));
        }
    };
    let opts = WriteOptions {
        if_absent: flag(&mut obj, "if_absent")?,
        if_present: flag(&mut obj, "if_present")?,
        if_revision: revision(&mut obj, "if_revision")?,
        return_previous: flag(&mut obj, "return_previous")?,
        keep_ttl: flag(&mut obj, "keep_ttl")?,
    };
    no_more_fields(
        &obj,
        "`value`, `expire`, `key`, `if_absent`, `if_present`, `if_revision`, `return_previous`, \
         `keep_ttl`",
    )?;
    Ok(SetBody { value: StoredValue::json(&value), ttl_ms, opts })
}

/// The body as a JSON object; an empty body is an empty object.
fn json_body(bytes: &[u8], expected: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}"))
    })?;
    match v {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::bad_request(
            "bad_body",
            format!("the body must be a JSON object with {expected}"),
        )),
    }
}

fn no_more_fields(obj: &serde_json::Map<String, Value>, expected: &str) -> Result<(), ApiError> {
    match obj.keys().next() {
        Some(k) => Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown field `{k}` (expected {expected})"),
        )),
        None => Ok(()),
    }
}

fn flag(obj: &mut serde_json::Map<String, Value>, name: &str) -> Result<bool, ApiError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(other) => Err(ApiError::bad_request(
            "bad_options",
            format!("`{name}` must be true or false, not {other}"),
        )),
    }
}

fn revision(obj: &mut serde_json::Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "bad_options",
                format!("`{name}` must be a revision (an integer from 0), not {v}"),
            )
        }),
    }
}

/// The JSON fields of a key's revisions.
fn revision_fields(out: &mut Value, r: Option<Revisions>) {
    if let Some(r) = r {
        out["create_revision"] = json!(r.create);
        out["mod_revision"] = json!(r.modified);
        out["version"] = json!(r.version);
    }
}

/// The answer to a conditional or atomic write: `applied`, the revision it applied at, the
/// key's revisions afterwards, and the previous value if asked for.
fn outcome_json(o: KeyOutcome) -> Result<Value, ApiError> {
    let mut out = json!({
        "success": true,
        "applied": o.applied,
        "existed": o.existed,
        "revision": o.revision,
    });
    revision_fields(&mut out, o.current);
    if let Some(p) = o.previous {
        let item = Item::of(p)?;
        let mut previous = found_json(item.value)?;
        revision_fields(&mut previous, Some(item.revisions));
        out["previous"] = previous;
    }
    Ok(out)
}

async fn set_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    svc.check_key(&key)?;
    let SetBody { value, ttl_ms, opts } = parse_set_body(&key, &body(b)?)?;
    if !opts.any() {
        let revision = svc.set(&caller(&headers), key, &value, ttl_ms).await?;
        return Ok(Json(json!({ "success": true, "applied": true, "revision": revision })));
    }
    let o = svc.set_with(&caller(&headers), key, &value, ttl_ms, &opts).await?;
    Ok(Json(outcome_json(o)?))
}

async fn del_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    let mut q = query(q)?;
    let opts = WriteOptions {
        if_revision: match q.remove("if_revision") {
            None => None,
            Some(r) => Some(r.parse().map_err(|_| {
                ApiError::bad_request(
                    "bad_options",
                    format!("`if_revision` must be a revision (an integer from 0), not `{r}`"),
                )
            })?),
        },
        return_previous: match q.remove("return_previous").as_deref() {
            None | Some("false") => false,
            Some("true" | "") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "bad_options",
                    format!("`return_previous` must be true or false, not `{other}`"),
                ));
            }
        },
        ..WriteOptions::default()
    };
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown query parameter `{k}` (expected `if_revision`, `return_previous`)"),
        ));
    }
    if !opts.any() {
        let (existed, revision) = svc.del(&caller(&headers), key).await?;
        return Ok(Json(json!({ "success": true, "existed": existed, "revision": revision })));
    }
    let o = svc.del_with(&caller(&headers), key, &opts).await?;
    Ok(Json(outcome_json(o)?))
}

/// `POST /v1/{key}/expire`: with no body, expires the key now; with
/// `{"expire": "10s", "when": "nx|xx|gt|lt"?}`, gives it a deadline from now (Redis `EXPIRE`).
async fn expire_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    let mut obj = json_body(&body(b)?, "`expire` and `when`")?;
    if obj.is_empty() {
        let existed = svc.expire(&caller(&headers), key).await?;
        return Ok(Json(json!({ "success": true, "existed": existed })));
    }
    let ttl_ms = match obj.remove("expire") {
        Some(Value::String(s)) => Service::expire_ms(&s)?,
        other => {
            return Err(ApiError::bad_request(
                "bad_duration",
                format!(
                    "`expire` must be a duration string such as \"10s\" (\"0s\" removes the \
                     key), not {}",
                    other.unwrap_or(Value::Null)
                ),
            ));
        }
    };
    let when = match obj.remove("when") {
        None | Some(Value::Null) => ExpireWhen::Always,
        Some(Value::String(w)) => expire_when(Some(&w))?,
        Some(other) => return Err(bad_when(&other.to_string())),
    };
    no_more_fields(&obj, "`expire`, `when`")?;
    let o = svc.expire_in(&caller(&headers), key, ttl_ms, when).await?;
    Ok(Json(outcome_json(o)?))
}

/// The bytes of an append: the text's own, or decoded from base64.
fn append_bytes(text: String, encoding: Option<String>) -> Result<Bytes, ApiError> {
    match encoding.as_deref() {
        None => Ok(Bytes::from(text.into_bytes())),
        Some("base64") => Ok(Bytes::from(BASE64.decode(text.as_bytes()).map_err(|e| {
            ApiError::bad_request("bad_body", format!("`value` is not base64: {e}"))
        })?)),
        Some(other) => Err(ApiError::bad_request(
            "bad_encoding",
            format!("`encoding` may only be \"base64\", not {other}"),
        )),
    }
}

/// Redis's EXPIRE options by name.
fn expire_when(w: Option<&str>) -> Result<ExpireWhen, ApiError> {
    Ok(match w.map(str::to_ascii_lowercase).as_deref() {
        None | Some("always") => ExpireWhen::Always,
        Some("nx") => ExpireWhen::NoDeadline,
        Some("xx") => ExpireWhen::HasDeadline,
        Some("gt") => ExpireWhen::Later,
        Some("lt") => ExpireWhen::Sooner,
        Some(other) => return Err(bad_when(other)),
    })
}

fn bad_when(w: &str) -> ApiError {
    ApiError::bad_request(
        "bad_when",
        format!("`when` must be one of `nx`, `xx`, `gt`, `lt` (Redis's EXPIRE options), not {w}"),
    )
}

/// `POST /v1/{key}/incr` and `/decr` with `{"delta": N}` (default 1).
async fn incr_key(
    svc: &Service,
    headers: &HeaderMap,
    key: String,
    b: Bytes,
    sign: i64,
) -> Result<Json<Value>, ApiError> {
    let mut obj = json_body(&b, "an optional `delta`")?;
    let delta = match obj.remove("delta") {
        None | Some(Value::Null) => 1,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(
                "bad_delta",
                format!("`delta` must be a signed 64-bit integer, not {v}"),
            )
        })?,
    };
    no_more_fields(&obj, "`delta`")?;
    let delta = delta.checked_mul(sign).ok_or_else(|| {
        ApiError::bad_request("bad_delta", "`delta` cannot be negated within 64 bits")
    })?;
    let o = svc.incr(&caller(headers), key, delta).await?;
    let mut out = outcome_json(o.clone())?;
    out["value"] = json!(o.number);
    Ok(Json(out))
}

async fn incr(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    incr_key(&svc, &headers, path(key)?, body(b)?, 1).await
}

async fn decr(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    incr_key(&svc, &headers, path(key)?, body(b)?, -1).await
}

/// `POST /v1/{key}/append` with `{"value": "text"}` or `{"value": "<base64>", "encoding":
/// "base64"}`: appends the bytes to a raw value.
async fn append_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    let mut obj = json_body(&body(b)?, "a `value` string")?;
    let Some(Value::String(text)) = obj.remove("value") else {
        return Err(ApiError::bad_request("missing_value", "the body needs a `value` string"));
    };
    let encoding = match obj.remove("encoding") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e),
        Some(other) => Some(other.to_string()),
    };
    let bytes = append_bytes(text, encoding)?;
    no_more_fields(&obj, "`value`, `encoding`")?;
    let o = svc.append(&caller(&headers), key, bytes).await?;
    let mut out = outcome_json(o.clone())?;
    out["length"] = json!(o.number);
    Ok(Json(out))
}

/// `POST /v1/{key}/getdel`: deletes the key and returns its value.
async fn getdel_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let opts = WriteOptions { return_previous: true, ..WriteOptions::default() };
    let o = svc.del_with(&caller(&headers), path(key)?, &opts).await?;
    Ok(Json(outcome_json(o)?))
}

/// One compare of `POST /v1/batch`: a key and exactly one of `revision` (its `mod_revision`;
/// 0: absent), `absent`, `present`, `value` (the JSON it holds).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchCompareBody {
    key: String,
    revision: Option<u64>,
    #[serde(default)]
    absent: bool,
    #[serde(default)]
    present: bool,
    value: Option<Value>,
}

/// One operation of `POST /v1/batch`.
#[derive(serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum BatchOpBody {
    Set {
        key: String,
        value: Value,
        expire: Option<String>,
        #[serde(default)]
        keep_ttl: bool,
    },
    Delete {
        key: String,
    },
    Incr {
        key: String,
        delta: Option<i64>,
    },
    Append {
        key: String,
        value: String,
        encoding: Option<String>,
    },
    Persist {
        key: String,
    },
    Expire {
        key: String,
        expire: String,
        when: Option<String>,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    #[serde(default)]
    compare: Vec<BatchCompareBody>,
    #[serde(default)]
    then: Vec<BatchOpBody>,
    #[serde(default, rename = "else")]
    otherwise: Vec<BatchOpBody>,
}

fn batch_compare(c: BatchCompareBody) -> Result<KeyCompare, ApiError> {
    let compare = match (c.revision, c.absent, c.present, c.value) {
        (Some(r), false, false, None) => Compare::Revision(r),
        (None, true, false, None) => Compare::Absent,
        (None, false, true, None) => Compare::Present,
        (None, false, false, Some(v)) => Compare::Value(StoredValue::json(&v).encode()),
        _ => {
            return Err(ApiError::bad_request(
                "bad_compare",
                format!(
                    "a compare of `{}` needs exactly one of `revision`, `absent`, `present`, `value`",
                    c.key
                ),
            ));
        }
    };
    Ok(KeyCompare { key: c.key, compare })
}

fn batch_op(o: BatchOpBody) -> Result<KeyWrite, ApiError> {
    let write = |key: String, op| Ok(Command::key_write(key, op));
    match o {
        BatchOpBody::Set { key, value, expire, keep_ttl } => {
            let ttl_ms = match expire {
                None => None,
                Some(e) => Service::ttl_ms_from_expire(&e)?,
            };
            let ttl = Service::set_ttl(ttl_ms, keep_ttl)?;
            write(key, KeyOp::Set { value: StoredValue::json(&value).encode(), ttl })
        }
        BatchOpBody::Delete { key } => write(key, KeyOp::Del),
        BatchOpBody::Incr { key, delta } => write(key, KeyOp::Incr { delta: delta.unwrap_or(1) }),
        BatchOpBody::Append { key, value, encoding } => {
            write(key, KeyOp::Append { bytes: append_bytes(value, encoding)? })
        }
        BatchOpBody::Persist { key } => write(key, KeyOp::Persist),
        BatchOpBody::Expire { key, expire, when } => {
            let ttl_ms = Service::expire_ms(&expire)?;
            write(key, KeyOp::Expire { ttl_ms, when: expire_when(when.as_deref())? })
        }
    }
}

/// `POST /v1/batch`: `{"compare": [...], "then": [...], "else": [...]}`, applied at one
/// revision: all of `then` if every compare holds, else all of `else`; nothing if an operation
/// is refused (409 or 507 naming it).
async fn batch(
    State(svc): State<Service>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body: BatchBody = serde_json::from_slice(&body(b)?)
        .map_err(|e| ApiError::bad_request("bad_body", format!("the batch does not parse: {e}")))?;
    let batch = Batch {
        compares: body.compare.into_iter().map(batch_compare).collect::<Result<_, _>>()?,
        then: body.then.into_iter().map(batch_op).collect::<Result<_, _>>()?,
        otherwise: body.otherwise.into_iter().map(batch_op).collect::<Result<_, _>>()?,
    };
    let o = svc.batch(&caller(&headers), batch).await?;
    let results = o.results.into_iter().map(outcome_json).collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({
        "success": true,
        "succeeded": o.succeeded,
        "revision": o.revision,
        "results": results,
    })))
}

/// A change event as JSON: `type` (`put`, `delete`, `reset`), `key`, `revision`; a put also has
/// the value (in its stored form, as a read shows it), the key's revisions and its deadline
/// (`expires_at_ms`, cluster time); a delete its `cause` (`deleted`, `expired`, `evicted`).
fn event_json(e: &simple_cache_core::watch::Event) -> Value {
    use simple_cache_core::watch::EventKind;
    match &e.kind {
        EventKind::Put { value, revisions, expires_at } => {
            let mut out = StoredValue::decode(value.clone())
                .ok()
                .and_then(|v| found_json(v).ok())
                .unwrap_or_else(|| json!({}));
            if let Value::Object(o) = &mut out {
                o.remove("found");
            }
            out["type"] = json!("put");
            out["key"] = json!(e.key);
            out["revision"] = json!(e.revision);
            revision_fields(&mut out, Some(*revisions));
            if let Some(at) = expires_at {
                out["expires_at_ms"] = json!(at.as_millis());
            }
            out
        }
        EventKind::Delete { cause } => json!({
            "type": "delete", "key": e.key, "revision": e.revision, "cause": cause.name(),
        }),
        EventKind::Reset => json!({ "type": "reset", "revision": e.revision }),
    }
}

/// `GET /v1/watch?key=K` (or `?prefix=P`), with `start_revision=N` (or SSE's `Last-Event-ID`:
/// resume after it) and `format=ndjson` (or `Accept: application/x-ndjson`): a stream of the
/// changes, as Server-Sent Events by default. The first message, `created`, gives the first
/// revision the stream can deliver; a `cancelled` message ends it with the reason and the
/// revision to resume from.
async fn watch(
    State(svc): State<Service>,
    headers: HeaderMap,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    use simple_cache_core::watch::Filter;
    use tokio_stream::StreamExt as _;
    let mut q = query(q)?;
    if !q.contains_key("key") && !q.contains_key("prefix") {
        // No watch asked for: a read of the key named `watch`, as before watches existed.
        return get_key(State(svc), Ok(Path("watch".to_string())), Ok(Query(q)))
            .await
            .map(IntoResponse::into_response);
    }
    let filter = match (q.remove("key"), q.remove("prefix")) {
        (Some(k), None) => Filter::Key(k),
        (None, Some(p)) => Filter::Prefix(p),
        _ => {
            return Err(ApiError::bad_request(
                "bad_watch",
                "give exactly one of `key` and `prefix` (an empty prefix watches every key)",
            ));
        }
    };
    let parse = |name: &str, v: &str| {
        v.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request("bad_revision", format!("`{name}` must be a revision, not `{v}`"))
        })
    };
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let start = match (q.remove("start_revision"), last_event_id) {
        (Some(s), _) => Some(parse("start_revision", &s)?),
        (None, Some(id)) => Some(parse("Last-Event-ID", id)?.saturating_add(1)),
        (None, None) => None,
    };
    let accept_ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    let ndjson = match q.remove("format").as_deref() {
        None => accept_ndjson,
        Some("ndjson") => true,
        Some("sse") => false,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_format",
                format!("`format` is `sse` or `ndjson`, not `{other}`"),
            ));
        }
    };
    if let Some(k) = q.keys().next() {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!(
                "unknown query parameter `{k}` (expected `key` or `prefix`, `start_revision`, `format`)"
            ),
        ));
    }
    let opened = svc.watch(filter, start).await?;
    let created = json!({ "type": "created", "start_revision": opened.start_revision });
    let messages = tokio_stream::wrappers::ReceiverStream::new(opened.rx).map(|m| match m {
        crate::watch::WatchMsg::Event(e, _charge) => (Some(e.revision), event_json(&e)),
        crate::watch::WatchMsg::Cancelled { reason, resume_from } => {
            (None, json!({ "type": "cancelled", "reason": reason, "resume_from": resume_from }))
        }
    });
    let all = tokio_stream::once((None, created)).chain(messages);
    if ndjson {
        let lines = all.map(|(_, v)| {
            let mut line = serde_json::to_vec(&v).unwrap_or_default();
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
        let mut resp = axum::body::Body::from_stream(lines).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/x-ndjson"));
        return Ok(resp);
    }
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let events = all.map(|(id, v)| {
        let kind = v["type"].as_str().unwrap_or("message").to_string();
        let mut e = SseEvent::default().event(kind).data(v.to_string());
        if let Some(id) = id {
            e = e.id(id.to_string());
        }
        Ok::<_, std::convert::Infallible>(e)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// `POST /v1/{key}/persist`: drops the key's deadline.
async fn persist_key(
    State(svc): State<Service>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let o = svc.persist(&caller(&headers), path(key)?).await?;
    Ok(Json(outcome_json(o)?))
}

async fn reset(State(svc): State<Service>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let cleared = svc.reset(&caller(&headers)).await?;
    Ok(Json(json!({ "success": true, "keys_cleared": cleared })))
}

/// A write a follower forwarded (see `service`): applied here, never forwarded again.
async fn forwarded_write(
    State(svc): State<Service>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let w: ForwardedWrite = serde_json::from_slice(&b)
        .map_err(|e| ApiError::bad_request("bad_body", format!("not a forwarded write: {e}")))?;
    let r = svc.handle_forwarded(authorization(&headers).map(str::to_string), w).await?;
    Ok(Json(serde_json::to_value(r).expect("a result serializes")))
}

async fn ttl_key(
    State(svc): State<Service>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    svc.check_key(&key)?;
    let c = consistency(&query(q)?)?;
    Ok(Json(match svc.ttl(&key, c).await? {
        TtlStatus::Remaining { ms } => json!({ "found": true, "ttl_ms": ms }),
        TtlStatus::NoExpiry => json!({ "found": true, "ttl": "none" }),
        TtlStatus::Missing => json!({ "found": false }),
    }))
}

/// A search mode by name in any case (`wildcard`, `glob`, `regex`; grpc-gateway sends the enum
/// names `WILDCARD` and `REGEX`) or by the enum's number (0, 1), as gRPC takes it.
pub(crate) fn parse_mode(s: Option<&str>) -> Result<SearchMode, ApiError> {
    let Some(s) = s else { return Ok(SearchMode::Wildcard) };
    match s.to_ascii_lowercase().as_str() {
        "wildcard" | "glob" | "0" => Ok(SearchMode::Wildcard),
        "regex" | "1" => Ok(SearchMode::Regex),
        _ => Err(ApiError::bad_request(
            "bad_mode",
            format!("mode must be `wildcard` (0) or `regex` (1), in any case, not `{s}`"),
        )),
    }
}

async fn search(
    svc: &Service,
    pattern: &str,
    mode: SearchMode,
    q: &HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    // 0 means the default, as over gRPC (where an unset limit reads as 0).
    let limit = match q.get("limit") {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "bad_limit",
                    format!("limit must be a non-negative integer, not `{l}`"),
                ));
            }
        },
    };
    let found = svc.search(pattern, mode, limit, consistency(q)?).await?;
    Ok(Json(json!({ "keys": found.keys, "truncated": found.truncated })))
}

async fn search_query(
    State(svc): State<Service>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let pattern = q.get("pattern").ok_or_else(|| {
        ApiError::bad_request("missing_pattern", "the `pattern` query parameter is required")
    })?;
    let mode = parse_mode(q.get("mode").map(String::as_str))?;
    search(&svc, pattern, mode, &q).await
}

async fn search_path(
    State(svc): State<Service>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let pattern = path(p)?;
    let q = query(q)?;
    let mode = parse_mode(q.get("mode").map(String::as_str))?;
    search(&svc, &pattern, mode, &q).await
}

async fn search_path_mode(
    State(svc): State<Service>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (pattern, mode) = path(p)?;
    let mode = parse_mode(Some(&mode))?;
    search(&svc, &pattern, mode, &query(q)?).await
}

async fn empty_key() -> ApiError {
    ApiError::bad_request("bad_key", "the key must not be empty")
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

async fn readyz(State(st): State<Service>) -> Response {
    let s = st.status.borrow().clone();
    let body = json!({
        "ready": s.is_ready(),
        "role": role_name(s.role),
        "node_id": s.id.0,
        "leader": s.leader.map(|l| l.0),
        "term": s.term.0,
        "commit_index": s.commit_index.0,
        "last_applied": s.last_applied.0,
        "keys": s.keys,
        "memory": {
            "used_bytes": s.used_bytes,
            "max_memory_bytes": s.limits.max_memory_bytes,
            "max_keys": s.limits.max_keys,
            "eviction_policy": s.limits.policy.name(),
        },
    });
    if s.is_ready() {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let mut body = body;
        body["code"] = json!("not_ready");
        body["error"] = json!(if s.stopped {
            "the node is shutting down"
        } else if s.leader.is_none() {
            "no leader is known"
        } else {
            "the node has not applied everything known committed"
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

// ----- cluster routes -----

/// What a follower needs to proxy a cluster request to the leader.
struct Forwardable<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: Bytes,
}

/// Proxies a cluster request to the leader's client address and relays its answer.
async fn forward(
    st: &Service,
    fwd: &Forwardable<'_>,
    deadline: TokioInstant,
) -> Result<Response, ApiError> {
    if fwd.headers.contains_key(FORWARDED_HEADER) {
        // The sender thought we lead; we do not: let it retry rather than bounce the request.
        return Err(ApiError::unavailable(
            "not_leader",
            "forwarded to a node that is not the leader",
        ));
    }
    let (leader, addr) = {
        let s = st.status.borrow();
        (s.leader, s.leader_http_addr())
    };
    let Some(addr) = addr else {
        return Err(ApiError::unavailable(
            "leader_address_unknown",
            format!(
                "this node is not the leader (leader: {}) and does not know its client address",
                leader.map_or("unknown".to_string(), |l| l.to_string())
            ),
        ));
    };
    let path_and_query = fwd.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = st
        .client
        .request(fwd.method.clone(), format!("{}://{addr}{path_and_query}", st.tls.client_scheme()))
        .header(FORWARDED_HEADER, "1")
        .timeout(deadline.saturating_duration_since(TokioInstant::now()))
        .body(fwd.body.clone());
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = fwd.headers.get(&name) {
            req = req.header(name, v.clone());
        }
    }
    let resp = req.send().await.map_err(|e| {
        ApiError::unavailable(
            "forward_failed",
            format!("forwarding to the leader at {addr} failed: {}", crate::tls::error_chain(&e)),
        )
    })?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| {
        ApiError::unavailable("forward_failed", format!("reading the leader's answer failed: {e}"))
    })?;
    let mut out = (status, bytes).into_response();
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(out)
}

/// A node id given as a number, or as a string the way the seed sends it: a number or a name
/// ending in one (`"n4"` is node 4, see `config::node_id_of`).
fn node_id_of(v: Option<&Value>) -> Result<Option<NodeId>, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_id",
            "`id` must be a node id: a positive integer, or a name ending in one (\"n4\")",
        )
    };
    let id = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
        Some(Value::String(s)) if s.is_empty() => return Ok(None),
        Some(Value::String(s)) => crate::config::node_id_of(s).map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if id == 0 {
        return Err(bad());
    }
    Ok(Some(NodeId(id)))
}

/// A member address as given: `host:port`, or the seed's URL form `http://host:port`.
fn member_addr(s: &str) -> &str {
    s.strip_prefix("http://").unwrap_or(s).trim_end_matches('/')
}

fn json_object(b: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(b) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad_request("bad_body", "the body must be a JSON object")),
        Err(e) => {
            Err(ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}")))
        }
    }
}

fn members_json(s: &Status) -> Vec<Value> {
    s.membership
        .members()
        .map(|id| {
            let a = s.membership.addresses.get(&id).map(|a| MemberAddr::decode(a));
            json!({
                "id": id.0,
                "addr": a.as_ref().map(|a| a.raft.clone()),
                "http_addr": a.and_then(|a| a.http),
                "voter": s.membership.is_voter(id),
                "leader": s.leader == Some(id),
            })
        })
        .collect()
}

/// Proposes a membership change on the leader (forwarding from a follower) and waits until it
/// is committed. With `probe`, the leader first checks that the node answers at its Raft address
/// as the id it is being added under.
async fn membership_change(
    st: &Service,
    change: MembershipChange,
    fwd: &Forwardable<'_>,
    probe: Option<(NodeId, &str)>,
) -> Result<Result<Status, Response>, ApiError> {
    let deadline = st.deadline();
    let mut attempt = 0;
    let index = loop {
        let leading = st.status.borrow().role == Role::Leader;
        if let Some((id, addr)) = probe.filter(|_| leading) {
            probe_member(st, id, addr, deadline).await?;
        }
        let (reply, rx) = oneshot::channel();
        st.send_input(Input::Membership { change: change.clone(), reply }, deadline).await?;
        match st.await_reply(rx, deadline).await? {
            Ok(index) => break index,
            Err(simple_cache_core::raft::MembershipError::NotLeader { leader_hint: Some(l) })
                if l != st.me() =>
            {
                return forward(st, fwd, deadline).await.map(Err);
            }
            Err(simple_cache_core::raft::MembershipError::NotLeader { .. })
            | Err(simple_cache_core::raft::MembershipError::LeaderNotReady) => {
                st.wait_for_leader(deadline, &mut attempt).await?
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut rx = st.status.clone();
    let committed =
        tokio::time::timeout_at(deadline, rx.wait_for(|s| s.commit_index >= index || s.stopped))
            .await;
    match committed {
        Ok(Ok(s)) if !s.stopped => Ok(Ok(s.clone())),
        Ok(_) => Err(ApiError::stopping()),
        Err(_) => Err(ApiError::unavailable(
            "timeout",
            format!(
                "the membership change was appended at index {index} but not committed in time"
            ),
        )),
    }
}

/// How long the leader waits for a joining node to answer its probe.
const JOIN_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The id of the node answering at Raft address `addr` (`GET /raft/node`), for a join that
/// gives only the address (the seed's form).
async fn identify_member(
    st: &Service,
    addr: &str,
    deadline: TokioInstant,
) -> Result<NodeId, ApiError> {
    let v = ask_member(st, addr, deadline).await.map_err(|why| {
        ApiError::unavailable(
            "member_unreachable",
            format!(
                "the join gives no `id` and the node at {addr} does not say who it is: {why}. \
                 Start it first, or give its `id`"
            ),
        )
    })?;
    match v["node_id"].as_u64() {
        Some(n) if n > 0 => Ok(NodeId(n)),
        _ => Err(ApiError::bad_request(
            "bad_id",
            format!("the node at {addr} is not a simple-cache node; give its `id`"),
        )),
    }
}

/// `GET /raft/node` at `addr`: the answering node's id and cluster id.
async fn ask_member(st: &Service, addr: &str, deadline: TokioInstant) -> Result<Value, String> {
    let timeout = JOIN_PROBE_TIMEOUT.min(deadline.saturating_duration_since(TokioInstant::now()));
    let url = format!("{}://{addr}/raft/node", st.tls.peer_scheme());
    let mut req = st.peer_client.get(url).timeout(timeout);
    if let Some(t) = &st.cfg.peer_token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| crate::tls::error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("it answered {}", resp.status()));
    }
    resp.json().await.map_err(|e| format!("its answer: {e}"))
}

/// Checks that `addr` answers on the Raft port as node `id` (`GET /raft/node`), so that a typo
/// in the address or the id is refused instead of becoming a member nobody can reach.
async fn probe_member(
    st: &Service,
    id: NodeId,
    addr: &str,
    deadline: TokioInstant,
) -> Result<(), ApiError> {
    let unreachable = |why: String| {
        ApiError::unavailable(
            "member_unreachable",
            format!(
                "node {id} does not answer at its Raft address {addr}: {why}. Start it first (or \
                 fix the address); `\"force\": true` adds it anyway, as a learner until it answers"
            ),
        )
    };
    let v = ask_member(st, addr, deadline).await.map_err(unreachable)?;
    if let (Some(theirs), Some(mine)) = (v["cluster_id"].as_str(), st.cluster_id.get())
        && theirs != crate::peer_auth::hex(mine)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_cluster",
            format!(
                "the node at {addr} belongs to cluster {theirs}, not to this one ({}): empty its \
                 data_dir first",
                crate::peer_auth::hex(mine)
            ),
        ));
    }
    match v["node_id"].as_u64() {
        Some(n) if n == id.0 => Ok(()),
        Some(n) => Err(ApiError::bad_request(
            "wrong_node",
            format!("the node at {addr} is node {n}, not node {id}: check `id` and `addr`"),
        )),
        None => Err(unreachable("it is not a simple-cache node".to_string())),
    }
}

/// Refuses a join that would give an existing member's id or address to another node.
fn check_join_conflicts(s: &Status, id: NodeId, addr: &MemberAddr) -> Result<(), ApiError> {
    for (member, a) in &s.membership.addresses {
        let a = MemberAddr::decode(a);
        if *member == id {
            if s.membership.is_voter(id) {
                // A node that lost its data must not come back as a voter with an empty log:
                // it could vote a leader without committed entries into office.
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "already_voter",
                    format!(
                        "node {id} is already a voter, at {}; if it lost its data, remove it \
                         (/cluster/leave) and join it again with an empty data_dir",
                        a.raft
                    ),
                ));
            }
            if a.raft == addr.raft {
                // The same learner asking again (a retried join): core answers `already_member`.
                return Ok(());
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "id_in_use",
                format!("node {id} is already a member, at {}; remove it first", a.raft),
            ));
        }
        let same_http = addr.http.is_some() && a.http == addr.http;
        if a.raft == addr.raft || same_http {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "address_in_use",
                format!(
                    "node {member} already uses that address ({}); two members cannot share one",
                    if a.raft == addr.raft { &a.raft } else { a.http.as_deref().unwrap_or("") }
                ),
            ));
        }
    }
    Ok(())
}

pub async fn cluster_join(
    State(st): State<Service>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.check_admin(authorization(&headers))?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let addr = match obj.get("addr") {
        Some(Value::String(s)) if !s.is_empty() => member_addr(s).to_string(),
        _ => {
            return Err(ApiError::bad_request(
                "bad_addr",
                "`addr` (the node's Raft address) is required",
            ));
        }
    };
    let http = match obj.get("http_addr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(member_addr(s).to_string()),
        Some(_) => return Err(ApiError::bad_request("bad_addr", "`http_addr` must be a string")),
    };
    let force = match obj.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("bad_body", "`force` must be true or false")),
    };
    for (key, value) in [("addr", Some(&addr)), ("http_addr", http.as_ref())] {
        if let Some(v) = value {
            crate::config::check_host_port(key, v).map_err(|e| {
                ApiError::bad_request("bad_addr", format!("`{key}`: {}", e.problem))
            })?;
        }
    }
    // The seed's join gives only the address: ask the node there who it is.
    let id = match node_id_of(obj.get("id"))? {
        Some(id) => id,
        None => identify_member(&st, &addr, st.deadline()).await?,
    };
    let member = MemberAddr { raft: addr.clone(), http };
    check_join_conflicts(&st.status.borrow(), id, &member)?;
    let address = member.encode();
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
    let probe = (!force).then_some((id, addr.as_str()));
    let change = MembershipChange::AddLearner { id, address };
    match membership_change(&st, change, &fwd, probe).await? {
        Ok(s) => Ok(Json(json!({
            "success": true,
            "id": id.0,
            "voter": s.membership.is_voter(id),
            "cluster_id": st.cluster_id.get().map(crate::peer_auth::hex),
            "leader": s.leader.map(|l| l.0),
            "members": members_json(&s),
        }))
        .into_response()),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn cluster_leave(
    State(st): State<Service>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.check_admin(authorization(&headers))?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let id = match node_id_of(obj.get("id"))? {
        Some(id) => id,
        None => {
            let Some(Value::String(addr)) = obj.get("addr") else {
                return Err(ApiError::bad_request("bad_id", "give the node's `id` or `addr`"));
            };
            let addr = member_addr(addr);
            let s = st.status.borrow();
            s.membership
                .addresses
                .iter()
                .find(|(_, a)| {
                    let a = MemberAddr::decode(a);
                    a.raft == addr || a.http.as_deref() == Some(addr)
                })
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_member",
                        format!("no member has address {addr}"),
                    )
                })?
        }
    };
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
    match membership_change(&st, MembershipChange::Remove { id }, &fwd, None).await? {
        Ok(s) => Ok(Json(json!({ "success": true, "id": id.0, "members": members_json(&s) }))
            .into_response()),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn cluster_transfer(
    State(st): State<Service>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.check_admin(authorization(&headers))?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let target = node_id_of(obj.get("id"))?
        .ok_or_else(|| ApiError::bad_request("bad_id", "`id` is required"))?;
    let deadline = st.deadline();
    let mut attempt = 0;
    loop {
        let (reply, rx) = oneshot::channel();
        st.send_input(Input::Transfer { target, reply }, deadline).await?;
        match st.await_reply(rx, deadline).await? {
            Ok(()) => break,
            Err(simple_cache_core::raft::TransferError::NotLeader { leader_hint: Some(l) })
                if l != st.me() =>
            {
                let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
                return forward(&st, &fwd, deadline).await;
            }
            Err(simple_cache_core::raft::TransferError::NotLeader { .. }) => {
                st.wait_for_leader(deadline, &mut attempt).await?
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut rx = st.status.clone();
    match tokio::time::timeout_at(deadline, rx.wait_for(|s| s.leader == Some(target) || s.stopped))
        .await
    {
        Ok(Ok(s)) if !s.stopped => {
            Ok(Json(json!({ "success": true, "leader": target.0 })).into_response())
        }
        Ok(_) => Err(ApiError::stopping()),
        Err(_) => Err(ApiError::unavailable(
            "transfer_timeout",
            format!("node {target} did not become the leader in time"),
        )),
    }
}

async fn cluster_peers(
    State(st): State<Service>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    st.check_admin(authorization(&headers))?;
    let deadline = st.deadline();
    let s = st.status.borrow().clone();
    // Replication progress is only known on the leader: ask it.
    if s.role != Role::Leader && s.leader.is_some() && !headers.contains_key(FORWARDED_HEADER) {
        let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: Bytes::new() };
        if let Ok(r) = forward(&st, &fwd, deadline).await {
            return Ok(r);
        }
    }
    let (reply, rx) = oneshot::channel();
    st.send_input(Input::Peers { reply }, deadline).await?;
    let (now, peers) = st.await_reply(rx, deadline).await?;
    let members: Vec<Value> = peers
        .iter()
        .map(|p| {
            let a = s.membership.addresses.get(&p.id).map(|a| MemberAddr::decode(a));
            json!({
                "id": p.id.0,
                "addr": a.as_ref().map(|a| a.raft.clone()),
                "http_addr": a.and_then(|a| a.http),
                "voter": p.voter,
                "leader": s.leader == Some(p.id),
                "match_index": p.match_index.0,
                "last_contact_ms_ago": p.last_contact.map(|c| now.saturating_since(c)),
            })
        })
        .collect();
    Ok(Json(json!({
        "node_id": s.id.0,
        "leader": s.leader.map(|l| l.0),
        "term": s.term.0,
        "members": members,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every route maps to a bounded metric label.
    #[test]
    fn op_names_are_bounded() {
        assert_eq!(op_name(&Method::GET, Some("/v1/{key}")), "get");
        assert_eq!(op_name(&Method::PUT, Some("/v1/{key}")), "set");
        assert_eq!(op_name(&Method::GET, Some("/v1/search/{pattern}")), "search");
        assert_eq!(op_name(&Method::GET, None), "other");
    }

    // Node ids come as numbers or numeric strings; anything else is a 400.
    #[test]
    fn node_ids_parse() {
        assert_eq!(node_id_of(Some(&json!(4))).unwrap(), Some(NodeId(4)));
        assert_eq!(node_id_of(Some(&json!("4"))).unwrap(), Some(NodeId(4)));
        assert_eq!(node_id_of(None).unwrap(), None);
        assert!(node_id_of(Some(&json!(0))).is_err());
        assert!(node_id_of(Some(&json!("x"))).is_err());
        assert!(node_id_of(Some(&json!(-1))).is_err());
    }
}

/// Handlers for a key whose name is also a route (`watch`, `batch`): its own read, set and
/// delete, so clients of the seed that used those names keep working.
mod named_key {
    use super::*;
    use axum::routing::MethodRouter;

    type Q = Result<Query<HashMap<String, String>>, QueryRejection>;
    type B = Result<Bytes, BytesRejection>;

    pub fn get(name: &'static str) -> MethodRouter<Service> {
        axum::routing::get(move |svc: State<Service>, q: Q| async move {
            get_key(svc, Ok(Path(name.to_string())), q).await
        })
    }

    /// `PUT` (and, where POST is not the route's own, `POST`) sets the key; `DELETE` deletes it.
    pub fn set_del(name: &'static str) -> MethodRouter<Service> {
        let set = move |svc: State<Service>, headers: HeaderMap, b: B| async move {
            set_key(svc, headers, Ok(Path(name.to_string())), b).await
        };
        let del = move |svc: State<Service>, headers: HeaderMap, q: Q| async move {
            del_key(svc, headers, Ok(Path(name.to_string())), q).await
        };
        let router = axum::routing::put(set).delete(del);
        if name == "batch" { router } else { router.post(set) }
    }
}
