//! One key of simple-cache, as the simulator's clients see it.

use super::Model;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheInput {
    pub key: Vec<u8>,
    pub op: CacheOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CacheOp {
    Get,
    Set(Vec<u8>),
    Del,
    /// Expire the key now. TTLs in the future are not modelled yet: the model treats this exactly
    /// as [`CacheOp::Del`].
    Expire,
    /// A compare-and-set: store `value` if the key holds `expect` (`None`: is absent). The
    /// simulator's clients compare on a revision they learnt from their own write of a value no
    /// other write stores, so "the key's `mod_revision` is r" is "the key holds the value written
    /// at r", which is what the model checks.
    Cas {
        expect: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    /// Add `delta` to an integer value (absent counts as 0), refused on a non-integer or an
    /// overflow.
    Incr(i64),
    /// An atomic batch on this key: if it holds `expect` (as [`CacheOp::Cas`]), store `value`,
    /// else delete the key. Answers [`CacheOutput::Applied`] with whether the compare held.
    Txn {
        expect: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

/// What the cache answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CacheOutput {
    /// A get's value, `None` when the key is absent.
    Value(Option<Vec<u8>>),
    /// A set took effect.
    Ok,
    /// A del or expire took effect; whether the key existed just before.
    Existed(bool),
    /// Whether a compare-and-set's condition held (and it stored its value).
    Applied(bool),
    /// An increment's new value.
    Number(i64),
    /// An increment was refused (not an integer, or an overflow): nothing changed.
    Refused,
}

/// The integer a stored value holds, as the state machine reads it (`value_form::integer`).
fn integer(value: Option<&[u8]>) -> Option<i64> {
    match value {
        None => Some(0),
        Some(v) => simple_cache_core::cache::value_form::integer(v),
    }
}

/// The value of a single key, initially absent.
///
/// The model ignores [`CacheInput::key`]: check a multi-key history with
/// [`partition`](super::partition) by key. To record an operation whose outcome the client never
/// learnt (a timeout, a crashed node, a lost reply), push it with
/// [`Operation::unknown`](super::Operation::unknown): it then may or may not have taken effect.
#[derive(Clone, Copy, Debug, Default)]
pub struct CacheModel;

impl Model for CacheModel {
    type State = Option<Vec<u8>>;
    type Input = CacheInput;
    type Output = CacheOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        match (&input.op, output) {
            (CacheOp::Get, None) => Some(state.clone()),
            (CacheOp::Get, Some(CacheOutput::Value(value))) => {
                (value == state).then(|| state.clone())
            }
            (CacheOp::Set(value), None | Some(CacheOutput::Ok)) => Some(Some(value.clone())),
            (CacheOp::Del | CacheOp::Expire, None) => Some(None),
            (CacheOp::Del | CacheOp::Expire, Some(CacheOutput::Existed(existed))) => {
                (*existed == state.is_some()).then_some(None)
            }
            (CacheOp::Cas { expect, value }, output) => {
                let holds = state == expect;
                if output.is_some_and(|o| *o != CacheOutput::Applied(holds)) {
                    return None;
                }
                Some(if holds { Some(value.clone()) } else { state.clone() })
            }
            (CacheOp::Txn { expect, value }, output) => {
                let holds = state == expect;
                if output.is_some_and(|o| *o != CacheOutput::Applied(holds)) {
                    return None;
                }
                Some(holds.then(|| value.clone()))
            }
            (CacheOp::Incr(delta), output) => {
                let next = integer(state.as_deref()).and_then(|n| n.checked_add(*delta));
                match (next, output) {
                    (Some(n), None) => Some(Some(n.to_string().into_bytes())),
                    (Some(n), Some(CacheOutput::Number(k))) => {
                        (n == *k).then(|| Some(n.to_string().into_bytes()))
                    }
                    (None, None | Some(CacheOutput::Refused)) => Some(state.clone()),
                    _ => None,
                }
            }
            (op, Some(output)) => {
                panic!(
                    "a cache history pairs each input with an output of its kind: {op:?} answered {output:?}"
                )
            }
        }
    }
}
