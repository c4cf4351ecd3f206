//! The WGL search (Wing & Gong, with Lowe's memoization), following Porcupine's `checkSingle`.
//!
//! The call and return events of all operations form a doubly linked list in time order. The
//! search keeps the current model state and the set of operations linearized so far, and walks
//! the list from the front:
//!
//! - At a call, it tries to linearize that operation now: if the model accepts the step and the
//!   resulting (linearized set, state) pair is new, it pushes the old state on the undo stack,
//!   unlinks the operation's call and return from the list, and restarts from the front.
//! - At a return, the operation returning was not linearized before it returned, so the current
//!   prefix is a dead end: it pops the last linearized operation, relinks it and moves on to the
//!   event after its call, to try the next candidate in its place.
//!
//! The history is linearizable when the list empties, or when the first return left belongs to an
//! operation with unknown outcome: returns at +infinity sort last, so every completed operation
//! has been linearized by then, and the unknown operations still pending never took effect. It is
//! not linearizable when a return is reached with nothing left to undo.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use super::{Model, Operation, Verdict};

/// End of the list.
const NIL: usize = usize::MAX;
/// The sentinel node in front of the first event.
const HEAD: usize = 0;

/// The event list. Node 0 is the head sentinel; every other node is the call or the return of
/// one operation.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// The operation each node belongs to.
    op: Vec<usize>,
    /// For a call node, its return node; `NIL` for a return node.
    matching: Vec<usize>,
}

impl Events {
    /// Lays out the events in time order. At equal times a return comes before a call, so an
    /// operation that returned at `t` precedes one called at `t` (see [`super::History`]). The
    /// exception is an operation's own return at the time of its call: it goes after every call
    /// at that time, which makes zero-length operations concurrent with each other.
    fn new<I, O>(ops: &[Operation<I, O>]) -> Self {
        // Order by (unknown outcome, time, class, operation); all keys differ.
        const RETURN_BEFORE_CALLS: u8 = 0;
        const CALL: u8 = 1;
        const RETURN_AFTER_CALLS: u8 = 2;
        let mut order: Vec<(bool, u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            order.push((false, op.call, CALL, index));
            order.push(match op.ret {
                Some(ret) if ret == op.call => (false, ret, RETURN_AFTER_CALLS, index),
                Some(ret) => (false, ret, RETURN_BEFORE_CALLS, index),
                None => (true, 0, RETURN_BEFORE_CALLS, index),
            });
        }
        order.sort_unstable();

        let nodes = order.len() + 1;
        let mut events = Self {
            next: (1..=nodes).map(|n| if n == nodes { NIL } else { n }).collect(),
            prev: (0..nodes).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![NIL; nodes],
            matching: vec![NIL; nodes],
        };
        let mut call_node = vec![NIL; ops.len()];
        for (position, &(_, _, class, index)) in order.iter().enumerate() {
            let node = position + 1;
            events.op[node] = index;
            if class == CALL {
                call_node[index] = node;
            } else {
                assert_ne!(call_node[index], NIL, "an operation's call precedes its return");
                events.matching[call_node[index]] = node;
            }
        }
        events
    }

    fn is_call(&self, node: usize) -> bool {
        self.matching[node] != NIL
    }

    /// Unlinks a call node and its return node.
    fn lift(&mut self, call: usize) {
        let ret = self.matching[call];
        // A call is always followed by its own return, so it never ends the list.
        self.prev[self.next[call]] = self.prev[call];
        self.next[self.prev[call]] = self.next[call];
        self.next[self.prev[ret]] = self.next[ret];
        if self.next[ret] != NIL {
            self.prev[self.next[ret]] = self.prev[ret];
        }
    }

    /// Relinks what the matching [`Events::lift`] unlinked. Lifts and unlifts nest like a stack,
    /// so the neighbours each node remembers are in the list again by the time it returns.
    fn unlift(&mut self, call: usize) {
        let ret = self.matching[call];
        self.next[self.prev[ret]] = ret;
        if self.next[ret] != NIL {
            self.prev[self.next[ret]] = ret;
        }
        self.next[self.prev[call]] = call;
        self.prev[self.next[call]] = call;
    }
}

