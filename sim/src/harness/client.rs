//! Simulated clients: random Get/Set/Del/Expire, increments and compare-and-sets over a few keys
//! against random nodes, with timeouts and retries, recording what they saw. An operation whose outcome the client cannot know (a timeout,
//! a crashed node, a write a snapshot covered) is recorded as unknown, never guessed.

use super::Sim;
use super::service::{ServiceRead, ServiceWrite};
use crate::lincheck::{CacheInput, CacheOp, CacheOutput};
use bytes::Bytes;
use simple_cache_core::cache::{
    ApplyResult, Batch, Command, Compare, Condition, KeyCompare, KeyOp, KeyOutcome, KeyWrite, Ttl,
};
use simple_cache_core::exec::WriteOp;
use simple_cache_core::node::Written;
use simple_cache_core::types::NodeId;

/// How a write ended.
enum WriteEnd {
    /// Its answer, and the revision it applied at.
    Done(CacheOutput, u64),
    /// It may or may not have taken effect.
    Unknown,
    /// It certainly did not take effect and the client ran out of time.
    NotDone,
}

pub(super) async fn run(sim: Sim, client: u64) {
    let mut n = 0u64;
    let mut target: Option<NodeId> = None;
    // Per key, the revision and value of this client's last answered write of a value no other
    // write stores: what its compare-and-sets compare on.
    let mut known: std::collections::BTreeMap<String, (u64, Vec<u8>)> = Default::default();
    loop {
        if sim.lock().stop_clients {
            return;
        }
        let (keys, nodes) = {
            let w = sim.lock();
            (w.cfg.keys, w.slots.keys().copied().collect::<Vec<_>>())
        };
        let ttl_keys = sim.lock().cfg.ttl_keys;
        if ttl_keys > 0 && sim.rand(2) == 0 {
            let node = match target {
                Some(t) if sim.rand(2) == 0 => t,
                _ => nodes[sim.rand(nodes.len() as u64) as usize],
            };
            n += 1;
            ttl_op(&sim, client, n, ttl_keys, node, &mut target).await;
            let think = sim.rand(20);
            sim.sleep_ms(think).await;
            continue;
        }
        let key = format!("k{}", sim.rand(keys));
        let pick = sim.rand(100);
        // Half the time a client sticks to the node that last answered it, else a random one.
        let node = match target {
            Some(t) if sim.rand(2) == 0 => t,
            _ => nodes[sim.rand(nodes.len() as u64) as usize],
        };
        if pick < 45 {
            let call = sim.call_time();
            let input = CacheInput { key: key.clone().into_bytes(), op: CacheOp::Get };
            if let Some(value) = read(&sim, node, &key, &mut target).await {
                sim.record(
                    client,
                    input,
                    call,
                    Some(CacheOutput::Value(value.map(|b| b.to_vec()))),
                );
            }
            // A failed read had no effect: it is simply left out of the history.
        } else {
            n += 1;
            let value = format!("c{client}-{n}");
            let set = || WriteOp::Set {
                key: key.clone(),
                value: Bytes::from(value.clone()),
                ttl_ms: None,
            };
            let (op, command) = if pick < 72 {
                (CacheOp::Set(value.clone().into_bytes()), set())
            } else if pick < 79 {
                (CacheOp::Del, WriteOp::Del { key: key.clone() })
            } else if pick < 82 {
                // The model treats Expire exactly as Del (both report whether the key was live).
                (CacheOp::Expire, WriteOp::Expire { key: key.clone() })
            } else if pick < 91 {
                let delta = [1, 1, 2, -1][sim.rand(4) as usize];
                let w = Command::key_write(key.clone(), KeyOp::Incr { delta });
                (CacheOp::Incr(delta), WriteOp::Key(w))
            } else {
                // Compare-and-set on the revision of this client's last write of the key, or
                // set-if-absent when it knows none; half of them as a batch (or a transaction)
                // whose else branch deletes the key.
                let (condition, compare, expect) = match known.get(&key) {
                    Some((revision, v)) => (
                        Condition::Revision(*revision),
                        Compare::Revision(*revision),
                        Some(v.clone()),
                    ),
                    None => (Condition::Absent, Compare::Absent, None),
                };
                let set = KeyOp::Set { value: Bytes::from(value.clone()), ttl: Ttl::Never };
                let value = value.clone().into_bytes();
                if sim.rand(2) == 0 {
                    let w =
                        KeyWrite { key: key.clone(), op: set, condition, return_previous: false };
                    (CacheOp::Cas { expect, value }, WriteOp::Key(w))
                } else {
                    let batch = Batch {
                        compares: vec![KeyCompare { key: key.clone(), compare }],
                        then: vec![Command::key_write(key.clone(), set)],
                        otherwise: vec![Command::key_write(key.clone(), KeyOp::Del)],
                    };
                    // Every other one as a Redis transaction (`Command::Exec`, what a RESP
                    // MULTI/EXEC and a pipelined run of writes propose): with operations that
                    // are never refused it answers as the batch does. Chosen by the value's
                    // text (the operation counter), so the random draws stay those of the
                    // mutation table.
                    let op = if n.is_multiple_of(2) {
                        WriteOp::Exec(batch)
                    } else {
                        WriteOp::Batch(batch)
                    };
                    (CacheOp::Txn { expect, value }, op)
                }
            };
            let call = sim.call_time();
            let stores_value =
                matches!(op, CacheOp::Set(_) | CacheOp::Cas { .. } | CacheOp::Txn { .. });
            let input = CacheInput { key: key.clone().into_bytes(), op };
            match write(&sim, node, command, &mut target).await {
                WriteEnd::Done(out, revision) => {
                    let applied = matches!(out, CacheOutput::Ok | CacheOutput::Applied(true));
                    if stores_value && applied {
                        known.insert(key, (revision, value.into_bytes()));
                    }
                    sim.record(client, input, call, Some(out))
                }
                WriteEnd::Unknown => {
                    known.remove(&key);
                    sim.record(client, input, call, None)
                }
                WriteEnd::NotDone => {}
            }
        }
        let think = sim.rand(20);
        sim.sleep_ms(think).await;
    }
}

