//! Durable ingest: 8 `Connect` streams pumping updates as fast as receipts return, against an
//! in-memory server and, in the same run, a server with a data directory (`--sync batch`,
//! group commit). Then recovery: a new engine reads the data directory back, and the bench
//! reports updates and retained (key, bucket) rows recovered per second, and the bytes on disk
//! per retained (key, bucket).
//!
//! `cargo bench --bench durability [-- UPDATES]` (UPDATES per configuration and repeat,
//! 200,000 by default). Every configuration runs five times, in memory and durable in turn; the
//! medians are reported. The data directory is a temporary directory (on the file system of
//! `TMPDIR`).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use eddy::config::durability::{DurabilityArgs, SyncMode};
use eddy::durability::recovery::recover;
use eddy::proto::{Action, EndpointType, Flow, FlowKey, FlowUpdate, PolicyTrace, Reporter};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::worker::clock::{Clock, SystemClock};
use support::ingest::send_receipted;
use support::process::arguments;
use support::server::{connect, loopback_listener, workers_per_core};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Updates a client may have sent without a receipt, per stream.
const PIPELINED: usize = 2048;
/// Connect streams at once.
const STREAMS: usize = 8;
/// Runs per configuration.
const REPEATS: usize = 5;

fn update(round: usize, stream: usize, index: usize, now: i64) -> FlowUpdate {
    let key = FlowKey {
        source_name: format!("client-{}", index % 2000),
        source_namespace: format!("ns-{}", index % 20),
        source_type: EndpointType::WorkloadEndpoint as i32,
        dest_name: format!("server-{}", (index / 7) % 500),
        dest_namespace: format!("ns-{}", (index / 3) % 20),
        dest_type: EndpointType::WorkloadEndpoint as i32,
        dest_port: 8000 + (index % 4) as i64,
        proto: "TCP".into(),
        reporter: Reporter::Dst as i32,
        action: Action::Allow as i32,
        policies: Some(PolicyTrace::default()),
        ..Default::default()
    };
    FlowUpdate {
        flow: Some(Flow {
            key: Some(key),
            start_time: now,
            end_time: now,
            source_labels: vec!["app=client".into(), format!("shard={}", index % 10)],
            dest_labels: vec!["app=server".into()],
            packets_in: (round * 100_000_000 + stream * 1_000_000 + index) as i64,
            packets_out: 1,
            bytes_in: 100,
            bytes_out: 100,
            num_connections_started: 1,
            num_connections_completed: 0,
            num_connections_live: 1,
        }),
    }
}

/// Sends `per_stream` updates on each of [`STREAMS`] streams; returns updates per second.
async fn pump(server: SocketAddr, round: usize, per_stream: usize, now: i64) -> f64 {
    let channel = connect(server).await;
    let prepared: Vec<Vec<FlowUpdate>> = (0..STREAMS)
        .map(|stream| {
            (0..per_stream)
                .map(|i| update(round, stream, i, now))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = prepared
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
    (STREAMS * per_stream) as f64 / started.elapsed().as_secs_f64()
}

fn config() -> ServerConfig {
    ServerConfig::new(
        workers_per_core(),
        Retention {
            window: 15,
            closed_buckets: 240,
        },
    )
}

/// A server, recovered from `durability` when it names a data directory.
async fn start(durability: &DurabilityArgs, clock: Arc<SystemClock>) -> (ServerState, SocketAddr) {
    let mut state = build_state(config(), clock).expect("the engine starts");
    state.durability = recover(durability, &state)
        .await
        .expect("the data directory opens");
    let (listener, address) = loopback_listener().await;
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    (state, address)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args = arguments();
    let total: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let per_stream = (total / STREAMS).max(1);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let durable_args = DurabilityArgs {
        data_dir: Some(directory.path().to_path_buf()),
        sync: SyncMode::Batch,
        max_disk_bytes: None,
    };
    let in_memory = DurabilityArgs {
        data_dir: None,
        sync: SyncMode::Batch,
        max_disk_bytes: None,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let clock = Arc::new(SystemClock);
        let (_memory_state, memory) = start(&in_memory, clock.clone()).await;
        let (durable_state, durable) = start(&durable_args, clock.clone()).await;
        let mut pairs = Vec::with_capacity(REPEATS);
        for round in 0..REPEATS {
            let base = pump(memory, round, per_stream, clock.now()).await;
            let rate = pump(durable, round, per_stream, clock.now()).await;
            pairs.push((base, rate));
        }
        println!("| Connect streams | updates | in memory | --data-dir --sync batch | durable / in memory |");
        println!("|---|---|---|---|---|");
        println!(
            "| {STREAMS} | {} | {:.0} k/s | {:.0} k/s | {:.2} |",
            STREAMS * per_stream,
            median(pairs.iter().map(|p| p.0).collect()) / 1e3,
            median(pairs.iter().map(|p| p.1).collect()) / 1e3,
            median(pairs.iter().map(|p| p.1 / p.0).collect()),
        );
        durable_state.engine.sync().await.expect("the engine runs");
        let sizes = durable_state.engine.sizes().await.expect("the engine runs");
        let durability = durable_state
            .durability
            .as_ref()
            .expect("the durable server has a data directory");
        let bytes = durability.bytes_used();
        println!();
        println!(
            "data directory: {bytes} bytes for {} stored updates, {} retained (key, bucket) rows: {:.0} bytes per row",
            STREAMS * per_stream * REPEATS,
            sizes.flow_rows,
            bytes as f64 / sizes.flow_rows.max(1) as f64
        );
        let started = Instant::now();
        let (recovered_state, _) = start(&durable_args, clock.clone()).await;
        let seconds = started.elapsed().as_secs_f64();
        let recovered = recovered_state
            .durability
            .as_ref()
            .expect("the recovered server has a data directory");
        let updates = recovered
            .counters()
            .recovered_updates
            .load(std::sync::atomic::Ordering::Relaxed);
        let rows = recovered_state
            .engine
            .sizes()
            .await
            .expect("the engine runs")
            .flow_rows;
        println!(
            "recovery: {updates} updates into {rows} retained rows in {seconds:.2} s: {:.0} updates/s, {:.0} retained rows/s",
            updates as f64 / seconds,
            rows as f64 / seconds
        );
    });
}
