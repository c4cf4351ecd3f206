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
            (op, Some(output)) => {
                panic!(
                    "a cache history pairs each input with an output of its kind: {op:?} answered {output:?}"
                )
            }
        }
    }
}
