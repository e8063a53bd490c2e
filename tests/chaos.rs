//! Chaos against the real `eddy serve` binary on loopback (SPEC §12.8, §12.9): an injected
//! worker panic, connections cut mid-batch, half-open connections, clients that never read
//! their receipts and replay storms after mass reconnects, each followed by SIGTERM. Every
//! test is bounded in count; waits for the process are bounded by [`PROCESS_BOUND`].

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect_channel, flow, key, CollectorConn};
use eddy::proto::{Flow, FlowUpdate};
use serde_json::Value;

/// The longest any wait for the process (a log line, its exit) may take before the test fails.
const PROCESS_BOUND: Duration = Duration::from_secs(60);

/// A running `eddy serve`, its JSON log lines as they arrive, and its gRPC address.
struct Eddy {
    child: Child,
    lines: mpsc::Receiver<Value>,
    address: SocketAddr,
}

impl Eddy {
    /// Starts the binary with two workers and `env` set.
    fn start(env: &[(&str, &str)]) -> Eddy {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--health-address",
                "127.0.0.1",
                "--health-port",
                "0",
                "--workers",
                "2",
                "--log-format",
                "json",
            ])
            .env_remove("PORT")
            .env_remove("PUSH_URL")
            .env_remove("PROMETHEUS_PORT")
            .env_remove("EDDY_FAULT_INJECT")
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the eddy binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        let mut eddy = Eddy {
            child,
            lines,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let serving = eddy.line("eddy is serving the Goldmane API");
        eddy.address = serving["address"]
            .as_str()
            .expect("the address is logged")
            .parse()
            .expect("a socket address");
        eddy
    }

    /// The next log line whose message is `message`.
    fn line(&self, message: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(PROCESS_BOUND)
                .unwrap_or_else(|_| panic!("no `{message}` log line"));
            if line["message"] == message {
                return line;
            }
        }
    }

    /// Waits for the process to exit: its standard output closes when it does.
    fn exit(&mut self) -> ExitStatus {
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .expect("the process can be waited for")
            {
                return status;
            }
            match self.lines.recv_timeout(PROCESS_BOUND) {
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return self.child.wait().expect("the process exits")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("the process did not exit"),
            }
        }
    }
}

impl Drop for Eddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