/// One operation on a TTL key `t<i>`: a Get (45%), a Set (40%; 85% of them with a TTL of
/// 20-800 ms, which the node that proposes it turns into a deadline in cluster time), a Del
/// (8%) or an Expire (7%), recorded for `ttlcheck` (Expire as a removing write, like Del).
async fn ttl_op(
    sim: &Sim,
    client: u64,
    n: u64,
    ttl_keys: u64,
    node: NodeId,
    target: &mut Option<NodeId>,
) {
    use crate::ttlcheck::{TtlKind, TtlOp};
    let key = format!("t{}", sim.rand(ttl_keys));
    let pick = sim.rand(100);
    let mut op = TtlOp {
        client,
        key: key.clone(),
        kind: TtlKind::Del,
        call: sim.call_time(),
        ret: None,
        call_ms: sim.now().0,
        ret_ms: None,
    };
    if pick < 45 {
        if let Some(value) = read(sim, node, &key, target).await {
            op.kind = TtlKind::Get(value.map(|b| b.to_vec()));
            sim.record_ttl(op, false);
        }
        return;
    }
    let command = if pick < 85 {
        let value = format!("c{client}-t{n}");
        let ttl_ms = (sim.rand(100) < 85).then(|| 20 + sim.rand(781));
        op.kind = TtlKind::Set { value: value.clone().into_bytes(), ttl_ms };
        WriteOp::Set { key: key.clone(), value: Bytes::from(value), ttl_ms }
    } else if pick < 93 {
        WriteOp::Del { key: key.clone() }
    } else {
        // Expire removes the key like Del; ttlcheck treats both as removing writes.
        WriteOp::Expire { key: key.clone() }
    };
    match write(sim, node, command, target).await {
        WriteEnd::Done(..) => sim.record_ttl(op, false),
        WriteEnd::Unknown => sim.record_ttl(op, true),
        WriteEnd::NotDone => {}
    }
}

