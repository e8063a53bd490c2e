//! The bounds of live streams and what the hub counts about them (exported as metrics).

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

/// The bounds of live streams (SPEC §7.5, §12.5).
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Most concurrent streams.
    pub max_streams: usize,
    /// Results buffered per stream before it is ended as too slow.
    pub buffer: usize,
    /// Most concurrent streams from one peer IP address; `None`: no cap.
    pub per_peer: Option<usize>,
    /// Most backfills sent at a time; later ones wait their turn.
    pub backfills: usize,
    /// New streams waiting for the hub to register them; beyond it a new stream is refused.
    pub queue: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 10_000,
            buffer: 4096,
            per_peer: None,
            backfills: 16,
            queue: 1024,
        }
    }
}

/// What the hub counts.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Open streams: slots taken in the stream limit, released when the client goes away or
    /// the server ends the stream, whichever comes first.
    pub active: Arc<AtomicUsize>,
    /// Subscriptions the hub holds (registered and not yet removed).
    pub subscriptions: AtomicUsize,
    /// Distinct filter groups the hub holds.
    pub groups: AtomicUsize,
    /// Backfill tasks still running (sending or waiting for their turn).
    pub backfills: Arc<AtomicUsize>,
    /// Backfills that had to wait for their turn because the most allowed were running.
    pub backfills_waited: AtomicU64,
    /// Streams ended because their client fell behind.
    pub too_slow: AtomicU64,
    /// Of those, the streams ended because an earlier bucket was still in their queue when
    /// the next epoch was due.
    pub late: AtomicU64,
    /// Streams refused at the stream limit.
    pub refused: AtomicU64,
    /// Streams refused at the per-peer cap.
    pub refused_per_peer: AtomicU64,
    /// Streams refused because too many new streams were waiting for the hub.
    pub refused_queue_full: AtomicU64,
    /// Results delivered (queued to a stream; the bytes are shared by the streams of a filter).
    pub delivered: AtomicU64,
    /// Results waiting in streams' queues right after the last epoch was queued.
    pub queued: AtomicUsize,
    /// Buckets emitted.
    pub epochs_emitted: AtomicU64,
}
