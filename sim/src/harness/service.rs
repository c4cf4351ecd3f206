//! The server's service layer (`server/src/service.rs`) as simulated clients meet it: a client
//! sends a write to any node; the node proposes it, and on a refusal decides what to do with
//! `core::exec::AfterWriteError`, the function the server's service calls: forward the write to
//! the leader it names (a connection over the simulated network, which partitions cut and which
//! may break after the write arrived: "may still take effect"), wait for a leader and retry, or
//! give up. A forwarded write that the leader refuses in a way that proves it did not take effect
//! (`ForwardFailure::Retry`) is retried after another leader appears; an unknown outcome ends
//! as unknown, a refusal as not done. Reads wait for a leader and retry on `NoLeader`, as the
//! server's do (reads are not forwarded: a follower's ReadIndex asks the leader itself).
//!
//! A node that knows the leader forwards at once, without proposing first. The forward and its
//! answer travel as the server's peer frames (`peer_wire::Frame::Forward` and `ForwardAnswer`,
//! encoded and decoded), and the follower's decision is `core::exec::ForwardFailure`, as in
//! the server.
//!
//! What differs from the server: the hop is a hand-off to the leader's node task with a network
//! delay rather than the peer connection's queue and socket; the status the service polls is
//! the node's own state rather than a `watch` channel (so it waits by polling every
//! [`STATUS_POLL_MS`]).

use super::{Input, Sim};
use bytes::Bytes;
use madsim::time::{Duration, timeout};
use simple_cache_core::exec::{AfterWriteError, ForwardFailure, WriteOp};
use simple_cache_core::node::{WriteError, Written};
use simple_cache_core::peer_wire::{self, Forward, ForwardAnswer, Frame};
use simple_cache_core::raft::ReadError;
use simple_cache_core::types::{Instant, NodeId};

/// How often a request waiting for a leader looks at its node's state.
pub const STATUS_POLL_MS: u64 = 2;

/// How a write through the service ended.
#[derive(Debug)]
pub enum ServiceWrite {
    Done(Written),
    /// It may or may not have taken effect (a timeout, a node that stopped with it in flight, a
    /// forward whose answer was lost, a write a snapshot covered).
    Unknown,
    /// It certainly did not take effect: the node was down (connection refused), or it was
    /// refused, or the deadline passed before it was proposed anywhere.
    NotDone,
}

impl Sim {
    /// A client write sent to `node`, handled as the server's `Service::write` does, within
    /// `deadline` (simulated true time).
    pub async fn service_write(
        &self,
        node: NodeId,
        op: WriteOp,
        deadline: Instant,
    ) -> ServiceWrite {
        let mut attempt = 0u32;
        // Every turn of this loop starts with nothing of the request in effect: earlier attempts
        // ended in answers that prove it.
        loop {
            if !self.lock().is_up(node) {
                // The process is gone: the connection is refused.
                return ServiceWrite::NotDone;
            }
            // A follower that knows the leader forwards at once, as the server's does.
            let known = self.lock().node(node).and_then(|n| n.raft().leader_id());
            let (decision, e) = match known.filter(|&l| l != node) {
                Some(l) => (AfterWriteError::Forward(l), None),
                None => {
                    let (tx, rx) = async_channel::bounded(1);
                    if !self.submit(node, Input::Write(op.clone(), tx)) {
                        return ServiceWrite::NotDone;
                    }
                    match self.await_reply(rx, deadline).await {
                        Some(Ok(w)) => return ServiceWrite::Done(w),
                        Some(Err(e)) => (AfterWriteError::of(&e, node, false), Some(e)),
                        None => return ServiceWrite::Unknown,
                    }
                }
            };
            match decision {
                AfterWriteError::Forward(leader) => {
                    match self.forward_write(node, leader, &op, deadline).await {
                        Ok(w) => return ServiceWrite::Done(w),
                        Err(ForwardFailure::Unknown) => return ServiceWrite::Unknown,
                        Err(ForwardFailure::Refused) => return ServiceWrite::NotDone,
                        Err(ForwardFailure::Retry) => {
                            let other = |l: NodeId| l != leader;
                            if !self.wait_for_leader(node, deadline, other).await {
                                return ServiceWrite::NotDone;
                            }
                        }
                    }
                }
                AfterWriteError::WaitForLeader => {
                    attempt += 1;
                    let usable_now = attempt <= 3 && self.leader_usable(node, |_| true);
                    if !usable_now && !self.wait_for_leader(node, deadline, |_| true).await {
                        return ServiceWrite::NotDone;
                    }
                    // Let time pass even so: two nodes with stale views of each other would
                    // otherwise bounce a request forever at one simulated instant.
                    self.sleep_ms(1).await;
                }
                AfterWriteError::Fail => return fail(&e.expect("only a proposal's error fails")),
            }
        }
    }

    /// A linearizable read of `key` on `node`, as `Service::read` does it; `None` if it failed
    /// (which has no effect, so the caller leaves it out of the history).
    pub async fn service_read(&self, node: NodeId, key: &str, deadline: Instant) -> ServiceRead {
        let mut attempt = 0u32;
        loop {
            let (tx, rx) = async_channel::bounded(1);
            if !self.submit(node, Input::Read(key.to_string(), tx)) {
                return ServiceRead::Failed;
            }
            match self.await_reply(rx, deadline).await {
                Some(Ok(v)) => return ServiceRead::Value(v),
                Some(Err(ReadError::NoLeader | ReadError::Aborted)) => {
                    attempt += 1;
                    let usable_now = attempt <= 3 && self.leader_usable(node, |_| true);
                    if !usable_now && !self.wait_for_leader(node, deadline, |_| true).await {
                        return ServiceRead::Failed;
                    }
                    self.sleep_ms(1).await;
                }
                Some(Err(_)) | None => return ServiceRead::Failed,
            }
        }
    }

