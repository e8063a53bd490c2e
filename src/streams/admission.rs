//! Admission of a new live stream, shared by `Flows.Stream` (the stream hub) and
//! `Views.Subscribe` (the view hub): a slot under the stream limit and the per-peer cap, then
//! a place in the bounded queue of new streams, each refusal counted and answered with
//! `RESOURCE_EXHAUSTED` (or `UNAVAILABLE` once the hub has stopped).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::api::status::ApiError;
use crate::streams::limits::{StreamCounters, StreamLimits};
use crate::streams::outbound::Outbox;
use crate::streams::slots::{Refusal, Slots};

/// The refusal of a stream once its hub has stopped.
pub fn shutting_down() -> ApiError {
    ApiError::Unavailable("live streams are shutting down".into())
}

/// Takes a slot for a stream from `peer`, makes its subscription with `subscription` and
/// queues it to the hub on `requests`; returns the stream's outbox.
pub fn admit<T>(
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
