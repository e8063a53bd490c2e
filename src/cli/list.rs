//! `eddy flows list`: Flows.List (SPEC §4), printed as the answer arrives.
//!
//! Without `--page-size`, tables and NDJSON read the list in pages of [`PAGE`] rows and print
//! each page when it comes. Tables stop at [`DEFAULT_TABLE_ROWS`] rows unless `--last N` says
//! otherwise, and their footer says how many were left out. `-o json` is one document, so it
//! is one call whose answer is printed as the server sent it. With `--page-size` exactly that
//! page is shown.
//!
//! Pages are separate calls: a flow that moves to a later page while they are read (new flows
//! arrive at the top of the time order) is skipped the second time it comes.
//!
//! `--follow` then prints every bucket the server emits, as `eddy flows watch` does, until
//! Ctrl-C or `--count`. Its stream is opened before the list is read, so nothing emitted
//! meanwhile is missed.

use std::collections::HashSet;

use clap::Args;
use tonic::transport::Channel;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::filter::FilterArgs;
use crate::cli::flows::{client, footer, PageArgs, SortArg};
use crate::cli::output::{unix_now, Format, Output, OutputArgs};
use crate::cli::render;
use crate::cli::table::PagedTable;
use crate::cli::time::RangeArgs;
use crate::cli::watch::{Interrupt, Live};
use crate::proto::flows_client::FlowsClient;
use crate::proto::{
    FlowListRequest, FlowListResult, FlowResult, FlowStreamRequest, SortBy, SortOption,
};

/// Rows per call when the list is read in pages.
pub const PAGE: u32 = 500;

/// Rows a table shows without `--last` or `--page-size`.
pub const DEFAULT_TABLE_ROWS: u32 = 100;

/// `eddy flows list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    /// Where the server is.
    pub server: ServerArgs,
    #[command(flatten)]
    /// The time range.
    pub range: RangeArgs,
    #[command(flatten)]
    /// Which flows.
    pub filter: FilterArgs,
    /// Sort key; repeat for tie-breakers, e.g. `--sort dest-namespace --sort dest-name`.
    #[arg(long, value_enum, value_name = "KEY")]
    pub sort: Vec<SortArg>,
    /// Only the N most recent flows [default for tables: 100, with a note when more matched].
    #[arg(long, value_name = "N", conflicts_with = "page_size",
        value_parser = clap::value_parser!(u32).range(1..))]
    pub last: Option<u32>,
    #[command(flatten)]
    /// Which page.
    pub paging: PageArgs,
    /// One result per key per window of this width (a multiple of the server's window, e.g. 1m).
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::time::parse_duration)]
    pub aggregation_interval: Option<std::time::Duration>,
    /// After the list, print each bucket of flows as the server emits it, like
    /// `eddy flows watch`, until Ctrl-C.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// With --follow: stop after this many emitted results.
    #[arg(long, value_name = "N", requires = "follow")]
    pub count: Option<u64>,
    #[command(flatten)]
    /// How to print.
    pub output: OutputArgs,
}

/// Where `eddy flows list` sends its calls, and how to name their failures.
struct Lister<'a> {
    flows: FlowsClient<Channel>,
    server: &'a ServerArgs,
    request: FlowListRequest,
}

impl Lister<'_> {
    /// One `Flows.List` call for `page` of `page_size` rows.
    async fn call(&mut self, page: i64, page_size: i64) -> Result<FlowListResult, CliError> {
        let mut request = self.request.clone();
        (request.page, request.page_size) = (page, page_size);
        Ok(self
            .flows
            .list(request)
            .await
            .map_err(self.server.refused("Flows.List"))?
            .into_inner())
    }
}

fn aggregation_interval(args: &ListArgs) -> Result<i64, CliError> {
    match args.aggregation_interval {
        None => Ok(0),
        Some(width) if width.subsec_nanos() == 0 => {
            Ok(i64::try_from(width.as_secs()).unwrap_or(i64::MAX))
        }
        Some(_) => Err(CliError::Usage(
            "--aggregation-interval: must be whole seconds".into(),
        )),
    }
}

/// Prints `rows` in the output's form (JSON as one line each); tables go through `table`.
fn print(out: &mut Output, table: &mut PagedTable, rows: &[FlowResult]) -> std::io::Result<()> {
    match out.format {
        Format::Table | Format::Wide => {
            let wide = out.format == Format::Wide;
            let cells: Vec<_> = rows
                .iter()
                .map(|row| render::flow_row(row, wide, out.now))
                .collect();
            let text = table.page(&cells, out.color);
            out.write(&text)?;
        }
        Format::Json | Format::Ndjson => {
            for row in rows {
                out.json_line(row)?;
            }
        }
    }
    out.flush()
}

/// The footer of a table read in pages: `5 flows`, or what was left out and how to see it.
pub fn paged_footer(shown: u64, total: i64, last: Option<u32>) -> String {
    let total = u64::try_from(total).unwrap_or(0).max(shown);
    let noun = if total == 1 { "flow" } else { "flows" };
    if shown >= total {
        return format!("{total} {noun}\n");
    }
    match last {
        Some(_) => format!("the {shown} most recent of {total} {noun}\n"),
        None => format!(
            "showing {shown} of {total} {noun}; {} more: use --last N or --page-size N\n",
            total - shown
        ),
    }
}

