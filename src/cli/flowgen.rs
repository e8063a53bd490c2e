//! `eddy flowgen`: a Felix-like traffic generator. Each simulated node holds one `Connect`
//! stream and reports its flows (from [`crate::synth::Cluster`]) every `--interval`, with
//! `start_time = end_time =` the flush time; `--backfill` first sends history. Runs repeat for
//! a `--seed`. The summary (text, or `--json`) gives totals to compare with what the server
//! then lists, the receipt rate and the send-to-receipt latency. `--profile realistic` sends
//! the benchmark workload instead ([`realistic`]).

pub mod node;
pub mod pace;
pub mod plan;
pub mod realistic;
pub mod replay;
pub mod report;

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::watch;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::flowgen::node::Node;
use crate::cli::flowgen::pace::Pacer;
use crate::cli::flowgen::plan::Plan;
use crate::cli::flowgen::report::{
    progress_line, summary_json, summary_text, Counters, Histogram, Summary,
};
use crate::cli::output::unix_now;
use crate::cli::time::parse_duration;
use crate::synth::Cluster;

/// The traffic `eddy flowgen` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// Nodes reporting their flows every --interval, as a small cluster would.
    Cluster,
    /// The benchmark workload: --keys flows of about 510 bytes each (unique source pods,
    /// 3-6 labels a side, policy traces of 1-3 hits, in the four buckets of 15 s before now)
    /// cycled back to back on --nodes streams over one connection, each send a distinct
    /// update.
    Realistic,
}

/// `eddy flowgen`.
#[derive(Debug, Args)]
pub struct FlowgenArgs {
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The traffic to send.
    #[arg(long, value_enum, default_value_t = Profile::Cluster)]
    pub profile: Profile,
    /// With `--profile realistic`: distinct flow keys sent in a cycle.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub keys: u64,
    /// With `--profile realistic`: send every key this many times, then stop [default: until
    /// --duration or Ctrl-C].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub cycles: Option<u64>,
    /// Simulated nodes, one `Connect` stream each.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub nodes: u32,
    /// Distinct flows each node reports at every flush.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub flows_per_node: u32,
    /// Time between a node's flushes.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long to send live flushes (one at the start, then one per --interval); `0s` sends
    /// only the backfill [default: until Ctrl-C].
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// First send this much history, one flush per --interval, e.g. `45m`.
    #[arg(long, value_parser = parse_duration)]
    pub backfill: Option<Duration>,
    /// Cap on updates per second, all nodes together.
    #[arg(long, value_name = "UPDATES", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "max")]
    pub rate: Option<u32>,
    /// Ignore --interval: flush again as soon as the previous flush is sent.
    #[arg(long)]
    pub max: bool,
    /// Send one update and wait for its receipt before the next, exactly as Felix does.
    #[arg(long, conflicts_with = "window")]
    pub stop_and_wait: bool,
    /// Updates a node may have in flight (sent, not yet receipted).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub window: u32,
    /// How much a node replays after it reconnects.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub replay: Duration,
    /// Seed of the cluster and of every counter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the summary as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
}

