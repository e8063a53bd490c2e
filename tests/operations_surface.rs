//! The operational surface of a running server: `grpc.health.v1` and the HTTP probes
//! (SPEC §11.3), server reflection v1 and v1alpha (SPEC §1.1), and Prometheus metrics with
//! Goldmane's names and Eddy's own (SPEC §11.4), scraped over real HTTP.

mod common;
mod operations;

use common::{flow, key, CollectorConn, TestServer, NOW};
use eddy::admin::{health_routes, metrics_routes, serve};
use eddy::proto::{Flow, FlowStreamRequest, FlowUpdate};
use operations::{eventually, http_get, sample};
use prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Serves `routes` on a fresh loopback port and returns the address.
async fn http(routes: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(serve(listener, routes));
    address
}

async fn grpc_status(server: &TestServer, service: &str) -> i32 {
    HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("the health service answers")
        .into_inner()
        .status
}

#[tokio::test]
async fn health_is_served_over_grpc_and_http_and_turns_not_ready_on_shutdown() {
    let server = TestServer::start(1).await;
    let services = [
        "",
        "goldmane.FlowCollector",
        "goldmane.Flows",
        "goldmane.Statistics",
    ];
    for service in services {
        eventually("the gRPC health service to report SERVING", || async {
            (grpc_status(&server, service).await == ServingStatus::Serving as i32).then_some(())
        })
        .await;
    }
    let address = http(health_routes(server.state.health.clone())).await;
    for path in ["/livez", "/liveness", "/readyz", "/readiness"] {
        assert_eq!(
            http_get(address, path).await,
            (200, "ok\n".to_string()),
            "{path}"
        );
    }
    assert_eq!(http_get(address, "/nothing").await.0, 404);

    server.state.shutdown.trigger();
    for path in ["/readyz", "/readiness"] {
        let (status, body) = http_get(address, path).await;
        assert_eq!(status, 503, "{path} once shutdown began");
        assert!(body.contains("not ready"), "{body}");
    }
    assert_eq!(
        http_get(address, "/livez").await.0,
        200,
        "still live while stopping"
    );
    eventually("the gRPC health service to report NOT_SERVING", || async {
        (grpc_status(&server, "").await == ServingStatus::NotServing as i32).then_some(())
    })
    .await;
}

/// Sends one reflection request on `channel` with the v1 API and returns the response.
async fn reflect_v1(
    channel: &tonic::transport::Channel,
    request: tonic_reflection::pb::v1::server_reflection_request::MessageRequest,
) -> tonic_reflection::pb::v1::server_reflection_response::MessageResponse {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1 is served")
        .into_inner()
        .message()
        .await
        .expect("a reflection answer")
        .expect("one response per request")
        .message_response
        .expect("the response carries an answer")
}

#[tokio::test]
async fn reflection_lists_and_describes_every_service_without_a_proto_file() {
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let server = TestServer::start(1).await;

    let MessageResponse::ListServicesResponse(list) =
        reflect_v1(&server.channel, MessageRequest::ListServices(String::new())).await
    else {
        panic!("ListServices answers with a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "goldmane.FlowCollector",
        "goldmane.Flows",
        "goldmane.Statistics",
        "eddy.views.v1.Views",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} in {names:?}"
        );
    }

    let MessageResponse::FileDescriptorResponse(files) = reflect_v1(
        &server.channel,
        MessageRequest::FileContainingSymbol("goldmane.Flows".into()),
    )
    .await
    else {
        panic!("FileContainingSymbol answers with file descriptors");
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(&bytes[..]).expect("a descriptor"))
        .find(|file| file.package() == "goldmane")
        .expect("the goldmane file");
    let flows = file
        .service
        .iter()
        .find(|service| service.name() == "Flows")
        .expect("the Flows service is described");
    let mut methods: Vec<&str> = flows.method.iter().map(|m| m.name()).collect();
    methods.sort_unstable();
    assert_eq!(methods, ["FilterHints", "List", "Stream"]);
    assert!(file
        .message_type
        .iter()
        .any(|m| m.name() == "FlowListRequest"));

    // The v1alpha API that older grpcurl builds use answers the same list.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let answer = ServerReflectionClient::new(server.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1alpha is served")
        .into_inner()
        .message()
        .await
        .expect("an answer")
        .expect("one response")
        .message_response;
    let Some(AlphaResponse::ListServicesResponse(list)) = answer else {
        panic!("v1alpha ListServices answers with a service list");
    };
    assert!(list.service.iter().any(|s| s.name == "goldmane.Flows"));
}

