//! `--server` and the TLS flags shared by every client command, and the one function that turns
//! them into a connected gRPC channel (or a one-line error with a hint).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::error::CliError;

/// Where the server is and how to reach it.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct ServerArgs {
    /// Server address: `host:port`, or an `http://`/`https://` URL.
    #[arg(long, env = "EDDY_SERVER", default_value = "127.0.0.1:7443")]
    pub server: String,
    /// CA certificate (PEM) that signed the server's certificate; turns TLS on.
    #[arg(long, env = "EDDY_TLS_CA", value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(long, env = "EDDY_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS; needs --tls-cert.
    #[arg(long, env = "EDDY_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Name to expect in the server's certificate (default: the host of --server).
    #[arg(long, env = "EDDY_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// How long to wait for the connection before giving up, e.g. `5s`.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = crate::cli::time::parse_duration)]
    pub connect_timeout: Duration,
}

impl ServerArgs {
    /// How a `call` this server refused reads: the status, with a hint for these flags.
    pub fn refused(&self, call: &'static str) -> impl Fn(tonic::Status) -> CliError + Copy + '_ {
        move |status| CliError::status(call, status, &self.server, self.uses_tls())
    }

    /// Whether any TLS flag is set (or the URL says `https`).
    pub fn uses_tls(&self) -> bool {
        self.tls_ca.is_some()
            || self.tls_cert.is_some()
            || self.tls_server_name.is_some()
            || self.server.starts_with("https://")
    }

    /// The endpoint these flags describe; files are read here, the network is not touched.
    pub fn endpoint(&self) -> Result<Endpoint, CliError> {
        let tls = self.uses_tls();
        let authority = self
            .server
            .strip_prefix("http://")
            .or_else(|| self.server.strip_prefix("https://"))
            .unwrap_or(&self.server)
            .trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(CliError::Usage(format!(
                "--server: `{}` is not an address like 127.0.0.1:7443 or https://eddy.example:7443",
                self.server
            )));
        }
        if self.server.starts_with("http://") && tls {
            return Err(CliError::Usage(
                "--server: an http:// URL cannot be used with the TLS flags; use https:// or host:port".into(),
            ));
        }
        let scheme = if tls { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|error| {
                CliError::Usage(format!(
                    "--server: `{}` is not a valid address: {error}",
                    self.server
                ))
            })?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if !tls {
            return Ok(endpoint);
        }
        let Some(ca) = &self.tls_ca else {
            return Err(CliError::Usage(
                "--tls-ca: TLS needs the CA certificate that signed the server's certificate"
                    .into(),
            ));
        };
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config = config.identity(Identity::from_pem(
                read("--tls-cert", cert)?,
                read("--tls-key", key)?,
            ));
        }
        if let Some(name) = &self.tls_server_name {
            config = config.domain_name(name.clone());
        }
        endpoint
            .tls_config(config)
            .map_err(|error| CliError::Usage(format!("TLS flags: {}", error_chain(&error))))
    }

    /// Connects, or explains in one line why not.
    pub async fn connect(&self) -> Result<Channel, CliError> {
        let endpoint = self.endpoint()?;
        endpoint
            .connect()
            .await
            .map_err(|error| self.connect_error(&error))
    }

    /// A connection failure as a [`CliError::Connect`] with a hint chosen from its cause.
    pub fn connect_error(&self, error: &(dyn std::error::Error + 'static)) -> CliError {
        let detail = error_chain(error);
        let lower = detail.to_lowercase();
        let tls_words = [
            "tls",
            "certificate",
            "handshake",
            "corrupt message",
            "peer",
            "alert",
        ];
        let hint = if self.uses_tls() && tls_words.iter().any(|w| lower.contains(w)) {
            "TLS was refused: check --tls-ca, --tls-server-name (a name in the server's certificate), --tls-cert/--tls-key, or drop the TLS flags if the server is plaintext".to_string()
        } else if lower.contains("refused") {
            format!("nothing is listening there: is `eddy serve` running at {}? Set --server or EDDY_SERVER", self.server)
        } else if lower.contains("timed out") || lower.contains("timeout") {
            format!(
                "no answer within {:?}: check --server and the network, or raise --connect-timeout",
                self.connect_timeout
            )
        } else if lower.contains("dns") || lower.contains("resolve") || lower.contains("lookup") {
            format!("the host in --server ({}) does not resolve", self.server)
        } else {
            "check --server and, if the server uses TLS, the --tls-* flags".into()
        };
        CliError::Connect {
            server: self.server.clone(),
            detail,
            hint,
        }
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|error| {
        CliError::Usage(format!("{flag}: cannot read {}: {error}", path.display()))
    })
}

/// An error and its sources on one line, skipping a source whose text its parent already shows.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    crate::cli::error::one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str) -> ServerArgs {
        ServerArgs {
            server: server.into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            tls_server_name: None,
            connect_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn addresses_become_http_or_https_uris() {
        let plain = args("127.0.0.1:7443").endpoint().expect("valid");
        assert_eq!(plain.uri().to_string(), "http://127.0.0.1:7443/");
        let url = args("http://eddy:80/").endpoint().expect("valid");
        assert_eq!(url.uri().to_string(), "http://eddy:80/");
        assert!(matches!(args("a/b").endpoint(), Err(CliError::Usage(_))));
        assert!(matches!(args("").endpoint(), Err(CliError::Usage(_))));
    }

    #[test]
    fn tls_without_a_ca_or_with_a_missing_file_names_the_flag() {
        let mut named = args("eddy:7443");
        named.tls_server_name = Some("eddy".into());
        let error = named.endpoint().expect_err("needs a CA").to_string();
        assert!(error.starts_with("--tls-ca:"), "{error}");
        let mut missing = args("eddy:7443");
        missing.tls_ca = Some("/nonexistent/ca.pem".into());
        let error = missing.endpoint().expect_err("unreadable").to_string();
        assert!(
            error.starts_with("--tls-ca: cannot read /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