/// The set of linearized operations.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bitset(Box<[u64]>);

impl Bitset {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }
}

/// FxHash (from rustc): fast, and deterministic, unlike std's randomly keyed `RandomState`. The
/// memo table only answers membership, so the hash never steers the search either way.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunks of 8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        // Mixing in the length keeps "ab" and "ab\0" apart.
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A search over one partition, which can be run in slices so that several partitions can
/// share a budget fairly.
pub(super) struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [Operation<M::Input, M::Output>],
    events: Events,
    linearized: Bitset,
    /// Every (linearized set, state) pair reached so far.
    memo: HashSet<(Bitset, M::State), BuildHasherDefault<FxHasher>>,
    /// The linearized operations' call nodes, each with the state from before it.
    undo: Vec<(usize, M::State)>,
    state: M::State,
    /// The next event to look at.
    node: usize,
    steps: u64,
    /// The deepest dead end so far: (linearized count, operation that could not be linearized).
    deepest: Option<(usize, usize)>,
}

impl<'a, M: Model> Search<'a, M> {
    pub(super) fn new(model: &'a M, ops: &'a [Operation<M::Input, M::Output>]) -> Self {
        let events = Events::new(ops);
        let node = events.next[HEAD];
        Self {
            model,
            ops,
            events,
            linearized: Bitset::new(ops.len()),
            memo: HashSet::default(),
            undo: Vec::new(),
            state: model.init(),
            node,
            steps: 0,
            deepest: None,
        }
    }

    /// Steps taken so far.
    pub(super) fn steps(&self) -> u64 {
        self.steps
    }

    /// For a history found not linearizable: the operation the deepest dead end could not get
    /// past.
    pub(super) fn stuck_op(&self) -> Option<usize> {
        self.deepest.map(|(_, op)| op)
    }

    /// Searches for at most `steps_max` more steps. Returns the verdict once there is one, or
    /// `None` when the slice ran out first; calling again carries on where this call stopped.
    pub(super) fn run(&mut self, steps_max: u64) -> Option<Verdict> {
        let events = &mut self.events;
        let stop = self.steps.saturating_add(steps_max);
        loop {
            let node = self.node;
            if node == NIL {
                // Only reachable when the list is empty: a call is always followed by its return.
                debug_assert_eq!(events.next[HEAD], NIL, "the walk ends only on an empty list");
                return Some(Verdict::Linearizable);
            }
            if self.steps >= stop {
                return None;
            }
            self.steps += 1;

            let index = events.op[node];
            if events.is_call(node) {
                let op = &self.ops[index];
                if let Some(next_state) =
                    self.model.step(&self.state, &op.input, op.output.as_ref())
                {
                    self.linearized.set(index);
                    if self.memo.insert((self.linearized.clone(), next_state.clone())) {
                        self.undo.push((node, std::mem::replace(&mut self.state, next_state)));
                        events.lift(node);
                        self.node = events.next[HEAD];
                        continue;
                    }
                    self.linearized.clear(index);
                }
                self.node = events.next[node];
            } else {
                // Every node before this one is a call, so this is the earliest pending return.
                if self.ops[index].is_unknown() {
                    // Returns at +infinity sort last: every completed operation is linearized.
                    return Some(Verdict::Linearizable);
                }
                if self.deepest.is_none_or(|(depth, _)| self.undo.len() > depth) {
                    self.deepest = Some((self.undo.len(), index));
                }
                let Some((call, previous)) = self.undo.pop() else {
                    // Nothing left to undo: no linearization explains this return.
                    return Some(Verdict::NotLinearizable);
                };
                self.state = previous;
                self.linearized.clear(events.op[call]);
                events.unlift(call);
                self.node = events.next[call];
            }
        }
    }
}
