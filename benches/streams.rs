//! Stream fan-out: 100, 1,000 and 10,000 concurrent filtered `Flows.Stream` calls while flows
//! are ingested steadily, against a real server with a 1 s window. Reports the delivery delay
//! after each epoch end (p50 / p99 over every stream's first result of each bucket), the
//! ingest rate with the streams as a ratio of the rate without them (the mean of a phase
//! before opening them and one after closing them, so drift cancels), and the resident memory
//! the streams add.
//!
//! `cargo bench --bench streams [-- SECONDS [STREAMS...]]` (default 6 s of ingest per phase,
//! and 100, 1,000 and 10,000 streams).

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::{
    Action, EndpointType, Filter, Flow, FlowKey, FlowStreamRequest, FlowUpdate, PolicyTrace,
    Reporter, StringMatch,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::streams::StreamLimits;
use eddy::worker::clock::SystemClock;
use parking_lot::Mutex;
use support::measure::resident_bytes;
use support::process::numeric_arguments;
use support::server::{connect, start_server, workers_per_core};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 100;
const CONNECTIONS: usize = 8;

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn update(index: u64, now: i64) -> FlowUpdate {
    let key = FlowKey {
        source_name: format!("client-{}", index % 500),
        source_namespace: format!("ns-{}", index % NAMESPACES as u64),
        source_type: EndpointType::WorkloadEndpoint as i32,
        dest_name: format!("server-{}", index % 300),
        dest_namespace: format!("ns-{}", (index / 3) % NAMESPACES as u64),
        dest_type: EndpointType::WorkloadEndpoint as i32,
        dest_port: 8080,
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
            packets_in: index as i64,
            packets_out: 1,
            bytes_in: 100,
            bytes_out: 100,
            num_connections_started: 1,
            ..Default::default()
        }),
    }
}

/// Ingests on four Connect streams until `stop`; returns updates per second.
async fn ingest_for(channel: Channel, duration: Duration) -> f64 {
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for stream in 0..4u64 {
        let (channel, sent, stop) = (channel.clone(), sent.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = mpsc::channel(1024);
            let mut receipts = FlowCollectorClient::new(channel)
                .connect(ReceiverStream::new(rx))
                .await
                .expect("Connect is accepted")
                .into_inner();
            let reader = tokio::spawn(async move {
                let mut count = 0u64;
                while let Ok(Some(_)) = receipts.message().await {
                    count += 1;
                }
                count
            });
            let mut index = stream << 40;
            while !stop.load(Ordering::Relaxed) {
                index += 1;
                if tx.send(update(index, now_seconds() as i64)).await.is_err() {
                    break;
                }
            }
            drop(tx);
            sent.fetch_add(reader.await.unwrap_or(0), Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    sent.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(address: SocketAddr, streams: usize, seconds: u64) {
    let mut channels: Vec<Channel> = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(connect(address).await);
    }
    let before = ingest_for(channels[0].clone(), Duration::from_secs(seconds)).await;
    let memory_before = resident_bytes();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for index in 0..streams {
        let mut client = FlowsClient::new(channels[index % CONNECTIONS].clone());
        let delays = delays.clone();
        let filter = Filter {
            dest_namespaces: vec![StringMatch {
                value: format!("ns-{}", index % NAMESPACES),
                r#type: 0,
            }],
            ..Default::default()
        };
        let mut stream = client
            .stream(FlowStreamRequest {
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .expect("the stream opens")
            .into_inner();
        handles.push(tokio::spawn(async move {
            let mut last_bucket = 0;
            while let Ok(Some(result)) = stream.message().await {
                let start = result.flow.as_ref().map_or(0, |f| f.start_time);
                if start != last_bucket {
                    last_bucket = start;
                    // Emitted at the end of the epoch after the bucket: start + 2W (W = 1 s).
                    delays.lock().push(now_seconds() - (start + 2) as f64);
                }
            }
        }));
    }
    let memory_streams = resident_bytes().saturating_sub(memory_before);
    let with = ingest_for(channels[0].clone(), Duration::from_secs(seconds)).await;
    for handle in &handles {
        handle.abort();
    }
    // An aborted task has dropped its stream (and so cancelled the call) once it is joined.
    for handle in handles {
        let _ = handle.await;
    }
    let after = ingest_for(channels[0].clone(), Duration::from_secs(seconds)).await;
    let without = (before + after) / 2.0;
    let mut delays = std::mem::take(&mut *delays.lock());
    delays.sort_by(|a, b| a.total_cmp(b));
    println!(
        "| {streams} | {:.0} k/s | {:.0} k/s | {:.2} | {} | {:.0} / {:.0} ms | {:.1} MiB |",
        without / 1e3,
        with / 1e3,
        with / without,
        delays.len(),
        percentile(&delays, 0.5) * 1000.0,
        percentile(&delays, 0.99) * 1000.0,
        memory_streams as f64 / (1 << 20) as f64,
    );
}

fn main() {
    let args = numeric_arguments("SECONDS [STREAMS...]");
    let seconds = args.first().copied().unwrap_or(6);
    let sizes = match args.get(1..) {
        Some(sizes) if !sizes.is_empty() => sizes.to_vec(),
        _ => vec![100, 1_000, 10_000],
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let retention = Retention { window: 1, closed_buckets: 60 };
        let mut config = ServerConfig::new(workers_per_core(), retention);
        config.streams = StreamLimits { max_streams: 20_000, ..StreamLimits::default() };
        let (_state, address) = start_server(config, Arc::new(SystemClock)).await;
        println!("| streams | ingest without | ingest with | ratio | epochs seen | delivery delay p50 / p99 | resident memory of the streams |");
        println!("|---|---|---|---|---|---|---|");
        for streams in sizes {
            run(address, streams as usize, seconds).await;
        }
    });
}
