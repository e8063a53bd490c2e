//! The stream hub: the one task that owns every live subscription (SPEC §7).
//!
//! At every epoch end `T` it lists bucket `[T-2W, T-W)` once (a List that closes a tick, so
//! it sees everything receipted), refreshes each filter group against newly interned strings
//! and traces, and routes each row through the [`GroupIndex`] to the matching groups.
//! Subscriptions with identical filters share one group, evaluated once per row. A row is
//! encoded once and appended, framed, to the run of each group it matches; at the end of the
//! bucket each group's run becomes one shared [`Chunk`] queued to every member with one
//! wake-up, so the cost per subscriber is one queue push per bucket, not one per row.
//!
//! A new subscription with a start in an already emitted bucket gets a backfill task that
//! lists those buckets, oldest first, while live rows wait in the subscriber's backlog; the
//! hub registers it between two emissions, so nothing is missed or sent twice (SPEC §7.3).
//!
//! Bounds: `max_streams` slots, and optionally `per_peer` per client address
//! (`RESOURCE_EXHAUSTED` beyond); `buffer` results per subscriber, in its queue or backlog;
//! `queue` new subscriptions waiting for the hub (`RESOURCE_EXHAUSTED` beyond); `backfills`
//! backfills running at once. A subscriber is ended with `RESOURCE_EXHAUSTED` ("consumer too
//! slow"), never waited for, when a bucket would take it over its buffer, or when an epoch is
//! due while an earlier bucket is still in its queue (not yet taken by HTTP/2): so no stream
//! still open is more than one window behind, and what the hub holds for a stream is at most
//! one bucket of its rows. Ending a stream frees its slot and queued results at once, whether
//! or not its client reads (SPEC §12.5).
//!
//! Inbox: new subscriptions come through a bounded queue; departures (a client gone, a
//! backfill sent) through a second bounded queue of one message per subscription at most,
//! and a departure that finds it full is caught by the sweep of released streams at every
//! epoch; shutdown through a watch.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::Bucket;
use eddy_dataflows::queries::list::ListRow;
use prost::Message;
use tokio::sync::{mpsc, watch, Semaphore};
use tonic::Status;

use crate::api::convert::RowConverter;
use crate::api::filter::{FilterMatcher, Resolved};
use crate::api::status::ApiError;
use crate::catalog::Catalog;
use crate::proto::Filter;
use crate::retention::Retention;
use crate::streams::admission::{shutting_down, Admission, HubInbox};
use crate::streams::backfill::{
    backfill_task, bucket_rows_query, Backfill, BackfillContext, BackfillGuard,
};
use crate::streams::encoded::{encode, Chunk, Frames};
use crate::streams::index::{indexed_sizes, GroupId, GroupIndex};
use crate::streams::limits::{StreamCounters, StreamLimits};
use crate::streams::outbound::{Departure, Offer, Outbound, Outbox};
use crate::worker::Engine;

/// A subscription as the hub receives it.
pub struct Subscription {
    id: u64,
    filter: Filter,
    matcher: FilterMatcher,
    start: Option<i64>,
    outbox: Arc<Outbox>,
}

struct Subscriber {
    group: GroupId,
    min_bucket: Bucket,
    outbox: Arc<Outbox>,
    /// Live buckets held back while the backfill is sent.
    backlog: Option<Backlog>,
}

#[derive(Default)]
struct Backlog {
    chunks: Vec<Chunk>,
    results: usize,
}

struct Group {
    /// The encoded request filter this group was made for.
    filter: Vec<u8>,
    matcher: FilterMatcher,
    compiled: FlowFilter,
    resolved: Resolved,
    members: Vec<u64>,
    /// This bucket's rows that match, framed.
    frames: Frames,
}

/// The handle the `Flows` service uses. Cheap to clone.
#[derive(Clone)]
pub struct StreamHub {
    admission: Admission<Box<Subscription>>,
    emitted: watch::Receiver<Bucket>,
}

