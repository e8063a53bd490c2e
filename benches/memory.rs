//! Resident memory per retained (key, bucket) on the realistic workload (WORKLOAD.md), over
//! three retention cycles: Eddy's real `eddy serve` binary in a child process, with a window
//! of WINDOW seconds (15 by default) and a retention of 4 windows. At every bucket boundary
//! the bench loads KEYS keys (250,000 by default) into the bucket that has just closed, so
//! after 4 windows 4 × KEYS rows (1,000,000) are retained, and from then on each boundary
//! drops the oldest bucket as a new one is loaded. After each load the server's resident set
//! is read from `/proc/PID/statm`, and again once settled (every receipted update applied and
//! the resident set no longer falling, see `settled_resident`); a cycle is 4 windows (every retained bucket replaced), and
//! the bench runs the filling cycle plus three more. With `--features count-allocations` the
//! server's live heap (`eddy_heap_live_bytes`) is read too, so allocator slack (resident minus
//! live heap) is told apart from retained data.
//!
//! Before the server starts, the bench measures in its own process (a counting allocator) the
//! heap two owners take for KEYS keys: the catalog, after preparing one update of every key as
//! ingest does, and the flow tables, after applying one record of every key in each of the 4
//! retained buckets (every retained row with its key); the rest of the server's live heap is
//! the other views' arrangements and fixed buffers.
//!
//! `cargo bench --features count-allocations --bench memory [-- KEYS [WINDOW_SECONDS]]`: 16
//! windows (4 minutes at the defaults). Each window's load must finish within the window (about
//! 17 k/s at the defaults; on a busy machine give a wider window).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::{prepare, Bounds, InputLimits};
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::FlowListRequest;
use eddy::retention::Retention;
use eddy::synth::realistic::{update, BucketChoice};
use eddy_dataflows::flow_table::FlowTable;
use support::children::ServerChild;
use support::heap::{live_heap_bytes, CountingAllocator};
use support::ingest::send_spread;
use support::process::numeric_arguments;
use support::server::connect;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const DEFAULT_KEYS: u64 = 250_000;
const DEFAULT_WINDOW: i64 = 15;
/// Closed buckets retained.
const RETAINED: u64 = 4;
/// Retention cycles after the one that fills retention.
const CYCLES: u64 = 3;
const LOAD_STREAMS: usize = 4;
/// How often the settled resident set is read, and how many readings at most.
const SETTLE_POLL: Duration = Duration::from_millis(100);
const SETTLE_READINGS: usize = 30;
const OUTSTANDING: usize = 1_000;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Sleeps until the next multiple of `window` seconds (plus a quarter second, so the server
/// has seen the boundary too); returns it.
/// The server's resident bytes once it has applied every update receipted so far (a List
/// answers only after them, SPEC §9.1) and its resident set has stopped falling (two readings
/// SETTLE_POLL apart within 0.5%, or after SETTLE_READINGS readings): what it keeps for the
/// retained rows once its threads are idle, without the load's transient buffers.
async fn settled_resident(eddy: &ServerChild, flows: &mut FlowsClient<Channel>) -> u64 {
    flows
        .list(FlowListRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("List answers after the load");
    let mut last = eddy.resident_bytes();
    for _ in 0..SETTLE_READINGS {
        tokio::time::sleep(SETTLE_POLL).await;
        let now = eddy.resident_bytes();
        if now.abs_diff(last) * 200 <= last {
            return now;
        }
        last = now;
    }
    last
}

async fn next_boundary(window: i64) -> i64 {
    let now = unix_now();
    let boundary = (now as i64 / window + 1) * window;
    tokio::time::sleep(Duration::from_secs_f64(boundary as f64 - now + 0.25)).await;
    boundary
}

/// Live heap bytes the catalog and the flow table hold for `keys` keys of the realistic
/// workload, measured in this process: the catalog after preparing one update of every key,
/// the flow table after applying every prepared record in each retained bucket.
fn owners(keys: u64, window: i64) -> (usize, usize) {
    let retention = Retention {
        window,
        closed_buckets: RETAINED as i64,
    };
    let limits = InputLimits::default();
    let now = unix_now() as i64;
    let closed = (now / window - 1) * window;
    let bounds = Bounds {
        retention: &retention,
        limits: &limits,
        now,
    };
    let mut records = Vec::with_capacity(keys as usize);
    let before = live_heap_bytes();
    let catalog = Catalog::new(CatalogLimits::default());
    for key in 0..keys {
        let update = update(key, 0, 0, window, BucketChoice::Exactly(closed));
        let record = prepare(&update, &catalog, bounds).expect("a realistic update is prepared");
        records.push(record);
    }
    let catalog_bytes = live_heap_bytes().saturating_sub(before);
    let before = live_heap_bytes();
    let mut table = FlowTable::default();
    for retained in 0..RETAINED as i64 {
        for record in &records {
            let bucket = record.bucket - retained * window;
            table.update(&record.key, bucket, record.labels, &record.stats);
        }
    }
    let table_bytes = live_heap_bytes().saturating_sub(before);
    assert_eq!(table.len(), keys as usize, "every key is distinct");
    assert_eq!(
        table.rows(),
        (keys * RETAINED) as usize,
        "a row per key and bucket"
    );
    drop(catalog);
    (catalog_bytes, table_bytes)
}

fn main() {
    let args = numeric_arguments("[KEYS [WINDOW_SECONDS]]");
    let keys = args.first().copied().unwrap_or(DEFAULT_KEYS);
    let window = args.get(1).map_or(DEFAULT_WINDOW, |&w| w as i64);
    let (catalog_bytes, table_bytes) = owners(keys, window);
    let rows = (keys * RETAINED) as f64;
    println!(
        "In this process, for {keys} keys: catalog {:.1} MB ({:.0} bytes per retained row), \
         flow table {:.1} MB ({:.0} bytes per retained row).",
        catalog_bytes as f64 / 1e6,
        catalog_bytes as f64 / rows,
        table_bytes as f64 / 1e6,
        table_bytes as f64 / rows,
    );
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let eddy = ServerChild::eddy(&[
            "--aggregation-window".into(),
            format!("{window}s"),
            "--retention".into(),
            format!("{}s", window * RETAINED as i64),
        ]);
        let empty = eddy.resident_bytes();
        let empty_heap = eddy.live_heap_bytes();
        let mut loaders = Vec::new();
        for _ in 0..LOAD_STREAMS {
            loaders.push(connect(eddy.address).await);
        }
        let mut flows = FlowsClient::new(connect(eddy.address).await);
        println!(
            "{keys} keys per bucket, {window} s window, {RETAINED} buckets retained; \
             empty server resident {:.1} MB, live heap {}.",
            empty as f64 / 1e6,
            empty_heap.map_or("not counted".into(), |heap| format!("{:.1} MB", heap as f64 / 1e6)),
        );
        println!();
        println!("| window | cycle | retained rows | load | resident | resident bytes per row | growth from empty per row | live heap per row | slack (resident − live heap) per row | resident bytes per row once settled |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let windows = RETAINED * (1 + CYCLES);
        for step in 0..windows {
            let boundary = next_boundary(window).await;
            let closed = boundary - window;
            let started = Instant::now();
            // Each window's send of a key is its own (a different `bytes_out`), as traffic is:
            // a key's rows in different buckets do not share their counters.
            send_spread(&loaders, keys, OUTSTANDING, move |key| {
                update(key, 0, step, window, BucketChoice::Exactly(closed))
            })
            .await;
            let load = started.elapsed().as_secs_f64();
            assert!(
                load < window as f64,
                "loading {keys} keys took {load:.1} s, longer than the {window} s window: \
                 use fewer keys or a wider window"
            );
            let rows = keys * (step + 1).min(RETAINED);
            let resident = eddy.resident_bytes();
            let heap = eddy.live_heap_bytes();
            let per_row = |bytes: Option<u64>| {
                bytes.map_or("–".to_string(), |bytes| format!("{:.0}", bytes as f64 / rows as f64))
            };
            let settled = settled_resident(&eddy, &mut flows).await;
            println!(
                "| {} | {} | {rows} | {load:.1} s ({:.0} k/s) | {:.0} MB | {:.0} | {:.0} | {} | {} | {:.0} |",
                step + 1,
                step / RETAINED,
                keys as f64 / load / 1e3,
                resident as f64 / 1e6,
                resident as f64 / rows as f64,
                resident.saturating_sub(empty) as f64 / rows as f64,
                per_row(heap),
                per_row(heap.map(|heap| resident.saturating_sub(heap))),
                settled as f64 / rows as f64,
            );
        }
    });
}
