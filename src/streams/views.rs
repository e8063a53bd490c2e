//! The view hub: the one task that owns every `Views.Subscribe` subscription (SPEC §14.2).
//!
//! New subscriptions are registered in batches: one snapshot read of their view
//! ([`Watch::Snapshot`]) serves every subscription that arrived together, and the changes that
//! read also took are kept for the view's existing subscribers until the next epoch. At every
//! epoch end the hub asks each watched view for its changes since the last read
//! ([`Watch::Changes`]): the workers compute them from the view's arrangement, so the cost of
//! an epoch grows with the rows that changed, not with the view. Each changed row is resolved
//! and encoded once, appended to the run of every filter group it matches, and each group's
//! run, closed by a mark, is one shared [`Chunk`] queued to every member.
//!
//! Bounds and endings are those of `Flows.Stream` (SPEC §7.5, §11.6, §12.5), with the same
//! code: slots under the same limits ([`Slots`]), the same [`Outbox`] and [`Outbound`] body, a
//! bounded queue of new subscriptions, `buffer` results per subscriber. A subscriber is ended
//! with `RESOURCE_EXHAUSTED`, never waited for, when its snapshot or an epoch's changes would
//! take it over its buffer, or when an epoch is due while an earlier one is still in its
//! queue. Shutdown ends every subscription with `UNAVAILABLE`. A view nobody watches any more
//! is told to stop recording its changes.

use std::cmp::Ordering as Order;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use eddy_dataflows::model::Bucket;
use eddy_dataflows::views::registry::{Row, ViewChanges, Watch};
use eddy_dataflows::views::REGISTERED;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::Status;

use crate::api::status::ApiError;
use crate::api::views::{columns, wire_row};
use crate::catalog::Catalog;
use crate::proto::views::{self as wire, subscribe_response::Event, SubscribeResponse};
use crate::retention::Retention;
use crate::streams::admission::{Admission, HubInbox};
use crate::streams::encoded::{Chunk, Frames};
use crate::streams::limits::{StreamCounters, StreamLimits};
use crate::streams::outbound::{Departure, Offer, Outbound, Outbox};
use crate::worker::Engine;

/// A subscription as the hub receives it: a view, its checked filters (column index and the
/// value it must equal), and the key of its filter group.
pub struct ViewSubscription {
    id: u64,
    view: usize,
    group: Vec<u8>,
    filters: Vec<(usize, wire::Value)>,
    outbox: Arc<Outbox>,
}

/// The handle the `Views` service uses. Cheap to clone.
#[derive(Clone)]
pub struct ViewHub {
    admission: Admission<ViewSubscription>,
    epochs_sent: watch::Receiver<Bucket>,
}

impl ViewHub {
    /// Starts the hub task on the current tokio runtime.
    pub fn start(
        engine: Engine,
        catalog: Arc<Catalog>,
        retention: Retention,
        limits: StreamLimits,
    ) -> ViewHub {
        let (admission, inbox) = Admission::new(limits);
        let mut epochs = engine.epochs();
        let (sent, epochs_sent) = watch::channel(*epochs.borrow_and_update());
        let hub = Hub {
            engine,
            catalog,
            window: retention.window,
            limits,
            counters: admission.counters().clone(),
            epochs,
            sent,
            views: HashMap::new(),
            subscribers: HashMap::new(),
        };
        tokio::spawn(hub.run(inbox));
        ViewHub {
            admission,
            epochs_sent,
        }
    }

    /// The last epoch whose changes the hub has queued to every subscription not ended.
    pub fn epochs_sent(&self) -> watch::Receiver<Bucket> {
        self.epochs_sent.clone()
    }

    /// Ends every subscription with `UNAVAILABLE` and refuses new ones (SPEC §11.6).
    pub fn shutdown(&self) {
        self.admission.shutdown();
    }

    /// The hub's counters.
    pub fn counters(&self) -> &StreamCounters {
        self.admission.counters()
    }

    /// Subscribes a client at `peer` to the registered view numbered `view`, keeping the rows
    /// whose column equals each filter's value. `filters` must be checked against the view's
    /// schema.
    pub fn subscribe(
        &self,
        view: usize,
        filters: Vec<(usize, wire::Value)>,
        group: Vec<u8>,
        peer: Option<IpAddr>,
    ) -> Result<Outbound, ApiError> {
        self.admission.open(peer, |id, outbox| ViewSubscription {
            id,
            view,
            group,
            filters,
            outbox,
        })
    }
}

