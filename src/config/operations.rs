//! The operational flags of `eddy serve` (SPEC §11.1): TLS, health, metrics, the emitter and
//! the log format. Goldmane's environment variable names are kept.
//!
//! Health listens on 127.0.0.1 by default: probes run inside the pod (`eddy health`, or a
//! kubelet exec probe). Metrics listen on all interfaces, where Prometheus scrapes them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args};

use std::time::Duration;

use crate::config::checks;
use crate::duration;
use crate::emitter::post::Poster;
use crate::emitter::switch::{FileSwitch, POLL};
use crate::emitter::{Backoff, EmitterConfig};
use crate::logging::LogFormat;
use crate::retention::Retention;
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
    /// Address the health probes listen on (loopback: probes run inside the pod).
    #[arg(long, env = "EDDY_HEALTH_ADDRESS", default_value = "127.0.0.1")]
    pub health_address: IpAddr,
    /// Port of Prometheus `/metrics` (`0` turns metrics off).
    #[arg(long, env = "PROMETHEUS_PORT", default_value_t = 0)]
    pub prometheus_port: u16,
    /// Address `/metrics` listens on (all interfaces, for Prometheus).
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
        value_parser = duration::parse)]
    pub emitter_aggregation_window: Duration,
    /// Emitter: name the https `PUSH_URL` server's certificate must carry [default: the URL's host].
    #[arg(long, env = "SERVER_NAME")]
    pub server_name: Option<String>,
    /// Emitter: JSON file `{"emitFlows": true}` turning sending on and off at run time, read
    /// every 30s (a missing file means off).
    #[arg(long, env = "FILE_CONFIG_PATH")]
    pub file_config_path: Option<PathBuf>,
    /// Emitter: PEM client certificate presented to an https `PUSH_URL`.
    #[arg(long, env = "CLIENT_CERT_PATH")]
    pub client_cert_path: Option<PathBuf>,
    /// Emitter: PEM private key of the client certificate.
    #[arg(long, env = "CLIENT_KEY_PATH")]
    pub client_key_path: Option<PathBuf>,
    /// Emitter: file that remembers the last window delivered (a relative path is inside
    /// --data-dir when one is set).
    #[arg(
        long,
        env = "EDDY_EMITTER_STATE",
        default_value = "eddy-emitter-state.json"
    )]
    pub emitter_state_file: PathBuf,
}

impl OperationsArgs {
    /// Whether `PUSH_URL` is an https URL, whose server the CA verifies.
    fn https_push(&self) -> bool {
        self.push_url
            .as_deref()
            .is_some_and(|url| url.starts_with("https://"))
    }

    /// The gRPC port's TLS settings, if TLS is on. A CA without a server certificate is
    /// refused rather than served as plaintext, unless an https `PUSH_URL` uses it.
    pub fn server_tls(&self) -> Result<Option<ServerTls>, TlsError> {
        let no_server_identity = self.server_cert_path.is_none() && self.server_key_path.is_none();
        if no_server_identity && self.ca_cert_path.is_some() && !self.https_push() {
            return Err(TlsError::Incomplete(
                "CA_CERT_PATH (--ca-cert-path) is set without SERVER_CERT_PATH and \
                 SERVER_KEY_PATH: the gRPC port would be plaintext and accept any client; \
                 set the server certificate and key too, or unset CA_CERT_PATH",
            ));
        }
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

    /// Whether the CA is used by the emitter only, the gRPC port being plaintext.
    pub fn ca_for_emitter_only(&self) -> bool {
        self.ca_cert_path.is_some() && self.server_cert_path.is_none() && self.https_push()
    }

    /// The emitter's configuration, if `PUSH_URL` is set, for the server's `retention`.
    pub fn emitter(&self, retention: &Retention) -> Result<Option<EmitterConfig>, String> {
        let Some(url) = self.push_url.as_deref().filter(|url| !url.is_empty()) else {
            return Ok(None);
        };
        let width = checks::emitter_width(
            retention,
            self.emitter_aggregation_window,
            self.emit_after_seconds,
        )?;
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
        let mut poster = Poster::new(url, tls)?;
        if let Some(name) = self.server_name.as_deref().filter(|name| !name.is_empty()) {
            poster = poster.with_server_name(name)?;
        }
        let switch = self
            .file_config_path
            .clone()
            .filter(|path| !path.as_os_str().is_empty())
            .map(|path| FileSwitch { path, poll: POLL });
        Ok(Some(EmitterConfig {
            poster,
            width,
            emit_after: i64::from(self.emit_after_seconds),
            state_file: self.emitter_state_file.clone(),
            backoff: Backoff::default(),
            switch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    fn operations(args: &[&str]) -> OperationsArgs {
        let cli = Cli::try_parse_from(["eddy", "serve"].iter().chain(args)).expect("valid flags");
        match cli.command {
            Command::Serve(serve) => serve.operations,
            other => panic!("`eddy serve` parses as serve, not {other:?}"),
        }
    }

    const HOUR: Retention = Retention {
        window: 15,
        closed_buckets: 240,
    };

    #[test]
    fn server_name_and_file_config_reach_the_emitter() {
        let emitter = operations(&[
            "--push-url",
            "https://127.0.0.1:9/flows",
            "--server-name",
            "linseed.example",
            "--file-config-path",
            "/etc/goldmane/config.json",
        ])
        .emitter(&HOUR)
        .expect("valid settings")
        .expect("PUSH_URL turns the emitter on");
        assert_eq!(
            emitter.switch,
            Some(FileSwitch {
                path: PathBuf::from("/etc/goldmane/config.json"),
                poll: POLL
            })
        );
        let poster = format!("{:?}", emitter.poster);
        assert!(poster.contains("DnsName(\"linseed.example\")"), "{poster}");
    }

    #[test]
    fn without_them_the_url_host_is_verified_and_sending_is_always_on() {
        let emitter = operations(&["--push-url", "https://collector.example/flows"])
            .emitter(&HOUR)
            .expect("valid settings")
            .expect("PUSH_URL turns the emitter on");
        assert_eq!(emitter.switch, None);
        let poster = format!("{:?}", emitter.poster);
        assert!(
            poster.contains("DnsName(\"collector.example\")"),
            "{poster}"
        );
        assert!(
            operations(&["--file-config-path", "/etc/goldmane/config.json"])
                .emitter(&HOUR)
                .is_ok_and(|emitter| emitter.is_none())
        );
    }
}
