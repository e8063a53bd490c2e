//! Graceful shutdown of a real `eddy serve` process (SPEC §11.6): after SIGTERM, an open
//! stream and an open `Connect` call end with `UNAVAILABLE`, the process exits 0, and its last
//! log line shows that every receipted update reached the views.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect_channel, flow, key, send_on_new_connection, CollectorConn};
use eddy::proto::flows_client::FlowsClient;
use eddy::proto::FlowStreamRequest;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The process, and its JSON log lines as they arrive.
struct Eddy {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Eddy {
    fn start() -> Eddy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
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
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the eddy binary starts");
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
        Eddy { child, lines }
    }

    /// The next log line whose message is `message` (waits at most 60 s).
    fn line(&self, message: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{message}` log line"));
            if line["message"] == message {
                return line;
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

#[tokio::test]
async fn sigterm_ends_calls_with_unavailable_processes_every_receipt_and_exits_zero() {
    let mut eddy = Eddy::start();
    let serving = eddy.line("eddy is serving the Goldmane API");
    let address: std::net::SocketAddr = serving["address"]
        .as_str()
        .expect("the address is logged")
        .parse()
        .expect("a socket address");
    let channel = connect_channel(address).await;

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let flows: Vec<_> = (0..40)
        .map(|n| {
            flow(
                key(("shop", "frontend"), ("shop", &format!("backend-{n}"))),
                now,
                1,
            )
        })
        .collect();
    assert_eq!(send_on_new_connection(&channel, flows).await, 40);
    let mut open = CollectorConn::open(&channel).await;
    open.send_and_wait(flow(key(("ops", "felix"), ("shop", "cart")), now, 1))
        .await;
    let mut stream = FlowsClient::new(channel.clone())
        .stream(FlowStreamRequest::default())
        .await
        .expect("Stream is accepted")
        .into_inner();

    kill(Pid::from_raw(eddy.child.id() as i32), Signal::SIGTERM).expect("SIGTERM is delivered");

    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream must end with a status, not OK"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended}");
    let collector = open.next().await.expect_err("Connect ends with a status");
    assert_eq!(collector.code(), tonic::Code::Unavailable, "{collector}");

    let stopped = eddy.line("eddy stopped");
    assert_eq!(stopped["received"], 41);
    assert_eq!(stopped["stored"], 41);
    assert_eq!(stopped["skipped"], 0);
    assert_eq!(
        stopped["records_in_views"], 41,
        "every receipted update was processed"
    );
    let status = eddy.child.wait().expect("the process exits");
    assert_eq!(status.code(), Some(0), "a clean exit");
}