#[tokio::test]
async fn metrics_report_ingest_dedup_views_clients_streams_and_query_latency() {
    let server = TestServer::start(2).await;
    let address = http(metrics_routes(server.state.clone())).await;
    let flows = vec![
        flow(key(("shop", "frontend-7c9"), ("shop", "cart-5d2")), NOW, 3),
        flow(
            key(("shop", "frontend-7c9"), ("shop", "checkout-1a0")),
            NOW,
            4,
        ),
        flow(key(("ops", "prometheus-0"), ("shop", "cart-5d2")), NOW, 5),
    ];
    server.ingest(flows.clone()).await;
    // The same update again from the same peer address is a replay (SPEC §9.4).
    server.ingest(vec![flows[0].clone()]).await;
    // An update without a key is skipped but receipted; the call stays open.
    let mut open = CollectorConn::open(&server.channel).await;
    open.send(FlowUpdate {
        flow: Some(Flow {
            key: None,
            ..flows[0].clone()
        }),
    })
    .await;
    open.receipt().await;
    let _stream = server
        .flows()
        .stream(FlowStreamRequest::default())
        .await
        .expect("Stream is accepted");
    assert_eq!(server.list_all().await.len(), 3);

    let text = eventually("one open collector and one open stream", || async {
        let (status, text) = http_get(address, "/metrics").await;
        assert_eq!(status, 200);
        let clients = sample(&text, "goldmane_collector_num_clients");
        let streams = sample(&text, "goldmane_num_streams");
        (clients == Some(1.0) && streams == Some(1.0)).then_some(text)
    })
    .await;
    let expect = |name: &str, value: f64| {
        assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
    };
    expect("goldmane_aggr_received_flows_total", 5.0);
    expect("goldmane_aggr_dropped_flows_total", 0.0);
    expect("goldmane_aggr_num_unique_flows", 3.0);
    expect("eddy_ingest_stored_updates_total", 3.0);
    expect("eddy_ingest_skipped_updates_total{reason=\"no_key\"}", 1.0);
    expect(
        "eddy_ingest_skipped_updates_total{reason=\"duplicate\"}",
        1.0,
    );
    expect(
        "eddy_ingest_skipped_updates_total{reason=\"negative_counter\"}",
        0.0,
    );
    expect("eddy_dedup_duplicates_total", 1.0);
    expect("eddy_dedup_evictions_total", 0.0);
    expect("eddy_view_rows{view=\"flows\"}", 3.0);
    expect("eddy_engine_epoch_lag_seconds", 0.0);
    expect("eddy_engine_workers", 2.0);
    expect("eddy_streams_slow_consumer_terminations_total", 0.0);
    expect("eddy_query_duration_seconds_count{rpc=\"Flows/List\"}", 1.0);
    expect(
        "eddy_query_duration_seconds_bucket{rpc=\"Flows/List\",le=\"+Inf\"}",
        1.0,
    );
    expect(
        "eddy_query_duration_seconds_count{rpc=\"Statistics/List\"}",
        0.0,
    );
    // Strings: "", TCP, the namespaces and names above.
    let strings = sample(&text, "eddy_interned_values{table=\"strings\"}").expect("strings");
    assert!(strings >= 7.0, "{strings}");
    assert!(
        !text.contains("frontend") && !text.contains("cart-5d2"),
        "no per-flow label values"
    );
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        assert!(
            ["goldmane_", "eddy_", "process_"]
                .iter()
                .any(|prefix| name.starts_with(prefix)),
            "{line}"
        );
    }

    drop(open);
    eventually("the closed collector to be counted out", || async {
        let (_, text) = http_get(address, "/metrics").await;
        (sample(&text, "goldmane_collector_num_clients") == Some(0.0)).then_some(())
    })
    .await;
    common::assert_accounting(&server.state);
}
