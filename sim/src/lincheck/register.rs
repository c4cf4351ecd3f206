//! A single integer register with compare-and-set: the object in Jepsen's etcd tests.

use super::Model;

/// An operation on the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterInput {
    Read,
    Write(i64),
    /// Set the register to `to` if it holds `from`.
    Cas {
        from: i64,
        to: i64,
    },
}

/// What the register answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RegisterOutput {
    /// A read's value; `None` when the register was never written.
    Read(Option<i64>),
    /// A write or a compare-and-set took effect.
    Ok,
    /// A compare-and-set did not take effect because the register did not hold `from`.
    Failed,
}

/// The register, initially empty (Jepsen's `nil`).
///
/// A failed compare-and-set is a completed operation that left the register alone, and it is
/// only possible when the register did not hold `from`: that is why etcd refuses a swap, and it is
/// how Porcupine models it. An operation whose outcome is unknown accepts any output.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegisterModel;

impl Model for RegisterModel {
    type State = Option<i64>;
    type Input = RegisterInput;
    type Output = RegisterOutput;

    fn init(&self) -> Self::State {
        None
    }

    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        use RegisterInput as I;
        use RegisterOutput as O;
        match (input, output) {
            (I::Read, None) => Some(*state),
            (I::Read, Some(O::Read(value))) => (value == state).then_some(*state),
            (I::Write(value), None | Some(O::Ok)) => Some(Some(*value)),
            (I::Cas { from, to }, None) => {
                Some(if *state == Some(*from) { Some(*to) } else { *state })
            }
            (I::Cas { from, to }, Some(O::Ok)) => (*state == Some(*from)).then_some(Some(*to)),
            (I::Cas { from, .. }, Some(O::Failed)) => (*state != Some(*from)).then_some(*state),
            (input, Some(output)) => {
                panic!(
                    "a register history pairs each input with an output of its kind: {input:?} answered {output:?}"
                )
            }
        }
    }
}
