//! The bounds of `FlowCollector.Connect` (SPEC §12.6): concurrent calls beyond the bound are
//! refused with `RESOURCE_EXHAUSTED` and counted, and a batch ends at the byte bound.

mod common;

use common::{assert_accounting, bucket, flow, key, CollectorConn, TestServer, NOW};
use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::FlowUpdate;
use eddy::retention::Retention;
use eddy::server::ServerConfig;

fn config(max_calls: usize, max_batch_bytes: usize) -> ServerConfig {
    let mut config = ServerConfig::new(
        2,
        Retention {
            window: common::WINDOW,
            closed_buckets: 240,
        },
    );
    config.connect.max_calls = max_calls;
    config.connect.max_batch_bytes = max_batch_bytes;
    config
}

#[tokio::test]
async fn a_connect_call_beyond_the_bound_is_refused_and_a_freed_slot_is_reused() {
    let server = TestServer::start_config(config(2, 1024 * 1024), NOW).await;
    let start = bucket(NOW) - 30;
    let mut first = CollectorConn::open(&server.channel).await;
    first
        .send_and_wait(flow(key(("a", "x"), ("b", "y")), start, 1))
        .await;
    let mut second = CollectorConn::open(&server.channel).await;
    second
        .send_and_wait(flow(key(("a", "x"), ("b", "z")), start, 1))
        .await;

    let (_updates, outbound) = tokio::sync::mpsc::channel::<FlowUpdate>(1);
    let refused = FlowCollectorClient::new(server.channel.clone())
        .connect(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .expect_err("a third call is refused");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused}");
    assert!(refused.message().contains("at most 2"), "{refused}");
    assert_eq!(server.state.connect.refused_total(), 1);

    first.close().await;
    let mut third = CollectorConn::open(&server.channel).await;
    third
        .send_and_wait(flow(key(("a", "x"), ("b", "w")), start, 1))
        .await;
    assert_eq!(server.state.connect.refused_total(), 1);
    assert_eq!(server.list_all().await.len(), 3);
    assert_eq!(assert_accounting(&server.state), 3);
}

#[tokio::test]
async fn a_batch_ends_at_the_byte_bound() {
    let server = TestServer::start_config(config(10, 1), NOW).await;
    let start = bucket(NOW) - 30;
    let mut conn = CollectorConn::open(&server.channel).await;
    for n in 0..10 {
        conn.send_flow(flow(key(("a", "x"), ("b", &format!("y{n}"))), start, 1))
            .await;
    }
    conn.receipts(10).await;
    assert_eq!(
        server.state.connect.byte_bound_batches_total(),
        10,
        "with a one-byte bound every batch holds one update"
    );
    assert_eq!(server.list_all().await.len(), 10);
    assert_eq!(assert_accounting(&server.state), 10);

    let roomy = TestServer::start_config(config(10, 1024 * 1024), NOW).await;
    let mut conn = CollectorConn::open(&roomy.channel).await;
    for n in 0..10 {
        conn.send_flow(flow(key(("a", "x"), ("b", &format!("y{n}"))), start, 1))
            .await;
    }
    conn.receipts(10).await;
    assert_eq!(roomy.state.connect.byte_bound_batches_total(), 0);
    assert_eq!(assert_accounting(&roomy.state), 10);
}
