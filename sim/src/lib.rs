//! Deterministic simulation of whole simple-cache clusters.
//!
//! What is here so far is the judge: [`lincheck`], a linearizability checker for client
//! histories (WGL search with memoization, per-key partitioning, models for a Jepsen register, a
//! Jepsen key/value store and simple-cache itself, and readers for Jepsen's history formats), and
//! the `lincheck` command that runs it on a file. The madsim harness that will drive clusters
//! through faults and record the histories it judges is still to come.

pub mod lincheck;
