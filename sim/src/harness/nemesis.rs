//! The faults of each scenario (the nemesis), shared by the scenario tests and the mutation
//! tests. Each runs while clients keep working; the harness then heals, checks liveness and runs
//! every checker.

use super::{ChangeReactor, ELECTION_TIMEOUT_MS, Sim};
use simple_cache_core::message::{Membership, MembershipChange};
use simple_cache_core::raft::MembershipError;
use simple_cache_core::types::NodeId;

/// A random split of the nodes into a minority and a majority (shuffled by the run's RNG).
fn random_split(sim: &Sim) -> (Vec<NodeId>, Vec<NodeId>) {
    let mut ids = sim.node_ids();
    for i in (1..ids.len()).rev() {
        let j = sim.rand(i as u64 + 1) as usize;
        ids.swap(i, j);
    }
    let minority = ids.len() / 2;
    let (a, b) = ids.split_at(minority);
    (a.to_vec(), b.to_vec())
}

/// How long a majority may take to elect a leader once the old one is cut off.
const MAJORITY_ELECTION_MS: u64 = 3_000;

/// Split brain: the leader is cut off from the majority. It must stop being leader (check-quorum),
/// the majority elects a new one, the old one neither commits nor serves linearizable reads
/// (linearizability of everything clients saw through it), and after healing it rejoins as a
/// follower whose uncommitted entries were discarded (log matching, state machine safety).
pub async fn partition_leader_from_majority(sim: Sim) {
    {
        let cycles = 1 + sim.rand(3);
        for _ in 0..cycles {
            let Some(old) = sim.wait_leader(3_000).await else { return };
            let old_term = sim.lock().node(old).map(|n| n.raft().term()).unwrap_or_default();
            sim.isolate(old);
            sim.sleep_ms(3 * ELECTION_TIMEOUT_MS + sim.rand(500)).await;
            {
                let mut w = sim.lock();
                // Check-quorum: a leader that cannot reach a quorum steps down within about
                // an election timeout.
                if let Some(n) = w.node(old)
                    && n.raft().is_leader()
                    && n.raft().term() == old_term
                {
                    w.violation(format!(
                        "check-quorum: node {old} still leads term {old_term} after \
                         {} ms cut off from the majority",
                        3 * ELECTION_TIMEOUT_MS
                    ));
                }
            }
            // The majority elects a new leader in a higher term. Split votes can take a few
            // election rounds, so allow a liveness bound rather than one timeout.
            let mut waited = 0;
            loop {
                let leader = sim.lock().leader();
                match leader {
                    Some((l, t)) if l != old && t > old_term => break,
                    other if waited >= MAJORITY_ELECTION_MS => {
                        sim.lock().violation(format!(
                            "split brain: the majority has no new leader {waited} ms into the \
                             isolation of {old} ({other:?})"
                        ));
                        break;
                    }
                    _ => {}
                }
                sim.sleep_ms(10).await;
                waited += 10;
            }
            sim.heal();
            sim.sleep_ms(300 + sim.rand(300)).await;
            let mut w = sim.lock();
            let newest = w.leader().map(|(_, t)| t).unwrap_or_default();
            if let Some(n) = w.node(old)
                && n.raft().term() < newest
                && n.raft().is_leader()
            {
                w.violation(format!("rejoin: old leader {old} still leads a stale term"));
            }
        }
    }
}

/// Clean majority/minority splits that flap quickly; with 5 nodes also a bridge (two halves that
/// both see one node) and a majorities ring (each node sees only its two neighbours).
pub async fn majority_minority_flapping(sim: Sim) {
    let rounds = 4 + sim.rand(6);
    for _ in 0..rounds {
        let n = sim.node_ids().len();
        match sim.rand(if n >= 5 { 3 } else { 1 }) {
            0 => {
                let (a, b) = random_split(&sim);
                sim.partition(&a, &b);
            }
            1 => {
                // Bridge: {1,2} and {4,5} cannot talk; 3 talks to everyone.
                let ids = sim.node_ids();
                sim.partition(&ids[..2], &ids[3..]);
            }
            _ => {
                // Ring: each node talks only to its neighbours i-1 and i+1 (mod n).
                let ids = sim.node_ids();
                for i in 0..n {
                    for j in 0..n {
                        let d = (i + n - j) % n;
                        if i != j && d != 1 && d != n - 1 {
                            sim.cut(ids[i], ids[j]);
                        }
                    }
                }
            }
        }
        sim.sleep_ms(50 + sim.rand(400)).await;
        sim.heal();
        sim.sleep_ms(sim.rand(200)).await;
    }
}

