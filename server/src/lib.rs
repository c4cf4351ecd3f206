//! The deployable simple-cache server: tokio drives a `core` `CacheNode`; clients talk HTTP/JSON;
//! nodes talk Raft over framed TCP connections (`transport`, `raft_http`); state lives in a write-ahead log. The server makes no Raft
//! decisions: it executes the `Ready`s the node hands it (see `node_loop`).

pub mod backup_api;
pub mod config;
pub mod ctl;
pub mod duration;
pub mod error;
pub mod fuzz;
pub mod grpc;
pub mod grpc_seed;
pub mod http_api;
pub mod http_serve;
pub mod metrics;
pub mod node_loop;
pub mod pb;
pub mod peer_auth;
pub mod process;
pub mod raft_http;
pub mod recover;
pub mod reload;
pub mod resp;
pub mod resp_commands;
pub mod resp_server;
pub mod restore;
pub mod service;
pub mod tls;
pub mod transport;
pub mod value;
pub mod version;
pub mod wal_store;
pub mod watch;
