//! Query latency under steady ingest: N retained (key, bucket) rows loaded through `Connect`
//! into a real server on a socket, then `Flows.List` (first page, and filtered to one
//! destination namespace), `Flows.FilterHints` and `Statistics.List` timed through real clients
//! while two `Connect` streams keep ingesting into the newest bucket. Load time runs from the
//! first update until a List shows every row.
//!
//! `cargo bench --bench queries` runs every configuration, each in a fresh child process so
//! resident memory is measured per configuration. `cargo bench --bench queries -- ROWS WORKERS
//! [RATE]` runs one (RATE: background updates per second, default 20,000; 0 sends as fast as
//! receipts return). Figures are printed as a Markdown table row for BENCHMARKS.md. Client and
//! server share the process and the allocator of the `eddy` binary.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    Action, FilterHintsRequest, FilterType, FlowListRequest, FlowUpdate, PolicyTrace, Reporter,
    StatisticType, StatisticsGroupBy, StatisticsRequest, StringMatch,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::worker::clock::ManualClock;
use support::cluster::{
    app, namespace_names, reporter, Pod, PolicyChoices, TcpFlow, DESTS, NAMESPACES, TRACES,
};
use support::ingest::send_spread;
use support::measure::{percentile_ms, resident_bytes, timed_statistics};
use support::process::{arguments, run_in_child};
use support::server::{connect, start_server};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;
const CLOSED_BUCKETS: i64 = 240;
/// Buckets the rows are spread over; the newest is the current bucket.
const BUCKETS: u64 = 4;
const SOURCES: u64 = 3_000;
const PORTS: [i64; 6] = [80, 443, 5432, 6379, 8080, 9090];
/// Flows per List page.
const PAGE_SIZE: i64 = 50;
/// The destination namespace of the filtered List.
const FILTERED_NAMESPACE: u64 = 7;
/// Connect calls (one connection each) that load the rows.
const LOAD_STREAMS: usize = 4;
/// Connect calls (one connection each) that ingest during the query phase.
const BACKGROUND_STREAMS: usize = 2;
/// Updates a Connect call may have sent without a receipt.
const IN_FLIGHT: usize = 2048;
const DEFAULT_RATE: u64 = 20_000;
/// Background updates receipted before the queries start.
const WARM_UP: u64 = 5_000;
/// Rounds of the query phase; each round runs every query once, in turn.
const ROUNDS: usize = 30;

/// The fields a key index stands for. Keys are distinct: (source, dest) pairs are distinct
/// because `pair / SOURCES` stays below `DESTS`, and port and reporter vary within a pair.
#[derive(Clone, Copy)]
struct Layout {
    source: u64,
    dest: u64,
    port: usize,
    reporter: Reporter,
    trace: u64,
}

fn layout(key: u64) -> Layout {
    let port = ((key / 2) % PORTS.len() as u64) as usize;
    let pair = key / (2 * PORTS.len() as u64);
    let source = pair % SOURCES;
    let dest = (pair / SOURCES + source * 7) % DESTS;
    Layout {
        source,
        dest,
        port,
        reporter: reporter(key),
        trace: (dest + port as u64) % TRACES,
    }
}

/// Trace `trace`: its enforced policy is named after an app and sits in the platform tier
/// for every fourth trace; its staged policy denies every third trace.
fn policy_trace(trace: u64) -> (PolicyTrace, Action) {
    support::cluster::policy_trace(
        trace,
        PolicyChoices {
            enforced_name: format!("allow-{}-{trace}", app(trace)),
            enforced_tier: if trace.is_multiple_of(4) {
                "platform"
            } else {
                "default"
            },
            pending_action: if trace.is_multiple_of(3) {
                Action::Deny
            } else {
                Action::Allow
            },
            pending_rule_index: 0,
        },
    )
}

/// Every string a key is made of, built once so updates are cheap to make.
struct Cluster {
    sources: Vec<String>,
    dests: Vec<String>,
    namespaces: Vec<String>,
    source_labels: Vec<Vec<String>>,
    dest_labels: Vec<Vec<String>>,
    traces: Vec<(PolicyTrace, Action)>,
}