fn node_seed(seed: u64, node: usize, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (node as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ stream
}

/// How `args` pace the updates, in words for the summary.
fn pacing(args: &FlowgenArgs) -> String {
    let mut words = vec![if args.max || args.profile == Profile::Realistic {
        "back to back".to_string()
    } else {
        format!("every {:?}", args.interval)
    }];
    words.push(if args.stop_and_wait {
        "stop-and-wait".into()
    } else {
        format!("window {}", args.window)
    });
    if let Some(rate) = args.rate {
        words.push(format!("at most {rate}/s"));
    }
    words.join(", ")
}

/// Redraws the progress line on standard error every half second until `done` turns true.
async fn show_progress(counters: Arc<Counters>, mut done: watch::Receiver<bool>) {
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::select! {
            _ = done.changed() => break,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let receipted = counters
            .receipted
            .load(std::sync::atomic::Ordering::Relaxed);
        let rate = (receipted - last.1) as f64 / last.0.elapsed().as_secs_f64().max(1e-3);
        last = (Instant::now(), receipted);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{}", progress_line(&counters, rate));
        let _ = err.flush();
    }
    let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
}

/// Runs `eddy flowgen`.
pub async fn run(args: FlowgenArgs) -> Result<(), CliError> {
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // Polling once installs the handler now, so Ctrl-C while connecting is caught too.
    if futures::FutureExt::now_or_never(&mut interrupted).is_some() {
        return Ok(());
    }
    let endpoint = args.server.endpoint()?;
    let plan = Arc::new(Plan::new(&args, unix_now())?);
    // One probe first, so a wrong address or TLS setup fails at once with one clear line.
    endpoint
        .connect()
        .await
        .map_err(|error| args.server.connect_error(&error))?;
    let nodes = args.nodes as usize;
    let counters = Arc::new(Counters::default());
    let (stop, stopped) = watch::channel(false);
    let (progress_done, progress_rx) = watch::channel(false);
    let progress = (std::io::stderr().is_terminal() && !args.quiet)
        .then(|| tokio::spawn(show_progress(counters.clone(), progress_rx)));
    let (run, start, keys) = match args.profile {
        Profile::Cluster => {
            let cluster = Arc::new(Cluster::generate(
                args.seed,
                nodes,
                args.flows_per_node as usize,
            ));
            let start = Instant::now();
            let pacer = args.rate.map(|rate| Arc::new(Pacer::new(rate, start)));
            let run = run_cluster(
                &args,
                (cluster.clone(), plan),
                endpoint,
                (pacer, counters.clone()),
                stopped,
            );
            (run, start, cluster.distinct_keys())
        }
        Profile::Realistic => {
            let keys = realistic::key_updates(args.keys, realistic::last_four_buckets(unix_now()));
            let channel = endpoint
                .connect()
                .await
                .map_err(|error| args.server.connect_error(&error))?;
            let start = Instant::now();
            let pacer = args.rate.map(|rate| Arc::new(Pacer::new(rate, start)));
            let plan = realistic::RealisticPlan {
                streams: nodes,
                window: plan.window,
                cycles: args.cycles,
                deadline: args.duration.map(|duration| start + duration),
            };
            let run: futures::future::BoxFuture<'static, Histogram> = Box::pin(realistic::run(
                channel,
                keys,
                plan,
                (pacer, counters.clone()),
                stopped,
            ));
            (run, start, args.keys as usize)
        }
    };
    tokio::pin!(run);
    let mut was_interrupted = false;
    let latency = loop {
        tokio::select! {
            latency = &mut run => break latency,
            _ = &mut interrupted, if !was_interrupted => {
                was_interrupted = true;
                let _ = stop.send(true);
            }
        }
    };
    let _ = progress_done.send(true);
    if let Some(progress) = progress {
        let _ = progress.await;
    }
    let summary = Summary {
        setup: (
            nodes,
            args.flows_per_node as usize,
            args.interval.as_secs_f64(),
            args.seed,
        ),
        keys,
        elapsed: start.elapsed(),
        interrupted: was_interrupted,
        pacing: pacing(&args),
        profile: args.profile,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &summary_json(&summary, &counters, &latency))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(summary_text(&summary, &counters, &latency).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Runs one node task per `--nodes` for the cluster profile until they finish; returns their
/// merged latencies.
fn run_cluster(
    args: &FlowgenArgs,
    (cluster, plan): (Arc<Cluster>, Arc<Plan>),
    endpoint: tonic::transport::Endpoint,
    (pacer, counters): (Option<Arc<Pacer>>, Arc<Counters>),
    stopped: watch::Receiver<bool>,
) -> futures::future::BoxFuture<'static, Histogram> {
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..args.nodes as usize {
        let rngs = (
            SmallRng::seed_from_u64(node_seed(args.seed, id, 1)),
            SmallRng::seed_from_u64(node_seed(args.seed, id, 2)),
        );
        let node = Node::new(
            id,
            (cluster.clone(), plan.clone()),
            endpoint.clone(),
            (pacer.clone(), counters.clone()),
            rngs,
        );
        tasks.spawn(node.run(stopped.clone()));
    }
    Box::pin(async move {
        let mut latency = Histogram::default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(histogram) => latency.merge(&histogram),
                Err(error) => {
                    *counters.last_error.lock() = Some(format!("a node task failed: {error}"))
                }
            }
        }
        latency
    })
}
