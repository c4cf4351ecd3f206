//! Deterministic simulation of whole simple-cache clusters.
//!
//! Placeholder: the madsim harness, fault injection and the linearizability checker arrive with
//! the simulation issue. Nothing here pretends to simulate anything yet.
