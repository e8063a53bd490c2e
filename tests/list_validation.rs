//! Flows.List request validation through gRPC (SPEC §4.1, §2.5, §1.4, §10): every invalid
//! request gets `INVALID_ARGUMENT` with a message naming the field, extreme but valid values
//! are answered correctly, and after every bad request the server still answers a normal List.

mod common;

use common::*;
use eddy::proto::{Filter, FlowListRequest, FlowListResult, SortBy, SortOption, StringMatch};
use tonic::Code;

/// The current bucket, `B(NOW)`.
const C: i64 = 1_700_000_100;

/// Two flows: tag 5 in bucket C-15 and tag 6 in bucket C-45.
async fn fixture(workers: usize) -> TestServer {
    let server = TestServer::start(workers).await;
    server
        .ingest(vec![
            flow(key(("shop", "frontend"), ("shop", "checkout")), C - 10, 5),
            flow(key(("shop", "frontend"), ("shop", "cart")), C - 40, 6),
        ])
        .await;
    server
}

fn tags(result: &FlowListResult) -> Vec<i64> {
    result.flows.iter().map(|f| flow_of(f).packets_in).collect()
}

fn meta(result: &FlowListResult) -> (i64, i64) {
    let meta = result.meta.as_ref().expect("meta is set");
    (meta.total_results, meta.total_pages)
}

/// A normal List still answers with the fixture's data.
async fn assert_healthy(server: &TestServer) {
    let listed = list_ok(server, FlowListRequest::default()).await;
    assert_eq!(tags(&listed), vec![5, 6]);
    assert_eq!(meta(&listed), (2, 1));
    let flow = flow_of(&listed.flows[0]);
    assert_eq!((flow.start_time, flow.end_time), (C - 15, C));
}

/// `request` fails with `INVALID_ARGUMENT` naming `field`, and the server is fine afterwards.
async fn assert_invalid(server: &TestServer, request: FlowListRequest, field: &str) {
    let described = format!("{request:?}");
    let status = list_status(server, request).await;
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "{described}: {status:?}"
    );
    assert!(
        status.message().contains(field),
        "{described}: the message {:?} should name {field}",
        status.message()
    );
    assert_healthy(server).await;
}

fn range(gte: i64, lt: i64) -> FlowListRequest {
    FlowListRequest {
        start_time_gte: gte,
        start_time_lt: lt,
        ..Default::default()
    }
}

