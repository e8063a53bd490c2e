//! `eddy flows watch`: prints each result of `Flows.Stream` (SPEC §7) the moment it arrives,
//! one bucket of one flow per result, until Ctrl-C, `--count`, or the server ends the stream.
//! [`Interrupt`] and [`Live`] are shared with `eddy flows list --follow`.

use std::future::Future;
use std::pin::Pin;

use clap::Args;
use futures::FutureExt;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::filter::FilterArgs;
use crate::cli::flows::client;
use crate::cli::output::{unix_now, Format, Output, OutputArgs};
use crate::cli::render;
use crate::cli::table;
use crate::cli::time::{parse_time_arg, TimeArg};
use crate::proto::{FlowResult, FlowStreamRequest};

/// Fixed widths of the wide columns while streaming.
const WIDE_STREAM_WIDTHS: [usize; 10] = [20, 20, 20, 16, 16, 32, 11, 60, 40, 40];

/// `eddy flows watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Which flows.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// First replay what was already emitted since then: a duration ago (`10m`) or an RFC 3339
    /// time [default: only flows emitted from now on].
    #[arg(long, value_name = "WHEN", value_parser = parse_time_arg)]
    pub since: Option<TimeArg>,
    /// Stop after this many results.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Ctrl-C, caught from the moment this is made, so an interrupted command ends cleanly.
pub struct Interrupt {
    signal: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>,
    fired: bool,
}

impl Interrupt {
    /// Installs the handler now (so Ctrl-C while connecting is caught too).
    pub fn catch() -> Interrupt {
        let mut signal: Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
            Box::pin(tokio::signal::ctrl_c());
        let fired = signal.as_mut().now_or_never().is_some();
        Interrupt { signal, fired }
    }

    /// Whether Ctrl-C has been pressed already.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Completes on Ctrl-C; safe to drop and call again.
    pub async fn wait(&mut self) {
        if !self.fired {
            let _ = self.signal.as_mut().await;
            self.fired = true;
        }
    }
}

/// An open `Flows.Stream`, ended early by Ctrl-C.
pub struct Live {
    stream: Streaming<FlowResult>,
    interrupt: Interrupt,
    server: String,
    tls: bool,
}

fn stream_failed(status: tonic::Status, server: &str, tls: bool) -> CliError {
    CliError::status("Flows.Stream", status, server, tls)
}

impl Live {
    /// Opens the stream; `None` when Ctrl-C came first.
    pub async fn open(
        channel: Channel,
        server: &ServerArgs,
        request: FlowStreamRequest,
        mut interrupt: Interrupt,
    ) -> Result<Option<Live>, CliError> {
        let (address, tls) = (server.server.clone(), server.uses_tls());
        let mut flows = client(channel);
        tokio::select! {
            _ = interrupt.wait() => Ok(None),
            opened = flows.stream(request) => {
                let stream = opened
                    .map_err(|status| stream_failed(status, &address, tls))?
                    .into_inner();
                Ok(Some(Live { stream, interrupt, server: address, tls }))
            }
        }
    }

    /// The next result; `None` after Ctrl-C or when the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<FlowResult>, CliError> {
        tokio::select! {
            _ = self.interrupt.wait() => Ok(None),
            message = self.stream.message() => {
                message.map_err(|status| stream_failed(status, &self.server, self.tls))
            }
        }
    }
}

/// Column widths of a streamed table, `wide` or not.
pub fn widths(wide: bool) -> Vec<usize> {
    let mut widths = render::STREAM_WIDTHS.to_vec();
    if wide {
        widths.extend(WIDE_STREAM_WIDTHS);
    }
    widths
}

fn print(out: &mut Output, result: &FlowResult) -> std::io::Result<()> {
    match out.format {
        Format::Table | Format::Wide => {
            let wide = out.format == Format::Wide;
            let row = render::flow_row(result, wide, unix_now());
            let text = table::line(&row, &widths(wide), &render::columns(wide), out.color);
            out.write(&text)?;
        }
        Format::Json | Format::Ndjson => out.json_line(result)?,
    }
    out.flush()
}

/// Runs `eddy flows watch`.
pub async fn run(args: WatchArgs) -> Result<(), CliError> {
    let interrupt = Interrupt::catch();
    if interrupt.fired() {
        return Ok(());
    }
    let channel = args.server.connect().await?;
    let request = FlowStreamRequest {
        start_time_gte: args.since.map_or(0, TimeArg::to_request),
        filter: args.filter.to_proto(),
        aggregation_interval: 0,
    };
    let mut out = Output::new(&args.output);
    let Some(mut live) = Live::open(channel, &args.server, request, interrupt).await? else {
        return Ok(());
    };
    if out.is_table() {
        let wide = out.format == Format::Wide;
        let text = table::header(&widths(wide), &render::columns(wide), out.color);
        out.write(&text)?;
        out.flush()?;
    }
    let mut printed = 0u64;
    while args.count.is_none_or(|limit| printed < limit) {
        let Some(result) = live.next().await? else {
            break;
        };
        print(&mut out, &result)?;
        printed += 1;
    }
    Ok(())
}
