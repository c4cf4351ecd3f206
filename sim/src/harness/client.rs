//! Simulated clients: random Set/Get/Del/Expire over a few keys against random nodes, with timeouts and
//! retries, recording what they saw. An operation whose outcome the client cannot know (a timeout,
//! a crashed node, a write a snapshot covered) is recorded as unknown, never guessed.

use super::{Input, Sim};
use crate::lincheck::{CacheInput, CacheOp, CacheOutput};
use bytes::Bytes;
use madsim::time::{Duration, timeout};
use simple_cache_core::cache::{ApplyResult, Command};
use simple_cache_core::node::WriteError;
use simple_cache_core::raft::ProposeError;
use simple_cache_core::types::NodeId;

/// How a write ended.
enum WriteEnd {
    Done(CacheOutput),
    /// It may or may not have taken effect.
    Unknown,
    /// It certainly did not take effect and the client ran out of time.
    NotDone,
}

pub(super) async fn run(sim: Sim, client: u64) {
    let mut n = 0u64;
    let mut target: Option<NodeId> = None;
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
            let (op, command) = if pick < 85 {
                let value = format!("c{client}-{n}");
                let command = Command::Set {
                    key: key.clone(),
                    value: Bytes::from(value.clone()),
                    expires_at: None,
                };
                (CacheOp::Set(value.into_bytes()), command)
            } else if pick < 93 {
                (CacheOp::Del, Command::Del { key: key.clone() })
            } else {
                // The model treats Expire exactly as Del (both report whether the key was live).
                (CacheOp::Expire, Command::Expire { key: key.clone() })
            };
            let call = sim.call_time();
            let input = CacheInput { key: key.into_bytes(), op };
            match write(&sim, node, command, None, &mut target).await {
                WriteEnd::Done(out) => sim.record(client, input, call, Some(out)),
                WriteEnd::Unknown => sim.record(client, input, call, None),
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
    let mut ttl_ms = None;
    let command = if pick < 85 {
        let value = format!("c{client}-t{n}");
        ttl_ms = (sim.rand(100) < 85).then(|| 20 + sim.rand(781));
        op.kind = TtlKind::Set { value: value.clone().into_bytes(), ttl_ms };
        Command::Set { key: key.clone(), value: Bytes::from(value), expires_at: None }
    } else if pick < 93 {
        Command::Del { key: key.clone() }
    } else {
        // Expire removes the key like Del; ttlcheck treats both as removing writes.
        Command::Expire { key: key.clone() }
    };
    match write(sim, node, command, ttl_ms, target).await {
        WriteEnd::Done(_) => sim.record_ttl(op, false),
        WriteEnd::Unknown => sim.record_ttl(op, true),
        WriteEnd::NotDone => {}
    }
}

/// A write with retries on other nodes while it certainly has not taken effect.
async fn write(
    sim: &Sim,
    first: NodeId,
    command: Command,
    ttl_ms: Option<u64>,
    target: &mut Option<NodeId>,
) -> WriteEnd {
    let (budget, nodes) = {
        let w = sim.lock();
        (w.cfg.op_timeout_ms, w.slots.keys().copied().collect::<Vec<_>>())
    };
    let start = sim.now();
    let mut node = first;
    loop {
        let spent = sim.now().saturating_since(start);
        if spent >= budget {
            return WriteEnd::NotDone;
        }
        let (tx, rx) = async_channel::bounded(1);
        if !sim.submit(node, Input::Write(command.clone(), ttl_ms, tx)) {
            node = nodes[sim.rand(nodes.len() as u64) as usize];
            sim.sleep_ms(5).await;
            continue;
        }
        match timeout(Duration::from_millis(budget - spent), rx.recv()).await {
            Err(_) => return WriteEnd::Unknown,
            // The node crashed with the write pending.
            Ok(Err(_)) => return WriteEnd::Unknown,
            Ok(Ok(Ok(result))) => {
                *target = Some(node);
                return WriteEnd::Done(match result {
                    ApplyResult::Del { existed } | ApplyResult::Expire { existed } => {
                        CacheOutput::Existed(existed)
                    }
                    _ => CacheOutput::Ok,
                });
            }
            Ok(Ok(Err(WriteError::Propose(ProposeError::NotLeader { leader_hint })))) => {
                node = leader_hint.unwrap_or_else(|| nodes[sim.rand(nodes.len() as u64) as usize]);
                *target = Some(node);
                // Always let time pass: two nodes with stale hints pointing at each other would
                // otherwise bounce the request forever at one simulated instant.
                sim.sleep_ms(if leader_hint.is_some() { 1 } else { 10 }).await;
            }
            // Refused before it was proposed, or superseded: it did not take effect; retry.
            Ok(Ok(Err(WriteError::Propose(_) | WriteError::Superseded))) => {
                sim.sleep_ms(10).await;
                node = nodes[sim.rand(nodes.len() as u64) as usize];
            }
            Ok(Ok(Err(WriteError::Unknown | WriteError::Undecodable(_)))) => {
                return WriteEnd::Unknown;
            }
        }
    }
}

/// A linearizable read, retried on other nodes; `None` if it never completed.
async fn read(
    sim: &Sim,
    first: NodeId,
    key: &str,
    target: &mut Option<NodeId>,
) -> Option<Option<Bytes>> {
    let (budget, nodes) = {
        let w = sim.lock();
        (w.cfg.op_timeout_ms, w.slots.keys().copied().collect::<Vec<_>>())
    };
    let start = sim.now();
    let mut node = first;
    loop {
        let spent = sim.now().saturating_since(start);
        if spent >= budget {
            return None;
        }
        let (tx, rx) = async_channel::bounded(1);
        if !sim.submit(node, Input::Read(key.to_string(), tx)) {
            node = nodes[sim.rand(nodes.len() as u64) as usize];
            sim.sleep_ms(5).await;
            continue;
        }
        match timeout(Duration::from_millis(budget - spent), rx.recv()).await {
            Err(_) | Ok(Err(_)) => return None,
            Ok(Ok(Ok(value))) => {
                *target = Some(node);
                return Some(value);
            }
            Ok(Ok(Err(_))) => {
                sim.sleep_ms(10).await;
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
            Command::Set { key: "k0".into(), value: Bytes::from(value.clone()), expires_at: None };
        let call = sim.call_time();
        let input =
            CacheInput { key: b"k0".to_vec(), op: CacheOp::Set(value.clone().into_bytes()) };
        match write(sim, node, command, None, &mut target).await {
            WriteEnd::Done(out) => {
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
