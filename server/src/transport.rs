//! Raft messages to peers: one persistent TCP connection to each peer's Raft address, speaking
//! `core::peer_wire` (preamble, hello, then frames of message batches; `raft_http` is the other
//! end). Delivery is best effort, as Raft expects: a batch that could not be written is dropped,
//! and Raft's retries (heartbeats, probes) recover.
//!
//! Each peer has a sender task with a bounded queue ([`Links`], shared by the node loop, the
//! service and the Raft listener), so a slow or dead peer never blocks the node loop (messages
//! to it are dropped when its queue is full) and messages to one peer keep their order. The
//! queue also carries writes this node forwards to the leader and its answers to writes
//! followers forwarded here (`peer_wire::Frame::Forward`, `ForwardAnswer`; see `service.rs`).
//! The task connects as soon as it starts, writes everything queued in one go (each run of Raft
//! messages as one frame, so a busy leader sends fewer, larger writes), reconnects with a
//! doubling backoff (50 ms to 2 s) after a failure, and drops what was queued while the peer was
//! unreachable rather than replay stale messages; a forwarded write learns whether it was never
//! sent (retried elsewhere) or may have arrived (reported).
//!
//! A peer that answers the preamble with HTTP runs the 0.1 transport (`POST /raft` per batch):
//! the task then sends that way, and tries the peer protocol again every minute, so a cluster
//! can be upgraded one node at a time. This fallback goes with `POST /raft` in the next release.

use crate::metrics::{Metrics, PeerLabel};
use serde::{Deserialize, Serialize};
use simple_cache_core::exec::WriteOp;
use simple_cache_core::peer_wire::{
    self, Answer, Forward, ForwardAnswer, Frame, FrameDecoder, Hello,
};
use simple_cache_core::{Membership, Message, MessageBody, NodeId, codec};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant as StdInstant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 4096;
/// Messages in one frame.
const BATCH_MESSAGES_MAX: usize = 512;
/// A batch stops growing once its messages hold about this many bytes (entries and snapshot
/// chunks), far below what the receiver accepts.
const BATCH_BYTES_TARGET: usize = 8 << 20;
const _: () = assert!(BATCH_BYTES_TARGET * 2 < peer_wire::FRAME_BYTES_MAX);
/// Connecting, the hello and its answer, and writing one frame each get this long.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A frame that takes longer to write than this (the peer stopped reading) closes the
/// connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a peer that answered with HTTP is sent to over HTTP before the peer protocol is
/// tried again.
const HTTP_FALLBACK_FOR: Duration = Duration::from_secs(60);

/// About how many bytes a message adds to a batch.
fn message_bytes(m: &Message) -> usize {
    64 + match &m.body {
        MessageBody::AppendEntries { entries, .. } => entries.iter().map(|e| e.size_bytes()).sum(),
        MessageBody::InstallSnapshot { data, meta, .. } => {
            data.len() + meta.membership.addresses.values().map(String::len).sum::<usize>()
        }
        _ => 0,
    }
}

/// How to reach a member, stored (as JSON) in `Membership::addresses` so every node learns it
/// through the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberAddr {
    /// The member's Raft address.
    pub raft: String,
    /// The member's client HTTP address, for forwarding writes to it when it leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

impl MemberAddr {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings serializes")
    }
    /// Parses an address from the membership; a plain `host:port` is a Raft address.
    pub fn decode(s: &str) -> MemberAddr {
        serde_json::from_str(s).unwrap_or_else(|_| MemberAddr { raft: s.to_string(), http: None })
    }
}

/// The Raft addresses of every member, from the membership plus any learned elsewhere.
pub fn raft_addresses(m: &Membership) -> BTreeMap<NodeId, MemberAddr> {
    m.addresses.iter().map(|(id, a)| (*id, MemberAddr::decode(a))).collect()
}

struct Peer {
    addr: String,
    tx: mpsc::Sender<Outgoing>,
}

