//! Live streams on the realistic workload's live-streams shape (WORKLOAD.md): STREAMS
//! `Flows.Stream` calls over 100 HTTP/2 connections, each filtered to one of the 16
//! destination namespaces (round robin), a WINDOW-second window, while four pipelined Connect
//! calls ingest realistic updates of KEYS keys into the current bucket as fast as receipts
//! return. The server is the real `eddy serve` binary in a child process, so its CPU time and
//! memory are its own (read from `/proc/<pid>`).
//!
//! For each KEYS, two fresh servers: one ingests alone for the length of the measured run (the
//! baseline: ingest rate, CPU per update), the other first opens the streams (resident memory
//! per idle stream), then ingests with them for 2 + 4 windows. Reported: delivery delay
//! (arrival − (end_time + window), every result) p50 / p99 / max, results delivered per
//! second while ingesting, the server CPU per delivered result (measured over the two windows
//! after ingest stops, whose epochs still emit the last two buckets: CPU that is the streams'
//! own), resident memory per stream idle and busy (high-water), the ingest rate with streams
//! over the baseline's, and the streams the server ended as too slow.
//!
//! `cargo bench --bench streams [-- WINDOW [STREAMS [KEYS...]]]` (default 15 s, 10,000
//! streams, 2,000 and 20,000 keys). Quick: `cargo bench --bench streams -- 2 1000 500`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::proto::{Filter, FlowStreamRequest, StringMatch};
use eddy::synth::realistic::{self, BucketChoice, NAMESPACES};
use support::process::numeric_arguments;
use support::server::connect;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;
use tonic_prost::ProstCodec;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// HTTP/2 connections the streams share.
const CONNECTIONS: usize = 100;
/// Connect calls that ingest, on one connection, each with this many updates unreceipted.
const INGEST_CALLS: u64 = 4;
const OUTSTANDING: usize = 1000;
/// Windows measured after the two it takes the first bucket to be emitted.
const MEASURED_WINDOWS: u64 = 4;
/// Delay histogram: 1 ms bins up to ten minutes.
const BINS: usize = 600_000;

