//! The command line's errors: each prints as one line with what failed, the gRPC status where
//! there is one, and a hint, and maps to an exit code.
//!
//! Exit codes: 1 the server answered with an error (or, for `eddy health`, that it is not
//! healthy), 2 the command line is wrong, 3 the server
//! could not be reached or dropped the connection (refused, TLS refused, `UNAVAILABLE`), 4 writing the output
//! failed. A closed pipe (`eddy flows list | head`) is not an error.

use tonic::{Code, Status};

/// Something that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag value is wrong; the message names the flag.
    #[error("{0}")]
    Usage(String),
    /// No connection could be made to the server.
    #[error("cannot reach the server at {server} (UNAVAILABLE: {detail}); hint: {hint}")]
    Connect {
        /// The address as given.
        server: String,
        /// What the transport said, one line.
        detail: String,
        /// What to try.
        hint: String,
    },
    /// A call ended with a gRPC status.
    #[error("{call} failed with {}: {detail}{}", code_name(.status.code()), .hint.as_ref().map(|h| format!("; hint: {h}")).unwrap_or_default())]
    Status {
        /// The service and method, e.g. `Flows.List`.
        call: &'static str,
        /// The status as received.
        status: Status,
        /// Its message and the transport errors behind it, on one line.
        detail: String,
        /// What to try, when something useful can be said.
        hint: Option<String>,
    },
    /// A health probe answered that the server is not ready or not live.
    #[error("{0}")]
    Unhealthy(String),
    /// Writing to standard output failed.
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Connect { .. } => 3,
            CliError::Status { status, .. } if status.code() == Code::Unavailable => 3,
            CliError::Status { status, detail, .. } if broken_connection(status.code(), detail) => {
                3
            }
            CliError::Status { .. } | CliError::Unhealthy(_) => 1,
            CliError::Output(_) => 4,
        }
    }

    /// A status from `call` against `server`, with a hint chosen by its code and message.
    pub fn status(call: &'static str, status: Status, server: &str, tls: bool) -> Self {
        let mut detail = one_line(status.message());
        if let Some(source) = std::error::Error::source(&status) {
            let cause = crate::cli::connect::error_chain(source);
            if !detail.contains(&cause) {
                detail = if detail.is_empty() {
                    cause
                } else {
                    format!("{detail}: {cause}")
                };
            }
        }
        let hint = hint_for(&status, &detail, server, tls);
        CliError::Status {
            call,
            status,
            detail,
            hint,
        }
    }

    /// Whether this is a closed output pipe, which ends a command quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::Output(error)
    }
}

/// The canonical upper-case name of a gRPC code, e.g. `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Collapses whitespace and newlines so a message fits on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The command-line flag behind a request field named in an `INVALID_ARGUMENT` message.
pub fn flag_for_field(field: &str) -> Option<&'static str> {
    let field = field.rsplit('.').next().unwrap_or(field);
    Some(match field {
        "start_time_gte" => "--since",
        "start_time_lt" => "--until",
        "page" => "--page",
        "page_size" => "--page-size",
        "sort_by" => "--sort",
        "aggregation_interval" => "--aggregation-interval",
        "type" => "the statistic or hint type",
        "group_by" => "--group-by",
        "source_names" => "--source-name",
        "source_namespaces" => "--source-namespace",
        "dest_names" => "--dest-name",
        "dest_namespaces" => "--dest-namespace",
        "protocols" => "--protocol",
        "dest_ports" => "--dest-port",
        "actions" => "--action",
        "pending_actions" => "--pending-action",
        "policies" | "policy_match" => "--policy",
        "reporter" => "--reporter",
        _ => return None,
    })
}

/// Whether a failed call's `detail` says the connection itself broke (closed, reset, TLS
/// alert) rather than the server answering with an error.
fn broken_connection(code: Code, detail: &str) -> bool {
    let lower = detail.to_lowercase();
    let words = [
        "certificate",
        "alert",
        "handshake",
        "tls",
        "connection closed",
        "connection reset",
        "broken pipe",
        "h2 protocol error",
        "frame",
        "transport error",
        "operation was canceled",
    ];
    matches!(
        code,
        Code::Unknown | Code::Unavailable | Code::Internal | Code::Cancelled
    ) && words.iter().any(|word| lower.contains(word))
}

fn hint_for(status: &Status, detail: &str, server: &str, tls: bool) -> Option<String> {
    let message = status.message();
    if broken_connection(status.code(), detail) {
        return Some(if tls {
            "the server closed the TLS connection: with mTLS pass --tls-cert/--tls-key signed by the CA the server trusts for clients; check --tls-ca and --tls-server-name".into()
        } else {
            "the server closed the connection: if it uses TLS, pass --tls-ca (and --tls-cert/--tls-key for mTLS)".into()
        });
    }
    let tls_hint = if tls {
        "check --tls-ca, --tls-server-name (a name in the server's certificate) and, for mTLS, --tls-cert/--tls-key"
    } else {
        "if the server uses TLS, pass --tls-ca (and --tls-cert/--tls-key for mTLS)"
    };
    match status.code() {
        Code::InvalidArgument => {
            let field = message.split(':').next().unwrap_or_default().trim();
            Some(match field_flags(field) {
                Some(flags) => format!("check {flags}"),
                None => "check the flags against `eddy flows --help`".into(),
            })
        }
        Code::Unimplemented => Some(format!(
            "the server at {server} does not offer this call; it may be an older Eddy or not a Goldmane API server"
        )),
        Code::Unavailable => Some(format!(
            "is `eddy serve` running at {server}? Set --server or EDDY_SERVER; {tls_hint}"
        )),
        Code::ResourceExhausted if message.contains("too slow") => Some(
            "this client fell behind the stream; run again with --since to resume from a recent time".into(),
        ),
        Code::ResourceExhausted => Some("the server is at a limit; try again later or narrow the query".into()),
        Code::Unauthenticated | Code::PermissionDenied => {
            Some("the server wants a client certificate: pass --tls-cert and --tls-key".into())
        }
        Code::DeadlineExceeded => Some("the server did not answer in time".into()),
        _ => None,
    }
}

/// `--since/--until` for a time-range complaint, else the one flag behind `field`.
fn field_flags(field: &str) -> Option<String> {
    match field {
        "start_time_gte" | "start_time_lt" => Some("--since/--until".into()),
        other => flag_for_field(other).map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_print_as_one_line_with_a_flag_hint() {
        let status = Status::invalid_argument("start_time_gte: must be before\nstart_time_lt");
        let error = CliError::status("Flows.List", status, "127.0.0.1:7443", false);
        assert_eq!(
            error.to_string(),
            "Flows.List failed with INVALID_ARGUMENT: start_time_gte: must be before start_time_lt; hint: check --since/--until"
        );
        assert_eq!(error.exit_code(), 1);
        let page = CliError::status(
            "Flows.List",
            Status::invalid_argument("page_size: bad"),
            "x",
            false,
        );
        assert!(page.to_string().ends_with("hint: check --page-size"));
    }

    #[test]
    fn unreachable_servers_exit_with_three() {
        let error = CliError::status("Flows.List", Status::unavailable("gone"), "h:1", false);
        assert_eq!(error.exit_code(), 3);
        assert!(error
            .to_string()
            .contains("is `eddy serve` running at h:1?"));
        assert_eq!(CliError::Usage("--page: bad".into()).exit_code(), 2);
    }
}
