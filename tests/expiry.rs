//! Retention and expiry through gRPC (SPEC §2.2-§2.4, with §3.3-§3.5 aggregation, §6 hints
//! and §9.3 skips): data leaves List exactly when its bucket leaves retention, aggregates that
//! span expired and retained buckets shrink (counters, bounds and label intersections are
//! recomputed), hints disappear with their flows, expired data is released rather than only
//! hidden, and updates older than the retention floor are skipped as outside retention.

mod common;

use common::*;
use eddy::ingest::SkipReason;
use eddy::proto::{
    FilterHintsRequest, FilterType, Flow, FlowKey, FlowListRequest, MatchType, StringMatch,
};
use eddy::retention::Retention;

/// Window 1 s, five closed buckets: at `NOW` the buckets `NOW-5 ..= NOW+1` exist.
const SHORT: Retention = Retention {
    window: 1,
    closed_buckets: 5,
};

/// Window 15 s, 240 closed buckets (the default).
const DEFAULT: Retention = Retention {
    window: WINDOW,
    closed_buckets: 240,
};

/// One listed aggregate: (dest name, packets_in, bytes_in, updates, start, end, source
/// labels, dest labels).
type Row = (String, i64, i64, i64, i64, i64, Vec<String>, Vec<String>);

fn row(
    dest: &str,
    packets: i64,
    updates: i64,
    bounds: (i64, i64),
    source_labels: &[&str],
    dest_labels: &[&str],
) -> Row {
    (
        dest.to_string(),
        packets,
        100 * packets,
        updates,
        bounds.0,
        bounds.1,
        source_labels.iter().map(|l| l.to_string()).collect(),
        dest_labels.iter().map(|l| l.to_string()).collect(),
    )
}