/// What the bench reads of a `FlowResult`: its flow's end time; the rest is skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct ResultTime {
    #[prost(message, optional, tag = "2")]
    flow: Option<FlowTime>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FlowTime {
    #[prost(int64, tag = "3")]
    end_time: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `eddy serve` in a child process.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn start(window: u64, streams: usize) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(["--health-address", "127.0.0.1", "--health-port", "0"])
            .args(["--aggregation-window", &format!("{window}s")])
            .args(["--max-streams", &(streams + 100).to_string()])
            .env_remove("PORT")
            .env_remove("PUSH_URL")
            .env_remove("PROMETHEUS_PORT")
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the eddy binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            let line = lines
                .next()
                .expect("the server logs that it serves")
                .expect("a log line");
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if value["message"] == "eddy is serving the Goldmane API" {
                break value["address"]
                    .as_str()
                    .expect("the serving line names its address")
                    .parse()
                    .expect("a socket address");
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        Server { child, address }
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name.
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
            .sum();
        ticks as f64 / 100.0
    }

    /// (resident, resident high-water) in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ingests realistic updates of `keys` keys into the current bucket on four pipelined Connect
/// calls for `duration`; returns the updates receipted.
async fn ingest(channel: Channel, keys: u64, window: i64, duration: Duration) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let mut calls = Vec::new();
    for call in 0..INGEST_CALLS {
        let (sender, mut receipts) = support::ingest::open(channel.clone(), OUTSTANDING).await;
        let stop = stop.clone();
        let reader = tokio::spawn(async move {
            let mut count = 0u64;
            while receipts.next().await.is_some() {
                count += 1;
            }
            count
        });
        calls.push(tokio::spawn(async move {
            let mut index = call;
            while !stop.load(Ordering::Relaxed) {
                let bucket = (now_ms() / 1000).div_euclid(window) * window;
                let key = index % keys;
                let send = index / keys;
                let update = realistic::update(key, 0, send, window, BucketChoice::Exactly(bucket));
                if !sender.send(update).await {
                    break;
                }
                index += INGEST_CALLS;
            }
            drop(sender);
            reader.await.unwrap_or(0)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for call in calls {
        total += call.await.unwrap_or(0);
    }
    total
}

/// What the streams saw.
struct Deliveries {
    /// Results per delay in ms (the last bin holds everything later).
    delays: Vec<AtomicU64>,
    opened: AtomicUsize,
    too_slow: AtomicUsize,
    other_ends: AtomicUsize,
    /// Told whenever a stream opens or ends without opening.
    settled: tokio::sync::Notify,
    /// The latest `end_time` any stream has received.
    latest_end: tokio::sync::watch::Sender<i64>,
}

impl Deliveries {
    /// A stream that ended before it opened.
    fn ended_unopened(&self) {
        self.other_ends.fetch_add(1, Ordering::Relaxed);
        self.settled.notify_one();
    }

    fn record(&self, delay_ms: i64, count: u64) {
        let bin = (delay_ms.max(0) as usize).min(BINS - 1);
        self.delays[bin].fetch_add(count, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.delays.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// The `p` quantile of the delays in seconds, and the largest.
    fn quantiles(&self, ps: &[f64]) -> Vec<f64> {
        let counts: Vec<u64> = self
            .delays
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let max = counts.iter().rposition(|c| *c > 0).unwrap_or(0);
        let mut out: Vec<f64> = ps
            .iter()
            .map(|p| {
                let target = ((total as f64) * p).ceil().max(1.0) as u64;
                let mut seen = 0;
                for (bin, count) in counts.iter().enumerate() {
                    seen += count;
                    if seen >= target {
                        return bin as f64 / 1000.0;
                    }
                }
                max as f64 / 1000.0
            })
            .collect();
        out.push(max as f64 / 1000.0);
        out
    }
}

/// Opens one stream filtered to `namespace` and reads it until it ends, recording each
/// result's delay.
async fn read_stream(
    channel: Channel,
    namespace: &'static str,
    window: i64,
    deliveries: Arc<Deliveries>,
) {
    let mut grpc = tonic::client::Grpc::new(channel);
    if grpc.ready().await.is_err() {
        deliveries.ended_unopened();
        return;
    }
    let request = FlowStreamRequest {
        filter: Some(Filter {
            dest_namespaces: vec![StringMatch {
                value: namespace.to_string(),
                r#type: 0,
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let codec: ProstCodec<FlowStreamRequest, ResultTime> = ProstCodec::default();
    let opened = grpc
        .server_streaming(
            tonic::Request::new(request),
            PathAndQuery::from_static("/goldmane.Flows/Stream"),
            codec,
        )
        .await;
    let mut stream = match opened {
        Ok(response) => response.into_inner(),
        Err(_) => {
            deliveries.ended_unopened();
            return;
        }
    };
    deliveries.opened.fetch_add(1, Ordering::Relaxed);
    deliveries.settled.notify_one();
    let mut latest_end = i64::MIN;
    // Runs of equal delays are recorded at once.
    let (mut run_delay, mut run_count) = (0i64, 0u64);
    loop {
        match stream.message().await {
            Ok(Some(result)) => {
                let end = result.flow.map_or(0, |flow| flow.end_time);
                if end > latest_end {
                    latest_end = end;
                    deliveries.latest_end.send_if_modified(|latest| {
                        let newer = end > *latest;
                        *latest = (*latest).max(end);
                        newer
                    });
                }
                let delay = now_ms() - (end + window) * 1000;
                if delay != run_delay && run_count > 0 {
                    deliveries.record(run_delay, run_count);
                    run_count = 0;
                }
                run_delay = delay;
                run_count += 1;
            }
            Ok(None) => break,
            Err(status) => {
                if status.code() == Code::ResourceExhausted {
                    deliveries.too_slow.fetch_add(1, Ordering::Relaxed);
                } else {
                    deliveries.other_ends.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
        }
        if run_count >= 64 {
            deliveries.record(run_delay, run_count);
            run_count = 0;
        }
    }
    if run_count > 0 {
        deliveries.record(run_delay, run_count);
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

async fn run(window: u64, streams: usize, keys: u64) {
    let duration = Duration::from_secs(window * (2 + MEASURED_WINDOWS));
    let w = window as i64;

    // The baseline: ingest alone on a fresh server.
    let baseline = Server::start(window, streams);
    let channel = connect(baseline.address).await;
    let started = Instant::now();
    let alone = ingest(channel, keys, w, duration).await;
    let alone_rate = alone as f64 / started.elapsed().as_secs_f64();
    drop(baseline);

    // The streams, idle, then with ingest beside them.
    let server = Server::start(window, streams);
    let mut channels = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        channels.push(connect(server.address).await);
    }
    let (resident_before, _) = server.memory();
    let deliveries = Arc::new(Deliveries {
        delays: (0..BINS).map(|_| AtomicU64::new(0)).collect(),
        opened: AtomicUsize::new(0),
        too_slow: AtomicUsize::new(0),
        other_ends: AtomicUsize::new(0),
        settled: tokio::sync::Notify::new(),
        latest_end: tokio::sync::watch::channel(i64::MIN).0,
    });
    let mut readers = Vec::with_capacity(streams);
    for index in 0..streams {
        readers.push(tokio::spawn(read_stream(
            channels[index % CONNECTIONS].clone(),
            NAMESPACES[index % NAMESPACES.len()],
            w,
            deliveries.clone(),
        )));
    }
    // A call is answered only once the server holds its subscription (`Streams::subscribe`
    // runs before the response), so every stream counted here is registered.
    while deliveries.opened.load(Ordering::Relaxed) + deliveries.other_ends.load(Ordering::Relaxed)
        < streams
    {
        deliveries.settled.notified().await;
    }
    let (resident_idle, _) = server.memory();
    let idle_per_stream = resident_idle.saturating_sub(resident_before) / streams.max(1) as u64;

    let ingest_channel = connect(server.address).await;
    let started = Instant::now();
    let beside = ingest(ingest_channel, keys, w, duration).await;
    let elapsed = started.elapsed().as_secs_f64();
    let beside_rate = beside as f64 / elapsed;
    let delivered = deliveries.total();
    // The last two buckets are emitted after ingest stops: the server's CPU then is the
    // streams' own.
    let (cpu_drain, delivered_drain) = (server.cpu_seconds(), deliveries.total());
    // Until the bucket ingest stopped in has reached the streams (or three windows, if every
    // stream was ended before it).
    let stopped_in_bucket_end = (now_ms() / 1000).div_euclid(w) * w + w;
    let mut latest_end = deliveries.latest_end.subscribe();
    let reached = latest_end.wait_for(|latest| *latest >= stopped_in_bucket_end);
    let _ = tokio::time::timeout(Duration::from_secs(3 * window), reached).await;
    let drain_cpu = server.cpu_seconds() - cpu_drain;
    let drained = deliveries.total() - delivered_drain;
    let (_, high_water) = server.memory();
    for reader in &readers {
        reader.abort();
    }
    for reader in readers {
        let _ = reader.await;
    }
    drop(server);

    // Deliveries begin two windows in: the rate is over the windows that deliver.
    let delivering = (elapsed - 2.0 * window as f64).max(1.0);
    let quantiles = deliveries.quantiles(&[0.5, 0.99]);
    println!(
        "| {keys} | {streams} | {:.0} / {:.0} / {:.0} ms | {:.0} k/s | {:.2} µs | {:.1} KiB | {:.1} KiB | {:.0} MiB | {:.0} k/s | {:.0} k/s | {:.2} | {} |",
        quantiles[0] * 1000.0,
        quantiles[1] * 1000.0,
        quantiles[2] * 1000.0,
        delivered as f64 / delivering / 1e3,
        drain_cpu * 1e6 / drained.max(1) as f64,
        idle_per_stream as f64 / 1024.0,
        high_water.saturating_sub(resident_before) as f64 / streams.max(1) as f64 / 1024.0,
        mib(high_water),
        alone_rate / 1e3,
        beside_rate / 1e3,
        beside_rate / alone_rate,
        deliveries.too_slow.load(Ordering::Relaxed),
    );
}

fn main() {
    let args = numeric_arguments("WINDOW [STREAMS [KEYS...]]");
    let window = args.first().copied().unwrap_or(15).max(1);
    let streams = args.get(1).copied().unwrap_or(10_000) as usize;
    let sizes = match args.get(2..) {
        Some(sizes) if !sizes.is_empty() => sizes.to_vec(),
        _ => vec![2_000, 20_000],
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        println!("window {window} s, {CONNECTIONS} connections, {MEASURED_WINDOWS} windows measured after 2 of warm-up");
        println!("| keys | streams | delay p50 / p99 / max | deliveries | server CPU per delivery | memory per idle stream | per busy stream (high-water) | server high-water | ingest alone | ingest with streams | ratio | ended too slow |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for keys in sizes {
            run(window, streams, keys).await;
        }
    });
}
