//! The operational flags of `eddy serve` (SPEC §11.1): TLS, health, metrics, the emitter and
//! the log format. Goldmane's environment variable names are kept.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

use crate::config::parse_seconds;
use crate::emitter::post::Poster;
use crate::emitter::{Backoff, EmitterConfig};
use crate::logging::LogFormat;
use crate::tls::{client_config, ServerTls, TlsError};

/// TLS, health, metrics, emitter and log format flags.
#[derive(Clone, Debug, Args)]
pub struct OperationsArgs {
    /// Log line format: `text` (coloured on a terminal) or `json`.
    #[arg(long, env = "EDDY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// PEM certificate chain of the gRPC port; with `--server-key-path` it turns TLS on.
    #[arg(long, env = "SERVER_CERT_PATH")]
    pub server_cert_path: Option<PathBuf>,
    /// PEM private key of the server certificate.
    #[arg(long, env = "SERVER_KEY_PATH")]
    pub server_key_path: Option<PathBuf>,
    /// PEM CA: with TLS, clients must present a certificate it issued (mTLS); the emitter trusts it.
    #[arg(long, env = "CA_CERT_PATH")]
    pub ca_cert_path: Option<PathBuf>,
    /// Serve the HTTP health probes (`/livez`, `/readyz`, `/liveness`, `/readiness`).
    #[arg(long, env = "HEALTH_ENABLED", default_value = "true", action = ArgAction::Set,
        value_parser = BoolishValueParser::new())]
    pub health_enabled: bool,
    /// Port of the HTTP health probes (`0` picks a free port).
    #[arg(long, env = "HEALTH_PORT", default_value_t = 8080)]
    pub health_port: u16,
    /// Address the health probes listen on.
    #[arg(long, env = "EDDY_HEALTH_ADDRESS", default_value = "0.0.0.0")]
    pub health_address: IpAddr,
    /// Port of Prometheus `/metrics` (`0` turns metrics off).
    #[arg(long, env = "PROMETHEUS_PORT", default_value_t = 0)]
    pub prometheus_port: u16,
    /// Address `/metrics` listens on.
    #[arg(long, env = "EDDY_PROMETHEUS_ADDRESS", default_value = "0.0.0.0")]
    pub prometheus_address: IpAddr,
    /// Emitter: POST closed windows of flows as NDJSON to this `http://` or `https://` URL.
    #[arg(long, env = "PUSH_URL")]
    pub push_url: Option<String>,
    /// Emitter: seconds to wait after a window ends before sending it.
    #[arg(long, env = "EMIT_AFTER_SECONDS", default_value_t = 30)]
    pub emit_after_seconds: u32,
    /// Emitter: width of each window sent, a multiple of the aggregation window.
    #[arg(long, env = "EMITTER_AGGREGATION_WINDOW", default_value = "5m",
        value_parser = parse_seconds)]
    pub emitter_aggregation_window: i64,
    /// Emitter: PEM client certificate presented to an https `PUSH_URL`.
    #[arg(long, env = "CLIENT_CERT_PATH")]
    pub client_cert_path: Option<PathBuf>,
    /// Emitter: PEM private key of the client certificate.
    #[arg(long, env = "CLIENT_KEY_PATH")]
    pub client_key_path: Option<PathBuf>,
    /// Emitter: file that remembers the last window delivered.
    #[arg(
        long,
        env = "EDDY_EMITTER_STATE",
        default_value = "eddy-emitter-state.json"
    )]
    pub emitter_state_file: PathBuf,
}

impl OperationsArgs {
    /// The gRPC port's TLS settings, if TLS is on.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        ServerTls::from_paths(
            self.server_cert_path.as_deref(),
            self.server_key_path.as_deref(),
            self.ca_cert_path.as_deref(),
        )
    }

    /// Where the health probes listen, if enabled.
    pub fn health_address(&self) -> Option<SocketAddr> {
        self.health_enabled
            .then(|| SocketAddr::new(self.health_address, self.health_port))
    }

    /// Where `/metrics` listens, if enabled.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        (self.prometheus_port != 0)
            .then(|| SocketAddr::new(self.prometheus_address, self.prometheus_port))
    }

    /// The emitter's configuration, if `PUSH_URL` is set; `window` is the aggregation window.
    pub fn emitter(&self, window: i64) -> Result<Option<EmitterConfig>, String> {
        let Some(url) = self.push_url.as_deref().filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let width = self.emitter_aggregation_window;
        if width % window != 0 {
            return Err(format!(
                "--emitter-aggregation-window ({width}s) must be a multiple of \
                 --aggregation-window ({window}s)"
            ));
        }
        let tls = if url.starts_with("https://") {
            let config = client_config(
                self.ca_cert_path.as_deref(),
                self.client_cert_path.as_deref(),
                self.client_key_path.as_deref(),
            )
            .map_err(|error| error.to_string())?;
            Some(config)
        } else {
            None
        };
        Ok(Some(EmitterConfig {
            poster: Poster::new(url, tls)?,
            width,
            emit_after: i64::from(self.emit_after_seconds),
            state_file: self.emitter_state_file.clone(),
            backoff: Backoff::default(),
        }))
    }
}