/// One-way partitions: a follower that can send but not receive, or receive but not send. With
/// pre-vote and check-quorum, the healthy leader keeps its term while the fault lasts.
pub async fn asymmetric_partition(sim: Sim) {
    for _ in 0..3 {
        let Some(leader) = sim.wait_leader(3_000).await else { return };
        // Give the new leader time to establish its lease with every follower.
        sim.sleep_ms(3 * ELECTION_TIMEOUT_MS).await;
        let Some(leader_now) = sim.leader() else { continue };
        if leader_now != leader {
            continue;
        }
        let term = sim.lock().node(leader).map(|n| n.raft().term()).unwrap_or_default();
        let followers: Vec<NodeId> = sim.node_ids().into_iter().filter(|&i| i != leader).collect();
        let f = followers[sim.rand(followers.len() as u64) as usize];
        let others: Vec<NodeId> = sim.node_ids().into_iter().filter(|&i| i != f).collect();
        let inbound_cut = sim.rand(2) == 0;
        for &o in &others {
            if inbound_cut {
                sim.cut(o, f); // f sends but never receives
            } else {
                sim.cut(f, o); // f receives but never sends
            }
        }
        sim.sleep_ms(5 * ELECTION_TIMEOUT_MS + sim.rand(500)).await;
        {
            let mut w = sim.lock();
            let still =
                w.node(leader).is_some_and(|n| n.raft().is_leader() && n.raft().term() == term);
            if !still {
                w.violation(format!(
                    "pre-vote/check-quorum: leader {leader} of term {term} was disturbed by a \
                     one-way partition of follower {f} (inbound cut: {inbound_cut})"
                ));
            }
        }
        sim.heal();
        sim.sleep_ms(200).await;
    }
}

/// Up to 30% message loss, 10% duplication, reordering through random delays, latency spikes.
pub async fn message_loss_duplication_reordering(sim: Sim) {
    // Draw first: `Sim::net` holds the world's lock while the closure runs.
    let (loss, dup) = (50 + sim.rand(251), sim.rand(101));
    let (delay_max, spike, spike_ms) = (5 + sim.rand(40), sim.rand(30), 100 + sim.rand(300));
    sim.net(|n| {
        n.loss_per_mille = loss;
        n.dup_per_mille = dup;
        n.delay_ms_min = 1;
        n.delay_ms_max = delay_max;
        n.spike_per_mille = spike;
        n.spike_ms = spike_ms;
    });
    sim.sleep_ms(2_000 + sim.rand(1_000)).await;
}

/// Crashes of the leader, followers, a majority and all nodes at random instants (including
/// between persist and send, while an fsync is in flight), losing unsynced writes and tearing the
/// last write; restarts recover with core::wal::recover. No acknowledged write may be lost
/// (linearizability), and recovery must never fail.
pub async fn crash_restart_with_unsynced_loss(sim: Sim) {
    let rounds = 3 + sim.rand(5);
    for _ in 0..rounds {
        sim.sleep_ms(50 + sim.rand(400)).await;
        let ids = sim.node_ids();
        let victims: Vec<NodeId> = match sim.rand(4) {
            0 => sim.leader().into_iter().collect(),
            1 => vec![ids[sim.rand(ids.len() as u64) as usize]],
            2 => random_split(&sim).1,
            _ => ids.clone(),
        };
        for &v in &victims {
            sim.crash(v, sim.rand(3) != 0);
            // Crashes are spread over a few milliseconds, so some land mid-fsync.
            sim.sleep_ms(sim.rand(3)).await;
        }
        sim.sleep_ms(sim.rand(300)).await;
        for &v in &victims {
            sim.restart(v);
        }
    }
}

