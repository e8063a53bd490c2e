//! The view sizes shown on `/metrics`, read from the engine at most once per refresh
//! interval. Counting live rows walks every view on every worker, so scrapes share one read:
//! a scrape that finds the sizes stale takes the refresh turn and reads; scrapes arriving
//! meanwhile wait for that turn and then find the sizes fresh.
//!
//! Invariant: at most one engine read is in flight, and a successful read is not repeated
//! until the server's clock has moved one interval past it.

use eddy_dataflows::queries::sizes::ViewSizes;
use parking_lot::Mutex;
use prometheus::IntCounter;

use crate::worker::Engine;

/// When the sizes were measured (server clock, Unix seconds) and what they were.
#[derive(Clone, Debug)]
struct Measured {
    at: i64,
    sizes: ViewSizes,
}

/// The last view sizes read from the engine and the turn to refresh them.
#[derive(Debug)]
pub struct ViewSizesCache {
    interval: i64,
    turn: tokio::sync::Mutex<()>,
    latest: Mutex<Option<Measured>>,
    reads: IntCounter,
}

impl ViewSizesCache {
    /// A cache refreshed at most once per `interval` seconds, counting its engine reads in
    /// `reads`.
    pub fn new(interval: i64, reads: IntCounter) -> Self {
        ViewSizesCache {
            interval: interval.max(1),
            turn: tokio::sync::Mutex::new(()),
            latest: Mutex::new(None),
            reads,
        }
    }

    /// Reads the sizes from `engine` unless a read at most one interval before `now` already
    /// did; waits for a read in flight instead of starting another. A stopped engine leaves
    /// the last sizes in place.
    pub async fn refresh(&self, engine: &Engine, now: i64) {
        let _turn = self.turn.lock().await;
        if self.is_fresh(now) {
            return;
        }
        self.reads.inc();
        if let Ok(sizes) = engine.sizes().await {
            *self.latest.lock() = Some(Measured { at: now, sizes });
        }
    }

    /// The last sizes read, if any read has succeeded.
    pub fn latest(&self) -> Option<ViewSizes> {
        self.latest
            .lock()
            .as_ref()
            .map(|measured| measured.sizes.clone())
    }

    fn is_fresh(&self, now: i64) -> bool {
        self.latest
            .lock()
            .as_ref()
            .is_some_and(|measured| now - measured.at < self.interval)
    }
}
