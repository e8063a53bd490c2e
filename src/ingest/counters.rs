//! What ingest counts: updates received, and updates skipped by reason (SPEC §9.3, §9.4),
//! with a warning rate-limited to one per reason per second.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why an update was receipted but not stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// The update carried no `flow`.
    NoFlow,
    /// The flow carried no `Key`.
    NoKey,
    /// `start_time <= 0`.
    NonPositiveStart,
    /// `end_time < start_time`.
    EndBeforeStart,
    /// A counter was negative.
    NegativeCounter,
    /// The bucket is older than retention or newer than the future bucket.
    OutsideRetention,
    /// The same update was received from the same source within the de-duplication horizon.
    Duplicate,
    /// A string, label list, trace list or trigger was beyond the input size limits.
    TooLarge,
}

impl SkipReason {
    /// Every reason, in metric order.
    pub const ALL: [SkipReason; 8] = [
        SkipReason::NoFlow,
        SkipReason::NoKey,
        SkipReason::NonPositiveStart,
        SkipReason::EndBeforeStart,
        SkipReason::NegativeCounter,
        SkipReason::OutsideRetention,
        SkipReason::Duplicate,
        SkipReason::TooLarge,
    ];

    /// The reason's metric label.
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::NoFlow => "no_flow",
            SkipReason::NoKey => "no_key",
            SkipReason::NonPositiveStart => "non_positive_start_time",
            SkipReason::EndBeforeStart => "end_before_start",
            SkipReason::NegativeCounter => "negative_counter",
            SkipReason::OutsideRetention => "outside_retention",
            SkipReason::Duplicate => "duplicate",
            SkipReason::TooLarge => "too_large",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Ingest counters, shared by every `Connect` stream.
#[derive(Debug, Default)]
pub struct IngestCounters {
    received: AtomicU64,
    stored: AtomicU64,
    skipped: [AtomicU64; SkipReason::ALL.len()],
    last_warning: [AtomicI64; SkipReason::ALL.len()],
}

impl IngestCounters {
    /// Counts `count` received updates.
    pub fn received(&self, count: u64) {
        self.received.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts `count` updates handed to the engine.
    pub fn stored(&self, count: u64) {
        self.stored.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts a skipped update and logs a warning at most once per second per reason.
    pub fn skipped(&self, reason: SkipReason, now: i64) {
        self.skipped[reason.index()].fetch_add(1, Ordering::Relaxed);
        if reason == SkipReason::Duplicate {
            return;
        }
        let last = &self.last_warning[reason.index()];
        if last.swap(now, Ordering::Relaxed) != now {
            tracing::warn!(reason = reason.label(), "skipped an invalid flow update");
        }
    }

    /// Total updates received.
    pub fn received_total(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Total updates handed to the engine.
    pub fn stored_total(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Total updates skipped for `reason`.
    pub fn skipped_total(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()].load(Ordering::Relaxed)
    }
}