/// Every aggregate in the default range, by dest name; also checks the totals of a paged
/// List agree.
async fn rows(server: &TestServer) -> Vec<Row> {
    let mut rows: Vec<Row> = server
        .list_all()
        .await
        .into_iter()
        .map(|result| {
            let flow = result.flow.expect("flow is set");
            (
                flow.key.expect("key is set").dest_name,
                flow.packets_in,
                flow.bytes_in,
                flow.num_connections_started,
                flow.start_time,
                flow.end_time,
                flow.source_labels,
                flow.dest_labels,
            )
        })
        .collect();
    rows.sort();
    let paged = server
        .flows()
        .list(FlowListRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .expect("List succeeds")
        .into_inner();
    let meta = paged.meta.expect("metadata is set");
    let count = rows.len() as i64;
    assert_eq!(
        (meta.total_results, meta.total_pages),
        (count, (count + 1) / 2)
    );
    rows
}

/// The dest-name hints of the default range, unfiltered and through a filter that keeps
/// every flow; both must agree.
async fn dest_hints(server: &TestServer) -> Vec<String> {
    let mut answers = Vec::new();
    for filter in [
        None,
        Some(eddy::proto::Filter {
            protocols: vec![StringMatch {
                value: "TCP".into(),
                r#type: MatchType::Exact as i32,
            }],
            ..Default::default()
        }),
    ] {
        let result = server
            .flows()
            .filter_hints(FilterHintsRequest {
                r#type: FilterType::DestName as i32,
                filter,
                ..Default::default()
            })
            .await
            .expect("FilterHints succeeds")
            .into_inner();
        answers.push(
            result
                .hints
                .into_iter()
                .map(|hint| hint.value)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        answers[0], answers[1],
        "unfiltered and filtered hints agree"
    );
    answers.swap_remove(0)
}

fn labelled(mut flow: Flow, source: &[&str], dest: &[&str]) -> Flow {
    flow.source_labels = source.iter().map(|l| l.to_string()).collect();
    flow.dest_labels = dest.iter().map(|l| l.to_string()).collect();
    flow
}

fn dest_key(dest: &str) -> FlowKey {
    key(("shop", "frontend"), ("shop", dest))
}

/// Data over the short retention's buckets at `NOW`:
/// - `k`: two updates at NOW-5 (10 and 3 packets), one at NOW-4 (5), two at NOW-3 (2 and 1),
///   with label sets that grow as old buckets leave;
/// - `l`: one update at NOW-5 (7);
/// - `m`: one update at NOW-5 (6, no labels) and one at NOW-1 (4, labelled).
async fn ingest_shrinking_data(server: &TestServer) {
    let k = dest_key("k");
    server
        .ingest(vec![
            labelled(flow(k.clone(), NOW - 5, 10), &["w", "x"], &["q", "r"]),
            labelled(flow(k.clone(), NOW - 5, 3), &["x"], &["q", "r", "s"]),
            labelled(flow(k.clone(), NOW - 4, 5), &["y", "x"], &["p", "q", "r"]),
            labelled(
                flow(k.clone(), NOW - 3, 2),
                &["x", "y", "z"],
                &["p", "q", "r"],
            ),
            labelled(flow(k, NOW - 3, 1), &["z", "y", "x"], &["r", "q", "p"]),
            flow(dest_key("l"), NOW - 5, 7),
            flow(dest_key("m"), NOW - 5, 6),
            labelled(flow(dest_key("m"), NOW - 1, 4), &["m1"], &["m2"]),
        ])
        .await;
}

/// What List shows of the shrinking data once the buckets before `floor` have left.
fn shrinking_rows(floor: i64) -> Vec<Row> {
    let k = match floor - NOW {
        -5 => Some(row("k", 21, 5, (NOW - 5, NOW - 2), &["x"], &["q", "r"])),
        -4 => Some(row(
            "k",
            8,
            3,
            (NOW - 4, NOW - 2),
            &["x", "y"],
            &["p", "q", "r"],
        )),
        -3 => Some(row(
            "k",
            3,
            2,
            (NOW - 3, NOW - 2),
            &["x", "y", "z"],
            &["p", "q", "r"],
        )),
        _ => None,
    };
    let l = (floor - NOW == -5).then(|| row("l", 7, 1, (NOW - 5, NOW - 4), &[], &[]));
    let m = if floor - NOW == -5 {
        Some(row("m", 10, 2, (NOW - 5, NOW), &[], &[]))
    } else if floor < NOW {
        Some(row("m", 4, 1, (NOW - 1, NOW), &["m1"], &["m2"]))
    } else {
        None
    };
    [k, l, m].into_iter().flatten().collect()
}

fn shrinking_hints(floor: i64) -> Vec<String> {
    shrinking_rows(floor).into_iter().map(|row| row.0).collect()
}

/// One second at a time with a 1 s window: each step retracts exactly the oldest bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_shrink_one_bucket_at_a_time() {
    let server = TestServer::start_with(1, SHORT, NOW).await;
    ingest_shrinking_data(&server).await;
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 5));
    assert_eq!(dest_hints(&server).await, strings_of(&["k", "l", "m"]));
    for step in 1..=6 {
        server.advance_clock(1).await;
        let floor = NOW + step - 5;
        assert_eq!(
            rows(&server).await,
            shrinking_rows(floor),
            "floor NOW{}",
            step - 5
        );
        assert_eq!(dest_hints(&server).await, shrinking_hints(floor));
    }
    assert!(rows(&server).await.is_empty());
    common::assert_accounting(&server.state);
}

/// Several buckets leaving at one epoch end, with two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_buckets_leave_at_once() {
    let server = TestServer::start_with(2, SHORT, NOW).await;
    ingest_shrinking_data(&server).await;
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 5));
    server.advance_clock(2).await;
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 3));
    assert_eq!(dest_hints(&server).await, shrinking_hints(NOW - 3));
    server.advance_clock(1).await;
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 2));
    server.advance_clock(3).await;
    assert_eq!(rows(&server).await, Vec::<Row>::new());
    assert_eq!(dest_hints(&server).await, Vec::<String>::new());
    common::assert_accounting(&server.state);
}