impl Cluster {
    fn new() -> Self {
        let pod = |index: u64, salt: u64| {
            // An odd multiplier is a bijection modulo 2^20, so names do not repeat.
            format!("{}-{:05x}", app(index), (index * 7919 + salt) % 0x10_0000)
        };
        let labels = |index: u64| {
            vec![
                format!("app={}", app(index)),
                format!("version=v{}", index % 3),
            ]
        };
        Cluster {
            sources: (0..SOURCES).map(|i| pod(i, 0)).collect(),
            dests: (0..DESTS).map(|i| pod(i, 0x8_0000)).collect(),
            namespaces: namespace_names(),
            source_labels: (0..SOURCES).map(labels).collect(),
            dest_labels: (0..DESTS).map(labels).collect(),
            traces: (0..TRACES).map(policy_trace).collect(),
        }
    }

    /// One update of `key` in the bucket starting at `bucket`. `round` > 0 marks a background
    /// update: its counters differ from the load's and from every earlier round's, so the
    /// server's replay de-duplication never skips it.
    fn update(&self, key: u64, bucket: i64, round: u64) -> FlowUpdate {
        let at = layout(key);
        let (packets_in, packets_out) = if round == 0 {
            (10, 12)
        } else {
            (round as i64, 1)
        };
        TcpFlow {
            source: Pod {
                name: self.sources[at.source as usize].clone(),
                namespace: self.namespaces[(at.source % NAMESPACES) as usize].clone(),
                labels: self.source_labels[at.source as usize].clone(),
            },
            dest: Pod {
                name: self.dests[at.dest as usize].clone(),
                namespace: self.namespaces[(at.dest % NAMESPACES) as usize].clone(),
                labels: self.dest_labels[at.dest as usize].clone(),
            },
            port: PORTS[at.port],
            reporter: at.reporter,
            trace: &self.traces[at.trace as usize],
            packets_in,
            packets_out,
        }
        .update(bucket)
    }
}

/// Connect calls updating existing keys in the newest bucket until stopped.
struct Background {
    stop: Arc<AtomicBool>,
    receipted: Arc<AtomicU64>,
    /// Signalled once [`WARM_UP`] updates are receipted: the ingest is under way.
    warmed_up: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// `rate` updates per second over all streams (0: as fast as receipts return).
    fn start(channels: &[Channel], cluster: Arc<Cluster>, keys: u64, rate: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let receipted = Arc::new(AtomicU64::new(0));
        let warmed_up = Arc::new(Notify::new());
        let streams = channels.len() as u64;
        let newest = Retention {
            window: WINDOW,
            closed_buckets: CLOSED_BUCKETS,
        }
        .bucket_of(NOW);
        // Paced in 10 ms ticks.
        let per_tick = (rate / streams / 100).max(1);
        let mut tasks = Vec::new();
        for (stream, channel) in channels.iter().enumerate() {
            let (channel, cluster) = (channel.clone(), cluster.clone());
            let (stop, receipted) = (stop.clone(), receipted.clone());
            let warmed_up = warmed_up.clone();
            tasks.push(tokio::spawn(async move {
                let (sink, mut receipts) = support::ingest::open(channel, IN_FLIGHT).await;
                let reader = tokio::spawn(async move {
                    while let Some(_receipt) = receipts.next().await {
                        if receipted.fetch_add(1, Ordering::Relaxed) + 1 == WARM_UP {
                            warmed_up.notify_one();
                        }
                    }
                });
                let mut ticks = tokio::time::interval(Duration::from_millis(10));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut sent = 0u64;
                'sending: while !stop.load(Ordering::Relaxed) {
                    if rate > 0 {
                        ticks.tick().await;
                    }
                    for _ in 0..if rate > 0 { per_tick } else { 256 } {
                        let index = sent * streams + stream as u64;
                        sent += 1;
                        let update = cluster.update(index % keys, newest, 1 + index / keys);
                        if !sink.send(update).await {
                            break 'sending;
                        }
                    }
                }
                drop(sink);
                reader.await.expect("every receipt arrives");
            }));
        }
        Background {
            stop,
            receipted,
            warmed_up,
            tasks,
        }
    }

    /// Waits until the background ingest has had [`WARM_UP`] updates receipted.
    async fn warmed_up(&self) {
        self.warmed_up.notified().await;
    }

    fn receipted(&self) -> u64 {
        self.receipted.load(Ordering::Relaxed)
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a background stream ends cleanly");
        }
    }
}

