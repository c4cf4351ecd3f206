//! The Raft listener (`raft_http_addr`). One port, told apart by a connection's first byte:
//!
//! - **Peer connections** (`core::peer_wire`): a node's transport opens one to each peer and
//!   writes frames of Raft messages on it. The hello is checked (`peer_token`, cluster id, not
//!   our own id) before anything else is read; then every batch goes to the node loop without
//!   waiting for it to be processed (Raft replies travel on the connection the other node opened,
//!   like etcd's stream transport). A frame that does not decode, or a message from another node
//!   than the hello named, closes the connection and reaches nothing.
//! - **HTTP**: `GET /raft/node` (who answers here, for join probes), `POST /cluster/join` (so a
//!   new node can be pointed at either address of a member), and `POST /raft`, the transport of
//!   0.1 (a batch of messages encoded by `core::codec` per request). `POST /raft` stays for one
//!   release so a cluster can be upgraded one node at a time: an upgraded node falls back to it
//!   for a peer that does not speak the peer protocol (see `transport`). It goes in the release
//!   after this one.
//!
//! With peer TLS (`peer_tls_*`, see `tls`) every connection must open with a TLS handshake that
//! presents a certificate from `peer_tls_ca_file`; the first byte inside TLS then tells the two
//! apart. A plain-text peer is answered with a refusal frame (HTTP: a 400) saying TLS is
//! required, and the hello's sender must be a node whose Raft address the certificate names.

use crate::error::ApiError;
use crate::http_api::cluster_join;
use crate::http_serve::HEADER_READ_TIMEOUT;
use crate::metrics::PeerLabel;
use crate::node_loop::Input;
use crate::peer_auth;
use crate::service::Service;
use crate::tls;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use rustls::pki_types::CertificateDer;
use simple_cache_core::peer_wire::{
    self, Answer, FRAME_BYTES_MAX, Frame, FrameDecoder, HELLO_BYTES_MAX, Hello, Refusal,
};
use simple_cache_core::{Message, NodeId, codec};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

/// Peer connections held at once, in their hello or past it. A node keeps one per peer (a
/// newer connection from the same node replaces the older), so this only bounds what strangers
/// and half-open connections can hold.
pub const PEER_CONNECTIONS_MAX: usize = 256;
/// Forwarded writes one peer connection may have in flight here; past it they are refused as
/// overloaded (a follower has at most its clients' requests in flight, far fewer).
pub const FORWARDS_IN_FLIGHT_MAX: usize = 4096;
/// How often each kind of refused peer connection is logged at warn.
const REFUSAL_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a peer connection passes on what its hello says about the sender's addresses.
const LEARN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// Bytes of encoded messages `POST /raft` accepts in one request.
pub const RAFT_BODY_BYTES_MAX: usize = FRAME_BYTES_MAX;