fn shutdown_status() -> Status {
    Status::unavailable("the server is shutting down")
}

/// Subscribers of one view with identical filters.
struct Group {
    filters: Vec<(usize, wire::Value)>,
    members: Vec<u64>,
    frames: Frames,
}

/// Whether `row` holds each filter's value in its column.
fn keeps(filters: &[(usize, wire::Value)], row: &wire::Row) -> bool {
    filters
        .iter()
        .all(|(column, value)| row.values.get(*column) == Some(value))
}

/// One watched view: its groups, and the changes a snapshot read took that its existing
/// subscribers are owed at the next epoch.
#[derive(Default)]
struct Watched {
    groups: HashMap<Vec<u8>, Group>,
    owed: Vec<(Row, i64)>,
}

struct Subscriber {
    view: usize,
    group: Vec<u8>,
    outbox: Arc<Outbox>,
    /// Registered since the last epoch: its snapshot may still be in its queue at the next
    /// epoch without it being late.
    fresh: bool,
}

struct Hub {
    engine: Engine,
    catalog: Arc<Catalog>,
    window: i64,
    limits: StreamLimits,
    counters: Arc<StreamCounters>,
    epochs: watch::Receiver<Bucket>,
    sent: watch::Sender<Bucket>,
    views: HashMap<usize, Watched>,
    subscribers: HashMap<u64, Subscriber>,
}

