//! Generated protobuf types, the tonic server and client for `proto/cache.proto`
//! (package `simplecache.v1`), built by `build.rs` with protox and tonic-prost-build.

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("simplecache.v1");

/// The seed's API, package `pb` (`proto/pb/*.proto`): its `CacheService` is served beside
/// ours so that clients generated from the seed's .proto files work unchanged.
pub mod seed {
    tonic::include_proto!("pb");
}

/// The encoded `FileDescriptorSet` of `cache.proto`, `pb/*.proto`, its imports and the well-known types, for
/// server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/simplecache_v1_descriptor.bin"));
