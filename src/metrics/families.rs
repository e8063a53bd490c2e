//! The table of every metric family Eddy exports beside the process's own: Goldmane's names
//! where Goldmane has one (SPEC §11.4), `eddy_` names for the rest. One function per part
//! of the server; each family reads that part's counters at scrape time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::Registry;

use crate::ingest::SkipReason;
use crate::intern::CatalogTable;
use crate::metrics::pulling::{Kind, PullingFamily, Sample};
use crate::metrics::view_sizes::ViewSizesCache;
use crate::state::ServerState;
use crate::worker::shared_reads::ReadKind;

/// Registers families on a registry; every call names one family.
struct Table<'a>(&'a Registry);

impl Table<'_> {
    fn add(&self, family: prometheus::Result<PullingFamily>) -> prometheus::Result<()> {
        self.0.register(Box::new(family?))
    }

    fn counter(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        self.add(PullingFamily::single(
            Kind::Counter,
            name,
            help,
            move || read() as f64,
        ))
    }

    fn gauge(
        &self,
        name: &str,
        help: &str,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        self.add(PullingFamily::single(Kind::Gauge, name, help, read))
    }

    fn labelled(
        &self,
        kind: Kind,
        name: &str,
        label: &str,
        help: &str,
        read: impl Fn() -> Vec<Sample> + Send + Sync + 'static,
    ) -> prometheus::Result<()> {
        self.add(PullingFamily::labelled(kind, name, help, label, read))
    }
}

/// Samples keyed by fixed label values.
fn by_label<'a>(pairs: impl IntoIterator<Item = (&'a str, u64)>) -> Vec<Sample> {
    pairs
        .into_iter()
        .map(|(label, value)| (label.to_string(), value as f64))
        .collect()
}

/// Registers every family below on `registry`.
pub fn register_all(
    registry: &Registry,
    state: &ServerState,
    sizes: &Arc<ViewSizesCache>,
) -> prometheus::Result<()> {
    let table = Table(registry);
    ingest(&table, state)?;
    connect(&table, state)?;
    engine(&table, state)?;
    views(&table, sizes)?;
    streams(&table, state)?;
    view_streams(&table, state)?;
    catalog(&table, state)?;
    emitter(&table, state)?;
    durability(&table, state)?;
    state.metrics.register(registry)
}

fn ingest(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let ingest = state.ingest.clone();
    table.counter(
        "goldmane_aggr_received_flows_total",
        "Flow updates received on FlowCollector.Connect.",
        move || ingest.received_total(),
    )?;
    let ingest = state.ingest.clone();
    table.counter(
        "eddy_ingest_stored_updates_total",
        "Flow updates handed to the engine.",
        move || ingest.stored_total(),
    )?;
    let ingest = state.ingest.clone();
    table.labelled(
        Kind::Counter,
        "eddy_ingest_skipped_updates_total",
        "reason",
        "Flow updates receipted but not stored, by reason.",
        move || {
            by_label(SkipReason::ALL.map(|reason| (reason.label(), ingest.skipped_total(reason))))
        },
    )?;
    let ingest = state.ingest.clone();
    table.counter(
        "eddy_dedup_duplicates_total",
        "Replayed flow updates absorbed by de-duplication.",
        move || ingest.skipped_total(SkipReason::Duplicate),
    )?;
    let dedup = state.dedup.clone();
    table.counter(
        "eddy_dedup_evictions_total",
        "De-duplication fingerprints forgotten early because a scope was full.",
        move || dedup.evicted_total(),
    )
}

fn connect(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let calls = state.connect.clone();
    table.counter(
        "eddy_collector_refused_calls_total",
        "Connect calls refused with RESOURCE_EXHAUSTED because the most calls were open.",
        move || calls.refused_total(),
    )?;
    let calls = state.connect.clone();
    table.counter(
        "eddy_collector_byte_bound_batches_total",
        "Connect batches handed to the engine early because they reached the byte bound.",
        move || calls.byte_bound_batches_total(),
    )
}

fn engine(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let engine = state.engine.clone();
    table.counter(
        "goldmane_aggr_dropped_flows_total",
        "Flow updates receipted but dropped because their bucket left retention first.",
        move || engine.dropped_below_floor(),
    )?;
    let engine = state.engine.clone();
    table.gauge(
        "goldmane_aggr_flow_index_buffer_size",
        "Engine requests (mostly ingest batches) waiting for the controller.",
        move || engine.queued_requests() as f64,
    )?;
    let (engine, clock, retention) = (state.engine.clone(), state.clock.clone(), state.retention);
    table.gauge(
        "eddy_engine_epoch_lag_seconds",
        "How far the engine's announced bucket trails the clock's current bucket.",
        move || {
            let current = *engine.epochs().borrow();
            (retention.bucket_of(clock.now()) - current).max(0) as f64
        },
    )?;
    table.gauge(
        "eddy_engine_batcher_held_updates",
        "Updates the arrangements' batchers hold until their tick closes, over every worker \
         (bounded by the open tick's records and the rows each view derives from one).",
        || eddy_dataflows::tick_batcher::held_updates() as f64,
    )?;
    let workers = state.engine.workers();
    table.gauge("eddy_engine_workers", "Timely worker threads.", move || {
        workers as f64
    })?;
    let slots = state.engine.read_slots().clone();
    table.labelled(
        Kind::Counter,
        "eddy_query_reads_total",
        "rpc",
        "Query reads sent to the engine, by RPC; identical calls that share a read count once.",
        move || {
            let totals = slots.totals();
            by_label(ReadKind::ALL.map(|kind| (kind.label(), totals.dispatched(kind))))
        },
    )?;
    let slots = state.engine.read_slots().clone();
    table.labelled(
        Kind::Counter,
        "eddy_query_shared_reads_total",
        "rpc",
        "Query calls answered by joining an identical read another call started, by RPC.",
        move || {
            let totals = slots.totals();
            by_label(ReadKind::ALL.map(|kind| (kind.label(), totals.joined(kind))))
        },
    )
}

