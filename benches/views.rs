//! The registered views on the realistic workload (WORKLOAD.md): KEYS keys' realistic updates,
//! turned into engine records by the real ingest path (`ingest::prepare`), each key in each of
//! 4 closed buckets.
//!
//! 1. Build, per registered view: the view alone on one timely worker (its build, fed in batches
//!    of 1,024 records, a tick per batch, until every record is in its arrangement): its rate.
//!    Then the whole engine (every Goldmane view and every registered view) on the same records:
//!    the view's own cost is its rate beside the engine's. Reads of each view through the
//!    engine: summed over the range (top 10 by the view's order) and every row per bucket.
//! 2. Subscribe: SUBSCRIBERS `Views.Subscribe` calls to `top_talkers` over 10 HTTP/2
//!    connections to an in-process server with a manual clock; at each of EPOCHS epochs KEYS
//!    realistic updates enter the current bucket, then the clock passes the epoch. The delay
//!    of each subscriber's epoch mark (its changes come before it) from the moment the clock
//!    passed: p50 / p99 / max over every subscriber and epoch (target: within 1 s).
//!
//! `cargo bench --bench views [-- KEYS [SUBSCRIBERS [EPOCHS]]]` (default 100,000 keys, 1,000
//! subscribers, 5 epochs). Quick: `cargo bench --bench views -- 2000 100 2`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy::ingest::prepare;
use eddy::proto::views::subscribe_response::Event;
use eddy::proto::views::views_client::ViewsClient;
use eddy::proto::views::SubscribeRequest;
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::state::ServerState;
use eddy::streams::StreamLimits;
use eddy::synth::realistic::{update, BucketChoice};
use eddy::worker::clock::ManualClock;
use eddy::worker::protocol::IngestBatch;
use eddy_dataflows::model::{BucketRange, FlowRecord, PolicyRule, Tick, TraceId};
use eddy_dataflows::views::registry::{ColumnType, ViewDefinition, ViewQuery};
use eddy_dataflows::views::REGISTERED;
use support::latency::Latencies;
use support::process::numeric_arguments;
use support::server::{connect, start_server};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use tokio::sync::Notify;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WINDOW: i64 = 15;
/// A bucket boundary.
const NOW: i64 = 1_700_000_100;
const BUCKETS: i64 = 4;
const BATCH: usize = 1024;
const CONNECTIONS: usize = 10;

fn retention() -> Retention {
    Retention {
        window: WINDOW,
        closed_buckets: 240,
    }
}

/// KEYS keys' realistic updates in each of the 4 closed buckets, prepared by `state`.
fn records(state: &ServerState, keys: u64) -> Vec<FlowRecord> {
    let mut records = Vec::with_capacity(keys as usize * BUCKETS as usize);
    for key in 0..keys {
        let realistic = update(key, 0, 0, WINDOW, BucketChoice::Exactly(NOW - WINDOW));
        let record = prepare(&realistic, &state.catalog, state.bounds(NOW))
            .expect("a realistic update is accepted");
        for back in 1..=BUCKETS {
            let mut other = record;
            other.bucket = retention().bucket_of(NOW - back * WINDOW);
            // Another send of the key, as `update` makes it: its own `bytes_out`, so a key's
            // rows in different buckets do not share their counters.
            other.stats.bytes_out += back;
            records.push(other);
        }
    }
    records
}

/// Feeds `records` (their traces' `rules` first) to `view` alone on one timely worker;
/// returns the seconds it took.
fn build_alone(
    view: &'static dyn ViewDefinition,
    records: Arc<Vec<FlowRecord>>,
    rules: Arc<Vec<(TraceId, PolicyRule)>>,
) -> f64 {
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut built = worker.dataflow(|scope| view.build(scope, &probe));
        built.feed.insert_rules(&rules);
        let started = Instant::now();
        let mut tick: Tick = 0;
        for batch in records.chunks(BATCH) {
            for record in batch {
                built.feed.note(record);
            }
            tick += 1;
            built.feed.advance_to(tick);
            worker.step();
        }
        while probe.less_than(&tick) {
            worker.step();
        }
        started.elapsed().as_secs_f64()
    })
}

