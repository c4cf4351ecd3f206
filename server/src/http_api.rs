//! The client HTTP/JSON API (the seed's routes and shapes), the cluster endpoints and health.
//!
//! Every node accepts every request. Reads are linearizable by default (ReadIndex, on any node);
//! `?consistency=stale` reads the local state. Writes and cluster changes on a follower are
//! forwarded to the leader's client address (learned from the membership). While no leader is
//! known, a request waits for one until its deadline and then fails with 503 and a JSON reason.
//!
//! TTL route (our design): `GET /v1/{key}/ttl` -> `{"found": true, "ttl_ms": n}` for a key that
//! expires, `{"found": true, "ttl": "none"}` for one that does not, and `{"found": false}` (200,
//! like `GET /v1/{key}`) for a missing or expired key.
//!
//! A key is one path segment (percent-encode `/` as `%2F`). The keys `search` cannot be read
//! through `GET /v1/{key}` because the search routes take precedence.

use crate::config::Config;
use crate::duration::parse_go_duration;
use crate::error::ApiError;
use crate::metrics::{Metrics, Op, OpStatus};
use crate::node_loop::{Input, Query as NodeQuery, QueryResult, Status, WriteOp};
use crate::transport::MemberAddr;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use simple_cache_core::cache::{ApplyResult, Pattern, SEARCH_RESULTS_MAX, SearchMode, TtlStatus};
use simple_cache_core::node::WriteError;
use simple_cache_core::raft::{ProposeError, ReadError, Role};
use simple_cache_core::{MembershipChange, NodeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;

/// Marks a request forwarded by a follower, so the leader never forwards it again.
const FORWARDED_HEADER: &str = "x-simple-cache-forwarded";
/// Results of a search when the client gives no limit.
const SEARCH_LIMIT_DEFAULT: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub tx: mpsc::Sender<Input>,
    pub status: watch::Receiver<Status>,
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
}

impl AppState {
    fn deadline(&self) -> TokioInstant {
        TokioInstant::now() + Duration::from_millis(self.cfg.request_timeout_ms)
    }
    fn me(&self) -> NodeId {
        self.status.borrow().id
    }
}

/// The client router. Layers: metrics, overall timeout, body limit, bounded concurrency.
pub fn router(state: AppState) -> Router {
    let cfg = state.cfg.clone();
    Router::new()
        .route("/v1", delete(reset))
        .route("/v1/search", get(search_query))
        .route("/v1/search/{pattern}", get(search_path))
        .route("/v1/search/{pattern}/{mode}", get(search_path_mode))
        .route("/v1/{key}", get(get_key).post(set_key).put(set_key).delete(del_key))
        .route("/v1/{key}/expire", post(expire_key))
        .route("/v1/{key}/ttl", get(ttl_key))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/cluster/peers", get(cluster_peers))
        .route("/cluster/join", post(cluster_join))
        .route("/cluster/leave", post(cluster_leave))
        .route("/cluster/transfer-leader", post(cluster_transfer))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        // The body limit applies while the body is read by the `Bytes` extractor, which maps an
        // overflow to 413 (see `body`).
        .layer(axum::extract::DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(tower::limit::ConcurrencyLimitLayer::new(cfg.max_concurrent_requests))
        .with_state(state)
}

// ----- middleware -----

/// Records the request count and latency per operation, and bounds the whole request (reading
/// the body included) by the request timeout plus a margin, so a slow client cannot hold a
/// connection's handler forever.
async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let op = op_name(req.method(), req.extensions().get::<MatchedPath>().map(|p| p.as_str()));
    let started = std::time::Instant::now();
    let limit = Duration::from_millis(st.cfg.request_timeout_ms) + Duration::from_secs(1);
    let resp = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request did not complete in time",
        )
        .into_response(),
    };
    st.metrics.requests.get_or_create(&OpStatus { op, status: resp.status().as_u16() }).inc();
    st.metrics.request_duration.get_or_create(&Op { op }).observe(started.elapsed().as_secs_f64());
    resp
}

