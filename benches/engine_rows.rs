//! Engine benchmark on the realistic workload (no network): ingest rate of records interned
//! before timing, the reads' latency, and heap and resident bytes per retained (key, bucket)
//! over retention cycles.
//!
//! `cargo bench --bench engine_rows -- KEYS WORKERS [CYCLES]` runs one configuration: KEYS
//! realistic keys (`eddy::synth::realistic`) over 4 closed buckets, `REPORTS` updates per
//! (key, bucket), then CYCLES retention cycles (the clock moves one window, the oldest bucket
//! expires, every key is sent into the new bucket). Without arguments it runs 100k and 1M keys
//! with 2 workers, each in a child process. Prints Markdown table rows for BENCHMARKS.md.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::{prepare, Bounds, InputLimits};
use eddy::retention::Retention;
use eddy::synth::realistic::{update, BucketChoice};
use eddy::worker::clock::ManualClock;
use eddy::worker::protocol::IngestBatch;
use eddy::worker::{Engine, EngineConfig};
use eddy_dataflows::filter::{FlowFilter, IdSet};
use eddy_dataflows::model::{Bucket, BucketRange, FlowRecord, StatLevel};
use eddy_dataflows::queries::hints::HintsQuery;
use eddy_dataflows::queries::list::{ListQuery, SortField};
use eddy_dataflows::queries::stats::StatsQuery;
use eddy_dataflows::views::hints::HintField;
use support::heap::{live_heap_bytes, CountingAllocator};
use support::measure::{percentile_ms, resident_bytes};
use support::process::{arguments, run_in_child};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
/// A bucket boundary: the newest closed bucket ends here.
const NOW: i64 = 1_700_000_100 - 1_700_000_100 % WINDOW;
const BUCKETS: i64 = 4;
/// Updates per (key, bucket): as if both ends and a resend reported each flow.
const REPORTS: u64 = 2;
const BATCH: usize = 1024;
/// Concurrent ingest calls, as several Connect streams would make.
const STREAMS: usize = 8;
const RUNS: usize = 30;

/// One prepared record per key, interned once; every update of the key is a copy of it with
/// its bucket and one counter changed, as every send of a key changes one counter.
fn prepare_keys(keys: u64, catalog: &Catalog, retention: &Retention) -> Vec<FlowRecord> {
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention,
        limits: &limits,
        now: NOW,
    };
    (0..keys)
        .map(|key| {
            let update = update(key, 0, 0, WINDOW, BucketChoice::Exactly(NOW - WINDOW));
            prepare(&update, catalog, bounds).expect("a realistic update is prepared")
        })
        .collect()
}

fn batches_for(prepared: &[FlowRecord], buckets: &[Bucket]) -> Vec<Vec<FlowRecord>> {
    let mut batches = Vec::new();
    let mut records = Vec::with_capacity(BATCH);
    for send in 0..REPORTS {
        for bucket in buckets {
            for record in prepared {
                let mut record = *record;
                record.bucket = *bucket;
                record.stats.bytes_out += send as i64;
                records.push(record);
                if records.len() == BATCH {
                    batches.push(std::mem::replace(&mut records, Vec::with_capacity(BATCH)));
                }
            }
        }
    }
    batches.push(records);
    batches
}

/// Ingests `batches` over `STREAMS` concurrent calls; returns updates per second.
async fn ingest(engine: &Engine, batches: Vec<Vec<FlowRecord>>) -> f64 {
    let updates: usize = batches.iter().map(Vec::len).sum();
    let mut lanes: Vec<Vec<Vec<FlowRecord>>> = (0..STREAMS).map(|_| Vec::new()).collect();
    for (index, batch) in batches.into_iter().enumerate() {
        lanes[index % STREAMS].push(batch);
    }
    let started = Instant::now();
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let engine = engine.clone();
            tokio::spawn(async move {
                for records in lane {
                    let batch = IngestBatch {
                        records,
                        ..IngestBatch::default()
                    };
                    engine.ingest(batch).await.expect("engine runs");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("an ingest lane finishes");
    }
    engine.sync().await.expect("engine runs");
    updates as f64 / started.elapsed().as_secs_f64()
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
        limit: Some(100),
        name_ranks: Arc::new(Vec::new()),
    }
}

async fn timed<F, Fut>(mut read: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let answered = read().await;
        assert!(answered > 0, "the read finds rows");
        times.push(started.elapsed());
    }
    times.sort();
    (percentile_ms(&times, 0.5), percentile_ms(&times, 0.99))
}

