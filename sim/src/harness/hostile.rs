//! Hostile and broken peers: messages no correct peer sends, delivered to nodes while clients
//! run, and garbage bytes given to the Raft message decoder.
//!
//! Two kinds of message, both crafted from the target's current view (its term, role, leader and
//! log):
//! - **Impossible** ones, which core must refuse before anything changes (`StepError::Refused`;
//!   accepting one is a violation): a leader's message in term 0; a second leader in a term; an
//!   append whose `prev_log_term` or entry terms pass the sender's term, whose entries leave a
//!   gap, or that names a term at index 0; a snapshot of a later term than its sender's or whose
//!   membership has no voters; and, to a leader, acknowledgements of entries it does not have or
//!   of ReadIndex rounds it never started.
//! - **Confusing** ones, which a correct peer could send late or which come from strangers, and
//!   which must not hurt: votes, answers and read-index answers from nodes that are not members,
//!   answers about read ids nobody asked for, appends of an older term reaching below the
//!   snapshot, snapshot chunks at an offset nobody is at.
//!
//! What is left out, on purpose: messages forged in the name of the current leader with a
//! plausible content (a heartbeat with a higher commit index, a well-formed append of invented
//! entries) and `Removed`. Raft trusts its members: no check inside the protocol can tell such a
//! message from the real one. The peer token and the cluster id on the Raft port keep strangers
//! from sending them (server tests), and a member that lies is outside the fault model.

use super::Sim;
use bytes::Bytes;
use rand_core::Rng;
use simple_cache_core::message::{
    Entry, EntryPayload, Membership, Message, MessageBody, ReadId, SnapshotMeta,
};
use simple_cache_core::peer_wire;
use simple_cache_core::raft::Role;
use simple_cache_core::types::{Instant, LogIndex, NodeId, Term};

/// A node id no member has: messages "from another cluster" or from a stranger.
const STRANGER: NodeId = NodeId(4_000_000);

/// What the nemesis saw of its target when it crafted a message.
struct View {
    me: NodeId,
    term: Term,
    role: Role,
    leader: Option<NodeId>,
    last_index: LogIndex,
    members: Vec<NodeId>,
}

/// The hostile-peer nemesis: for 2-3 s, every 2-20 ms a crafted message to a random node, under
/// light loss and a leader crash or two; then a few thousand garbage byte strings to the decoder.
pub async fn hostile_peers(sim: Sim) {
    let loss = sim.rand(50);
    sim.net(|n| n.loss_per_mille = loss);
    let start = sim.now();
    let length_ms = 2_000 + sim.rand(1_000);
    let mut crashes = 0;
    while sim.now().saturating_since(start) < length_ms {
        sim.sleep_ms(2 + sim.rand(18)).await;
        let ids = sim.node_ids();
        let target = ids[sim.rand(ids.len() as u64) as usize];
        let pick = sim.rand(1_000);
        sim.inject(target, |view, rand| craft(view, pick, rand));
        if crashes < 2 && sim.rand(150) == 0 {
            let leader = sim.lock().leader();
            if let Some((leader, _)) = leader {
                crashes += 1;
                sim.crash(leader, sim.rand(2) == 0);
                sim.sleep_ms(sim.rand(200)).await;
                sim.restart(leader);
            }
        }
    }
    garbage_bytes(&sim);
}