/// Everything at once, in random order: partitions (clean, one-way, isolating the leader),
/// message loss, crashes with torn writes, restarts. Used by the mutation tests, which need a
/// nemesis rich enough to expose each planted bug.
pub async fn chaos(sim: Sim) {
    let rounds = 6 + sim.rand(8);
    for _ in 0..rounds {
        let ids = sim.node_ids();
        match sim.rand(6) {
            0 => {
                let (a, b) = random_split(&sim);
                sim.partition(&a, &b);
            }
            1 => {
                if let Some(l) = sim.leader() {
                    sim.isolate(l);
                }
            }
            2 => {
                let loss = 100 + sim.rand(200);
                sim.net(|n| n.loss_per_mille = loss);
            }
            3 => {
                let a = ids[sim.rand(ids.len() as u64) as usize];
                let b = ids[sim.rand(ids.len() as u64) as usize];
                if a != b {
                    sim.cut(a, b);
                }
            }
            4 => {
                let victims: Vec<NodeId> = match sim.rand(3) {
                    0 => sim.leader().into_iter().collect(),
                    1 => random_split(&sim).1,
                    _ => ids.clone(),
                };
                for &v in &victims {
                    sim.crash(v, sim.rand(2) == 0);
                }
                sim.sleep_ms(sim.rand(200)).await;
                for &v in &victims {
                    sim.restart(v);
                }
            }
            _ => sim.heal(),
        }
        sim.sleep_ms(100 + sim.rand(400)).await;
    }
}

/// Raft figure 8 territory: leaders crash or lose their majority soon after their election,
/// while lossy, slow links keep some followers behind, so that new leaders often hold earlier
/// terms' entries that only some nodes have, and crash before their own no-op spreads.
pub async fn figure8(sim: Sim) {
    let targeted = sim.spawn_figure8_reactor();
    let (loss, delay_max) = (100 + sim.rand(150), 10 + sim.rand(30));
    sim.net(|n| {
        n.loss_per_mille = loss;
        n.delay_ms_max = delay_max;
    });
    let rounds = 15 + sim.rand(15);
    for _ in 0..rounds {
        let Some(leader) = sim.wait_leader(1_000).await else { continue };
        sim.sleep_ms(sim.rand(60)).await;
        let ids = sim.node_ids();
        if sim.rand(3) == 0 {
            // The leader keeps one follower: a minority of a 5-node cluster (alone in 3).
            let others: Vec<NodeId> = ids.iter().copied().filter(|&i| i != leader).collect();
            let keep = if ids.len() >= 5 { 1 } else { 0 };
            let mut minority = vec![leader];
            minority.extend(others.iter().take(keep));
            let majority: Vec<NodeId> =
                ids.iter().copied().filter(|i| !minority.contains(i)).collect();
            sim.partition(&minority, &majority);
            sim.sleep_ms(50 + sim.rand(200)).await;
            sim.net(|n| n.cut.clear());
        } else {
            sim.crash(leader, false);
            sim.sleep_ms(sim.rand(150)).await;
            sim.restart(leader);
        }
    }
    targeted.abort();
}

/// Leadership transfers to random voters, some to nodes that are lagging, under 10-25% message
/// loss, and (a third of the rounds) graceful restarts of the leader with the server's shutdown
/// hand-over (`Sim::graceful_stop`). A transfer that cannot finish is abandoned after an election
/// timeout; in every case the usual checkers must hold and a leader must come back.
pub async fn leadership_transfer_under_loss(sim: Sim) {
    let loss = 100 + sim.rand(151);
    sim.net(|n| n.loss_per_mille = loss);
    let rounds = 4 + sim.rand(6);
    for _ in 0..rounds {
        let Some(leader) = sim.wait_leader(2_000).await else { continue };
        if sim.rand(3) == 0 {
            // A graceful restart of the leader, with the server's hand-over.
            sim.graceful_stop(leader).await;
            sim.sleep_ms(sim.rand(200)).await;
            sim.restart(leader);
            continue;
        }
        let ids = sim.node_ids();
        let target = ids[sim.rand(ids.len() as u64) as usize];
        let result =
            sim.with_node(leader, |n, now| n.raft_mut().transfer_leadership(now, target).is_ok());
        sim.event(&format!("transfer {leader} -> {target}: {result:?}"));
        sim.sleep_ms(50 + sim.rand(400)).await;
    }
}

