//! `eddy flowgen` end to end: the real binary against a real `eddy serve` process on a free
//! loopback port. The generator's totals must equal what `Flows.List` then reports, also when
//! a proxy cuts every node's connection mid-flush and the nodes replay (the server absorbs the
//! replay, SPEC §9.4), and runs with one seed must repeat.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command as StdCommand, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running `eddy serve`, killed when dropped.
struct Served {
    child: Child,
    address: SocketAddr,
}

impl Served {
    /// Starts `eddy serve` on a free port and waits until it accepts connections. Its log
    /// goes to a file in the temporary directory, quoted if it never opens the port.
    fn start() -> Served {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = std::env::temp_dir().join(format!("eddy-flowgen-test-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let child = StdCommand::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "serve",
                "--listen",
                &address.to_string(),
                "--log-level",
                "warn",
            ])
            // No health or metrics listeners: parallel tests would fight over their ports.
            .env("HEALTH_ENABLED", "false")
            .env("PROMETHEUS_PORT", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("eddy serve starts");
        let mut served = Served { child, address };
        let deadline = Instant::now() + Duration::from_secs(60);
        while StdStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            let exited = served.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("eddy serve did not open {address} ({exited:?}): {log}");
            }
            std::thread::yield_now();
        }
        served
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eddy(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(&args)
            .env_remove("EDDY_SERVER")
            .timeout(Duration::from_secs(120))
            .output()
            .expect("eddy runs")
    })
    .await
    .expect("the blocking task finishes")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Runs flowgen with `flags` against `server` and returns its JSON summary.
async fn flowgen(server: SocketAddr, flags: &[&str]) -> Value {
    let mut all = args(&[
        "flowgen",
        "--server",
        &server.to_string(),
        "--json",
        "--quiet",
    ]);
    all.extend(args(flags));
    let output = eddy(all).await;
    assert!(
        output.status.success(),
        "flowgen failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the summary is JSON")
}

/// A 64-bit integer of protobuf JSON, which is a string.
fn integer(value: &Value) -> Option<i64> {
    value.as_str().and_then(|text| text.parse().ok())
}

/// What the server lists over all retained buckets (the current one included): the number
/// of results and the sums of two counters.
async fn listed(server: SocketAddr) -> (i64, i64, i64) {
    let until = eddy::cli::time::format_rfc3339(eddy::cli::output::unix_now() + 3600);
    let output = eddy(args(&[
        "flows",
        "list",
        "--server",
        &server.to_string(),
        "-o",
        "json",
        "--until",
        &until,
    ]))
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let document: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let flows = document["flows"].as_array().expect("flows");
    let sum = |field: &str| {
        flows
            .iter()
            .map(|f| integer(&f["flow"][field]).unwrap_or(0))
            .sum()
    };
    (
        integer(&document["meta"]["totalResults"]).unwrap_or(-1),
        sum("packetsIn"),
        sum("bytesOut"),
    )
}

