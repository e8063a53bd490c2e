//! Memory over full retention cycles: a real server on a socket with a 15 s window and 20
//! closed buckets. Each step ingests KEYS updates into the current bucket through `Connect`,
//! then the clock moves one window on, so every 21 steps (one cycle) each retained bucket has
//! been replaced. Reports, at the end of each cycle, the retained rows, the resident set and
//! live heap (and the largest live heap after any step of the cycle: merges make it vary),
//! and the interner tables, with stable keys and with a share of the source pods replaced
//! (new name, new label set) every bucket.
//!
//! `cargo bench --bench memory` runs 0 %, 10 % and 100 % of the pods replaced per bucket, each
//! in a fresh child process. `cargo bench --bench memory -- CHURN_PERCENT [KEYS [CYCLES]]` runs
//! one. Figures are printed as Markdown table rows for BENCHMARKS.md. Client and server share
//! the process and the allocator of the `eddy` binary; memory is the growth from before the
//! first update.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;

use eddy::proto::{Action, FlowUpdate, PolicyTrace};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::worker::clock::{Clock, ManualClock};
use support::cluster::{
    app, namespace_names, reporter, Pod, PolicyChoices, TcpFlow, DESTS, NAMESPACES, TRACES,
};
use support::heap::{live_heap_bytes, CountingAllocator};
use support::ingest::send_spread;
use support::measure::resident_bytes;
use support::process::{numeric_arguments, run_in_child};
use support::server::{connect, start_server, workers_per_core};
use tonic::transport::Channel;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;
const CLOSED_BUCKETS: i64 = 20;
/// Buckets ingested per cycle: the retained closed buckets and the current one.
const STEPS_PER_CYCLE: u64 = CLOSED_BUCKETS as u64 + 1;
const DEFAULT_KEYS: u64 = 50_000;
const DEFAULT_CYCLES: u64 = 3;
/// Keys per source pod: each pod talks to this many destinations.
const KEYS_PER_POD: u64 = 4;
const PORTS: [i64; KEYS_PER_POD as usize] = [80, 443, 5432, 8080];
/// Connect calls (one connection each) that ingest every step.
const STREAMS: usize = 4;
/// Updates a Connect call may have sent without a receipt.
const IN_FLIGHT: usize = 2048;

fn mebibytes(bytes: f64) -> f64 {
    bytes / (1u64 << 20) as f64
}

/// Bytes per retained row, or a dash when nothing is retained.
fn per_row(bytes: f64, rows: u64) -> String {
    if rows == 0 {
        "-".into()
    } else {
        format!("{:.0}", bytes / rows as f64)
    }
}

/// A 64-bit mix (splitmix64's finaliser), for hash-like pod name parts.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Trace `trace`: its enforced policy is `allow-TRACE`; its staged policy always denies.
fn policy_trace(trace: u64) -> (PolicyTrace, Action) {
    support::cluster::policy_trace(
        trace,
        PolicyChoices {
            enforced_name: format!("allow-{trace}"),
            enforced_tier: "default",
            pending_action: Action::Deny,
            pending_rule_index: (trace % 3) as i64,
        },
    )
}

/// The simulated cluster: `pods` source pods, each calling `KEYS_PER_POD` of a fixed set of
/// destinations. A source pod is replaced by generation: a new pod has a new name and a new
/// `pod-template-hash` label, so it brings a new string and a new label set.
struct Cluster {
    pods: u64,
    churn_percent: u64,
    dests: Vec<String>,
    namespaces: Vec<String>,
    dest_labels: Vec<Vec<String>>,
    traces: Vec<(PolicyTrace, Action)>,
}

impl Cluster {
    fn new(keys: u64, churn_percent: u64) -> Self {
        Cluster {
            pods: keys.div_ceil(KEYS_PER_POD),
            churn_percent,
            dests: (0..DESTS)
                .map(|d| format!("{}-{:010x}-{:05x}", app(d), mix(d) & 0xff_ffff_ffff, d))
                .collect(),
            namespaces: namespace_names(),
            dest_labels: (0..DESTS)
                .map(|d| vec![format!("app={}", app(d))])
                .collect(),
            traces: (0..TRACES).map(policy_trace).collect(),
        }
    }

    /// The generation of `pod` at `step`: `churn_percent` % of the pods move to a new
    /// generation at every step, spread evenly by the pod's phase.
    fn generation(&self, pod: u64, step: u64) -> u64 {
        (step * self.churn_percent + pod % 100) / 100
    }

