//! The emitter (SPEC §11.5) against a real local HTTP server that fails the first attempts:
//! windows of closed buckets arrive as NDJSON after retries, progress is kept in the state
//! file, and an emitter started again from that file sends the next window, not the same one.
//! Goldmane's `FILE_CONFIG_PATH` holds windows back while it is off, and `SERVER_NAME` is the
//! name an https upstream's certificate is verified against.

mod common;
mod operations;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{flow, key, TestServer};
use eddy::emitter::post::Poster;
use eddy::emitter::progress;
use eddy::emitter::switch::FileSwitch;
use eddy::emitter::{Backoff, Emitter, EmitterConfig};
use eddy::retention::Retention;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use operations::eventually;
use parking_lot::Mutex;

/// 30 s past a 30 s emitter window boundary (and a 15 s bucket boundary) plus 7 s.
const START: i64 = 1_700_000_107;
const WINDOW_START: i64 = 1_700_000_100;

/// A local HTTP upstream: answers 503 to the first `failures` POSTs, then 200, and keeps
/// every accepted body.
struct Upstream {
    address: SocketAddr,
    attempts: Arc<AtomicUsize>,
    bodies: Arc<Mutex<Vec<(String, String)>>>,
}

impl Upstream {
    async fn start(failures: usize) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let address = listener.local_addr().expect("a bound address");
        let attempts = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (counter, kept) = (attempts.clone(), bodies.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counter, kept) = (counter.clone(), kept.clone());
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (counter, kept) = (counter.clone(), kept.clone());
                    async move {
                        let content_type = request
                            .headers()
                            .get(hyper::header::CONTENT_TYPE)
                            .and_then(|value| value.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = request.into_body().collect().await?.to_bytes();
                        let status = if counter.fetch_add(1, Ordering::SeqCst) < failures {
                            StatusCode::SERVICE_UNAVAILABLE
                        } else {
                            let text = String::from_utf8_lossy(&body).into_owned();
                            kept.lock().push((content_type, text));
                            StatusCode::OK
                        };
                        let mut response = Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = status;
                        Ok::<_, hyper::Error>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Upstream {
            address,
            attempts,
            bodies,
        }
    }
}

fn config(upstream: &Upstream, state_file: &std::path::Path) -> EmitterConfig {
    EmitterConfig {
        poster: Poster::new(&format!("http://{}/ingest/flows", upstream.address), None)
            .expect("a valid URL"),
        width: 30,
        emit_after: 5,
        state_file: state_file.to_owned(),
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
        },
        switch: None,
    }
}

