//! Flows.Stream through real gRPC clients against a real server on the real clock with a 1 s
//! window (SPEC §7, with §2 time and §5 filters): backfill content and order (§7.1, §7.3),
//! one result per key per bucket with that bucket's counters (§7.2), the hand-over from
//! backfill to live at many offsets within a bucket (§7.3), filters and ids (§7.4, §3.6),
//! the stream limit and slow consumers (§7.5), late data (§7.6), validation (§7.1) and the
//! release of everything a cancelled stream held.
//!
//! Waiting is always on the server's own output: stream messages (under a generous timeout
//! that only guards against a hang) or a counter polled in a bounded loop. The only sleeps
//! place the test at a wall-clock offset within a bucket, or pace a traffic generator.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::{
    Action, Filter, Flow, FlowKey, FlowListRequest, FlowResult, FlowStreamRequest, PolicyKind,
    PolicyMatch, PolicyTrace, StringMatch,
};
use eddy::retention::Retention;
use eddy::streams::StreamLimits;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// Fails a test that hangs; never a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

/// W = 1 s, 30 closed buckets.
fn retention() -> Retention {
    Retention {
        window: 1,
        closed_buckets: 30,
    }
}

async fn realtime(workers: usize) -> RealtimeServer {
    RealtimeServer::start(workers, retention(), StreamLimits::default()).await
}

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn request(start_time_gte: i64, filter: Option<Filter>) -> FlowStreamRequest {
    FlowStreamRequest {
        start_time_gte,
        filter,
        aggregation_interval: 0,
    }
}

async fn open(
    client: &mut FlowsClient<Channel>,
    request: FlowStreamRequest,
) -> Streaming<FlowResult> {
    guarded("Stream to open", client.stream(request))
        .await
        .expect("Stream opens")
        .into_inner()
}

async fn next(stream: &mut Streaming<FlowResult>) -> FlowResult {
    guarded("a stream message", stream.message())
        .await
        .expect("the stream has no error")
        .expect("the stream is still open")
}

/// Reads until the first result of a bucket at or after `end`; returns the results before it
/// and that result. Checks on the way that buckets never go backwards (§7.3) and that every
/// result covers exactly one bucket of the 1 s window (§7.2).
async fn read_before(
    stream: &mut Streaming<FlowResult>,
    end: i64,
) -> (Vec<FlowResult>, FlowResult) {
    read_before_in(stream, end, 1).await
}

/// [`read_before`] for a server with window `window`.
async fn read_before_in(
    stream: &mut Streaming<FlowResult>,
    end: i64,
    window: i64,
) -> (Vec<FlowResult>, FlowResult) {
    let mut before = Vec::new();
    let mut last = i64::MIN;
    loop {
        let result = next(stream).await;
        let flow = flow_of(&result);
        assert_eq!(flow.start_time.rem_euclid(window), 0, "bucket-aligned");
        assert_eq!(
            flow.end_time,
            flow.start_time + window,
            "one bucket per result"
        );
        assert!(flow.start_time >= last, "buckets arrive oldest first");
        last = flow.start_time;
        if flow.start_time >= end {
            return (before, result);
        }
        before.push(result);
    }
}

/// (dest name, bucket, packets_in) of each result, sorted.
fn spans(results: &[FlowResult]) -> Vec<(String, i64, i64)> {
    let mut spans: Vec<_> = results
        .iter()
        .map(|r| {
            let flow = flow_of(r);
            (
                key_of(r).dest_name.clone(),
                flow.start_time,
                flow.packets_in,
            )
        })
        .collect();
    spans.sort();
    spans
}

fn owned(spans: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    let mut spans: Vec<_> = spans
        .iter()
        .map(|(name, bucket, packets)| (name.to_string(), *bucket, *packets))
        .collect();
    spans.sort();
    spans
}

fn exact_in(field: &str, value: &str) -> Filter {
    let matches = vec![exact(value)];
    match field {
        "dest_namespaces" => Filter {
            dest_namespaces: matches,
            ..Default::default()
        },
        "dest_names" => Filter {
            dest_names: matches,
            ..Default::default()
        },
        other => panic!("no such field {other}"),
    }
}

fn in_namespace(namespace: &str) -> Option<Filter> {
    Some(exact_in("dest_namespaces", namespace))
}

/// Polls `condition` with short yields until it holds; fails after the guard.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    guarded(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Sleeps until `offset_ms` after the start of wall-clock second `second`: positions the test
/// within a bucket. It does not wait for the server.
async fn at_offset(second: i64, offset_ms: u64) {
    let target = UNIX_EPOCH + Duration::from_secs(second as u64) + Duration::from_millis(offset_ms);
    if let Ok(wait) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}

fn with_trace(
    mut key: FlowKey,
    enforced: Vec<eddy::proto::PolicyHit>,
    pending: Vec<eddy::proto::PolicyHit>,
) -> FlowKey {
    key.policies = Some(PolicyTrace {
        enforced_policies: enforced,
        pending_policies: pending,
    });
    key
}

fn labelled(key: &FlowKey, start: i64, packets: i64, labels: &[&str]) -> Flow {
    let mut flow = flow(key.clone(), start, packets);
    flow.source_labels = strings(labels);
    flow
}

