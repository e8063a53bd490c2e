//! What Eddy measures beyond the counters its parts already keep (SPEC §11.4): open
//! `Connect` calls, query latency per RPC and the emitter's progress. [`Exporter`] gathers
//! all of it, every other part's counters and the process's own `process_*` metrics into
//! one Prometheus registry, built once, and renders it on each scrape.
//!
//! Map: [`pulling`] is the collector that reads a part's atomics at scrape time;
//! [`families`] is the table of every metric Eddy exports; [`view_sizes`] holds the one
//! shared engine read of the view sizes; [`exporter`] builds the registry and answers a
//! scrape; [`timing`] times the query RPCs.
//!
//! No label takes a per-flow value: labels are RPC names, skip reasons, view and table names,
//! all from fixed lists. State: a few dozen atomics and one cached [`ViewSizes`].
//!
//! [`ViewSizes`]: eddy_dataflows::queries::sizes::ViewSizes

pub mod exporter;
pub mod families;
pub mod pulling;
pub mod timing;
pub mod view_sizes;

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntGauge, Opts};

pub use exporter::{Exporter, CONTENT_TYPE};
pub use timing::QueryTimerLayer;

/// Upper bounds (seconds) of the query latency histogram buckets; `+Inf` follows.
pub const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The query RPCs whose latency is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// `goldmane.Flows/List`.
    FlowsList,
    /// `goldmane.Flows/FilterHints`.
    FlowsFilterHints,
    /// `goldmane.Statistics/List`.
    StatisticsList,
    /// `eddy.views.v1.Views/Read`.
    ViewsRead,
}

impl Rpc {
    /// Every measured RPC, in metric order.
    pub const ALL: [Rpc; 4] = [
        Rpc::FlowsList,
        Rpc::FlowsFilterHints,
        Rpc::StatisticsList,
        Rpc::ViewsRead,
    ];

    /// The RPC a request path names, if it is measured.
    pub fn from_path(path: &str) -> Option<Rpc> {
        match path {
            "/goldmane.Flows/List" => Some(Rpc::FlowsList),
            "/goldmane.Flows/FilterHints" => Some(Rpc::FlowsFilterHints),
            "/goldmane.Statistics/List" => Some(Rpc::StatisticsList),
            "/eddy.views.v1.Views/Read" => Some(Rpc::ViewsRead),
            _ => None,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rpc::FlowsList => "Flows/List",
            Rpc::FlowsFilterHints => "Flows/FilterHints",
            Rpc::StatisticsList => "Statistics/List",
            Rpc::ViewsRead => "Views/Read",
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
#[derive(Debug)]
pub struct Metrics {
    collector_clients: IntGauge,
    query_latency: HistogramVec,
    /// One child of `query_latency` per [`Rpc`], in [`Rpc::ALL`] order.
    queries: [Histogram; Rpc::ALL.len()],
    /// The emitter's progress.
    pub emitter: EmitterCounters,
}

impl Default for Metrics {
    fn default() -> Self {
        let collector_clients = IntGauge::with_opts(Opts::new(
            "goldmane_collector_num_clients",
            "Open FlowCollector.Connect calls.",
        ))
        .expect("a fixed, valid metric name and help");
        let query_latency = HistogramVec::new(
            HistogramOpts::new(
                "eddy_query_duration_seconds",
                "Latency of query RPCs, by RPC.",
            )
            .buckets(LATENCY_BOUNDS.to_vec()),
            &["rpc"],
        )
        .expect("a fixed, valid metric name, label and increasing buckets");
        let queries = Rpc::ALL.map(|rpc| query_latency.with_label_values(&[rpc.label()]));
        Metrics {
            collector_clients,
            query_latency,
            queries,
            emitter: EmitterCounters::default(),
        }
    }
}

/// Counts one open `Connect` call while it lives.
#[derive(Debug)]
pub struct ClientGuard(IntGauge);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Counts a `Connect` call as open until the guard is dropped.
    pub fn collector_client(&self) -> ClientGuard {
        self.collector_clients.inc();
        ClientGuard(self.collector_clients.clone())
    }

    /// Open `Connect` calls.
    pub fn collector_clients(&self) -> i64 {
        self.collector_clients.get()
    }

    /// The latency histogram of `rpc`.
    pub fn query_latency(&self, rpc: Rpc) -> &Histogram {
        &self.queries[rpc as usize]
    }

    /// Adds the open-client gauge and the query latency histograms to `registry`.
    pub fn register(&self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.collector_clients.clone()))?;
        registry.register(Box::new(self.query_latency.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_latency_lands_in_the_bucket_of_its_rpc() {
        let metrics = Metrics::default();
        metrics.query_latency(Rpc::FlowsList).observe(0.0003);
        metrics.query_latency(Rpc::FlowsList).observe(0.003);
        metrics.query_latency(Rpc::StatisticsList).observe(60.0);
        let flows = metrics.query_latency(Rpc::FlowsList);
        assert_eq!(flows.get_sample_count(), 2);
        assert!((flows.get_sample_sum() - 0.0033).abs() < 1e-9);
        let statistics = metrics.query_latency(Rpc::StatisticsList);
        assert_eq!(statistics.get_sample_count(), 1);
        assert_eq!(
            metrics
                .query_latency(Rpc::FlowsFilterHints)
                .get_sample_count(),
            0
        );
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
