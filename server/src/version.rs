//! What this binary is: its version, the commit it was built from, and the versions of the
//! formats it speaks. Served by `GET /version` on the client port, printed by
//! `simple-cache --version`, and exported as `simple_cache_build_info`.
//!
//! Two nodes can form a cluster when their `wire_format` matches (Raft messages between nodes,
//! and the encoding inside WAL records and snapshots, `core::codec`); they talk over the peer
//! protocol when both speak `peer_protocol` (`core::peer_wire`), else over the 0.1 HTTP
//! transport; a data directory can be read when its `wal_format` matches (the WAL's segment and
//! frame layout, `core::wal`).

use std::sync::LazyLock;

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git rev-parse --short HEAD` when the binary was built, or `unknown` (see `build.rs`).
pub const COMMIT: &str = env!("SIMPLE_CACHE_COMMIT");
/// The version byte of every encoded message, WAL record and snapshot.
pub const WIRE_FORMAT: u8 = simple_cache_core::codec::WIRE_VERSION;
/// The version of the connection protocol between nodes (`core::peer_wire`: preamble, hello,
/// frames). A node falls back to the HTTP transport of 0.1 for a peer that does not speak it.
pub const PEER_PROTOCOL: u8 = simple_cache_core::peer_wire::PROTOCOL_VERSION;
/// The version of the WAL's segment and frame layout.
pub const WAL_FORMAT: u16 = simple_cache_core::wal::WAL_FORMAT_VERSION;

/// What `--version` prints after the program name.
pub static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{VERSION}\ncommit: {COMMIT}\nwire_format: {WIRE_FORMAT}\npeer_protocol: {PEER_PROTOCOL}\nwal_format: {WAL_FORMAT}"
    )
});

/// The body of `GET /version`.
pub fn json() -> serde_json::Value {
    serde_json::json!({
        "version": VERSION,
        "commit": COMMIT,
        "wire_format": WIRE_FORMAT,
        "peer_protocol": PEER_PROTOCOL,
        "wal_format": WAL_FORMAT,
    })
}

/// `GET /version`.
pub async fn handler() -> axum::Json<serde_json::Value> {
    axum::Json(json())
}