fn op_name(method: &Method, path: Option<&str>) -> &'static str {
    match (method.as_str(), path.unwrap_or("")) {
        ("GET", "/v1/{key}") => "get",
        ("POST" | "PUT", "/v1/{key}") => "set",
        ("DELETE", "/v1/{key}") => "delete",
        ("DELETE", "/v1") => "reset",
        ("POST", "/v1/{key}/expire") => "expire",
        ("GET", "/v1/{key}/ttl") => "ttl",
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

fn check_key(st: &AppState, key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request("bad_key", "the key must not be empty"));
    }
    if key.len() > st.cfg.max_key_bytes {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "key_too_large",
            format!("the key is {} bytes; the limit is {}", key.len(), st.cfg.max_key_bytes),
        ));
    }
    Ok(())
}

/// Linearizable unless `consistency=stale`.
fn stale(q: &HashMap<String, String>) -> Result<bool, ApiError> {
    match q.get("consistency").map(String::as_str) {
        None | Some("linearizable") | Some("strong") => Ok(false),
        Some("stale") => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "bad_consistency",
            format!("consistency must be `linearizable` or `stale`, not `{other}`"),
        )),
    }
}

fn check_admin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &st.cfg.admin_token else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare without an early exit so the time taken does not reveal a matching prefix.
    let ok = given.len() == token.len()
        && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint requires `Authorization: Bearer <admin_token>`",
        ))
    }
}

// ----- talking to the node loop -----

async fn send_input(st: &AppState, input: Input, deadline: TokioInstant) -> Result<(), ApiError> {
    match tokio::time::timeout_at(deadline, st.tx.send(input)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(ApiError::stopping()),
        Err(_) => Err(ApiError::unavailable("overloaded", "the node's input queue stayed full")),
    }
}

async fn await_reply<T>(rx: oneshot::Receiver<T>, deadline: TokioInstant) -> Result<T, ApiError> {
    match tokio::time::timeout_at(deadline, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ApiError::stopping()),
        Err(_) => Err(ApiError::unavailable(
            "timeout",
            "the request was accepted but did not complete in time; a write may still take effect",
        )),
    }
}

/// Waits until a leader is known (and not handing over) or the deadline passes. The first few
/// checks use the current status, since the answer that sent us here may predate it.
async fn wait_for_leader(
    st: &AppState,
    deadline: TokioInstant,
    attempt: &mut u32,
) -> Result<(), ApiError> {
    let mut rx = st.status.clone();
    let usable = |s: &Status| s.leader.is_some() && s.transfer_target.is_none();
    *attempt += 1;
    if *attempt <= 3 && usable(&rx.borrow_and_update()) {
        return Ok(());
    }
    loop {
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {
                let s = rx.borrow_and_update();
                if s.stopped {
                    return Err(ApiError::stopping());
                }
                if usable(&s) {
                    return Ok(());
                }
            }
            Ok(Err(_)) => return Err(ApiError::stopping()),
            Err(_) => {
                let s = st.status.borrow();
                return Err(ApiError::unavailable(
                    "no_leader",
                    format!(
                        "no leader was elected within {} ms (node {} is {:?} in term {}); the \
                         cluster may have lost its quorum",
                        st.cfg.request_timeout_ms, s.id, s.role, s.term
                    ),
                ));
            }
        }
    }
}

/// What a follower needs to forward the request to the leader.
struct Forwardable<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: Bytes,
}

async fn forward(
    st: &AppState,
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
            "not_leader",
            format!(
                "this node is not the leader (leader: {}) and does not know its client address",
                leader.map_or("unknown".to_string(), |l| l.to_string())
            ),
        ));
    };
    let path_and_query = fwd.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = st
        .client
        .request(fwd.method.clone(), format!("http://{addr}{path_and_query}"))
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
            format!("forwarding to the leader at {addr} failed: {e}"),
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

