//! The Prometheus text exposition (format 0.0.4) of every counter Eddy keeps: Goldmane's
//! metric names where Goldmane has one (SPEC §11.4), `eddy_` names for the rest.

use std::fmt::{Display, Write};
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::ingest::SkipReason;
use crate::metrics::{Rpc, LATENCY_BOUNDS};
use crate::state::ServerState;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(label, value)| format!("{label}=\"{value}\""))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// Renders every metric. Reads the view sizes from the engine at most once per window.
pub async fn render(state: &ServerState) -> String {
    let mut text = Text::default();
    let engine = &state.engine;
    let window = state.retention.window;
    let sizes = match state
        .metrics
        .cached_sizes(Duration::from_secs(window.unsigned_abs()))
    {
        Some(sizes) => Some(sizes),
        None => engine.sizes().await.ok().inspect(|sizes| {
            state.metrics.store_sizes(*sizes);
        }),
    };
    let ingest = &state.ingest;

    text.single(
        "goldmane_aggr_received_flows_total",
        "counter",
        "Flow updates received on FlowCollector.Connect.",
        ingest.received_total(),
    );
    text.single(
        "goldmane_aggr_dropped_flows_total",
        "counter",
        "Flow updates receipted but dropped because their bucket left retention first.",
        engine.dropped_below_floor(),
    );
    if let Some(sizes) = sizes {
        text.single(
            "goldmane_aggr_num_unique_flows",
            "gauge",
            "Distinct flow keys with data in a retained bucket.",
            sizes.flow_keys,
        );
        text.family(
            "eddy_view_rows",
            "gauge",
            "Live rows per incremental view, summed over workers (refreshed once per window).",
        );
        for (view, rows) in sizes.per_view() {
            text.sample("eddy_view_rows", &[("view", view)], rows);
        }
    }
    text.single(
        "goldmane_aggr_flow_index_buffer_size",
        "gauge",
        "Engine requests (mostly ingest batches) waiting for the controller.",
        engine.queued_requests(),
    );
    text.single(
        "goldmane_collector_num_clients",
        "gauge",
        "Open FlowCollector.Connect calls.",
        state.metrics.collector_clients(),
    );
    let streams = state.streams.counters();
    text.single(
        "goldmane_num_streams",
        "gauge",
        "Open Flows.Stream calls.",
        streams.active.load(Ordering::Relaxed),
    );

    text.single(
        "eddy_ingest_stored_updates_total",
        "counter",
        "Flow updates handed to the engine.",
        ingest.stored_total(),
    );
    text.family(
        "eddy_ingest_skipped_updates_total",
        "counter",
        "Flow updates receipted but not stored, by reason (SPEC 9.3, 9.4).",
    );
    for reason in SkipReason::ALL {
        text.sample(
            "eddy_ingest_skipped_updates_total",
            &[("reason", reason.label())],
            ingest.skipped_total(reason),
        );
    }
    text.single(
        "eddy_dedup_duplicates_total",
        "counter",
        "Replayed flow updates absorbed by de-duplication.",
        ingest.skipped_total(SkipReason::Duplicate),
    );
    text.single(
        "eddy_dedup_evictions_total",
        "counter",
        "De-duplication fingerprints forgotten early because a scope was full.",
        state.dedup.evicted_total(),
    );

    let current = *engine.epochs().borrow();
    let lag = (state.retention.bucket_of(state.now()) - current).max(0);
    text.single(
        "eddy_engine_epoch_lag_seconds",
        "gauge",
        "How far the engine's announced bucket trails the clock's current bucket.",
        lag,
    );
    text.single(
        "eddy_engine_workers",
        "gauge",
        "Timely worker threads.",
        engine.workers(),
    );

    text.single(
        "eddy_streams_slow_consumer_terminations_total",
        "counter",
        "Streams ended with RESOURCE_EXHAUSTED because the client fell behind.",
        streams.too_slow.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_streams_refused_total",
        "counter",
        "Streams refused at the stream limit.",
        streams.refused.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_streams_results_delivered_total",
        "counter",
        "Live stream results handed to subscribers.",
        streams.delivered.load(Ordering::Relaxed),
    );

    let catalog = &state.catalog;
    text.family(
        "eddy_interned_values",
        "gauge",
        "Values held by each interner table.",
    );
    for (table, size) in [
        ("strings", catalog.symbols.len()),
        ("label_sets", catalog.label_sets.len()),
        ("traces", catalog.traces.len()),
    ] {
        text.sample("eddy_interned_values", &[("table", table)], size);
    }
    text.family(
        "eddy_interned_values_removed_total",
        "counter",
        "Values removed from each interner table because no retained flow used them.",
    );
    for (table, removed) in [
        ("strings", &catalog.removed.strings),
        ("label_sets", &catalog.removed.label_sets),
    ] {
        text.sample(
            "eddy_interned_values_removed_total",
            &[("table", table)],
            removed.load(Ordering::Relaxed),
        );
    }

    let name = "eddy_query_duration_seconds";
    text.family(name, "histogram", "Latency of query RPCs, by RPC.");
    for rpc in Rpc::ALL {
        let (cumulative, sum) = state.metrics.query_latency(rpc).snapshot();
        for (bound, count) in LATENCY_BOUNDS.iter().zip(&cumulative) {
            let le = bound.to_string();
            text.sample(
                &format!("{name}_bucket"),
                &[("rpc", rpc.label()), ("le", &le)],
                count,
            );
        }
        let total = cumulative.last().copied().unwrap_or(0);
        let labels = [("rpc", rpc.label())];
        text.sample(
            &format!("{name}_bucket"),
            &[("rpc", rpc.label()), ("le", "+Inf")],
            total,
        );
        text.sample(&format!("{name}_sum"), &labels, sum);
        text.sample(&format!("{name}_count"), &labels, total);
    }

    let emitter = &state.metrics.emitter;
    text.single(
        "eddy_emitter_windows_delivered_total",
        "counter",
        "Emitter windows delivered to PUSH_URL (empty windows need no request).",
        emitter.windows_delivered.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_emitter_flows_delivered_total",
        "counter",
        "Flows delivered to PUSH_URL.",
        emitter.flows_delivered.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_emitter_failed_attempts_total",
        "counter",
        "POSTs to PUSH_URL that failed and were retried.",
        emitter.failed_attempts.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_emitter_expired_windows_total",
        "counter",
        "Emitter windows that left retention before they could be delivered.",
        emitter.windows_expired.load(Ordering::Relaxed),
    );
    text.single(
        "eddy_emitter_last_window_end_seconds",
        "gauge",
        "End (Unix seconds) of the last window delivered; 0 before the first.",
        emitter.last_window_end.load(Ordering::Relaxed),
    );
    text.0
}
