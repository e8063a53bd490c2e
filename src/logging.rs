//! Logging: a level or tracing directive (`LOG_LEVEL`, `--log-level`), written as human text
//! (coloured only on a terminal) or as one JSON object per line (`--log-format json`).
//! Repeated warnings about bad input are rate-limited where they are raised
//! (`ingest::counters`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured when standard output is a terminal.
    #[default]
    Text,
    /// One JSON object per line, fields flattened, for log collectors.
    Json,
}

/// Installs the global subscriber. Fails on an invalid level or directive.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter = EnvFilter::try_new(level)
        .map_err(|error| format!("invalid --log-level `{level}`: {error}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stdout().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|error| format!("cannot install the logger: {error}"))
}