impl StreamHub {
    /// Starts the hub task on the current tokio runtime.
    pub fn start(
        engine: Engine,
        catalog: Arc<Catalog>,
        retention: Retention,
        now: i64,
        limits: StreamLimits,
    ) -> StreamHub {
        let (admission, inbox) = Admission::new(limits);
        let last_emitted = retention.bucket_of(now) - 2 * retention.window;
        let (emitted_tx, emitted) = watch::channel(last_emitted);
        let hub = Hub {
            epochs: engine.epochs(),
            engine,
            catalog,
            retention,
            limits,
            counters: admission.counters().clone(),
            departures: admission.departures().clone(),
            turns: Arc::new(Semaphore::new(limits.backfills.max(1))),
            last_emitted,
            emitted: emitted_tx,
            subscribers: HashMap::new(),
            groups: HashMap::new(),
            group_of_filter: HashMap::new(),
            index: GroupIndex::default(),
            index_stale: false,
            next_group: 0,
        };
        tokio::spawn(hub.run(inbox));
        StreamHub { admission, emitted }
    }

    /// The last bucket the hub has handled (emitted, or skipped without subscribers): its rows
    /// are queued to every stream that was not ended.
    pub fn emitted(&self) -> watch::Receiver<Bucket> {
        self.emitted.clone()
    }

    /// Ends every open stream with `UNAVAILABLE` and refuses new ones (SPEC §11.6).
    pub fn shutdown(&self) {
        self.admission.shutdown();
    }

    /// The hub's counters.
    pub fn counters(&self) -> &StreamCounters {
        self.admission.counters()
    }

    /// Streams held by `peer` under the per-peer cap (0 when the cap is off).
    pub fn streams_of(&self, peer: IpAddr) -> usize {
        self.admission.streams_of(peer)
    }

    /// Opens a stream for a client at `peer`. `start` is the absolute start time, or `None`
    /// for no backfill.
    pub fn subscribe(
        &self,
        filter: Filter,
        start: Option<i64>,
        peer: Option<IpAddr>,
    ) -> Result<Outbound, ApiError> {
        if self.admission.stopped() {
            return Err(shutting_down());
        }
        let matcher = FilterMatcher::new(Some(&filter))?;
        self.admission.open(peer, |id, outbox| {
            Box::new(Subscription {
                id,
                filter,
                matcher,
                start,
                outbox,
            })
        })
    }
}

struct Hub {
    engine: Engine,
    catalog: Arc<Catalog>,
    retention: Retention,
    limits: StreamLimits,
    counters: Arc<StreamCounters>,
    departures: mpsc::Sender<Departure>,
    turns: Arc<Semaphore>,
    epochs: watch::Receiver<Bucket>,
    last_emitted: Bucket,
    emitted: watch::Sender<Bucket>,
    subscribers: HashMap<u64, Subscriber>,
    groups: HashMap<GroupId, Group>,
    group_of_filter: HashMap<Vec<u8>, GroupId>,
    index: GroupIndex,
    index_stale: bool,
    next_group: GroupId,
}

