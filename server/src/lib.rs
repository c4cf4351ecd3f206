//! The deployable simple-cache server.
//!
//! Placeholder: the HTTP API, Raft transport, write-ahead log and metrics arrive with the server
//! issue. Until then this crate only links the core so the workspace builds end to end.
