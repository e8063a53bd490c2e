//! Support for the durability tests: a real `eddy serve` process on a data directory, killed
//! and restarted at will, and the totals List and Statistics report. Each test binary includes
//! this module; not every binary uses every helper.
#![allow(dead_code)]

pub mod numbered;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use eddy::proto::flows_client::FlowsClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{FlowListRequest, StatisticType, StatisticsGroupBy, StatisticsRequest};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tonic::transport::Channel;

/// A running `eddy serve` on a data directory, and its JSON log lines as they arrive.
pub struct Eddy {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// The gRPC address it announced.
    pub address: SocketAddr,
    /// Its health and metrics address.
    pub admin: SocketAddr,
    /// Its `recovered the data directory` log line.
    pub recovered: Value,
}

impl Eddy {
    /// Starts `eddy serve --data-dir data_dir` with `extra` flags, and waits for it to serve.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Eddy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--health-address",
                "127.0.0.1",
                "--prometheus-address",
                "127.0.0.1",
                "--workers",
                "2",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .args(if extra.contains(&"--health-port") {
                &[][..]
            } else {
                &["--health-port", "0"][..]
            })
            .env_remove("PORT")
            .env_remove("PUSH_URL")
            .env_remove("PROMETHEUS_PORT")
            .env_remove("EDDY_SYNC")
            .env_remove("EDDY_MAX_DISK_BYTES")
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
        let mut eddy = Eddy {
            child,
            lines,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            recovered: Value::Null,
        };
        eddy.recovered = eddy.line("recovered the data directory");
        let serving = eddy.line("eddy is serving the Goldmane API");
        eddy.address = address_in(&serving, "address");
        eddy.admin = address_in(&serving, "health");
        eddy
    }

    /// The next log line whose message is `message`, and the lines before it (waits at most
    /// 120 s, for a debug build's recovery).
    pub fn line(&self, message: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("no `{message}` log line"));
            if line["message"] == message {
                return line;
            }
        }
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub fn kill(mut self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).expect("SIGKILL is delivered");
        let _ = self.child.wait();
    }
}

impl Drop for Eddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The socket address logged in field `field` (`Some(addr)` for optional ones).
fn address_in(line: &Value, field: &str) -> SocketAddr {
    let text = line[field]
        .as_str()
        .unwrap_or_else(|| panic!("the log line names its {field}: {line}"));
    let text = text
        .strip_prefix("Some(")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or(text);
    text.parse().expect("a socket address")
}

/// Totals over every retained flow, as List and Statistics report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum of `packets_in`.
    pub packets: i64,
    /// Sum of `bytes_in`.
    pub bytes: i64,
}

/// The totals List reports over the whole retention.
pub async fn list_totals(channel: &Channel) -> Totals {
    let flows = FlowsClient::new(channel.clone())
        .list(FlowListRequest::default())
        .await
        .expect("List succeeds")
        .into_inner()
        .flows;
    let mut totals = Totals::default();
    for result in flows {
        let flow = result.flow.expect("a result carries its flow");
        totals.packets += flow.packets_in;
        totals.bytes += flow.bytes_in;
    }
    totals
}

/// The allowed-in totals Statistics reports over the whole retention, grouped by policy.
pub async fn statistics_totals(channel: &Channel) -> Totals {
    let mut totals = Totals::default();
    for (kind, total) in [
        (StatisticType::PacketCount, &mut totals.packets),
        (StatisticType::ByteCount, &mut totals.bytes),
    ] {
        let request = StatisticsRequest {
            r#type: kind as i32,
            group_by: StatisticsGroupBy::Policy as i32,
            ..StatisticsRequest::default()
        };
        let mut results = StatisticsClient::new(channel.clone())
            .list(request)
            .await
            .expect("Statistics succeeds")
            .into_inner();
        while let Some(result) = results.message().await.expect("Statistics streams") {
            *total += result.allowed_in.iter().sum::<i64>();
        }
    }
    totals
}