/// What goes to a peer's sender task.
#[derive(Debug)]
enum Outgoing {
    Raft(Message),
    Forward(Forward),
    Answer { id: u64, answer: ForwardAnswer },
}

impl Outgoing {
    /// About how many bytes it adds to a write.
    fn bytes(&self) -> usize {
        match self {
            Outgoing::Raft(m) => message_bytes(m),
            Outgoing::Forward(_) | Outgoing::Answer { .. } => 256,
        }
    }
}

/// How a forwarded write's wait ended, when it did not end with the leader's answer.
#[derive(Debug)]
pub enum ForwardReply {
    Answer(ForwardAnswer),
    /// It never left this node (no connection, a full queue): it took no effect.
    NotSent(String),
    /// The connection broke while it was written: it may have arrived.
    MaybeSent(String),
    /// The peer runs a version without the peer protocol: forward over HTTP instead.
    Http,
}

/// Why an item was not queued.
enum Unqueued {
    NoAddress,
    Full,
}

struct Pending {
    leader: NodeId,
    reply: oneshot::Sender<ForwardReply>,
}

/// The ways to the peers, shared by the node loop (Raft messages), the service (forwarded
/// writes) and the Raft listener (answers to them): one bounded queue per peer, drained by the
/// peer's sender task.
pub struct Links {
    peers: RwLock<BTreeMap<NodeId, Peer>>,
    /// Forwarded writes waiting for the leader's answer, by id.
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

/// A forwarded write in flight; dropping it forgets the wait (a late answer is ignored).
pub struct ForwardWait<'a> {
    links: &'a Links,
    id: u64,
    rx: oneshot::Receiver<ForwardReply>,
}

impl ForwardWait<'_> {
    /// The answer, or why there is none. `None` if this node is stopping.
    pub async fn reply(&mut self) -> Option<ForwardReply> {
        (&mut self.rx).await.ok()
    }
}

impl Drop for ForwardWait<'_> {
    fn drop(&mut self) {
        self.links.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Links {
    fn new(metrics: Arc<Metrics>) -> Links {
        Links {
            peers: RwLock::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metrics,
        }
    }

    /// Queues `item` for `to`. Fails if `to` has no sender (no address) or its queue is full.
    fn push(&self, to: NodeId, item: Outgoing) -> Result<(), Unqueued> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let Some(p) = peers.get(&to) else { return Err(Unqueued::NoAddress) };
        p.tx.try_send(item).map_err(|_| {
            self.metrics.peer_send_failures.get_or_create(&PeerLabel { peer: to.0 }).inc();
            Unqueued::Full
        })
    }

    /// Queues Raft messages without blocking; a message to an unknown or overloaded peer is
    /// dropped.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            let to = m.to;
            if self.push(to, Outgoing::Raft(m)).is_err() {
                tracing::debug!(%to, "peer unknown or its queue full; message dropped");
            }
        }
    }

    /// Sends a client write to `leader` over the peer connection; the wait ends with its
    /// answer, or when it could not be sent.
    pub fn forward(
        &self,
        leader: NodeId,
        op: WriteOp,
        authorization: Option<String>,
        timeout: Duration,
    ) -> ForwardWait<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Pending { leader, reply });
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let forward = Forward { id, op, authorization, timeout_ms };
        match self.push(leader, Outgoing::Forward(forward)) {
            Ok(()) => {}
            Err(Unqueued::NoAddress) => {
                let why = format!("this node has no address for node {leader}");
                self.settle(id, ForwardReply::NotSent(why));
            }
            // Not sent, but retrying at once would meet the same full queue: the client is
            // told, as a leader's own client is when its queue is full.
            Err(Unqueued::Full) => {
                let answer = ForwardAnswer::Refused {
                    status: 503,
                    code: "overloaded".into(),
                    message: format!("the queue to node {leader} is full"),
                };
                self.settle(id, ForwardReply::Answer(answer));
            }
        }
        ForwardWait { links: self, id, rx }
    }

    /// Sends the answer to a write `to` forwarded here. `false` if it could not be queued.
    pub fn answer(&self, to: NodeId, id: u64, answer: ForwardAnswer) -> bool {
        self.push(to, Outgoing::Answer { id, answer }).is_ok()
    }

    /// The leader `from` answered forward `id`. An answer from another node than the one the
    /// write went to, or for a wait that ended, is ignored.
    pub fn answered(&self, from: NodeId, id: u64, answer: ForwardAnswer) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.get(&id).is_some_and(|p| p.leader == from) {
            let p = pending.remove(&id).expect("present");
            let _ = p.reply.send(ForwardReply::Answer(answer));
        } else {
            tracing::debug!(peer = %from, id, "an answer to no forward of ours; ignored");
        }
    }

    /// Ends the waits of every forward to `leader` with [`ForwardReply::MaybeSent`].
    fn lose_pending(&self, leader: NodeId, why: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let lost: Vec<u64> =
            pending.iter().filter(|(_, p)| p.leader == leader).map(|(id, _)| *id).collect();
        for id in lost {
            if let Some(p) = pending.remove(&id) {
                let _ = p.reply.send(ForwardReply::MaybeSent(why.to_string()));
            }
        }
    }

    fn settle(&self, id: u64, reply: ForwardReply) {
        let p = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        if let Some(p) = p {
            let _ = p.reply.send(reply);
        }
    }
}

