//! Admission of a new live stream, shared by `Flows.Stream` (the stream hub) and
//! `Views.Subscribe` (the view hub): a slot under the stream limit and the per-peer cap, then
//! a place in the bounded queue of new streams, each refusal counted and answered with
//! `RESOURCE_EXHAUSTED` (or `UNAVAILABLE` once the hub has stopped). [`Admission`] is the
//! part of a hub's handle that does it; [`HubInbox`] is what the hub's task receives.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::api::status::ApiError;
use crate::streams::limits::{StreamCounters, StreamLimits};
use crate::streams::outbound::{Departure, Outbound, Outbox};
use crate::streams::slots::{Refusal, Slots};

/// The admitting half of a hub's handle: its limits, slots and counters, the bounded queues to
/// its task, and its stop signal. Cheap to clone.
pub struct Admission<T> {
    requests: mpsc::Sender<T>,
    departures: mpsc::Sender<Departure>,
    stop: Arc<watch::Sender<bool>>,
    counters: Arc<StreamCounters>,
    limits: StreamLimits,
    slots: Arc<Slots>,
    next_id: Arc<AtomicU64>,
}

impl<T> Clone for Admission<T> {
    fn clone(&self) -> Self {
        Admission {
            requests: self.requests.clone(),
            departures: self.departures.clone(),
            stop: self.stop.clone(),
            counters: self.counters.clone(),
            limits: self.limits,
            slots: self.slots.clone(),
            next_id: self.next_id.clone(),
        }
    }
}

/// What a hub's task receives: new subscriptions (at most `limits.queue` waiting), departures
/// (at most one per open stream), and the stop signal.
pub struct HubInbox<T> {
    /// New subscriptions, in the order they were admitted.
    pub subscriptions: mpsc::Receiver<T>,
    /// Streams whose client left or whose sending ended.
    pub departed: mpsc::Receiver<Departure>,
    /// Turns true at shutdown.
    pub stopping: watch::Receiver<bool>,
}

impl<T> Admission<T> {
    /// The admission of a new hub under `limits`, and the inbox its task reads.
    pub fn new(limits: StreamLimits) -> (Admission<T>, HubInbox<T>) {
        let (requests, subscriptions) = mpsc::channel(limits.queue.max(1));
        let (departures, departed) = mpsc::channel(limits.max_streams.max(1));
        let (stop, stopping) = watch::channel(false);
        let counters = Arc::new(StreamCounters::default());
        let slots = Arc::new(Slots::new(
            limits.max_streams,
            limits.per_peer,
            counters.active.clone(),
        ));
        let admission = Admission {
            requests,
            departures,
            stop: Arc::new(stop),
            counters,
            limits,
            slots,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        let inbox = HubInbox {
            subscriptions,
            departed,
            stopping,
        };
        (admission, inbox)
    }

    /// The hub's counters.
    pub fn counters(&self) -> &Arc<StreamCounters> {
        &self.counters
    }

    /// Where an open stream reports that it departed.
    pub fn departures(&self) -> &mpsc::Sender<Departure> {
        &self.departures
    }

    /// Streams held by `peer` under the per-peer cap (0 when the cap is off).
    pub fn streams_of(&self, peer: IpAddr) -> usize {
        self.slots.held_by(peer)
    }

    /// Whether the hub was told to stop: new streams are refused.
    pub fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Ends every open stream with `UNAVAILABLE` and refuses new ones (SPEC §11.6).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Opens a stream for a client at `peer`: refused once the hub stopped, else admitted
    /// ([`admit`]) with the subscription `subscription` makes of the stream's id and outbox.
    pub fn open(
        &self,
        peer: Option<IpAddr>,
        subscription: impl FnOnce(u64, Arc<Outbox>) -> T,
    ) -> Result<Outbound, ApiError> {
        if self.stopped() {
            return Err(shutting_down());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let outbox = admit(
            &self.slots,
            &self.counters,
            &self.limits,
            &self.requests,
            peer,
            |outbox| subscription(id, outbox),
        )?;
        Ok(Outbound {
            id,
            outbox,
            ended: false,
            departures: self.departures.clone(),
        })
    }
}

/// The refusal of a stream once its hub has stopped.
pub fn shutting_down() -> ApiError {
    ApiError::Unavailable("live streams are shutting down".into())
}

/// Takes a slot for a stream from `peer`, makes its subscription with `subscription` and
/// queues it to the hub on `requests`; returns the stream's outbox.
fn admit<T>(
    slots: &Arc<Slots>,
    counters: &StreamCounters,
    limits: &StreamLimits,
    requests: &mpsc::Sender<T>,
    peer: Option<IpAddr>,
    subscription: impl FnOnce(Arc<Outbox>) -> T,
) -> Result<Arc<Outbox>, ApiError> {
    let slot = slots.take(peer).map_err(|refusal| match refusal {
        Refusal::Limit(limit) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            ApiError::ResourceExhausted(format!("too many live streams (limit {limit})"))
        }
        Refusal::Peer(peer, cap) => {
            counters.refused_per_peer.fetch_add(1, Ordering::Relaxed);
            ApiError::ResourceExhausted(format!(
                "too many live streams from {peer} (limit {cap} per client address)"
            ))
        }
    })?;
    let outbox = Arc::new(Outbox::new(slot));
    let refused = match requests.try_send(subscription(outbox.clone())) {
        Ok(()) => return Ok(outbox),
        Err(mpsc::error::TrySendError::Full(_)) => {
            counters.refused_queue_full.fetch_add(1, Ordering::Relaxed);
            ApiError::ResourceExhausted(format!(
                "too many live streams waiting to start (limit {}); try again",
                limits.queue
            ))
        }
        Err(mpsc::error::TrySendError::Closed(_)) => shutting_down(),
    };
    outbox.release();
    Err(refused)
}
