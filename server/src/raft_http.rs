//! The Raft listener (`raft_http_addr`): `POST /raft` takes a batch of messages encoded by
//! `core::codec` (see `transport`). A body that does not decode gets a 400 and reaches nothing;
//! a decoded batch is handed to the node loop without waiting for it to be processed (Raft
//! replies travel as separate requests, like etcd's transport).
//!
//! The listener also serves `POST /cluster/join`, so a new node can be pointed at either address
//! of a member.

use crate::error::ApiError;
use crate::http_api::cluster_join;
use crate::metrics::PeerLabel;
use crate::node_loop::Input;
use crate::peer_auth;
use crate::service::Service;
use crate::transport::RAFT_BODY_BYTES_MAX;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use simple_cache_core::{Message, codec};

pub fn router(state: Service) -> Router {
    Router::new()
        .route("/raft", post(raft))
        .route("/raft/node", axum::routing::get(node_identity))
        .route("/cluster/join", post(cluster_join))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(axum::extract::DefaultBodyLimit::max(RAFT_BODY_BYTES_MAX))
        .with_state(state)
}

/// With `peer_token` set, the request must carry it (see `peer_auth`).
fn check_token(st: &Service, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &st.cfg.peer_token else { return Ok(()) };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if peer_auth::bearer_matches(given, token) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "the Raft port requires `Authorization: Bearer <peer_token>`",
    ))
}

async fn raft(
    State(st): State<Service>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    check_token(&st, &headers)?;
    let sent = headers.get(peer_auth::CLUSTER_HEADER).map(|v| v.to_str().unwrap_or("invalid"));
    st.cluster_id.accepts(sent).map_err(|why| {
        tracing::debug!(%why, "refusing a peer batch of another cluster");
        ApiError::new(StatusCode::FORBIDDEN, "wrong_cluster", why)
    })?;
    let b = b.map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
    let messages: Vec<Message> = codec::decode(&b, RAFT_BODY_BYTES_MAX).map_err(|e| {
        ApiError::bad_request("bad_raft_message", format!("the body does not decode: {e}"))
    })?;
    let sender = headers.get(peer_auth::SENDER_HEADER).and_then(|v| v.to_str().ok());
    if let (Some(from), Some(addr)) = (messages.first().map(|m| m.from), sender) {
        let known = st.status.borrow().membership.contains(from);
        if !known && crate::config::check_host_port("addr", addr).is_ok() {
            let _ = st.tx.try_send(Input::SenderAddress { id: from, addr: addr.to_string() });
        }
    }
    let client = headers.get(peer_auth::CLIENT_HEADER).and_then(|v| v.to_str().ok());
    if let (Some(from), Some(addr)) = (messages.first().map(|m| m.from), client) {
        // Only what a member advertises, only when it is news, only a well-formed address.
        let s = st.status.borrow();
        let news = s.membership.contains(from) && s.client_addr(from).as_deref() != Some(addr);
        drop(s);
        if news && crate::config::check_host_port("addr", addr).is_ok() {
            let _ = st.tx.try_send(Input::ClientAddress { id: from, addr: addr.to_string() });
        }
    }
    if let Some(from) = messages.first().map(|m| m.from) {
        st.metrics
            .peer_received_bytes
            .get_or_create(&PeerLabel { peer: from.0 })
            .inc_by(b.len() as u64);
    }
    // Never wait on a full queue: the sender would stall; Raft recovers from the loss.
    st.tx
        .try_send(Input::Raft(messages))
        .map_err(|_| ApiError::unavailable("overloaded", "the node's input queue is full"))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who answers on this Raft address: a leader probes a joining node here before adding it, so
/// a typo in an address or id is refused instead of becoming a member that never answers.
async fn node_identity(
    State(st): State<Service>,
    headers: HeaderMap,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    check_token(&st, &headers)?;
    let s = st.status.borrow();
    Ok(axum::Json(serde_json::json!({
        "node_id": s.id.0,
        "cluster_id": st.cluster_id.get().map(peer_auth::hex),
    })))
}