pub struct Transport {
    self_id: NodeId,
    self_addr: String,
    /// This node's client address, advertised to peers (see `peer_auth::CLIENT_HEADER`).
    client_addr: String,
    peer_token: Option<String>,
    cluster_id: crate::peer_auth::ClusterId,
    links: Arc<Links>,
    client: reqwest::Client,
    /// With peer TLS: how connections to peers are made.
    tls: Option<tokio_rustls::TlsConnector>,
    /// `http` or `https`, for the fallback to `POST /raft`.
    scheme: &'static str,
    runtime: tokio::runtime::Handle,
    metrics: Arc<Metrics>,
}

impl Transport {
    /// `runtime` runs the sender tasks (the main runtime, not the node loop's thread, so a slow
    /// fsync does not delay sends).
    pub fn new(
        self_id: NodeId,
        (self_addr, client_addr): (String, String),
        runtime: tokio::runtime::Handle,
        metrics: Arc<Metrics>,
        peer_token: Option<String>,
        cluster_id: crate::peer_auth::ClusterId,
        tls: &crate::tls::Tls,
    ) -> Transport {
        let client = tls
            .peer_http_client()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("the HTTP client builds");
        Transport {
            self_id,
            self_addr,
            client_addr,
            peer_token,
            cluster_id,
            links: Arc::new(Links::new(metrics.clone())),
            client,
            tls: tls.peer_connector(),
            scheme: tls.peer_scheme(),
            runtime,
            metrics,
        }
    }

    /// The queues to the peers, for the service and the Raft listener.
    pub fn links(&self) -> Arc<Links> {
        self.links.clone()
    }

    /// Starts, replaces or stops sender tasks so that exactly `addrs` (minus this node) have one.
    pub fn set_addresses(&mut self, addrs: &BTreeMap<NodeId, String>) {
        let mut peers = self.links.peers.write().unwrap_or_else(|e| e.into_inner());
        peers.retain(|id, p| addrs.get(id).is_some_and(|a| *a == p.addr));
        for (id, addr) in addrs {
            if *id == self.self_id || peers.contains_key(id) {
                continue;
            }
            tracing::info!(peer = %id, %addr, "raft transport: peer address set");
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            let sender = Sender {
                peer: *id,
                addr: addr.clone(),
                client: self.client.clone(),
                tls: self.tls.clone(),
                scheme: self.scheme,
                metrics: self.metrics.clone(),
                links: Arc::downgrade(&self.links),
                me: Identity {
                    id: self.self_id,
                    peer_token: self.peer_token.clone(),
                    cluster_id: self.cluster_id.clone(),
                    raft_addr: self.self_addr.clone(),
                    client_addr: self.client_addr.clone(),
                },
                failing: false,
            };
            self.runtime.spawn(sender.run(rx));
            peers.insert(*id, Peer { addr: addr.clone(), tx });
        }
    }

