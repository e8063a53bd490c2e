//! Query latency on the realistic workload (WORKLOAD.md): KEYS keys (250,000 by default) in
//! each of the 4 closed buckets before now, 1,000,000 retained (key, bucket) rows, loaded over
//! Connect into Eddy's real `eddy serve` binary in a child process. Then each query runs in a
//! closed loop for SECONDS (8 by default), idle and while 8 pipelined Connect streams ingest
//! at full speed beside it (updates of 20,000 of the keys, into their existing rows):
//!
//! - `Flows.List`, page size 100, over the whole retained range;
//! - `Flows.List` filtered to one `dest_namespaces` value (Exact);
//! - `Flows.FilterHints`, `DestNamespace`, page size 20;
//! - `Flows.FilterHints`, `SourceName`, page size 20 (a name: one per key, read from the flows
//!   view);
//! - `Statistics.List`, `PacketCount` by `Policy` with `time_series`, the whole response read;
//!
//! and last, 64 concurrent List callers (first page, idle). The callers and their connections
//! run on a tokio runtime of their own, not the ingest client's. Each row gives answers, p50 / p99,
//! the server's process CPU (from `/proc/PID/stat`) per answer and the ingest rate beside it.
//! Every answer is checked: List's total is the number of keys, the filtered List's the keys
//! with that destination namespace.
//!
//! `cargo bench --bench queries [-- KEYS [SECONDS]]`

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eddy::cli::flowgen::realistic::{key_updates, WINDOW};
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    FilterHintsRequest, FilterType, FlowListRequest, StatisticType, StatisticsGroupBy,
    StatisticsRequest, StringMatch,
};
use eddy::synth::realistic::{update, BucketChoice, NAMESPACES};
use support::children::ServerChild;
use support::ingest::send_spread;
use support::latency::Latencies;
use support::process::numeric_arguments;
use support::pump::Pump;
use support::server::connect;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_KEYS: u64 = 250_000;
const DEFAULT_SECONDS: u64 = 8;
/// Closed buckets every key is loaded in.
const BUCKETS: u64 = 4;
/// Connect calls (one connection each) that load the rows.
const LOAD_STREAMS: usize = 4;
/// Updates a loading or ingesting stream may have without a receipt.
const OUTSTANDING: usize = 1_000;
/// Keys the background ingest cycles through.
const INGEST_KEYS: u64 = 20_000;
/// Connect streams of the background ingest, on one connection.
const INGEST_STREAMS: usize = 8;
const LIST_PAGE: i64 = 100;
const HINTS_PAGE: i64 = 20;
/// The destination namespace of the filtered List.
const FILTERED: &str = NAMESPACES[0];
/// Concurrent List callers, and the connections they share.
const CALLERS: usize = 64;
const CALLER_CONNECTIONS: usize = 4;

/// The start of bucket `b` (1 to 4) before the bucket boundary `boundary`.
fn bucket(boundary: i64, b: u64) -> BucketChoice {
    BucketChoice::Exactly(boundary - b as i64 * WINDOW)
}

/// What the answers must say.
#[derive(Clone, Copy)]
struct Expected {
    keys: u64,
    filtered: u64,
}

#[derive(Clone, Copy, Debug)]
enum Query {
    List,
    FilteredList,
    Hints,
    NameHints,
    Statistics,
}

impl Query {
    fn name(self) -> &'static str {
        match self {
            Query::List => "List, page size 100",
            Query::FilteredList => "List filtered to one dest namespace",
            Query::Hints => "FilterHints DestNamespace, page size 20",
            Query::NameHints => "FilterHints SourceName, page size 20",
            Query::Statistics => "Statistics PacketCount by Policy, time series",
        }
    }
}

/// Clients of one connection.
#[derive(Clone)]
struct Clients {
    flows: FlowsClient<Channel>,
    statistics: StatisticsClient<Channel>,
}

impl Clients {
    fn new(channel: Channel) -> Clients {
        Clients {
            flows: FlowsClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            statistics: StatisticsClient::new(channel).max_decoding_message_size(usize::MAX),
        }
    }
}