impl Hub {
    async fn run(mut self, inbox: HubInbox<Box<Subscription>>) {
        let HubInbox {
            subscriptions: mut inbox,
            mut departed,
            mut stopping,
        } = inbox;
        loop {
            tokio::select! {
                _ = stopping.changed() => return self.stop(inbox),
                request = inbox.recv() => match request {
                    Some(subscription) => self.add(*subscription),
                    None => return self.stop(inbox),
                },
                Some(departure) = departed.recv() => match departure {
                    Departure::Left(id) => self.remove(id, None),
                    Departure::BackfillDone(id) => self.finish_backfill(id),
                },
                changed = self.epochs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let current = *self.epochs.borrow_and_update();
                    self.emit_through(current - 2 * self.retention.window).await;
                }
            }
        }
    }

    /// Ends every subscription, and every one still waiting in the queue, with
    /// `UNAVAILABLE`; the hub stops right after.
    fn stop(&mut self, mut inbox: mpsc::Receiver<Box<Subscription>>) {
        inbox.close();
        while let Ok(waiting) = inbox.try_recv() {
            waiting.outbox.end(shutdown_status());
        }
        let ids: Vec<u64> = self.subscribers.keys().copied().collect();
        for id in ids {
            self.remove(id, Some(shutdown_status()));
        }
    }

    fn add(&mut self, subscription: Subscription) {
        let Subscription {
            id,
            filter,
            matcher,
            start,
            outbox,
        } = subscription;
        if outbox.is_released() {
            // The client went away before the hub registered it.
            return;
        }
        let encoded = filter.encode_to_vec();
        let group = match self.group_of_filter.get(&encoded) {
            Some(group) => *group,
            None => {
                let group = self.next_group;
                self.next_group += 1;
                let compiled = matcher.unresolved();
                self.groups.insert(
                    group,
                    Group {
                        filter: encoded.clone(),
                        matcher,
                        compiled,
                        resolved: Resolved::default(),
                        members: Vec::new(),
                        frames: Frames::default(),
                    },
                );
                self.group_of_filter.insert(encoded, group);
                self.index_stale = true;
                group
            }
        };
        self.refresh_group(group);
        let floor = self.retention.oldest(*self.epochs.borrow());
        let min_bucket = start.map_or(Bucket::MIN, |start| {
            self.retention.bucket_of(start).max(floor)
        });
        let backfill = start.is_some() && min_bucket <= self.last_emitted;
        if let Some(group) = self.groups.get_mut(&group) {
            group.members.push(id);
        }
        let subscriber = Subscriber {
            group,
            min_bucket,
            outbox: outbox.clone(),
            backlog: backfill.then(Backlog::default),
        };
        self.subscribers.insert(id, subscriber);
        self.count_holdings();
        if backfill {
            let backfill = Backfill {
                id,
                from: min_bucket,
                to: self.last_emitted + self.retention.window,
                window: self.retention.window,
                filter: self.groups[&group].compiled.clone(),
            };
            let context = BackfillContext {
                engine: self.engine.clone(),
                catalog: self.catalog.clone(),
                turns: self.turns.clone(),
                counters: self.counters.clone(),
                departures: self.departures.clone(),
            };
            self.counters.backfills.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(backfill_task(
                backfill,
                context,
                outbox,
                BackfillGuard(self.counters.backfills.clone()),
            ));
        }
    }

    fn remove(&mut self, id: u64, ending: Option<Status>) {
        let Some(subscriber) = self.subscribers.remove(&id) else {
            return;
        };
        match ending {
            Some(status) => subscriber.outbox.end(status),
            None => subscriber.outbox.release(),
        };
        if let Some(group) = self.groups.get_mut(&subscriber.group) {
            group.members.retain(|member| *member != id);
            if group.members.is_empty() {
                if let Some(group) = self.groups.remove(&subscriber.group) {
                    self.group_of_filter.remove(&group.filter);
                }
                self.index_stale = true;
            }
        }
        self.count_holdings();
    }

    /// Publishes how many subscriptions and groups the hub holds.
    fn count_holdings(&self) {
        self.counters
            .subscriptions
            .store(self.subscribers.len(), Ordering::Relaxed);
        self.counters
            .groups
            .store(self.groups.len(), Ordering::Relaxed);
    }

    fn finish_backfill(&mut self, id: u64) {
        let Some(subscriber) = self.subscribers.get_mut(&id) else {
            return;
        };
        let backlog = subscriber.backlog.take().unwrap_or_default();
        if subscriber.outbox.push_all(backlog.chunks) {
            self.counters
                .delivered
                .fetch_add(backlog.results as u64, Ordering::Relaxed);
        } else {
            self.remove(id, None);
        }
    }

    /// Ends a subscriber that fell behind.
    fn end_too_slow(&mut self, id: u64, why: &str) {
        self.counters.too_slow.fetch_add(1, Ordering::Relaxed);
        self.remove(
            id,
            Some(Status::resource_exhausted(format!(
                "consumer too slow: {why}; resume with a new start_time_gte"
            ))),
        );
    }

    /// Ends every live subscriber whose queue still holds an earlier bucket now that the next
    /// epoch is due: none still open is more than one window behind.
    fn end_late(&mut self) {
        let late: Vec<u64> = self
            .subscribers
            .iter()
            .filter(|(_, subscriber)| {
                subscriber.backlog.is_none() && !subscriber.outbox.is_drained()
            })
            .map(|(id, _)| *id)
            .collect();
        self.counters
            .late
            .fetch_add(late.len() as u64, Ordering::Relaxed);
        for id in late {
            self.end_too_slow(
                id,
                "the previous bucket was still unsent when the next was due",
            );
        }
    }

    /// Removes the subscriptions whose client went away without the hub hearing of it.
    fn sweep_released(&mut self) {
        let released: Vec<u64> = self
            .subscribers
            .iter()
            .filter(|(_, subscriber)| subscriber.outbox.is_released())
            .map(|(id, _)| *id)
            .collect();
        for id in released {
            self.remove(id, None);
        }
    }

    /// Emits every bucket after the last emitted one up to `through`, oldest first.
    async fn emit_through(&mut self, through: Bucket) {
        self.sweep_released();
        self.end_late();
        let window = self.retention.window;
        while self.last_emitted < through {
            let bucket = self.last_emitted + window;
            self.last_emitted = bucket;
            if self.subscribers.is_empty() || bucket < self.retention.oldest(*self.epochs.borrow())
            {
                continue;
            }
            let query = bucket_rows_query(bucket, bucket + window, window, FlowFilter::default());
            let Ok(partials) = self.engine.list(query).await else {
                return;
            };
            // Resolve filters only now: every string and trace in these rows was interned
            // before the List ran, so none of them is unknown to the groups.
            self.refresh_groups();
            self.counters.epochs_emitted.fetch_add(1, Ordering::Relaxed);
            let mut candidates = Vec::new();
            let mut scratch = Vec::new();
            // One converter for the bucket: a trace shared by many rows is decoded once.
            let catalog = self.catalog.clone();
            let mut converter = RowConverter::new(&catalog);
            for row in partials.into_iter().flat_map(|partial| partial.rows) {
                self.route(&row, &mut converter, &mut candidates, &mut scratch);
            }
            self.deliver(bucket);
        }
        let queued = self
            .subscribers
            .values()
            .map(|subscriber| subscriber.outbox.queued_results())
            .sum();
        self.counters.queued.store(queued, Ordering::Relaxed);
        self.emitted.send_replace(self.last_emitted);
    }

    /// Queues each group's run of this bucket to its members, as one shared chunk.
    fn deliver(&mut self, bucket: Bucket) {
        let buffer = self.limits.buffer;
        let mut delivered = 0u64;
        let mut overflowed = Vec::new();
        let mut gone = Vec::new();
        for group in self.groups.values_mut() {
            if group.frames.is_empty() {
                continue;
            }
            let chunk = group.frames.take();
            for member in &group.members {
                let Some(subscriber) = self.subscribers.get_mut(member) else {
                    continue;
                };
                if bucket < subscriber.min_bucket {
                    continue;
                }
                let offer = match subscriber.backlog.as_mut() {
                    Some(backlog) if backlog.results + chunk.results() > buffer => Offer::Full,
                    Some(backlog) => {
                        backlog.results += chunk.results();
                        backlog.chunks.push(chunk.clone());
                        continue;
                    }
                    None => subscriber.outbox.offer(chunk.clone(), buffer),
                };
                match offer {
                    Offer::Queued => delivered += chunk.results() as u64,
                    Offer::Full => overflowed.push(*member),
                    Offer::Released => gone.push(*member),
                }
            }
        }
        self.counters
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
        for id in overflowed {
            self.end_too_slow(id, "more results than the stream's buffer holds");
        }
        for id in gone {
            self.remove(id, None);
        }
    }

    /// Resolves one group against what was interned since it was last resolved.
    fn refresh_group(&mut self, id: GroupId) {
        if let Some(group) = self.groups.get_mut(&id) {
            let before = indexed_sizes(&group.compiled);
            group.resolved =
                group
                    .matcher
                    .resolve(&mut group.compiled, &self.catalog, group.resolved);
            if indexed_sizes(&group.compiled) != before {
                self.index_stale = true;
            }
        }
    }

    /// Resolves every group against what was interned since, and rebuilds the index if needed.
    fn refresh_groups(&mut self) {
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in ids {
            self.refresh_group(id);
        }
        if self.index_stale {
            self.index =
                GroupIndex::build(self.groups.iter().map(|(id, group)| (*id, &group.compiled)));
            self.index_stale = false;
        }
    }

    /// Appends `row`, encoded once, to the run of every group it matches.
    fn route(
        &mut self,
        row: &ListRow,
        converter: &mut RowConverter<'_>,
        candidates: &mut Vec<GroupId>,
        scratch: &mut Vec<u8>,
    ) {
        candidates.clear();
        self.index.candidates(&row.key, candidates);
        let mut encoded = false;
        for group in candidates.iter() {
            let Some(group) = self.groups.get_mut(group) else {
                continue;
            };
            if group.members.is_empty() || !group.compiled.matches(&row.key) {
                continue;
            }
            if !encoded {
                encode(&converter.flow_result(row), scratch);
                encoded = true;
            }
            group.frames.push_encoded(scratch);
        }
    }
}

fn shutdown_status() -> Status {
    Status::unavailable("the server is shutting down")
}
