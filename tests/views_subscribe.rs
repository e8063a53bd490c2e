//! `eddy.views.v1.Views/Subscribe` over real gRPC with the manual clock: the snapshot equals a
//! per-bucket Read, each epoch's changes equal Read(after) − Read(before) (new rows, changed
//! rows as −old/+new, expired rows), a filtered subscription sees only its rows, a consumer
//! that falls behind is ended with RESOURCE_EXHAUSTED, bad requests get clean statuses and
//! shutdown ends subscriptions with UNAVAILABLE. With 1 and 2 workers.

mod common;

use common::*;
use eddy::proto::views::subscribe_response::Event;
use eddy::proto::views::value::Kind;
use eddy::proto::views::views_client::ViewsClient;
use eddy::proto::views::{
    Filter, ListViewsRequest, Mark, ReadRequest, SubscribeRequest, SubscribeResponse, Value,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

fn views(server: &TestServer) -> ViewsClient<Channel> {
    ViewsClient::new(server.channel.clone())
}

fn text(value: &Value) -> String {
    match &value.kind {
        Some(Kind::StringValue(text)) => text.clone(),
        Some(Kind::IntegerValue(number)) | Some(Kind::TimestampValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

/// A row as its values' text joined by spaces.
fn row_text(values: &[Value]) -> String {
    values.iter().map(text).collect::<Vec<_>>().join(" ")
}

fn string_filter(column: &str, value: &str) -> Filter {
    Filter {
        column: column.into(),
        value: Some(Value {
            kind: Some(Kind::StringValue(value.into())),
        }),
    }
}

/// The top talkers rows per bucket, as text, sorted.
async fn read_rows(server: &TestServer, filters: Vec<Filter>) -> Vec<String> {
    let answer = views(server)
        .read(ReadRequest {
            view: "top_talkers".into(),
            filters,
            per_bucket: true,
            ..ReadRequest::default()
        })
        .await
        .expect("the read succeeds")
        .into_inner();
    let mut rows: Vec<String> = answer
        .rows
        .iter()
        .map(|row| row_text(&row.values))
        .collect();
    rows.sort();
    rows
}

async fn subscribe(server: &TestServer, filters: Vec<Filter>) -> Streaming<SubscribeResponse> {
    views(server)
        .subscribe(SubscribeRequest {
            view: "top_talkers".into(),
            filters,
        })
        .await
        .expect("the subscription starts")
        .into_inner()
}

/// The changes up to the next mark, as (row text, multiplicity) sorted, and the mark.
async fn until_mark(stream: &mut Streaming<SubscribeResponse>) -> (Vec<(String, i64)>, Mark) {
    let mut changes = Vec::new();
    loop {
        let message = stream
            .message()
            .await
            .expect("the subscription is open")
            .expect("the subscription has not ended");
        match message.event.expect("every message carries an event") {
            Event::Change(change) => {
                let row = change.row.expect("a change carries its row");
                changes.push((row_text(&row.values), change.multiplicity));
            }
            Event::Mark(mark) => {
                changes.sort();
                return (changes, mark);
            }
        }
    }
}

/// The status a subscription ends with, past any message still queued.
async fn ending(stream: &mut Streaming<SubscribeResponse>) -> tonic::Status {
    loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the subscription ended without a status"),
            Err(status) => return status,
        }
    }
}

/// `after` − `before` as changes: rows gone −1, rows new +1, sorted.
fn difference(before: &[String], after: &[String]) -> Vec<(String, i64)> {
    let mut changes: Vec<(String, i64)> = before
        .iter()
        .filter(|row| !after.contains(row))
        .map(|row| (row.clone(), -1))
        .chain(
            after
                .iter()
                .filter(|row| !before.contains(row))
                .map(|row| (row.clone(), 1)),
        )
        .collect();
    changes.sort();
    changes
}

#[tokio::test]
async fn the_snapshot_then_each_epochs_changes_add_up_to_the_reads() {
    for workers in [1, 2] {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: 4,
        };
        let server = TestServer::start_with(workers, retention, NOW).await;
        let recent = bucket(NOW) - WINDOW + 1;
        let oldest = recent - 3 * WINDOW;
        server
            .ingest(vec![
                flow(key(("shop", "frontend"), ("shop", "cart")), recent, 3),
                flow(key(("shop", "checkout"), ("payments", "api")), recent, 10),
                flow(key(("web", "proxy"), ("shop", "frontend")), oldest, 1),
            ])
            .await;
        let mut everything = subscribe(&server, Vec::new()).await;
        let mut shop = subscribe(&server, vec![string_filter("source_namespace", "shop")]).await;

        let (snapshot, mark) = until_mark(&mut everything).await;
        assert!(mark.snapshot, "{workers} workers: the snapshot comes first");
        assert_eq!(
            mark.columns.len(),
            10,
            "the snapshot's mark names the columns"
        );
        assert_eq!(mark.time, bucket(NOW));
        let before = read_rows(&server, Vec::new()).await;
        assert_eq!(before.len(), 3);
        assert_eq!(
            snapshot,
            before
                .iter()
                .map(|row| (row.clone(), 1))
                .collect::<Vec<_>>(),
            "{workers} workers"
        );
        let (shop_snapshot, _) = until_mark(&mut shop).await;
        let shop_before = read_rows(&server, vec![string_filter("source_namespace", "shop")]).await;
        assert_eq!(
            shop_snapshot,
            shop_before
                .iter()
                .map(|row| (row.clone(), 1))
                .collect::<Vec<_>>()
        );
        assert_eq!(shop_snapshot.len(), 2);

        // Epoch 1: one pair grows, one pair is new, the oldest bucket expires; epoch 2: no
        // change; epoch 3: a row in the newest bucket.
        let mut before = before;
        let mut shop_before = shop_before;
        let mut clock = NOW;
        for (epoch, flows) in [
            (
                1,
                vec![
                    flow(key(("shop", "frontend"), ("shop", "cart")), recent, 2),
                    flow(key(("db", "backup"), ("store", "s3")), recent, 7),
                ],
            ),
            (2, Vec::new()),
            (
                3,
                vec![flow(
                    key(("shop", "checkout"), ("payments", "api")),
                    bucket(NOW) + 1,
                    5,
                )],
            ),
        ] {
            server.ingest(flows).await;
            server.advance_clock(WINDOW).await;
            clock += WINDOW;
            let (changes, mark) = until_mark(&mut everything).await;
            assert!(!mark.snapshot);
            assert_eq!(mark.time, bucket(clock), "epoch {epoch}");
            let after = read_rows(&server, Vec::new()).await;
            assert_eq!(
                changes,
                difference(&before, &after),
                "{workers} workers, epoch {epoch}: {before:?} → {after:?}"
            );
            let (shop_changes, _) = until_mark(&mut shop).await;
            let shop_after =
                read_rows(&server, vec![string_filter("source_namespace", "shop")]).await;
            assert_eq!(
                shop_changes,
                difference(&shop_before, &shop_after),
                "{workers} workers, epoch {epoch}, filtered"
            );
            if epoch == 1 {
                // A changed row (−old, +new), a new row, and the oldest bucket's row expired.
                assert_eq!(changes.len(), 4, "{changes:?}");
                assert_eq!(changes.iter().filter(|(_, m)| *m < 0).count(), 2);
            }
            before = after;
            shop_before = shop_after;
        }
        assert!(
            before.iter().all(|row| !row.starts_with("web shop")),
            "the oldest bucket expired: {before:?}"
        );
    }
}

#[tokio::test]
async fn a_consumer_behind_by_more_than_its_buffer_is_ended() {
    let mut config = ServerConfig::new(
        1,
        Retention {
            window: WINDOW,
            closed_buckets: 240,
        },
    );
    config.streams.buffer = 3;
    let server = TestServer::start_config(config, NOW).await;
    let mut stream = subscribe(&server, Vec::new()).await;
    let (snapshot, mark) = until_mark(&mut stream).await;
    assert!(snapshot.is_empty() && mark.snapshot);
    let recent = bucket(NOW) - WINDOW + 1;
    server
        .ingest(
            (0..5)
                .map(|n| {
                    let namespace = format!("ns{n}");
                    flow(key((&namespace, "a"), ("shop", "b")), recent, 1)
                })
                .collect(),
        )
        .await;
    server.advance_clock(WINDOW).await;
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("consumer too slow"),
        "{}",
        status.message()
    );
    assert_eq!(
        server
            .state
            .view_streams
            .counters()
            .too_slow
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn bad_subscriptions_get_clean_statuses_and_the_server_keeps_answering() {
    let server = TestServer::start(1).await;
    let refused = |view: &str, filters: Vec<Filter>| {
        let mut client = views(&server);
        let request = SubscribeRequest {
            view: view.into(),
            filters,
        };
        async move {
            match client.subscribe(request).await {
                Ok(mut stream) => stream
                    .get_mut()
                    .message()
                    .await
                    .expect_err("the subscription is refused"),
                Err(status) => status,
            }
        }
    };
    let unknown = refused("no_such_view", Vec::new()).await;
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("no_such_view"));
    let column = refused("top_talkers", vec![string_filter("colour", "red")]).await;
    assert_eq!(column.code(), Code::InvalidArgument);
    assert!(column.message().contains("colour"), "{}", column.message());
    let typed = refused("top_talkers", vec![string_filter("bytes", "many")]).await;
    assert_eq!(typed.code(), Code::InvalidArgument);
    assert!(typed.message().contains("integer"), "{}", typed.message());
    let listed = views(&server)
        .list_views(ListViewsRequest {})
        .await
        .expect("the server still answers")
        .into_inner();
    assert!(listed.views.iter().any(|view| view.name == "top_talkers"));
}

#[tokio::test]
async fn shutdown_ends_subscriptions_with_unavailable() {
    let server = TestServer::start(2).await;
    let mut stream = subscribe(&server, Vec::new()).await;
    until_mark(&mut stream).await;
    server.state.view_streams.shutdown();
    let status = ending(&mut stream).await;
    assert_eq!(status.code(), Code::Unavailable);
    let refused = views(&server)
        .subscribe(SubscribeRequest {
            view: "top_talkers".into(),
            filters: Vec::new(),
        })
        .await;
    let status = match refused {
        Ok(mut stream) => stream
            .get_mut()
            .message()
            .await
            .expect_err("no new subscription"),
        Err(status) => status,
    };
    assert_eq!(status.code(), Code::Unavailable);
}
