//! Soak (a bench target, out of the default test run): a 1 s window and 10 retained buckets, driven
//! for a warm-up and then seven retention cycles with the realistic workload (updates shaped as
//! ../shared/WORKLOAD.md describes, with pods replaced all the time), `Connect` calls
//! reconnecting every cycle, live streams opening and closing every second, and List and
//! Statistics queries beside them, through the real server on loopback.
//!
//! It checks that resident memory stays flat (within 10% between the end of cycle 2 and the
//! end of the last), that every receipt arrives, and that once the clients are gone the
//! server's own counts (streams, subscriptions, backfills, collector clients) are back to 0
//! and the runtime's tasks and the process's file descriptors are back to where they were
//! after the warm-up.
//!
//! Run: `cargo bench --bench soak` (about 90 seconds; figures per cycle are printed on standard
//! error, and a broken property ends it with a panic and a non-zero exit).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::connect_channel;
use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    Filter, FlowListRequest, FlowStreamRequest, FlowUpdate, StatisticType, StatisticsGroupBy,
    StatisticsRequest, StringMatch,
};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
use eddy::synth::realistic::{self, splitmix, BucketChoice, NAMESPACES};
use eddy::worker::clock::SystemClock;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// The server binary's allocator, so resident memory behaves as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The window, in seconds.
const WINDOW: i64 = 1;
/// Closed buckets retained: one retention cycle is this many seconds.
const RETAINED: u64 = 10;
/// Retention cycles driven; memory is compared between the end of cycle 2 and of the last.
const CYCLES: u64 = 7;
/// Keys active at any moment; each is sent once a second.
const KEYS: u64 = 5_000;
/// How long a pod lives before it is replaced under a new name, in seconds.
const POD_LIFETIME: u64 = 15;
/// `Connect` calls sending at once, each on its own HTTP/2 connection, reopened every cycle.
const COLLECTORS: u64 = 4;
/// Live streams opened every second, each read for a few seconds and then dropped.
const STREAMS_PER_SECOND: u64 = 6;
/// Live streams held for a whole cycle, reopened every cycle.
const LONG_STREAMS: u64 = 8;
/// Fingerprints the de-duplication window keeps. Its 6-minute horizon would hold every update
/// of a 90-second soak, growing all along; a bound reached within the warm-up makes the
/// window as full in the measured cycles as it is in production after six minutes.
const DEDUP_CAPACITY: usize = 20_000;

/// The generation of key `key`'s pods at second `second`: pods of different keys are
/// replaced at different moments, every [`POD_LIFETIME`] seconds.
fn generation(key: u64, second: u64) -> u64 {
    (second + splitmix(key) % POD_LIFETIME) / POD_LIFETIME
}

/// Key `key`'s update at second `second` (the `send`-th send of it): the realistic workload
/// with pods replaced every [`POD_LIFETIME`] seconds, in a closed bucket among the last four.
fn update(key: u64, second: u64, now: i64, send: u64) -> FlowUpdate {
    realistic::update(
        key,
        generation(key, second),
        send,
        WINDOW,
        BucketChoice::OneOfLastFour { now },
    )
}

/// One `Connect` call: its request sender and the task counting its receipts until the call
/// ends, which must end `OK`.
struct Collector {
    updates: mpsc::Sender<FlowUpdate>,
    receipts: JoinHandle<u64>,
}

impl Collector {
    async fn open(channel: &Channel) -> Collector {
        let (updates, outbound) = mpsc::channel(1000);
        let mut stream = FlowCollectorClient::new(channel.clone())
            .connect(ReceiverStream::new(outbound))
            .await
            .expect("Connect is accepted")
            .into_inner();
        let receipts = tokio::spawn(async move {
            let mut count = 0;
            while stream.message().await.expect("Connect ends OK").is_some() {
                count += 1;
            }
            count
        });
        Collector { updates, receipts }
    }

    /// Ends the request stream and waits for the call to end; returns the receipts.
    async fn close(self) -> u64 {
        drop(self.updates);
        self.receipts
            .await
            .expect("the receipt reader does not panic")
    }
}

