//! Deterministic simulation of whole simple-cache clusters.
//!
//! - [`lincheck`]: the linearizability checker for client histories (WGL search with memoization,
//!   per-key partitioning, models for a Jepsen register, a Jepsen key/value store and
//!   simple-cache itself, readers for Jepsen's history formats) and the `lincheck` command.
//! - [`disk`]: the simulated disk (volatile until fsync, torn writes on a crash), recovered with
//!   `core::wal::recover`.
//! - [`checks`]: Raft safety checkers fed by the node drivers.
//! - `harness` (feature `sim`, under `--cfg madsim`): clusters of real `CacheNode`s driven like
//!   the server drives them, on madsim's simulated time, with a faulty network, crashes and
//!   clients recording a history. See SIMULATION.md.

// The scenarios only simulate anything under `--cfg madsim` (set by .cargo/config.toml). A build
// that lost the cfg (an exported RUSTFLAGS replaces it) would run on real time and threads.
#[cfg(all(feature = "sim", not(madsim)))]
compile_error!(
    "feature `sim` needs --cfg madsim (set by .cargo/config.toml; do not export RUSTFLAGS)"
);

pub mod checks;
pub mod disk;
#[cfg(all(feature = "sim", madsim))]
pub mod harness;
pub mod lincheck;
pub mod ttlcheck;