fn lines(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

#[tokio::test]
async fn windows_are_delivered_after_retries_and_a_restart_sends_the_next_window() {
    let server = TestServer::start_with(
        1,
        Retention {
            window: 15,
            closed_buckets: 240,
        },
        START,
    )
    .await;
    let upstream = Upstream::start(2).await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let state_file = directory.path().join("emitter.json");

    let emitter = Emitter::new(config(&upstream, &state_file), START).expect("a new state file");
    assert_eq!(emitter.next_window_start(), WINDOW_START);
    let cart = key(("shop", "frontend"), ("shop", "cart"));
    let checkout = key(("shop", "frontend"), ("shop", "checkout"));
    // Window [100, 130): `cart` in both of its buckets, `checkout` in the second.
    server
        .ingest(vec![
            flow(cart.clone(), WINDOW_START, 2),
            flow(cart.clone(), WINDOW_START + 15, 3),
            flow(checkout.clone(), WINDOW_START + 15, 7),
        ])
        .await;
    let first = tokio::spawn(emitter.run(server.state.clone()));
    // The window ends at 130 and is due 5 s later.
    server.advance_clock(WINDOW_START + 35 - START).await;
    let (content_type, body) = eventually("the first window to be accepted", || async {
        upstream.bodies.lock().first().cloned()
    })
    .await;
    assert_eq!(content_type, "application/x-ndjson");
    assert_eq!(
        upstream.attempts.load(Ordering::SeqCst),
        3,
        "two 503s, then 200"
    );
    let flows = lines(&body);
    assert_eq!(flows.len(), 2, "one line per flow key: {body}");
    let cart_line = flows
        .iter()
        .find(|flow| flow["Key"]["dest_name"] == "cart")
        .expect("the cart flow");
    assert_eq!(cart_line["start_time"], WINDOW_START);
    assert_eq!(cart_line["end_time"], WINDOW_START + 30);
    assert_eq!(cart_line["packets_in"], 5, "both buckets summed");
    assert_eq!(cart_line["Key"]["action"], 1, "enums are numbers");
    assert_eq!(cart_line["Key"]["reporter"], 2);
    let checkout_line = flows
        .iter()
        .find(|flow| flow["Key"]["dest_name"] == "checkout")
        .expect("the checkout flow");
    assert_eq!(checkout_line["packets_in"], 7);

    eventually("progress to be recorded", || async {
        let progress = progress::load(&state_file).ok()??;
        (progress.last_window_end == WINDOW_START + 30).then_some(())
    })
    .await;
    let emitter_metrics = &server.state.metrics.emitter;
    assert_eq!(emitter_metrics.failed_attempts.load(Ordering::Relaxed), 2);
    assert_eq!(emitter_metrics.flows_delivered.load(Ordering::Relaxed), 2);

    // A restart: the process dies after delivering, and a new emitter reads the state file.
    first.abort();
    let _ = first.await;
    let restarted = Emitter::new(config(&upstream, &state_file), server.state.now())
        .expect("the state file is readable");
    assert_eq!(
        restarted.next_window_start(),
        WINDOW_START + 30,
        "neither the delivered window again nor a later one"
    );
    server
        .ingest(vec![flow(checkout.clone(), WINDOW_START + 30, 11)])
        .await;
    tokio::spawn(restarted.run(server.state.clone()));
    server.advance_clock(30).await;
    let second = eventually("the second window to be accepted", || async {
        upstream.bodies.lock().get(1).map(|(_, body)| body.clone())
    })
    .await;
    let flows = lines(&second);
    assert_eq!(flows.len(), 1, "only the new window's flow: {second}");
    assert_eq!(flows[0]["Key"]["dest_name"], "checkout");
    assert_eq!(flows[0]["start_time"], WINDOW_START + 30);
    assert_eq!(flows[0]["packets_in"], 11);
    assert_eq!(upstream.bodies.lock().len(), 2, "nothing was sent twice");
    common::assert_accounting(&server.state);
}

#[test]
fn a_push_url_must_be_http_or_https_with_a_host() {
    assert!(Poster::new("ftp://example.invalid/", None).is_err());
    assert!(Poster::new("not a url", None).is_err());
    assert!(Poster::new("https://collector.example/ingest", None).is_err());
    assert!(Poster::new("http://127.0.0.1:9/ingest", None).is_ok());
}

/// An https upstream that requires a client certificate from `ca`; counts accepted POSTs.
async fn mtls_upstream(ca: &operations::TestCa) -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};
    let server = ca.server();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("the CA"))
        .expect("a usable CA");
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .expect("a client verifier");
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(server.cert.as_bytes()).expect("a certificate")],
            PrivateKeyDer::from_pem_slice(server.key.as_bytes()).expect("a key"),
        )
        .expect("a server configuration");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = listener.local_addr().expect("a bound address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let counter = counter.clone();
                    async move {
                        request.into_body().collect().await?;
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, accepted)
}