impl Hub {
    async fn run(mut self, inbox: HubInbox<ViewSubscription>) {
        let HubInbox {
            subscriptions: mut inbox,
            mut departed,
            mut stopping,
        } = inbox;
        loop {
            tokio::select! {
                _ = stopping.changed() => return self.stop(inbox),
                request = inbox.recv() => match request {
                    Some(first) => {
                        let mut arrived = vec![first];
                        while let Ok(more) = inbox.try_recv() {
                            arrived.push(more);
                        }
                        self.add(arrived).await;
                    }
                    None => return self.stop(inbox),
                },
                Some(departure) = departed.recv() => {
                    if let Departure::Left(id) = departure {
                        self.remove(id, None);
                    }
                }
                changed = self.epochs.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let epoch = *self.epochs.borrow_and_update();
                    // The engine may announce the epoch it started in again.
                    if epoch != *self.sent.borrow() {
                        self.emit(epoch).await;
                    }
                }
            }
        }
    }

    /// Ends every subscription, and every one still waiting in the queue, with
    /// `UNAVAILABLE`; the hub stops right after.
    fn stop(&mut self, mut inbox: mpsc::Receiver<ViewSubscription>) {
        inbox.close();
        while let Ok(waiting) = inbox.try_recv() {
            waiting.outbox.end(shutdown_status());
        }
        let ids: Vec<u64> = self.subscribers.keys().copied().collect();
        for id in ids {
            self.remove(id, Some(shutdown_status()));
        }
    }

    /// Registers subscriptions that arrived together: one snapshot read per view serves them
    /// all, and each filter group's snapshot is encoded once.
    async fn add(&mut self, arrived: Vec<ViewSubscription>) {
        let mut by_view: HashMap<usize, Vec<ViewSubscription>> = HashMap::new();
        for subscription in arrived {
            // A client that went away before the hub registered it needs nothing.
            if !subscription.outbox.is_released() {
                by_view
                    .entry(subscription.view)
                    .or_default()
                    .push(subscription);
            }
        }
        let epoch = *self.epochs.borrow();
        for (view, subscriptions) in by_view {
            let Ok(parts) = self
                .engine
                .view_changes(view, Watch::Snapshot, self.window)
                .await
            else {
                return;
            };
            let mut snapshot = Vec::new();
            let watched = self.views.entry(view).or_default();
            // The changes this read took are owed to the view's existing subscribers; with
            // none, they are changes from before anyone watched, already in the snapshot.
            let owed = !watched.groups.is_empty();
            for part in parts {
                if owed {
                    watched.owed.extend(part.changes);
                }
                snapshot.extend(part.snapshot.unwrap_or_default());
            }
            let rows: Vec<wire::Row> = snapshot
                .iter()
                .map(|row| wire_row(row, &self.catalog))
                .collect();
            let mark = mark(true, epoch, view);
            let mut chunks: HashMap<Vec<u8>, Chunk> = HashMap::new();
            let mut scratch = Vec::new();
            for subscription in subscriptions {
                let ViewSubscription {
                    id,
                    view,
                    group,
                    filters,
                    outbox,
                } = subscription;
                let chunk = chunks.entry(group.clone()).or_insert_with(|| {
                    let mut frames = Frames::default();
                    for row in rows.iter().filter(|row| keeps(&filters, row)) {
                        push(&mut frames, change(row.clone(), 1), &mut scratch);
                    }
                    push(&mut frames, mark.clone(), &mut scratch);
                    frames.take()
                });
                let chunk = chunk.clone();
                let watched = self.views.entry(view).or_default();
                watched
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group {
                        filters,
                        members: Vec::new(),
                        frames: Frames::default(),
                    })
                    .members
                    .push(id);
                self.subscribers.insert(
                    id,
                    Subscriber {
                        view,
                        group,
                        outbox: outbox.clone(),
                        fresh: true,
                    },
                );
                match outbox.offer(chunk.clone(), self.limits.buffer) {
                    Offer::Queued => {
                        self.counters
                            .delivered
                            .fetch_add(chunk.results() as u64, Ordering::Relaxed);
                    }
                    Offer::Full => {
                        self.counters.too_slow.fetch_add(1, Ordering::Relaxed);
                        let why = "the snapshot holds more rows than the stream's buffer; \
                                   narrow it with filters";
                        self.remove(id, Some(too_slow(why)));
                    }
                    Offer::Released => self.remove(id, None),
                }
            }
        }
        self.count_holdings();
    }

    fn remove(&mut self, id: u64, ending: Option<Status>) {
        let Some(subscriber) = self.subscribers.remove(&id) else {
            return;
        };
        match ending {
            Some(status) => subscriber.outbox.end(status),
            None => subscriber.outbox.release(),
        };
        if let Some(watched) = self.views.get_mut(&subscriber.view) {
            if let Some(group) = watched.groups.get_mut(&subscriber.group) {
                group.members.retain(|member| *member != id);
                if group.members.is_empty() {
                    watched.groups.remove(&subscriber.group);
                }
            }
        }
        self.count_holdings();
    }

    /// Publishes how many subscriptions and groups the hub holds.
    fn count_holdings(&self) {
        self.counters
            .subscriptions
            .store(self.subscribers.len(), Ordering::Relaxed);
        let groups = self.views.values().map(|view| view.groups.len()).sum();
        self.counters.groups.store(groups, Ordering::Relaxed);
    }

    /// Ends every subscriber whose queue still holds an earlier epoch (a snapshot queued
    /// since the last epoch is not late), and removes those whose client went away without
    /// the hub hearing of it.
    fn end_late_and_released(&mut self) {
        let mut late = Vec::new();
        let mut released = Vec::new();
        for (id, subscriber) in &mut self.subscribers {
            if subscriber.outbox.is_released() {
                released.push(*id);
            } else if !subscriber.fresh && !subscriber.outbox.is_drained() {
                late.push(*id);
            }
            subscriber.fresh = false;
        }
        for id in released {
            self.remove(id, None);
        }
        self.counters
            .late
            .fetch_add(late.len() as u64, Ordering::Relaxed);
        self.counters
            .too_slow
            .fetch_add(late.len() as u64, Ordering::Relaxed);
        for id in late {
            self.remove(
                id,
                Some(too_slow(
                    "the previous epoch was still unsent when the next was due",
                )),
            );
        }
    }

    /// Queues every watched view's changes since the last read to its subscribers, and
    /// tells the views nobody watches any more to stop recording.
    async fn emit(&mut self, epoch: Bucket) {
        self.end_late_and_released();
        let unwatched: Vec<usize> = self
            .views
            .iter()
            .filter(|(_, watched)| watched.groups.is_empty())
            .map(|(view, _)| *view)
            .collect();
        for view in unwatched {
            self.views.remove(&view);
            if self
                .engine
                .view_changes(view, Watch::Stop, self.window)
                .await
                .is_err()
            {
                return;
            }
        }
        let watched: Vec<usize> = self.views.keys().copied().collect();
        for view in watched {
            let Ok(parts) = self
                .engine
                .view_changes(view, Watch::Changes, self.window)
                .await
            else {
                return;
            };
            self.deliver(view, epoch, parts);
        }
        let queued = self
            .subscribers
            .values()
            .map(|subscriber| subscriber.outbox.queued_results())
            .sum();
        self.counters.queued.store(queued, Ordering::Relaxed);
        self.counters.epochs_emitted.fetch_add(1, Ordering::Relaxed);
        self.sent.send_replace(epoch);
    }

    /// Routes one view's changes to its groups, closes each group's run with the epoch's mark
    /// and queues it to every member.
    fn deliver(&mut self, view: usize, epoch: Bucket, parts: Vec<ViewChanges>) {
        let Some(watched) = self.views.get_mut(&view) else {
            return;
        };
        let mut changes = std::mem::take(&mut watched.owed);
        changes.extend(parts.into_iter().flat_map(|part| part.changes));
        let changes = consolidate_rows(changes);
        let mut scratch = Vec::new();
        for (row, multiplicity) in changes {
            let row = wire_row(&row, &self.catalog);
            let mut encoded = false;
            for group in watched.groups.values_mut() {
                if !keeps(&group.filters, &row) {
                    continue;
                }
                if !encoded {
                    encode(&change(row.clone(), multiplicity), &mut scratch);
                    encoded = true;
                }
                group.frames.push_encoded(&scratch);
            }
        }
        encode(&mark(false, epoch, view), &mut scratch);
        let buffer = self.limits.buffer;
        let mut delivered = 0u64;
        let mut overflowed = Vec::new();
        let mut gone = Vec::new();
        for group in watched.groups.values_mut() {
            group.frames.push_encoded(&scratch);
            let chunk = group.frames.take();
            for member in &group.members {
                let Some(subscriber) = self.subscribers.get(member) else {
                    continue;
                };
                match subscriber.outbox.offer(chunk.clone(), buffer) {
                    Offer::Queued => delivered += chunk.results() as u64,
                    Offer::Full => overflowed.push(*member),
                    Offer::Released => gone.push(*member),
                }
            }
        }
        self.counters
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
        self.counters
            .too_slow
            .fetch_add(overflowed.len() as u64, Ordering::Relaxed);
        for id in overflowed {
            self.remove(
                id,
                Some(too_slow("more changes than the stream's buffer holds")),
            );
        }
        for id in gone {
            self.remove(id, None);
        }
    }
}

