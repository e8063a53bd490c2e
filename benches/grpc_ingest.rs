//! End-to-end ingest over gRPC on the realistic workload (WORKLOAD.md): 20,000 keys cycled on
//! 1, 8 and 64 Connect streams over one HTTP/2 connection, pipelined (up to 1,000 updates
//! without a receipt per stream) and stop-and-wait (one, as Felix sends), against Eddy's real
//! `eddy serve` binary and, alternating in the same run, the transport-only baseline (a child
//! process that decodes each update into the generated message and receipts it, nothing else).
//!
//! Each run warms up for 2 s, then measures for SECONDS (10 by default): the rate of receipts,
//! each server's process CPU per update (from `/proc/PID/stat`), its allocations per update
//! (Eddy's from `/metrics` when built with `--features count-allocations`), and the receipt
//! latency p50 / p99. Both servers run as child processes; the client shares the cores.
//!
//! `cargo bench --features count-allocations --bench grpc_ingest [-- SECONDS [pipelined|stop-and-wait [STREAMS]]]`

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eddy::cli::flowgen::realistic::{key_updates, last_four_buckets, KeyUpdate};
use support::baseline::{serve_as_child, BASELINE_ARGUMENT};
use support::children::ServerChild;
use support::heap::CountingAllocator;
use support::latency::Latencies;
use support::process::arguments;
use support::pump::Pump;
use support::server::connect;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Keys the workload cycles through.
const KEYS: u64 = 20_000;
/// Updates a pipelining stream may have sent without a receipt.
const PIPELINED: usize = 1_000;
/// Felix sends one update and waits for its receipt.
const STOP_AND_WAIT: usize = 1;
const WARM_UP: Duration = Duration::from_secs(2);
const DEFAULT_SECONDS: u64 = 10;

/// What one measured interval against one server gave.
struct Measured {
    rate: f64,
    cpu_us_per_update: f64,
    allocations_per_update: Option<f64>,
    latencies: Latencies,
}

/// Runs the workload against `server` for the warm-up and `measured`, and reads the
/// server's CPU time and allocations over the measured interval.
async fn measure(
    server: &mut ServerChild,
    streams: usize,
    outstanding: usize,
    keys: &Arc<Vec<KeyUpdate>>,
    measured: Duration,
) -> Measured {
    let channel = connect(server.address).await;
    let pump = Pump::start(&channel, streams, outstanding, keys);
    tokio::time::sleep(WARM_UP).await;
    let (cpu, allocations) = (server.cpu_seconds(), server.allocations());
    let receipts = pump.receipts();
    let started = std::time::Instant::now();
    pump.measure(true);
    tokio::time::sleep(measured).await;
    pump.measure(false);
    let updates = pump.receipts() - receipts;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu_seconds() - cpu;
    let allocations = server
        .allocations()
        .zip(allocations)
        .map(|(after, before)| (after - before) as f64 / updates.max(1) as f64);
    let latencies = pump.stop().await;
    Measured {
        rate: updates as f64 / elapsed,
        cpu_us_per_update: cpu * 1e6 / updates.max(1) as f64,
        allocations_per_update: allocations,
        latencies,
    }
}

fn allocations(value: Option<f64>) -> String {
    value.map_or("—".into(), |value| format!("{value:.1}"))
}

fn main() {
    let args = arguments();
    if args.first().map(String::as_str) == Some(BASELINE_ARGUMENT) {
        serve_as_child();
        return;
    }
    let seconds = args
        .first()
        .map(|a| a.parse().expect("SECONDS is a number"))
        .unwrap_or(DEFAULT_SECONDS);
    let only_mode = args.get(1).cloned();
    let only_streams: Option<usize> = args.get(2).map(|a| a.parse().expect("STREAMS is a number"));
    let measured = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs() as i64;
        let keys = key_updates(KEYS, last_four_buckets(now));
        let mut baseline = ServerChild::baseline();
        let mut eddy = ServerChild::eddy(&[]);
        println!("{KEYS} keys cycled, {seconds} s measured after {} s of warm-up, one HTTP/2 connection.", WARM_UP.as_secs());
        println!();
        println!("| Connect streams | client | baseline | Eddy | Eddy / baseline | server CPU µs per update, baseline / Eddy | allocations per update, baseline / Eddy | receipt latency p50 / p99, baseline | receipt latency p50 / p99, Eddy |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for (mode, outstanding) in [("pipelined", PIPELINED), ("stop-and-wait", STOP_AND_WAIT)] {
            if only_mode.as_deref().is_some_and(|only| only != mode) {
                continue;
            }
            for streams in [1usize, 8, 64] {
                if only_streams.is_some_and(|only| only != streams) {
                    continue;
                }
                let base = measure(&mut baseline, streams, outstanding, &keys, measured).await;
                let ours = measure(&mut eddy, streams, outstanding, &keys, measured).await;
                println!(
                    "| {streams} | {mode} | {:.0} k/s | {:.0} k/s | {:.2} | {:.2} / {:.2} | {} / {} | {} | {} |",
                    base.rate / 1e3,
                    ours.rate / 1e3,
                    ours.rate / base.rate,
                    base.cpu_us_per_update,
                    ours.cpu_us_per_update,
                    allocations(base.allocations_per_update),
                    allocations(ours.allocations_per_update),
                    base.latencies.p50_p99(),
                    ours.latencies.p50_p99(),
                );
            }
        }
    });
}
