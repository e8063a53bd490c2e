//! What Eddy measures beyond the counters its parts already keep (SPEC §11.4): open
//! `Connect` calls, query latency per RPC, the emitter's progress, and a cache of the view
//! sizes. [`render`] turns all of it, and every other part's counters, into Prometheus text.
//!
//! No label takes a per-flow value: labels are RPC names, skip reasons, view and table names,
//! all from fixed lists. State: a few dozen atomics and one cached [`ViewSizes`].

pub mod render;
pub mod timing;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_dataflows::queries::sizes::ViewSizes;
use parking_lot::Mutex;

pub use render::render;
pub use timing::QueryTimerLayer;

/// Upper bounds (seconds) of the query latency histogram buckets; `+Inf` follows.
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with fixed buckets, updated without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let at = LATENCY_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is the total count) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                total += bucket.load(Ordering::Relaxed);
                total
            })
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (cumulative, sum)
    }
}

/// The query RPCs whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// `goldmane.Flows/List`.
    FlowsList,
    /// `goldmane.Flows/FilterHints`.
    FlowsFilterHints,
    /// `goldmane.Statistics/List`.
    StatisticsList,
}

impl Rpc {
    /// Every measured RPC, in metric order.
    pub const ALL: [Rpc; 3] = [Rpc::FlowsList, Rpc::FlowsFilterHints, Rpc::StatisticsList];

    /// The RPC a request path names, if it is measured.
    pub fn from_path(path: &str) -> Option<Rpc> {
        match path {
            "/goldmane.Flows/List" => Some(Rpc::FlowsList),
            "/goldmane.Flows/FilterHints" => Some(Rpc::FlowsFilterHints),
            "/goldmane.Statistics/List" => Some(Rpc::StatisticsList),
            _ => None,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rpc::FlowsList => "Flows/List",
            Rpc::FlowsFilterHints => "Flows/FilterHints",
            Rpc::StatisticsList => "Statistics/List",
        }
    }
}

/// The emitter's progress (SPEC §11.5).
#[derive(Debug, Default)]
pub struct EmitterCounters {
    /// Windows delivered (including empty windows, which need no request).
    pub windows_delivered: AtomicU64,
    /// Flows delivered.
    pub flows_delivered: AtomicU64,
    /// POST attempts that failed and will be retried.
    pub failed_attempts: AtomicU64,
    /// Windows that had left retention before they could be read.
    pub windows_expired: AtomicU64,
    /// End (Unix seconds) of the last window delivered; 0 before the first.
    pub last_window_end: AtomicI64,
}

/// Eddy's own measurements, shared by the services, the emitter and the metrics endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    collector_clients: Arc<AtomicI64>,
    queries: [Histogram; 3],
    /// The emitter's progress.
    pub emitter: EmitterCounters,
    sizes: Mutex<Option<(Instant, ViewSizes)>>,
}

/// Counts one open `Connect` call while it lives.
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicI64>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a `Connect` call as open until the guard is dropped.
    pub fn collector_client(&self) -> ClientGuard {
        self.collector_clients.fetch_add(1, Ordering::Relaxed);
        ClientGuard(self.collector_clients.clone())
    }

    /// Open `Connect` calls.
    pub fn collector_clients(&self) -> i64 {
        self.collector_clients.load(Ordering::Relaxed)
    }

    /// The latency histogram of `rpc`.
    pub fn query_latency(&self, rpc: Rpc) -> &Histogram {
        &self.queries[rpc as usize]
    }

    /// The view sizes measured less than `max_age` ago, if any.
    pub fn cached_sizes(&self, max_age: Duration) -> Option<ViewSizes> {
        let cached = self.sizes.lock();
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < max_age)
            .map(|(_, sizes)| *sizes)
    }

    /// Remembers freshly measured view sizes.
    pub fn store_sizes(&self, sizes: ViewSizes) {
        *self.sizes.lock() = Some((Instant::now(), sizes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_micros(300));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(60));
        let (cumulative, sum) = histogram.snapshot();
        assert_eq!(cumulative[0], 1, "0.3 ms is within the first bound");
        assert_eq!(cumulative[3], 2, "3 ms is within 5 ms");
        assert_eq!(cumulative[LATENCY_BOUNDS.len() - 1], 2);
        assert_eq!(cumulative[LATENCY_BOUNDS.len()], 3, "+Inf holds everything");
        assert!((sum - 60.0033).abs() < 1e-6);
    }

    #[test]
    fn client_guards_count_open_calls() {
        let metrics = Metrics::default();
        let first = metrics.collector_client();
        let second = metrics.collector_client();
        assert_eq!(metrics.collector_clients(), 2);
        drop(first);
        drop(second);
        assert_eq!(metrics.collector_clients(), 0);
    }
}
