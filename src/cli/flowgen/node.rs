//! One simulated node of `eddy flowgen`: a `Connect` stream that sends the node's flushes,
//! at most `window` updates ahead of their receipts, and on a broken stream reconnects with
//! backoff and replays what it sent in the last `replay_span` seconds, as Felix does.
//!
//! State per node: the updates waiting to be sent, the ones in flight (a copy only of those
//! too old to be replayed from the [`History`] of recent flushes), and that history.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::cli::connect::error_chain;
use crate::cli::error::{code_name, one_line};
use crate::cli::flowgen::pace::Pacer;
use crate::cli::flowgen::plan::{Pacing, Plan};
use crate::cli::flowgen::replay::History;
use crate::cli::flowgen::report::{bump, Counters, Histogram};
use crate::cli::output::unix_now;
use crate::proto::flow_collector_client::FlowCollectorClient;
use crate::proto::FlowUpdate;
use crate::synth::Cluster;

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

struct Pending {
    seq: u64,
    update: FlowUpdate,
    replay: bool,
}

struct InFlight {
    sent_at: Instant,
    copy: Option<FlowUpdate>,
}

enum End {
    Done,
    Stopped,
    Failed { opened: bool, reason: String },
}

/// One node and its connection state.
pub struct Node {
    id: usize,
    cluster: Arc<Cluster>,
    endpoint: Endpoint,
    plan: Arc<Plan>,
    pacer: Option<Arc<Pacer>>,
    counters: Arc<Counters>,
    rng: SmallRng,
    jitter: SmallRng,
    next_seq: u64,
    backfill_next: usize,
    live_start: Option<Instant>,
    live_next: u64,
    pending: VecDeque<Pending>,
    inflight: VecDeque<InFlight>,
    history: History,
    latency: Histogram,
}

fn flow_time(update: &FlowUpdate) -> i64 {
    update.flow.as_ref().map_or(0, |f| f.end_time)
}

impl Node {
    /// Node `id`; `rng` drives its flows, `jitter` its backoff.
    pub fn new(
        id: usize,
        (cluster, plan): (Arc<Cluster>, Arc<Plan>),
        endpoint: Endpoint,
        (pacer, counters): (Option<Arc<Pacer>>, Arc<Counters>),
        (rng, jitter): (SmallRng, SmallRng),
    ) -> Node {
        let history = History::new(plan.replay_span);
        Node {
            id,
            cluster,
            endpoint,
            plan,
            pacer,
            counters,
            rng,
            jitter,
            next_seq: 0,
            backfill_next: 0,
            live_start: None,
            live_next: 0,
            pending: VecDeque::new(),
            inflight: VecDeque::new(),
            history,
            latency: Histogram::default(),
        }
    }

    fn generate(&mut self, time: i64) {
        let before = self.rng.clone();
        let flows = self.cluster.report(self.id, time, &mut self.rng);
        let seq = self.next_seq;
        self.next_seq += 1;
        let c = &self.counters;
        bump(&c.flushes, 1);
        bump(&c.generated, flows.len() as u64);
        for flow in &flows {
            bump(&c.packets_in, flow.packets_in.unsigned_abs());
            bump(&c.packets_out, flow.packets_out.unsigned_abs());
            bump(&c.bytes_in, flow.bytes_in.unsigned_abs());
            bump(&c.bytes_out, flow.bytes_out.unsigned_abs());
        }
        self.history.record(seq, time, before, unix_now());
        let updates = flows.into_iter().map(|flow| Pending {
            seq,
            update: FlowUpdate { flow: Some(flow) },
            replay: false,
        });
        self.pending.extend(updates);
    }

    /// Generates the flushes that are due; returns when the next one is due, if it is later.
    fn refill(&mut self, now: Instant) -> Option<Instant> {
        let ahead = self.plan.window.max(1024);
        while self.backfill_next < self.plan.backfill.len() {
            if self.pending.len() >= ahead {
                return None;
            }
            self.generate(self.plan.backfill[self.backfill_next]);
            self.backfill_next += 1;
        }
        let live_start = *self.live_start.get_or_insert(now);
        match self.plan.pacing {
            Pacing::Interval { flushes } => {
                while flushes.is_none_or(|limit| self.live_next < limit) {
                    let offset = self.plan.interval.mul_f64(self.live_next as f64);
                    let due = live_start + offset;
                    if due > now {
                        return Some(due);
                    }
                    self.generate(unix_now());
                    self.live_next += 1;
                }
            }
            Pacing::Max { duration } => {
                if self.pending.is_empty() && duration.is_none_or(|d| now < live_start + d) {
                    self.generate(unix_now());
                    self.live_next += 1;
                }
            }
        }
        None
    }