/// A read of every retained bucket of `view`: summed (its first 10 rows) or every row per
/// bucket.
fn read_query(view: &dyn ViewDefinition, per_bucket: bool) -> ViewQuery {
    let schema = view.schema();
    ViewQuery {
        range: BucketRange {
            gte: NOW - BUCKETS * WINDOW,
            lt: NOW,
        },
        per_bucket,
        window: WINDOW,
        filters: Vec::new(),
        sort: schema.default_sort,
        limit: (!per_bucket).then_some(10),
        sort_is_string: schema.columns[schema.default_sort.column].kind == ColumnType::String,
    }
}

async fn ingest(
    state: &ServerState,
    records: Vec<FlowRecord>,
    mut rules: Vec<(TraceId, PolicyRule)>,
) {
    for batch in records.chunks(BATCH) {
        let batch = IngestBatch {
            records: batch.to_vec(),
            trace_rules: std::mem::take(&mut rules),
            retired_rules: Vec::new(),
        };
        state.engine.ingest(batch).await.expect("the engine runs");
    }
    state.engine.sync().await.expect("the engine runs");
}

async fn builds_and_reads(keys: u64) {
    let clock = Arc::new(ManualClock::new(NOW));
    let (state, _) = start_server(ServerConfig::new(1, retention()), clock).await;
    state.engine.sync().await.expect("the engine runs");
    let gate = state.catalog.gate.read().await;
    let handover = state.catalog.handover.lock().await;
    let records = records(&state, keys);
    let rules = state.catalog.take_new_rules();
    let count = records.len() as f64;
    println!("| view | alone, 1 worker | records |");
    println!("|---|---|---|");
    let shared = Arc::new(records.clone());
    let shared_rules = Arc::new(rules.clone());
    for view in REGISTERED {
        let seconds = build_alone(*view, shared.clone(), shared_rules.clone());
        println!(
            "| {} | {:.2} M/s | {count} |",
            view.schema().name,
            count / seconds / 1e6
        );
    }
    let started = Instant::now();
    ingest(&state, records, rules).await;
    let seconds = started.elapsed().as_secs_f64();
    drop(handover);
    drop(gate);
    println!(
        "| the engine (every view) | {:.2} M/s | {count} |",
        count / seconds / 1e6
    );
    println!();
    println!("| view | read summed, top 10 | read per bucket, every row | rows per bucket read |");
    println!("|---|---|---|---|");
    for (index, view) in REGISTERED.iter().enumerate() {
        let mut timings = Vec::new();
        let mut rows = 0;
        for per_bucket in [false, true] {
            let query = read_query(*view, per_bucket);
            let started = Instant::now();
            let answer = state
                .engine
                .read_view(index, query)
                .await
                .expect("the engine runs");
            timings.push(started.elapsed().as_secs_f64() * 1e3);
            rows = answer.len();
        }
        println!(
            "| {} | {:.2} ms | {:.2} ms | {rows} |",
            view.schema().name,
            timings[0],
            timings[1]
        );
    }
}

/// Marks received per epoch (index 0: the snapshot), and their arrival times.
#[derive(Default)]
struct Arrivals {
    marks: Mutex<Vec<Vec<Instant>>>,
    counted: AtomicUsize,
    notify: Notify,
}

