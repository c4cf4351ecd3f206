//! Client histories: what each client asked for, when, and what it was told.

use std::collections::BTreeMap;
use std::fmt;

/// One client operation as observed from outside the system under test.
///
/// `ret` and `output` are both `Some` for an operation whose completion the client saw, and both
/// `None` for an operation whose outcome is unknown: it timed out, crashed (Jepsen's `:info`) or
/// was still open when the history ended. Such an operation may take effect at any point after
/// `call`, or never, and its output is unconstrained; the checker gives it a return time of
/// +infinity, as Knossos and Porcupine do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who issued the operation. The checker does not use it; it is kept for diagnostics.
    pub client: u64,
    pub input: I,
    /// When the client invoked the operation.
    pub call: u64,
    /// When the client saw the operation complete; `None` when that is unknown.
    pub ret: Option<u64>,
    /// What the client was told; `None` exactly when `ret` is `None`.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that was invoked at `call` and returned `output` at `ret`.
    pub fn completed(client: u64, input: I, call: u64, ret: u64, output: O) -> Self {
        Self { client, input, call, ret: Some(ret), output: Some(output) }
    }

    /// An operation that was invoked at `call` and whose outcome is unknown.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Self { client, input, call, ret: None, output: None }
    }

    /// Whether the outcome of the operation is unknown.
    pub fn is_unknown(&self) -> bool {
        self.ret.is_none()
    }
}

/// Why an operation cannot be part of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryError {
    /// `ret` is earlier than `call`.
    ReturnBeforeCall { call: u64, ret: u64 },
    /// Exactly one of `ret` and `output` is `None`.
    OutcomeHalfKnown,
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReturnBeforeCall { call, ret } => {
                write!(f, "operation returns at {ret}, before its call at {call}")
            }
            Self::OutcomeHalfKnown => {
                f.write_str("an operation has a return time but no output, or the reverse")
            }
        }
    }
}

impl std::error::Error for HistoryError {}

/// A list of operations, each well formed (see [`History::push`]).
///
/// Time is any monotonic `u64` clock: the parsers use line numbers. When one operation returns at
/// the same time `t` as another is called, the checker orders the return first, so the returned
/// operation precedes the called one in real time. That is the strict reading: it never hides a
/// stale read behind a coarse clock, but a recorder whose clock can stamp a call *before* a return
/// at the same value must use a finer clock (a sequence number) or it may see false violations.
/// An operation that is called and returns at the same instant overlaps the other operations
/// called at that instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History<I, O> {
    ops: Vec<Operation<I, O>>,
}

impl<I, O> Default for History<I, O> {
    fn default() -> Self {
        Self { ops: Vec::new() }
    }
}

impl<I, O> History<I, O> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an operation. Operations may be pushed in any order.
    pub fn push(&mut self, op: Operation<I, O>) -> Result<(), HistoryError> {
        match op.ret {
            Some(ret) if ret < op.call => {
                return Err(HistoryError::ReturnBeforeCall { call: op.call, ret });
            }
            _ => {}
        }
        if op.ret.is_some() != op.output.is_some() {
            return Err(HistoryError::OutcomeHalfKnown);
        }
        self.ops.push(op);
        Ok(())
    }

    pub fn ops(&self) -> &[Operation<I, O>] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn into_ops(self) -> Vec<Operation<I, O>> {
        self.ops
    }
}

/// Splits a history into one history per key, in key order, each keeping the relative order of
/// its operations.
///
/// Linearizability is P-compositional (Herlihy & Wing): a history over independent keys is
/// linearizable exactly when each key's sub-history is, so checking the parts separately gives the
/// verdict for the whole at a fraction of the cost. The model used on the parts must then describe
/// a single key.
pub fn partition<I, O, K: Ord>(
    history: History<I, O>,
    mut key: impl FnMut(&I) -> K,
) -> Vec<History<I, O>> {
    let mut parts: BTreeMap<K, History<I, O>> = BTreeMap::new();
    for op in history.ops {
        // Each operation was validated when it entered `history`.
        parts.entry(key(&op.input)).or_default().ops.push(op);
    }
    parts.into_values().collect()
}
