//! Mutation tests: with a classic Raft bug planted in every node (core's test-only `mutations`
//! feature), the simulation must fail within a seed budget. A planted bug that is never caught
//! would mean the checkers or the nemesis are too weak.
#![cfg(all(feature = "sim", madsim))]

use simple_cache_core::raft::Mutation;
use simple_cache_sim::harness::{Sim, SimConfig, nemesis, run_seed};
use std::future::Future;

/// Runs seeds from 1 until one fails; returns the seed and its first violation.
fn first_failure<F>(
    mutation: Mutation,
    budget: u64,
    cfg: SimConfig,
    scenario: fn(Sim) -> F,
) -> Option<(u64, String)>
where
    F: Future<Output = ()> + 'static,
{
    let first = simple_cache_sim::harness::seeds_from_env(budget).start;
    for seed in first..first + budget {
        let cfg = SimConfig { mutation: Some(mutation), ..cfg.clone() };
        let r = run_seed(seed, cfg, scenario);
        if let Some(v) = r.violations.first() {
            println!("{mutation:?}: caught at seed {seed}: {v}");
            return Some((seed, v.clone()));
        }
    }
    println!("{mutation:?}: not caught in {budget} seeds");
    None
}

fn assert_caught(mutation: Mutation, found: Option<(u64, String)>, budget: u64) {
    assert!(found.is_some(), "the planted bug {mutation:?} survived {budget} seeds");
}

// Granting a second vote in a term must produce two leaders in a term (or what follows from it).
#[test]
fn mutation_double_vote_is_caught() {
    let budget = 60;
    let cfg = SimConfig { nodes: 5, clients: 3, ..SimConfig::default() };
    let found = first_failure(Mutation::DoubleVote, budget, cfg, nemesis::chaos);
    assert_caught(Mutation::DoubleVote, found, budget);
}

// Committing an entry of a previous term by counting replicas (Raft figure 8) must lose a
// committed entry under leader changes and crashes.
#[test]
fn mutation_commit_previous_term_is_caught() {
    let budget = 150;
    // One entry per append, so followers acknowledge earlier terms' entries before the new
    // leader's no-op; otherwise the no-op rides along and the bug has no effect.
    let cfg = SimConfig { nodes: 5, clients: 4, append_entries_max: 1, ..SimConfig::default() };
    let found = first_failure(Mutation::CommitPreviousTerm, budget, cfg, nemesis::figure8);
    assert_caught(Mutation::CommitPreviousTerm, found, budget);
}

// Serving reads on the leader without confirming leadership must give a stale read once a
// deposed leader keeps answering.
#[test]
fn mutation_local_reads_is_caught() {
    let budget = 150;
    let found = first_failure(
        Mutation::LocalReads,
        budget,
        SimConfig::default(),
        nemesis::partition_leader_from_majority,
    );
    assert_caught(Mutation::LocalReads, found, budget);
}

// Acknowledging appends before they are durable must lose an acknowledged write in crashes.
#[test]
fn mutation_ack_before_sync_is_caught() {
    let budget = 60;
    let found = first_failure(
        Mutation::AckBeforeSync,
        budget,
        SimConfig::default(),
        nemesis::crash_restart_with_unsynced_loss,
    );
    assert_caught(Mutation::AckBeforeSync, found, budget);
}

// Without a planted bug the chaos and figure 8 nemeses pass: the mutation tests fail because of the bug,
// not because the nemesis is unfair.
#[test]
fn chaos_and_figure8_without_mutation_pass() {
    simple_cache_sim::harness::run_scenario(
        "chaos",
        10,
        SimConfig { nodes: 5, clients: 3, ..SimConfig::default() },
        nemesis::chaos,
    );
    simple_cache_sim::harness::run_scenario(
        "figure8",
        10,
        SimConfig { nodes: 5, clients: 4, append_entries_max: 1, ..SimConfig::default() },
        nemesis::figure8,
    );
}

// A node rebuilt from its disk that forgets its term and vote in memory (the disk is right) must
// be caught: the durable-term check compares the rebuilt node's own term and vote with its disk
// and with the terms it sent before the crash (it used to read only the disk).
#[test]
fn mutation_forget_term_on_restart_is_caught() {
    let budget = 20;
    let found = first_failure(
        Mutation::ForgetTermOnRestart,
        budget,
        SimConfig::default(),
        nemesis::crash_restart_with_unsynced_loss,
    );
    assert_caught(Mutation::ForgetTermOnRestart, found.clone(), budget);
    assert!(found.unwrap().1.starts_with("durable term"), "caught by the durable-term check");
}

