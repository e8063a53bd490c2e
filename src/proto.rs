//! The generated types and services of `proto/goldmane.proto` (package `goldmane`).
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("goldmane");

/// The encoded `FileDescriptorSet` of `goldmane.proto`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/goldmane_descriptor.bin"));