fn number(summary: &Value, field: &str) -> i64 {
    summary[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowgen_totals_match_what_list_reports() {
    let served = Served::start();
    let summary = flowgen(
        served.address,
        &[
            "--nodes",
            "3",
            "--flows-per-node",
            "40",
            "--interval",
            "1s",
            "--duration",
            "2s",
            "--backfill",
            "1m",
            "--seed",
            "7",
        ],
    )
    .await;
    // 60 backfill flushes and 2 live ones per node.
    assert_eq!(number(&summary, "flushes"), 3 * 62);
    assert_eq!(number(&summary, "generated"), 3 * 40 * 62);
    assert_eq!(number(&summary, "sent"), 3 * 40 * 62);
    assert_eq!(number(&summary, "receipted"), 3 * 40 * 62);
    assert_eq!(number(&summary, "replayed"), 0);
    assert_eq!(summary["latency_ms"]["samples"], 3 * 40 * 62);
    assert!(summary["latency_ms"]["p50"].as_f64() <= summary["latency_ms"]["p99"].as_f64());
    assert!(number(&summary, "updates_per_second") > 0);
    let (results, packets_in, bytes_out) = listed(served.address).await;
    assert_eq!(results, number(&summary, "keys"));
    assert_eq!(packets_in, number(&summary, "packets_in"));
    assert_eq!(bytes_out, number(&summary, "bytes_out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_realistic_profile_sends_every_key_each_cycle_and_list_agrees() {
    let served = Served::start();
    let summary = flowgen(
        served.address,
        &[
            "--profile",
            "realistic",
            "--keys",
            "300",
            "--cycles",
            "2",
            "--nodes",
            "4",
            "--window",
            "50",
        ],
    )
    .await;
    assert_eq!(summary["profile"], "realistic");
    assert_eq!(number(&summary, "keys"), 300);
    assert_eq!(number(&summary, "generated"), 600);
    assert_eq!(number(&summary, "sent"), 600);
    assert_eq!(number(&summary, "receipted"), 600);
    assert_eq!(summary["latency_ms"]["samples"], 600);
    assert_eq!(summary["last_error"], Value::Null);
    // Every key's source pod is its own, so each key is one flow over the retained buckets;
    // the second cycle changes bytes_out only, and the server aggregates both sends.
    let (results, packets_in, bytes_out) = listed(served.address).await;
    assert_eq!(results, 300);
    assert_eq!(packets_in, number(&summary, "packets_in"));
    assert_eq!(bytes_out, number(&summary, "bytes_out"));
    let one_cycle = flowgen(
        served.address,
        &[
            "--profile",
            "realistic",
            "--keys",
            "300",
            "--cycles",
            "1",
            "--stop-and-wait",
        ],
    )
    .await;
    assert_eq!(number(&one_cycle, "receipted"), 300);
    assert_eq!(
        number(&one_cycle, "packets_in") * 2,
        number(&summary, "packets_in")
    );
    assert_eq!(listed(served.address).await.0, 300);
}

/// A TCP proxy that cuts each of the first `cuts` connections once it has forwarded
/// `cut_after` bytes from the client; returns its address and the number of cuts so far.
async fn cutting_proxy(
    upstream: SocketAddr,
    cut_after: usize,
    cuts: usize,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a proxy port");
    let address = listener.local_addr().expect("an address");
    let cut = Arc::new(AtomicUsize::new(0));
    let counter = cut.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                let mut forwarded = 0;
                let mut buffer = vec![0; 16 * 1024];
                loop {
                    let n = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                    forwarded += n;
                    let take = |c: usize| (c < cuts).then_some(c + 1);
                    if forwarded >= cut_after
                        && counter
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                            .is_ok()
                    {
                        down.abort();
                        return;
                    }
                }
                let _ = server_write.shutdown().await;
                let _ = down.await;
            });
        }
    });
    (address, cut)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_a_cut_connection_is_not_counted_twice() {
    let served = Served::start();
    let (proxy, cuts) = cutting_proxy(served.address, 40_000, 2).await;
    let summary = flowgen(
        proxy,
        &[
            "--nodes",
            "2",
            "--flows-per-node",
            "60",
            "--interval",
            "1s",
            "--duration",
            "3s",
            "--window",
            "16",
            "--seed",
            "11",
        ],
    )
    .await;
    assert_eq!(cuts.load(Ordering::SeqCst), 2, "both nodes were cut once");
    assert!(number(&summary, "reconnects") >= 2, "{summary}");
    assert!(number(&summary, "replayed") > 0, "{summary}");
    assert!(
        number(&summary, "sent") > number(&summary, "generated"),
        "{summary}"
    );
    assert_eq!(number(&summary, "generated"), 2 * 60 * 3);
    let (results, packets_in, bytes_out) = listed(served.address).await;
    assert_eq!(
        packets_in,
        number(&summary, "packets_in"),
        "no update counted twice or lost"
    );
    assert_eq!(bytes_out, number(&summary, "bytes_out"));
    assert_eq!(results, number(&summary, "keys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_runs_repeat_and_the_pacing_flags_hold() {
    let served = Served::start();
    let flags = [
        "--nodes",
        "2",
        "--flows-per-node",
        "25",
        "--interval",
        "1s",
        "--duration",
        "0s",
        "--backfill",
        "20s",
    ];
    let mut paced = flags.to_vec();
    paced.extend(["--seed", "3", "--stop-and-wait", "--rate", "2000"]);
    let first = flowgen(served.address, &paced).await;
    assert_eq!(number(&first, "receipted"), 2 * 25 * 20);
    assert!(
        first["elapsed_seconds"].as_f64().is_some_and(|s| s >= 0.45),
        "1000 updates at 2000/s: {first}"
    );
    let mut again = flags.to_vec();
    again.extend(["--seed", "3", "--max"]);
    let second = flowgen(served.address, &again).await;
    for field in ["generated", "keys", "packets_in", "bytes_out"] {
        assert_eq!(first[field], second[field], "{field} repeats for one seed");
    }
    let mut other = flags.to_vec();
    other.extend(["--seed", "4"]);
    let third = flowgen(served.address, &other).await;
    assert_ne!(
        first["packets_in"], third["packets_in"],
        "another seed, other traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowgen_against_no_server_fails_with_one_line() {
    let port = StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let output = eddy(args(&[
        "flowgen",
        "--server",
        &format!("127.0.0.1:{port}"),
        "--duration",
        "1s",
    ]))
    .await;
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "eddy: error: cannot reach the server at 127.0.0.1:{port} (UNAVAILABLE: "
        )),
        "{stderr}"
    );
    let usage = eddy(args(&["flowgen", "--nodes", "0"])).await;
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--nodes"));
}

/// Polls `Flows.List` until the server has at least one flow, for at most 60 s.
async fn wait_for_flows(server: SocketAddr) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server accepts connections");
    let mut client = eddy::proto::flows_client::FlowsClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client
            .list(eddy::proto::FlowListRequest::default())
            .await
            .expect("List succeeds")
            .into_inner();
        if !listed.flows.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "flowgen sent nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowgen_stops_on_ctrl_c_and_still_prints_its_summary() {
    let served = Served::start();
    let child = StdCommand::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "flowgen",
            "--server",
            &served.address.to_string(),
            "--nodes",
            "2",
        ])
        .args([
            "--flows-per-node",
            "10",
            "--interval",
            "1s",
            "--backfill",
            "30s",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowgen starts");
    wait_for_flows(served.address).await;
    let interrupted = StdCommand::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("the waiter finishes")
        .expect("flowgen exits");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).expect("the summary is JSON");
    assert_eq!(summary["interrupted"], true);
    // The server showed flows, so updates were sent; their receipts may still have been on the
    // way when the interrupt came (a receipt follows the worker taking the batch).
    assert!(number(&summary, "sent") >= 1, "{summary}");
    assert!(
        number(&summary, "receipted") <= number(&summary, "sent"),
        "{summary}"
    );
    assert!(
        number(&summary, "generated") >= 2 * 10 * 30,
        "the backfill was generated: {summary}"
    );
}