    /// Queues messages without blocking; a message to an unknown or overloaded peer is dropped.
    pub fn send(&self, messages: Vec<Message>) {
        self.links.send(messages);
    }
}

/// Samples `raft_append_entries_latency_seconds`: from an AppendEntries leaving for a peer to
/// that peer's answer reaching the node loop, one round at a time per peer (an append sent
/// while one is outstanding is not timed), so it costs a map lookup per message. A round whose
/// answer was lost is timed until the next answer, which includes Raft's retry; a round older
/// than [`APPEND_ROUND_MAX`] (say, from before this node lost and regained leadership) is
/// dropped instead.
#[derive(Debug, Default)]
pub struct AppendTimer {
    outstanding: BTreeMap<NodeId, StdInstant>,
}

/// Rounds that took longer are not samples.
const APPEND_ROUND_MAX: Duration = Duration::from_secs(10);

impl AppendTimer {
    pub fn sent(&mut self, messages: &[Message]) {
        for m in messages {
            if matches!(m.body, MessageBody::AppendEntries { .. }) {
                self.outstanding.entry(m.to).or_insert_with(StdInstant::now);
            }
        }
    }

    /// The round's duration, when `m` answers an outstanding one.
    pub fn answered(&mut self, m: &Message) -> Option<Duration> {
        if !matches!(m.body, MessageBody::AppendEntriesResponse { .. }) {
            return None;
        }
        let took = self.outstanding.remove(&m.from)?.elapsed();
        (took <= APPEND_ROUND_MAX).then_some(took)
    }
}

/// What a sender tells the receiving peer about this node.
struct Identity {
    id: NodeId,
    peer_token: Option<String>,
    cluster_id: crate::peer_auth::ClusterId,
    raft_addr: String,
    client_addr: String,
}

/// The way to a peer right now.
enum Link {
    None,
    /// A peer protocol connection.
    Framed {
        reader: Box<dyn AsyncRead + Send + Unpin>,
        writer: Box<dyn AsyncWrite + Send + Unpin>,
    },
    /// The peer answered with HTTP (an older version) at `since`.
    Http {
        since: StdInstant,
    },
}

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Wire(#[from] peer_wire::WireError),
    #[error("refused ({}): {message}", .reason.code())]
    Refused { reason: peer_wire::Refusal, message: String },
    #[error("the node answering at this address is node {found}, not node {expected}")]
    WrongNode { expected: NodeId, found: NodeId },
    /// The peer speaks HTTP only.
    #[error("the peer answered with HTTP")]
    Http,
    #[error("TLS: {0}")]
    Tls(String),
}

