//! The engine alone on the realistic workload (WORKLOAD.md), no network: KEYS keys' realistic
//! updates are turned into engine records through the real ingest path (`ingest::prepare`:
//! validation, canonical trace, interning) before timing, each key in each of 4 closed
//! buckets; then only the engine is timed, from the first batch (1,024 records) handed over
//! until every record is in the views, with up to 8 batches handed over at once (as 8 `Connect`
//! calls would). Reports the rate, the process's CPU time per update over the timed interval
//! (workers and controller; the figure a busy machine changes least) and the live heap (a
//! counting allocator) per retained (key, bucket), catalog included.
//!
//! Two pacings: ticks as a serving engine closes them (the configured `--tick-records`, which
//! bounds how much ingest is ahead of a query), and as recovery's bulk load does
//! (`Engine::bulk_load`: larger ticks, no query waiting).
//!
//! `cargo bench --bench engine` runs 100k and 1M keys with 1 and 2 workers and both pacings,
//! each in a fresh child process. `cargo bench --bench engine -- KEYS WORKERS [serving|bulk]`
//! runs one (serving by default).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;
use std::time::Instant;

use eddy::catalog::DEFAULT_TABLE_BYTES;
use eddy::ingest::prepare;
use eddy::intern::TableLimit;
use eddy::retention::Retention;
use eddy::server::{build_state, ServerConfig};
use eddy::synth::realistic::{update, BucketChoice};
use eddy::worker::clock::ManualClock;
use eddy::worker::protocol::IngestBatch;
use futures::stream::{self, StreamExt, TryStreamExt};
use support::heap::{live_heap_bytes, CountingAllocator};
use support::process::{arguments, run_in_child};
use support::procfs::cpu_seconds;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
/// A bucket boundary.
const NOW: i64 = 1_700_000_100;
const BUCKETS: i64 = 4;
const BATCH: usize = 1024;
/// Batches handed to the engine at once, as concurrent `Connect` calls would.
const IN_FLIGHT: usize = 8;

/// How the engine closes ticks during the timed interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TickPacing {
    /// The configured tick size, as while calls are answered.
    Serving,
    /// Recovery's larger ticks (`Engine::bulk_load`).
    Bulk,
}

impl TickPacing {
    fn name(self) -> &'static str {
        match self {
            TickPacing::Serving => "serving",
            TickPacing::Bulk => "bulk",
        }
    }
}

fn run_one(keys: u64, workers: usize, pacing: TickPacing) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let clock = Arc::new(ManualClock::new(NOW));
        let retention = Retention {
            window: WINDOW,
            closed_buckets: 240,
        };
        let mut config = ServerConfig::new(workers, retention);
        // Every key has label sets of its own: 1M keys need room for 2M sets (the default
        // table holds 1M).
        config.catalog.label_sets = TableLimit {
            entries: (4 * keys as usize).max(1_000_000),
            bytes: 4 * DEFAULT_TABLE_BYTES,
        };
        let state = build_state(config, clock).expect("the engine starts");
        state.engine.sync().await.expect("the engine runs");
        let heap_before = live_heap_bytes();
        let prepared = Instant::now();
        let mut records = Vec::with_capacity(keys as usize * BUCKETS as usize);
        for key in 0..keys {
            let realistic = update(key, 0, 0, WINDOW, BucketChoice::Exactly(NOW - WINDOW));
            let record = prepare(&realistic, &state.catalog, state.bounds(NOW))
                .expect("a realistic update is accepted");
            for bucket in 2..=BUCKETS {
                let mut other = record;
                other.bucket = retention.bucket_of(NOW - bucket * WINDOW);
                // Another send of the key, as `update` makes it: its own `bytes_out`, so a
                // key's rows in different buckets do not share their counters.
                other.stats.bytes_out += bucket;
                records.push(other);
            }
            records.push(record);
        }
        let mut trace_rules = state.catalog.take_new_rules();
        let mut batches = Vec::with_capacity(records.len() / BATCH + 1);
        while !records.is_empty() {
            let rest = records.split_off(records.len().saturating_sub(BATCH));
            batches.push(IngestBatch {
                records: rest,
                trace_rules: std::mem::take(&mut trace_rules),
                retired_rules: Vec::new(),
            });
        }
        let updates: u64 = batches.iter().map(|b| b.records.len() as u64).sum();
        let preparing = prepared.elapsed().as_secs_f64();
        let gate = state.catalog.gate.read().await;
        let handover = state.catalog.handover.lock().await;
        let bulk = (pacing == TickPacing::Bulk).then(|| state.engine.bulk_load());
        let cpu_before = cpu_seconds(std::process::id());
        let started = Instant::now();
        stream::iter(batches.into_iter().map(|batch| state.engine.ingest(batch)))
            .buffer_unordered(IN_FLIGHT)
            .try_collect::<()>()
            .await
            .expect("the engine runs");
        state.engine.sync().await.expect("the engine runs");
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(std::process::id()) - cpu_before;
        drop(bulk);
        drop(handover);
        drop(gate);
        for _ in 0..20 {
            state.engine.sync().await.expect("the engine runs");
        }
        let retained = keys * BUCKETS as u64;
        let heap = live_heap_bytes().saturating_sub(heap_before) as f64 / retained as f64;
        println!(
            "| {keys} | {workers} | {} | {updates} | {:.1} s | {:.2} M/s | {:.2} | {heap:.0} |",
            pacing.name(),
            preparing,
            updates as f64 / elapsed / 1e6,
            cpu * 1e6 / updates as f64,
        );
    });
}

fn main() {
    let usage = "[KEYS WORKERS [serving|bulk]]";
    let args = arguments();
    let number = |text: &String| {
        text.parse::<u64>()
            .unwrap_or_else(|_| panic!("KEYS and WORKERS are numbers: {usage}"))
    };
    let pacing = |text: Option<&String>| match text.map(String::as_str) {
        None | Some("serving") => TickPacing::Serving,
        Some("bulk") => TickPacing::Bulk,
        Some(other) => panic!("unknown pacing `{other}`: {usage}"),
    };
    if let [keys, workers, rest @ ..] = &args[..] {
        run_one(number(keys), number(workers) as usize, pacing(rest.first()));
        return;
    }
    println!("| keys | workers | ticks | updates (keys x 4 buckets) | preparing (untimed) | engine ingest | CPU µs per update | heap bytes per (key, bucket) |");
    println!("|---|---|---|---|---|---|---|---|");
    for keys in [100_000u64, 1_000_000] {
        for workers in [1usize, 2] {
            for pacing in [TickPacing::Serving, TickPacing::Bulk] {
                run_in_child(
                    &[keys.to_string(), workers.to_string(), pacing.name().into()],
                    &format!("configuration {keys} keys x {workers} workers, {pacing:?} ticks"),
                );
            }
        }
    }
}
