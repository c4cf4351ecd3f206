//! Compiles `proto/cache.proto` (package `simplecache.v1`) and `proto/pb/*.proto` (the seed's
//! package `pb`) with `protox` (a protobuf compiler in Rust), so building needs no system
//! `protoc`. Generates the tonic servers and clients into OUT_DIR, and writes the encoded
//! `FileDescriptorSet` there for server reflection.
//!
//! The reflection set also carries the well-known types (wrappers, struct, timestamp, ...), so
//! reflection-driven clients such as grpcurl can write and print a `google.protobuf.Any` that
//! holds one of them.
//!
//! Also sets `SIMPLE_CACHE_COMMIT` for `src/version.rs`: `git rev-parse --short HEAD`, or the
//! variable of that name if the build environment sets it (a build from a tarball), else
//! `unknown`.

use prost::Message;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    commit();
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

/// Sets `SIMPLE_CACHE_COMMIT`, and has cargo run this script again when the commit changes:
/// when HEAD names another branch or commit, or the branch it names moves (its ref file, or
/// `packed-refs` once git packs it). Nothing else about the repository triggers a rebuild.
fn commit() {
    println!("cargo:rerun-if-env-changed=SIMPLE_CACHE_COMMIT");
    if let Ok(c) = std::env::var("SIMPLE_CACHE_COMMIT") {
        println!("cargo:rustc-env=SIMPLE_CACHE_COMMIT={c}");
        return;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
        (out.status.success() && !s.is_empty()).then_some(s)
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    if commit.is_some() {
        let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git(&["rev-parse", "--git-path", &branch]));
        }
        watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        // A path that does not exist would make cargo run this script on every build.
        for path in watched.into_iter().flatten() {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    let commit = commit.unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SIMPLE_CACHE_COMMIT={commit}");
}