/// Opens a live stream of one destination namespace (with a few seconds of backfill when
/// `backfill`) and reads it until `reads` results arrived or `seconds` passed, then drops it.
fn watch(
    channel: Channel,
    namespace: &'static str,
    backfill: bool,
    reads: u64,
    seconds: u64,
    delivered: Arc<AtomicU64>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let request = FlowStreamRequest {
            start_time_gte: if backfill { -5 } else { 0 },
            filter: Some(Filter {
                dest_namespaces: vec![StringMatch {
                    value: namespace.into(),
                    r#type: 0,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut stream = FlowsClient::new(channel)
            .stream(request)
            .await
            .expect("the stream is accepted")
            .into_inner();
        let reading = async {
            for _ in 0..reads {
                match stream.message().await {
                    Ok(Some(_)) => delivered.fetch_add(1, Ordering::Relaxed),
                    _ => break,
                };
            }
        };
        // The reader stops after `seconds` whatever arrived: a stream closing mid-bucket.
        let _ = tokio::time::timeout(Duration::from_secs(seconds), reading).await;
    })
}

/// A server on loopback on the system clock, stopped when dropped.
struct SoakServer {
    address: std::net::SocketAddr,
    state: ServerState,
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SoakServer {
    async fn start() -> SoakServer {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: RETAINED as i64,
        };
        let mut config = ServerConfig::new(2, retention);
        config.dedup_capacity = DEDUP_CAPACITY;
        let state = build_state(config, Arc::new(SystemClock)).expect("the engine starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port on loopback");
        let address = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = state.clone();
        tokio::spawn(async move {
            let _ = serve(served, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        let channel = connect_channel(address).await;
        SoakServer {
            address,
            state,
            channel,
            stop: Some(stop),
        }
    }

    fn now(&self) -> i64 {
        self.state.now()
    }

    async fn new_channel(&self) -> Channel {
        connect_channel(self.address).await
    }
}

impl Drop for SoakServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What the process and the server hold at one moment.
#[derive(Debug)]
struct Sample {
    resident_kib: u64,
    descriptors: usize,
    tasks: usize,
    streams: usize,
    subscriptions: usize,
    backfills: usize,
    collector_clients: i64,
    strings: usize,
    label_sets: usize,
    traces: usize,
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in kB")
}

fn descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

fn sample(server: &SoakServer) -> Sample {
    let counters = server.state.streams.counters();
    let catalog = &server.state.catalog;
    Sample {
        resident_kib: resident_kib(),
        descriptors: descriptors(),
        tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        streams: counters.active.load(Ordering::SeqCst),
        subscriptions: counters.subscriptions.load(Ordering::SeqCst),
        backfills: counters.backfills.load(Ordering::SeqCst),
        collector_clients: server.state.metrics.collector_clients(),
        strings: catalog.symbols.len(),
        label_sets: catalog.label_sets.len(),
        traces: catalog.traces.len(),
    }
}

/// Waits for the server's next epoch (one a second: the window is 1 s); returns the second.
async fn next_second(server: &SoakServer) -> i64 {
    let mut epochs = server.state.engine.epochs();
    epochs.borrow_and_update();
    epochs
        .changed()
        .await
        .expect("the engine runs for the whole soak");
    server.now()
}

/// Drives one retention cycle; returns (updates sent, updates receipted, stream results).
async fn cycle(server: &SoakServer, cycle: u64, sends: &mut u64) -> (u64, u64, u64) {
    let channels: Vec<Channel> =
        futures::future::join_all((0..COLLECTORS).map(|_| server.new_channel())).await;
    let collectors: Vec<Collector> =
        futures::future::join_all(channels.iter().map(Collector::open)).await;
    let stream_channel = server.new_channel().await;
    let delivered = Arc::new(AtomicU64::new(0));
    let mut watchers: Vec<JoinHandle<()>> = (0..LONG_STREAMS)
        .map(|index| {
            let namespace = NAMESPACES[(index + cycle) as usize % NAMESPACES.len()];
            watch(
                stream_channel.clone(),
                namespace,
                false,
                u64::MAX,
                RETAINED,
                delivered.clone(),
            )
        })
        .collect();
    let mut sent = 0;
    for tick in 0..RETAINED {
        let now = next_second(server).await;
        let second = cycle * RETAINED + tick;
        for index in 0..STREAMS_PER_SECOND {
            let namespace =
                NAMESPACES[((second * STREAMS_PER_SECOND + index) as usize) % NAMESPACES.len()];
            watchers.push(watch(
                stream_channel.clone(),
                namespace,
                index % 2 == 0,
                200,
                3,
                delivered.clone(),
            ));
        }
        for key in 0..KEYS {
            *sends += 1;
            let collector = &collectors[(key % COLLECTORS) as usize];
            collector
                .updates
                .send(update(key, second, now, *sends))
                .await
                .expect("the request stream is open");
            sent += 1;
        }
        let listed = FlowsClient::new(server.channel.clone())
            .list(FlowListRequest {
                page_size: 100,
                ..Default::default()
            })
            .await
            .expect("List answers");
        assert!(listed.into_inner().flows.len() <= 100);
        let mut statistics = StatisticsClient::new(server.channel.clone())
            .list(StatisticsRequest {
                r#type: StatisticType::PacketCount as i32,
                group_by: StatisticsGroupBy::Policy as i32,
                time_series: true,
                ..Default::default()
            })
            .await
            .expect("Statistics answers")
            .into_inner();
        while statistics
            .message()
            .await
            .expect("Statistics streams its results")
            .is_some()
        {}
    }
    let mut receipted = 0;
    for collector in collectors {
        receipted += collector.close().await;
    }
    for watcher in watchers {
        watcher.await.expect("a stream reader does not panic");
    }
    (sent, receipted, delivered.load(Ordering::Relaxed))
}

/// Samples until the server's counts are back to 0 and, given a `baseline`, the process holds
/// no more tasks and descriptors than it did then, or a minute has passed; returns the last
/// sample.
async fn settled(server: &SoakServer, baseline: Option<&Sample>) -> Sample {
    let mut last = sample(server);
    for _ in 0..600 {
        let idle = last.streams == 0
            && last.subscriptions == 0
            && last.backfills == 0
            && last.collector_clients == 0;
        let released = baseline.is_none_or(|baseline| {
            last.tasks <= baseline.tasks && last.descriptors <= baseline.descriptors
        });
        if idle && released {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = sample(server);
    }
    last
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = SoakServer::start().await;
    eprintln!("started {:?}", sample(&server));
    // A warm-up cycle, then the baseline once it has settled: what the process creates once
    // (on its first connection, call or stream) is in the baseline, so only what grows with
    // the work done counts as a leak.
    let mut sends = 0;
    let (sent, receipted, _) = cycle(&server, 0, &mut sends).await;
    assert_eq!(receipted, sent, "every update of the warm-up is receipted");
    let baseline = settled(&server, None).await;
    eprintln!("baseline after warm-up {baseline:?}");
    let mut at_cycle_end = Vec::new();
    for index in 1..=CYCLES {
        let (sent, receipted, delivered) = cycle(&server, index, &mut sends).await;
        assert_eq!(
            receipted, sent,
            "every update of cycle {index} is receipted"
        );
        let figures = sample(&server);
        eprintln!("cycle {index}: sent {sent}, stream results {delivered}, {figures:?}");
        at_cycle_end.push(figures);
    }
    let after = settled(&server, Some(&baseline)).await;
    eprintln!("after {after:?}");

    let second = &at_cycle_end[1];
    let last = &at_cycle_end[at_cycle_end.len() - 1];
    let growth = last.resident_kib as f64 / second.resident_kib as f64 - 1.0;
    eprintln!(
        "resident: {} KiB after cycle 2, {} KiB after cycle {CYCLES}: {:+.1}%",
        second.resident_kib,
        last.resident_kib,
        growth * 100.0
    );
    assert!(
        growth <= 0.10,
        "resident memory grew {:.1}% between cycle 2 and cycle {CYCLES}",
        growth * 100.0
    );
    for (table, then, now) in [
        ("strings", second.strings, last.strings),
        ("label sets", second.label_sets, last.label_sets),
        ("traces", second.traces, last.traces),
    ] {
        assert!(
            now as f64 <= then as f64 * 1.10,
            "the {table} table levels off: {then} after cycle 2, {now} after cycle {CYCLES}"
        );
    }
    assert_eq!(
        (after.streams, after.subscriptions, after.backfills),
        (0, 0, 0),
        "no stream, subscription or backfill is left"
    );
    assert_eq!(after.collector_clients, 0, "no collector client is left");
    assert!(
        after.tasks <= baseline.tasks,
        "tasks back to {} (now {})",
        baseline.tasks,
        after.tasks
    );
    assert!(
        after.descriptors <= baseline.descriptors,
        "file descriptors back to {} (now {})",
        baseline.descriptors,
        after.descriptors
    );
}
