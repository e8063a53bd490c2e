//! Resident memory per retained (key, bucket) on the realistic workload (WORKLOAD.md), over
//! three retention cycles: Eddy's real `eddy serve` binary in a child process, with a window
//! of WINDOW seconds (15 by default) and a retention of 4 windows. At every bucket boundary
//! the bench loads KEYS keys (250,000 by default) into the bucket that has just closed, so
//! after 4 windows 4 × KEYS rows (1,000,000) are retained, and from then on each boundary
//! drops the oldest bucket as a new one is loaded. After each load the server's resident set
//! is read from `/proc/PID/statm`; a cycle is 4 windows (every retained bucket replaced), and
//! the bench runs the filling cycle plus three more.
//!
//! `cargo bench --bench memory [-- KEYS [WINDOW_SECONDS]]`: about 16 windows (4 minutes at
//! the defaults). Each window's load must finish within the window (about 17 k/s at the
//! defaults).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::synth::realistic::{update, BucketChoice};
use support::children::ServerChild;
use support::ingest::send_spread;
use support::process::numeric_arguments;
use support::server::connect;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_KEYS: u64 = 250_000;
const DEFAULT_WINDOW: i64 = 15;
/// Closed buckets retained.
const RETAINED: u64 = 4;
/// Retention cycles after the one that fills retention.
const CYCLES: u64 = 3;
const LOAD_STREAMS: usize = 4;
const OUTSTANDING: usize = 1_000;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Sleeps until the next multiple of `window` seconds (plus a quarter second, so the server
/// has seen the boundary too); returns it.
async fn next_boundary(window: i64) -> i64 {
    let now = unix_now();
    let boundary = (now as i64 / window + 1) * window;
    tokio::time::sleep(Duration::from_secs_f64(boundary as f64 - now + 0.25)).await;
    boundary
}

fn main() {
    let args = numeric_arguments("[KEYS [WINDOW_SECONDS]]");
    let keys = args.first().copied().unwrap_or(DEFAULT_KEYS);
    let window = args.get(1).map_or(DEFAULT_WINDOW, |&w| w as i64);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let eddy = ServerChild::eddy(&[
            "--aggregation-window".into(),
            format!("{window}s"),
            "--retention".into(),
            format!("{}s", window * RETAINED as i64),
        ]);
        let empty = eddy.resident_bytes();
        let mut loaders = Vec::new();
        for _ in 0..LOAD_STREAMS {
            loaders.push(connect(eddy.address).await);
        }
        println!(
            "{keys} keys per bucket, {window} s window, {RETAINED} buckets retained; \
             empty server resident {:.1} MB.",
            empty as f64 / 1e6
        );
        println!();
        println!("| window | cycle | retained rows | load | resident | resident bytes per row | growth from empty per row |");
        println!("|---|---|---|---|---|---|---|");
        let windows = RETAINED * (1 + CYCLES);
        for step in 0..windows {
            let boundary = next_boundary(window).await;
            let closed = boundary - window;
            let started = Instant::now();
            send_spread(&loaders, keys, OUTSTANDING, move |key| {
                update(key, 0, 0, window, BucketChoice::Exactly(closed))
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
            println!(
                "| {} | {} | {rows} | {load:.1} s ({:.0} k/s) | {:.0} MB | {:.0} | {:.0} |",
                step + 1,
                step / RETAINED,
                keys as f64 / load / 1e3,
                resident as f64 / 1e6,
                resident as f64 / rows as f64,
                resident.saturating_sub(empty) as f64 / rows as f64,
            );
        }
    });
}
