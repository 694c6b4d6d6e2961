//! The `liverseg.v1` gRPC API, generated at build time from
//! `proto/liverseg/v1/liverseg.proto` (the vendored `protoc` is used: none
//! needs to be installed).
//!
//! * [`v1`]: the messages, the server ([`v1::liverseg_server`]) and the
//!   client ([`v1::liverseg_client`]).
//! * [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for server
//!   reflection.

/// Messages, server and client of `liverseg.v1`.
pub mod v1 {
    tonic::include_proto!("liverseg.v1");
}

/// The `google.protobuf.FileDescriptorSet` of `liverseg.v1`, encoded.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("liverseg_descriptor");

/// The full name of the service (`liverseg.v1.Liverseg`).
pub use v1::liverseg_server::SERVICE_NAME;

/// Largest piece of a file sent in one message by the server (1 MiB).
pub const CHUNK_BYTES: usize = 1 << 20;
