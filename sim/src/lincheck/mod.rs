//! Linearizability checking of client histories.
//!
//! A history is linearizable when every operation can be given a single instant between its call
//! and its return such that, taken in that order, the operations are a legal run of a sequential
//! [`Model`]. [`check`] decides that with the Wing & Gong search as improved by Lowe (WGL) and
//! memoized as in Porcupine: it walks the call/return events in time order, tentatively linearizes
//! any operation that is still pending, and backtracks when an operation's return comes up before
//! it was linearized. A (linearized set, model state) pair that was reached before is never
//! explored twice, which is what makes real histories tractable.
//!
//! Operations whose outcome is unknown (timed out, crashed, still open) get a return time of
//! +infinity and an unconstrained output, so they may take effect at any point after their call,
//! or never. Histories over independent keys are split with [`partition`] and checked key by key
//! with [`check_partitions`].
//!
//! The search is exponential in the worst case, so every check takes a [`Budget`]; when it runs
//! out the verdict is [`Verdict::Unknown`] rather than a hang.
//!
//! Models: [`RegisterModel`] (Jepsen's etcd compare-and-set register), [`KvModel`] (Jepsen's
//! get/put/append store) and [`CacheModel`] (simple-cache's own operations, for the simulator).
//! [`parse_etcd_log`] and [`parse_jepsen_kv`] read the Jepsen formats.

mod cache;
mod history;
mod kv;
mod parse;
mod register;
mod wgl;

pub use cache::{CacheInput, CacheModel, CacheOp, CacheOutput};
pub use history::{History, HistoryError, Operation, partition};
pub use kv::{KvInput, KvModel, KvOp, KvOutput};
pub use parse::{ParseError, parse_etcd_log, parse_jepsen_kv};
pub use register::{RegisterInput, RegisterModel, RegisterOutput};

use std::hash::Hash;

/// A sequential specification of the object under test.
///
/// The model must be deterministic: from a given state, an input leads to at most one next state.
/// The output only decides whether that step is possible.
pub trait Model {
    type State: Clone + Eq + Hash;
    type Input;
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after applying `input` to `state`, or `None` when the object could not have
    /// answered `output` from `state`.
    ///
    /// `output` is `None` for an operation whose outcome is unknown. The step must then accept
    /// any output and return the state as if the operation took effect (the checker covers the
    /// case where it never did by leaving it out of the linearization).
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// The answer to "is this history linearizable?".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The [`Budget`] ran out before the search finished.
    Unknown,
}

/// How much search a check may do before giving up with [`Verdict::Unknown`].
///
/// A step is one iteration of the search loop: trying one pending operation or backtracking once.
/// The memo table gains at most one entry per step, so the budget bounds memory as well as time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Steps allowed over the whole check, all partitions together; `None` means no limit.
    pub steps_max: Option<u64>,
}

impl Budget {
    /// No limit: use only on histories known to be small or easy.
    pub const UNLIMITED: Self = Self { steps_max: None };

    /// At most `steps_max` steps in all.
    pub const fn steps(steps_max: u64) -> Self {
        Self { steps_max: Some(steps_max) }
    }
}

impl Default for Budget {
    /// Ten million steps: seven times what the hardest Jepsen known-answer history needs, and
    /// seconds of search in a debug build.
    fn default() -> Self {
        Self::steps(10_000_000)
    }
}

/// The outcome of a check, with enough context to find the trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub verdict: Verdict,
    /// Search steps used, all partitions together.
    pub steps: u64,
    /// For a verdict other than [`Verdict::Linearizable`]: the index of the partition that is not
    /// linearizable, or whose search ran out of budget (always 0 for [`check`]).
    pub partition: Option<usize>,
    /// For [`Verdict::NotLinearizable`]: the operation (an index into that partition's
    /// [`History::ops`]) that the longest partial linearization found could not get past. It had
    /// returned, but no order of the operations before it explains its output.
    pub stuck_op: Option<usize>,
}

impl CheckResult {
    /// Whether the history was shown to be linearizable.
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

/// Checks one history against `model`.
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    budget: Budget,
) -> CheckResult {
    check_partitions(model, std::slice::from_ref(history), budget)
}

/// Checks independent parts of a history (see [`partition`]): the whole is linearizable exactly
/// when every part is.
///
/// The parts share the budget in round-robin slices of [`SLICE_STEPS`] steps, and the check
/// stops as soon as one part is shown not to be linearizable. A violation that is quick to find in
/// one part is therefore not held up by another part whose search is long (Porcupine gets the
/// same effect by searching the parts in parallel). The verdict is [`Verdict::Unknown`] when the
/// budget runs out first.
pub fn check_partitions<M: Model>(
    model: &M,
    partitions: &[History<M::Input, M::Output>],
    budget: Budget,
) -> CheckResult {
    // The parts still undecided, in partition order.
    let mut pending: Vec<(usize, wgl::Search<'_, M>)> = partitions
        .iter()
        .enumerate()
        .map(|(index, part)| (index, wgl::Search::new(model, part.ops())))
        .collect();
    let steps_max = budget.steps_max.unwrap_or(u64::MAX);
    let mut steps = 0;
    loop {
        // One round: every undecided part gets a slice. A part that needs no steps is decided
        // even when the budget is spent.
        let mut undecided = Vec::with_capacity(pending.len());
        for (index, mut search) in pending {
            let before = search.steps();
            let verdict = search.run((steps_max - steps).min(SLICE_STEPS));
            steps += search.steps() - before;
            match verdict {
                None => undecided.push((index, search)),
                Some(Verdict::Linearizable) => {}
                Some(Verdict::NotLinearizable) => {
                    return CheckResult {
                        verdict: Verdict::NotLinearizable,
                        steps,
                        partition: Some(index),
                        stuck_op: search.stuck_op(),
                    };
                }
                Some(Verdict::Unknown) => unreachable!("a search slice never answers Unknown"),
            }
        }
        pending = undecided;
        match pending.first() {
            None => {
                return CheckResult {
                    verdict: Verdict::Linearizable,
                    steps,
                    partition: None,
                    stuck_op: None,
                };
            }
            Some(&(first_pending, _)) if steps >= steps_max => {
                return CheckResult {
                    verdict: Verdict::Unknown,
                    steps,
                    partition: Some(first_pending),
                    stuck_op: None,
                };
            }
            Some(_) => {}
        }
    }
}

/// How many steps a part of a partitioned history searches before the next part gets a turn.
pub const SLICE_STEPS: u64 = 10_000;

#[cfg(test)]
mod tests;