/// A write through a node's service (which forwards it to the leader, as the server's does),
/// tried again on another node while it certainly has not taken effect, as a client with several
/// endpoints does.
async fn write(sim: &Sim, first: NodeId, op: WriteOp, target: &mut Option<NodeId>) -> WriteEnd {
    let (budget, request_ms, nodes) = {
        let w = sim.lock();
        (w.cfg.op_timeout_ms, w.cfg.request_timeout_ms, w.slots.keys().copied().collect::<Vec<_>>())
    };
    let deadline = sim.now().saturating_add_ms(budget);
    let mut node = first;
    loop {
        if sim.now() >= deadline {
            return WriteEnd::NotDone;
        }
        match sim
            .service_write(node, op.clone(), deadline.min(sim.now().saturating_add_ms(request_ms)))
            .await
        {
            // Refused by the memory bound: certainly not applied (nothing changed).
            ServiceWrite::Done(Written { result: ApplyResult::OutOfMemory { .. }, .. }) => {
                return WriteEnd::NotDone;
            }
            ServiceWrite::Done(Written { revision, result }) => {
                *target = Some(node);
                let out = match result {
                    ApplyResult::Del { existed } | ApplyResult::Expire { existed } => {
                        CacheOutput::Existed(existed)
                    }
                    ApplyResult::Key(KeyOutcome { number: Some(n), .. }) => CacheOutput::Number(n),
                    ApplyResult::Key(o) => CacheOutput::Applied(o.applied),
                    ApplyResult::KeyRefused(_) => CacheOutput::Refused,
                    ApplyResult::Batch(b) => CacheOutput::Applied(b.succeeded),
                    _ => CacheOutput::Ok,
                };
                return WriteEnd::Done(out, revision);
            }
            ServiceWrite::Unknown => return WriteEnd::Unknown,
            ServiceWrite::NotDone => {
                sim.sleep_ms(5).await;
                node = nodes[sim.rand(nodes.len() as u64) as usize];
            }
        }
    }
}

/// A linearizable read through a node's service, tried again on another node; `None` if it
/// never completed.
async fn read(
    sim: &Sim,
    first: NodeId,
    key: &str,
    target: &mut Option<NodeId>,
) -> Option<Option<Bytes>> {
    let (budget, request_ms, nodes) = {
        let w = sim.lock();
        (w.cfg.op_timeout_ms, w.cfg.request_timeout_ms, w.slots.keys().copied().collect::<Vec<_>>())
    };
    let deadline = sim.now().saturating_add_ms(budget);
    let mut node = first;
    loop {
        if sim.now() >= deadline {
            return None;
        }
        match sim
            .service_read(node, key, deadline.min(sim.now().saturating_add_ms(request_ms)))
            .await
        {
            ServiceRead::Value(v) => {
                *target = Some(node);
                return Some(v);
            }
            ServiceRead::Failed => {
                sim.sleep_ms(5).await;
                node = nodes[sim.rand(nodes.len() as u64) as usize];
            }
        }
    }
}

/// The liveness probe after healing: a write and then a read that sees it, within `bound_ms`.
/// Both are recorded in the history like any client's.
pub(super) async fn probe(sim: &Sim, bound_ms: u64) -> bool {
    const PROBE_CLIENT: u64 = 0;
    let start = sim.now();
    let value = format!("probe-{}", sim.rand(1 << 30));
    let mut target = sim.wait_leader(bound_ms).await;
    loop {
        if sim.now().saturating_since(start) >= bound_ms {
            return false;
        }
        let node = match target {
            Some(n) => n,
            None => match sim.wait_leader(50).await {
                Some(n) => n,
                None => continue,
            },
        };
        let command =
            WriteOp::Set { key: "k0".into(), value: Bytes::from(value.clone()), ttl_ms: None };
        let call = sim.call_time();
        let input =
            CacheInput { key: b"k0".to_vec(), op: CacheOp::Set(value.clone().into_bytes()) };
        match write(sim, node, command, &mut target).await {
            WriteEnd::Done(out, _) => {
                sim.record(PROBE_CLIENT, input, call, Some(out));
                break;
            }
            WriteEnd::Unknown => sim.record(PROBE_CLIENT, input, call, None),
            WriteEnd::NotDone => {}
        }
    }
    loop {
        if sim.now().saturating_since(start) >= bound_ms {
            return false;
        }
        let node = sim.wait_leader(50).await.unwrap_or(NodeId(1));
        let call = sim.call_time();
        let input = CacheInput { key: b"k0".to_vec(), op: CacheOp::Get };
        if let Some(v) = read(sim, node, "k0", &mut None).await {
            sim.record(PROBE_CLIENT, input, call, Some(CacheOutput::Value(v.map(|b| b.to_vec()))));
            return true;
        }
    }
}