/// The id List gives each dest name (every key of these tests has a distinct dest name).
async fn list_ids(server: &RealtimeServer) -> BTreeMap<String, i64> {
    let listed = server
        .flows()
        .list(FlowListRequest::default())
        .await
        .expect("List succeeds")
        .into_inner();
    listed
        .flows
        .iter()
        .map(|r| (key_of(r).dest_name.clone(), r.id))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// §7.2, §7.3: backfill content and order
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_sends_each_bucket_oldest_first_with_that_buckets_counters() {
    let server = realtime(2).await;
    let t0 = server.now();
    let a = key(("shop", "frontend"), ("shop", "checkout"));
    let b = key(("shop", "frontend"), ("shop", "cart"));
    server
        .ingest(vec![
            labelled(&a, t0 - 6, 3, &["app=web", "tier=1"]),
            labelled(&a, t0 - 5, 4, &["app=web", "tier=1"]),
            labelled(&a, t0 - 5, 5, &["app=web"]),
            labelled(&b, t0 - 5, 7, &["app=db"]),
            labelled(&b, t0 - 3, 11, &["app=db", "x"]),
            // Before the stream's start: never sent.
            labelled(&a, t0 - 8, 100, &[]),
            labelled(&b, t0 - 7, 100, &[]),
        ])
        .await;
    let mut client = server.flows();
    let mut stream = open(&mut client, request(t0 - 6, None)).await;
    // A marker in the current bucket: everything before it has arrived once it does.
    let marker_bucket = server.now();
    let marker = key(("marker", "marker"), ("marker", "marker"));
    server.ingest(vec![flow(marker, marker_bucket, 1)]).await;
    let (results, last) = read_before(&mut stream, marker_bucket).await;
    assert_eq!(key_of(&last).dest_name, "marker");

    // Oldest bucket first; within a bucket any order; one result per key per bucket.
    let order: Vec<i64> = results.iter().map(|r| flow_of(r).start_time).collect();
    assert_eq!(order, vec![t0 - 6, t0 - 5, t0 - 5, t0 - 3]);
    assert_eq!(
        spans(&results),
        owned(&[
            ("checkout", t0 - 6, 3),
            ("checkout", t0 - 5, 9),
            ("cart", t0 - 5, 7),
            ("cart", t0 - 3, 11),
        ])
    );
    let by_span: BTreeMap<(String, i64), &Flow> = results
        .iter()
        .map(|r| {
            (
                (key_of(r).dest_name.clone(), flow_of(r).start_time),
                flow_of(r),
            )
        })
        .collect();
    // Every counter of one bucket only (flow() sets bytes = 100 x packets, one connection
    // started and completed per update), labels intersected within the bucket (§3.4).
    let two = by_span[&("checkout".to_string(), t0 - 5)];
    assert_eq!(
        (
            two.packets_in,
            two.packets_out,
            two.bytes_in,
            two.bytes_out,
            two.num_connections_started,
            two.num_connections_completed,
            two.num_connections_live,
        ),
        (9, 9, 900, 900, 2, 2, 0)
    );
    assert_eq!(two.source_labels, strings(&["app=web"]));
    let one = by_span[&("checkout".to_string(), t0 - 6)];
    assert_eq!(one.source_labels, strings(&["app=web", "tier=1"]));
    assert_eq!((one.start_time, one.end_time), (t0 - 6, t0 - 5));
    assert_eq!(
        by_span[&("cart".to_string(), t0 - 3)].source_labels,
        strings(&["app=db", "x"])
    );
    // Key and trace are echoed as List echoes them (§1.3).
    assert_eq!(key_of(&results[0]).policies, Some(PolicyTrace::default()));

    // Ids are List's ids (§7.4, §3.6).
    let ids = list_ids(&server).await;
    for result in &results {
        assert_eq!(result.id, ids[&key_of(result).dest_name]);
    }
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.1: where a stream starts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_time_gte_absolute_relative_zero_clamped_current_and_future() {
    let server = realtime(2).await;
    let mut client = server.flows();
    let t0 = server.now();
    // One namespace per case; every flow's dest name is its case, its packets its offset.
    let in_ns = |ns: &str, offset: i64| {
        flow(
            key(("src", "client"), (ns, &format!("{ns}-{}", -offset))),
            t0 + offset,
            -offset,
        )
    };
    let mut data = Vec::new();
    for offset in [-8, -6, -5, -3] {
        data.push(in_ns("abs", offset));
    }
    for offset in [-8, -6, -5, -4, -3] {
        data.push(in_ns("rel", offset));
    }
    for offset in [-8, -5, -3] {
        data.push(in_ns("zero", offset));
    }
    for offset in [-25, -20, -4] {
        data.push(in_ns("old", offset));
        data.push(in_ns("ancient", offset));
    }
    server.ingest(data).await;

    let mut absolute = open(&mut client, request(t0 - 5, in_namespace("abs"))).await;
    let rel_before = server.now();
    let mut relative = open(&mut client, request(-5, in_namespace("rel"))).await;
    let rel_after = server.now();
    let mut zero = open(&mut client, request(0, in_namespace("zero"))).await;
    // Older than retention, absolute and relative: clamped to the oldest bucket, not an error.
    let mut clamped = open(&mut client, request(1, in_namespace("old"))).await;
    let mut clamped_relative =
        open(&mut client, request(-1_000_000, in_namespace("ancient"))).await;
    // A start in the current bucket: no backfill, and the previous bucket, emitted live at
    // the next epoch, is older than B(start) and never sent either.
    let current_start = server.now();
    let mut current = open(&mut client, request(current_start, in_namespace("cur"))).await;
    server
        .ingest(vec![
            flow(
                key(("src", "client"), ("cur", "cur-old")),
                current_start - 2,
                2,
            ),
            flow(
                key(("src", "client"), ("cur", "cur-old")),
                current_start - 1,
                1,
            ),
        ])
        .await;
    // A start in the future bucket: the current bucket is never sent.
    let future_start = server.now() + 1;
    let mut future = open(&mut client, request(future_start, in_namespace("fut"))).await;
    server
        .ingest(vec![flow(
            key(("src", "client"), ("fut", "fut-now")),
            future_start - 1,
            1,
        )])
        .await;

    // One marker per case in a bucket no stream's start excludes, after all data.
    let marker_bucket = server.now() + 1;
    assert!(marker_bucket >= future_start);
    let markers: Vec<Flow> = ["abs", "rel", "zero", "old", "ancient", "cur", "fut"]
        .iter()
        .map(|ns| flow(key(("src", "client"), (ns, "marker")), marker_bucket, 1000))
        .collect();
    server.ingest(markers).await;

    let (got, marker) = read_before(&mut absolute, marker_bucket).await;
    assert_eq!(key_of(&marker).dest_name, "marker");
    assert_eq!(
        spans(&got),
        owned(&[("abs-5", t0 - 5, 5), ("abs-3", t0 - 3, 3)])
    );

    let (got, _) = read_before(&mut relative, marker_bucket).await;
    // The server read `now` somewhere between the two readings around the call.
    let expected = |now: i64| -> Vec<(String, i64, i64)> {
        let mut spans: Vec<_> = [-8, -6, -5, -4, -3]
            .into_iter()
            .filter(|offset| t0 + offset >= now - 5)
            .map(|offset| (format!("rel{offset}"), t0 + offset, -offset))
            .collect();
        spans.sort();
        spans
    };
    assert!(
        (rel_before..=rel_after).any(|now| spans(&got) == expected(now)),
        "relative start -5 at some now in {rel_before}..={rel_after}: {:?}",
        spans(&got)
    );
    assert!(!got.is_empty());

    let (got, _) = read_before(&mut zero, marker_bucket).await;
    assert_eq!(spans(&got), vec![], "start 0: no backfill");

    for stream in [&mut clamped, &mut clamped_relative] {
        let (got, _) = read_before(stream, marker_bucket).await;
        let mut names: Vec<(i64, i64)> = spans(&got).iter().map(|s| (s.1, s.2)).collect();
        names.sort();
        assert_eq!(names, vec![(t0 - 25, 25), (t0 - 20, 20), (t0 - 4, 4)]);
    }

    let (got, _) = read_before(&mut current, marker_bucket).await;
    assert_eq!(spans(&got), vec![], "nothing older than B(start)");
    let (got, _) = read_before(&mut future, marker_bucket).await;
    assert_eq!(spans(&got), vec![], "nothing older than B(start)");
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_inside_a_bucket_includes_that_whole_bucket() {
    // W = 2 so that a start can fall inside a bucket: B(start) rounds down (§7.1).
    let retention = Retention {
        window: 2,
        closed_buckets: 15,
    };
    let server = RealtimeServer::start(1, retention, StreamLimits::default()).await;
    let now = server.now();
    let current = now - now.rem_euclid(2);
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    server
        .ingest(vec![
            flow(k.clone(), current - 6, 6),
            flow(k.clone(), current - 4, 4),
            flow(k.clone(), current - 3, 3),
            flow(k.clone(), current - 2, 2),
        ])
        .await;
    let mut stream = open(&mut server.flows(), request(current - 3, None)).await;
    let marker_bucket = server.now() - server.now().rem_euclid(2) + 2;
    server
        .ingest(vec![flow(
            key(("marker", "marker"), ("marker", "marker")),
            marker_bucket,
            1,
        )])
        .await;
    let (got, _) = read_before_in(&mut stream, marker_bucket, 2).await;
    let got: Vec<(i64, i64, i64)> = got
        .iter()
        .map(|r| {
            let f = flow_of(r);
            (f.start_time, f.end_time, f.packets_in)
        })
        .collect();
    assert_eq!(
        got,
        vec![(current - 4, current - 2, 7), (current - 2, current, 2)]
    );
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.3: the hand-over from backfill to live, at many offsets within a bucket
// ---------------------------------------------------------------------------------------------

/// The packets of the one update the traffic generator sends for bucket `b`.
fn tag(b: i64) -> i64 {
    b.rem_euclid(1_000_000) + 1
}

#[derive(Debug, Clone, Copy)]
enum Start {
    Absolute(i64),
    Relative(i64),
    Zero,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bucket_arrives_exactly_once_whenever_within_a_bucket_a_stream_opens() {
    let server = realtime(2).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));

    // Traffic: one update per bucket, sent while the bucket is the future or current one,
    // well before it is emitted two windows later.
    let state = server.state.clone();
    let channel = server.channel.clone();
    let produced = k.clone();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let producer = tokio::spawn(async move {
        let mut conn = CollectorConn::open(&channel).await;
        let mut first = Some(first_tx);
        let mut next_bucket = None;
        let mut ticks = tokio::time::interval(Duration::from_millis(100));
        loop {
            ticks.tick().await;
            let now = state.now();
            let from = next_bucket.unwrap_or(now);
            for b in from..=now + 1 {
                conn.send_and_wait(flow(produced.clone(), b, tag(b))).await;
            }
            next_bucket = Some(now + 2);
            if let Some(first) = first.take() {
                let _ = first.send(from);
            }
        }
    });
    let first = guarded("the first update", first_rx)
        .await
        .expect("the generator runs");

    // Open streams at offsets across one bucket (and a second one for the later offsets),
    // with an absolute start in the past, a relative start, and no backfill.
    let base = (server.now() + 1).max(first + 3);
    let mut client = server.flows();
    let mut streams = Vec::new();
    let offsets: [(i64, u64); 10] = [
        (0, 0),
        (0, 120),
        (0, 410),
        (0, 700),
        (0, 930),
        (1, 30),
        (1, 260),
        (1, 555),
        (1, 840),
        (1, 990),
    ];
    for (second, offset) in offsets {
        at_offset(base + second, offset).await;
        for start in [Start::Absolute(first), Start::Relative(-2), Start::Zero] {
            let start_time_gte = match start {
                Start::Absolute(t) => t,
                Start::Relative(r) => r,
                Start::Zero => 0,
            };
            let before = server.now();
            let stream = open(&mut client, request(start_time_gte, None)).await;
            let after = server.now();
            streams.push((start, offset, before, after, stream));
        }
    }
    let end = server.now() + 2;
    let ids = list_ids(&server).await;
    for (start, offset, before, after, mut stream) in streams {
        let mut buckets = Vec::new();
        loop {
            let result = next(&mut stream).await;
            assert_eq!(result.id, ids["checkout"]);
            let flow = flow_of(&result);
            assert_eq!(
                flow.packets_in,
                tag(flow.start_time),
                "{start:?} at +{offset} ms: bucket {} carries its own counters",
                flow.start_time
            );
            buckets.push(flow.start_time);
            if flow.start_time >= end {
                break;
            }
        }
        let from = buckets[0];
        let expected: Vec<i64> = (from..=end).collect();
        assert_eq!(
            buckets, expected,
            "{start:?} opened at +{offset} ms in {before}..={after}: every bucket once, in order"
        );
        match start {
            Start::Absolute(t) => assert_eq!(from, t, "backfill from B(start)"),
            Start::Relative(r) => assert!(
                (before + r..=after + r).contains(&from),
                "relative start: from {from}, opened in {before}..={after}"
            ),
            // No backfill: the first bucket is the one emitted at the first epoch the hub
            // handles after the subscription (it may still be finishing the previous one).
            Start::Zero => assert!(
                (before - 2..=after - 1).contains(&from),
                "start 0: first bucket {from}, opened in {before}..={after}"
            ),
        }
    }
    producer.abort();
    common::assert_accounting(&server.state);
}

/// A client that reads nothing while its backfill is pending and live rows are held back, then
/// reads as fast as it can: the hand-over must not mistake the backfill still in its buffer
/// for the client falling behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_rows_held_during_a_long_backfill_are_handed_over_without_ending_the_stream() {
    let server = RealtimeServer::start(
        2,
        retention(),
        StreamLimits {
            max_streams: 100,
            buffer: 4,
            ..StreamLimits::default()
        },
    )
    .await;
    let t0 = server.now();
    // 1000 backfill rows of 2 KiB: far more than the buffer plus what HTTP/2 takes from a
    // client that does not read (two slices of the stream's queue and its windows).
    let long_name = "c".repeat(2048);
    let mut data = Vec::new();
    for i in 0..500 {
        let k = key(("bulk", &long_name), ("bulk", &format!("svc-{i:03}")));
        data.push(flow(k.clone(), t0 - 4, 1));
        data.push(flow(k, t0 - 3, 2));
    }
    server.ingest(data).await;
    let small_windows =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
            .expect("a valid URI")
            .initial_stream_window_size(Some(4096))
            .initial_connection_window_size(Some(4096))
            .connect()
            .await
            .expect("the server accepts connections");
    let mut late_reader = open(&mut FlowsClient::new(small_windows), request(t0 - 4, None)).await;
    let mut watcher = open(&mut server.flows(), request(0, in_namespace("live"))).await;
    let live_bucket = server.now();
    // As many live rows as the buffer holds: all are held back, and all must fit when the
    // backfill is done.
    let live: Vec<Flow> = (1..=4)
        .map(|i| {
            flow(
                key(("live", "client"), ("live", &format!("live-{i}"))),
                live_bucket,
                i,
            )
        })
        .collect();
    server.ingest(live).await;
    // The hub routes each row to every subscriber at once: when the watcher has them, the
    // late reader's copies are held back behind its unfinished backfill.
    for _ in 0..4 {
        let seen = next(&mut watcher).await;
        assert_eq!(flow_of(&seen).start_time, live_bucket);
    }
    assert_eq!(
        server
            .state
            .streams
            .counters()
            .backfills
            .load(Ordering::SeqCst),
        1
    );

    let marker_bucket = server.now() + 1;
    server
        .ingest(vec![flow(
            key(("live", "client"), ("live", "marker")),
            marker_bucket,
            1,
        )])
        .await;
    let (got, _) = read_before(&mut late_reader, marker_bucket).await;
    assert_eq!(got.len(), 1004);
    assert!(got[..500].iter().all(|r| flow_of(r).start_time == t0 - 4));
    assert!(got[500..1000]
        .iter()
        .all(|r| flow_of(r).start_time == t0 - 3));
    assert_eq!(
        spans(&got[1000..]),
        owned(&[
            ("live-1", live_bucket, 1),
            ("live-2", live_bucket, 2),
            ("live-3", live_bucket, 3),
            ("live-4", live_bucket, 4),
        ])
    );
    assert_eq!(
        server
            .state
            .streams
            .counters()
            .too_slow
            .load(Ordering::SeqCst),
        0
    );
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.4: filters and ids, on backfill and live rows
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_backfill_and_live_and_ids_are_lists() {
    let server = realtime(2).await;
    let t0 = server.now();
    let start = t0 - 4;
    let web = |action| {
        hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "shop",
            "web",
            action,
        )
    };
    let admin = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "admin",
        Action::Deny,
    );
    let k1 = with_trace(
        key(("shop", "frontend"), ("alpha", "checkout-api")),
        vec![web(Action::Allow)],
        vec![],
    );
    let mut k2 = with_trace(
        key(("shop", "frontend"), ("beta", "Checkout-Admin")),
        vec![admin],
        vec![],
    );
    k2.action = Action::Deny as i32;
    let k3 = key(("shop", "frontend"), ("beta", "cart"));
    let k4 = with_trace(
        key(("ops", "backup"), ("-", "pub")),
        vec![],
        vec![web(Action::Deny)],
    );
    // Only live, with strings nobody had interned when the streams opened.
    let k5 = key(("shop", "frontend"), ("gamma-1", "new-svc"));
    server
        .ingest(vec![
            flow(k1.clone(), t0 - 4, 1),
            flow(k2.clone(), t0 - 4, 2),
            flow(k3.clone(), t0 - 4, 3),
            flow(k4.clone(), t0 - 4, 4),
            flow(k1.clone(), t0 - 3, 5),
            flow(k3.clone(), t0 - 3, 6),
            // Before the start: excluded by time, whatever the filter.
            flow(k1.clone(), t0 - 6, 99),
        ])
        .await;

    let policy = |name: &str, action: Action| Filter {
        policies: vec![PolicyMatch {
            name: name.into(),
            action: action as i32,
            ..Default::default()
        }],
        ..Default::default()
    };
    let cases: Vec<(&str, Filter)> = vec![
        ("exact namespace", exact_in("dest_namespaces", "alpha")),
        (
            "fuzzy name",
            Filter {
                dest_names: vec![fuzzy("KOUT-A")],
                ..Default::default()
            },
        ),
        ("policy name", policy("web", Action::Unspecified)),
        ("policy action", policy("", Action::Deny)),
        (
            "new namespace",
            Filter {
                dest_namespaces: vec![fuzzy("gamma")],
                ..Default::default()
            },
        ),
        ("alias", exact_in("dest_names", "PUBLIC NETWORK")),
        (
            "two fields",
            Filter {
                source_namespaces: vec![exact("shop")],
                dest_namespaces: vec![exact("beta")],
                ..Default::default()
            },
        ),
        (
            "final action",
            Filter {
                actions: vec![Action::Deny as i32],
                ..Default::default()
            },
        ),
    ];
    let mut client = server.flows();
    let mut streams = Vec::new();
    for (name, filter) in &cases {
        streams.push((
            *name,
            open(&mut client, request(start, Some(filter.clone()))).await,
        ));
    }
    // Two subscriptions with one filter share a group and both receive everything.
    let mut twin = open(&mut client, request(start, Some(cases[0].1.clone()))).await;

    let live = server.now();
    server
        .ingest(vec![
            flow(k1.clone(), live, 7),
            flow(k2.clone(), live, 8),
            flow(k5.clone(), live, 9),
        ])
        .await;
    // Every key again in a later bucket: each stream's marker.
    let marker_bucket = server.now() + 1;
    server
        .ingest(
            [&k1, &k2, &k3, &k4, &k5]
                .iter()
                .map(|k| flow((*k).clone(), marker_bucket, 1000))
                .collect(),
        )
        .await;

    let expected: BTreeMap<&str, Vec<(&str, i64, i64)>> = BTreeMap::from([
        (
            "exact namespace",
            vec![
                ("checkout-api", t0 - 4, 1),
                ("checkout-api", t0 - 3, 5),
                ("checkout-api", live, 7),
            ],
        ),
        (
            "fuzzy name",
            vec![
                ("checkout-api", t0 - 4, 1),
                ("checkout-api", t0 - 3, 5),
                ("checkout-api", live, 7),
                ("Checkout-Admin", t0 - 4, 2),
                ("Checkout-Admin", live, 8),
            ],
        ),
        (
            "policy name",
            vec![
                ("checkout-api", t0 - 4, 1),
                ("checkout-api", t0 - 3, 5),
                ("checkout-api", live, 7),
                ("pub", t0 - 4, 4),
            ],
        ),
        (
            "policy action",
            vec![
                ("Checkout-Admin", t0 - 4, 2),
                ("Checkout-Admin", live, 8),
                ("pub", t0 - 4, 4),
            ],
        ),
        ("new namespace", vec![("new-svc", live, 9)]),
        ("alias", vec![("pub", t0 - 4, 4)]),
        (
            "two fields",
            vec![
                ("Checkout-Admin", t0 - 4, 2),
                ("Checkout-Admin", live, 8),
                ("cart", t0 - 4, 3),
                ("cart", t0 - 3, 6),
            ],
        ),
        (
            "final action",
            vec![("Checkout-Admin", t0 - 4, 2), ("Checkout-Admin", live, 8)],
        ),
    ]);
    for ((name, mut stream), (_, filter)) in streams.into_iter().zip(&cases) {
        let (got, marker) = read_before(&mut stream, marker_bucket).await;
        assert_eq!(flow_of(&marker).packets_in, 1000);
        assert_eq!(spans(&got), owned(&expected[name]), "filter {name}");
        // The same rows, with the same ids, as List per window with the same filter.
        let listed = server
            .flows()
            .list(FlowListRequest {
                start_time_gte: start,
                start_time_lt: marker_bucket,
                aggregation_interval: 1,
                filter: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .expect("List succeeds")
            .into_inner();
        let triples = |results: &[FlowResult]| -> BTreeSet<(i64, i64, i64)> {
            results
                .iter()
                .map(|r| (r.id, flow_of(r).start_time, flow_of(r).packets_in))
                .collect()
        };
        assert_eq!(triples(&got), triples(&listed.flows), "filter {name}");
        assert_eq!(got.len(), listed.flows.len(), "filter {name}");
    }
    let (got, _) = read_before(&mut twin, marker_bucket).await;
    assert_eq!(spans(&got), owned(&expected["exact namespace"]));
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.6: late data is not re-sent
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_arriving_after_its_bucket_was_emitted_is_listed_but_not_resent() {
    let server = realtime(1).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let mut stream = open(&mut server.flows(), request(0, None)).await;
    let first = server.now();
    server.ingest(vec![flow(k.clone(), first, 3)]).await;
    let emitted = next(&mut stream).await;
    assert_eq!(
        (flow_of(&emitted).start_time, flow_of(&emitted).packets_in),
        (first, 3)
    );
    server.ingest(vec![flow(k.clone(), first, 4)]).await;
    let marker_bucket = server.now() + 1;
    server.ingest(vec![flow(k.clone(), marker_bucket, 1)]).await;
    let (got, marker) = read_before(&mut stream, marker_bucket).await;
    assert_eq!(spans(&got), vec![], "the emitted bucket is not sent again");
    assert_eq!(flow_of(&marker).start_time, marker_bucket);
    let listed = server
        .flows()
        .list(FlowListRequest {
            start_time_gte: first,
            start_time_lt: first + 1,
            ..Default::default()
        })
        .await
        .expect("List succeeds")
        .into_inner();
    assert_eq!(listed.flows.len(), 1);
    assert_eq!(flow_of(&listed.flows[0]).packets_in, 7);
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.1: validation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_interval_other_than_zero_or_the_window_is_invalid() {
    let server = realtime(1).await;
    let mut client = server.flows();
    for interval in [2, 3, 15, -1, i64::MIN, i64::MAX] {
        let status = client
            .stream(FlowStreamRequest {
                aggregation_interval: interval,
                ..Default::default()
            })
            .await
            .expect_err("an invalid interval is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "interval {interval}");
        assert!(status.message().contains("aggregation_interval"));
    }
    let bad_match = Filter {
        dest_names: vec![StringMatch {
            value: "x".into(),
            r#type: 7,
        }],
        ..Default::default()
    };
    let status = client
        .stream(request(0, Some(bad_match)))
        .await
        .expect_err("an unknown match type is refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    // Refused calls take no slot.
    let counters = server.state.streams.counters();
    assert_eq!(counters.active.load(Ordering::SeqCst), 0);

    // 0 and W are accepted, and W streams the same per-bucket results.
    let t0 = server.now();
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    server.ingest(vec![flow(k.clone(), t0 - 3, 4)]).await;
    for interval in [0, 1] {
        let mut stream = open(
            &mut client,
            FlowStreamRequest {
                start_time_gte: t0 - 3,
                filter: None,
                aggregation_interval: interval,
            },
        )
        .await;
        let result = next(&mut stream).await;
        assert_eq!(
            (flow_of(&result).start_time, flow_of(&result).packets_in),
            (t0 - 3, 4)
        );
    }
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §7.5: limits
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_and_a_dropped_stream_frees_its_slot() {
    let server = RealtimeServer::start(
        1,
        retention(),
        StreamLimits {
            max_streams: 3,
            buffer: 64,
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    let mut client = server.flows();
    let mut open_streams = Vec::new();
    for i in 0..3 {
        open_streams.push(open(&mut client, request(0, in_namespace(&format!("ns{i}")))).await);
    }
    for _ in 0..2 {
        let status = client
            .stream(request(0, None))
            .await
            .expect_err("a fourth stream is refused");
        assert_eq!(status.code(), Code::ResourceExhausted);
    }
    assert_eq!(counters.refused.load(Ordering::SeqCst), 2);
    assert_eq!(counters.active.load(Ordering::SeqCst), 3);

    let kept = open_streams.pop().expect("three streams");
    drop(open_streams);
    eventually("two slots to be freed", || {
        counters.active.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut again = Vec::new();
    for _ in 0..2 {
        again.push(open(&mut client, request(0, None)).await);
    }
    let status = client
        .stream(request(0, None))
        .await
        .expect_err("the limit holds again");
    assert_eq!(status.code(), Code::ResourceExhausted);

    // The streams that took the freed slots work.
    let bucket_now = server.now();
    server
        .ingest(vec![flow(key(("a", "b"), ("ns2", "c")), bucket_now, 1)])
        .await;
    for stream in again.iter_mut() {
        let result = next(stream).await;
        assert_eq!(flow_of(&result).start_time, bucket_now);
    }
    drop(kept);
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_ended_while_a_fast_stream_and_ingestion_continue() {
    let server = RealtimeServer::start(
        2,
        retention(),
        StreamLimits {
            max_streams: 100,
            buffer: 16,
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    // A client that never reads, on its own connection with small HTTP/2 windows so that the
    // transport cannot absorb what the server sends.
    let small_windows =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
            .expect("a valid URI")
            .initial_stream_window_size(Some(4096))
            .initial_connection_window_size(Some(4096))
            .connect()
            .await
            .expect("the server accepts connections");
    let mut slow = open(&mut FlowsClient::new(small_windows), request(0, None)).await;
    let mut fast = open(&mut server.flows(), request(0, in_namespace("fast"))).await;
    let fast_key = key(("fast", "client"), ("fast", "svc"));

    // One bucket with 2000 rows for the slow stream and one for the fast stream.
    let bulk_bucket = server.now();
    let mut bulk: Vec<Flow> = (0..2000)
        .map(|i| {
            flow(
                key(("bulk", "client"), ("bulk", &format!("svc-{i:04}"))),
                bulk_bucket,
                1,
            )
        })
        .collect();
    bulk.push(flow(fast_key.clone(), bulk_bucket, 1));
    server.ingest(bulk).await;
    let result = next(&mut fast).await;
    assert_eq!(flow_of(&result).start_time, bulk_bucket);
    eventually("the slow stream to be ended", || {
        counters.too_slow.load(Ordering::SeqCst) == 1
    })
    .await;

    // The fast stream keeps receiving, and ingestion keeps working.
    for round in 2..5 {
        let bucket_now = server.now();
        server
            .ingest(vec![flow(fast_key.clone(), bucket_now, round)])
            .await;
        let result = next(&mut fast).await;
        assert_eq!(
            (flow_of(&result).start_time, flow_of(&result).packets_in),
            (bucket_now, round)
        );
    }
    let listed = server
        .flows()
        .list(FlowListRequest::default())
        .await
        .expect("List succeeds")
        .into_inner();
    assert_eq!(listed.flows.len(), 2001);

    // The slow client finds, after what was buffered for it, the end of its stream.
    let mut buffered = 0;
    let status = loop {
        match guarded("the slow stream's end", slow.message()).await {
            Ok(Some(_)) => buffered += 1,
            Ok(None) => panic!("the slow stream must end with an error"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("consumer too slow"),
        "{}",
        status.message()
    );
    assert!(
        buffered < 2000,
        "the slow stream was ended before it got everything"
    );
    drop(slow);
    eventually("the slow stream's slot to be freed", || {
        counters.active.load(Ordering::SeqCst) == 1
            && counters.subscriptions.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(counters.too_slow.load(Ordering::SeqCst), 1);
    common::assert_accounting(&server.state);
}

/// `goldmane_num_streams` as `/metrics` shows it.
async fn num_streams_metric(server: &RealtimeServer) -> String {
    let exporter = eddy::metrics::Exporter::new(&server.state).expect("the registry builds");
    let scraped = exporter.scrape().await.expect("the metrics render");
    scraped
        .lines()
        .find(|line| line.starts_with("goldmane_num_streams "))
        .expect("goldmane_num_streams is exported")
        .to_string()
}

/// A client that never reads is ended as too slow, and its slot is free at once: with a
/// limit of one stream, a new stream is accepted while the first client still holds its
/// connection and its call without reading anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ended_by_the_server_frees_its_slot_while_its_client_never_reads() {
    let server = RealtimeServer::start(
        1,
        retention(),
        StreamLimits {
            max_streams: 1,
            buffer: 1000,
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    let small_windows =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
            .expect("a valid URI")
            .initial_stream_window_size(Some(4096))
            .initial_connection_window_size(Some(4096))
            .connect()
            .await
            .expect("the server accepts connections");
    let never_read = open(
        &mut FlowsClient::new(small_windows.clone()),
        request(0, None),
    )
    .await;
    assert_eq!(num_streams_metric(&server).await, "goldmane_num_streams 1");
    // Results of 2 KiB each: 500 in one bucket are more than HTTP/2 takes for a client that
    // does not read, so most of them stay in the stream's queue; at the next epoch a bucket
    // still queued ends the stream as too slow.
    let long_name = "x".repeat(2048);
    let bulk = |bucket: i64, count: usize, prefix: &str| -> Vec<Flow> {
        (0..count)
            .map(|i| {
                flow(
                    key(("bulk", &long_name), ("bulk", &format!("{prefix}-{i:04}"))),
                    bucket,
                    1,
                )
            })
            .collect()
    };
    server.ingest(bulk(server.now(), 500, "first")).await;
    eventually("the first bucket to be in the stream's buffer", || {
        counters.delivered.load(Ordering::SeqCst) == 500
    })
    .await;
    assert_eq!(counters.too_slow.load(Ordering::SeqCst), 0);
    server.ingest(bulk(server.now(), 600, "second")).await;
    eventually("the reader-less stream to be ended as too slow", || {
        counters.too_slow.load(Ordering::SeqCst) == 1
    })
    .await;
    // The hub counts the ending, tells the client, then frees the slot: without a read by the
    // client, which never comes.
    eventually(
        "the ended stream's slot and subscription to be freed",
        || {
            counters.active.load(Ordering::SeqCst) == 0
                && counters.subscriptions.load(Ordering::SeqCst) == 0
        },
    )
    .await;
    assert_eq!(num_streams_metric(&server).await, "goldmane_num_streams 0");

    // The slot is free for a new stream while the first call is still held, unread.
    let mut next_stream = open(&mut server.flows(), request(0, in_namespace("next"))).await;
    assert_eq!(counters.refused.load(Ordering::SeqCst), 0);
    assert_eq!(num_streams_metric(&server).await, "goldmane_num_streams 1");
    let bucket_now = server.now();
    server
        .ingest(vec![flow(key(("a", "b"), ("next", "svc")), bucket_now, 3)])
        .await;
    let result = next(&mut next_stream).await;
    assert_eq!(
        (flow_of(&result).start_time, flow_of(&result).packets_in),
        (bucket_now, 3)
    );
    drop(never_read);
    drop(small_windows);
}

// ---------------------------------------------------------------------------------------------
// Cancellation releases everything
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_streams_release_their_slots_subscriptions_groups_and_backfills() {
    let server = RealtimeServer::start(
        2,
        retention(),
        StreamLimits {
            max_streams: 100,
            buffer: 8,
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    let t0 = server.now();
    let data: Vec<Flow> = (0..1000)
        .map(|i| {
            flow(
                key(("bulk", "client"), ("bulk", &format!("svc-{i:04}"))),
                t0 - 3,
                1,
            )
        })
        .collect();
    server.ingest(data).await;
    let mut client = server.flows();
    let mut streams = vec![
        open(&mut client, request(0, None)).await,
        open(&mut client, request(0, None)).await,
        open(&mut client, request(0, in_namespace("a"))).await,
        open(
            &mut client,
            request(
                -10,
                Some(Filter {
                    dest_names: vec![fuzzy("svc")],
                    ..Default::default()
                }),
            ),
        )
        .await,
    ];
    // A backfill that cannot finish: the client reads nothing through small windows.
    let small_windows =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
            .expect("a valid URI")
            .initial_stream_window_size(Some(4096))
            .initial_connection_window_size(Some(4096))
            .connect()
            .await
            .expect("the server accepts connections");
    streams.push(open(&mut FlowsClient::new(small_windows), request(t0 - 3, None)).await);
    eventually("the hub to hold five subscriptions in three groups", || {
        counters.subscriptions.load(Ordering::SeqCst) == 5
            && counters.groups.load(Ordering::SeqCst) == 3
    })
    .await;
    assert_eq!(counters.active.load(Ordering::SeqCst), 5);
    eventually("the blocked backfill to be running", || {
        counters.backfills.load(Ordering::SeqCst) >= 1
    })
    .await;

    drop(streams);
    eventually("everything to be released", || {
        counters.active.load(Ordering::SeqCst) == 0
            && counters.subscriptions.load(Ordering::SeqCst) == 0
            && counters.groups.load(Ordering::SeqCst) == 0
            && counters.backfills.load(Ordering::SeqCst) == 0
    })
    .await;

    // The hub still serves new streams.
    let mut stream = open(&mut client, request(t0 - 3, in_namespace("bulk"))).await;
    let result = next(&mut stream).await;
    assert_eq!(flow_of(&result).start_time, t0 - 3);
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// Routing through the filter-group index with many subscriptions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_streams_with_different_filters_each_receive_exactly_their_rows() {
    let server = realtime(2).await;
    let mut client = server.flows();
    let namespace = |i: usize| format!("team-{i:02}");
    let client_name = |i: usize| format!("client-{i}");
    // Per team: one stream on the destination namespace, two on the source name (one group),
    // and per ten teams one fuzzy stream; two unfiltered ones.
    let mut streams: Vec<(String, Vec<String>, Streaming<FlowResult>)> = Vec::new();
    for i in 0..100 {
        let by_namespace = in_namespace(&namespace(i));
        streams.push((
            format!("namespace {i}"),
            vec![namespace(i)],
            open(&mut client, request(0, by_namespace)).await,
        ));
        for copy in 0..2 {
            let by_source = Filter {
                source_names: vec![exact(&client_name(i))],
                ..Default::default()
            };
            streams.push((
                format!("source {i} #{copy}"),
                vec![namespace(i)],
                open(&mut client, request(0, Some(by_source))).await,
            ));
        }
    }
    for tens in 0..10 {
        let fuzzy_team = Filter {
            dest_namespaces: vec![fuzzy(&format!("TEAM-{tens}"))],
            ..Default::default()
        };
        streams.push((
            format!("fuzzy {tens}"),
            (0..10).map(|units| namespace(tens * 10 + units)).collect(),
            open(&mut client, request(0, Some(fuzzy_team))).await,
        ));
    }
    for copy in 0..2 {
        streams.push((
            format!("unfiltered #{copy}"),
            (0..100).map(namespace).collect(),
            open(&mut client, request(0, None)).await,
        ));
    }
    let counters = server.state.streams.counters();
    eventually("the hub to hold every subscription", || {
        counters.subscriptions.load(Ordering::SeqCst) == 312
    })
    .await;
    assert_eq!(counters.groups.load(Ordering::SeqCst), 211);

    let team_flows = |bucket: i64, packets: i64| -> Vec<Flow> {
        (0..100)
            .map(|i| {
                flow(
                    key(("src", &client_name(i)), (&namespace(i), "svc")),
                    bucket,
                    packets,
                )
            })
            .collect()
    };
    let data_bucket = server.now();
    server.ingest(team_flows(data_bucket, 1)).await;
    let marker_bucket = server.now() + 1;
    server.ingest(team_flows(marker_bucket, 2)).await;
    for (name, mut namespaces, mut stream) in streams {
        let (got, _) = read_before(&mut stream, marker_bucket).await;
        let mut received: Vec<String> = got
            .iter()
            .map(|r| {
                assert_eq!(flow_of(r).start_time, data_bucket);
                key_of(r).dest_namespace.clone()
            })
            .collect();
        received.sort();
        namespaces.sort();
        assert_eq!(received, namespaces, "stream {name}");
    }
    common::assert_accounting(&server.state);
}

// ---------------------------------------------------------------------------------------------
// §12.5: the per-peer cap, the queue of new streams, backfills in turn
// ---------------------------------------------------------------------------------------------

/// A channel whose connections come from `local`, a loopback address.
async fn channel_from(server: &RealtimeServer, local: std::net::IpAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
        .expect("a valid URI")
        .local_address(Some(local))
        .connect()
        .await
        .expect("the server accepts connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_peer_cap_refuses_one_address_beyond_it_and_not_the_others() {
    let server = RealtimeServer::start(
        1,
        retention(),
        StreamLimits {
            per_peer: Some(2),
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    let first: std::net::IpAddr = [127, 0, 0, 1].into();
    let second: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut from_first = FlowsClient::new(channel_from(&server, first).await);
    let mut held = vec![
        open(&mut from_first, request(0, None)).await,
        open(&mut from_first, request(0, None)).await,
    ];
    let status = from_first
        .stream(request(0, None))
        .await
        .expect_err("a third stream from one address is refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("per client address"),
        "{}",
        status.message()
    );
    assert_eq!(counters.refused_per_peer.load(Ordering::SeqCst), 1);
    assert_eq!(counters.refused.load(Ordering::SeqCst), 0);
    assert_eq!(server.state.streams.streams_of(first), 2);

    // Another address is not affected.
    let mut from_second = FlowsClient::new(channel_from(&server, second).await);
    let mut other = open(&mut from_second, request(0, None)).await;
    assert_eq!(server.state.streams.streams_of(second), 1);
    assert_eq!(counters.active.load(Ordering::SeqCst), 3);

    // A stream the first address closes makes room for it again.
    held.pop();
    eventually("the first address to hold one stream", || {
        server.state.streams.streams_of(first) == 1
    })
    .await;
    held.push(open(&mut from_first, request(0, None)).await);
    let bucket_now = server.now();
    server
        .ingest(vec![flow(key(("a", "b"), ("c", "d")), bucket_now, 5)])
        .await;
    for stream in held.iter_mut().chain(std::iter::once(&mut other)) {
        let result = next(stream).await;
        assert_eq!(
            (flow_of(&result).start_time, flow_of(&result).packets_in),
            (bucket_now, 5)
        );
    }
    assert_eq!(counters.refused_per_peer.load(Ordering::SeqCst), 1);
}

/// New streams wait in a bounded queue for the hub to register them: beyond it they are
/// refused with `RESOURCE_EXHAUSTED`, and counted. The hub cannot run in between: the test's
/// runtime has one thread and the calls do not yield.
#[tokio::test(flavor = "current_thread")]
async fn new_streams_beyond_the_hubs_queue_are_refused() {
    let mut config = eddy::server::ServerConfig::new(1, retention());
    config.streams = StreamLimits {
        queue: 2,
        ..StreamLimits::default()
    };
    let state = eddy::server::build_state(
        config,
        std::sync::Arc::new(eddy::worker::clock::SystemClock),
    )
    .expect("the engine starts");
    let hub = &state.streams;
    let counters = hub.counters();
    let queued: Vec<_> = (0..2)
        .map(|_| {
            hub.subscribe(Filter::default(), None, None)
                .expect("room in the queue")
        })
        .collect();
    let refused = hub
        .subscribe(Filter::default(), None, None)
        .err()
        .expect("the queue is full");
    assert_eq!(tonic::Status::from(refused).code(), Code::ResourceExhausted);
    assert_eq!(counters.refused_queue_full.load(Ordering::SeqCst), 1);
    assert_eq!(
        counters.active.load(Ordering::SeqCst),
        2,
        "the refused slot is back"
    );

    eventually("the hub to register the queued streams", || {
        counters.subscriptions.load(Ordering::SeqCst) == 2
    })
    .await;
    let again = hub
        .subscribe(Filter::default(), None, None)
        .expect("the queue has room again");
    eventually("the hub to register it", || {
        counters.subscriptions.load(Ordering::SeqCst) == 3
    })
    .await;
    drop(queued);
    drop(again);
    eventually("every stream to be released", || {
        counters.subscriptions.load(Ordering::SeqCst) == 0
            && counters.active.load(Ordering::SeqCst) == 0
    })
    .await;
}

/// With one backfill allowed at a time, a second backfill waits (counted) while a client that
/// reads nothing holds the first; when that client goes away, the second gets its whole
/// backfill, bucket by bucket, then live rows with no gap and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfills_beyond_the_cap_wait_their_turn_and_then_hand_over_exactly() {
    let server = RealtimeServer::start(
        2,
        retention(),
        StreamLimits {
            buffer: 8,
            backfills: 1,
            ..StreamLimits::default()
        },
    )
    .await;
    let counters = server.state.streams.counters();
    let t0 = server.now();
    let long_name = "x".repeat(2048);
    let mut data = Vec::new();
    for i in 0..300 {
        let k = key(("bulk", &long_name), ("bulk", &format!("svc-{i:03}")));
        data.push(flow(k.clone(), t0 - 4, 1));
        data.push(flow(k.clone(), t0 - 3, 2));
        data.push(flow(k, t0 - 2, 3));
    }
    server.ingest(data).await;
    let small_windows =
        tonic::transport::Endpoint::from_shared(format!("http://{}", server.address))
            .expect("a valid URI")
            .initial_stream_window_size(Some(4096))
            .initial_connection_window_size(Some(4096))
            .connect()
            .await
            .expect("the server accepts connections");
    let blocked = open(&mut FlowsClient::new(small_windows), request(t0 - 4, None)).await;
    eventually("the first backfill to run", || {
        counters.backfills.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut waiting = open(&mut server.flows(), request(t0 - 4, in_namespace("bulk"))).await;
    eventually("the second backfill to wait its turn", || {
        counters.backfills_waited.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(counters.backfills.load(Ordering::SeqCst), 2);

    drop(blocked);
    let marker_bucket = server.now() + 1;
    server
        .ingest(vec![flow(
            key(("bulk", "client"), ("bulk", "marker")),
            marker_bucket,
            9,
        )])
        .await;
    let (got, marker) = read_before(&mut waiting, marker_bucket).await;
    assert_eq!(got.len(), 900);
    for (index, bucket) in [t0 - 4, t0 - 3, t0 - 2].iter().enumerate() {
        let part = &got[index * 300..(index + 1) * 300];
        assert!(part.iter().all(|r| flow_of(r).start_time == *bucket));
        assert!(part
            .iter()
            .all(|r| flow_of(r).packets_in == index as i64 + 1));
    }
    assert_eq!(key_of(&marker).dest_name, "marker");
    assert_eq!(flow_of(&marker).packets_in, 9);
    eventually("both backfills to be over", || {
        counters.backfills.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(counters.too_slow.load(Ordering::SeqCst), 0);
}