fn list_request(filter: Option<eddy::proto::Filter>) -> FlowListRequest {
    FlowListRequest {
        page_size: PAGE_SIZE,
        filter,
        ..Default::default()
    }
}

fn filtered(cluster: &Cluster) -> eddy::proto::Filter {
    eddy::proto::Filter {
        dest_namespaces: vec![StringMatch {
            value: cluster.namespaces[FILTERED_NAMESPACE as usize].clone(),
            r#type: 0,
        }],
        ..Default::default()
    }
}

/// What the queries must answer, worked out from the key layout. A List without
/// `aggregation_interval` answers one flow per key over the whole range.
struct Expected {
    filtered_keys: u64,
    dest_namespaces: u64,
    source_names: u64,
    policies: u64,
}

fn expected(keys: u64) -> Expected {
    let (mut filtered_keys, mut namespaces, mut sources, mut traces) =
        (0, HashSet::new(), HashSet::new(), HashSet::new());
    for key in 0..keys {
        let at = layout(key);
        if at.dest % NAMESPACES == FILTERED_NAMESPACE {
            filtered_keys += 1;
        }
        namespaces.insert(at.dest % NAMESPACES);
        sources.insert(at.source);
        traces.insert(at.trace);
    }
    Expected {
        filtered_keys,
        dest_namespaces: namespaces.len() as u64,
        source_names: sources.len() as u64,
        // Each trace names one enforced and one staged policy of its own.
        policies: 2 * traces.len() as u64,
    }
}

async fn statistics(
    client: &mut StatisticsClient<Channel>,
    time_series: bool,
    expected: u64,
) -> Duration {
    let request = StatisticsRequest {
        r#type: StatisticType::PacketCount as i32,
        group_by: StatisticsGroupBy::Policy as i32,
        time_series,
        ..Default::default()
    };
    let (elapsed, results) = timed_statistics(client, request).await;
    assert_eq!(
        results as u64, expected,
        "one result per policy in the traces"
    );
    elapsed
}

async fn hints(client: &mut FlowsClient<Channel>, kind: FilterType, expected: u64) -> Duration {
    let started = Instant::now();
    let answer = client
        .filter_hints(FilterHintsRequest {
            r#type: kind as i32,
            ..Default::default()
        })
        .await
        .expect("FilterHints succeeds")
        .into_inner();
    let elapsed = started.elapsed();
    let total = answer.meta.expect("hints carry metadata").total_results;
    assert_eq!(total as u64, expected, "one hint per distinct value");
    elapsed
}

async fn list(
    client: &mut FlowsClient<Channel>,
    request: FlowListRequest,
    expected_total: u64,
) -> Duration {
    let started = Instant::now();
    let page = client
        .list(request)
        .await
        .expect("List succeeds")
        .into_inner();
    let elapsed = started.elapsed();
    let total = page.meta.expect("a page carries metadata").total_results;
    assert_eq!(
        total as u64, expected_total,
        "every matching flow is counted"
    );
    assert_eq!(
        page.flows.len() as u64,
        expected_total.min(PAGE_SIZE as u64),
        "a full page"
    );
    elapsed
}

