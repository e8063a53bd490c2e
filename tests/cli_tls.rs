//! The query commands over TLS and mTLS (SPEC §11.2): `--tls-ca`, `--tls-cert`, `--tls-key`
//! and `--tls-server-name` against an in-process server with certificates made at run time;
//! every refusal is one line with a TLS hint and a non-zero exit code.

mod common;
mod operations;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use common::run_eddy;
use eddy::retention::Retention;
use eddy::server::{build_state, serve_with, ServerConfig};
use eddy::tls::ServerTls;
use eddy::worker::clock::ManualClock;
use operations::{write, TestCa};

/// Starts a server on 127.0.0.1:0, with TLS when `tls` is given.
async fn start(tls: Option<&ServerTls>) -> SocketAddr {
    let config = tls.map(|tls| tls.load().expect("valid TLS files"));
    let clock = Arc::new(ManualClock::new(1_700_000_107));
    let retention = Retention {
        window: 15,
        closed_buckets: 240,
    };
    let state = build_state(ServerConfig::new(1, retention), clock).expect("the engine starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(serve_with(state, listener, config, std::future::pending()));
    address
}

/// `eddy flows list -o json --server <address>` plus `flags`.
async fn list(address: &str, flags: &[&PathBuf], extra: &[&str]) -> Output {
    let mut args: Vec<String> = ["flows", "list", "-o", "json", "--server", address]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let names = ["--tls-ca", "--tls-cert", "--tls-key"];
    for (name, path) in names.iter().zip(flags) {
        args.push(name.to_string());
        args.push(path.display().to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    run_eddy(args).await
}

fn one_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_flags_reach_an_mtls_server_and_refusals_are_explained() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let dir = directory.path();
    let (ca, stranger) = (TestCa::new("eddy-test-ca"), TestCa::new("another-ca"));
    let (server, client, foreign) = (
        ca.server(),
        ca.client("eddy-cli"),
        stranger.client("intruder"),
    );
    let tls = ServerTls {
        cert: write(dir, "server.pem", &server.cert),
        key: write(dir, "server.key", &server.key),
        client_ca: Some(write(dir, "ca.pem", &ca.cert_pem())),
    };
    let address = start(Some(&tls)).await.to_string();
    let ca_file = write(dir, "ca.pem", &ca.cert_pem());
    let other_ca = write(dir, "other-ca.pem", &stranger.cert_pem());
    let (cert, key) = (
        write(dir, "client.pem", &client.cert),
        write(dir, "client.key", &client.key),
    );
    let (bad_cert, bad_key) = (
        write(dir, "bad.pem", &foreign.cert),
        write(dir, "bad.key", &foreign.key),
    );

    let served = list(&address, &[&ca_file, &cert, &key], &[]).await;
    assert!(
        served.status.success(),
        "{}",
        String::from_utf8_lossy(&served.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&served.stdout).expect("JSON");
    assert_eq!(document["meta"]["totalResults"], "0");
    let port = address.rsplit(':').next().unwrap_or_default();
    let by_name = list(
        &format!("localhost:{port}"),
        &[&ca_file, &cert, &key],
        &["--tls-server-name", "localhost"],
    )
    .await;
    assert!(
        by_name.status.success(),
        "{}",
        String::from_utf8_lossy(&by_name.stderr)
    );

    let wrong_name = list(
        &address,
        &[&ca_file, &cert, &key],
        &["--tls-server-name", "eddy.example"],
    )
    .await;
    assert_eq!(wrong_name.status.code(), Some(3));
    let line = one_line(&wrong_name);
    assert!(line.contains("hint: TLS was refused"), "{line}");

    let unknown_ca = list(&address, &[&other_ca, &cert, &key], &[]).await;
    assert_eq!(unknown_ca.status.code(), Some(3));
    assert!(one_line(&unknown_ca).contains("hint: TLS was refused"));

    let no_certificate = list(&address, &[&ca_file], &[]).await;
    assert_eq!(
        no_certificate.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&no_certificate.stderr)
    );
    let line = one_line(&no_certificate);
    assert!(line.contains("--tls-cert"), "{line}");

    let foreign_certificate = list(&address, &[&ca_file, &bad_cert, &bad_key], &[]).await;
    assert_eq!(foreign_certificate.status.code(), Some(3));
    assert!(one_line(&foreign_certificate).contains("--tls-cert"));

    let plaintext = list(&address, &[], &[]).await;
    assert_eq!(plaintext.status.code(), Some(3));
    let line = one_line(&plaintext);
    assert!(line.contains("pass --tls-ca"), "{line}");

    let plain_server = start(None).await.to_string();
    let tls_to_plain = list(&plain_server, &[&ca_file, &cert, &key], &[]).await;
    assert_eq!(tls_to_plain.status.code(), Some(3));
    let line = one_line(&tls_to_plain);
    assert!(
        line.contains("drop the TLS flags if the server is plaintext"),
        "{line}"
    );

    let half = run_eddy(
        ["flows", "list", "--tls-cert", "x.pem"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    assert_eq!(half.status.code(), Some(2), "--tls-cert needs --tls-key");
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
}
