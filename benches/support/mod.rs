//! Code the benchmarks share: the counting allocator, measurements, the command line and child
//! processes, servers in child processes and `/proc` readers, latency histograms, a server on
//! the loopback, Connect calls that wait for receipts, the realistic ingest client and the
//! toy synthetic cluster. Each bench declares it with `mod support;`.

#![allow(dead_code, reason = "each bench uses a part of the support module")]

pub mod baseline;
pub mod children;
pub mod cluster;
pub mod heap;
pub mod ingest;
pub mod latency;
pub mod measure;
pub mod process;
pub mod procfs;
pub mod pump;
pub mod server;