/// Random bytes, and valid frames with bytes changed, cut or appended, to the decoding the
/// server runs on a peer connection (`raft_http.rs`: `peer_wire::FrameDecoder`, then the frame):
/// it must return, never panic. A random string that happens to decode is a forged message,
/// which is dropped here (see the module comment).
fn garbage_bytes(sim: &Sim) {
    let mut valid = Vec::new();
    let frame = peer_wire::Frame::Raft(vec![Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(1),
            prev_log_term: Term(1),
            entries: vec![Entry {
                term: Term(3),
                index: LogIndex(2),
                payload: EntryPayload::Command(Bytes::from_static(b"payload")),
            }],
            leader_commit: LogIndex(1),
        },
    }]);
    peer_wire::encode_frame(&frame, &mut valid);
    let (mut decoded, mut refused) = (0u64, 0u64);
    for _ in 0..2_000 {
        let bytes: Vec<u8> = match sim.rand(3) {
            0 => (0..sim.rand(96)).map(|_| sim.rand(256) as u8).collect(),
            1 => {
                let mut b = valid.clone();
                for _ in 0..1 + sim.rand(4) {
                    let i = sim.rand(b.len() as u64) as usize;
                    b[i] = sim.rand(256) as u8;
                }
                b
            }
            _ => {
                let mut b = valid[..sim.rand(valid.len() as u64 + 1) as usize].to_vec();
                b.extend((0..sim.rand(16)).map(|_| sim.rand(256) as u8));
                b
            }
        };
        let mut decoder = peer_wire::FrameDecoder::new(1 << 20);
        decoder.push(&bytes);
        loop {
            match decoder
                .next_frame()
                .map(|f| f.map(|p| peer_wire::decode_frame::<peer_wire::Frame>(&p)))
            {
                Ok(Some(Ok(_))) => decoded += 1,
                Ok(None) => break,
                Ok(Some(Err(_))) | Err(_) => {
                    refused += 1;
                    break;
                }
            }
        }
    }
    sim.event(&format!("garbage: {refused} refused, {decoded} decoded and dropped"));
}

/// One crafted message for `v.me` and whether it is impossible (must be refused).
fn craft(v: &View, pick: u64, rand: &mut dyn FnMut(u64) -> u64) -> Option<(Message, bool)> {
    let term = v.term;
    let others: Vec<NodeId> = v.members.iter().copied().filter(|&m| m != v.me).collect();
    let any_other = |rand: &mut dyn FnMut(u64) -> u64| {
        others.get(rand(others.len().max(1) as u64) as usize).copied().unwrap_or(STRANGER)
    };
    // The node this one takes as leader of its term, or some member.
    let leader = v.leader.filter(|&l| l != v.me).unwrap_or_else(|| any_other(rand));
    let msg = |from: NodeId, term: Term, body: MessageBody| Message { from, to: v.me, term, body };
    let append = |prev: (u64, u64), entries: Vec<(u64, u64)>| MessageBody::AppendEntries {
        prev_log_index: LogIndex(prev.0),
        prev_log_term: Term(prev.1),
        entries: entries
            .into_iter()
            .map(|(index, term)| Entry {
                term: Term(term),
                index: LogIndex(index),
                payload: EntryPayload::Command(Bytes::from_static(b"\x00hostile")),
            })
            .collect(),
        leader_commit: LogIndex(0),
    };
    let heartbeat = || MessageBody::Heartbeat {
        commit_index: LogIndex(0),
        read_seq: 0,
        clock: Instant(0),
        cluster_time: Instant(0),
    };
    let last = v.last_index.0;
    let t = term.0.max(1);
    let m = match pick % 13 {
        // Impossible.
        0 => (msg(leader, Term(0), heartbeat()), true),
        1 if v.role == Role::Follower && v.leader.is_some() && term > Term(0) => {
            let other = others.iter().copied().find(|&o| Some(o) != v.leader)?;
            (msg(other, term, append((last, 0), vec![])), true)
        }
        1 if v.role == Role::Leader => (msg(any_other(rand), term, heartbeat()), true),
        2 => (msg(leader, Term(t), append((last, t + 1), vec![])), true),
        3 => (msg(leader, Term(t), append((last, 0), vec![(last + 2, t)])), true),
        4 => (msg(leader, Term(t), append((last, 0), vec![(last + 1, t + 1)])), true),
        5 => (msg(leader, Term(t), append((0, 1), vec![])), true),
        // A whole snapshot in one chunk: of a later term than its sender's, or with no voters.
        6 | 7 => {
            let (last_term, membership) = if pick % 13 == 6 {
                (Term(t + 1), Membership::with_voters(v.members.iter().copied()))
            } else {
                (Term(t), Membership::default())
            };
            let meta = SnapshotMeta { last_index: LogIndex(last + 5), last_term, membership };
            let data = Bytes::from_static(b"x");
            let body = MessageBody::InstallSnapshot { meta, offset: 0, data, done: true };
            (msg(leader, Term(t), body), true)
        }
        8 if v.role == Role::Leader && !others.is_empty() => {
            let body = if rand(2) == 0 {
                MessageBody::AppendEntriesResponse {
                    index: LogIndex(last + 1 + rand(100)),
                    success: true,
                    conflict_term: None,
                    conflict_index: LogIndex(0),
                }
            } else {
                MessageBody::HeartbeatResponse {
                    read_seq: u64::MAX / 2,
                    last_index: LogIndex(last),
                    clock: Instant(0),
                }
            };
            (msg(any_other(rand), term, body), true)
        }
        // Confusing.
        9 => {
            let body = match rand(4) {
                0 => MessageBody::RequestVoteResponse {
                    pre_vote: rand(2) == 0,
                    granted: true,
                    clock: Instant(rand(u64::MAX)),
                },
                1 => MessageBody::AppendEntriesResponse {
                    index: LogIndex(rand(last + 10)),
                    success: rand(2) == 0,
                    conflict_term: None,
                    conflict_index: LogIndex(0),
                },
                2 => MessageBody::HeartbeatResponse {
                    read_seq: rand(10),
                    last_index: LogIndex(rand(last + 10)),
                    clock: Instant(rand(u64::MAX)),
                },
                _ => MessageBody::ReadIndexResponse {
                    id: ReadId(rand(u64::MAX)),
                    index: Some(LogIndex(rand(last + 10))),
                    leader_time: Instant(rand(u64::MAX)),
                },
            };
            // A stranger, in this node's term (a candidate counts votes of this term).
            (msg(STRANGER, term, body), false)
        }
        10 => {
            let body = MessageBody::ReadIndexResponse {
                id: ReadId(u64::MAX - rand(1_000)),
                index: Some(LogIndex(last + rand(10))),
                leader_time: Instant(u64::MAX / 2),
            };
            (msg(leader, term, body), false)
        }
        11 if term > Term(1) => {
            // An append of an older term, reaching below anything a snapshot would keep.
            (msg(leader, Term(term.0 - 1), append((0, 0), vec![(1, 1)])), false)
        }
        12 if v.role == Role::Follower && v.leader.is_some() => {
            let meta = SnapshotMeta {
                last_index: LogIndex(last + 5),
                last_term: term,
                membership: Membership::with_voters(v.members.iter().copied()),
            };
            let body = MessageBody::InstallSnapshot {
                meta,
                offset: 1 << 40,
                data: Bytes::from_static(b"chunk out of order"),
                done: false,
            };
            // From the leader this node follows, late: the node must not take the chunk.
            (msg(leader, term, body), false)
        }
        _ => return None,
    };
    Some(m)
}

