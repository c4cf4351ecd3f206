//! Integration tests against real `simple-cache` processes on loopback.
//!
//! They live in `server/tests/` (`single_node.rs`, `cluster.rs`, with helpers in
//! `server/tests/common/`), where Cargo provides the path of the freshly built binary as
//! `CARGO_BIN_EXE_simple-cache`; this crate stays as the documented pointer. Run them with
//! `cargo test -p simple-cache-server`. They never call into `core`: they start processes and
//! talk HTTP to them.
