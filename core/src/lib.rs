//! The heart of simple-cache: a sans-IO Raft node and the replicated cache state machine.
//!
//! Nothing in this crate reads a clock, draws OS entropy, touches a file or socket, or spawns a
//! thread. Time arrives as an argument ([`Instant`]), randomness from a seed the driver provides,
//! and every effect leaves as data in a [`Ready`](raft::Ready) that the driver executes.

#[cfg(test)]
mod arb;
pub mod backup;
pub mod cache;
pub mod clock;
pub mod codec;
pub mod exec;
pub mod message;
pub mod meter;
pub mod node;
pub mod peer_wire;
pub mod snapshot;
pub mod types;
pub mod wal;
pub mod watch;

pub use message::*;
pub use types::{Instant, LogIndex, NodeId, Term};
pub mod config;
pub mod fuzz;
pub mod log;
pub mod progress;
pub mod raft;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use config::{Config, ConfigError};
pub use raft::{Persisted, RaftNode, Ready, ReadyAck, Role};
