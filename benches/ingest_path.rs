//! The ingest frontend alone, on the realistic workload (WORKLOAD.md), no network and no
//! engine: per update, decode, validate, canonicalise, intern, fingerprint and de-duplicate,
//! by the path `Connect` takes (read in place, records remembered per call) and, side by side in
//! the same run, by decoding with prost and preparing (the path before it, which data-directory
//! recovery still takes). Reports the thread's CPU nanoseconds (from
//! `/proc/thread-self/schedstat`, so a busy machine slows the figures less than wall time
//! would) and heap allocations per update, for the first pass over the keys (every value new to the call and
//! the catalog) and the passes after it (the steady state).
//!
//! `cargo bench --bench ingest_path` runs 20,000 keys for 5 passes;
//! `cargo bench --bench ingest_path -- KEYS PASSES` sets both. Figures are printed as Markdown
//! table rows for BENCHMARKS.md.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]
#![allow(unsafe_code, reason = "a counting global allocator counts allocations")]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::connection::{ConnectionIngest, Refused};
use eddy::ingest::dedup::{fingerprint, DedupScope, Deduplicator};
use eddy::ingest::{prepare, Bounds, InputLimits};
use eddy::proto::FlowUpdate;
use eddy::retention::Retention;
use eddy::synth::realistic::{update, BucketChoice};
use eddy_dataflows::model::FlowRecord;
use mimalloc::MiMalloc;
use prost::Message;

/// Counts allocations (and reallocations); allocates with the `eddy` binary's allocator.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to mimalloc unchanged and only adds a counter.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_100;
/// Updates checked for duplicates together, as a `Connect` batch is.
const BATCH: usize = 1024;

/// One way of turning an encoded update into a record and its fingerprint.
trait IngestPath {
    fn name(&self) -> &'static str;
    fn prepare(&mut self, encoded: &[u8], bounds: Bounds<'_>) -> Option<(FlowRecord, u64)>;
}

/// Decode with prost, then `ingest::prepare`.
struct ProstThenPrepare {
    catalog: Catalog,
}

impl IngestPath for ProstThenPrepare {
    fn name(&self) -> &'static str {
        "prost decode + prepare (before)"
    }

    fn prepare(&mut self, encoded: &[u8], bounds: Bounds<'_>) -> Option<(FlowRecord, u64)> {
        let update = FlowUpdate::decode(encoded).ok()?;
        let record = prepare(&update, &self.catalog, bounds).ok()?;
        let flow = update.flow.as_ref()?;
        Some((record, fingerprint(&record, flow.start_time, flow.end_time)))
    }
}

/// Read in place, records remembered for the call: what `Connect` does.
struct ReadInPlace {
    catalog: Catalog,
    call: ConnectionIngest,
}

impl IngestPath for ReadInPlace {
    fn name(&self) -> &'static str {
        "read in place + remembered (Connect)"
    }

    fn prepare(&mut self, encoded: &[u8], bounds: Bounds<'_>) -> Option<(FlowRecord, u64)> {
        let prepared: Result<_, Refused> = self.call.prepare(encoded, &self.catalog, bounds);
        let prepared = prepared.ok()?;
        let fingerprint = fingerprint(&prepared.record, prepared.start_time, prepared.end_time);
        Some((prepared.record, fingerprint))
    }
}

/// Nanoseconds and allocations per update over `passes`, and the records kept.
struct Measured {
    nanos_per_update: f64,
    allocations_per_update: f64,
    kept: usize,
}

/// Nanoseconds this thread has run on a CPU (Linux), or since `started` where that is unknown.
fn cpu_nanos(started: Instant) -> u128 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| started.elapsed().as_nanos())
}

fn run(path: &mut dyn IngestPath, passes: &[Vec<Vec<u8>>], bounds: Bounds<'_>) -> Measured {
    let dedup = Deduplicator::new(DedupScope::Connection, 4_000_000);
    let window = dedup.for_connection(None, NOW);
    let mut prepared = Vec::with_capacity(BATCH);
    let mut kept = 0;
    let mut updates = 0;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let clock = Instant::now();
    let started = cpu_nanos(clock);
    for pass in passes {
        for batch in pass.chunks(BATCH) {
            prepared.clear();
            prepared.extend(
                batch
                    .iter()
                    .filter_map(|encoded| path.prepare(encoded, bounds)),
            );
            dedup.remove_duplicates(&window, &mut prepared, NOW);
            kept += prepared.len();
            updates += batch.len();
        }
    }
    let elapsed = cpu_nanos(clock) - started;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    Measured {
        nanos_per_update: elapsed as f64 / updates as f64,
        allocations_per_update: allocations as f64 / updates as f64,
        kept,
    }
}

fn main() {
    let arguments: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|argument| argument.parse().ok())
        .collect();
    let keys = arguments.first().copied().unwrap_or(20_000);
    let passes = arguments.get(1).copied().unwrap_or(5).max(2);
    let encoded: Vec<Vec<Vec<u8>>> = (0..passes)
        .map(|send| {
            (0..keys)
                .map(|key| {
                    let bucket = BucketChoice::OneOfLastFour { now: NOW };
                    update(key, 0, send, WINDOW, bucket).encode_to_vec()
                })
                .collect()
        })
        .collect();
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 4,
    };
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention: &retention,
        limits: &limits,
        now: NOW,
    };
    println!("ingest frontend, {keys} realistic keys, {passes} passes, one thread");
    println!();
    println!("| path | first pass CPU ns/update | first pass allocations/update | steady CPU ns/update | steady allocations/update |");
    println!("|---|---|---|---|---|");
    let mut paths: [Box<dyn IngestPath>; 2] = [
        Box::new(ProstThenPrepare {
            catalog: Catalog::new(CatalogLimits::default()),
        }),
        Box::new(ReadInPlace {
            catalog: Catalog::new(CatalogLimits::default()),
            call: ConnectionIngest::new(),
        }),
    ];
    for path in &mut paths {
        let first = run(path.as_mut(), &encoded[..1], bounds);
        let steady = run(path.as_mut(), &encoded[1..], bounds);
        assert_eq!(
            first.kept + steady.kept,
            (keys * passes) as usize,
            "every realistic update is distinct and kept"
        );
        println!(
            "| {} | {:.0} | {:.2} | {:.0} | {:.3} |",
            path.name(),
            first.nanos_per_update,
            first.allocations_per_update,
            steady.nanos_per_update,
            steady.allocations_per_update,
        );
    }
}