    fn schedule_done(&self, now: Instant) -> bool {
        let live_start = match self.live_start {
            Some(start) if self.backfill_next >= self.plan.backfill.len() => start,
            _ => return false,
        };
        match self.plan.pacing {
            Pacing::Interval { flushes } => flushes.is_some_and(|limit| self.live_next >= limit),
            Pacing::Max { duration } => duration.is_some_and(|d| now >= live_start + d),
        }
    }

    /// After a broken stream: everything sent in the replay span goes again, regenerated from
    /// the history, after copies of older updates that never got a receipt.
    fn requeue_for_replay(&mut self) {
        let mut replay: Vec<Pending> = self
            .inflight
            .drain(..)
            .filter_map(|f| f.copy)
            .map(|update| Pending {
                seq: u64::MAX,
                update,
                replay: true,
            })
            .collect();
        let recent = self.history.replay(&self.cluster, self.id, unix_now());
        replay.extend(recent.into_iter().map(|(seq, update)| Pending {
            seq,
            update,
            replay: true,
        }));
        for entry in replay.into_iter().rev() {
            self.pending.push_front(entry);
        }
    }

    fn sent(&mut self, entry: Pending, now: Instant) -> FlowUpdate {
        let covered = if entry.replay {
            bump(&self.counters.replayed, 1);
            flow_time(&entry.update) >= self.history.cutoff(unix_now())
        } else {
            self.history.sent(entry.seq)
        };
        let copy = (!covered).then(|| entry.update.clone());
        self.inflight.push_back(InFlight { sent_at: now, copy });
        bump(&self.counters.sent, 1);
        if let Some(pacer) = &self.pacer {
            pacer.take(now);
        }
        entry.update
    }

    async fn session(&mut self, stop: &mut watch::Receiver<bool>, needs_replay: &mut bool) -> End {
        let failed = |opened, reason: String| End::Failed {
            opened,
            reason: one_line(&reason),
        };
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(error) => return failed(false, error_chain(&error)),
        };
        let (tx, rx) = mpsc::channel::<FlowUpdate>(64);
        let mut receipts = match FlowCollectorClient::new(channel)
            .connect(ReceiverStream::new(rx))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                return failed(
                    false,
                    format!("{}: {}", code_name(status.code()), status.message()),
                )
            }
        };
        if *needs_replay {
            self.requeue_for_replay();
            bump(&self.counters.reconnects, 1);
            *needs_replay = false;
        }
        loop {
            let now = Instant::now();
            let wake = self.refill(now);
            if self.schedule_done(now) && self.pending.is_empty() && self.inflight.is_empty() {
                return End::Done;
            }
            let window_open = !self.pending.is_empty() && self.inflight.len() < self.plan.window;
            let pace_at = self
                .pacer
                .as_ref()
                .filter(|_| window_open)
                .map(|p| p.ready_at())
                .filter(|&at| at > now);
            let can_send = window_open && pace_at.is_none();
            let sleep_until = [wake, pace_at].into_iter().flatten().min();
            tokio::select! {
                biased;
                _ = stop.changed() => return End::Stopped,
                message = receipts.message() => match message {
                    Ok(Some(_)) => {
                        if let Some(entry) = self.inflight.pop_front() {
                            self.latency.record(entry.sent_at.elapsed());
                        }
                        bump(&self.counters.receipted, 1);
                    }
                    Ok(None) => return failed(true, "the server closed the stream".into()),
                    Err(status) => return failed(true, format!("{}: {}", code_name(status.code()), status.message())),
                },
                permit = tx.reserve(), if can_send => {
                    let Ok(permit) = permit else {
                        return failed(true, "the request stream closed".into());
                    };
                    if let Some(entry) = self.pending.pop_front() {
                        let update = self.sent(entry, Instant::now());
                        permit.send(update);
                    }
                }
                _ = tokio::time::sleep_until(sleep_until.unwrap_or(now).into()), if sleep_until.is_some() => {}
            }
        }
    }

    /// Runs until every flush is sent and receipted, or `stop` turns true; returns the
    /// receipt latencies.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Histogram {
        let mut backoff = FIRST_BACKOFF;
        let mut needs_replay = false;
        while !*stop.borrow() {
            match self.session(&mut stop, &mut needs_replay).await {
                End::Done | End::Stopped => break,
                End::Failed { opened, reason } => {
                    *self.counters.last_error.lock() = Some(format!("node {}: {reason}", self.id));
                    if opened {
                        needs_replay = true;
                        backoff = FIRST_BACKOFF;
                    }
                    let pause = backoff.mul_f64(self.jitter.random_range(0.75..1.25));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
        self.latency
    }
}