/// A follower is cut off while clients write far past the snapshot threshold (the leader compacts
/// its log), then rejoins and must catch up by snapshot install while loss continues.
pub async fn snapshot_install_far_behind(sim: Sim) {
    let Some(leader) = sim.wait_leader(2_000).await else { return };
    let ids = sim.node_ids();
    let followers: Vec<NodeId> = ids.iter().copied().filter(|&i| i != leader).collect();
    let lagging = followers[sim.rand(followers.len() as u64) as usize];
    sim.isolate(lagging);
    // The snapshot threshold is 40 entries; clients write some tens of entries per second, so
    // the leader compacts past the lagging node's log within seconds. Stay isolated until it did
    // (at most 8 s; a run without enough writes fails below and says so).
    sim.sleep_ms(1_500 + sim.rand(1_000)).await;
    for _ in 0..60 {
        let passed = {
            let w = sim.lock();
            let behind = w.node(lagging).map(|n| n.raft().log().last_index());
            let first =
                w.leader().and_then(|(l, _)| w.node(l)).map(|n| n.raft().log().first_index());
            matches!((behind, first), (Some(b), Some(f)) if f > b.next())
        };
        if passed {
            break;
        }
        sim.sleep_ms(100).await;
    }
    sim.heal();
    let loss = sim.rand(150);
    sim.net(|n| n.loss_per_mille = loss);
    let mut waited = 0;
    while waited < 3_000 {
        if sim.lock().snapshots_installed.get(&lagging).copied().unwrap_or(0) > 0 {
            break;
        }
        sim.sleep_ms(20).await;
        waited += 20;
    }
    // The leader compacted past the lagging node's log, so only a snapshot can catch it up.
    let mut w = sim.lock();
    let compacted = w.leader().and_then(|(l, _)| w.node(l)).map(|n| n.raft().log().first_index());
    let installed = w.snapshots_installed.get(&lagging).copied().unwrap_or(0);
    if installed == 0 {
        w.violation(format!(
            "snapshot install: node {lagging} rejoined far behind (leader's log starts at \
             {compacted:?}) but installed no snapshot within 3 s"
        ));
    }
}

/// Whether `m` already shows `change` in force.
fn change_done(m: &Membership, change: &MembershipChange) -> bool {
    match change {
        MembershipChange::AddLearner { id, .. } => m.contains(*id),
        MembershipChange::PromoteLearner { id } => m.is_voter(*id),
        MembershipChange::Remove { id } => !m.contains(*id),
    }
}

/// Makes one membership change through whoever leads, retrying while the leader refuses for a
/// transient reason (not leader, a change pending, no entry of its term committed yet, the
/// learner not caught up, a transfer) or the entry was lost with a deposed leader. Done when a
/// leader shows the change in its membership with nothing pending (so it is committed). Gives up
/// after `max_ms` (faults may legitimately stall it); returns whether it took effect.
pub async fn change_membership(sim: &Sim, change: MembershipChange, max_ms: u64) -> bool {
    let start = sim.now();
    loop {
        if sim.now().saturating_since(start) >= max_ms {
            sim.event(&format!("membership {change:?}: gave up"));
            return false;
        }
        let Some(leader) = sim.wait_leader(200).await else { continue };
        let state = {
            let w = sim.lock();
            w.node(leader).map(|n| {
                (change_done(n.raft().membership(), &change), n.raft().membership_change_pending())
            })
        };
        match state {
            Some((true, false)) => {
                let mut w = sim.lock();
                w.membership_changes += 1;
                w.trace_event(&format!("membership {change:?}: committed by {leader}"));
                return true;
            }
            // Appended (ours or a retry's), not yet committed: wait.
            Some((_, true)) => {}
            Some((false, false)) => {
                let c = change.clone();
                let r = sim.with_node(leader, |n, now| n.raft_mut().propose_membership(now, c));
                sim.event(&format!("membership {change:?} on {leader}: {r:?}"));
                match r {
                    None | Some(Ok(_)) => {}
                    Some(Err(
                        MembershipError::NotLeader { .. }
                        | MembershipError::ChangePending
                        | MembershipError::LeaderNotReady
                        | MembershipError::NotCaughtUp { .. }
                        | MembershipError::NotResponding { .. }
                        | MembershipError::TransferInProgress,
                    )) => {}
                    Some(Err(e)) => {
                        // The leader's membership said the change was not in force, yet it was
                        // refused for a reason that is not transient.
                        sim.lock().violation(format!(
                            "membership: leader {leader} refused {change:?}: {e}"
                        ));
                        return false;
                    }
                }
            }
            None => {}
        }
        sim.sleep_ms(10).await;
    }
}

