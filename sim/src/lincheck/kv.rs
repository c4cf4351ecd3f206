//! One key of a string key/value store with get, put and append: Jepsen's `kv` tests.

use super::Model;

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvInput {
    pub key: String,
    pub op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOp {
    Get,
    /// Replace the value.
    Put(String),
    /// Concatenate to the value.
    Append(String),
}

/// What the store answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get's value, `""` when the key is absent.
    Value(String),
    /// A put or an append took effect.
    Ok,
}

/// The value of a single key, initially `""`.
///
/// The model ignores [`KvInput::key`]: check a multi-key history with
/// [`partition`](super::partition) by key, one part per key.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = String;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Self::State {
        String::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        match (&input.op, output) {
            (KvOp::Get, None) => Some(state.clone()),
            (KvOp::Get, Some(KvOutput::Value(value))) => (value == state).then(|| state.clone()),
            (KvOp::Put(value), None | Some(KvOutput::Ok)) => Some(value.clone()),
            (KvOp::Append(value), None | Some(KvOutput::Ok)) => Some(format!("{state}{value}")),
            (op, Some(output)) => {
                panic!(
                    "a kv history pairs each input with an output of its kind: {op:?} answered {output:?}"
                )
            }
        }
    }
}