struct Sender {
    peer: NodeId,
    addr: String,
    client: reqwest::Client,
    tls: Option<tokio_rustls::TlsConnector>,
    scheme: &'static str,
    metrics: Arc<Metrics>,
    /// Weak: the task ends when the transport is gone.
    links: Weak<Links>,
    me: Identity,
    failing: bool,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Outgoing>) {
        let label = PeerLabel { peer: self.peer.0 };
        let failures = self.metrics.peer_send_failures.get_or_create(&label).clone();
        let sent = self.metrics.peer_sent_bytes.get_or_create(&label).clone();
        // Connect at once, so the first message (or a forwarded write's answer) does not wait
        // for the connection; a failure here is retried when there is something to send.
        let mut link = self.connect().await.unwrap_or(Link::None);
        let mut backoff = BACKOFF_MIN;
        // An item taken off the queue that did not fit the previous batch.
        let mut carried: Option<Outgoing> = None;
        let mut buf = Vec::new();
        loop {
            let first = match (carried.take(), &mut link) {
                (Some(m), _) => m,
                (None, Link::Framed { reader, .. }) => {
                    // The receiver never writes after its answer: a readable socket means it
                    // closed (or broke the protocol), so reconnect before the next batch.
                    let mut probe = [0u8; 1];
                    tokio::select! {
                        m = rx.recv() => match m { Some(m) => m, None => return },
                        _ = reader.read(&mut probe) => {
                            self.failed(&"the peer closed the connection");
                            self.connection_lost("the peer closed the connection");
                            link = Link::None;
                            continue;
                        }
                    }
                }
                (None, _) => match rx.recv().await {
                    Some(m) => m,
                    None => return,
                },
            };
            let batch = gather(first, &mut rx, &mut carried);
            if let Link::Http { since } = link
                && since.elapsed() >= HTTP_FALLBACK_FOR
            {
                link = Link::None;
            }
            if matches!(link, Link::None) {
                match self.connect().await {
                    Ok(l) => {
                        link = l;
                        backoff = BACKOFF_MIN;
                    }
                    Err(e) => {
                        failures.inc();
                        self.failed(&e);
                        // Rather than replay stale messages later, drop what queued up; Raft
                        // sends what is still needed again, and forwarded writes learn they
                        // were not sent.
                        let why = format!("node {} is unreachable: {e}", self.peer);
                        self.unsent(batch, &why);
                        while let Ok(m) = rx.try_recv() {
                            self.unsent(vec![m], &why);
                        }
                        if let Some(m) = carried.take() {
                            self.unsent(vec![m], &why);
                        }
                        // A retry delay, not synchronization: nothing tells when the peer
                        // comes back.
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
            let result = match &mut link {
                Link::Framed { writer, .. } => {
                    buf.clear();
                    let forwards = encode_batch(batch, &mut buf);
                    let write = async {
                        writer.write_all(&buf).await?;
                        // Over TLS, written bytes may wait in the session until a flush.
                        writer.flush().await
                    };
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => Ok(buf.len()),
                        Ok(Err(e)) => Err((e.to_string(), forwards)),
                        Err(_) => Err((format!("writing took over {WRITE_TIMEOUT:?}"), forwards)),
                    }
                }
                Link::Http { .. } => {
                    let (raft, other): (Vec<_>, Vec<_>) =
                        batch.into_iter().partition(|o| matches!(o, Outgoing::Raft(_)));
                    // Forwarded writes go to such a peer's client port instead; answers to
                    // writes it forwarded go back on its HTTP request, never here.
                    for o in other {
                        if let Outgoing::Forward(f) = o {
                            self.settle(f.id, ForwardReply::Http);
                        }
                    }
                    let raft: Vec<Message> = raft
                        .into_iter()
                        .filter_map(|o| match o {
                            Outgoing::Raft(m) => Some(m),
                            _ => None,
                        })
                        .collect();
                    if raft.is_empty() {
                        continue;
                    }
                    self.send_http(&raft).await.map_err(|e| (e, Vec::new()))
                }
                Link::None => unreachable!("connected above"),
            };
            // Keep the buffer of a burst, not of the largest batch ever.
            if buf.capacity() > BATCH_BYTES_TARGET {
                buf = Vec::new();
            }
            match result {
                Ok(len) => {
                    sent.inc_by(len as u64);
                    if self.failing {
                        tracing::info!(peer = %self.peer, "raft transport: peer reachable again");
                        self.failing = false;
                    }
                }
                Err((e, forwards)) => {
                    failures.inc();
                    for id in forwards {
                        let why = format!("the connection to node {} broke: {e}", self.peer);
                        self.settle(id, ForwardReply::MaybeSent(why));
                    }
                    self.failed(&e);
                    if matches!(link, Link::Framed { .. }) {
                        self.connection_lost(&e);
                        link = Link::None;
                    }
                }
            }
        }
    }

    /// The connection to the peer ended: forwarded writes waiting for its answers may or may
    /// not have arrived, and are told so now rather than at their deadline.
    fn connection_lost(&self, why: &str) {
        if let Some(links) = self.links.upgrade() {
            let why = format!("the connection to node {} broke: {why}", self.peer);
            links.lose_pending(self.peer, &why);
        }
    }

    /// Items that will not be sent: forwarded writes among them learn it.
    fn unsent(&self, items: Vec<Outgoing>, why: &str) {
        for o in items {
            if let Outgoing::Forward(f) = o {
                self.settle(f.id, ForwardReply::NotSent(why.to_string()));
            }
        }
    }

    fn settle(&self, id: u64, reply: ForwardReply) {
        if let Some(links) = self.links.upgrade() {
            links.settle(id, reply);
        }
    }

    /// Logs the first failure in a row at warn and the rest at debug: a dead peer would
    /// otherwise flood the log with a line per heartbeat.
    fn failed(&mut self, e: &dyn std::fmt::Display) {
        if !self.failing {
            tracing::warn!(peer = %self.peer, addr = %self.addr, error = %e, "raft transport: peer unreachable");
            self.failing = true;
        } else {
            tracing::debug!(peer = %self.peer, error = %e, "raft transport: peer unreachable");
        }
    }

    /// Opens a peer protocol connection: preamble and hello, then the receiver's answer.
    async fn connect(&self) -> Result<Link, ConnectError> {
        let io = async {
            let stream = TcpStream::connect(&self.addr).await?;
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = self.secure(stream).await?;
            let hello = Hello {
                from: self.me.id,
                cluster_id: self.me.cluster_id.get().unwrap_or(0),
                token: self.me.peer_token.clone(),
                raft_addr: self.me.raft_addr.clone(),
                client_addr: self.me.client_addr.clone(),
            };
            let mut out = peer_wire::PREAMBLE.to_vec();
            peer_wire::encode_frame(&hello, &mut out);
            writer.write_all(&out).await?;
            writer.flush().await?;
            let mut decoder = FrameDecoder::new(peer_wire::HELLO_BYTES_MAX);
            let answer = loop {
                if decoder.buffer().starts_with(b"HTTP") {
                    return Err(ConnectError::Http);
                }
                if let Some(p) = decoder.next_frame()? {
                    break peer_wire::decode_frame::<Answer>(&p)?;
                }
                if reader.read_buf(decoder.buffer()).await? == 0 {
                    let closed = std::io::ErrorKind::UnexpectedEof;
                    return Err(std::io::Error::new(closed, "closed before answering").into());
                }
            };
            match answer {
                Answer::Accepted { node_id } if node_id == self.peer => {
                    Ok(Link::Framed { reader, writer })
                }
                Answer::Accepted { node_id } => {
                    Err(ConnectError::WrongNode { expected: self.peer, found: node_id })
                }
                Answer::Refused { reason, message } => {
                    Err(ConnectError::Refused { reason, message })
                }
            }
        };
        match tokio::time::timeout(IO_TIMEOUT, io).await {
            Ok(Err(ConnectError::Http)) => {
                tracing::info!(peer = %self.peer, addr = %self.addr, "raft transport: the peer runs an older version; sending over HTTP");
                Ok(Link::Http { since: StdInstant::now() })
            }
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    /// The connection's two halves, in TLS with peer TLS: the peer's certificate must chain
    /// to `peer_tls_ca_file` and be valid for the host of the address dialed.
    async fn secure(
        &self,
        stream: TcpStream,
    ) -> Result<(Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>), ConnectError>
    {
        let Some(connector) = &self.tls else {
            let (r, w) = stream.into_split();
            return Ok((Box::new(r), Box::new(w)));
        };
        let name = crate::tls::server_name(&self.addr).map_err(ConnectError::Tls)?;
        let tls = connector.connect(name, stream).await.map_err(|e| {
            // A plain-text node answers a ClientHello with an HTTP error or its refusal frame.
            let hint = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                " (the peer closed the connection in the handshake: its Raft port may not speak \
                 TLS, or it refused this node's certificate)"
            } else {
                ""
            };
            ConnectError::Tls(format!("{e}{hint}"))
        })?;
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w)))
    }

    /// One batch as `POST /raft` (the 0.1 transport).
    async fn send_http(&self, batch: &[Message]) -> Result<usize, String> {
        let body = codec::encode(batch);
        let len = body.len();
        let mut req = self
            .client
            .post(format!("{}://{}/raft", self.scheme, self.addr))
            .header(crate::peer_auth::SENDER_HEADER, &self.me.raft_addr)
            .header(crate::peer_auth::CLIENT_HEADER, &self.me.client_addr)
            .body(body);
        if let Some(t) = &self.me.peer_token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = self.me.cluster_id.get() {
            req = req.header(crate::peer_auth::CLUSTER_HEADER, crate::peer_auth::hex(id));
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(len),
            Ok(resp) => Err(format!("the peer refused a batch: {}", resp.status())),
            Err(e) => Err(crate::tls::error_chain(&e)),
        }
    }
}