/// With the default 15 s window, data stays until the very second its bucket leaves
/// retention, then goes, checked just before and just after each boundary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_leaves_exactly_at_the_epoch_end() {
    let server = TestServer::start_with(2, DEFAULT, NOW).await;
    let current = bucket(NOW);
    let oldest = current - 240 * WINDOW;
    let second = oldest + WINDOW;
    let mut flows = vec![
        labelled(flow(dest_key("a"), oldest + 3, 1), &["s"], &["d", "old"]),
        labelled(flow(dest_key("a"), second + 2, 2), &["s"], &["d"]),
        flow(dest_key("b"), oldest + 14, 4),
        flow(dest_key("c"), current - WINDOW, 8),
    ];
    // Many keys in the two oldest buckets, spread over both workers.
    for i in 0..20 {
        flows.push(flow(
            dest_key(&format!("n-old-{i:02}")),
            oldest + i % WINDOW,
            1,
        ));
        flows.push(flow(
            dest_key(&format!("n-second-{i:02}")),
            second + i % WINDOW,
            1,
        ));
    }
    server.ingest(flows).await;
    let named = |rows: &[Row]| -> Vec<Row> {
        rows.iter()
            .filter(|row| !row.0.starts_with("n-"))
            .cloned()
            .collect()
    };
    let count_prefix =
        |rows: &[Row], prefix: &str| rows.iter().filter(|row| row.0.starts_with(prefix)).count();
    let all_three = vec![
        row("a", 3, 2, (oldest, second + WINDOW), &["s"], &["d"]),
        row("b", 4, 1, (oldest, oldest + WINDOW), &[], &[]),
        row("c", 8, 1, (current - WINDOW, current), &[], &[]),
    ];
    let after_first = vec![
        row("a", 2, 1, (second, second + WINDOW), &["s"], &["d"]),
        row("c", 8, 1, (current - WINDOW, current), &[], &[]),
    ];
    let after_second = vec![row("c", 8, 1, (current - WINDOW, current), &[], &[])];

    let listed = rows(&server).await;
    assert_eq!(named(&listed), all_three);
    assert_eq!(
        (
            count_prefix(&listed, "n-old-"),
            count_prefix(&listed, "n-second-")
        ),
        (20, 20)
    );
    // Just before the epoch end (NOW is current + 7): current + 14.
    server.advance_clock(7).await;
    let listed = rows(&server).await;
    assert_eq!(named(&listed), all_three);
    assert_eq!(count_prefix(&listed, "n-old-"), 20);
    assert!(dest_hints(&server).await.contains(&"b".to_string()));
    // At the epoch end: the oldest bucket is gone.
    server.advance_clock(1).await;
    let listed = rows(&server).await;
    assert_eq!(named(&listed), after_first);
    assert_eq!(
        (
            count_prefix(&listed, "n-old-"),
            count_prefix(&listed, "n-second-")
        ),
        (0, 20)
    );
    let hints = dest_hints(&server).await;
    assert_eq!(hints.len(), 22);
    assert!(!hints.contains(&"b".to_string()));
    assert!(!hints.iter().any(|hint| hint.starts_with("n-old-")));
    // Just before the next epoch end, then at it.
    server.advance_clock(14).await;
    assert_eq!(named(&rows(&server).await), after_first);
    server.advance_clock(1).await;
    let listed = rows(&server).await;
    assert_eq!(listed, after_second);
    assert_eq!(dest_hints(&server).await, strings_of(&["c"]));
    common::assert_accounting(&server.state);
}

/// Expired data is released, not only hidden by the time range: with the clock set back
/// after an expiry, the range reaches the old bucket again but nothing of it is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_data_is_released_not_only_hidden() {
    let server = TestServer::start_with(2, SHORT, NOW).await;
    ingest_shrinking_data(&server).await;
    server.advance_clock(1).await;
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 4));
    // Back to NOW: the default range starts at NOW - 5 again (the retention floor the engine
    // applied does not move back).
    server.clock.set(NOW);
    server.state.engine.sync().await.expect("the engine runs");
    assert_eq!(rows(&server).await, shrinking_rows(NOW - 4));
    assert_eq!(dest_hints(&server).await, strings_of(&["k", "m"]));
    let explicit = server
        .flows()
        .list(FlowListRequest {
            start_time_gte: NOW - 5,
            start_time_lt: NOW - 4,
            ..Default::default()
        })
        .await
        .expect("List succeeds")
        .into_inner();
    assert!(explicit.flows.is_empty());
    assert_eq!(explicit.meta.expect("metadata").total_results, 0);
    common::assert_accounting(&server.state);
}