/// Background faults for `membership_under_fire`, until aborted: short partitions (a random
/// node isolated, or a random minority split off), crashes of a random node or of the leader
/// (torn writes half the time) restarted 0-300 ms later, bursts of 10-20% loss.
fn spawn_light_chaos(sim: &Sim) -> madsim::task::JoinHandle<()> {
    let sim = sim.clone();
    madsim::task::spawn(async move {
        loop {
            sim.sleep_ms(100 + sim.rand(300)).await;
            let ids = sim.node_ids();
            match sim.rand(5) {
                0 => {
                    let v = ids[sim.rand(ids.len() as u64) as usize];
                    sim.isolate(v);
                    sim.sleep_ms(100 + sim.rand(300)).await;
                    sim.heal();
                }
                1 => {
                    let (a, b) = random_split(&sim);
                    sim.partition(&a, &b);
                    sim.sleep_ms(100 + sim.rand(300)).await;
                    sim.heal();
                }
                2 | 3 => {
                    let v = if sim.rand(2) == 0 {
                        sim.leader()
                    } else {
                        Some(ids[sim.rand(ids.len() as u64) as usize])
                    };
                    if let Some(v) = v {
                        sim.crash(v, sim.rand(2) == 0);
                        sim.sleep_ms(sim.rand(300)).await;
                        sim.restart(v);
                    }
                }
                _ => {
                    let loss = 100 + sim.rand(100);
                    sim.net(|n| n.loss_per_mille = loss);
                    sim.sleep_ms(100 + sim.rand(300)).await;
                    sim.heal();
                }
            }
        }
    })
}

/// Membership under fire: while nodes are partitioned and crashed in the background, add a fresh
/// node (empty disk) as a learner and promote it once caught up, remove a follower, add another,
/// remove the leader, and replace a voter by a node with a wiped disk under a new id (remove it,
/// shut it down, wipe its disk, add the fresh node, promote it). Removed nodes are shut down for
/// good half the time right after the removal commits, else at the end of the nemesis (so they
/// run a while not knowing, or not caring, that they were removed). The voter count stays at n,
/// n+1 or n-1. Every checker applies as usual; liveness after healing requires every member of
/// the final configuration to apply the leader's commit index.
pub async fn membership_under_fire(sim: Sim) {
    const CHANGE_MS: u64 = 4_000;
    let chaos = spawn_light_chaos(&sim);
    let mut next_id = sim.lock().slots.keys().map(|id| id.0).max().unwrap_or(0) + 1;
    let mut lingering = Vec::new();
    let voters = |sim: &Sim| -> Vec<NodeId> {
        let w = sim.lock();
        w.leader()
            .and_then(|(l, _)| w.node(l))
            .map(|n| n.raft().membership().voters.iter().copied().collect())
            .unwrap_or_default()
    };
    // Adds a fresh node and promotes it.
    async fn add(sim: &Sim, id: NodeId) -> bool {
        sim.add_node(id);
        let address = format!("sim://{id}");
        change_membership(sim, MembershipChange::AddLearner { id, address }, CHANGE_MS).await
            && change_membership(sim, MembershipChange::PromoteLearner { id }, CHANGE_MS).await
    }
    // Removes a node; it is shut down at once half the time, else it lingers until the end.
    async fn remove(sim: &Sim, id: NodeId, lingering: &mut Vec<NodeId>) -> bool {
        let ok = change_membership(sim, MembershipChange::Remove { id }, CHANGE_MS).await;
        if ok && sim.rand(2) == 0 {
            sim.retire(id);
        } else {
            lingering.push(id);
        }
        ok
    }
    sim.sleep_ms(100 + sim.rand(200)).await;
    // 1. A learner with an empty disk joins and is promoted.
    add(&sim, NodeId(next_id)).await;
    next_id += 1;
    sim.sleep_ms(100 + sim.rand(400)).await;
    // 2. A follower is removed.
    if let Some(leader) = sim.wait_leader(2_000).await {
        let followers: Vec<NodeId> = voters(&sim).into_iter().filter(|&v| v != leader).collect();
        if !followers.is_empty() {
            let f = followers[sim.rand(followers.len() as u64) as usize];
            remove(&sim, f, &mut lingering).await;
        }
    }
    sim.sleep_ms(100 + sim.rand(400)).await;
    // 3. Another fresh node joins, then the leader is removed (it steps down once committed).
    add(&sim, NodeId(next_id)).await;
    next_id += 1;
    if let Some(leader) = sim.wait_leader(2_000).await {
        remove(&sim, leader, &mut lingering).await;
    }
    sim.sleep_ms(100 + sim.rand(400)).await;
    // 4. A voter is replaced by a wiped node with a new id.
    let vs = voters(&sim);
    if !vs.is_empty() {
        let v = vs[sim.rand(vs.len() as u64) as usize];
        if change_membership(&sim, MembershipChange::Remove { id: v }, CHANGE_MS).await {
            sim.retire(v);
            sim.wipe(v);
            add(&sim, NodeId(next_id)).await;
        } else {
            lingering.push(v);
        }
    }
    sim.sleep_ms(sim.rand(300)).await;
    chaos.abort();
    // Removed nodes that still linger are shut down now, unless the removal never took effect.
    for id in lingering {
        let member = {
            let w = sim.lock();
            w.leader()
                .and_then(|(l, _)| w.node(l))
                .is_none_or(|n| n.raft().membership().contains(id))
        };
        if !member {
            sim.retire(id);
        }
    }
}

