//! `eddy health`, the exec probe of the Kubernetes manifests: the real binary (assert_cmd)
//! against a real server's health routes on `127.0.0.1:0`. Exit 0 when healthy, 1 when the
//! server answers that it is not, 3 when nothing answers.

mod common;
mod operations;

use std::net::SocketAddr;
use std::process::Output;

use assert_cmd::Command;
use common::TestServer;
use eddy::admin::{health_routes, serve};
use operations::{eventually, http_get};

/// Runs `eddy health <flags>` off the runtime, with none of its variables inherited.
async fn probe(flags: &[&str]) -> Output {
    let flags: Vec<String> = flags.iter().map(|flag| flag.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .arg("health")
            .args(&flags)
            .env_remove("HEALTH_PORT")
            .env_remove("HEALTH_ENABLED")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .expect("eddy runs")
    })
    .await
    .expect("the blocking task finishes")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A server with its health routes on a fresh loopback port, once it reports ready.
async fn ready_server() -> (TestServer, SocketAddr) {
    let server = TestServer::start(1).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(serve(listener, health_routes(server.state.health.clone())));
    eventually("the server to report ready", || async {
        (http_get(address, "/readiness").await.0 == 200).then_some(())
    })
    .await;
    (server, address)
}

/// A loopback port that nothing listens on (bound, then released).
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    listener.local_addr().expect("a bound address").port()
}

#[tokio::test]
async fn a_ready_server_passes_both_probes_and_fails_readiness_once_stopping() {
    let (server, address) = ready_server().await;
    let port = address.port().to_string();

    let ready = probe(&["--port", &port, "--type", "readiness"]).await;
    assert_eq!(ready.status.code(), Some(0), "{}", text(&ready.stderr));
    assert_eq!(
        text(&ready.stdout),
        format!("ready: http://127.0.0.1:{port}/readiness answered 200 OK\n")
    );

    let live = probe(&[
        &format!("--port={port}"),
        "--type=liveness",
        "--host=127.0.0.1",
    ])
    .await;
    assert_eq!(live.status.code(), Some(0), "{}", text(&live.stderr));
    assert_eq!(
        text(&live.stdout),
        format!("live: http://127.0.0.1:{port}/liveness answered 200 OK\n")
    );

    server.state.shutdown.trigger();
    let stopping = probe(&["--port", &port]).await;
    assert_eq!(stopping.status.code(), Some(1));
    assert!(stopping.stdout.is_empty());
    assert_eq!(
        text(&stopping.stderr),
        format!(
            "eddy: error: not ready: http://127.0.0.1:{port}/readiness answered \
             503 Service Unavailable: not ready: starting or shutting down\n"
        )
    );
    let still_live = probe(&["--port", &port, "--type", "liveness"]).await;
    assert_eq!(still_live.status.code(), Some(0), "live while stopping");
}

#[tokio::test]
async fn the_port_comes_from_health_port_like_the_server() {
    let (_server, address) = ready_server().await;
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["health", "--type", "readiness"])
            .env("HEALTH_PORT", address.port().to_string())
            .env_remove("HEALTH_ENABLED")
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .expect("eddy runs")
    })
    .await
    .expect("the blocking task finishes");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("ready: "));
}

#[tokio::test]
async fn nothing_listening_exits_with_three() {
    let port = closed_port().await.to_string();
    let output = probe(&["--port", &port, "--type", "liveness"]).await;
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: cannot reach the server at http://127.0.0.1:{port}/liveness (UNAVAILABLE: "
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: is `eddy serve` running"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn health_checks_turned_off_pass_without_asking() {
    let port = closed_port().await.to_string();
    let output = probe(&["--port", &port, "--health-enabled", "false"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("health checks are off"));
}

#[tokio::test]
async fn an_unknown_probe_type_is_a_usage_error() {
    let output = probe(&["--type", "startup"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("invalid value 'startup'"));
}