impl Sim {
    /// Crafts a message for node `id` from its current view (`None`: nothing to send for that
    /// pick) and steps the node with it; an impossible message the node accepts is a violation.
    fn inject(
        &self,
        id: NodeId,
        craft: impl FnOnce(&View, &mut dyn FnMut(u64) -> u64) -> Option<(Message, bool)>,
    ) {
        {
            let mut w = self.lock();
            let w = &mut *w;
            let now = w.node_now(id);
            let Some(node) = w.slots.get_mut(&id).and_then(|s| s.node.as_mut()) else { return };
            let raft = node.raft();
            let view = View {
                me: id,
                term: raft.term(),
                role: raft.role(),
                leader: raft.leader_id(),
                last_index: raft.last_index(),
                members: raft.membership().voters.iter().copied().collect(),
            };
            let rng = &mut w.rng;
            let mut rand = |n: u64| rng.next_u64() % n.max(1);
            let Some((m, impossible)) = craft(&view, &mut rand) else { return };
            let desc = format!("{m:?}");
            match node.step(now, m) {
                Err(_) => w.hostile_refused += 1,
                Ok(()) if impossible => w.checker.violations.push(format!(
                    "hostile: node {id} ({:?}, term {}) accepted an impossible message: {desc}",
                    view.role, view.term
                )),
                Ok(()) => w.hostile_accepted += 1,
            }
            w.trace_event(&format!("hostile -> {id}: {desc}"));
        }
        self.submit(id, super::Input::Kick);
    }
}