fn list_request(filtered: bool) -> FlowListRequest {
    let filter = filtered.then(|| eddy::proto::Filter {
        dest_namespaces: vec![StringMatch {
            value: FILTERED.into(),
            r#type: 0,
        }],
        ..Default::default()
    });
    FlowListRequest {
        page_size: LIST_PAGE,
        filter,
        ..Default::default()
    }
}

/// Runs `query` once and checks its answer.
async fn ask(clients: &mut Clients, query: Query, expected: Expected) {
    match query {
        Query::List | Query::FilteredList => {
            let filtered = matches!(query, Query::FilteredList);
            let page = clients
                .flows
                .list(list_request(filtered))
                .await
                .expect("List succeeds")
                .into_inner();
            let total = page.meta.expect("a page has metadata").total_results as u64;
            let want = if filtered {
                expected.filtered
            } else {
                expected.keys
            };
            assert_eq!(total, want, "{query:?} counts every matching key");
            assert_eq!(page.flows.len() as u64, want.min(LIST_PAGE as u64));
        }
        Query::Hints | Query::NameHints => {
            let field = match query {
                Query::Hints => FilterType::DestNamespace,
                _ => FilterType::SourceName,
            };
            let hints = clients
                .flows
                .filter_hints(FilterHintsRequest {
                    r#type: field as i32,
                    page_size: HINTS_PAGE,
                    ..Default::default()
                })
                .await
                .expect("FilterHints succeeds")
                .into_inner();
            assert!(!hints.hints.is_empty(), "{query:?} has values");
            if matches!(query, Query::NameHints) {
                // A source name per key: a full page of them.
                assert_eq!(hints.hints.len(), HINTS_PAGE as usize);
            }
        }
        Query::Statistics => {
            let mut results = clients
                .statistics
                .list(StatisticsRequest {
                    r#type: StatisticType::PacketCount as i32,
                    group_by: StatisticsGroupBy::Policy as i32,
                    time_series: true,
                    ..Default::default()
                })
                .await
                .expect("Statistics succeeds")
                .into_inner();
            let mut count = 0;
            while let Some(_result) = results.message().await.expect("results arrive") {
                count += 1;
            }
            assert!(count > 0, "policies have statistics");
        }
    }
}

/// What a closed loop of one or more callers measured.
struct Loop {
    answers: u64,
    elapsed: f64,
    latencies: Latencies,
    cpu_ms_per_answer: f64,
    ingest_rate: Option<f64>,
}

/// The runtime the query callers and their connections run on: not the one the ingest beside
/// them runs on, as a dashboard is not the process of the nodes that report flows. Sharing
/// one runtime, a caller's answer waits behind the ingest client's tasks on the bench's side.
fn callers_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("query-caller")
        .enable_all()
        .build()
        .expect("a tokio runtime for the callers")
}

/// Clients of a new connection whose tasks run on `runtime`.
async fn callers_clients(runtime: &tokio::runtime::Handle, address: SocketAddr) -> Clients {
    runtime
        .spawn(async move { Clients::new(connect(address).await) })
        .await
        .expect("connecting a caller does not panic")
}

