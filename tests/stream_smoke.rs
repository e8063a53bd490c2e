//! Flows.Stream end to end with a 1 s window on the real clock (SPEC §7): backfill, then live
//! buckets, with the ids List returns.

mod common;

use std::sync::Arc;

use common::*;
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::{FlowListRequest, FlowStreamRequest};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::worker::clock::{Clock, SystemClock};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_live_buckets_arrive_once_each() {
    let clock = Arc::new(SystemClock);
    let retention = Retention {
        window: 1,
        closed_buckets: 30,
    };
    let state = build_state(ServerConfig::new(2, retention), clock.clone()).expect("engine");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let address = listener.local_addr().expect("address");
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let now = clock.now();
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    send_on_new_connection(
        &channel,
        vec![flow(k.clone(), now - 5, 3), flow(k.clone(), now - 4, 4)],
    )
    .await;
    let mut client = FlowsClient::new(channel.clone());
    let mut stream = client
        .stream(FlowStreamRequest {
            start_time_gte: now - 6,
            ..Default::default()
        })
        .await
        .expect("stream opens")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("ok")
        .expect("backfilled bucket");
    let second = stream
        .message()
        .await
        .expect("ok")
        .expect("backfilled bucket");
    assert_eq!(
        first.flow.as_ref().map(|f| (f.start_time, f.packets_in)),
        Some((now - 5, 3))
    );
    assert_eq!(
        second.flow.as_ref().map(|f| (f.start_time, f.packets_in)),
        Some((now - 4, 4))
    );
    let listed = client
        .list(FlowListRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.flows[0].id, first.id);
    // A live update: data for the current bucket arrives one to two seconds later.
    let live_start = clock.now();
    send_on_new_connection(&channel, vec![flow(k.clone(), live_start, 9)]).await;
    let live = stream.message().await.expect("ok").expect("live bucket");
    assert_eq!(
        live.flow
            .as_ref()
            .map(|f| (f.start_time, f.end_time, f.packets_in)),
        Some((live_start, live_start + 1, 9))
    );
    assert_eq!(live.id, first.id);
}
