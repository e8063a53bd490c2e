//! Eddy: a network-flow aggregation server that speaks Calico Goldmane's gRPC API and keeps
//! every view incrementally with differential dataflow.
//!
//! The crate holds everything outside the dataflow: configuration, the gRPC services, the
//! frontend that validates, canonicalises and interns flow updates, and the bridge between
//! tokio and the timely workers. The views themselves live in `eddy-dataflows`.

pub mod admin;
#[cfg(feature = "count-allocations")]
pub mod alloc_count;
pub mod api;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod durability;
pub mod duration;
pub mod emitter;
pub mod health;
pub mod ingest;
pub mod intern;
pub mod logging;
pub mod memory_return;
pub mod metrics;
pub mod proto;
pub mod proto_json;
pub mod retention;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod streams;
pub mod synth;
pub mod tls;
pub mod worker;