/// Runs `query` in a closed loop on each of `callers` for `seconds`.
async fn closed_loop(
    eddy: &ServerChild,
    callers_runtime: &tokio::runtime::Handle,
    callers: Vec<Clients>,
    query: Query,
    expected: Expected,
    seconds: u64,
    ingest: Option<&Pump>,
) -> Loop {
    let cpu = eddy.cpu_seconds();
    let receipts = ingest.map(Pump::receipts);
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut clients| {
            callers_runtime.spawn(async move {
                let mut latencies = Latencies::default();
                while Instant::now() < until {
                    let asked = Instant::now();
                    ask(&mut clients, query, expected).await;
                    latencies.record(asked.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.merge(&task.await.expect("a caller finishes"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = eddy.cpu_seconds() - cpu;
    let answers = latencies.count();
    Loop {
        answers,
        elapsed,
        cpu_ms_per_answer: cpu * 1e3 / answers.max(1) as f64,
        ingest_rate: ingest
            .zip(receipts)
            .map(|(pump, before)| (pump.receipts() - before) as f64 / elapsed),
        latencies,
    }
}

fn row(query: &str, load: &str, measured: &Loop) {
    println!(
        "| {query} | {load} | {} | {:.0}/s | {} | {:.2} ms | {} |",
        measured.answers,
        measured.answers as f64 / measured.elapsed,
        measured.latencies.p50_p99(),
        measured.cpu_ms_per_answer,
        measured
            .ingest_rate
            .map_or("—".into(), |rate| format!("{:.0} k/s", rate / 1e3)),
    );
}

/// Keys whose destination namespace is the filtered one.
fn filtered_keys(keys: u64, boundary: i64) -> u64 {
    (0..keys)
        .filter(|&key| {
            let update = update(key, 0, 0, WINDOW, bucket(boundary, 1));
            update
                .flow
                .and_then(|flow| flow.key)
                .is_some_and(|key| key.dest_namespace == FILTERED)
        })
        .count() as u64
}

fn main() {
    let args = numeric_arguments("[KEYS [SECONDS]]");
    let keys = args.first().copied().unwrap_or(DEFAULT_KEYS);
    let seconds = args.get(1).copied().unwrap_or(DEFAULT_SECONDS);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let callers = callers_runtime();
    let callers_runtime = callers.handle();
    runtime.block_on(async move {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs() as i64;
        let boundary = now - now % WINDOW;
        let expected = Expected {
            keys,
            filtered: filtered_keys(keys, boundary),
        };
        let eddy = ServerChild::eddy(&[]);
        let mut loaders = Vec::new();
        for _ in 0..LOAD_STREAMS {
            loaders.push(connect(eddy.address).await);
        }
        let started = Instant::now();
        // Each bucket's send of a key is its own (a different `bytes_out`), as traffic is: a
        // key's rows in different buckets do not share their counters.
        send_spread(&loaders, keys * BUCKETS, OUTSTANDING, move |index| {
            update(
                index % keys,
                0,
                index / keys,
                WINDOW,
                bucket(boundary, 1 + index / keys),
            )
        })
        .await;
        let load = started.elapsed().as_secs_f64();
        let rows = keys * BUCKETS;
        println!(
            "{keys} keys x {BUCKETS} buckets = {rows} rows loaded in {load:.1} s ({:.0} k/s); \
             server resident {:.0} MB ({:.0} bytes per row); {seconds} s per query loop.",
            rows as f64 / load / 1e3,
            eddy.resident_bytes() as f64 / 1e6,
            eddy.resident_bytes() as f64 / rows as f64,
        );
        println!();
        println!("| query | beside | answers | answers/s | p50 / p99 | server CPU per answer | ingest beside |");
        println!("|---|---|---|---|---|---|---|");
        let clients = callers_clients(callers_runtime, eddy.address).await;
        let queries = [
            Query::List,
            Query::FilteredList,
            Query::Hints,
            Query::NameHints,
            Query::Statistics,
        ];
        for query in queries {
            let measured = closed_loop(&eddy, callers_runtime, vec![clients.clone()], query, expected, seconds, None).await;
            row(query.name(), "idle", &measured);
        }
        let ingest_keys = key_updates(INGEST_KEYS.min(keys), |key| bucket(boundary, 1 + key % BUCKETS));
        let ingest_channel = connect(eddy.address).await;
        let pump = Pump::start(&ingest_channel, INGEST_STREAMS, OUTSTANDING, &ingest_keys);
        for query in queries {
            let measured =
                closed_loop(&eddy, callers_runtime, vec![clients.clone()], query, expected, seconds, Some(&pump)).await;
            row(query.name(), "ingest at full speed", &measured);
        }
        pump.stop().await;
        let mut callers = Vec::new();
        for _ in 0..CALLER_CONNECTIONS {
            let shared = callers_clients(callers_runtime, eddy.address).await;
            callers.extend(std::iter::repeat_n(shared, CALLERS / CALLER_CONNECTIONS));
        }
        let measured = closed_loop(&eddy, callers_runtime, callers, Query::List, expected, seconds, None).await;
        row(&format!("{CALLERS} concurrent List callers"), "idle", &measured);
    });
}
