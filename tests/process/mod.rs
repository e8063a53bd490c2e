//! Test support for the real `eddy serve` binary: a child process whose JSON log lines are read
//! as they arrive, so a test waits for "serving" or "stopped" instead of sleeping. The process is
//! killed when the handle is dropped. With `EDDY_TEST_ECHO` set, every line the server logs is
//! echoed to the test's standard error (run with `--nocapture` to see why a test waited).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The longest any wait for the process (a log line, its exit) may take before the test fails.
pub const PROCESS_BOUND: Duration = Duration::from_secs(60);

/// The log line that says the server is ready for calls.
pub const SERVING: &str = "eddy is serving the Goldmane API";
/// The last log line of a clean shutdown.
pub const STOPPED: &str = "eddy stopped";

/// `eddy serve` on free loopback ports (gRPC and health) with `workers` workers and JSON logs
/// at `info`, without the variables of the caller's environment that would change that.
pub fn serve_command(workers: usize) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--health-address", "127.0.0.1", "--health-port", "0"])
        .args(["--workers", &workers.to_string(), "--log-format", "json"])
        .env_remove("PORT")
        .env_remove("PUSH_URL")
        .env_remove("PROMETHEUS_PORT")
        .env_remove("EDDY_FAULT_INJECT")
        .env("LOG_LEVEL", "info");
    command
}

/// A running `eddy serve` and its JSON log lines.
pub struct EddyProcess {
    /// The process.
    pub child: Child,
    lines: mpsc::Receiver<Value>,
}

impl EddyProcess {
    /// Spawns `command` (which must log JSON lines to standard output) and reads its lines on a
    /// thread of their own.
    pub fn start(mut command: Command) -> EddyProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the eddy binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        let echo = std::env::var_os("EDDY_TEST_ECHO").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("{line}");
                }
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        EddyProcess { child, lines }
    }

    /// The next log line whose message is `message` (waits at most [`PROCESS_BOUND`]).
    pub fn line(&self, message: &str) -> Value {
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

    /// Waits for the serving line and returns the gRPC address it announces.
    pub fn serving_address(&self) -> SocketAddr {
        self.line(SERVING)["address"]
            .as_str()
            .expect("the serving line names its address")
            .parse()
            .expect("a socket address")
    }

    /// Waits for the process to exit: its standard output closes when it does.
    pub fn exit(&mut self) -> ExitStatus {
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

    /// Sends SIGTERM, then returns the `eddy stopped` line and the exit status.
    pub fn stop(&mut self) -> (Value, ExitStatus) {
        self.terminate();
        let stopped = self.line(STOPPED);
        (stopped, self.exit())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let pid = i32::try_from(self.child.id()).expect("a process id fits in i32");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM is delivered");
    }
}

impl Drop for EddyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
