//! `/metrics` scraped over real HTTP from a real server: the exposition parses back with an
//! independent parser, every family Eddy documents is exported with its type and no other,
//! the process's own `process_*` family is there, and concurrent scrapes share one engine
//! read of the view sizes.

mod common;
mod operations;

use std::collections::BTreeMap;

use common::{flow, key, TestServer, NOW, WINDOW};
use eddy::admin::{metrics_routes, serve};
use operations::{http_get, sample};
use prometheus_parse::{LineInfo, Scrape, Value};

/// Every `goldmane_*` and `eddy_*` family, with its type.
const FAMILIES: [(&str, &str); 44] = [
    ("goldmane_aggr_dropped_flows_total", "counter"),
    ("goldmane_aggr_flow_index_buffer_size", "gauge"),
    ("goldmane_aggr_num_unique_flows", "gauge"),
    ("goldmane_aggr_received_flows_total", "counter"),
    ("goldmane_collector_num_clients", "gauge"),
    ("goldmane_num_streams", "gauge"),
    ("eddy_catalog_full_refusals_total", "counter"),
    ("eddy_collector_byte_bound_batches_total", "counter"),
    ("eddy_collector_refused_calls_total", "counter"),
    ("eddy_dedup_duplicates_total", "counter"),
    ("eddy_dedup_evictions_total", "counter"),
    ("eddy_emitter_expired_windows_total", "counter"),
    ("eddy_emitter_failed_attempts_total", "counter"),
    ("eddy_emitter_flows_delivered_total", "counter"),
    ("eddy_emitter_last_window_end_seconds", "gauge"),
    ("eddy_emitter_windows_delivered_total", "counter"),
    ("eddy_engine_batcher_held_updates", "gauge"),
    ("eddy_engine_epoch_lag_seconds", "gauge"),
    ("eddy_engine_workers", "gauge"),
    ("eddy_ingest_skipped_updates_total", "counter"),
    ("eddy_ingest_stored_updates_total", "counter"),
    ("eddy_interned_bytes", "gauge"),
    ("eddy_interned_slot_bytes", "gauge"),
    ("eddy_interned_values", "gauge"),
    ("eddy_interned_values_removed_total", "counter"),
    ("eddy_query_duration_seconds", "histogram"),
    ("eddy_query_reads_total", "counter"),
    ("eddy_query_shared_reads_total", "counter"),
    ("eddy_streams_backfills", "gauge"),
    ("eddy_streams_backfills_waited_total", "counter"),
    ("eddy_streams_peer_refused_total", "counter"),
    ("eddy_streams_queue_refused_total", "counter"),
    ("eddy_streams_refused_total", "counter"),
    ("eddy_streams_results_delivered_total", "counter"),
    ("eddy_streams_slow_consumer_terminations_total", "counter"),
    ("eddy_streams_late_terminations_total", "counter"),
    ("eddy_streams_queued_results", "gauge"),
    ("eddy_view_subscriptions", "gauge"),
    (
        "eddy_view_subscriptions_slow_consumer_terminations_total",
        "counter",
    ),
    ("eddy_view_subscriptions_refused_total", "counter"),
    ("eddy_view_subscriptions_queued_messages", "gauge"),
    (
        "eddy_view_subscriptions_messages_delivered_total",
        "counter",
    ),
    ("eddy_view_rows", "gauge"),
    ("eddy_view_size_reads_total", "counter"),
];

/// The process family the client crate exports on Linux, with types.
const PROCESS_FAMILIES: [(&str, &str); 7] = [
    ("process_cpu_seconds_total", "counter"),
    ("process_max_fds", "gauge"),
    ("process_open_fds", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
    ("process_threads", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
];

/// Serves the metrics route of `server` on a fresh loopback port and returns the address.
async fn metrics_http(server: &TestServer) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(serve(listener, metrics_routes(server.state.clone())));
    address
}

/// Scrapes `/metrics` once and insists on 200.
async fn scrape(address: std::net::SocketAddr) -> String {
    let (status, text) = http_get(address, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The `# TYPE` of every family in `text`.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').expect("a TYPE line names a type");
            (name.to_string(), kind.to_string())
        })
        .collect()
}

