//! Fuzz target: `Flows.FilterHints` request bytes through the real service.
#![no_main]

#[allow(dead_code)]
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::filter_hints_request(data));
