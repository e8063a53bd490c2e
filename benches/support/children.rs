//! Servers in child processes, so the bench can read each one's CPU time, resident set and
//! allocation count apart from its own: Eddy's real `eddy serve` binary, and the
//! transport-only baseline (the bench's own executable in its baseline mode).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::baseline::BASELINE_ARGUMENT;
use crate::support::procfs;

/// The log line that says `eddy serve` is ready for calls.
const SERVING: &str = "eddy is serving the Goldmane API";
/// The longest a child may take to start.
const START_BOUND: Duration = Duration::from_secs(120);

/// Where a child's allocation count is read.
enum AllocationCount {
    /// `eddy_allocations_total` on Eddy's `/metrics` (present in `count-allocations` builds).
    Metrics(SocketAddr),
    /// The baseline answers each line written to its standard input with its count.
    Pipe {
        ask: ChildStdin,
        answers: mpsc::Receiver<String>,
    },
}

/// A server in a child process, killed when dropped.
pub struct ServerChild {
    child: Child,
    /// Its gRPC address.
    pub address: SocketAddr,
    allocations: AllocationCount,
}

/// A loopback port free at the time of the call.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Reads a child's standard output on a thread of its own, line by line, so the child never
/// blocks on a full pipe.
fn read_lines(output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

impl ServerChild {
    /// `eddy serve` (the release binary cargo built beside the bench) on a free loopback
    /// port, with `/metrics` on another, JSON logs at `warn` but for the serving line, and
    /// `extra` arguments (e.g. `--workers 2`).
    pub fn eddy(extra: &[String]) -> ServerChild {
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--health-address", "127.0.0.1", "--health-port", "0"])
            .args(["--prometheus-address", "127.0.0.1"])
            .args(["--prometheus-port", &metrics.port().to_string()])
            .args(["--log-format", "json"])
            .args(extra)
            .env_remove("PORT")
            .env_remove("PUSH_URL")
            .env_remove("EDDY_DATA_DIR")
            .env_remove("EDDY_FAULT_INJECT")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the eddy binary starts");
        let lines = read_lines(child.stdout.take().expect("stdout is piped"));
        let address = loop {
            let line = lines
                .recv_timeout(START_BOUND)
                .expect("eddy serve logs that it is serving");
            let Ok(value) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if value["message"] == SERVING {
                break value["address"]
                    .as_str()
                    .expect("the serving line names its address")
                    .parse()
                    .expect("a socket address");
            }
        };
        std::thread::spawn(move || lines.iter().for_each(drop));
        ServerChild {
            child,
            address,
            allocations: AllocationCount::Metrics(metrics),
        }
    }

    /// The transport-only baseline: this bench's executable in its baseline mode.
    pub fn baseline() -> ServerChild {
        let me = std::env::current_exe().expect("the bench knows its own path");
        let mut child = Command::new(me)
            .arg(BASELINE_ARGUMENT)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the baseline starts");
        let answers = read_lines(child.stdout.take().expect("stdout is piped"));
        let address = answers
            .recv_timeout(START_BOUND)
            .expect("the baseline prints its address")
            .parse()
            .expect("a socket address");
        let ask = child.stdin.take().expect("stdin is piped");
        ServerChild {
            child,
            address,
            allocations: AllocationCount::Pipe { ask, answers },
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU seconds the child has used so far, every thread.
    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid())
    }

    /// The child's resident bytes.
    pub fn resident_bytes(&self) -> u64 {
        procfs::resident_bytes(self.pid())
    }

    /// Allocations the child has made so far, where it counts them (Eddy only when built
    /// with `--features count-allocations`).
    pub fn allocations(&mut self) -> Option<u64> {
        match &mut self.allocations {
            AllocationCount::Metrics(address) => {
                scrape_metric(*address, "eddy_allocations_total").map(|value| value as u64)
            }
            AllocationCount::Pipe { ask, answers } => {
                writeln!(ask).ok()?;
                ask.flush().ok()?;
                answers.recv_timeout(START_BOUND).ok()?.parse().ok()
            }
        }
    }

    /// Eddy's live heap bytes (`eddy_heap_live_bytes`, present in `count-allocations` builds).
    pub fn live_heap_bytes(&self) -> Option<u64> {
        match &self.allocations {
            AllocationCount::Metrics(address) => {
                scrape_metric(*address, "eddy_heap_live_bytes").map(|value| value as u64)
            }
            AllocationCount::Pipe { .. } => None,
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the unlabelled sample `name` on the `/metrics` page at `address`, if it is
/// there.
fn scrape_metric(address: SocketAddr, name: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(address).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut page = String::new();
    stream.read_to_string(&mut page).ok()?;
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse::<f64>().ok())
}