    /// Waits for a reply until `deadline`; `None` on timeout or if the node stopped with the
    /// request in flight.
    async fn await_reply<T>(&self, rx: async_channel::Receiver<T>, deadline: Instant) -> Option<T> {
        let left = deadline.saturating_since(self.now());
        match timeout(Duration::from_millis(left), rx.recv()).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// Whether `node` knows a leader that satisfies `ok` and is not handing over.
    fn leader_usable(&self, node: NodeId, ok: impl Fn(NodeId) -> bool) -> bool {
        let w = self.lock();
        w.node(node).is_some_and(|n| {
            n.raft().transfer_target().is_none() && n.raft().leader_id().is_some_and(&ok)
        })
    }

    /// Waits until `node` knows a usable leader satisfying `ok`; false on timeout or if the
    /// node stopped.
    async fn wait_for_leader(
        &self,
        node: NodeId,
        deadline: Instant,
        ok: impl Fn(NodeId) -> bool,
    ) -> bool {
        loop {
            if self.now() >= deadline || !self.lock().is_up(node) {
                return false;
            }
            self.sleep_ms(STATUS_POLL_MS).await;
            if self.leader_usable(node, &ok) {
                return true;
            }
        }
    }

    /// The follower `from` forwards a write to `leader` over the simulated network, as the
    /// server's transport does (`service.rs` `forward_write`): a `peer_wire::Frame::Forward`
    /// there, the leader proposes it once, a `Frame::ForwardAnswer` back, decoded as the
    /// server's Raft listener decodes them; the follower decides with
    /// `core::exec::ForwardFailure`.
    async fn forward_write(
        &self,
        from: NodeId,
        leader: NodeId,
        op: &WriteOp,
        deadline: Instant,
    ) -> Result<Written, ForwardFailure> {
        // Connecting: refused when the link is cut or the leader is down; the write never
        // left, so it took no effect.
        if self.link_cut(from, leader) || !self.lock().is_up(leader) {
            return Err(ForwardFailure::Retry);
        }
        let timeout_ms = deadline.0.saturating_sub(self.now().0);
        let forward = Forward { id: 1, op: op.clone(), authorization: None, timeout_ms };
        let there = self.hop_ms();
        self.sleep_ms(there).await;
        let Frame::Forward(forward) = carry(Frame::Forward(forward)) else {
            unreachable!("a forward frame decodes as one")
        };
        let (tx, rx) = async_channel::bounded(1);
        if self.link_cut(from, leader) || !self.submit(leader, Input::Write(forward.op, tx)) {
            // The connection broke with the request on the wire: it may have arrived.
            return Err(ForwardFailure::Unknown);
        }
        let answer = match self.await_reply(rx, deadline).await {
            Some(Ok(w)) => ForwardAnswer::Written(w),
            Some(Err(e)) => ForwardAnswer::Failed(e),
            None => return Err(ForwardFailure::Unknown),
        };
        let back = self.hop_ms();
        self.sleep_ms(back).await;
        if self.link_cut(leader, from) || self.now() >= deadline || !self.lock().is_up(from) {
            // The answer did not come back in time, or the node the client talks to is gone.
            return Err(ForwardFailure::Unknown);
        }
        match carry(Frame::ForwardAnswer { id: forward.id, answer }) {
            Frame::ForwardAnswer { answer: ForwardAnswer::Written(w), .. } => Ok(w),
            Frame::ForwardAnswer { answer: ForwardAnswer::Failed(e), .. } => {
                Err(ForwardFailure::of(&e))
            }
            other => unreachable!("the simulated leader answers a write or its error: {other:?}"),
        }
    }

    fn link_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.lock().net.cut.contains(&(from, to))
    }

    /// One way of a client-port request between nodes: the network's delay.
    fn hop_ms(&self) -> u64 {
        let w = self.lock();
        let (lo, hi) = (w.net.delay_ms_min, w.net.delay_ms_max);
        drop(w);
        lo + self.rand(hi.saturating_sub(lo) + 1)
    }
}

/// `frame` as the peer connection carries it: encoded, split by the frame decoder, decoded.
fn carry(frame: Frame) -> Frame {
    let mut wire = Vec::new();
    peer_wire::encode_frame(&frame, &mut wire);
    let mut decoder = peer_wire::FrameDecoder::new(peer_wire::FRAME_BYTES_MAX);
    decoder.push(&wire);
    let payload = decoder.next_frame().expect("a frame we wrote").expect("a whole frame");
    peer_wire::decode_frame(&payload).expect("a frame we wrote decodes")
}

/// A read through the service.
#[derive(Debug)]
pub enum ServiceRead {
    Value(Option<Bytes>),
    Failed,
}

/// A write the node refused for good: unknown if its outcome is, else not done.
fn fail(e: &WriteError) -> ServiceWrite {
    match e {
        WriteError::Unknown | WriteError::Undecodable(_) => ServiceWrite::Unknown,
        _ => ServiceWrite::NotDone,
    }
}
