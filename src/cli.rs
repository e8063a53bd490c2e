//! The client side of the `eddy` binary: `eddy flows list|watch|hints`, `eddy stats` and
//! `eddy views list|read` query the gRPC API like any client; `eddy flowgen` reports synthetic traffic like Felix nodes;
//! `eddy health` asks the health port, as a Kubernetes exec probe; `eddy completions` and
//! `eddy man` describe the command line itself.
//!
//! Code map: `connect` (--server, TLS, the channel), `filter` (filter flags to `Filter`),
//! `time` (durations, `--since`/`--until`, RFC 3339), `output` (-o and colour), `table` and
//! `render` (aligned rows, units), `error` (one-line errors, exit codes), one file per command
//! (`flows`, `list`, `hints`, `watch`, `stats`, `views`, `views_read`, `views_watch`, `health`, `completions`, `man`), and `flowgen/`
//! (nodes, pacing, the report). Nothing here is used by the server.

pub mod completions;
pub mod connect;
pub mod error;
pub mod filter;
pub mod flowgen;
pub mod flows;
pub mod health;
pub mod hints;
pub mod list;
pub mod man;
pub mod output;
pub mod render;
pub mod stats;
pub mod table;
pub mod time;
pub mod views;
pub mod views_read;
pub mod views_watch;
pub mod watch;

use std::future::Future;
use std::io::Write;

use crate::cli::error::CliError;

/// Runs a client command to completion and exits the process: 0 on success (or a closed
/// output pipe), otherwise the error's code after one line on standard error.
pub fn main(command: impl Future<Output = Result<(), CliError>>) -> ! {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "eddy: cannot start the async runtime: {error}"
            );
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) if error.is_broken_pipe() => std::process::exit(0),
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "eddy: error: {error}");
            std::process::exit(i32::from(error.exit_code()));
        }
    }
}