/// Proposes a write, forwarding it to the leader or waiting for one as needed.
async fn write(
    st: &AppState,
    op: WriteOp,
    fwd: &Forwardable<'_>,
) -> Result<Result<ApplyResult, Response>, ApiError> {
    let deadline = st.deadline();
    let mut attempt = 0;
    loop {
        let (reply, rx) = oneshot::channel();
        send_input(st, Input::Write { op: op.clone(), reply }, deadline).await?;
        match await_reply(rx, deadline).await? {
            Ok(r) => return Ok(Ok(r)),
            Err(WriteError::Propose(ProposeError::NotLeader { leader_hint: Some(l) }))
                if l != st.me() =>
            {
                return forward(st, fwd, deadline).await.map(Err);
            }
            // No leader yet, a transfer under way, or our entry lost to a new leader's (it did
            // not take effect, so retrying is safe).
            Err(WriteError::Propose(ProposeError::NotLeader { .. }))
            | Err(WriteError::Propose(ProposeError::TransferInProgress))
            | Err(WriteError::Superseded) => wait_for_leader(st, deadline, &mut attempt).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs a query: linearizable through ReadIndex (waiting for a leader if needed), or stale.
async fn read(st: &AppState, query: NodeQuery, stale: bool) -> Result<QueryResult, ApiError> {
    let deadline = st.deadline();
    let mut attempt = 0;
    loop {
        let (reply, rx) = oneshot::channel();
        send_input(st, Input::Read { query: query.clone(), stale, reply }, deadline).await?;
        match await_reply(rx, deadline).await? {
            Ok(r) => return Ok(r),
            Err(ReadError::NoLeader) => wait_for_leader(st, deadline, &mut attempt).await?,
            Err(e) => return Err(e.into()),
        }
    }
}

// ----- client routes -----

async fn get_key(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    check_key(&st, &key)?;
    let stale = stale(&query(q)?)?;
    match read(&st, NodeQuery::Get(key), stale).await? {
        QueryResult::Value(Some(v)) => {
            let value: Value = serde_json::from_slice(&v).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("stored value is not JSON: {e}"),
                )
            })?;
            Ok(Json(json!({ "value": value, "found": true })))
        }
        _ => Ok(Json(json!({ "found": false }))),
    }
}

/// Parses `{"value": <any JSON>, "expire": "1m30s"?}` strictly.
fn parse_set_body(st: &AppState, bytes: &[u8]) -> Result<(Bytes, Option<u64>), ApiError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("bad_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(mut obj) = v else {
        return Err(ApiError::bad_request(
            "bad_body",
            "the body must be a JSON object with a `value` field",
        ));
    };
    let value = obj
        .remove("value")
        .ok_or_else(|| ApiError::bad_request("missing_value", "the body has no `value` field"))?;
    let ttl_ms = match obj.remove("expire") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let d = parse_go_duration(&s).map_err(|e| {
                ApiError::bad_request(
                    "bad_duration",
                    format!("`expire` is not a valid duration: {e}"),
                )
            })?;
            // A zero duration means "no expiry", as in the seed; a positive one below a
            // millisecond is rounded up so it still expires.
            match d.as_nanos() {
                0 => None,
                n => Some(u64::try_from(n.div_ceil(1_000_000)).unwrap_or(u64::MAX)),
            }
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_duration",
                format!("`expire` must be a duration string such as \"1m30s\", not {other}"),
            ));
        }
    };
    if let Some(k) = obj.keys().next() {
        return Err(ApiError::bad_request(
            "unknown_field",
            format!("unknown field `{k}` (expected `value`, `expire`)"),
        ));
    }
    let encoded = serde_json::to_vec(&value).expect("a JSON value serializes");
    if encoded.len() > st.cfg.max_value_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!(
                "the value is {} bytes of JSON; the limit is {}",
                encoded.len(),
                st.cfg.max_value_bytes
            ),
        ));
    }
    Ok((Bytes::from(encoded), ttl_ms))
}