async fn reads(engine: &Engine, dest_namespace: u32) -> [(f64, f64); 4] {
    let list = timed(|| async {
        let partials = engine.list(list_query(FlowFilter::default())).await;
        partials
            .expect("engine runs")
            .iter()
            .map(|p| p.rows.len())
            .sum()
    })
    .await;
    let filter = FlowFilter {
        dest_namespaces: Some(IdSet::new(vec![dest_namespace])),
        ..FlowFilter::default()
    };
    let filtered = timed(|| async {
        let partials = engine.list(list_query(filter.clone())).await;
        partials
            .expect("engine runs")
            .iter()
            .map(|p| p.rows.len())
            .sum()
    })
    .await;
    let hints = timed(|| async {
        let query = HintsQuery {
            range: list_query(FlowFilter::default()).range,
            field: HintField::DestNamespace,
            filter: FlowFilter::default(),
        };
        let values = engine.hints(query).await.expect("engine runs");
        values.iter().map(Vec::len).sum()
    })
    .await;
    let statistics = timed(|| async {
        let query = StatsQuery {
            range: list_query(FlowFilter::default()).range,
            level: StatLevel::Policy,
            kind: None,
            tiers: None,
            namespaces: None,
            names: None,
            action: None,
            per_bucket: true,
        };
        let rows = engine.stats(query).await.expect("engine runs");
        rows.iter().map(Vec::len).sum()
    })
    .await;
    [list, filtered, hints, statistics]
}

fn run_one(keys: u64, workers: usize, cycles: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let clock = Arc::new(ManualClock::new(NOW));
        let retention = Retention {
            window: WINDOW,
            closed_buckets: BUCKETS,
        };
        let config = EngineConfig {
            workers,
            retention,
            tick_interval: Duration::from_millis(50),
            tick_records: eddy::worker::controller::TICK_RECORDS,
            fault_injection: None,
        };
        let engine = Engine::start(config, clock.clone()).expect("the engine starts");
        engine.sync().await.expect("engine runs");
        let heap_start = live_heap_bytes();
        let resident_start = resident_bytes();
        let catalog = Catalog::new(CatalogLimits::default());
        let prepared = prepare_keys(keys, &catalog, &retention);
        let prepared_bytes = prepared.capacity() * std::mem::size_of::<FlowRecord>();
        let catalog_bytes = live_heap_bytes().saturating_sub(heap_start + prepared_bytes);
        let dest_namespace = catalog
            .symbols
            .lookup("frontend")
            .expect("the workload uses the namespace");
        engine
            .ingest(IngestBatch {
                trace_rules: catalog.take_new_rules(),
                ..IngestBatch::default()
            })
            .await
            .expect("engine runs");
        let first: Vec<Bucket> = (1..=BUCKETS).map(|b| NOW - b * WINDOW).collect();
        let rate = ingest(&engine, batches_for(&prepared, &first)).await;
        let retained = (keys * BUCKETS as u64) as f64;
        let per_row = || {
            let heap = live_heap_bytes().saturating_sub(heap_start + prepared_bytes);
            let resident = resident_bytes().saturating_sub(resident_start);
            (heap as f64 / retained, resident as f64 / retained)
        };
        let (heap, resident) = per_row();
        let [list, filtered, hints, statistics] = reads(&engine, dest_namespace).await;
        println!(
            "| {keys} | {workers} | {:.2} M/s | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {heap:.0} | {:.0} | {resident:.0} |",
            rate / 1e6,
            list.0,
            list.1,
            filtered.0,
            filtered.1,
            hints.0,
            hints.1,
            statistics.0,
            statistics.1,
            catalog_bytes as f64 / retained,
        );
        for cycle in 1..=cycles {
            clock.advance(WINDOW);
            let newest = NOW + (cycle as i64 - 1) * WINDOW;
            let rate = ingest(&engine, batches_for(&prepared, &[newest])).await;
            let (heap, resident) = per_row();
            println!(
                "| {keys} | {workers} | cycle {cycle}: {:.2} M/s | | | | | {heap:.0} | | {resident:.0} |",
                rate / 1e6
            );
        }
    });
}

fn main() {
    let args = arguments();
    let header = || {
        println!("| keys | workers | ingest | List p50 / p99 ms | filtered List p50 / p99 ms | FilterHints p50 / p99 ms | Statistics p50 / p99 ms | heap B per (key, bucket) | of which catalog | resident B per (key, bucket) |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
    };
    match &args[..] {
        [keys, workers, rest @ ..] => run_one(
            keys.parse().expect("KEYS is a number"),
            workers.parse().expect("WORKERS is a number"),
            rest.first()
                .map_or(0, |c| c.parse().expect("CYCLES is a number")),
        ),
        _ => {
            header();
            for keys in [100_000u64, 1_000_000] {
                run_in_child(
                    &[keys.to_string(), "2".to_string(), "3".to_string()],
                    &format!("configuration {keys} keys x 2 workers"),
                );
            }
        }
    }
}
