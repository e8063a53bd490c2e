//! TLS and mTLS on the gRPC port (SPEC §11.2), with certificates made at run time: a client
//! with a certificate from the configured CA is served; no certificate, a certificate from
//! another CA, and plaintext are refused, and the server keeps serving. Unusable files stop
//! start-up with a message naming the file.

mod operations;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eddy::proto::flows_client::FlowsClient;
use eddy::proto::FlowListRequest;
use eddy::retention::Retention;
use eddy::server::{build_state, serve_with, ServerConfig};
use eddy::tls::{ServerTls, TlsError};
use eddy::worker::clock::ManualClock;
use operations::{write, Pem, TestCa};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const NOW: i64 = 1_700_000_107;

/// Starts a server with TLS from `tls` on 127.0.0.1:0.
async fn start(tls: &ServerTls) -> SocketAddr {
    let config = tls.load().expect("valid TLS files");
    let clock = Arc::new(ManualClock::new(NOW));
    let retention = Retention {
        window: 15,
        closed_buckets: 240,
    };
    let state = build_state(ServerConfig::new(1, retention), clock).expect("the engine starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    tokio::spawn(serve_with(
        state,
        listener,
        Some(config),
        std::future::pending(),
    ));
    address
}

/// One `Flows.List` call over a new connection; `Err` carries why it failed.
async fn list(endpoint: Endpoint) -> Result<(), String> {
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10));
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    FlowsClient::new(channel)
        .list(FlowListRequest::default())
        .await
        .map(drop)
        .map_err(|status| format!("call: {status}"))
}

fn tls_endpoint(address: SocketAddr, ca: &TestCa, identity: Option<&Pem>) -> Endpoint {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.cert_pem()))
        .domain_name("localhost");
    if let Some(pem) = identity {
        config = config.identity(Identity::from_pem(&pem.cert, &pem.key));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .expect("a valid URI")
        .tls_config(config)
        .expect("a valid client TLS configuration")
}

struct Files {
    _directory: tempfile::TempDir,
    tls: ServerTls,
}

fn files(ca: &TestCa, server: &Pem, client_ca: Option<&TestCa>) -> Files {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let tls = ServerTls {
        cert: write(directory.path(), "server.pem", &server.cert),
        key: write(directory.path(), "server.key", &server.key),
        client_ca: client_ca.map(|_| write(directory.path(), "ca.pem", &ca.cert_pem())),
    };
    Files {
        _directory: directory,
        tls,
    }
}

#[tokio::test]
async fn mtls_serves_verified_clients_and_refuses_the_rest() {
    let ca = TestCa::new("Eddy test CA");
    let other_ca = TestCa::new("Another CA");
    let server = ca.server();
    let files = files(&ca, &server, Some(&ca));
    let address = start(&files.tls).await;
    let trusted = ca.client("felix-node-1");
    let stranger = other_ca.client("intruder");

    list(tls_endpoint(address, &ca, Some(&trusted)))
        .await
        .expect("a client with a certificate from the CA is served");

    let no_certificate = list(tls_endpoint(address, &ca, None))
        .await
        .expect_err("a client without a certificate is refused");
    assert!(
        no_certificate.contains("CertificateRequired"),
        "{no_certificate}"
    );
    let wrong_ca = list(tls_endpoint(address, &ca, Some(&stranger)))
        .await
        .expect_err("a certificate from another CA is refused");
    assert!(wrong_ca.contains("UnknownCA"), "{wrong_ca}");
    let plaintext = list(Endpoint::from_shared(format!("http://{address}")).expect("a URI")).await;
    assert!(plaintext.is_err(), "plaintext is refused on a TLS port");

    list(tls_endpoint(address, &ca, Some(&trusted)))
        .await
        .expect("the server still serves verified clients after refusing others");
}

#[tokio::test]
async fn tls_without_a_ca_serves_clients_without_certificates() {
    let ca = TestCa::new("Eddy test CA");
    let server = ca.server();
    let files = files(&ca, &server, None);
    let address = start(&files.tls).await;
    list(tls_endpoint(address, &ca, None))
        .await
        .expect("server-only TLS needs no client certificate");
    let plaintext = list(Endpoint::from_shared(format!("http://{address}")).expect("a URI")).await;
    assert!(plaintext.is_err(), "plaintext is refused on a TLS port");
}

#[test]
fn unusable_files_are_named_in_the_error() {
    let ca = TestCa::new("Eddy test CA");
    let server = ca.server();
    let other = ca.server();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let dir = directory.path();
    let cert = write(dir, "server.pem", &server.cert);
    let key = write(dir, "server.key", &server.key);
    let other_key = write(dir, "other.key", &other.key);
    let garbage = write(dir, "garbage.pem", "not a certificate");
    let missing = dir.join("missing.pem");

    let tls = |cert: &std::path::Path, key: &std::path::Path, ca: Option<&std::path::Path>| {
        ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: ca.map(ToOwned::to_owned),
        }
        .load()
    };

    let error = tls(&missing, &key, None).expect_err("a missing certificate");
    assert!(matches!(error, TlsError::Read { .. }));
    let message = error.to_string();
    assert!(
        message.contains("SERVER_CERT_PATH") && message.contains("missing.pem"),
        "{message}"
    );

    let error = tls(&cert, &other_key, None).expect_err("a key of another certificate");
    assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    assert!(error.to_string().contains("other.key"), "{error}");

    let error = tls(&garbage, &key, None).expect_err("a file without PEM");
    assert!(matches!(error, TlsError::Content { .. }), "{error}");
    assert!(error.to_string().contains("garbage.pem"), "{error}");

    let error = tls(&cert, &garbage, None).expect_err("a key file without a key");
    assert!(error.to_string().contains("SERVER_KEY_PATH"), "{error}");

    let error = tls(&cert, &key, Some(&garbage)).expect_err("a CA file without a certificate");
    assert!(error.to_string().contains("CA_CERT_PATH"), "{error}");

    let error = ServerTls::from_paths(Some(&cert), None, None).expect_err("a certificate alone");
    assert!(matches!(error, TlsError::Incomplete(_)));
    assert!(ServerTls::from_paths(None, None, None)
        .expect("no files means plaintext")
        .is_none());
}

#[test]
fn eddy_serve_refuses_to_start_with_a_missing_certificate() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--health-enabled",
            "false",
            "--server-cert-path",
            "/nonexistent/server.pem",
            "--server-key-path",
            "/nonexistent/server.key",
        ])
        .output()
        .expect("the eddy binary runs");
    assert!(!output.status.success(), "start-up fails");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stderr.contains(
            "cannot read the server certificate (SERVER_CERT_PATH) `/nonexistent/server.pem`"
        ),
        "stderr: {stderr}\nstdout: {stdout}"
    );
}