async fn set_key(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let key = path(key)?;
    check_key(&st, &key)?;
    let b = body(b)?;
    let (value, ttl_ms) = parse_set_body(&st, &b)?;
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
    match write(&st, WriteOp::Set { key, value, ttl_ms }, &fwd).await? {
        Ok(_) => Ok(Json(json!({ "success": true })).into_response()),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn del_key(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = path(key)?;
    check_key(&st, &key)?;
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: Bytes::new() };
    match write(&st, WriteOp::Del { key }, &fwd).await? {
        Ok(ApplyResult::Del { existed }) => {
            Ok(Json(json!({ "success": true, "existed": existed })).into_response())
        }
        Ok(other) => Err(unexpected(other)),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn expire_key(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let key = path(key)?;
    check_key(&st, &key)?;
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: Bytes::new() };
    match write(&st, WriteOp::Expire { key }, &fwd).await? {
        Ok(ApplyResult::Expire { existed }) => {
            Ok(Json(json!({ "success": true, "existed": existed })).into_response())
        }
        Ok(other) => Err(unexpected(other)),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn reset(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&st, &headers)?;
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: Bytes::new() };
    match write(&st, WriteOp::Reset, &fwd).await? {
        Ok(ApplyResult::Reset { cleared }) => {
            Ok(Json(json!({ "success": true, "keys_cleared": cleared })).into_response())
        }
        Ok(other) => Err(unexpected(other)),
        Err(forwarded) => Ok(forwarded),
    }
}

fn unexpected(r: ApplyResult) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("unexpected apply result {r:?}"),
    )
}

async fn ttl_key(
    State(st): State<AppState>,
    key: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = path(key)?;
    check_key(&st, &key)?;
    let stale = stale(&query(q)?)?;
    match read(&st, NodeQuery::Ttl(key), stale).await? {
        QueryResult::Ttl(TtlStatus::Remaining { ms }) => {
            Ok(Json(json!({ "found": true, "ttl_ms": ms })))
        }
        QueryResult::Ttl(TtlStatus::NoExpiry) => Ok(Json(json!({ "found": true, "ttl": "none" }))),
        _ => Ok(Json(json!({ "found": false }))),
    }
}

fn parse_mode(s: Option<&str>) -> Result<SearchMode, ApiError> {
    match s {
        None | Some("wildcard") | Some("glob") => Ok(SearchMode::Wildcard),
        Some("regex") => Ok(SearchMode::Regex),
        Some(other) => Err(ApiError::bad_request(
            "bad_mode",
            format!("mode must be `wildcard` or `regex`, not `{other}`"),
        )),
    }
}

async fn search(
    st: &AppState,
    pattern: &str,
    mode: SearchMode,
    q: &HashMap<String, String>,
) -> Result<Json<Value>, ApiError> {
    let limit = match q.get("limit") {
        None => SEARCH_LIMIT_DEFAULT,
        Some(l) => l.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "bad_limit",
                format!("limit must be a non-negative integer, not `{l}`"),
            )
        })?,
    }
    .min(SEARCH_RESULTS_MAX);
    let pattern = Pattern::compile(pattern, mode)
        .map_err(|e| ApiError::bad_request("bad_pattern", e.to_string()))?;
    match read(st, NodeQuery::Search { pattern, limit }, stale(q)?).await? {
        QueryResult::Keys(keys) => Ok(Json(json!({ "keys": keys }))),
        _ => Ok(Json(json!({ "keys": [] }))),
    }
}

async fn search_query(
    State(st): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let pattern = q.get("pattern").ok_or_else(|| {
        ApiError::bad_request("missing_pattern", "the `pattern` query parameter is required")
    })?;
    let mode = parse_mode(q.get("mode").map(String::as_str))?;
    search(&st, pattern, mode, &q).await
}

async fn search_path(
    State(st): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let pattern = path(p)?;
    let q = query(q)?;
    let mode = parse_mode(q.get("mode").map(String::as_str))?;
    search(&st, &pattern, mode, &q).await
}