fn too_slow(why: &str) -> Status {
    Status::resource_exhausted(format!(
        "consumer too slow: {why}; subscribe again for a new snapshot"
    ))
}

/// Sums the multiplicities of equal rows and drops the rows whose sum is zero: a row changed
/// twice between two epochs comes once.
fn consolidate_rows(mut changes: Vec<(Row, i64)>) -> Vec<(Row, i64)> {
    let order = |a: &Row, b: &Row| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|order| order.is_ne())
            .unwrap_or(Order::Equal)
    };
    changes.sort_by(|a, b| order(&a.0, &b.0));
    let mut merged: Vec<(Row, i64)> = Vec::with_capacity(changes.len());
    for (row, multiplicity) in changes {
        match merged.last_mut() {
            Some((last, total)) if order(last, &row).is_eq() => *total += multiplicity,
            _ => merged.push((row, multiplicity)),
        }
    }
    merged.retain(|(_, multiplicity)| *multiplicity != 0);
    merged
}

fn change(row: wire::Row, multiplicity: i64) -> SubscribeResponse {
    SubscribeResponse {
        event: Some(Event::Change(wire::Change {
            row: Some(row),
            multiplicity,
        })),
    }
}

fn mark(snapshot: bool, epoch: Bucket, view: usize) -> SubscribeResponse {
    let columns = match (snapshot, REGISTERED.get(view)) {
        (true, Some(view)) => columns(view.schema()),
        _ => Vec::new(),
    };
    SubscribeResponse {
        event: Some(Event::Mark(wire::Mark {
            snapshot,
            time: epoch,
            columns,
        })),
    }
}

fn encode(message: &SubscribeResponse, scratch: &mut Vec<u8>) {
    scratch.clear();
    scratch.reserve(message.encoded_len());
    // Encoding into a Vec with room reserved cannot fail.
    let _ = message.encode(scratch);
}

fn push(frames: &mut Frames, message: SubscribeResponse, scratch: &mut Vec<u8>) {
    encode(&message, scratch);
    frames.push_encoded(scratch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_dataflows::views::registry::Value;

    #[test]
    fn equal_rows_are_summed_and_zero_sums_dropped() {
        let row = |n: i64| vec![Value::String(1), Value::Integer(n)];
        let merged = consolidate_rows(vec![
            (row(5), -1),
            (row(7), 1),
            (row(7), -1),
            (row(9), 1),
            (row(5), 2),
        ]);
        assert_eq!(merged, vec![(row(5), 1), (row(9), 1)]);
    }
}
