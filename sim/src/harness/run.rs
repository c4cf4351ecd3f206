//! Running a scenario over many seeds, each in a fresh madsim runtime, and judging each run.

use super::{Sim, SimConfig};
use crate::lincheck::{Budget, CacheModel, Verdict, check_partitions, partition};
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// A scenario: the nemesis for one run. The harness starts the cluster and clients before it and
/// heals, checks liveness and runs every checker after it.
pub type Scenario<F> = fn(Sim) -> F;

/// What one seed's run produced.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub seed: u64,
    /// FNV-1a over the run's event trace: the same seed must give the same digest.
    pub digest: u64,
    pub violations: Vec<String>,
    pub ops: usize,
    pub unknown_ops: usize,
    pub sim_ms: u64,
    pub crashes: u64,
    pub messages: u64,
    pub leader_terms: usize,
    /// Membership changes that took effect.
    pub membership_changes: u64,
    /// Operations on TTL keys (judged by `ttlcheck`).
    pub ttl_ops: usize,
    /// Set when the linearizability search ran out of budget (not a failure, but not a proof).
    pub lincheck_undecided: bool,
    /// Hostile messages refused, and confusing ones taken (`hostile.rs`).
    pub hostile_refused: u64,
    pub hostile_accepted: u64,
    /// Wall-clock steps at restarts.
    pub clock_steps: u64,
    /// Fsyncs that failed.
    pub fsync_failures: u64,
    /// Graceful stops with a hand-over started, and finished in time.
    pub handovers: (u64, u64),
    /// Keys evicted (runs with `SimConfig::limits`).
    pub evicted: u64,
}

/// Steps the linearizability search may take per run; plenty for a few hundred operations over
/// five keys with unique written values.
const LINCHECK_BUDGET: u64 = 2_000_000;

/// Runs one seed of a scenario. A panic inside the run (a core assertion, say) is a violation.
pub fn run_seed<F>(seed: u64, cfg: SimConfig, scenario: Scenario<F>) -> RunReport
where
    F: Future<Output = ()> + 'static,
{
    let rt = madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    // Kept outside the run so that the violations recorded before a panic are reported too.
    let started: std::sync::Arc<std::sync::Mutex<Option<Sim>>> = Default::default();
    let started_in = started.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async move {
            let sim = Sim::start(seed, cfg);
            *started_in.lock().unwrap_or_else(|e| e.into_inner()) = Some(sim.clone());
            scenario(sim.clone()).await;
            sim.heal_and_check_liveness().await;
            let mut violations = sim.finish().await;
            let w = sim.lock();
            let history = w.history.clone();
            let ops = history.len();
            let unknown_ops = history.ops().iter().filter(|o| o.is_unknown()).count();
            let parts = partition(history, |i| i.key.clone());
            let verdict = check_partitions(&CacheModel, &parts, Budget::steps(LINCHECK_BUDGET));
            if verdict.verdict == Verdict::NotLinearizable {
                let part = &parts[verdict.partition.unwrap_or(0)];
                let key =
                    part.ops().first().map(|o| String::from_utf8_lossy(&o.input.key).into_owned());
                let stuck = verdict.stuck_op.map(|i| format!("{:?}", part.ops()[i]));
                violations.push(format!(
                    "linearizability: the history of key {key:?} is not linearizable (stuck at \
                     {stuck:?})"
                ));
            }
            violations
                .extend(crate::ttlcheck::check_ttl(&w.ttl_history, super::ttl_eps_ms(&w.cfg)));
            RunReport {
                seed,
                digest: w.digest(),
                violations,
                ops,
                unknown_ops,
                sim_ms: w.now().0,
                crashes: w.crashes,
                messages: w.messages_sent,
                leader_terms: w.checker.leader_terms(),
                membership_changes: w.membership_changes,
                ttl_ops: w.ttl_history.len(),
                lincheck_undecided: verdict.verdict == Verdict::Unknown,
                hostile_refused: w.hostile_refused,
                hostile_accepted: w.hostile_accepted,
                clock_steps: w.clock_steps,
                fsync_failures: w.fsync_failures,
                handovers: w.handovers,
                evicted: w.evicted,
            }
        })
    }));
    match result {
        Ok(report) => report,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            // What the checkers found before the panic came first.
            let sim = started.lock().unwrap_or_else(|e| e.into_inner()).take();
            let mut violations =
                sim.map(|s| s.lock().checker.violations.clone()).unwrap_or_default();
            violations.push(format!("panic: {msg}"));
            RunReport {
                seed,
                digest: 0,
                violations,
                ops: 0,
                unknown_ops: 0,
                sim_ms: 0,
                crashes: 0,
                messages: 0,
                leader_terms: 0,
                membership_changes: 0,
                ttl_ops: 0,
                lincheck_undecided: false,
                hostile_refused: 0,
                hostile_accepted: 0,
                clock_steps: 0,
                fsync_failures: 0,
                handovers: (0, 0),
                evicted: 0,
            }
        }
    }
}