/// Serves the Raft listener until `stop` turns true.
pub async fn serve(listener: TcpListener, st: Service, mut stop: watch::Receiver<bool>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let router = router(st.clone());
    let peers = Arc::new(PeerConnections::default());
    let acceptor = st.tls.peer_acceptor();
    let handshakes = tls::Handshakes::default();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    crate::http_serve::accept_failed(e).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let _ = stream.set_nodelay(true);
        let (st, router, peers, watcher) =
            (st.clone(), router.clone(), peers.clone(), graceful.watcher());
        let (stop, acceptor) = (stop.clone(), acceptor.clone());
        let permit = match acceptor {
            Some(_) => match handshakes.start() {
                Some(p) => Some(p),
                None => continue,
            },
            None => None,
        };
        tokio::spawn(async move {
            let remote = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            // Closed, failed, or silent: nothing to serve.
            let Some(first) = tls::first_byte(&stream).await else { return };
            let Some(acceptor) = acceptor else {
                if first == tls::HANDSHAKE_RECORD {
                    if peers.warn_now("tls_on_plain_port") {
                        tracing::warn!(%remote, "a peer opened a TLS connection, but this node's Raft port speaks plain TCP (no peer_tls_* set): the members' peer TLS settings differ (said once a minute)");
                    }
                    return;
                }
                dispatch(first, stream, &remote, None, (st, router, watcher), &peers, stop).await;
                return;
            };
            if first != tls::HANDSHAKE_RECORD {
                let why = format!(
                    "node {} requires mutual TLS on its Raft port: set peer_tls_cert_file, \
                     peer_tls_key_file and peer_tls_ca_file",
                    st.cfg.node_id
                );
                if peers.warn_now("plain_on_tls_port") {
                    tracing::warn!(%remote, "refused a plain-text connection on the TLS Raft port (said once a minute)");
                }
                let reply = if first == peer_wire::PREAMBLE[0] {
                    let mut answer = Vec::new();
                    let refused = Answer::Refused { reason: Refusal::Unauthorized, message: why };
                    peer_wire::encode_frame(&refused, &mut answer);
                    answer
                } else {
                    plain_http_refusal(&why)
                };
                tls::refuse_plaintext(stream, &reply).await;
                return;
            }
            let mut stream = match tls::accept(&acceptor, stream).await {
                Ok(s) => s,
                Err(e) => {
                    if peers.warn_now("tls_handshake") {
                        tracing::warn!(%remote, error = %e, "refused a peer connection (said once a minute)");
                    } else {
                        tracing::debug!(%remote, error = %e, "refused a peer connection");
                    }
                    return;
                }
            };
            let cert = tls::peer_certificate(&stream);
            let mut first = [0u8; 1];
            match tokio::time::timeout(HEADER_READ_TIMEOUT, stream.read(&mut first)).await {
                Ok(Ok(1)) => {}
                _ => return,
            }
            drop(permit);
            let stream = tls::Prefixed::new(first[0], stream);
            dispatch(first[0], stream, &remote, cert, (st, router, watcher), &peers, stop).await;
        });
    }
    drop(listener);
    crate::http_serve::drain(graceful).await;
}

/// Serves a connection by its first byte: the peer protocol, or HTTP.
async fn dispatch<S>(
    first: u8,
    stream: S,
    remote: &str,
    cert: Option<CertificateDer<'static>>,
    (st, router, watcher): (Service, Router, hyper_util::server::graceful::Watcher),
    peers: &PeerConnections,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    if first == peer_wire::PREAMBLE[0] {
        drop(watcher);
        peer_connection(stream, remote, cert, st, peers, stop).await;
    } else {
        crate::http_serve::serve_connection(stream, router, watcher);
    }
}

/// A plain HTTP answer refusing a request on a TLS port.
fn plain_http_refusal(why: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": why, "code": "tls_required" }).to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The peer connections this listener holds: a count for the bound, and the newest connection
/// of each node that said hello, so its next connection (after a restart, or a half-open one
/// its sender gave up on) closes the previous.
#[derive(Default)]
struct PeerConnections {
    active: AtomicUsize,
    current: Mutex<BTreeMap<NodeId, (u64, Arc<Notify>)>>,
    next: AtomicU64,
    /// When each kind of refusal was last logged at warn.
    warned: Mutex<BTreeMap<&'static str, std::time::Instant>>,
}

impl PeerConnections {
    /// Makes this connection `from`'s current one, closing the previous.
    fn claim(&self, from: NodeId) -> (u64, Arc<Notify>) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, old)) = current.insert(from, (seq, notify.clone())) {
            // `notify_one` keeps a permit, so the old connection sees it even if it is not
            // waiting right now.
            old.notify_one();
        }
        (seq, notify)
    }

    /// Whether a refusal for `reason` should be logged at warn: the first, and then one a
    /// minute.
    fn warn_now(&self, reason: &'static str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match warned.get(reason) {
            Some(t) if now.duration_since(*t) < REFUSAL_WARN_EVERY => false,
            _ => {
                warned.insert(reason, now);
                true
            }
        }
    }

    fn release(&self, from: NodeId, seq: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.get(&from).is_some_and(|(s, _)| *s == seq) {
            current.remove(&from);
        }
    }
}

