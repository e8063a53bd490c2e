//! Request sizes through gRPC (SPEC §12.3, §10.1): more than 100,000 values in one repeated
//! filter field or more than 1,000 `sort_by` entries is `INVALID_ARGUMENT` naming the field,
//! anything at the bounds is answered, and a message over the 4 MiB decode limit is
//! `RESOURCE_EXHAUSTED` for every service; the server keeps answering afterwards.

mod common;

use common::*;
use eddy::proto::{
    Filter, FilterHintsRequest, FilterType, FlowListRequest, FlowStreamRequest, FlowUpdate,
    PortMatch, SortBy,
};
use prost::Message;
use tonic::Code;

const MAX_VALUES: usize = 100_000;

fn list_with(filter: Filter) -> FlowListRequest {
    FlowListRequest {
        filter: Some(filter),
        ..Default::default()
    }
}

#[tokio::test]
async fn too_many_filter_values_or_sort_fields_are_invalid_and_name_the_field() {
    let server = TestServer::start(1).await;
    server
        .ingest(vec![flow(key(("shop", "a"), ("shop", "b")), NOW - 20, 1)])
        .await;
    let names = |count: usize| (0..count).map(|i| exact(&format!("n{i}"))).collect();
    let ports = |count: usize| {
        (0..count)
            .map(|port| PortMatch { port: port as i64 })
            .collect()
    };
    let cases: Vec<(&str, Filter)> = vec![
        (
            "filter.source_names",
            Filter {
                source_names: names(MAX_VALUES + 1),
                ..Default::default()
            },
        ),
        (
            "filter.dest_ports",
            Filter {
                dest_ports: ports(MAX_VALUES + 1),
                ..Default::default()
            },
        ),
        (
            "filter.actions",
            Filter {
                actions: vec![1; MAX_VALUES + 1],
                ..Default::default()
            },
        ),
        (
            "filter.pending_actions",
            Filter {
                pending_actions: vec![1; MAX_VALUES + 1],
                ..Default::default()
            },
        ),
    ];
    for (field, filter) in cases {
        let status = list_status(&server, list_with(filter.clone())).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
        assert!(status.message().starts_with(field), "{}", status.message());
        let hints = server
            .flows()
            .filter_hints(FilterHintsRequest {
                r#type: FilterType::DestName as i32,
                filter: Some(filter.clone()),
                ..Default::default()
            })
            .await
            .expect_err("FilterHints refuses the filter");
        assert_eq!(hints.code(), Code::InvalidArgument, "{field}");
        let stream = server
            .flows()
            .stream(FlowStreamRequest {
                filter: Some(filter),
                ..Default::default()
            })
            .await
            .expect_err("Stream refuses the filter");
        assert_eq!(stream.code(), Code::InvalidArgument, "{field}");
    }
    let sorted = |count: usize| FlowListRequest {
        sort_by: vec![sort_by(SortBy::DestName); count],
        ..Default::default()
    };
    let status = list_status(&server, sorted(1001)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("sort_by"),
        "{}",
        status.message()
    );
    // At the bounds the request is answered.
    assert_eq!(list_ok(&server, sorted(1000)).await.flows.len(), 1);
    let at_bound = list_with(Filter {
        dest_names: (0..MAX_VALUES - 1)
            .map(|i| exact(&format!("n{i}")))
            .chain([exact("b")])
            .collect(),
        dest_ports: ports(MAX_VALUES - 1)
            .into_iter()
            .chain([PortMatch { port: 443 }])
            .collect(),
        ..Default::default()
    });
    assert_eq!(list_ok(&server, at_bound).await.flows.len(), 1);
}

#[tokio::test]
async fn a_request_over_the_decode_limit_is_resource_exhausted_and_the_server_still_answers() {
    let server = TestServer::start(1).await;
    let huge = "x".repeat(5 << 20);
    let status = list_status(
        &server,
        list_with(Filter {
            source_names: vec![exact(&huge)],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "List: {status:?}");

    let mut oversized = flow(key(("shop", "a"), ("shop", "b")), NOW - 20, 1);
    oversized.source_labels = vec![huge.clone()];
    let message = FlowUpdate {
        flow: Some(oversized),
    }
    .encode_to_vec();
    let (receipts, ended) = raw_streaming(
        &server.channel,
        "/goldmane.FlowCollector/Connect",
        vec![message],
    )
    .await;
    assert!(receipts.is_empty());
    let status = ended.expect_err("the oversized Connect call fails");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "Connect: {status:?}"
    );

    let stats = server
        .statistics()
        .list(eddy::proto::StatisticsRequest {
            policy_match: Some(eddy::proto::PolicyMatch {
                name: huge,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("Statistics refuses the request");
    assert_eq!(
        stats.code(),
        Code::ResourceExhausted,
        "Statistics: {stats:?}"
    );

    server
        .ingest(vec![flow(key(("shop", "a"), ("shop", "b")), NOW - 20, 1)])
        .await;
    assert_eq!(server.list_all().await.len(), 1);
}
