//! Code the benchmarks share: the counting allocator, measurements, the command line and child
//! processes, a server on the loopback, Connect calls that wait for receipts, and the synthetic
//! cluster. Each bench declares it with `mod support;`.

#![allow(dead_code, reason = "each bench uses a part of the support module")]

pub mod cluster;
pub mod heap;
pub mod ingest;
pub mod measure;
pub mod process;
pub mod server;