/// TTL across leader changes: clients also write keys `t0..` with TTLs of 20-800 ms (deadlines
/// in cluster time, from nodes whose clocks lie: `NodeClock`) while the leader is crashed (torn writes
/// half the time, restarted 0-200 ms later) or isolated for 150-400 ms, 8-14 times, 100-350 ms
/// apart, under 0-10% loss. `ttlcheck` then requires that no key expired early, none was visible
/// after its deadline or reappeared, and the usual replica agreement (identical caches, clocks
/// included, at the same applied index).
pub async fn ttl_across_leader_changes(sim: Sim) {
    ttl_leader_changes(sim, false).await
}

/// [`ttl_across_leader_changes`] plus leadership transfers to random voters (it found the core
/// busy loop fixed in 720fbec: a transfer blocked the leader's expiry proposal).
pub async fn ttl_with_leadership_transfer(sim: Sim) {
    ttl_leader_changes(sim, true).await
}

async fn ttl_leader_changes(sim: Sim, transfers: bool) {
    let loss = sim.rand(100);
    sim.net(|n| n.loss_per_mille = loss);
    let rounds = 8 + sim.rand(7);
    for _ in 0..rounds {
        sim.sleep_ms(100 + sim.rand(250)).await;
        let Some(leader) = sim.wait_leader(2_000).await else { continue };
        match sim.rand(if transfers { 3 } else { 2 }) {
            0 => {
                sim.crash(leader, sim.rand(2) == 0);
                sim.sleep_ms(sim.rand(200)).await;
                sim.restart(leader);
            }
            1 => {
                sim.isolate(leader);
                sim.sleep_ms(150 + sim.rand(250)).await;
                sim.net(|n| n.cut.clear());
            }
            _ => {
                let ids = sim.node_ids();
                let target = ids[sim.rand(ids.len() as u64) as usize];
                let r = sim.with_node(leader, |n, now| {
                    n.raft_mut().transfer_leadership(now, target).is_ok()
                });
                sim.event(&format!("transfer {leader} -> {target}: {r:?}"));
            }
        }
    }
}

