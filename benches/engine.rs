//! Engine benchmark (no network): ingest rate, List latency and memory per retained
//! (key, bucket), with 1 and 2 workers, side by side in one run.
//!
//! `cargo bench --bench engine` runs every configuration, each in a fresh child process so
//! resident memory is measured per configuration. `cargo bench --bench engine -- KEYS WORKERS`
//! runs one. Figures are printed as a Markdown table row for BENCHMARKS.md.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::retention::Retention;
use eddy::worker::clock::ManualClock;
use eddy::worker::protocol::IngestBatch;
use eddy::worker::{Engine, EngineConfig};
use eddy_dataflows::filter::{FlowFilter, IdSet};
use eddy_dataflows::model::{BucketRange, FlowKey, FlowRecord, Stats};
use eddy_dataflows::queries::list::{ListQuery, SortField};
use support::heap::{live_heap_bytes, CountingAllocator};
use support::measure::{percentile_ms, resident_bytes};
use support::process::{arguments, run_in_child};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;
const BUCKETS: i64 = 4;
/// Updates per (key, bucket): as if three nodes reported each flow.
const REPORTS: i64 = 3;
const BATCH: usize = 1024;

fn record(key: u64, bucket: i64) -> FlowRecord {
    let id = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1 | 1;
    FlowRecord {
        key: FlowKey {
            id,
            source_name: (key % 5000) as u32,
            source_namespace: (key % 10) as u32,
            source_type: 1,
            dest_name: (key % 3000) as u32 + 5000,
            dest_namespace: (key % 10) as u32 + 10,
            dest_type: 1,
            dest_port: 443 + (key % 7) as i64,
            dest_service_name: 0,
            dest_service_namespace: 0,
            dest_service_port_name: 0,
            dest_service_port: 0,
            proto: 1,
            reporter: 1 + (key % 2) as i32,
            action: 1,
            trace: (key % 50) as u32,
        },
        bucket,
        labels: ((key % 100) as u32, (key % 100) as u32),
        stats: Stats {
            records: 1,
            packets_in: 10,
            packets_out: 12,
            bytes_in: 1000,
            bytes_out: 1200,
            connections_started: 1,
            connections_completed: 1,
            connections_live: 0,
        },
    }
}

fn list_query(filter: FlowFilter) -> ListQuery {
    ListQuery {
        range: BucketRange {
            gte: 0,
            lt: i64::MAX,
        },
        window: WINDOW,
        interval: 0,
        filter,
        sort: vec![SortField::Time],
        limit: Some(50),
        name_ranks: Arc::new(Vec::new()),
    }
}

async fn latencies(engine: &Engine, filter: FlowFilter, runs: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let partials = engine
            .list(list_query(filter.clone()))
            .await
            .expect("engine runs");
        assert!(partials.iter().map(|p| p.total).sum::<u64>() > 0);
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn run_one(keys: u64, workers: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let clock = Arc::new(ManualClock::new(NOW));
        let retention = Retention { window: WINDOW, closed_buckets: 240 };
        let config = EngineConfig { workers, retention, tick_interval: Duration::from_millis(50), tick_records: eddy::worker::controller::TICK_RECORDS, fault_injection: None };
        let engine = Engine::start(config, clock).expect("the engine starts");
        engine.sync().await.expect("engine runs");
        let heap_before = live_heap_bytes();
        let base = retention.bucket_of(NOW) - BUCKETS * WINDOW;
        let mut batches = Vec::new();
        for _report in 0..REPORTS {
            for bucket in 0..BUCKETS {
                let mut records = Vec::with_capacity(BATCH);
                for key in 0..keys {
                    records.push(record(key, base + bucket * WINDOW));
                    if records.len() == BATCH {
                        batches.push(std::mem::take(&mut records));
                    }
                }
                batches.push(records);
            }
        }
        let updates: u64 = batches.iter().map(|b| b.len() as u64).sum();
        engine.sync().await.expect("engine runs");
        let before = resident_bytes();
        let started = Instant::now();
        for records in batches {
            engine
                .ingest(IngestBatch { records, ..IngestBatch::default() })
                .await
                .expect("engine runs");
        }
        engine.sync().await.expect("engine runs");
        let elapsed = started.elapsed();
        let unfiltered = latencies(&engine, FlowFilter::default(), 30).await;
        let filtered = latencies(
            &engine,
            FlowFilter { dest_namespaces: Some(IdSet::new(vec![13])), ..Default::default() },
            30,
        )
        .await;
        for _ in 0..20 {
            engine.sync().await.expect("engine runs");
        }
        let retained = keys * BUCKETS as u64;
        let bytes = resident_bytes().saturating_sub(before) as f64 / retained as f64;
        let heap = live_heap_bytes().saturating_sub(heap_before) as f64
            / retained as f64;
        println!(
            "| {keys} | {workers} | {updates} | {:.2} M/s | {:.1} / {:.1} ms | {:.1} / {:.1} ms | {:.0} | {:.0} |",
            updates as f64 / elapsed.as_secs_f64() / 1e6,
            percentile_ms(&unfiltered, 0.5),
            percentile_ms(&unfiltered, 0.99),
            percentile_ms(&filtered, 0.5),
            percentile_ms(&filtered, 0.99),
            heap,
            bytes,
        );
    });
}

fn main() {
    let args = arguments();
    if let [keys, workers] = &args[..] {
        run_one(
            keys.parse().expect("KEYS is a number"),
            workers.parse().expect("WORKERS is a number"),
        );
        return;
    }
    println!("| keys | workers | updates | ingest | List first page p50 / p99 | filtered List p50 / p99 | heap bytes per (key, bucket) | resident bytes per (key, bucket) |");
    println!("|---|---|---|---|---|---|---|---|");
    for keys in [1_000u64, 10_000, 100_000, 1_000_000] {
        for workers in [1usize, 2] {
            run_in_child(
                &[keys.to_string(), workers.to_string()],
                &format!("configuration {keys} keys x {workers} workers"),
            );
        }
    }
}