/// Holds one of the `PEER_CONNECTIONS_MAX` places while alive.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a peer connection ended, for the log.
#[derive(Debug, thiserror::Error)]
enum PeerEnd {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Wire(#[from] peer_wire::WireError),
    #[error("no hello within {HEADER_READ_TIMEOUT:?}")]
    HelloTimeout,
    #[error("closed before its hello")]
    NoHello,
    #[error("refused ({code}): {message}", code = .0.code(), message = .1)]
    Refused(Refusal, String),
    #[error("a message from node {found} to node {to} on node {said}'s connection")]
    WrongSender { said: NodeId, found: NodeId, to: NodeId },
    #[error("replaced by a newer connection from the same node")]
    Replaced,
    #[error("the node is stopping")]
    Stopping,
}

async fn peer_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    remote: &str,
    cert: Option<CertificateDer<'static>>,
    st: Service,
    peers: &PeerConnections,
    stop: watch::Receiver<bool>,
) {
    let _slot = Slot(&peers.active);
    let full = peers.active.fetch_add(1, Ordering::Relaxed) >= PEER_CONNECTIONS_MAX;
    let end = run_peer_connection(&mut stream, cert.as_ref(), &st, peers, stop, full).await;
    match end {
        Err(PeerEnd::Refused(reason, message)) => {
            // A misconfigured peer retries every 2 s at most: say why at warn once a minute per
            // reason, then at debug.
            if peers.warn_now(reason.code()) {
                tracing::warn!(%remote, code = reason.code(), %message, "refused a peer connection (said once a minute per reason)");
            } else {
                tracing::debug!(%remote, code = reason.code(), %message, "refused a peer connection");
            }
            let mut answer = Vec::new();
            peer_wire::encode_frame(&Answer::Refused { reason, message }, &mut answer);
            // Best effort: the refused side learns why; it is closed either way.
            let send = async {
                stream.write_all(&answer).await?;
                stream.flush().await
            };
            let _ = tokio::time::timeout(HEADER_READ_TIMEOUT, send).await;
        }
        Err(e @ (PeerEnd::Wire(_) | PeerEnd::WrongSender { .. })) => {
            tracing::warn!(%remote, error = %e, "closed a peer connection")
        }
        Err(e) => tracing::debug!(%remote, error = %e, "peer connection ended"),
        Ok(()) => tracing::debug!(%remote, "peer connection closed by the peer"),
    }
}