async fn search_path_mode(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (pattern, mode) = path(p)?;
    let mode = parse_mode(Some(&mode))?;
    search(&st, &pattern, mode, &query(q)?).await
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

async fn readyz(State(st): State<AppState>) -> Response {
    let s = st.status.borrow().clone();
    let body = json!({
        "ready": s.is_ready(),
        "role": role_name(s.role),
        "node_id": s.id.0,
        "leader": s.leader.map(|l| l.0),
        "term": s.term.0,
        "commit_index": s.commit_index.0,
        "last_applied": s.last_applied.0,
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

/// A node id given as a number or a numeric string (the seed sends strings).
fn node_id_of(v: Option<&Value>) -> Result<Option<NodeId>, ApiError> {
    let id = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(_) => None,
    };
    match id {
        Some(0) | None => {
            Err(ApiError::bad_request("bad_id", "`id` must be a node id (a positive integer)"))
        }
        Some(id) => Ok(Some(NodeId(id))),
    }
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
/// is committed.
async fn membership_change(
    st: &AppState,
    change: MembershipChange,
    fwd: &Forwardable<'_>,
) -> Result<Result<Status, Response>, ApiError> {
    let deadline = st.deadline();
    let mut attempt = 0;
    let index = loop {
        let (reply, rx) = oneshot::channel();
        send_input(st, Input::Membership { change: change.clone(), reply }, deadline).await?;
        match await_reply(rx, deadline).await? {
            Ok(index) => break index,
            Err(simple_cache_core::raft::MembershipError::NotLeader { leader_hint: Some(l) })
                if l != st.me() =>
            {
                return forward(st, fwd, deadline).await.map(Err);
            }
            Err(simple_cache_core::raft::MembershipError::NotLeader { .. })
            | Err(simple_cache_core::raft::MembershipError::LeaderNotReady) => {
                wait_for_leader(st, deadline, &mut attempt).await?
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

pub async fn cluster_join(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_admin(&st, &headers)?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let id = node_id_of(obj.get("id"))?
        .ok_or_else(|| ApiError::bad_request("bad_id", "`id` is required"))?;
    let addr = match obj.get("addr") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "bad_addr",
                "`addr` (the node's Raft address) is required",
            ));
        }
    };
    let http = match obj.get("http_addr") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::bad_request("bad_addr", "`http_addr` must be a string")),
    };
    let address = MemberAddr { raft: addr, http }.encode();
    let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
    match membership_change(&st, MembershipChange::AddLearner { id, address }, &fwd).await? {
        Ok(s) => Ok(Json(json!({
            "success": true,
            "id": id.0,
            "voter": false,
            "leader": s.leader.map(|l| l.0),
            "members": members_json(&s),
        }))
        .into_response()),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn cluster_leave(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_admin(&st, &headers)?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let id = match node_id_of(obj.get("id"))? {
        Some(id) => id,
        None => {
            let Some(Value::String(addr)) = obj.get("addr") else {
                return Err(ApiError::bad_request("bad_id", "give the node's `id` or `addr`"));
            };
            let s = st.status.borrow();
            s.membership
                .addresses
                .iter()
                .find(|(_, a)| {
                    let a = MemberAddr::decode(a);
                    a.raft == *addr || a.http.as_deref() == Some(addr)
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
    match membership_change(&st, MembershipChange::Remove { id }, &fwd).await? {
        Ok(s) => Ok(Json(json!({ "success": true, "id": id.0, "members": members_json(&s) }))
            .into_response()),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn cluster_transfer(
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    check_admin(&st, &headers)?;
    let b = body(b)?;
    let obj = json_object(&b)?;
    let target = node_id_of(obj.get("id"))?
        .ok_or_else(|| ApiError::bad_request("bad_id", "`id` is required"))?;
    let deadline = st.deadline();
    let mut attempt = 0;
    loop {
        let (reply, rx) = oneshot::channel();
        send_input(&st, Input::Transfer { target, reply }, deadline).await?;
        match await_reply(rx, deadline).await? {
            Ok(()) => break,
            Err(simple_cache_core::raft::TransferError::NotLeader { leader_hint: Some(l) })
                if l != st.me() =>
            {
                let fwd = Forwardable { method: &method, uri: &uri, headers: &headers, body: b };
                return forward(&st, &fwd, deadline).await;
            }
            Err(simple_cache_core::raft::TransferError::NotLeader { .. }) => {
                wait_for_leader(&st, deadline, &mut attempt).await?
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
    State(st): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&st, &headers)?;
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
    send_input(&st, Input::Peers { reply }, deadline).await?;
    let (now, peers) = await_reply(rx, deadline).await?;
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