/// Ongaro's single-server change scenario (raft-dev, 2015), driven step by step on 4 voters and
/// a learner `5`:
/// 1. The leader `L`, cut off from the other voters but not from `5`, promotes `5`: the change
///    `C1` (5 voters) reaches only `L` and `5`. `L` crashes; `5` stays cut off.
/// 2. The others elect `M`. The reactor cuts `M` from a third voter `D` (and from `5`) before
///    `M`'s first messages leave, so `D`'s log stays at `L`'s term. `M` tries, for 400 ms, to
///    remove `L` (`C2`, 3 voters). Correct Raft refuses (`LeaderNotReady`: no entry of `M`'s
///    term can commit without `L` or `D`); with the mutation `ChangeBeforeOwnTermCommit` it is
///    proposed and commits with `M` and the fourth voter under `C2`'s quorum.
/// 3. `L` restarts with `D` and `5`, away from `M` and the fourth voter. Under `C1` those three
///    are a majority and `L`'s log is as up to date as theirs: it can win, and then overwrite
///    entries `C2` committed. The safety checkers see it after healing.
pub async fn single_server_change(sim: Sim) {
    let learner = NodeId(5);
    sim.add_node(learner);
    let address = format!("sim://{learner}");
    if !change_membership(&sim, MembershipChange::AddLearner { id: learner, address }, 3_000).await
    {
        sim.event("single server change: the learner was not added");
        return;
    }
    sim.sleep_ms(200).await;
    let Some(old) = sim.wait_leader(2_000).await else { return };
    let voters: Vec<NodeId> = (1..=4).map(NodeId).collect();
    let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != old).collect();
    sim.partition(&[old, learner], &others);
    let promoted = sim.with_node(old, |n, now| {
        n.raft_mut().propose_membership(now, MembershipChange::PromoteLearner { id: learner })
    });
    sim.event(&format!("single server change: {old} promotes {learner}: {promoted:?}"));
    if !matches!(promoted, Some(Ok(_))) {
        return;
    }
    sim.sleep_ms(30).await;
    sim.crash(old, false);
    sim.heal();
    sim.partition(&[learner], &others);
    sim.lock().change_reactor =
        Some(ChangeReactor { old, learner, voters: voters.clone(), fired: None });
    let start = sim.now();
    let fired = loop {
        if let Some(f) = sim.lock().change_reactor.as_ref().and_then(|r| r.fired) {
            break Some(f);
        }
        if sim.now().saturating_since(start) > 3_000 {
            break None;
        }
        sim.sleep_ms(5).await;
    };
    sim.lock().change_reactor = None;
    let Some((new, spare)) = fired else { return };
    let start = sim.now();
    while sim.now().saturating_since(start) < 400 {
        let r = sim.with_node(new, |n, now| {
            n.raft_mut().propose_membership(now, MembershipChange::Remove { id: old })
        });
        if matches!(r, Some(Ok(_))) {
            sim.event(&format!(
                "single server change: {new} removes {old} before its term commits"
            ));
            break;
        }
        sim.sleep_ms(10).await;
    }
    sim.sleep_ms(100).await;
    let fourth: Vec<NodeId> = others.iter().copied().filter(|&v| v != new && v != spare).collect();
    sim.heal();
    let mut majority_side = vec![new];
    majority_side.extend(&fourth);
    sim.partition(&[old, spare, learner], &majority_side);
    sim.restart(old);
    sim.sleep_ms(800).await;
}

/// ReadIndex answers that outlive the node that asked: the leader's answers are slow (up to
/// 50-150 ms more); 3-5 times, a random follower, whose incoming messages are all slow (up to
/// 20-80 ms more, so it lags), goes through 5-10 short lives (30-120 ms each, down for at most
/// 10 ms) while clients read through it, so each life numbers about as many requests as the one
/// before. Answers to a previous life then reach a node that has new reads
/// waiting; request ids unique across restarts (and answers taken only from the leader asked, in
/// the term asked) keep them from completing the wrong read.
pub async fn read_answers_across_restarts(sim: Sim) {
    let slow = 50 + sim.rand(101);
    sim.net(|n| n.read_answer_delay_ms = slow);
    let rounds = 3 + sim.rand(3);
    for _ in 0..rounds {
        sim.sleep_ms(100 + sim.rand(200)).await;
        let Some(leader) = sim.wait_leader(1_000).await else { continue };
        let followers: Vec<NodeId> = sim.node_ids().into_iter().filter(|&n| n != leader).collect();
        let f = followers[sim.rand(followers.len() as u64) as usize];
        // It lags too (everything to it is slow), so an old read index is behind what it shows.
        let lag = 20 + sim.rand(61);
        sim.net(|n| {
            n.slow_to.insert(f, lag);
        });
        for _ in 0..5 + sim.rand(6) {
            sim.sleep_ms(30 + sim.rand(91)).await;
            sim.crash(f, false);
            sim.sleep_ms(sim.rand(11)).await;
            sim.restart(f);
        }
        sim.net(|n| n.slow_to.clear());
    }
}
