//! Command-line and environment configuration (SPEC §11.1), parsed once into typed values.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::catalog::CatalogArgs;
use crate::config::durability::DurabilityArgs;
use crate::config::limits::LimitsArgs;
use crate::config::operations::OperationsArgs;
use crate::config::reads::ReadArgs;
use crate::config::streams::StreamArgs;
use crate::duration;
use crate::ingest::dedup::DedupScope;
use crate::server::ServerConfig;

pub mod catalog;
pub mod checks;
pub mod connect_limits;
pub mod durability;
pub mod limits;
pub mod operations;
pub mod reads;
pub mod streams;

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
    /// Eddy's own views: list them, read one (top talkers and more).
    Views(Box<crate::cli::views::ViewsArgs>),
    /// Generate Felix-like flow reports against a server.
    Flowgen(Box<crate::cli::flowgen::FlowgenArgs>),
    /// Check a running server's readiness or liveness (a Kubernetes exec probe).
    Health(Box<crate::cli::health::HealthArgs>),
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
    /// Bucket width, e.g. `15s` or `1m0s`: whole seconds, from 1s to 1h.
    #[arg(long, env = "AGGREGATION_WINDOW", default_value = "15s", value_parser = duration::parse)]
    pub aggregation_window: Duration,
    /// How long closed buckets are kept, e.g. `1h`: at most 100,000 buckets.
    #[arg(long, env = "EDDY_RETENTION", default_value = "1h", value_parser = duration::parse)]
    pub retention: Duration,
    /// Log filter: `error`, `warn`, `info`, `debug`, `trace`, or a tracing directive.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Generate realistic demo traffic inside the server, so flows appear at once.
    #[arg(long, env = "EDDY_DEMO")]
    pub demo: bool,
    /// Which replays are de-duplicated (see docs/differences.md).
    #[arg(long, env = "EDDY_DEDUP_SCOPE", value_enum, default_value = "peer-ip")]
    pub dedup_scope: DedupScope,
    /// `Connect` bounds.
    #[command(flatten)]
    pub connect_limits: connect_limits::ConnectLimitArgs,
    /// TLS, health, metrics, emitter and log format.
    #[command(flatten)]
    pub operations: OperationsArgs,
    /// Live stream bounds.
    #[command(flatten)]
    pub streams: StreamArgs,
    /// Bounds of the catalog's tables.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Size limits of updates and query requests.
    #[command(flatten)]
    pub limits: LimitsArgs,
    /// Query read sharing and tick pacing.
    #[command(flatten)]
    pub reads: ReadArgs,
    /// Data directory, sync mode and disk bound.
    #[command(flatten)]
    pub durability: DurabilityArgs,
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
        let retention = checks::retention(self.aggregation_window, self.retention)?;
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        if workers == 0 || workers > 256 {
            return Err("--workers (EDDY_WORKERS) must be between 1 and 256".into());
        }
        let mut config = ServerConfig::new(workers, retention);
        config.dedup_scope = self.dedup_scope;
        config.streams = self.streams.limits();
        config.catalog = self.catalog.limits();
        config.input_limits = self.limits.input_limits();
        config.request_limits = self.limits.request_limits();
        config.connect = self.connect_limits.limits();
        config.reads = self.reads.limits();
        config.tick_records = self.reads.tick_records();
        config.ingest_nice = self.reads.ingest_nice;
        config.tick_interval = Duration::from_millis(50);
        Ok(config)
    }
}