async fn run_peer_connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cert: Option<&CertificateDer<'static>>,
    st: &Service,
    peers: &PeerConnections,
    mut stop: watch::Receiver<bool>,
    full: bool,
) -> Result<(), PeerEnd> {
    let mut preamble = [0u8; peer_wire::PREAMBLE.len()];
    let mut decoder = FrameDecoder::new(HELLO_BYTES_MAX);
    let hello = tokio::time::timeout(HEADER_READ_TIMEOUT, async {
        stream.read_exact(&mut preamble).await?;
        peer_wire::check_preamble(&preamble)?;
        loop {
            if let Some(p) = decoder.next_frame()? {
                return Ok::<Hello, PeerEnd>(peer_wire::decode_frame(&p)?);
            }
            if stream.read_buf(decoder.buffer()).await? == 0 {
                return Err(PeerEnd::NoHello);
            }
        }
    })
    .await
    .map_err(|_| PeerEnd::HelloTimeout)??;
    if full {
        let why = format!("this node holds {PEER_CONNECTIONS_MAX} peer connections already");
        return Err(PeerEnd::Refused(Refusal::TooManyConnections, why));
    }
    check_hello(st, &hello)?;
    check_certificate(st, &hello, cert)?;
    let mut accepted = Vec::new();
    peer_wire::encode_frame(&Answer::Accepted { node_id: NodeId(st.cfg.node_id) }, &mut accepted);
    stream.write_all(&accepted).await?;
    stream.flush().await?;
    let from = hello.from;
    let (seq, replaced) = peers.claim(from);
    tracing::debug!(peer = %from, "peer connection accepted");
    decoder.set_limit(FRAME_BYTES_MAX);
    let label = PeerLabel { peer: from.0 };
    let received = st.metrics.peer_received_bytes.get_or_create(&label).clone();
    let me = NodeId(st.cfg.node_id);
    let in_flight = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX));
    let mut learned = None;
    let r = async {
        loop {
            while let Some(p) = decoder.next_frame()? {
                received.inc_by((p.len() + peer_wire::LEN_BYTES) as u64);
                let messages = match peer_wire::decode_frame(&p)? {
                    Frame::Raft(messages) => messages,
                    Frame::Forward(f) => {
                        if st.status.borrow().membership.contains(from) {
                            forwarded(st, from, f, &in_flight);
                        } else {
                            let answer = peer_wire::ForwardAnswer::Refused {
                                status: 403,
                                code: "not_a_member".into(),
                                message: format!(
                                    "node {from} is not a member: it cannot forward writes"
                                ),
                            };
                            st.links.answer(from, f.id, answer);
                        }
                        continue;
                    }
                    Frame::ForwardAnswer { id, answer } => {
                        st.links.answered(from, id, answer);
                        continue;
                    }
                };
                if let Some(m) = messages.iter().find(|m| m.from != from || m.to != me) {
                    return Err(PeerEnd::WrongSender { said: from, found: m.from, to: m.to });
                }
                // What the hello says about the sender is news at most when the membership
                // changes: look at the first frame, then at most once a second.
                if learned.is_none_or(|t: std::time::Instant| t.elapsed() >= LEARN_EVERY) {
                    learn_addresses(st, from, Some(&hello.raft_addr), Some(&hello.client_addr));
                    learned = Some(std::time::Instant::now());
                }
                if !messages.is_empty() && st.tx.try_send(Input::Raft(messages)).is_err() {
                    // The node loop is behind: drop the batch rather than stall every peer's
                    // reads; Raft's retries recover it.
                    tracing::debug!(peer = %from, "input queue full; a peer batch was dropped");
                }
            }
            let wanted = decoder.wanted();
            decoder.buffer().reserve(wanted);
            tokio::select! {
                n = stream.read_buf(decoder.buffer()) => {
                    if n? == 0 {
                        return Ok(());
                    }
                }
                _ = replaced.notified() => return Err(PeerEnd::Replaced),
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return Err(PeerEnd::Stopping),
            }
        }
    }
    .await;
    peers.release(from, seq);
    r
}

/// Runs a write `from` forwarded here in its own task, and queues the answer back to it.
fn forwarded(st: &Service, from: NodeId, f: peer_wire::Forward, in_flight: &Arc<Semaphore>) {
    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
        let answer = peer_wire::ForwardAnswer::Refused {
            status: 503,
            code: "overloaded".into(),
            message: format!(
                "node {} has {FORWARDS_IN_FLIGHT_MAX} forwarded writes in flight from node {from}",
                st.cfg.node_id
            ),
        };
        st.links.answer(from, f.id, answer);
        return;
    };
    let st = st.clone();
    tokio::spawn(async move {
        let id = f.id;
        let answer = st.serve_forward(f).await;
        if !st.links.answer(from, id, answer) {
            tracing::debug!(peer = %from, "the answer to a forwarded write could not be queued");
        }
        drop(permit);
    });
}

