//! The bounds of live streams and what the hub counts about them (exported as metrics).

use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;

/// The bounds of live streams.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Most concurrent streams.
    pub max_streams: usize,
    /// Results buffered per stream before it is ended as too slow.
    pub buffer: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_streams: 10_000,
            buffer: 4096,
        }
    }
}

/// What the hub counts.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Open streams: slots taken in the stream limit, released when a call ends.
    pub active: Arc<AtomicUsize>,
    /// Subscriptions the hub holds (registered and not yet removed).
    pub subscriptions: AtomicUsize,
    /// Distinct filter groups the hub holds.
    pub groups: AtomicUsize,
    /// Backfill tasks still running.
    pub backfills: Arc<AtomicUsize>,
    /// Streams ended because their client fell behind.
    pub too_slow: AtomicU64,
    /// Streams refused at the limit.
    pub refused: AtomicU64,
    /// Results delivered.
    pub delivered: AtomicU64,
    /// Buckets emitted.
    pub epochs_emitted: AtomicU64,
}
