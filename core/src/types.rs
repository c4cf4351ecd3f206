//! The vocabulary shared by every module: newtypes for terms, indexes, node ids and time.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! u64_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            pub const ZERO: $name = $name(0);
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

u64_newtype!(
    /// A Raft term. Never decreases on a node.
    Term
);
u64_newtype!(
    /// A position in the replicated log; the first entry has index 1, 0 means "before the log".
    LogIndex
);
u64_newtype!(
    /// A cluster member's identity. 0 is never a valid id ("no node").
    NodeId
);

impl LogIndex {
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }
    /// The index before this one; `LogIndex(0).prev()` is 0.
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Term {
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }
}

/// A point in time: milliseconds from an arbitrary origin chosen by the driver.
///
/// Core never reads a clock; every input carries the `Instant` at which it happens, so a test can
/// build any instant it likes and a simulation runs on simulated time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Instant(pub u64);

impl Instant {
    pub fn from_millis(ms: u64) -> Instant {
        Instant(ms)
    }
    pub fn as_millis(self) -> u64 {
        self.0
    }
    pub fn saturating_add_ms(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms))
    }
    /// Milliseconds from `earlier` to `self`, 0 if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