fn bad_match(value: &str, r#type: i32) -> StringMatch {
    StringMatch {
        value: value.into(),
        r#type,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_inverted_time_range_is_invalid_before_clamping() {
    let server = fixture(2).await;
    assert_healthy(&server).await;
    let oldest = C - 3600;
    let cases = [
        (C, C),
        (C + 10, C),
        (-10, -10),
        (-5, -10),
        (-1, -1),
        (NOW, 0),           // lt 0 is NOW
        (NOW + 100, 0),     // an absolute start after now
        (0, -4000),         // gte 0 is the oldest bucket, lt is before it
        (0, oldest),        // equal after normalising
        (0, oldest - 1000), // older than retention: still an error, not clamped first
        (1, 1),
        (200, 100),
        (C + 2000, C + 1000),
        (i64::MAX, i64::MAX),
        (i64::MIN, i64::MIN),
        (i64::MAX, i64::MIN),
        (-1, i64::MIN),
    ];
    for (gte, lt) in cases {
        assert_invalid(&server, range(gte, lt), "start_time").await;
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_ranges_outside_retention_are_valid_and_clamped() {
    let server = fixture(1).await;
    for (gte, lt, want) in [
        (1, 2, vec![]),
        (C + 1000, C + 2000, vec![]),
        (i64::MIN, i64::MAX, vec![5, 6]),
        (i64::MIN, -1, vec![5, 6]),
        (1, 0, vec![5, 6]),
        (-1_000_000, -7, vec![5, 6]), // lt = C: the current bucket is empty anyway
    ] {
        let listed = list_ok(&server, range(gte, lt)).await;
        assert_eq!(tags(&listed), want, "range ({gte}, {lt})");
    }
    // lt = NOW - 50 = C - 43: bucket C-45 is selected, bucket C-15 is not.
    let listed = list_ok(&server, range(-1_000_000, -50)).await;
    assert_eq!(tags(&listed), vec![6]);
    assert_eq!(meta(&listed), (1, 1));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_page_or_page_size_is_invalid() {
    let server = fixture(2).await;
    let paged = |page, page_size| FlowListRequest {
        page,
        page_size,
        ..Default::default()
    };
    assert_invalid(&server, paged(-1, 0), "page").await;
    assert_invalid(&server, paged(-1, 10), "page").await;
    assert_invalid(&server, paged(i64::MIN, 1), "page").await;
    assert_invalid(&server, paged(0, -1), "page_size").await;
    assert_invalid(&server, paged(3, -1), "page_size").await;
    assert_invalid(&server, paged(0, i64::MIN), "page_size").await;
    assert_invalid(&server, paged(-1, -1), "page").await;
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_pages_and_page_sizes_are_answered() {
    let server = fixture(2).await;
    let paged = |page, page_size| FlowListRequest {
        page,
        page_size,
        ..Default::default()
    };
    let cases = [
        (0, i64::MAX, vec![5, 6], (2, 1)),
        (1, i64::MAX, vec![], (2, 1)),
        (i64::MAX, i64::MAX, vec![], (2, 1)),
        (i64::MAX / 2, 3, vec![], (2, 1)),
        (i64::MAX, 1, vec![], (2, 2)),
        (i64::MAX, 0, vec![5, 6], (2, 1)), // page is ignored without a page size
        (1 << 40, 1 << 40, vec![], (2, 1)),
    ];
    for (page, page_size, want, totals) in cases {
        let listed = list_ok(&server, paged(page, page_size)).await;
        assert_eq!(tags(&listed), want, "page {page} of size {page_size}");
        assert_eq!(meta(&listed), totals, "page {page} of size {page_size}");
        assert_healthy(&server).await;
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_interval_must_be_zero_or_a_positive_multiple_of_the_window() {
    let server = fixture(1).await;
    let every = |interval| FlowListRequest {
        aggregation_interval: interval,
        ..Default::default()
    };
    for interval in [-15, -30, -1, 1, 7, 14, 16, 20, 25, 3601, i64::MIN, i64::MAX] {
        assert_invalid(&server, every(interval), "aggregation_interval").await;
    }
    // Valid: 0, multiples of 15, up to the largest multiple of 15 an int64 holds.
    assert_eq!(i64::MAX % WINDOW, 7);
    for interval in [0, 15, 30, 45, 3600, i64::MAX - 7] {
        let listed = list_ok(&server, every(interval)).await;
        assert_eq!(tags(&listed), vec![5, 6], "interval {interval}");
        assert_eq!(meta(&listed), (2, 1), "interval {interval}");
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sort_options_are_invalid() {
    let server = fixture(2).await;
    let sorts = |numbers: &[i32]| FlowListRequest {
        sort_by: numbers.iter().map(|n| SortOption { sort_by: *n }).collect(),
        ..Default::default()
    };
    for numbers in [
        vec![7],
        vec![99],
        vec![-1],
        vec![i32::MAX],
        vec![i32::MIN],
        vec![SortBy::Time as i32, 7],
        vec![SortBy::DestName as i32, SortBy::SourceType as i32, 8],
    ] {
        assert_invalid(&server, sorts(&numbers), "sort_by").await;
    }
    // Every known option, and repeats of them up to the 1,000-entry bound, are fine.
    let all: Vec<i32> = (0..=6).collect();
    let listed = list_ok(&server, sorts(&all)).await;
    assert_eq!(meta(&listed), (2, 1));
    let many: Vec<i32> = (0..1_000).map(|i| i % 7).collect();
    let listed = list_ok(&server, sorts(&many)).await;
    assert_eq!(tags(&listed), vec![5, 6]);
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_string_match_types_are_invalid_in_every_string_field() {
    let server = fixture(1).await;
    type Setter = fn(&mut Filter, Vec<StringMatch>);
    let fields: [(&str, Setter); 5] = [
        ("source_names", |f, m| f.source_names = m),
        ("source_namespaces", |f, m| f.source_namespaces = m),
        ("dest_names", |f, m| f.dest_names = m),
        ("dest_namespaces", |f, m| f.dest_namespaces = m),
        ("protocols", |f, m| f.protocols = m),
    ];
    for (field, set) in fields {
        for matches in [
            vec![bad_match("frontend", 2)],
            vec![bad_match("frontend", -1)],
            vec![bad_match("", 99)],
            vec![exact("frontend"), bad_match("x", 3)],
            // An empty fuzzy value matches everything, but does not excuse a bad type.
            vec![fuzzy(""), bad_match("x", 2)],
        ] {
            let mut filter = Filter::default();
            set(&mut filter, matches);
            let request = FlowListRequest {
                filter: Some(filter),
                ..Default::default()
            };
            assert_invalid(&server, request, field).await;
        }
    }
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_numbers_in_matched_values_are_not_errors() {
    // SPEC §1.4: unknown enum numbers of ingested flows are stored and echoed; in a filter's
    // value lists (actions, reporter, pending actions, policy kind) they match by number.
    let server = fixture(2).await;
    let mut odd = key(("shop", "odd"), ("shop", "checkout"));
    odd.action = 9;
    odd.reporter = 5;
    odd.source_type = 42;
    server.ingest(vec![flow(odd, C - 70, 7)]).await;
    let filtered = |filter: Filter| FlowListRequest {
        filter: Some(filter),
        ..Default::default()
    };
    let cases = [
        (
            Filter {
                actions: vec![9],
                ..Default::default()
            },
            vec![7],
        ),
        (
            Filter {
                reporter: 5,
                ..Default::default()
            },
            vec![7],
        ),
        (
            Filter {
                actions: vec![77],
                ..Default::default()
            },
            vec![],
        ),
        (
            Filter {
                pending_actions: vec![77],
                ..Default::default()
            },
            vec![],
        ),
        (
            Filter {
                policies: vec![eddy::proto::PolicyMatch {
                    kind: 77,
                    ..Default::default()
                }],
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (filter, want) in cases {
        let described = format!("{filter:?}");
        let listed = list_ok(&server, filtered(filter)).await;
        assert_eq!(tags(&listed), want, "{described}");
    }
    let odd = list_ok(
        &server,
        filtered(Filter {
            source_names: vec![exact("odd")],
            ..Default::default()
        }),
    )
    .await;
    let k = key_of(&odd.flows[0]);
    assert_eq!((k.action, k.reporter, k.source_type), (9, 5, 42));
    common::assert_accounting(&server.state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_bad_requests_in_a_row_and_in_parallel_leave_the_server_working() {
    let server = fixture(2).await;
    let bad = vec![
        range(C, C),
        FlowListRequest {
            page: -1,
            ..Default::default()
        },
        FlowListRequest {
            page_size: -1,
            ..Default::default()
        },
        FlowListRequest {
            aggregation_interval: 10,
            ..Default::default()
        },
        FlowListRequest {
            sort_by: vec![SortOption { sort_by: 12 }],
            ..Default::default()
        },
        FlowListRequest {
            filter: Some(Filter {
                protocols: vec![bad_match("TCP", 5)],
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let calls = (0..5).flat_map(|_| bad.clone()).map(|request| {
        let mut client = server.flows();
        async move { client.list(request).await }
    });
    let answers = futures::future::join_all(calls).await;
    assert_eq!(answers.len(), 30);
    for answer in answers {
        let status = answer.expect_err("every request is invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert_healthy(&server).await;
    common::assert_accounting(&server.state);
}
