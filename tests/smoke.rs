//! End to end through gRPC: ingest then List sees the aggregate (SPEC §3, §4, §9).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_flow_sums_updates_from_two_nodes() {
    let server = TestServer::start(2).await;
    let start = bucket(NOW) - WINDOW;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    let mut first = flow(k.clone(), start + 1, 10);
    first.dest_labels = vec!["app=checkout".into(), "node=a".into()];
    let mut second = flow(k.clone(), start + 3, 5);
    second.dest_labels = vec!["node=b".into(), "app=checkout".into()];
    server.ingest(vec![first]).await;
    server.ingest(vec![second]).await;
    let flows = server.list_all().await;
    assert_eq!(flows.len(), 1);
    let result = flows[0].flow.as_ref().expect("flow is set");
    assert_eq!(result.packets_in, 15);
    assert_eq!(result.bytes_out, 1500);
    assert_eq!(result.num_connections_started, 2);
    assert_eq!(result.start_time, start);
    assert_eq!(result.end_time, start + WINDOW);
    assert_eq!(result.dest_labels, vec!["app=checkout".to_string()]);
    assert!(flows[0].id > 0);
    assert_eq!(
        result.key.as_ref().expect("key is set").dest_name,
        "checkout"
    );
    common::assert_accounting(&server.state);
}
