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
    Action, EndpointType, Filter, Flow, FlowKey, FlowListRequest, FlowStreamRequest, FlowUpdate,
    PolicyHit, PolicyKind, PolicyTrace, Reporter, StatisticType, StatisticsGroupBy,
    StatisticsRequest, StringMatch,
};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::state::ServerState;
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

const NAMESPACES: [&str; 16] = [
    "frontend",
    "checkout",
    "payments",
    "catalog",
    "search",
    "accounts",
    "orders",
    "shipping",
    "inventory",
    "recommendations",
    "monitoring",
    "logging",
    "ingress",
    "data",
    "messaging",
    "kube-system",
];
const APPS: [&str; 16] = [
    "web",
    "api",
    "cart",
    "worker",
    "db",
    "cache",
    "gateway",
    "auth",
    "indexer",
    "scheduler",
    "exporter",
    "collector",
    "queue",
    "notifier",
    "billing",
    "profile",
];
/// (port, protocol, service port name).
const PORTS: [(i64, &str, &str); 8] = [
    (80, "tcp", "http"),
    (443, "tcp", "https"),
    (8080, "tcp", "http-alt"),
    (5432, "tcp", "postgres"),
    (6379, "tcp", "redis"),
    (9090, "tcp", "metrics"),
    (53, "udp", "dns"),
    (3306, "tcp", "mysql"),
];
const TEAMS: [&str; 6] = ["core", "growth", "platform", "payments", "sre", "data"];

/// splitmix64: every choice of the workload is drawn from it, so every run sends the same.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stream of choices seeded from one value.
struct Draws(u64);

impl Draws {
    /// The next choice in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = splitmix(self.0);
        self.0 % bound
    }

    /// The next choice in `low..=high`.
    fn within(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn pick<'a>(&mut self, values: &[&'a str]) -> &'a str {
        values[self.below(values.len() as u64) as usize]
    }
}

/// The generation of key `key`'s pods at second `second`: pods of different keys are
/// replaced at different moments, every [`POD_LIFETIME`] seconds.
fn generation(key: u64, second: u64) -> u64 {
    (second + splitmix(key) % POD_LIFETIME) / POD_LIFETIME
}

/// A pod's 10 hex digits: unique per key and pod generation.
fn pod_hash(key: u64, generation: u64, side: u64) -> String {
    format!(
        "{:010x}",
        splitmix(key ^ (generation << 32) ^ (side << 62)) & 0xff_ffff_ffff
    )
}

fn labels(app: &str, hash: &str, namespace: &str, draws: &mut Draws) -> Vec<String> {
    let all = [
        format!("app={app}"),
        format!("pod-template-hash={hash}"),
        format!("projectcalico.org/namespace={namespace}"),
        format!("team={}", draws.pick(&TEAMS)),
        format!("version=v{}", draws.within(1, 3)),
        "environment=production".to_string(),
    ];
    let count = draws.within(3, 6) as usize;
    all.into_iter().take(count).collect()
}

fn policy_hit(
    kind: PolicyKind,
    tier: &str,
    namespace: &str,
    name: &str,
    action: Action,
) -> PolicyHit {
    PolicyHit {
        kind: kind as i32,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action: action as i32,
        ..Default::default()
    }
}

/// 0–2 leading Pass hits, then the deciding hit; returns the trace and the flow's action.
fn trace(dest_namespace: &str, dest_app: &str, draws: &mut Draws) -> (PolicyTrace, Action) {
    let passes = [
        ("security", "pass-to-app-tiers"),
        ("platform", "allow-cluster-dns"),
    ];
    let mut hits: Vec<PolicyHit> = passes
        .iter()
        .take(draws.below(3) as usize)
        .map(|(tier, name)| {
            let mut hit = policy_hit(
                PolicyKind::GlobalNetworkPolicy,
                tier,
                "",
                name,
                Action::Pass,
            );
            hit.rule_index = draws.within(0, 2);
            hit
        })
        .collect();
    let allow_name = format!("allow-{dest_app}");
    let deciding = match draws.below(10) {
        0..=5 => {
            let mut hit = policy_hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                dest_namespace,
                &allow_name,
                Action::Allow,
            );
            hit.rule_index = draws.within(0, 3);
            hit
        }
        6 | 7 => policy_hit(
            PolicyKind::NetworkPolicy,
            "default",
            dest_namespace,
            &format!("knp.default.{dest_app}-ingress"),
            Action::Allow,
        ),
        8 => {
            let mut hit = policy_hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny);
            hit.rule_index = -1;
            hit.trigger = Some(Box::new(policy_hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                dest_namespace,
                &allow_name,
                Action::Allow,
            )));
            hit
        }
        _ => policy_hit(
            PolicyKind::Profile,
            "__PROFILE__",
            "",
            &format!("kns.{dest_namespace}"),
            Action::Allow,
        ),
    };
    let action = Action::try_from(deciding.action).unwrap_or(Action::Allow);
    hits.push(deciding);
    for (index, hit) in hits.iter_mut().enumerate() {
        hit.policy_index = index as i64;
    }
    let trace = PolicyTrace {
        enforced_policies: hits.clone(),
        pending_policies: hits,
    };
    (trace, action)
}

