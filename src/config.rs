//! Command-line and environment configuration (SPEC §11.1), parsed once into typed values.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::operations::OperationsArgs;
use crate::ingest::dedup::DedupScope;
use crate::retention::Retention;
use crate::server::ServerConfig;

pub mod operations;

/// The `eddy` command line.
#[derive(Debug, Parser)]
#[command(
    name = "eddy",
    version,
    about = "Flow aggregation server for the Calico Goldmane API"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Query flows: list, watch, filter hints.
    Flows(Box<crate::cli::flows::FlowsArgs>),
    /// Per-policy and per-rule traffic statistics.
    Stats(Box<crate::cli::stats::StatsArgs>),
    /// Generate Felix-like flow reports against a server.
    Flowgen(Box<crate::cli::flowgen::FlowgenArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(crate::cli::completions::CompletionsArgs),
    /// Write manual pages: `eddy.1` to standard output, or every page into --dir.
    Man(crate::cli::man::ManArgs),
}

/// Flags of `eddy serve`; each has an environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address for gRPC. `PORT=n` alone means `0.0.0.0:n`.
    #[arg(long, env = "EDDY_LISTEN", default_value = "127.0.0.1:7443")]
    pub listen: SocketAddr,
    /// Goldmane's port variable: listen on all interfaces at this port.
    #[arg(long, env = "PORT", hide = true)]
    pub port: Option<u16>,
    /// Timely worker threads (default: one per core).
    #[arg(long, env = "EDDY_WORKERS")]
    pub workers: Option<usize>,
    /// Bucket width, e.g. `15s` or `1m`: whole seconds.
    #[arg(long, env = "AGGREGATION_WINDOW", default_value = "15s", value_parser = parse_seconds)]
    pub aggregation_window: i64,
    /// How long closed buckets are kept, e.g. `1h`.
    #[arg(long, env = "EDDY_RETENTION", default_value = "1h", value_parser = parse_seconds)]
    pub retention: i64,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a tracing directive.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Generate realistic demo traffic inside the server, so flows appear at once.
    #[arg(long, env = "EDDY_DEMO")]
    pub demo: bool,
    /// Which replays are de-duplicated (SPEC §9.4).
    #[arg(long, env = "EDDY_DEDUP_SCOPE", value_enum, default_value = "peer-ip")]
    pub dedup_scope: DedupScope,
    /// TLS, health, metrics, emitter and log format.
    #[command(flatten)]
    pub operations: OperationsArgs,
}

/// Parses `90`, `15s`, `5m`, `1h` or `2d` into whole seconds.
pub fn parse_seconds(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: i64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 15s, 5m or 1h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` (use s, m, h or d)"
            ))
        }
    };
    match value.checked_mul(scale) {
        Some(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(format!("`{text}` must be a positive duration")),
    }
}

impl ServeArgs {
    /// The address to listen on, honouring `PORT`.
    pub fn listen_address(&self) -> SocketAddr {
        match self.port {
            Some(port) => SocketAddr::from(([0, 0, 0, 0], port)),
            None => self.listen,
        }
    }

    /// The server configuration these flags describe.
    pub fn server_config(&self) -> Result<ServerConfig, String> {
        let window = self.aggregation_window;
        if self.retention < window {
            return Err(format!(
                "--retention ({}s) must be at least one --aggregation-window ({window}s)",
                self.retention
            ));
        }
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if workers == 0 || workers > 256 {
            return Err("--workers must be between 1 and 256".into());
        }
        let mut config = ServerConfig::new(
            workers,
            Retention {
                window,
                closed_buckets: self.retention / window,
            },
        );
        config.dedup_scope = self.dedup_scope;
        config.tick_interval = Duration::from_millis(50);
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_seconds("15s"), Ok(15));
        assert_eq!(parse_seconds("90"), Ok(90));
        assert_eq!(parse_seconds("1h"), Ok(3600));
        assert!(parse_seconds("0s").is_err());
        assert!(parse_seconds("15x").is_err());
        assert!(parse_seconds("-5s").is_err());
    }
}
