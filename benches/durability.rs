//! Durable ingest and recovery on the realistic workload (WORKLOAD.md, `eddy::synth::realistic`).
//!
//! Ingest: 8 pipelined `Connect` streams cycling 20,000 keys, against an in-memory server and,
//! in the same run, a server with a data directory (`--sync batch`, group commit); three
//! pairs, medians, and the ratio. The client shares the process, so the CPU figure is the
//! process's (client and server) per update.
//!
//! Recovery: a durable server takes KEYS keys in each of 4 closed buckets (KEYS × 4 retained
//! (key, bucket) rows), writes their bucket files, and the bench reports the bytes on disk per
//! retained row. Copies of the data directory are then recovered in child processes (so
//! each engine's memory and CPU are its own): from the bucket files alone (the steady state:
//! older buckets come from files), from the files plus the log (a restart within the
//! de-duplication horizon, which re-reads the log's last 6 minutes to refill the
//! de-duplication windows), and from the log alone (the bucket folder removed). Each reports
//! retained rows per second, the server's CPU seconds and minor page faults (fresh pages the
//! kernel zeroed), then each stage's rate (retained rows over the stage's seconds, summed over
//! the loading threads): restoring the catalog from its file, decoding the files, converting
//! their rows into engine records, the part of both the engine waited for, the engine taking
//! the records until it reflects them, and replaying the log; and how many of the files' rows
//! were read by their catalog ids. The files are recovered with the catalog file (their rows
//! read by catalog ids) and without it (by their values, as files of another generation).
//!
//! `cargo bench --bench durability [-- KEYS [UPDATES]]`: KEYS 250,000 by default (1 M
//! retained rows), UPDATES per ingest run 400,000. The data directory is a temporary
//! directory (on the file system of `TMPDIR`).
//!
//! For comparing builds on one data directory: `durability-* fill DIRECTORY KEYS` fills
//! DIRECTORY (which must not exist) as above and stops; `durability-* recover COPY LABEL`
//! recovers COPY (a copy of it, or of some of its `buckets`, `catalog` and `wal` folders:
//! recovery changes the directory) and prints the row above. Its buckets stay inside retention for an hour,
//! and its log inside the de-duplication horizon for 6 minutes.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::config::durability::{DurabilityArgs, SyncMode};
use eddy::durability::recovery::recover;
use eddy::proto::FlowUpdate;
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::synth::realistic::{self, BucketChoice};
use eddy::worker::clock::{Clock, SystemClock};
use support::ingest::send_receipted;
use support::process::{arguments, run_in_child};
use support::server::{connect, loopback_listener, workers_per_core};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Updates a client may have sent without a receipt, per stream (WORKLOAD.md).
const PIPELINED: usize = 1000;
/// Connect streams at once.
const STREAMS: usize = 8;
/// Keys the ingest runs cycle through (WORKLOAD.md).
const INGEST_KEYS: u64 = 20_000;
/// Ingest pairs (in memory, durable).
const REPEATS: usize = 3;
/// The aggregation window.
const WINDOW: i64 = 15;

fn config() -> ServerConfig {
    ServerConfig::new(
        workers_per_core(),
        Retention {
            window: WINDOW,
            closed_buckets: 240,
        },
    )
}

fn durable(directory: &Path) -> DurabilityArgs {
    DurabilityArgs {
        data_dir: Some(directory.to_path_buf()),
        sync: SyncMode::Batch,
        max_disk_bytes: None,
    }
}

/// A server, recovered from `durability` when it names a data directory.
async fn start(durability: &DurabilityArgs) -> (ServerState, SocketAddr) {
    let mut state = build_state(config(), Arc::new(SystemClock)).expect("the engine starts");
    state.durability = recover(durability, &state)
        .await
        .expect("the data directory opens");
    let (listener, address) = loopback_listener().await;
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    (state, address)
}

/// The numeric fields of `/proc/self/stat` after the process's name (the state first).
fn stat_fields() -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    after_name
        .split_whitespace()
        .map(|field| field.parse().unwrap_or(0))
        .collect()
}

/// CPU seconds this process has used (user and system), from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    stat_fields().iter().skip(11).take(2).sum::<u64>() as f64 / 100.0
}

/// Minor page faults this process has taken (each fresh page the kernel zeroed for it),
/// from `/proc/self/stat`.
fn page_faults() -> u64 {
    stat_fields().get(7).copied().unwrap_or(0)
}