/// The seeds to run: `MADSIM_TEST_SEED` (first seed, default 1) and `MADSIM_TEST_NUM` (how many,
/// default `default_num`). Fixed defaults keep `cargo test` reproducible; CI and the nightly soak
/// raise `MADSIM_TEST_NUM`.
pub fn seeds_from_env(default_num: u64) -> std::ops::Range<u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse::<u64>().ok());
    let first = env("MADSIM_TEST_SEED").unwrap_or(1);
    let num = env("MADSIM_TEST_NUM").unwrap_or(default_num);
    first..first + num
}

/// A share of the seed budget for a slow scenario: `seeds_from_env(default_num)` divided by
/// `divisor` (at least one seed), from the same first seed. With `MADSIM_TEST_NUM=140` and a
/// divisor of 3, such a scenario runs 46 seeds per call.
pub fn seeds_scaled(default_num: u64, divisor: u64) -> std::ops::Range<u64> {
    let seeds = seeds_from_env(default_num);
    let num = ((seeds.end - seeds.start) / divisor.max(1)).max(1);
    seeds.start..seeds.start + num
}

/// Runs a scenario over the seeds from the environment and panics, with the command that replays
/// it, on the first seed that violates anything.
pub fn run_scenario<F>(name: &str, default_num: u64, cfg: SimConfig, scenario: Scenario<F>)
where
    F: Future<Output = ()> + 'static,
{
    run_scenario_seeds(name, seeds_from_env(default_num), cfg, scenario)
}

/// [`run_scenario`] over the given seeds.
pub fn run_scenario_seeds<F>(
    name: &str,
    seeds: std::ops::Range<u64>,
    cfg: SimConfig,
    scenario: Scenario<F>,
) where
    F: Future<Output = ()> + 'static,
{
    let started = std::time::Instant::now();
    let (mut ops, mut unknown, mut undecided, mut n) = (0, 0, 0, 0u64);
    for seed in seeds.clone() {
        let seed_cfg = cfg.for_seed(seed);
        let rules = match (seed_cfg.pre_vote, seed_cfg.check_quorum) {
            (true, true) => "",
            (false, _) => " (no pre-vote)",
            (_, false) => " (no check-quorum)",
        };
        let clock = if seed_cfg.bad_clock { " (bad clock)" } else { "" };
        let r = run_seed(seed, seed_cfg, scenario);
        println!(
            "{name}: seed {seed}{rules}{clock} digest {:016x} ops {} unknown {} crashes {} terms {} \
             membership {} ttl ops {} sim {} ms{}",
            r.digest,
            r.ops,
            r.unknown_ops,
            r.crashes,
            r.leader_terms,
            r.membership_changes,
            r.ttl_ops,
            r.sim_ms,
            extras(&r),
        );
        if !r.violations.is_empty() {
            panic!(
                "{name} failed at seed {seed} (digest {:016x}):\n  {}\nreplay with:\n  \
                 MADSIM_TEST_SEED={seed} MADSIM_TEST_NUM=1 cargo test -p simple-cache-sim \
                 --features sim --test scenarios -- --exact {name} --nocapture",
                r.digest,
                r.violations.join("\n  ")
            );
        }
        ops += r.ops;
        unknown += r.unknown_ops;
        undecided += r.lincheck_undecided as u64;
        n += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{name}: {n} seeds ({}..{}) passed in {secs:.1} s = {:.2} seeds/s; {ops} ops ({unknown} \
         unknown); lincheck undecided on {undecided} seeds",
        seeds.start,
        seeds.end,
        n as f64 / secs.max(1e-9)
    );
}

/// The report's optional counters, printed only when a run has them.
fn extras(r: &RunReport) -> String {
    let mut out = String::new();
    if r.clock_steps > 0 {
        out += &format!(" clock steps {}", r.clock_steps);
    }
    if r.handovers.0 > 0 {
        out += &format!(" hand-overs {}/{}", r.handovers.1, r.handovers.0);
    }
    if r.fsync_failures > 0 {
        out += &format!(" fsync failures {}", r.fsync_failures);
    }
    if r.evicted > 0 {
        out += &format!(" evicted {}", r.evicted);
    }
    if r.hostile_refused + r.hostile_accepted > 0 {
        out += &format!(" hostile refused {} taken {}", r.hostile_refused, r.hostile_accepted);
    }
    out
}
