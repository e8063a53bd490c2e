//! Query latency and throughput with many callers, idle and beside ingest at full speed, on
//! the realistic workload (`eddy::synth::realistic`): ROWS retained (key, bucket) rows (ROWS/4
//! keys in four buckets) loaded through `Connect` into a real server on a socket, then
//!
//! - one caller: `Flows.List` first page, `Flows.FilterHints` (destination namespaces) and
//!   `Statistics.List` (per policy, time series), each in turn for SECONDS;
//! - CALLERS callers asking the same List first page at once for SECONDS (as Whisker's
//!   browsers do): answers per second and p50 / p99;
//!
//! first idle, then while two `Connect` streams ingest as fast as receipts return.
//!
//! `cargo bench --bench concurrent_queries -- ROWS WORKERS [CALLERS] [SECONDS]` (defaults 64
//! callers, 5 s). Figures are printed as Markdown table rows for BENCHMARKS.md; client and
//! server share the process.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    FilterHintsRequest, FilterType, FlowListRequest, StatisticType, StatisticsGroupBy,
    StatisticsRequest,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::synth::realistic::{self, BucketChoice};
use eddy::worker::clock::ManualClock;
use support::ingest::send_spread;
use support::measure::{percentile_ms, timed_statistics};
use support::process::numeric_arguments;
use support::server::{connect, start_server};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;
const CLOSED_BUCKETS: i64 = 240;
const BUCKETS: u64 = 4;
const PAGE_SIZE: i64 = 50;
const LOAD_STREAMS: usize = 4;
const INGEST_STREAMS: usize = 2;
const IN_FLIGHT: usize = 2048;
const USAGE: &str = "ROWS WORKERS [CALLERS] [SECONDS]";

fn retention() -> Retention {
    Retention {
        window: WINDOW,
        closed_buckets: CLOSED_BUCKETS,
    }
}

fn first_page() -> FlowListRequest {
    FlowListRequest {
        page_size: PAGE_SIZE,
        ..Default::default()
    }
}

/// Two Connect calls sending updates of existing keys into the newest bucket as fast as
/// receipts return, until stopped.
struct Ingest {
    stop: Arc<AtomicBool>,
    receipted: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Ingest {
    fn start(channels: &[Channel], keys: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let receipted = Arc::new(AtomicU64::new(0));
        let newest = retention().bucket_of(NOW);
        let streams = channels.len() as u64;
        let tasks = channels
            .iter()
            .enumerate()
            .map(|(stream, channel)| {
                let (channel, stop, receipted) = (channel.clone(), stop.clone(), receipted.clone());
                tokio::spawn(async move {
                    let (sink, mut receipts) = support::ingest::open(channel, IN_FLIGHT).await;
                    let reader = tokio::spawn(async move {
                        while receipts.next().await.is_some() {
                            receipted.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let index = sent * streams + stream as u64;
                        sent += 1;
                        let update = realistic::update(
                            index % keys,
                            0,
                            1 + index / keys,
                            WINDOW,
                            BucketChoice::Exactly(newest),
                        );
                        if !sink.send(update).await {
                            break;
                        }
                    }
                    drop(sink);
                    reader.await.expect("every receipt arrives");
                })
            })
            .collect();
        Ingest {
            stop,
            receipted,
            tasks,
        }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("an ingest stream ends cleanly");
        }
    }
}

/// p50 / p99 of `times`, in ms.
fn cell(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "{:.1} / {:.1} ms",
        percentile_ms(times, 0.5),
        percentile_ms(times, 0.99)
    )
}

/// One caller running each query in turn for `seconds`.
async fn one_caller(channel: &Channel, seconds: u64, keys: u64) -> [String; 3] {
    let mut flows = FlowsClient::new(channel.clone());
    let mut stats = StatisticsClient::new(channel.clone());
    let mut times: [Vec<Duration>; 3] = Default::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        let started = Instant::now();
        let page = flows
            .list(first_page())
            .await
            .expect("List succeeds")
            .into_inner();
        times[0].push(started.elapsed());
        let total = page.meta.expect("a page carries metadata").total_results;
        assert_eq!(total as u64, keys, "every key is counted");
        let started = Instant::now();
        flows
            .filter_hints(FilterHintsRequest {
                r#type: FilterType::DestNamespace as i32,
                ..Default::default()
            })
            .await
            .expect("FilterHints succeeds");
        times[1].push(started.elapsed());
        let request = StatisticsRequest {
            r#type: StatisticType::PacketCount as i32,
            group_by: StatisticsGroupBy::Policy as i32,
            time_series: true,
            ..Default::default()
        };
        times[2].push(timed_statistics(&mut stats, request).await.0);
    }
    times.each_mut().map(|times| cell(times))
}

