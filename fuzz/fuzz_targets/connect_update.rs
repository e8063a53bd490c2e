//! Fuzz target: one `Connect` message through the borrowed reader and the call's remembering
//! preparation, checked against prost and `ingest::prepare`.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::connect_update(data));
