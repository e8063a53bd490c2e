//! `eddy.views.v1.Views` over real gRPC: the registered views listed with typed columns, the
//! top talkers view read summed, per bucket, filtered, sorted and limited with concrete
//! values, and every bad request answered with a clean status while the server keeps answering
//! (reflection lists the service: `operations_surface.rs`). With 1 and 2 workers.

mod common;

use common::*;
use eddy::proto::views::value::Kind;
use eddy::proto::views::views_client::ViewsClient;
use eddy::proto::views::{
    ColumnType, Filter, ListViewsRequest, ReadRequest, ReadResponse, Sort, Value,
};
use tonic::transport::Channel;
use tonic::Code;

fn views(server: &TestServer) -> ViewsClient<Channel> {
    ViewsClient::new(server.channel.clone())
}

/// Four flows: shop → shop twice (3 and 4 packets each way) and shop → payments (10) in the
/// last closed bucket, web → shop (1) two buckets earlier. `flow` sets 100 bytes a packet.
async fn known_traffic(server: &TestServer) {
    let recent = bucket(NOW) - WINDOW + 1;
    let earlier = recent - 2 * WINDOW;
    server
        .ingest(vec![
            flow(key(("shop", "frontend"), ("shop", "cart")), recent, 3),
            flow(key(("shop", "frontend"), ("shop", "checkout")), recent, 4),
            flow(key(("shop", "checkout"), ("payments", "api")), recent, 10),
            flow(key(("web", "proxy"), ("shop", "frontend")), earlier, 1),
        ])
        .await;
}