/// An update whose bucket is older than the retention floor is skipped as outside retention;
/// the future bound moves forward with the clock too (SPEC §2.4, §9.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_older_than_the_floor_are_skipped_as_outside_retention() {
    let server = TestServer::start_with(1, DEFAULT, NOW).await;
    let current = bucket(NOW);
    let oldest = current - 240 * WINDOW;
    let after_future = current + 2 * WINDOW;
    server
        .ingest(vec![
            flow(dest_key("oldest"), oldest, 1),
            flow(dest_key("too-new"), after_future, 2),
        ])
        .await;
    assert_eq!(
        server
            .state
            .ingest
            .skipped_total(SkipReason::OutsideRetention),
        1
    );
    server.advance_clock(WINDOW).await;
    // The old bucket has left: a late update for it is skipped...
    server
        .ingest(vec![flow(dest_key("late"), oldest + 14, 3)])
        .await;
    assert_eq!(
        server
            .state
            .ingest
            .skipped_total(SkipReason::OutsideRetention),
        2
    );
    // ...while the new oldest bucket and the new future bucket accept updates.
    server
        .ingest(vec![
            flow(dest_key("new-oldest"), oldest + WINDOW, 4),
            flow(dest_key("now-future"), after_future, 5),
        ])
        .await;
    assert_eq!(
        server
            .state
            .ingest
            .skipped_total(SkipReason::OutsideRetention),
        2
    );
    assert_eq!(server.state.ingest.stored_total(), 3);
    assert_eq!(
        rows(&server).await,
        vec![row(
            "new-oldest",
            4,
            1,
            (oldest + WINDOW, oldest + 2 * WINDOW),
            &[],
            &[]
        )]
    );
    let with_future = server
        .flows()
        .list(FlowListRequest {
            start_time_lt: after_future + WINDOW,
            ..Default::default()
        })
        .await
        .expect("List succeeds")
        .into_inner();
    let mut names: Vec<String> = with_future.flows.iter().map(key_name).collect();
    names.sort();
    assert_eq!(names, strings_of(&["new-oldest", "now-future"]));

    // The same with the short retention: one second is one bucket.
    let short = TestServer::start_with(2, SHORT, NOW).await;
    short.advance_clock(1).await;
    short
        .ingest(vec![
            flow(dest_key("gone"), NOW - 5, 1),
            flow(dest_key("kept"), NOW - 4, 2),
            flow(dest_key("future"), NOW + 2, 3),
            flow(dest_key("too-new"), NOW + 3, 4),
        ])
        .await;
    assert_eq!(
        short
            .state
            .ingest
            .skipped_total(SkipReason::OutsideRetention),
        2
    );
    assert_eq!(
        rows(&short).await,
        vec![row("kept", 2, 1, (NOW - 4, NOW - 3), &[], &[])]
    );
    common::assert_accounting(&server.state);
}

fn key_name(result: &eddy::proto::FlowResult) -> String {
    result
        .flow
        .as_ref()
        .and_then(|flow| flow.key.as_ref())
        .expect("key is set")
        .dest_name
        .clone()
}

fn strings_of(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| v.to_string()).collect()
}

/// A flow whose every bucket has expired leaves its worker's flow table with its key: a List
/// sorted by a key field right after the epoch lists the rest (1 and 2 workers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_sorted_by_name_right_after_a_flow_expired_lists_the_rest() {
    for workers in [1, 2] {
        let server = TestServer::start_with(workers, SHORT, NOW).await;
        ingest_shrinking_data(&server).await;
        server.advance_clock(1).await;
        let request = FlowListRequest {
            sort_by: vec![sort_by(eddy::proto::SortBy::DestName)],
            ..FlowListRequest::default()
        };
        let listed = list_ok(&server, request).await;
        let dests: Vec<String> = listed
            .flows
            .iter()
            .map(|result| {
                let flow = result.flow.as_ref().expect("flow is set");
                flow.key.as_ref().expect("key is set").dest_name.clone()
            })
            .collect();
        assert_eq!(dests, strings_of(&["k", "m"]), "{workers} workers");
        common::assert_accounting(&server.state);
    }
}