fn views(table: &Table, sizes: &Arc<ViewSizesCache>) -> prometheus::Result<()> {
    let cache = sizes.clone();
    table.add(PullingFamily::optional(
        Kind::Gauge,
        "goldmane_aggr_num_unique_flows",
        "Distinct flow keys with data in a retained bucket (refreshed once per window).",
        move || cache.latest().map(|sizes| sizes.flow_keys as f64),
    ))?;
    let cache = sizes.clone();
    table.labelled(
        Kind::Gauge,
        "eddy_view_rows",
        "view",
        "Live rows per incremental view, summed over workers (refreshed once per window).",
        move || {
            cache
                .latest()
                .map(|sizes| by_label(sizes.per_view()))
                .unwrap_or_default()
        },
    )
}

fn streams(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let hub = state.streams.clone();
    table.gauge(
        "goldmane_num_streams",
        "Open Flows.Stream calls.",
        move || hub.counters().active.load(Ordering::Relaxed) as f64,
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_slow_consumer_terminations_total",
        "Streams ended with RESOURCE_EXHAUSTED because the client fell behind.",
        move || hub.counters().too_slow.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_late_terminations_total",
        "Streams ended as too slow because an earlier bucket was still unsent when the next was due (a subset of the slow consumer terminations).",
        move || hub.counters().late.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.gauge(
        "eddy_streams_queued_results",
        "Results waiting in live streams' queues right after the last epoch was queued.",
        move || hub.counters().queued.load(Ordering::Relaxed) as f64,
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_refused_total",
        "Streams refused at the stream limit.",
        move || hub.counters().refused.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_peer_refused_total",
        "Streams refused at the per-peer cap.",
        move || hub.counters().refused_per_peer.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_queue_refused_total",
        "Streams refused because too many new streams were waiting to be registered.",
        move || hub.counters().refused_queue_full.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_backfills_waited_total",
        "Backfills that waited for their turn because the most allowed were running.",
        move || hub.counters().backfills_waited.load(Ordering::Relaxed),
    )?;
    let hub = state.streams.clone();
    table.gauge(
        "eddy_streams_backfills",
        "Backfills being sent or waiting for their turn.",
        move || hub.counters().backfills.load(Ordering::Relaxed) as f64,
    )?;
    let hub = state.streams.clone();
    table.counter(
        "eddy_streams_results_delivered_total",
        "Live stream results queued to subscribers.",
        move || hub.counters().delivered.load(Ordering::Relaxed),
    )
}

fn view_streams(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let hub = state.view_streams.clone();
    table.gauge(
        "eddy_view_subscriptions",
        "Open Views.Subscribe calls.",
        move || hub.counters().active.load(Ordering::Relaxed) as f64,
    )?;
    let hub = state.view_streams.clone();
    table.counter(
        "eddy_view_subscriptions_slow_consumer_terminations_total",
        "Subscriptions ended with RESOURCE_EXHAUSTED because the client fell behind.",
        move || hub.counters().too_slow.load(Ordering::Relaxed),
    )?;
    let hub = state.view_streams.clone();
    table.counter(
        "eddy_view_subscriptions_refused_total",
        "Subscriptions refused at the stream limit, the per-peer cap or a full queue of new ones.",
        move || {
            let counters = hub.counters();
            counters.refused.load(Ordering::Relaxed)
                + counters.refused_per_peer.load(Ordering::Relaxed)
                + counters.refused_queue_full.load(Ordering::Relaxed)
        },
    )?;
    let hub = state.view_streams.clone();
    table.gauge(
        "eddy_view_subscriptions_queued_messages",
        "Messages waiting in subscriptions' queues right after the last epoch was queued.",
        move || hub.counters().queued.load(Ordering::Relaxed) as f64,
    )?;
    let hub = state.view_streams.clone();
    table.counter(
        "eddy_view_subscriptions_messages_delivered_total",
        "Subscription messages (rows with their multiplicity, and marks) queued to subscribers.",
        move || hub.counters().delivered.load(Ordering::Relaxed),
    )
}

fn catalog(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let catalog = state.catalog.clone();
    table.labelled(
        Kind::Gauge,
        "eddy_interned_values",
        "table",
        "Values held by each catalog table.",
        move || by_label(CatalogTable::ALL.map(|name| (name.label(), catalog.len_of(name) as u64))),
    )?;
    let catalog = state.catalog.clone();
    table.labelled(
        Kind::Gauge,
        "eddy_interned_bytes",
        "table",
        "Bytes of the values held by each catalog table.",
        move || {
            by_label(CatalogTable::ALL.map(|name| (name.label(), catalog.bytes_of(name) as u64)))
        },
    )?;
    let catalog = state.catalog.clone();
    table.labelled(
        Kind::Gauge,
        "eddy_interned_slot_bytes",
        "table",
        "Bytes of the slot pages each intern table finds its values' places by id in.",
        move || {
            by_label(
                catalog
                    .slot_bytes()
                    .map(|(name, bytes)| (name.label(), bytes as u64)),
            )
        },
    )?;
    let catalog = state.catalog.clone();
    table.labelled(
        Kind::Counter,
        "eddy_interned_values_removed_total",
        "table",
        "Values removed from each catalog table because no retained flow used them.",
        move || {
            let removed = &catalog.removed;
            by_label([
                ("strings", removed.strings.load(Ordering::Relaxed)),
                ("label_sets", removed.label_sets.load(Ordering::Relaxed)),
                ("traces", removed.traces.load(Ordering::Relaxed)),
                ("trace_rules", removed.trace_rules.load(Ordering::Relaxed)),
            ])
        },
    )?;
    let catalog = state.catalog.clone();
    table.labelled(
        Kind::Counter,
        "eddy_catalog_full_refusals_total",
        "table",
        "Connect calls ended with RESOURCE_EXHAUSTED because a catalog table was full, by table.",
        move || by_label(CatalogTable::ALL.map(|name| (name.label(), catalog.refused_for(name)))),
    )
}

fn emitter(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let metrics = state.metrics.clone();
    table.counter(
        "eddy_emitter_windows_delivered_total",
        "Emitter windows delivered to PUSH_URL (empty windows need no request).",
        move || metrics.emitter.windows_delivered.load(Ordering::Relaxed),
    )?;
    let metrics = state.metrics.clone();
    table.counter(
        "eddy_emitter_flows_delivered_total",
        "Flows delivered to PUSH_URL.",
        move || metrics.emitter.flows_delivered.load(Ordering::Relaxed),
    )?;
    let metrics = state.metrics.clone();
    table.counter(
        "eddy_emitter_failed_attempts_total",
        "POSTs to PUSH_URL that failed and were retried.",
        move || metrics.emitter.failed_attempts.load(Ordering::Relaxed),
    )?;
    let metrics = state.metrics.clone();
    table.counter(
        "eddy_emitter_expired_windows_total",
        "Emitter windows that left retention before they could be delivered.",
        move || metrics.emitter.windows_expired.load(Ordering::Relaxed),
    )?;
    let metrics = state.metrics.clone();
    table.gauge(
        "eddy_emitter_last_window_end_seconds",
        "End (Unix seconds) of the last window delivered; 0 before the first.",
        move || metrics.emitter.last_window_end.load(Ordering::Relaxed) as f64,
    )
}

/// The data directory's families, registered only when one is set.
fn durability(table: &Table, state: &ServerState) -> prometheus::Result<()> {
    let Some(durability) = state.durability.clone() else {
        return Ok(());
    };
    let data = durability.clone();
    table.gauge(
        "eddy_data_dir_bytes",
        "Bytes held in the data directory (write-ahead log segments and bucket files).",
        move || data.bytes_used() as f64,
    )?;
    let data = durability.clone();
    table.gauge(
        "eddy_wal_segments",
        "Write-ahead log segments held, the one being written included.",
        move || data.segments() as f64,
    )?;
    let data = durability.clone();
    table.counter(
        "eddy_data_dir_refused_updates_total",
        "Valid, new updates not stored because the data directory could not take their batch (the call ended; the node resends them).",
        move || data.counters().refused_updates.load(Ordering::Relaxed),
    )?;
    let data = durability.clone();
    table.counter(
        "eddy_data_dir_damaged_files_total",
        "Files set aside in damaged/ at start-up because they failed their checksum.",
        move || data.counters().damaged_files.load(Ordering::Relaxed),
    )?;
    let data = durability.clone();
    table.counter(
        "eddy_wal_torn_tails_total",
        "Torn tails (a write cut by a crash) of the write-ahead log and the catalog file, cut off at start-up.",
        move || data.counters().torn_tails.load(Ordering::Relaxed),
    )?;
    let data = durability.clone();
    table.counter(
        "eddy_recovered_updates_total",
        "Flow updates recovered from the data directory at start-up.",
        move || data.counters().recovered_updates.load(Ordering::Relaxed),
    )?;
    let data = durability;
    table.gauge(
        "eddy_recovery_seconds",
        "How long start-up recovery of the data directory took.",
        move || data.recovery_seconds(),
    )
}