/// Reads the list in pages of up to [`PAGE`] rows, printing each, until `limit` rows are
/// shown or the list ends; returns the rows shown and the server's total.
async fn paged(
    lister: &mut Lister<'_>,
    out: &mut Output,
    table: &mut PagedTable,
    limit: Option<u64>,
) -> Result<(u64, i64), CliError> {
    let page_size = limit.map_or(PAGE, |limit| {
        u32::try_from(limit).map_or(PAGE, |limit| limit.min(PAGE))
    });
    let mut seen = HashSet::new();
    let (mut shown, mut total) = (0u64, 0i64);
    let mut page = 0i64;
    loop {
        let result = lister.call(page, i64::from(page_size)).await?;
        let meta = result.meta.unwrap_or_default();
        total = total.max(meta.total_results);
        let received = result.flows.len();
        let room = limit.map_or(usize::MAX, |limit| {
            usize::try_from(limit - shown).unwrap_or(usize::MAX)
        });
        let fresh: Vec<FlowResult> = result
            .flows
            .into_iter()
            .filter(|row| seen.insert((row.id, row.flow.as_ref().map_or(0, |f| f.start_time))))
            .take(room)
            .collect();
        shown += fresh.len() as u64;
        print(out, table, &fresh)?;
        page += 1;
        let full = limit.is_some_and(|limit| shown >= limit);
        if full || received < page_size as usize || page >= meta.total_pages {
            return Ok((shown, total));
        }
    }
}

/// Runs `eddy flows list`.
pub async fn run(args: ListArgs) -> Result<(), CliError> {
    if args.last.is_some() && args.sort.first().is_some_and(|&sort| sort != SortArg::Time) {
        return Err(CliError::Usage(
            "--last takes the most recent flows, so it needs time order; with --sort use --page-size N"
                .into(),
        ));
    }
    let interrupt = args.follow.then(Interrupt::catch);
    if interrupt.as_ref().is_some_and(Interrupt::fired) {
        return Ok(());
    }
    let channel = args.server.connect().await?;
    let filter = args.filter.to_proto();
    let mut live = None;
    if let Some(interrupt) = interrupt {
        let request = FlowStreamRequest {
            start_time_gte: 0,
            filter: filter.clone(),
            aggregation_interval: 0,
        };
        match Live::open(channel.clone(), &args.server, request, interrupt).await? {
            Some(opened) => live = Some(opened),
            None => return Ok(()),
        }
    }
    let mut lister = Lister {
        flows: client(channel),
        server: &args.server,
        request: FlowListRequest {
            start_time_gte: args.range.gte(),
            start_time_lt: args.range.lt(),
            page: 0,
            page_size: 0,
            sort_by: args
                .sort
                .iter()
                .map(|&sort| SortOption {
                    sort_by: SortBy::from(sort) as i32,
                })
                .collect(),
            filter,
            aggregation_interval: aggregation_interval(&args)?,
        },
    };
    let mut out = Output::new(&args.output);
    let wide = out.format == Format::Wide;
    let minimum = if args.follow {
        crate::cli::watch::widths(wide)
    } else {
        Vec::new()
    };
    let mut table = PagedTable::new(render::columns(wide), &minimum);
    if args.paging.page_size.is_some() || out.format == Format::Json {
        let (page, page_size) = match args.paging.page_size {
            Some(_) => args.paging.request(),
            None => (0, args.last.map_or(0, i64::from)),
        };
        let result = lister.call(page, page_size).await?;
        if out.format == Format::Json {
            out.json_document(&result)?;
        } else {
            print(&mut out, &mut table, &result.flows)?;
        }
        if out.is_table() {
            let text = footer(
                result.meta.as_ref(),
                result.flows.len(),
                &args.paging,
                ("flow", "flows"),
            );
            out.write(&text)?;
        }
    } else {
        let default = out.is_table().then_some(DEFAULT_TABLE_ROWS);
        let limit = args.last.or(default).map(u64::from);
        let (shown, total) = paged(&mut lister, &mut out, &mut table, limit).await?;
        if out.is_table() {
            out.write(&paged_footer(shown, total, args.last))?;
        }
    }
    out.flush()?;
    let Some(mut live) = live else {
        return Ok(());
    };
    let mut printed = 0u64;
    while args.count.is_none_or(|limit| printed < limit) {
        let Some(result) = live.next().await? else {
            break;
        };
        out.now = unix_now();
        print(&mut out, &mut table, std::slice::from_ref(&result))?;
        printed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_says_what_was_left_out() {
        assert_eq!(paged_footer(5, 5, None), "5 flows\n");
        assert_eq!(paged_footer(1, 1, Some(3)), "1 flow\n");
        assert_eq!(
            paged_footer(2, 5, Some(2)),
            "the 2 most recent of 5 flows\n"
        );
        assert_eq!(
            paged_footer(100, 345, None),
            "showing 100 of 345 flows; 245 more: use --last N or --page-size N\n"
        );
    }
}
