//! Fuzz target: arbitrary bytes as the body of a `FlowCollector.Connect` call, through tonic's
//! codec and the collector service.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::connect_framing(data));
