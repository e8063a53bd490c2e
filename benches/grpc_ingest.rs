//! End-to-end ingest over gRPC: `Connect` streams pumping updates as fast as receipts return,
//! against Eddy and, in the same run, against a transport-only baseline server whose
//! `Connect` only returns receipts. Eddy's rate is reported as a ratio of the baseline's.
//!
//! Every configuration runs five times, the baseline and Eddy in turn, and the medians are
//! reported. Each configuration runs pipelined (2048 updates outstanding per stream) and Felix-style
//! stop-and-wait (one update outstanding per stream, the next sent when its receipt arrives).
//!
//! `cargo bench --bench grpc_ingest [-- UPDATES [pipelined|stop-and-wait]]` (UPDATES per
//! pipelined configuration, 200,000 by default; a stop-and-wait configuration sends a tenth). Client and server share the machine, as they
//! would in a single-host test; both servers are measured the same way, with the allocator of
//! the `eddy` binary.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use eddy::proto::flow_collector_server::{FlowCollector, FlowCollectorServer};
use eddy::proto::{
    Action, EndpointType, Flow, FlowKey, FlowReceipt, FlowUpdate, PolicyTrace, Reporter,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::worker::clock::{Clock, SystemClock};
use futures::Stream;
use support::ingest::send_receipted;
use support::process::arguments;
use support::server::{connect, loopback_listener, start_server, workers_per_core};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Updates a pipelining client may have sent without a receipt.
const PIPELINED: usize = 2048;
/// Felix sends one update and waits for its receipt.
const STOP_AND_WAIT: usize = 1;
/// Each configuration runs this many times, baseline and Eddy in turn; the report gives the
/// medians of the rates and of the per-pair ratios.
const REPEATS: usize = 5;

/// A `Connect` that answers every update with a receipt and does nothing else.
struct ReceiptsOnly;

#[tonic::async_trait]
impl FlowCollector for ReceiptsOnly {
    type ConnectStream = Pin<Box<dyn Stream<Item = Result<FlowReceipt, Status>> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<FlowUpdate>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut inbound = request.into_inner();
        let (receipts, outbound) = mpsc::channel(4096);
        tokio::spawn(async move {
            while let Ok(Some(_update)) = inbound.message().await {
                if receipts.send(Ok(FlowReceipt {})).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

fn update(stream: usize, index: usize, now: i64) -> FlowUpdate {
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
            packets_in: (stream * 1_000_000 + index) as i64,
            packets_out: 1,
            bytes_in: 100,
            bytes_out: 100,
            num_connections_started: 1,
            num_connections_completed: 0,
            num_connections_live: 1,
        }),
    }
}

/// Sends `per_stream` updates on each of `streams` Connect streams, keeping at most
/// `outstanding` without a receipt per stream; returns updates per second.
async fn pump(
    server: SocketAddr,
    streams: usize,
    per_stream: usize,
    outstanding: usize,
    now: i64,
) -> f64 {
    let channel = connect(server).await;
    let prepared: Vec<Vec<FlowUpdate>> = (0..streams)
        .map(|stream| (0..per_stream).map(|i| update(stream, i, now)).collect())
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for updates in prepared {
        tasks.push(tokio::spawn(send_receipted(
            channel.clone(),
            outstanding,
            updates.into_iter(),
        )));
    }
    for task in tasks {
        task.await.expect("a stream finishes");
    }
    (streams * per_stream) as f64 / started.elapsed().as_secs_f64()
}

async fn start_baseline() -> SocketAddr {
    let (listener, address) = loopback_listener().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(FlowCollectorServer::new(ReceiptsOnly))
            .serve_with_incoming(incoming),
    );
    address
}

async fn start_eddy(clock: Arc<SystemClock>) -> SocketAddr {
    let retention = Retention {
        window: 15,
        closed_buckets: 240,
    };
    let (_state, address) =
        start_server(ServerConfig::new(workers_per_core(), retention), clock).await;
    address
}

fn main() {
    let args = arguments();
    let total: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let only = args.get(1).cloned();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let clock = Arc::new(SystemClock);
        let baseline = start_baseline().await;
        let eddy = start_eddy(clock.clone()).await;
        println!("| Connect streams | client | updates | baseline | Eddy | Eddy / baseline |");
        println!("|---|---|---|---|---|---|");
        for (client, outstanding, updates) in [
            ("pipelined", PIPELINED, total),
            ("stop-and-wait", STOP_AND_WAIT, total / 10),
        ] {
            if only.as_deref().is_some_and(|only| only != client) {
                continue;
            }
            for streams in [1usize, 8, 64] {
                let per_stream = (updates / streams).max(1);
                let mut pairs = Vec::with_capacity(REPEATS);
                for _ in 0..REPEATS {
                    let base = pump(baseline, streams, per_stream, outstanding, clock.now()).await;
                    let rate = pump(eddy, streams, per_stream, outstanding, clock.now()).await;
                    pairs.push((base, rate));
                }
                let median = |mut values: Vec<f64>| {
                    values.sort_by(f64::total_cmp);
                    values[values.len() / 2]
                };
                println!(
                    "| {streams} | {client} | {} | {:.0} k/s | {:.0} k/s | {:.2} |",
                    streams * per_stream,
                    median(pairs.iter().map(|p| p.0).collect()) / 1e3,
                    median(pairs.iter().map(|p| p.1).collect()) / 1e3,
                    median(pairs.iter().map(|p| p.1 / p.0).collect()),
                );
            }
        }
    });
}
