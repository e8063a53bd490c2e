//! `eddy health`: the check a Kubernetes exec probe runs inside the pod. One HTTP GET to
//! `/readiness` or `/liveness` on the health port of `eddy serve`, one line of output, and an
//! exit code: 0 healthy, 1 the server answered that it is not, 3 no answer (nothing listening,
//! refused, or nothing within `--timeout`). The flags mirror Calico's `health` command
//! (`--type`, `--port`, `--host`, `--timeout`), so a Goldmane probe works unchanged.

use std::io::Write;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, ValueEnum};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::cli::error::{one_line, CliError};

/// The most of an answer's body that is read and shown.
const BODY_LIMIT: usize = 4096;

/// Which probe to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeType {
    /// Ready for traffic: the engine has processed its first epoch and no shutdown has begun.
    Readiness,
    /// Alive: the engine still advances epochs.
    Liveness,
}

impl ProbeType {
    /// The HTTP path of this probe on the health port.
    pub fn path(self) -> &'static str {
        match self {
            ProbeType::Readiness => "/readiness",
            ProbeType::Liveness => "/liveness",
        }
    }

    /// The state a healthy answer reports, e.g. `ready`.
    fn state(self) -> &'static str {
        match self {
            ProbeType::Readiness => "ready",
            ProbeType::Liveness => "live",
        }
    }
}

/// `eddy health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Which probe to ask.
    #[arg(long = "type", value_enum, default_value = "readiness")]
    pub probe: ProbeType,
    /// The health port of `eddy serve` (its `--health-port`).
    #[arg(long, env = "HEALTH_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Host or address of the health listener.
    #[arg(long, visible_alias = "host", default_value = "127.0.0.1")]
    pub address: String,
    /// How long to wait for the whole answer, e.g. `5s` or `500ms`.
    #[arg(long, default_value = "5s", value_name = "DURATION",
        value_parser = crate::cli::time::parse_duration)]
    pub timeout: Duration,
    /// With `false` (as `eddy serve` with `HEALTH_ENABLED=false`) no probe is served, so the
    /// check passes without asking.
    #[arg(long, env = "HEALTH_ENABLED", default_value = "true", action = ArgAction::Set,
        value_parser = BoolishValueParser::new())]
    pub health_enabled: bool,
}

impl HealthArgs {
    /// `host:port` as it goes in the URL and the `Host` header (IPv6 in brackets).
    fn authority(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

/// What the health endpoint answered.
struct Answer {
    status: hyper::StatusCode,
    body: String,
}

/// Runs `eddy health`: prints one line and succeeds when the probe answers 2xx.
pub async fn run(args: HealthArgs) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    if !args.health_enabled {
        writeln!(
            out,
            "health checks are off (--health-enabled/HEALTH_ENABLED is false): passing"
        )?;
        return Ok(());
    }
    let authority = args.authority();
    let url = format!("http://{authority}{}", args.probe.path());
    let answer = match tokio::time::timeout(args.timeout, get(&args, &authority)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(detail)) => return Err(unreachable(&url, &authority, detail)),
        Err(_) => {
            let detail = format!("no answer within {:?}", args.timeout);
            return Err(unreachable(&url, &authority, detail));
        }
    };
    let state = args.probe.state();
    if answer.status.is_success() {
        writeln!(out, "{state}: {url} answered {}", answer.status)?;
        Ok(())
    } else {
        Err(CliError::Unhealthy(format!(
            "not {state}: {url} answered {}: {}",
            answer.status, answer.body
        )))
    }
}

/// One GET of the probe's path; an error is the transport's reason, on one line.
async fn get(args: &HealthArgs, authority: &str) -> Result<Answer, String> {
    let chain = |error: &(dyn std::error::Error + 'static)| crate::cli::connect::error_chain(error);
    let stream = tokio::net::TcpStream::connect((args.address.as_str(), args.port))
        .await
        .map_err(|error| chain(&error))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| chain(&error))?;
    tokio::spawn(connection);
    let request = Request::get(args.probe.path())
        .header(HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|error| chain(&error))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| chain(&error))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
        .map(|collected| one_line(&String::from_utf8_lossy(&collected.to_bytes())))
        .unwrap_or_else(|error| format!("(unreadable body: {error})"));
    Ok(Answer { status, body })
}

fn unreachable(url: &str, authority: &str, detail: String) -> CliError {
    CliError::Connect {
        server: url.to_string(),
        detail,
        hint: format!(
            "is `eddy serve` running with its health port at {authority}? Set --port/HEALTH_PORT \
             and --address to match its --health-port and --health-address"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        args: HealthArgs,
    }

    fn parse(flags: &[&str]) -> HealthArgs {
        let argv = std::iter::once("health").chain(flags.iter().copied());
        Probe::try_parse_from(argv).expect("the flags parse").args
    }

    #[test]
    fn calico_probe_flags_parse_and_name_the_url() {
        let args = parse(&["--port=9090", "--type=liveness", "--host", "::1"]);
        assert_eq!(args.probe, ProbeType::Liveness);
        assert_eq!(args.authority(), "[::1]:9090");
        assert_eq!(args.probe.path(), "/liveness");
        let args = parse(&["--timeout", "500ms"]);
        assert_eq!(args.probe, ProbeType::Readiness);
        assert_eq!(args.timeout, Duration::from_millis(500));
        assert_eq!(args.authority(), "127.0.0.1:8080");
    }

    #[test]
    fn bad_probe_types_are_refused() {
        let argv = ["health", "--type", "startup"];
        assert!(Probe::try_parse_from(argv).is_err());
    }
}