fn run_one(rows: u64, workers: usize, rate: u64) {
    let keys = rows / BUCKETS;
    let rows = keys * BUCKETS;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: CLOSED_BUCKETS,
        };
        let (state, address) = start_server(
            ServerConfig::new(workers, retention),
            Arc::new(ManualClock::new(NOW)),
        )
        .await;
        let cluster = Arc::new(Cluster::new());
        let expected = expected(keys);
        let mut load_channels = Vec::new();
        for _ in 0..LOAD_STREAMS {
            load_channels.push(connect(address).await);
        }
        let mut background_channels = Vec::new();
        for _ in 0..BACKGROUND_STREAMS {
            background_channels.push(connect(address).await);
        }
        let query_channel = connect(address).await;
        let mut flows = FlowsClient::new(query_channel.clone());
        let mut stats = StatisticsClient::new(query_channel);
        state.engine.sync().await.expect("the engine runs");
        let before = resident_bytes();

        let oldest = retention.bucket_of(NOW) - (BUCKETS as i64 - 1) * WINDOW;
        let loader = cluster.clone();
        let started = Instant::now();
        send_spread(&load_channels, rows, IN_FLIGHT, move |index| {
            let bucket = oldest + (index / keys) as i64 * WINDOW;
            loader.update(index % keys, bucket, 0)
        })
        .await;
        // One row per (key, bucket) proves every update is in.
        let per_bucket = FlowListRequest {
            aggregation_interval: WINDOW,
            ..list_request(None)
        };
        list(&mut flows, per_bucket, rows).await;
        let load = started.elapsed();
        drop(load_channels);
        let per_row = resident_bytes().saturating_sub(before) as f64 / rows as f64;

        let background = Background::start(&background_channels, cluster.clone(), keys, rate);
        background.warmed_up().await;
        let receipted_before = background.receipted();
        let queries_started = Instant::now();
        let mut times: [Vec<Duration>; 6] = Default::default();
        for _ in 0..ROUNDS {
            times[0].push(list(&mut flows, list_request(None), keys).await);
            times[1].push(
                list(
                    &mut flows,
                    list_request(Some(filtered(&cluster))),
                    expected.filtered_keys,
                )
                .await,
            );
            times[2].push(
                hints(
                    &mut flows,
                    FilterType::DestNamespace,
                    expected.dest_namespaces,
                )
                .await,
            );
            times[3].push(hints(&mut flows, FilterType::SourceName, expected.source_names).await);
            times[4].push(statistics(&mut stats, true, expected.policies).await);
            times[5].push(statistics(&mut stats, false, expected.policies).await);
        }
        let ingest_rate = (background.receipted() - receipted_before) as f64
            / queries_started.elapsed().as_secs_f64();
        background.stop().await;
        let cells: Vec<String> = times
            .iter_mut()
            .map(|times| {
                times.sort();
                format!(
                    "{:.1} / {:.1} ms",
                    percentile_ms(times, 0.5),
                    percentile_ms(times, 0.99)
                )
            })
            .collect();
        println!(
            "| {rows} | {workers} | {:.1} s, {:.0} k/s | {:.1} k/s | {} | {:.0} |",
            load.as_secs_f64(),
            rows as f64 / load.as_secs_f64() / 1e3,
            ingest_rate / 1e3,
            cells.join(" | "),
            per_row,
        );
    });
}

fn main() {
    let args = arguments();
    if let [rows, workers, rest @ ..] = &args[..] {
        run_one(
            rows.parse().expect("ROWS is a number"),
            workers.parse().expect("WORKERS is a number"),
            rest.first()
                .map_or(DEFAULT_RATE, |rate| rate.parse().expect("RATE is a number")),
        );
        return;
    }
    println!("| rows | workers | load (time, rate) | background ingest | List first page p50 / p99 | filtered List p50 / p99 | FilterHints dest namespace p50 / p99 | FilterHints source name p50 / p99 | Statistics per policy, time series p50 / p99 | Statistics per policy, totals p50 / p99 | resident bytes per row |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (rows, workers) in [
        (10_000u64, 2usize),
        (100_000, 2),
        (1_000_000, 2),
        (1_000_000, 1),
    ] {
        run_in_child(
            &[rows.to_string(), workers.to_string()],
            &format!("configuration {rows} rows x {workers} workers"),
        );
    }
}