fn text(value: &Value) -> String {
    match &value.kind {
        Some(Kind::StringValue(text)) => text.clone(),
        Some(Kind::IntegerValue(number)) | Some(Kind::TimestampValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

/// Each row as text: `source dest start end bytes bytes_in bytes_out packets in out`.
fn rows(answer: &ReadResponse) -> Vec<Vec<String>> {
    answer
        .rows
        .iter()
        .map(|row| row.values.iter().map(text).collect())
        .collect()
}

fn read(view: &str) -> ReadRequest {
    ReadRequest {
        view: view.into(),
        ..ReadRequest::default()
    }
}

fn string_filter(column: &str, value: &str) -> Filter {
    Filter {
        column: column.into(),
        value: Some(Value {
            kind: Some(Kind::StringValue(value.into())),
        }),
    }
}

async fn read_ok(server: &TestServer, request: ReadRequest) -> ReadResponse {
    views(server)
        .read(request)
        .await
        .expect("the read succeeds")
        .into_inner()
}

async fn read_status(server: &TestServer, request: ReadRequest) -> tonic::Status {
    views(server)
        .read(request)
        .await
        .expect_err("the read is refused")
}

#[tokio::test]
async fn list_views_names_top_talkers_with_typed_columns() {
    let server = TestServer::start(1).await;
    let answer = views(&server)
        .list_views(ListViewsRequest {})
        .await
        .expect("ListViews succeeds")
        .into_inner();
    let top = answer
        .views
        .iter()
        .find(|view| view.name == "top_talkers")
        .expect("top_talkers is registered");
    let columns: Vec<(&str, i32)> = top
        .columns
        .iter()
        .map(|column| (column.name.as_str(), column.r#type))
        .collect();
    let string = ColumnType::String as i32;
    let integer = ColumnType::Integer as i32;
    let timestamp = ColumnType::Timestamp as i32;
    assert_eq!(
        columns,
        vec![
            ("source_namespace", string),
            ("dest_namespace", string),
            ("start_time", timestamp),
            ("end_time", timestamp),
            ("bytes", integer),
            ("bytes_in", integer),
            ("bytes_out", integer),
            ("packets", integer),
            ("packets_in", integer),
            ("packets_out", integer),
        ]
    );
    assert_eq!(top.default_sort, "bytes");
    assert!(top.default_descending);
    assert!(!top.description.is_empty());
}

#[tokio::test]
async fn top_talkers_sums_sorts_filters_and_limits() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        known_traffic(&server).await;
        let answer = read_ok(&server, read("top_talkers")).await;
        let (gte, lt) = (
            answer.start_time_gte.to_string(),
            answer.start_time_lt.to_string(),
        );
        assert_eq!(answer.start_time_lt, NOW, "{workers} workers");
        let row = |source: &str, dest: &str, numbers: [i64; 6]| {
            let mut row = vec![
                source.to_string(),
                dest.to_string(),
                gte.clone(),
                lt.clone(),
            ];
            row.extend(numbers.iter().map(i64::to_string));
            row
        };
        let payments = row("shop", "payments", [2000, 1000, 1000, 20, 10, 10]);
        let shop = row("shop", "shop", [1400, 700, 700, 14, 7, 7]);
        let web = row("web", "shop", [200, 100, 100, 2, 1, 1]);
        assert_eq!(
            rows(&answer),
            vec![payments.clone(), shop.clone(), web.clone()],
            "{workers} workers: by bytes, largest first"
        );

        let top = read_ok(
            &server,
            ReadRequest {
                limit: 1,
                ..read("top_talkers")
            },
        )
        .await;
        assert_eq!(rows(&top), vec![payments.clone()], "{workers} workers");

        let into_shop = read_ok(
            &server,
            ReadRequest {
                filters: vec![string_filter("dest_namespace", "shop")],
                sort: Some(Sort {
                    column: "source_namespace".into(),
                    descending: true,
                }),
                ..read("top_talkers")
            },
        )
        .await;
        assert_eq!(
            rows(&into_shop),
            vec![web.clone(), shop.clone()],
            "{workers} workers: into shop, sources Z to A"
        );

        let unknown = read_ok(
            &server,
            ReadRequest {
                filters: vec![string_filter("source_namespace", "nowhere")],
                ..read("top_talkers")
            },
        )
        .await;
        assert!(unknown.rows.is_empty(), "{workers} workers");
        assert_eq!(unknown.columns.len(), 10);
    }
}

#[tokio::test]
async fn top_talkers_per_bucket_gives_each_bucket_its_own_row() {
    let server = TestServer::start(2).await;
    known_traffic(&server).await;
    let recent = bucket(NOW) - WINDOW;
    let earlier = recent - 2 * WINDOW;
    let answer = read_ok(
        &server,
        ReadRequest {
            per_bucket: true,
            filters: vec![string_filter("source_namespace", "web")],
            ..read("top_talkers")
        },
    )
    .await;
    let expected: Vec<String> = [earlier, earlier + WINDOW, 200, 100, 100, 2, 1, 1]
        .iter()
        .map(i64::to_string)
        .collect();
    let mut row = vec!["web".to_string(), "shop".to_string()];
    row.extend(expected);
    assert_eq!(rows(&answer), vec![row]);

    let only_recent = read_ok(
        &server,
        ReadRequest {
            start_time_gte: recent,
            start_time_lt: recent + WINDOW,
            ..read("top_talkers")
        },
    )
    .await;
    let pairs: Vec<(String, String)> = rows(&only_recent)
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    assert_eq!(
        pairs,
        vec![
            ("shop".to_string(), "payments".to_string()),
            ("shop".to_string(), "shop".to_string())
        ]
    );
}

#[tokio::test]
async fn bad_reads_are_refused_cleanly_and_the_server_keeps_answering() {
    let server = TestServer::start(2).await;
    known_traffic(&server).await;
    let unknown_view = read_status(&server, read("no_such_view")).await;
    assert_eq!(unknown_view.code(), Code::NotFound);
    assert!(unknown_view.message().contains("no_such_view"));

    let unknown_column = read_status(
        &server,
        ReadRequest {
            filters: vec![string_filter("colour", "red")],
            ..read("top_talkers")
        },
    )
    .await;
    assert_eq!(unknown_column.code(), Code::InvalidArgument);
    assert!(unknown_column.message().contains("colour"));

    let wrong_type = read_status(
        &server,
        ReadRequest {
            filters: vec![Filter {
                column: "source_namespace".into(),
                value: Some(Value {
                    kind: Some(Kind::IntegerValue(3)),
                }),
            }],
            ..read("top_talkers")
        },
    )
    .await;
    assert_eq!(wrong_type.code(), Code::InvalidArgument);
    assert!(wrong_type.message().contains("string"));

    let unknown_sort = read_status(
        &server,
        ReadRequest {
            sort: Some(Sort {
                column: "weight".into(),
                descending: false,
            }),
            ..read("top_talkers")
        },
    )
    .await;
    assert_eq!(unknown_sort.code(), Code::InvalidArgument);

    let empty_range = read_status(
        &server,
        ReadRequest {
            start_time_gte: NOW,
            start_time_lt: NOW - 60,
            ..read("top_talkers")
        },
    )
    .await;
    assert_eq!(empty_range.code(), Code::InvalidArgument);

    let still = read_ok(&server, read("top_talkers")).await;
    assert_eq!(still.rows.len(), 3);
}
