//! Compiles `proto/cache.proto` (package `simplecache.v1`) and `proto/pb/*.proto` (the seed's
//! package `pb`) with `protox` (a protobuf compiler in Rust), so building needs no system
//! `protoc`. Generates the tonic servers and clients into OUT_DIR, and writes the encoded
//! `FileDescriptorSet` there for server reflection.
//!
//! The reflection set also carries the well-known types (wrappers, struct, timestamp, ...), so
//! reflection-driven clients such as grpcurl can write and print a `google.protobuf.Any` that
//! holds one of them.

use prost::Message;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=proto");
    let files = ["cache.proto", "pb/cache.proto"];
    let fds = protox::compile(files, ["proto"]).unwrap_or_else(|e| {
        panic!("the .proto files under proto/ do not compile: {e}");
    });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let reflection = protox::compile(
        [
            "cache.proto",
            "pb/cache.proto",
            "google/protobuf/wrappers.proto",
            "google/protobuf/struct.proto",
            "google/protobuf/timestamp.proto",
            "google/protobuf/duration.proto",
            "google/protobuf/empty.proto",
        ],
        ["proto"],
    )
    .expect("the well-known types compile");
    std::fs::write(out.join("simplecache_v1_descriptor.bin"), reflection.encode_to_vec())
        .expect("writing the descriptor set to OUT_DIR");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // No `connect` helper: it needs tonic's transport feature, which the server does not
        // enable; clients build a `Channel` themselves.
        .build_transport(false)
        .compile_fds(fds)
        .expect("generating the gRPC code");
}
