//! Raft messages between nodes over HTTP: `POST http://<raft_http_addr>/raft` with a body of
//! `codec::encode(&Vec<Message>)` (a batch). Delivery is best effort, as Raft expects: a failed
//! batch is logged and dropped, and Raft's retries (heartbeats, probes) recover.
//!
//! Each peer has a sender task with a bounded queue, so a slow or dead peer never blocks the node
//! loop (messages to it are dropped when its queue is full) and messages to one peer keep their
//! order. The task drains everything queued into one request, which batches appends and
//! responses, over a keep-alive connection of a shared `reqwest::Client`.

use crate::metrics::{Metrics, PeerLabel};
use serde::{Deserialize, Serialize};
use simple_cache_core::{Membership, Message, MessageBody, NodeId, codec};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};
use tokio::sync::mpsc;

/// Messages queued for one peer before new ones are dropped.
const PEER_QUEUE_MAX: usize = 4096;
/// Messages in one HTTP request.
const BATCH_MESSAGES_MAX: usize = 512;
/// A batch stops growing once its messages hold about this many bytes (entries and snapshot
/// chunks), far below what the receiver accepts.
const BATCH_BYTES_TARGET: usize = 8 << 20;
/// Bytes of encoded messages the receiving side accepts in one request: room for one message
/// carrying the largest entry core allows (`ENTRY_BYTES_LIMIT`) plus its framing.
pub const RAFT_BODY_BYTES_MAX: usize = 64 << 20;
const _: () = assert!(
    simple_cache_core::config::ENTRY_BYTES_LIMIT + 16 * 1024 < RAFT_BODY_BYTES_MAX,
    "a batch of one message with the largest entry fits the receiver's limit"
);

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
    tx: mpsc::Sender<Message>,
}

pub struct Transport {
    self_id: NodeId,
    self_addr: String,
    /// This node's client address, advertised to peers (see `peer_auth::CLIENT_HEADER`).
    client_addr: String,
    peer_token: Option<String>,
    cluster_id: crate::peer_auth::ClusterId,
    peers: BTreeMap<NodeId, Peer>,
    client: reqwest::Client,
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
    ) -> Transport {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client without TLS builds");
        Transport {
            self_id,
            self_addr,
            client_addr,
            peer_token,
            cluster_id,
            peers: BTreeMap::new(),
            client,
            runtime,
            metrics,
        }
    }

    /// Starts, replaces or stops sender tasks so that exactly `addrs` (minus this node) have one.
    pub fn set_addresses(&mut self, addrs: &BTreeMap<NodeId, String>) {
        self.peers.retain(|id, p| addrs.get(id).is_some_and(|a| *a == p.addr));
        for (id, addr) in addrs {
            if *id == self.self_id || self.peers.contains_key(id) {
                continue;
            }
            tracing::info!(peer = %id, %addr, "raft transport: peer address set");
            let (tx, rx) = mpsc::channel(PEER_QUEUE_MAX);
            self.runtime.spawn(sender(
                *id,
                format!("http://{addr}/raft"),
                rx,
                self.client.clone(),
                self.metrics.clone(),
                Identity {
                    peer_token: self.peer_token.clone(),
                    cluster_id: self.cluster_id.clone(),
                    raft_addr: self.self_addr.clone(),
                    client_addr: self.client_addr.clone(),
                },
            ));
            self.peers.insert(*id, Peer { addr: addr.clone(), tx });
        }
    }

    /// Queues messages without blocking; a message to an unknown or overloaded peer is dropped.
    pub fn send(&self, messages: Vec<Message>) {
        for m in messages {
            match self.peers.get(&m.to) {
                Some(p) => {
                    let to = m.to;
                    if p.tx.try_send(m).is_err() {
                        let label = PeerLabel { peer: to.0 };
                        self.metrics.peer_send_failures.get_or_create(&label).inc();
                    }
                }
                None => tracing::debug!(to = %m.to, "no address for peer; message dropped"),
            }
        }
    }
}

/// What a sender tells the receiving peer about this node.
struct Identity {
    peer_token: Option<String>,
    cluster_id: crate::peer_auth::ClusterId,
    raft_addr: String,
    client_addr: String,
}

async fn sender(
    peer: NodeId,
    url: String,
    mut rx: mpsc::Receiver<Message>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    Identity { peer_token, cluster_id, raft_addr: self_addr, client_addr }: Identity,
) {
    let label = PeerLabel { peer: peer.0 };
    let mut failing = false;
    // A message taken off the queue that did not fit the previous batch.
    let mut carried: Option<Message> = None;
    loop {
        let first = match carried.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let mut bytes = message_bytes(&first);
        let mut batch = vec![first];
        while batch.len() < BATCH_MESSAGES_MAX && bytes < BATCH_BYTES_TARGET {
            match rx.try_recv() {
                Ok(m) => {
                    let size = message_bytes(&m);
                    if bytes + size > BATCH_BYTES_TARGET {
                        carried = Some(m);
                        break;
                    }
                    bytes += size;
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        let has_append = batch.iter().any(|m| matches!(m.body, MessageBody::AppendEntries { .. }));
        let body = codec::encode(&batch);
        let len = body.len() as u64;
        let started = StdInstant::now();
        let mut req = client
            .post(&url)
            .header(crate::peer_auth::SENDER_HEADER, &self_addr)
            .header(crate::peer_auth::CLIENT_HEADER, &client_addr)
            .body(body);
        if let Some(t) = &peer_token {
            req = req.bearer_auth(t);
        }
        if let Some(id) = cluster_id.get() {
            req = req.header(crate::peer_auth::CLUSTER_HEADER, crate::peer_auth::hex(id));
        }
        let result = req.send().await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                metrics.peer_sent_bytes.get_or_create(&label).inc_by(len);
                if has_append {
                    metrics.append_entries_latency.observe(started.elapsed().as_secs_f64());
                }
                if failing {
                    tracing::info!(%peer, "raft transport: peer reachable again");
                    failing = false;
                }
            }
            Ok(resp) => {
                metrics.peer_send_failures.get_or_create(&label).inc();
                tracing::warn!(%peer, status = %resp.status(), "raft transport: peer refused a batch");
            }
            Err(e) => {
                metrics.peer_send_failures.get_or_create(&label).inc();
                // Log the first failure at warn and the rest at debug: a dead peer would
                // otherwise flood the log with a line per heartbeat.
                if !failing {
                    tracing::warn!(%peer, error = %e, "raft transport: peer unreachable");
                    failing = true;
                } else {
                    tracing::debug!(%peer, error = %e, "raft transport: peer unreachable");
                }
            }
        }
    }
}