/// The parsed sample `name` without labels.
fn parsed<'a>(scrape: &'a Scrape, name: &str) -> &'a Value {
    &scrape
        .samples
        .iter()
        .find(|sample| sample.metric == name)
        .unwrap_or_else(|| panic!("{name} was parsed"))
        .value
}

#[tokio::test]
async fn the_exposition_parses_back_with_every_family_typed_and_the_process_metrics() {
    let server = TestServer::start(1).await;
    let address = metrics_http(&server).await;
    server
        .ingest(vec![
            flow(key(("shop", "frontend"), ("shop", "cart")), NOW, 3),
            flow(key(("shop", "frontend"), ("shop", "checkout")), NOW, 4),
            flow(key(("ops", "prometheus"), ("shop", "cart")), NOW, 5),
        ])
        .await;
    let text = scrape(address).await;

    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored | LineInfo::Empty),
            "not a valid exposition line: {line:?}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_string())))
        .expect("the exposition parses");
    assert_eq!(
        parsed(&scrape, "goldmane_aggr_received_flows_total"),
        &Value::Counter(3.0)
    );
    assert_eq!(
        parsed(&scrape, "goldmane_aggr_num_unique_flows"),
        &Value::Gauge(3.0)
    );
    assert_eq!(parsed(&scrape, "eddy_engine_workers"), &Value::Gauge(1.0));
    let Value::Gauge(resident) = parsed(&scrape, "process_resident_memory_bytes") else {
        panic!("process_resident_memory_bytes is a gauge");
    };
    assert!(*resident > 0.0, "resident memory {resident}");
    let Value::Gauge(open_fds) = parsed(&scrape, "process_open_fds") else {
        panic!("process_open_fds is a gauge");
    };
    assert!(
        *open_fds >= 3.0,
        "stdin, stdout, stderr at least: {open_fds}"
    );

    let mut expected: BTreeMap<String, String> = FAMILIES
        .iter()
        .chain(&PROCESS_FAMILIES)
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    if cfg!(feature = "count-allocations") {
        expected.insert("eddy_allocations_total".into(), "counter".into());
        expected.insert("eddy_heap_live_bytes".into(), "gauge".into());
    }
    assert_eq!(types(&text), expected, "families and types in\n{text}");
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_scrapes_share_one_engine_read_per_window() {
    let server = TestServer::start(2).await;
    let address = metrics_http(&server).await;
    server
        .ingest(vec![flow(
            key(("shop", "frontend"), ("shop", "cart")),
            NOW,
            3,
        )])
        .await;

    let scrapes: Vec<String> =
        futures::future::join_all((0..8).map(|_| tokio::spawn(scrape(address))))
            .await
            .into_iter()
            .map(|joined| joined.expect("the scrape task finished"))
            .collect();
    for text in &scrapes {
        assert_eq!(
            sample(text, "eddy_view_size_reads_total"),
            Some(1.0),
            "{text}"
        );
        assert_eq!(sample(text, "eddy_view_rows{view=\"flows\"}"), Some(1.0));
    }
    let again = scrape(address).await;
    assert_eq!(sample(&again, "eddy_view_size_reads_total"), Some(1.0));

    server
        .ingest(vec![flow(
            key(("shop", "frontend"), ("shop", "checkout")),
            NOW,
            4,
        )])
        .await;
    server.advance_clock(WINDOW - 1).await;
    let within_the_window = scrape(address).await;
    assert_eq!(
        sample(&within_the_window, "eddy_view_size_reads_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&within_the_window, "eddy_view_rows{view=\"flows\"}"),
        Some(1.0),
        "the sizes are kept for a window"
    );

    server.advance_clock(1).await;
    let next_window = scrape(address).await;
    assert_eq!(
        sample(&next_window, "eddy_view_size_reads_total"),
        Some(2.0)
    );
    assert_eq!(
        sample(&next_window, "eddy_view_rows{view=\"flows\"}"),
        Some(2.0)
    );
    common::assert_accounting(&server.state);
}