async fn subscribe(keys: u64, subscribers: usize, epochs: usize) {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut config = ServerConfig::new(1, retention());
    config.streams = StreamLimits {
        max_streams: subscribers.max(1),
        buffer: 1_000_000,
        ..StreamLimits::default()
    };
    let (state, address) = start_server(config, clock.clone()).await;
    state.engine.sync().await.expect("the engine runs");
    let arrivals = Arc::new(Arrivals {
        marks: Mutex::new(vec![Vec::new(); epochs + 1]),
        ..Arrivals::default()
    });
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(address).await);
    }
    let ended = Arc::new(AtomicUsize::new(0));
    for subscriber in 0..subscribers {
        let mut client = ViewsClient::new(channels[subscriber % CONNECTIONS].clone())
            .max_decoding_message_size(64 * 1024 * 1024);
        let arrivals = arrivals.clone();
        let ended = ended.clone();
        tokio::spawn(async move {
            let request = SubscribeRequest {
                view: "top_talkers".into(),
                filters: Vec::new(),
            };
            let Ok(stream) = client.subscribe(request).await else {
                ended.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let mut stream = stream.into_inner();
            let mut epoch = 0;
            while let Ok(Some(message)) = stream.message().await {
                if let Some(Event::Mark(_)) = message.event {
                    let now = Instant::now();
                    if let Some(marks) = arrivals
                        .marks
                        .lock()
                        .expect("no subscriber panicked")
                        .get_mut(epoch)
                    {
                        marks.push(now);
                    }
                    epoch += 1;
                    arrivals.counted.fetch_add(1, Ordering::SeqCst);
                    arrivals.notify.notify_one();
                }
            }
            ended.fetch_add(1, Ordering::Relaxed);
        });
    }
    let wait_for = |total: usize| {
        let arrivals = arrivals.clone();
        let ended = ended.clone();
        async move {
            loop {
                let notified = arrivals.notify.notified();
                let counted = arrivals.counted.load(Ordering::SeqCst);
                if counted + ended.load(Ordering::Relaxed) * (epochs + 1) >= total {
                    return;
                }
                notified.await;
            }
        }
    };
    wait_for(subscribers).await;
    let mut delays = Latencies::default();
    let mut worst = Duration::ZERO;
    for epoch in 1..=epochs {
        let bucket = retention().bucket_of(NOW) + (epoch as i64 - 1) * WINDOW;
        let gate = state.catalog.gate.read().await;
        let handover = state.catalog.handover.lock().await;
        let mut records = Vec::with_capacity(keys as usize);
        let bounds_now = NOW + (epoch as i64 - 1) * WINDOW;
        for key in 0..keys {
            let realistic = update(key, 0, epoch as u64, WINDOW, BucketChoice::Exactly(bucket));
            if let Ok(record) = prepare(&realistic, &state.catalog, state.bounds(bounds_now)) {
                records.push(record);
            }
        }
        let rules = state.catalog.take_new_rules();
        ingest(&state, records, rules).await;
        drop(handover);
        drop(gate);
        let passed = Instant::now();
        clock.advance(WINDOW);
        wait_for(subscribers * (epoch + 1)).await;
        let marks = arrivals.marks.lock().expect("no subscriber panicked");
        for arrival in &marks[epoch] {
            let delay = arrival.saturating_duration_since(passed);
            worst = worst.max(delay);
            delays.record(delay);
        }
    }
    let counters = state.view_streams.counters();
    println!();
    println!(
        "| keys per epoch | subscribers | epochs | delay p50 / p99 | max | ended as too slow |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {keys} | {subscribers} | {epochs} | {} | {:.2} ms | {} |",
        delays.p50_p99(),
        worst.as_secs_f64() * 1e3,
        counters.too_slow.load(Ordering::Relaxed)
    );
}

fn main() {
    let args = numeric_arguments("[KEYS [SUBSCRIBERS [EPOCHS]]]");
    let keys = args.first().copied().unwrap_or(100_000);
    let subscribers = args.get(1).copied().unwrap_or(1000) as usize;
    let epochs = args.get(2).copied().unwrap_or(5) as usize;
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        builds_and_reads(keys).await;
        subscribe(keys, subscribers, epochs).await;
    });
}