/// Key `key`'s update at second `second` (the `send`-th send of it): a closed bucket among
/// the last four, counters drawn from the key, `bytes_out` changed by every send.
fn update(key: u64, second: u64, now: i64, send: u64) -> FlowUpdate {
    let pods = generation(key, second);
    let mut draws = Draws(splitmix(key));
    let source_namespace = draws.pick(&NAMESPACES);
    let source_app = draws.pick(&APPS);
    let source_hash = pod_hash(key, pods, 0);
    let network = draws.below(10) == 0;
    let dest_namespace = draws.pick(&NAMESPACES);
    let dest_app = draws.pick(&APPS);
    let dest_hash = pod_hash(key, pods, 1);
    let (port, proto, port_name) = PORTS[draws.below(PORTS.len() as u64) as usize];
    let reporter = if draws.below(2) == 0 {
        Reporter::Src
    } else {
        Reporter::Dst
    };
    let source_labels = labels(source_app, &source_hash, source_namespace, &mut draws);
    let (trace, action) = trace(dest_namespace, dest_app, &mut draws);
    let (dest_name, dest_ns, dest_type, dest_labels, service) = if network {
        let name = if draws.below(2) == 0 { "pub" } else { "pvt" };
        (
            name.to_string(),
            "-",
            EndpointType::Network,
            Vec::new(),
            None,
        )
    } else {
        let labels = labels(dest_app, &dest_hash, dest_namespace, &mut draws);
        (
            format!("{dest_app}-{dest_hash}-*"),
            dest_namespace,
            EndpointType::WorkloadEndpoint,
            labels,
            Some((dest_app, dest_namespace, port_name, port)),
        )
    };
    let packets_in = draws.within(1, 2000);
    let packets_out = draws.within(1, 2000);
    let started = draws.within(1, 20);
    let completed = draws.within(0, started);
    let live = draws.within(0, 3);
    let start = now - WINDOW * draws.within(1, 4);
    FlowUpdate {
        flow: Some(Flow {
            key: Some(FlowKey {
                source_name: format!("{source_app}-{source_hash}-*"),
                source_namespace: source_namespace.into(),
                source_type: EndpointType::WorkloadEndpoint as i32,
                dest_name,
                dest_namespace: dest_ns.into(),
                dest_type: dest_type as i32,
                dest_port: port,
                dest_service_name: service.map(|s| s.0).unwrap_or_default().into(),
                dest_service_namespace: service.map(|s| s.1).unwrap_or_default().into(),
                dest_service_port_name: service.map(|s| s.2).unwrap_or_default().into(),
                dest_service_port: service.map_or(0, |s| s.3),
                proto: proto.into(),
                reporter: reporter as i32,
                action: action as i32,
                policies: Some(trace),
            }),
            start_time: start,
            end_time: start + WINDOW,
            source_labels,
            dest_labels,
            packets_in,
            packets_out,
            bytes_in: 700 * packets_in,
            bytes_out: 700 * packets_out + send as i64,
            num_connections_started: started,
            num_connections_completed: completed,
            num_connections_live: live,
        }),
    }
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

/// Waits until the second changes on the server's clock; returns the new second.
async fn next_second(server: &SoakServer) -> i64 {
    let current = server.now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = server.now();
        if now != current {
            return now;
        }
    }
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