/// Sends `streams` (one update list each) as pipelined `Connect` streams; returns updates per
/// second and process CPU microseconds per update.
async fn pump(server: SocketAddr, streams: Vec<Vec<FlowUpdate>>) -> (f64, f64) {
    let channel = connect(server).await;
    let count: usize = streams.iter().map(Vec::len).sum();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|updates| {
            tokio::spawn(send_receipted(
                channel.clone(),
                PIPELINED,
                updates.into_iter(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("a stream finishes");
    }
    let seconds = started.elapsed().as_secs_f64();
    (
        count as f64 / seconds,
        (cpu_seconds() - cpu) * 1e6 / count as f64,
    )
}

/// `per_stream` realistic updates on each stream, cycling [`INGEST_KEYS`] keys, the `round`th
/// time (so every update is distinct).
fn ingest_updates(round: u64, per_stream: usize, now: i64) -> Vec<Vec<FlowUpdate>> {
    let current = now - now.rem_euclid(WINDOW);
    (0..STREAMS as u64)
        .map(|stream| {
            (0..per_stream as u64)
                .map(|i| {
                    let n = i * STREAMS as u64 + stream;
                    let key = n % INGEST_KEYS;
                    let send = round * 1_000_000 + n / INGEST_KEYS;
                    let bucket = BucketChoice::OneOfLastFour { now: current };
                    realistic::update(key, 0, send, WINDOW, bucket)
                })
                .collect()
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Bytes of every file under `directory`.
fn bytes_under(directory: &Path) -> u64 {
    std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| {
                    let path = entry.path();
                    if path.is_dir() {
                        bytes_under(&path)
                    } else {
                        entry.metadata().map_or(0, |metadata| metadata.len())
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Copies the folders `parts` of data directory `from` into `to`.
fn copy_parts(from: &Path, to: &Path, parts: &[&str]) {
    for part in parts {
        let target = to.join(part);
        std::fs::create_dir_all(&target).expect("a folder in the copy");
        for entry in std::fs::read_dir(from.join(part)).expect("the folder reads") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, target.join(name)).expect("a file copies");
        }
    }
}

/// Ingest: in memory against `--data-dir --sync batch`, side by side.
async fn ingest_pairs(total: usize, directory: &Path) {
    let per_stream = (total / STREAMS).max(1);
    let (_memory_state, memory) = start(&DurabilityArgs {
        data_dir: None,
        sync: SyncMode::Batch,
        max_disk_bytes: None,
    })
    .await;
    let (_durable_state, durable_server) = start(&durable(directory)).await;
    let mut pairs = Vec::with_capacity(REPEATS);
    for round in 0..REPEATS as u64 {
        let now = SystemClock.now();
        let base = pump(memory, ingest_updates(2 * round, per_stream, now)).await;
        let rate = pump(
            durable_server,
            ingest_updates(2 * round + 1, per_stream, now),
        )
        .await;
        pairs.push((base, rate));
    }
    println!("| Connect streams | updates per run | in memory | --data-dir --sync batch | durable / in memory | process CPU µs/update, in memory | durable |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {STREAMS} | {} | {:.0} k/s | {:.0} k/s | {:.2} | {:.1} | {:.1} |",
        STREAMS * per_stream,
        median(pairs.iter().map(|p| p.0 .0).collect()) / 1e3,
        median(pairs.iter().map(|p| p.1 .0).collect()) / 1e3,
        median(pairs.iter().map(|p| p.1 .0 / p.0 .0).collect()),
        median(pairs.iter().map(|p| p.0 .1).collect()),
        median(pairs.iter().map(|p| p.1 .1).collect()),
    );
}

/// Fills a durable server with `keys` keys in each of 4 closed buckets, waits for their
/// bucket files, and returns once the directory holds them.
async fn fill(keys: u64, directory: &Path) {
    let (state, server) = start(&durable(directory)).await;
    let now = SystemClock.now();
    let current = now - now.rem_euclid(WINDOW);
    let streams: Vec<Vec<FlowUpdate>> = (0..STREAMS as u64)
        .map(|stream| {
            // Each key's four buckets in turn, so every bucket takes updates until the fill
            // ends and its file, written after, covers the whole log (a bucket filled first
            // could have its file written at an epoch during the fill, covering less, and
            // never again).
            (stream..keys)
                .step_by(STREAMS)
                .flat_map(|key| (0..4).map(move |age| (age, key)))
                .map(|(age, key)| {
                    let bucket = BucketChoice::Exactly(current - (4 - age) * WINDOW);
                    realistic::update(key, 0, age as u64, WINDOW, bucket)
                })
                .collect()
        })
        .collect();
    let (rate, _) = pump(server, streams).await;
    let durability = state
        .durability
        .as_ref()
        .expect("the durable server has a data directory");
    let logged = durability.log_end();
    // The bucket files are written at epochs: look again after each one.
    let mut epochs = state.engine.epochs();
    while durability
        .buckets()
        .covered()
        .values()
        .filter(|at| **at >= logged)
        .count()
        < 4
    {
        epochs
            .changed()
            .await
            .expect("the engine runs until the bench stops it");
    }
    let rows = state
        .engine
        .sizes()
        .await
        .expect("the engine runs")
        .flow_rows;
    let files = bytes_under(&directory.join("buckets"));
    let catalog = bytes_under(&directory.join("catalog"));
    let log = bytes_under(&directory.join("wal"));
    println!();
    println!(
        "filled {rows} retained (key, bucket) rows at {:.0} k updates/s; bucket files {files} bytes: {:.1} bytes per retained row; catalog file {catalog} bytes: {:.1} per retained row; log {log} bytes: {:.1} bytes per logged update (deleted once the files cover it and it is 6 minutes old)",
        rate / 1e3,
        files as f64 / rows.max(1) as f64,
        catalog as f64 / rows.max(1) as f64,
        log as f64 / (keys * 4).max(1) as f64,
    );
}

/// In a child process: recovers the data directory `directory` and prints the figures.
fn recover_child(directory: &Path, label: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let (cpu, faults, started) = (cpu_seconds(), page_faults(), Instant::now());
        let (state, _) = start(&durable(directory)).await;
        let seconds = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        let faults = page_faults() - faults;
        let rows = state
            .engine
            .sizes()
            .await
            .expect("the engine runs")
            .flow_rows;
        let stages = state
            .durability
            .as_ref()
            .expect("the recovered server has a data directory")
            .recovery_stages();
        let rate = |time: Duration| {
            let seconds = time.as_secs_f64();
            if seconds > 0.0 {
                format!("{:.0} k/s ({seconds:.2} s)", rows as f64 / seconds / 1e3)
            } else {
                "-".into()
            }
        };
        println!(
            "| {label} | {rows} | {seconds:.2} s | {:.0} k rows/s | {cpu:.2} s | {faults} | {} | {} | {} | {} | {} | {} | {} |",
            rows as f64 / seconds / 1e3,
            rate(stages.catalog),
            rate(stages.decode),
            rate(stages.convert),
            rate(stages.waited),
            rate(stages.handover + stages.settle),
            rate(stages.log),
            stages.rows_by_ids,
        );
    });
}

fn main() {
    let args = arguments();
    if let (Some("recover"), Some(directory), Some(label)) =
        (args.first().map(String::as_str), args.get(1), args.get(2))
    {
        return recover_child(Path::new(directory), label);
    }
    if let (Some("fill"), Some(directory), Some(keys)) =
        (args.first().map(String::as_str), args.get(1), args.get(2))
    {
        let keys = keys.parse().expect("KEYS is a number");
        let directory = Path::new(directory);
        std::fs::create_dir(directory).expect("DIRECTORY is new");
        let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
        return runtime.block_on(fill(keys, directory));
    }
    let keys: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(250_000);
    let updates: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(400_000);
    let ingest_directory = tempfile::tempdir().expect("a temporary directory");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        ingest_pairs(updates, ingest_directory.path()).await;
        fill(keys, directory.path()).await;
    });
    // The ingest and fill servers stop here, so the recovering children share the machine
    // with no engine but their own.
    drop(runtime);
    println!();
    println!("| recovered from | retained rows | time | rate | server CPU | page faults | restore the catalog | decode files | convert rows | waited for the loaders | engine (hand-over + settle) | log replay | rows by catalog ids |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (label, parts) in [
        ("bucket files and catalog file", &["buckets", "catalog"][..]),
        ("bucket files without the catalog file", &["buckets"][..]),
        (
            "bucket files, catalog file + log (restart within 6 min)",
            &["buckets", "catalog", "wal"][..],
        ),
        ("log alone", &["wal"][..]),
    ] {
        let copy = tempfile::tempdir().expect("a temporary directory");
        copy_parts(directory.path(), copy.path(), parts);
        let path = copy.path().to_string_lossy().into_owned();
        run_in_child(&["recover".into(), path, label.into()], label);
    }
}
