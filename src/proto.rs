//! The generated types and services of `proto/goldmane.proto` (package `goldmane`), and of
//! `proto/eddy/views/v1/views.proto` in [`views`].
#![allow(missing_docs, clippy::all)]

tonic::include_proto!("goldmane");

/// The generated types and service of `eddy.views.v1`.
pub mod views {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("eddy.views.v1");
}

/// The encoded `FileDescriptorSet` of `goldmane.proto` and `views.proto`, served by gRPC
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/goldmane_descriptor.bin"));