    fn update(&self, key: u64, step: u64, bucket: i64) -> FlowUpdate {
        let pod = key % self.pods;
        let slot = key / self.pods;
        let dest = (pod * 7 + slot * 13) % DESTS;
        let app = app(pod);
        let instance = mix(pod ^ (self.generation(pod, step) << 32));
        TcpFlow {
            source: Pod {
                name: format!("{app}-{:010x}-{:05x}", instance & 0xff_ffff_ffff, pod),
                namespace: self.namespaces[(pod % NAMESPACES) as usize].clone(),
                labels: vec![
                    format!("app={app}"),
                    format!(
                        "pod-template-hash={:010x}",
                        (instance >> 24) & 0xff_ffff_ffff
                    ),
                ],
            },
            dest: Pod {
                name: self.dests[dest as usize].clone(),
                namespace: self.namespaces[(dest % NAMESPACES) as usize].clone(),
                labels: self.dest_labels[dest as usize].clone(),
            },
            port: PORTS[slot as usize % PORTS.len()],
            reporter: reporter(slot),
            trace: &self.traces[(dest % TRACES) as usize],
            packets_in: 10,
            packets_out: 12,
        }
        .update(bucket)
    }
}

/// Sends every key's update for `step` into `bucket`, spread over one Connect call per
/// channel with at most `IN_FLIGHT` unreceipted per call, and waits for every receipt.
async fn ingest_step(
    channels: &[Channel],
    cluster: &Arc<Cluster>,
    keys: u64,
    step: u64,
    bucket: i64,
) {
    let cluster = cluster.clone();
    send_spread(channels, keys, IN_FLIGHT, move |key| {
        cluster.update(key, step, bucket)
    })
    .await;
}

fn run_one(churn_percent: u64, keys: u64, cycles: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: CLOSED_BUCKETS,
        };
        let clock = Arc::new(ManualClock::new(NOW));
        let (state, address) = start_server(
            ServerConfig::new(workers_per_core(), retention),
            clock.clone(),
        )
        .await;
        let cluster = Arc::new(Cluster::new(keys, churn_percent));
        let mut channels = Vec::new();
        for _ in 0..STREAMS {
            channels.push(connect(address).await);
        }
        state.engine.sync().await.expect("the engine runs");
        let resident_before = resident_bytes();
        let heap_before = live_heap_bytes();
        let mut sent = 0;
        // The largest live heap seen after a step of the current cycle.
        let mut heap_peak: f64 = 0.0;
        for step in 0..cycles * STEPS_PER_CYCLE {
            if step > 0 {
                // The controller rolls retention at its next turn; the next read waits for
                // the retraction.
                clock.advance(WINDOW);
            }
            let bucket = retention.bucket_of(clock.now());
            ingest_step(&channels, &cluster, keys, step, bucket).await;
            sent += keys;
            let skipped = state.catalog.refused_total();
            assert_eq!(
                state.ingest.stored_total(),
                sent,
                "every update is stored: none is a replay or out of retention, and a full \
                 catalog table would have ended the calls"
            );
            // Idle turns let the workers merge their batches, as engine.rs does before it
            // measures.
            for _ in 0..20 {
                state.engine.sync().await.expect("the engine runs");
            }
            let heap = live_heap_bytes().saturating_sub(heap_before) as f64;
            heap_peak = heap_peak.max(heap);
            if (step + 1) % STEPS_PER_CYCLE != 0 {
                continue;
            }
            let sizes = state.engine.sizes().await.expect("the engine runs");
            if skipped == 0 {
                assert_eq!(
                    sizes.flow_rows,
                    keys * STEPS_PER_CYCLE,
                    "a full retention holds every key in each retained bucket"
                );
            }
            let resident = resident_bytes().saturating_sub(resident_before) as f64;
            let catalog = &state.catalog;
            println!(
                "| {churn_percent} % | {} | {} | {} | {} | {:.1} MiB | {:.1} / {:.1} MiB | {} | {} | {} | {} | {} | {skipped} |",
                (step + 1) / STEPS_PER_CYCLE,
                step + 1,
                sizes.flow_rows,
                sizes.hint_rows,
                mebibytes(resident),
                mebibytes(heap),
                mebibytes(heap_peak),
                per_row(resident, sizes.flow_rows),
                per_row(heap, sizes.flow_rows),
                catalog.symbols.len(),
                catalog.label_sets.len(),
                catalog.traces.len(),
            );
            heap_peak = 0.0;
        }
    });
}

fn main() {
    let args = numeric_arguments("CHURN_PERCENT [KEYS [CYCLES]]");
    if let [churn_percent, rest @ ..] = &args[..] {
        run_one(
            *churn_percent,
            rest.first().copied().unwrap_or(DEFAULT_KEYS),
            rest.get(1).copied().unwrap_or(DEFAULT_CYCLES),
        );
        return;
    }
    println!("| pods replaced per bucket | cycle | buckets ingested | retained (key, bucket) rows | hint rows | resident growth | live heap growth, at the end / peak of the cycle | resident bytes per row | heap bytes per row (at the end) | interned strings | label sets | traces | calls ended (catalog full) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for churn_percent in [0u64, 10, 100] {
        run_in_child(
            &[churn_percent.to_string()],
            &format!("the variant with {churn_percent} % of pods replaced per bucket"),
        );
    }
}
