//! `eddy flows watch`: prints each result of `Flows.Stream` (SPEC §7) the moment it arrives,
//! one bucket of one flow per result, until Ctrl-C, `--count`, or the server ends the stream.

use clap::Args;

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

fn widths(wide: bool) -> Vec<usize> {
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
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // Polling once installs the handler now, so Ctrl-C while connecting is caught too.
    if futures::FutureExt::now_or_never(&mut interrupted).is_some() {
        return Ok(());
    }
    let channel = args.server.connect().await?;
    let request = FlowStreamRequest {
        start_time_gte: args.since.map_or(0, TimeArg::to_request),
        filter: args.filter.to_proto(),
        aggregation_interval: 0,
    };
    let failed = |status| {
        CliError::status(
            "Flows.Stream",
            status,
            &args.server.server,
            args.server.uses_tls(),
        )
    };
    let mut out = Output::new(&args.output);
    let mut flows = client(channel);
    let mut stream = tokio::select! {
        _ = &mut interrupted => return Ok(()),
        opened = flows.stream(request) => opened.map_err(failed)?.into_inner(),
    };
    if out.is_table() {
        let wide = out.format == Format::Wide;
        let text = table::header(&widths(wide), &render::columns(wide), out.color);
        out.write(&text)?;
        out.flush()?;
    }
    let mut printed = 0u64;
    while args.count.is_none_or(|limit| printed < limit) {
        tokio::select! {
            _ = &mut interrupted => break,
            message = stream.message() => match message {
                Ok(Some(result)) => {
                    print(&mut out, &result)?;
                    printed += 1;
                }
                Ok(None) => break,
                Err(status) => return Err(failed(status)),
            },
        }
    }
    Ok(())
}