// A real vote granted without the log check is mostly hidden by pre-vote (a candidate reaches
// the real vote only after a quorum found its log up to date); without pre-vote, a stale
// candidate wins and committed entries are lost. Caught on seeds run without pre-vote, as a
// third of the crash and loss scenarios' seeds are.
#[test]
fn mutation_vote_ignores_log_is_caught_without_pre_vote() {
    let budget = 160;
    let cfg = SimConfig { pre_vote: false, ..SimConfig::default() };
    let found = first_failure(
        Mutation::VoteIgnoresLog,
        budget,
        cfg,
        nemesis::crash_restart_with_unsynced_loss,
    );
    assert_caught(Mutation::VoteIgnoresLog, found, budget);
}

// A leader that stamps proposals and judges reads with its own raw clock (the design before the
// cluster clock): with one node's clock an hour off, keys vanish early or live on once that node
// leads. With the cluster clock the same seeds pass (`ttl_across_leader_changes` runs half its
// seeds with a bad clock).
#[test]
fn mutation_raw_leader_clock_is_caught() {
    let budget = 20;
    let cfg = SimConfig { ttl_keys: 3, bad_clock: true, ..SimConfig::default() };
    let found =
        first_failure(Mutation::RawLeaderClock, budget, cfg, nemesis::ttl_across_leader_changes);
    assert_caught(Mutation::RawLeaderClock, found, budget);
}

// A driver that carries on after a failed fsync (PostgreSQL's fsyncgate): the bytes it believes
// durable are zeros after its next crash, so acknowledged entries vanish or recovery fails.
#[test]
fn mutation_continue_after_failed_fsync_is_caught() {
    let budget = 30;
    let cfg = SimConfig { fsync_fail_per_mille: 20, ..SimConfig::default() };
    let found = first_failure(
        Mutation::ContinueAfterFailedFsync,
        budget,
        cfg,
        nemesis::crash_restart_with_unsynced_loss,
    );
    assert_caught(Mutation::ContinueAfterFailedFsync, found, budget);
}

// A new leader that proposes a membership change before an entry of its term committed: the
// single-server change reactor makes the previous leader's uncommitted change and this one meet,
// and the previous leader wins again under its own configuration, overwriting committed entries.
#[test]
fn mutation_change_before_own_term_commit_is_caught() {
    let budget = 20;
    let cfg = SimConfig { nodes: 4, promote_learners: false, ..SimConfig::default() };
    let found = first_failure(
        Mutation::ChangeBeforeOwnTermCommit,
        budget,
        cfg,
        nemesis::single_server_change,
    );
    assert_caught(Mutation::ChangeBeforeOwnTermCommit, found, budget);
}

// Request ids from 0 again at every start, and ReadIndex answers taken from anyone: a slow answer
// meant for a follower's previous life completes a new read with the same id at an old index.
#[test]
fn mutation_request_ids_reset_is_caught() {
    let budget = 40;
    let found = first_failure(
        Mutation::RequestIdsReset,
        budget,
        SimConfig::default(),
        nemesis::read_answers_across_restarts,
    );
    assert_caught(Mutation::RequestIdsReset, found, budget);
}

// Node 2 evicting a different key than the others (eviction decided per replica, as RedisRaft
// and the Go system do) must be caught: by the eviction reports, the replicas' cache digests,
// or the linearizability of reads through node 2.
#[test]
fn mutation_eviction_diverges_is_caught() {
    use simple_cache_core::cache::{EvictionPolicy, Limits};
    let budget = 20;
    let limits = Limits { max_memory_bytes: 0, max_keys: 3, policy: EvictionPolicy::AllKeysLru };
    let cfg = SimConfig { limits: Some(limits), ..SimConfig::default() };
    let found = first_failure(
        Mutation::EvictionDiverges,
        budget,
        cfg,
        nemesis::crash_restart_with_unsynced_loss,
    );
    assert_caught(Mutation::EvictionDiverges, found, budget);
}

// A compare-and-set decided when it is proposed, against the proposer's applied state (which
// lags its own log), and proposed without its condition: a compare-and-set that overlaps
// another write succeeds against a revision that write already replaced, and a later read
// shows it. The linearizability model of compare-and-set must catch it.
#[test]
fn mutation_cas_before_apply_is_caught() {
    let budget = 40;
    let cfg = SimConfig { clients: 6, keys: 2, ..SimConfig::default() };
    let found = first_failure(
        Mutation::CasBeforeApply,
        budget,
        cfg,
        nemesis::message_loss_duplication_reordering,
    );
    assert_caught(Mutation::CasBeforeApply, found, budget);
}

// A snapshot installed from the leader that does not reset the change feed: the node's watch
// history and watchers go on as if they had seen the changes the snapshot covers, so a watcher
// of that node silently misses them. The watch-feed check must catch it.
#[test]
fn mutation_watch_gap_hidden_is_caught() {
    let budget = 20;
    let found = first_failure(
        Mutation::WatchGapHidden,
        budget,
        SimConfig::default(),
        nemesis::snapshot_install_far_behind,
    );
    assert_caught(Mutation::WatchGapHidden, found, budget);
}
