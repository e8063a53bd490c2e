//! Chaos against the real `eddy serve` binary on loopback (SPEC §9.2, §12.8, §12.9): an
//! injected worker panic, an injected worker stall, connections cut mid-batch, half-open
//! connections, clients that never read their receipts and replay storms after mass
//! reconnects, each followed by SIGTERM. Every test is bounded in count; waits for the process
//! are bounded by `process::PROCESS_BOUND`.

mod common;
mod process;

use std::io::Write;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect_channel, flow, key, send_on_new_connection, CollectorConn};
use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::{Flow, FlowUpdate};
use eddy::worker::fault::STALL_MESSAGE;
use futures::StreamExt;
use process::{serve_command, EddyProcess};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// A running `eddy serve` and its gRPC address.
struct Eddy {
    process: EddyProcess,
    address: SocketAddr,
}

impl Eddy {
    /// Starts the binary with two workers and `env` set, its stdin piped (an injected stall
    /// lasts until a line arrives there).
    fn start(env: &[(&str, &str)]) -> Eddy {
        let mut command = serve_command(2);
        command.stdin(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let process = EddyProcess::start(command);
        let address = process.serving_address();
        Eddy { process, address }
    }

    /// The next log line whose message is `message`.
    fn line(&self, message: &str) -> Value {
        self.process.line(message)
    }

    /// Sends SIGTERM, then returns the `eddy stopped` line and the exit status.
    fn terminate(mut self) -> (Value, ExitStatus) {
        self.process.stop()
    }

    /// Waits for the process to exit.
    fn exit(&mut self) -> ExitStatus {
        self.process.exit()
    }
}

/// The current Unix time in seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// A distinct flow for node `node`, update `n`.
fn update(node: usize, n: usize, start: i64) -> Flow {
    flow(
        key(
            ("shop", &format!("frontend-{node}")),
            ("shop", &format!("backend-{n}")),
        ),
        start,
        1,
    )
}

#[tokio::test]
async fn a_worker_panic_exits_non_zero_and_receipts_only_batches_a_worker_took() {
    let mut eddy = Eddy::start(&[("EDDY_FAULT_INJECT", "worker-panic-after-batches:5")]);
    let channel = connect_channel(eddy.address).await;
    let mut conn = CollectorConn::open(&channel).await;
    let updates = conn.clone_sender();
    let start = now();
    let mut receipted = 0;
    let mut ended = None;
    for n in 0..20 {
        let sent = updates
            .send(FlowUpdate {
                flow: Some(update(0, n, start)),
            })
            .await;
        if sent.is_err() {
            break;
        }
        match conn.next().await {
            Ok(Some(_)) => receipted += 1,
            Ok(None) => break,
            Err(status) => {
                ended = Some(status);
                break;
            }
        }
    }
    assert_eq!(
        receipted, 5,
        "one update per batch: the five batches the workers took, and no more"
    );
    if let Some(status) = ended {
        assert_ne!(status.code(), tonic::Code::Ok, "{status}");
    }
    let failed = eddy.line("the dataflow engine failed");
    assert_eq!(failed["level"], "ERROR");
    let cause = failed["cause"].as_str().expect("the cause is logged");
    assert!(cause.starts_with("worker "), "{cause}");
    assert!(cause.ends_with(" panicked"), "{cause}");
    let status = eddy.exit();
    assert_eq!(status.code(), Some(1), "a non-zero exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_engine_stops_connect_reading_and_every_update_arrives_after_it() {
    // SPEC §9.2: when the engine cannot keep up, the server stops reading (HTTP/2 flow control
    // holds the sender), and nothing receipted is dropped. The worker that owns the third
    // batch stops before taking it, until the test writes a line to the server's stdin.
    const UPDATES: usize = 100_000;
    let mut eddy = Eddy::start(&[("EDDY_FAULT_INJECT", "worker-stall-after-batches:2")]);
    let start = now();
    // How many updates the call's request stream has given up: those the server read, plus
    // what the flow-control windows and the client's encoder hold; and a signal once half of
    // them have left, which a server that kept reading would soon reach.
    let given = Arc::new(AtomicUsize::new(0));
    let half_given = Arc::new(Notify::new());
    let (counted, half) = (given.clone(), half_given.clone());
    let updates = futures::stream::iter(0..UPDATES).map(move |n| {
        if counted.fetch_add(1, Ordering::Relaxed) + 1 == UPDATES / 2 {
            half.notify_one();
        }
        FlowUpdate {
            flow: Some(update(5, n, start)),
        }
    });
    let channel = connect_channel(eddy.address).await;
    let mut receipts = FlowCollectorClient::new(channel)
        .connect(updates)
        .await
        .expect("Connect is accepted")
        .into_inner();
    let receipted = Arc::new(AtomicUsize::new(0));
    let reading = {
        let receipted = receipted.clone();
        tokio::spawn(async move {
            while let Ok(Some(_)) = receipts.message().await {
                if receipted.fetch_add(1, Ordering::Relaxed) + 1 == UPDATES {
                    return;
                }
            }
        })
    };
    tokio::task::block_in_place(|| eddy.line(STALL_MESSAGE));
    let half_left = tokio::time::timeout(Duration::from_secs(2), half_given.notified()).await;
    let (stalled_given, stalled_receipted) = (
        given.load(Ordering::Relaxed),
        receipted.load(Ordering::Relaxed),
    );
    assert!(
        half_left.is_err(),
        "the server stopped reading: {stalled_given} of {UPDATES} updates left the client \
         while the engine was stalled"
    );
    assert!(
        stalled_receipted < stalled_given,
        "{stalled_receipted} receipted of {stalled_given}"
    );
    let mut release = eddy
        .process
        .child
        .stdin
        .take()
        .expect("the server's stdin is piped");
    release
        .write_all(b"\n")
        .expect("the server reads its stdin");
    tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("every update is receipted once the engine takes batches again")
        .expect("the receipt reader ends");
    assert_eq!(receipted.load(Ordering::Relaxed), UPDATES);
    assert_eq!(given.load(Ordering::Relaxed), UPDATES);
    let (stopped, status) = eddy.terminate();
    assert_eq!(assert_clean_stop(&stopped, status), UPDATES as i64);
}

/// Checks the `eddy stopped` line: the accounting identity holds and every stored update
/// reached the views. Returns how many were stored.
fn assert_clean_stop(stopped: &Value, status: ExitStatus) -> i64 {
    assert_eq!(status.code(), Some(0), "a clean exit: {status:?}");
    let received = stopped["received"].as_i64().expect("received is logged");
    let stored = stopped["stored"].as_i64().expect("stored is logged");
    let skipped = stopped["skipped"].as_i64().expect("skipped is logged");
    assert_eq!(received, stored + skipped, "{stopped}");
    assert_eq!(stopped["records_in_views"], stored, "{stopped}");
    stored
}

#[tokio::test]
async fn half_open_and_cut_connections_leave_the_server_answering_and_stopping_cleanly() {
    let eddy = Eddy::start(&[]);
    let start = now();
    // A TCP connection that sends nothing, and one that stops inside the HTTP/2 preface.
    let _silent = tokio::net::TcpStream::connect(eddy.address)
        .await
        .expect("the port accepts connections");
    let mut stalled = tokio::net::TcpStream::connect(eddy.address)
        .await
        .expect("the port accepts connections");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("part of the preface is sent");
    // A connection cut mid-batch: 50 updates sent, 10 receipts read, then the TCP connection
    // is dropped.
    let cut_channel = connect_channel(eddy.address).await;
    let mut cut = CollectorConn::open(&cut_channel).await;
    for n in 0..50 {
        cut.send_flow(update(1, n, start)).await;
    }
    cut.receipts(10).await;
    drop(cut);
    drop(cut_channel);
    // The server keeps answering other clients.
    let channel = connect_channel(eddy.address).await;
    let flows: Vec<_> = (0..20).map(|n| update(2, n, start)).collect();
    assert_eq!(send_on_new_connection(&channel, flows).await, 20);

    let (stopped, status) = eddy.terminate();
    let stored = assert_clean_stop(&stopped, status);
    assert!(
        (30..=70).contains(&stored),
        "the 20 updates, the 10 receipted before the cut and at most 40 more: {stopped}"
    );
}

#[tokio::test]
async fn a_replay_storm_after_mass_reconnects_is_de_duplicated_and_totals_are_exact() {
    let eddy = Eddy::start(&[]);
    let start = now();
    let channel = connect_channel(eddy.address).await;
    let nodes = 8;
    let per_node = 25;
    for node in 0..nodes {
        let flows: Vec<_> = (0..per_node).map(|n| update(node, n, start)).collect();
        assert_eq!(send_on_new_connection(&channel, flows).await, per_node);
    }
    // Every node reconnects at once and replays everything it sent.
    let mut replays = Vec::new();
    for node in 0..nodes {
        let channel = channel.clone();
        replays.push(tokio::spawn(async move {
            let flows: Vec<_> = (0..per_node).map(|n| update(node, n, start)).collect();
            send_on_new_connection(&channel, flows).await
        }));
    }
    for replay in replays {
        assert_eq!(replay.await.expect("the replay task ends"), per_node);
    }
    let (stopped, status) = eddy.terminate();
    let stored = assert_clean_stop(&stopped, status);
    let total = (nodes * per_node) as i64;
    assert_eq!(stopped["received"], 2 * total, "{stopped}");
    assert_eq!(stored, total, "every replay was de-duplicated: {stopped}");
    assert_eq!(stopped["skipped"], total, "{stopped}");
}

#[tokio::test]
async fn a_client_that_never_reads_its_receipts_does_not_hold_up_others() {
    let eddy = Eddy::start(&[]);
    let start = now();
    let idle_channel = connect_channel(eddy.address).await;
    let idle = CollectorConn::open(&idle_channel).await;
    let updates = idle.clone_sender();
    // Sends more updates than the server keeps receipts for, without reading one receipt:
    // the server stops reading that call (backpressure, SPEC §9.2: the call's task on the
    // ingest threads waits, HTTP/2 flow control holds the sender), and the sending task stays
    // blocked while other calls are served.
    let flooding = tokio::spawn(async move {
        for n in 0..10_000 {
            let update = FlowUpdate {
                flow: Some(update(3, n, start)),
            };
            if updates.send(update).await.is_err() {
                return;
            }
        }
    });
    let channel = connect_channel(eddy.address).await;
    let flows: Vec<_> = (0..20).map(|n| update(4, n, start)).collect();
    assert_eq!(send_on_new_connection(&channel, flows).await, 20);
    let (stopped, status) = eddy.terminate();
    let stored = assert_clean_stop(&stopped, status);
    assert!(stored >= 20, "{stopped}");
    flooding.abort();
    drop(idle);
}