/// Encodes `batch` into `buf` as frames: each run of Raft messages as one frame, each other item
/// as its own. Returns the ids of the forwarded writes in it.
fn encode_batch(batch: Vec<Outgoing>, buf: &mut Vec<u8>) -> Vec<u64> {
    let mut forwards = Vec::new();
    let mut run: Vec<Message> = Vec::new();
    for o in batch {
        match o {
            Outgoing::Raft(m) => run.push(m),
            other => {
                if !run.is_empty() {
                    peer_wire::encode_frame(&Frame::Raft(std::mem::take(&mut run)), buf);
                }
                let frame = match other {
                    Outgoing::Forward(f) => {
                        forwards.push(f.id);
                        Frame::Forward(f)
                    }
                    Outgoing::Answer { id, answer } => Frame::ForwardAnswer { id, answer },
                    Outgoing::Raft(_) => unreachable!("handled above"),
                };
                peer_wire::encode_frame(&frame, buf);
            }
        }
    }
    if !run.is_empty() {
        peer_wire::encode_frame(&Frame::Raft(run), buf);
    }
    forwards
}

/// `first` and what else is queued, up to a batch's bounds.
fn gather(
    first: Outgoing,
    rx: &mut mpsc::Receiver<Outgoing>,
    carried: &mut Option<Outgoing>,
) -> Vec<Outgoing> {
    let mut bytes = first.bytes();
    let mut batch = vec![first];
    while batch.len() < BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_TARGET {
        match rx.try_recv() {
            Ok(m) => {
                let size = m.bytes();
                if bytes + size > BATCH_BYTES_TARGET {
                    *carried = Some(m);
                    break;
                }
                bytes += size;
                batch.push(m);
            }
            Err(_) => break,
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_cache_core::{LogIndex, Term};

    fn msg(to: u64, from: u64, body: MessageBody) -> Message {
        Message { from: NodeId(from), to: NodeId(to), term: Term(1), body }
    }

    fn append(to: u64) -> Message {
        let body = MessageBody::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: vec![],
            leader_commit: LogIndex(0),
        };
        msg(to, 1, body)
    }

    fn answer(from: u64) -> Message {
        let body = MessageBody::AppendEntriesResponse {
            index: LogIndex(1),
            success: true,
            conflict_term: None,
            conflict_index: LogIndex(0),
        };
        msg(1, from, body)
    }

    // One round per peer: the answer to an append is timed once, from the first append sent
    // while none was outstanding; answers nobody waits for and other messages are not samples.
    #[test]
    fn append_rounds_are_timed_once_per_answer() {
        let mut t = AppendTimer::default();
        assert_eq!(t.answered(&answer(2)), None, "nothing outstanding");
        t.sent(&[append(2), append(3)]);
        let first = t.outstanding[&NodeId(2)];
        t.sent(&[append(2)]);
        assert_eq!(t.outstanding[&NodeId(2)], first, "a second append does not restart the round");
        let heartbeat_answer = msg(1, 2, MessageBody::TimeoutNow);
        assert_eq!(t.answered(&heartbeat_answer), None);
        assert!(t.answered(&answer(2)).is_some());
        assert_eq!(t.answered(&answer(2)), None, "the round is over");
        assert!(t.answered(&answer(3)).is_some(), "peers are timed apart");
    }
}