#[tokio::test]
async fn https_push_urls_present_the_client_certificate() {
    let ca = operations::TestCa::new("Upstream CA");
    let client = ca.client("eddy-emitter");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let ca_path = operations::write(directory.path(), "ca.pem", &ca.cert_pem());
    let cert_path = operations::write(directory.path(), "client.pem", &client.cert);
    let key_path = operations::write(directory.path(), "client.key", &client.key);
    let with_identity = eddy::tls::client_config(Some(&ca_path), Some(&cert_path), Some(&key_path))
        .expect("valid client TLS files");
    let without_identity =
        eddy::tls::client_config(Some(&ca_path), None, None).expect("a valid CA file");
    let (address, accepted) = mtls_upstream(&ca).await;
    let url = format!("https://localhost:{}/flows", address.port());

    Poster::new(&url, Some(with_identity))
        .expect("a valid URL")
        .post(b"{}\n".to_vec())
        .await
        .expect("the upstream accepts a client with a certificate from its CA");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let refused = Poster::new(&url, Some(without_identity))
        .expect("a valid URL")
        .post(b"{}\n".to_vec())
        .await;
    assert!(refused.is_err(), "no certificate, no delivery");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn server_name_is_the_name_the_upstream_certificate_must_carry() {
    let ca = operations::TestCa::new("Upstream CA");
    let client = ca.client("eddy-emitter");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let ca_path = operations::write(directory.path(), "ca.pem", &ca.cert_pem());
    let cert_path = operations::write(directory.path(), "client.pem", &client.cert);
    let key_path = operations::write(directory.path(), "client.key", &client.key);
    let tls = || {
        eddy::tls::client_config(Some(&ca_path), Some(&cert_path), Some(&key_path))
            .expect("valid client TLS files")
    };
    let (address, accepted) = mtls_upstream(&ca).await;
    // The upstream's certificate names `localhost` and 127.0.0.1, not `eddy.example`.
    let url = format!("https://{address}/flows");
    let poster = |name: Option<&str>| {
        let poster = Poster::new(&url, Some(tls())).expect("a valid URL");
        match name {
            Some(name) => poster.with_server_name(name).expect("a valid name"),
            None => poster,
        }
    };

    poster(None)
        .post(b"{}\n".to_vec())
        .await
        .expect("without SERVER_NAME the URL's host (127.0.0.1) is verified");
    poster(Some("localhost"))
        .post(b"{}\n".to_vec())
        .await
        .expect("the certificate names localhost");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let refused = poster(Some("eddy.example")).post(b"{}\n".to_vec()).await;
    assert!(
        refused.is_err_and(|error| error.to_string().contains("TLS handshake failed")),
        "a certificate without that name is refused"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(Poster::new(&url, Some(tls()))
        .expect("a valid URL")
        .with_server_name("not a name!")
        .is_err());
}

/// Waits until `upstream` has accepted `count` bodies; returns the last.
async fn body_number(upstream: &Upstream, count: usize) -> String {
    eventually(&format!("{count} accepted bodies"), || async {
        let bodies = upstream.bodies.lock();
        (bodies.len() >= count).then(|| bodies[count - 1].1.clone())
    })
    .await
}

#[tokio::test]
async fn file_config_holds_windows_while_off_and_sends_them_once_on() {
    let server = TestServer::start_with(
        1,
        Retention {
            window: 15,
            closed_buckets: 240,
        },
        START,
    )
    .await;
    let (control, switched) = (Upstream::start(0).await, Upstream::start(0).await);
    let directory = tempfile::tempdir().expect("a temporary directory");
    let file = directory.path().join("goldmane.json");
    let switch = FileSwitch {
        path: file.clone(),
        poll: Duration::from_millis(10),
    };
    let enabled = switch.watch();
    assert!(!*enabled.borrow(), "a missing file means off");

    let cart = key(("shop", "frontend"), ("shop", "cart"));
    server
        .ingest(vec![flow(cart.clone(), WINDOW_START, 2)])
        .await;
    // The control emitter has no switch: once it has sent a window, the switched one has
    // been due to send it too.
    let always_on = Emitter::new(
        config(&control, &directory.path().join("control.json")),
        START,
    )
    .expect("a new state file");
    tokio::spawn(always_on.run(server.state.clone()));
    let held = Emitter::new(
        config(&switched, &directory.path().join("switched.json")),
        START,
    )
    .expect("a new state file");
    tokio::spawn(held.run_switched(server.state.clone(), enabled.clone()));

    server.advance_clock(WINDOW_START + 35 - START).await;
    let first = body_number(&control, 1).await;
    assert!(switched.bodies.lock().is_empty(), "off: nothing is sent");

    std::fs::write(&file, r#"{"emitFlows": true}"#).expect("a writable file");
    assert_eq!(
        body_number(&switched, 1).await,
        first,
        "on: the held window is sent"
    );

    std::fs::write(&file, r#"{"emitFlows": false}"#).expect("a writable file");
    eventually("the switch to read off", || async {
        (!*enabled.borrow()).then_some(())
    })
    .await;
    server
        .ingest(vec![flow(cart.clone(), WINDOW_START + 30, 5)])
        .await;
    server.advance_clock(30).await;
    let second = body_number(&control, 2).await;
    assert_eq!(lines(&second)[0]["packets_in"], 5);
    assert_eq!(
        switched.bodies.lock().len(),
        1,
        "off again: the window waits"
    );

    std::fs::write(&file, r#"{"EmitFlows": true, "other": 1}"#).expect("a writable file");
    assert_eq!(body_number(&switched, 2).await, second);
    assert_eq!(
        switched.attempts.load(Ordering::SeqCst),
        2,
        "each window once"
    );
    common::assert_accounting(&server.state);
}

#[tokio::test]
async fn a_state_file_far_in_the_past_is_passed_over_in_one_step() {
    let server = TestServer::start_with(
        1,
        Retention {
            window: 15,
            closed_buckets: 240,
        },
        START,
    )
    .await;
    let upstream = Upstream::start(0).await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let state_file = directory.path().join("emitter.json");
    progress::store(&state_file, progress::Progress { last_window_end: 0 }).expect("writable");
    let emitter = Emitter::new(config(&upstream, &state_file), START).expect("a state file");
    tokio::spawn(emitter.run(server.state.clone()));
    // Windows ending at or before START - 360 (the replay horizon) rounded down to 30 s.
    let boundary = 1_699_999_740;
    eventually("the lost windows to be passed over", || async {
        let progress = progress::load(&state_file).ok()??;
        (progress.last_window_end == boundary).then_some(())
    })
    .await;
    let metrics = &server.state.metrics.emitter;
    assert_eq!(
        metrics.windows_expired.load(Ordering::Relaxed),
        (boundary / 30) as u64,
        "every window from 0 to the boundary counted once"
    );
    assert_eq!(metrics.windows_delivered.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn after_a_restart_a_window_that_ended_before_the_start_waits_for_the_replays() {
    let server = TestServer::start_with(
        1,
        Retention {
            window: 15,
            closed_buckets: 240,
        },
        START,
    )
    .await;
    let upstream = Upstream::start(0).await;
    let directory = tempfile::tempdir().expect("a temporary directory");
    let state_file = directory.path().join("emitter.json");
    progress::store(
        &state_file,
        progress::Progress {
            last_window_end: WINDOW_START - 30,
        },
    )
    .expect("writable");
    let emitter = Emitter::new(config(&upstream, &state_file), START).expect("a state file");
    tokio::spawn(emitter.run(server.state.clone()));
    // The window [70, 100) ended before the start at 107: its data comes back as a replay.
    let cart = key(("shop", "frontend"), ("shop", "cart"));
    server
        .ingest(vec![flow(cart.clone(), WINDOW_START - 15, 4)])
        .await;
    server.advance_clock(30).await;
    let body = eventually("the replayed window to be accepted", || async {
        upstream.bodies.lock().first().map(|(_, body)| body.clone())
    })
    .await;
    let flows = lines(&body);
    assert_eq!(flows.len(), 1, "{body}");
    assert_eq!(flows[0]["start_time"], WINDOW_START - 15);
    assert_eq!(flows[0]["packets_in"], 4);
    let metrics = &server.state.metrics.emitter;
    assert_eq!(metrics.windows_expired.load(Ordering::Relaxed), 0);
    common::assert_accounting(&server.state);
}
