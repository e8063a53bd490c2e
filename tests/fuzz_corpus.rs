//! Replays the committed fuzz corpora (fuzz/corpus/<target>/) on the stable toolchain through
//! the same harness functions the `cargo fuzz` targets run (fuzz/harness.rs), so every input
//! the fuzzer kept, crash reproducers included, is checked in the normal test run (SPEC §10).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::PathBuf;

/// Every file of `fuzz/corpus/<target>/`, in name order, with its name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("the corpus {} is readable: {error}", directory.display()))
        .map(|entry| {
            let path = entry.expect("a corpus entry is readable").path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("{} is readable: {error}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file of `target`'s corpus; the corpus must not be empty.
fn replay(target: &str, check: fn(&[u8])) {
    let files = corpus(target);
    assert!(files.len() >= 10, "the {target} corpus holds its inputs");
    for (name, bytes) in files {
        if std::panic::catch_unwind(|| check(&bytes)).is_err() {
            panic!("the harness failed on {name}");
        }
    }
}

#[test]
fn flow_update_corpus() {
    replay("flow_update", harness::flow_update);
}

#[test]
fn connect_update_corpus() {
    replay("connect_update", harness::connect_update);
}

#[test]
fn list_request_corpus() {
    replay("list_request", harness::list_request);
}

#[test]
fn filter_hints_request_corpus() {
    replay("filter_hints_request", harness::filter_hints_request);
}

#[test]
fn statistics_request_corpus() {
    replay("statistics_request", harness::statistics_request);
}

#[test]
fn connect_framing_corpus() {
    replay("connect_framing", harness::connect_framing);
}