/// `callers` callers asking the List first page at once for `seconds`, each on its own
/// connection: answers per second and p50 / p99.
async fn many_callers(channels: &[Channel], seconds: u64, keys: u64) -> (f64, String) {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = channels
        .iter()
        .map(|channel| {
            let mut flows = FlowsClient::new(channel.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while Instant::now() < until {
                    let asked = Instant::now();
                    let page = flows
                        .list(first_page())
                        .await
                        .expect("List succeeds")
                        .into_inner();
                    times.push(asked.elapsed());
                    let total = page.meta.expect("a page carries metadata").total_results;
                    assert_eq!(total as u64, keys, "every key is counted");
                }
                times
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("a caller finishes"));
    }
    let rate = times.len() as f64 / started.elapsed().as_secs_f64();
    (rate, cell(&mut times))
}

fn run(rows: u64, workers: usize, callers: usize, seconds: u64) {
    let keys = (rows / BUCKETS).max(1);
    let rows = keys * BUCKETS;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let (state, address) = start_server(
            ServerConfig::new(workers, retention()),
            Arc::new(ManualClock::new(NOW)),
        )
        .await;
        let mut load = Vec::new();
        for _ in 0..LOAD_STREAMS {
            load.push(connect(address).await);
        }
        let oldest = retention().bucket_of(NOW) - (BUCKETS as i64 - 1) * WINDOW;
        let started = Instant::now();
        send_spread(&load, rows, IN_FLIGHT, move |index| {
            let bucket = oldest + (index / keys) as i64 * WINDOW;
            realistic::update(index % keys, 0, 0, WINDOW, BucketChoice::Exactly(bucket))
        })
        .await;
        state.engine.sync().await.expect("the engine runs");
        let loaded = started.elapsed();
        drop(load);
        let query = connect(address).await;
        let mut many = Vec::new();
        for _ in 0..callers {
            many.push(connect(address).await);
        }
        let mut ingest_channels = Vec::new();
        for _ in 0..INGEST_STREAMS {
            ingest_channels.push(connect(address).await);
        }
        for busy in [false, true] {
            let ingest = busy.then(|| Ingest::start(&ingest_channels, keys));
            let phase = Instant::now();
            let single = one_caller(&query, seconds, keys).await;
            let (rate, concurrent) = many_callers(&many, seconds, keys).await;
            let ingest_rate = match ingest {
                Some(ingest) => {
                    let receipted = ingest.receipted.load(Ordering::Relaxed);
                    let rate = receipted as f64 / phase.elapsed().as_secs_f64();
                    ingest.stop().await;
                    format!("{:.0} k/s", rate / 1e3)
                }
                None => "idle".to_string(),
            };
            println!(
                "| {rows} | {workers} | {:.1} s | {ingest_rate} | {} | {} | {} | {callers}: {rate:.0}/s, {concurrent} |",
                loaded.as_secs_f64(),
                single[0],
                single[1],
                single[2],
            );
        }
    });
}

fn main() {
    let args = numeric_arguments(USAGE);
    let [rows, workers, rest @ ..] = &args[..] else {
        panic!("usage: {USAGE}");
    };
    let callers = rest.first().copied().unwrap_or(64);
    let seconds = rest.get(1).copied().unwrap_or(5);
    println!("| rows | workers | load | ingest beside | List first page p50 / p99 | FilterHints p50 / p99 | Statistics p50 / p99 | concurrent List callers: answers/s, p50 / p99 |");
    println!("|---|---|---|---|---|---|---|---|");
    run(
        *rows,
        usize::try_from(*workers).expect("WORKERS fits"),
        usize::try_from(callers).expect("CALLERS fits"),
        seconds,
    );
}