/// The checks `POST /raft` makes, on a connection's hello.
fn check_hello(st: &Service, hello: &Hello) -> Result<(), PeerEnd> {
    if let Some(token) = &st.cfg.peer_token
        && !peer_auth::token_matches(hello.token.as_deref().unwrap_or(""), token)
    {
        let why = "the peer_token does not match this node's".to_string();
        return Err(PeerEnd::Refused(Refusal::Unauthorized, why));
    }
    let sent = (hello.cluster_id != 0).then(|| peer_auth::hex(hello.cluster_id));
    st.cluster_id
        .accepts(sent.as_deref())
        .map_err(|why| PeerEnd::Refused(Refusal::WrongCluster, why))?;
    if hello.from.0 == st.cfg.node_id {
        let why = format!("node {} is this node's own id", hello.from);
        return Err(PeerEnd::Refused(Refusal::SameNodeId, why));
    }
    Ok(())
}

/// With peer TLS, the sender's certificate must be valid for the host of its Raft address: the
/// one the membership records for it, or (not a member: a removed node, or one that joined a
/// moment ago) the one its hello gives. The certificate chains to `peer_tls_ca_file` already
/// (the handshake checked it); this binds it to the node id the hello claims.
fn check_certificate(
    st: &Service,
    hello: &Hello,
    cert: Option<&CertificateDer<'static>>,
) -> Result<(), PeerEnd> {
    if st.tls.peer.is_none() {
        return Ok(());
    }
    let refuse = |why: String| PeerEnd::Refused(Refusal::Unauthorized, why);
    let Some(cert) = cert else {
        return Err(refuse(format!("node {} presented no certificate", hello.from)));
    };
    let recorded = st
        .status
        .borrow()
        .membership
        .addresses
        .get(&hello.from)
        .map(|a| crate::transport::MemberAddr::decode(a).raft);
    let addr = recorded.unwrap_or_else(|| hello.raft_addr.clone());
    tls::check_peer_name(cert, &addr).map_err(|e| refuse(format!("node {}: {e}", hello.from)))
}

/// What a batch's sender tells about itself: its Raft address when it is not a member (a
/// removed node that must be told), its client address when that is news about a member.
/// Only well-formed addresses, only when they are news.
fn learn_addresses(st: &Service, from: NodeId, raft: Option<&str>, client: Option<&str>) {
    let s = st.status.borrow();
    let member = s.membership.contains(from);
    let news = member && client.is_some() && s.client_addr(from).as_deref() != client;
    drop(s);
    if let (false, Some(addr)) = (member, raft)
        && crate::config::check_host_port("addr", addr).is_ok()
    {
        let _ = st.tx.try_send(Input::SenderAddress { id: from, addr: addr.to_string() });
    }
    if let (true, Some(addr)) = (news, client)
        && crate::config::check_host_port("addr", addr).is_ok()
    {
        let _ = st.tx.try_send(Input::ClientAddress { id: from, addr: addr.to_string() });
    }
}

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

/// `POST /raft`: the 0.1 transport, kept for one release (see the module documentation).
async fn raft(
    State(st): State<Service>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    if st.tls.peer.is_some() {
        // Its batches name their sender in the body, where the peer certificate is not bound
        // to it; no version that speaks TLS needs it.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "framed_peers_only",
            "with peer TLS, members speak the framed peer protocol: `POST /raft` is not served",
        ));
    }
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
    if let Some(from) = messages.first().map(|m| m.from) {
        let header = |name| headers.get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
        let (raft, client) = (header(peer_auth::SENDER_HEADER), header(peer_auth::CLIENT_HEADER));
        learn_addresses(&st, from, raft, client);
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

#[cfg(test)]
mod tests {
    use super::*;

    // A peer refused again and again is logged at warn once per reason, not per attempt.
    #[test]
    fn refusals_are_warned_once_per_reason() {
        let peers = PeerConnections::default();
        assert!(peers.warn_now(Refusal::Unauthorized.code()));
        assert!(!peers.warn_now(Refusal::Unauthorized.code()), "the retry 2 s later");
        assert!(peers.warn_now(Refusal::WrongCluster.code()), "another reason");
    }
}
