//! `eddy flows list|watch|hints`: the `Flows` service from the command line (SPEC §4, §6, §7).

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::filter::FilterArgs;
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::render;
use crate::cli::table::Table;
use crate::cli::time::RangeArgs;
use crate::cli::watch::WatchArgs;
use crate::proto::flows_client::FlowsClient;
use crate::proto::{FlowListRequest, ListMetadata, SortBy, SortOption};

/// Largest response the client accepts: a big `List` can run to many megabytes.
pub const MAX_RESPONSE: usize = 1 << 30;

/// `eddy flows`.
#[derive(Debug, Args)]
pub struct FlowsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FlowsCommand,
}

/// The `flows` subcommands.
#[derive(Debug, Subcommand)]
pub enum FlowsCommand {
    /// List aggregated flows (Flows.List).
    List(ListArgs),
    /// Print flows as the server emits them, until Ctrl-C (Flows.Stream).
    Watch(WatchArgs),
    /// Distinct values of one field, to build filters with (Flows.FilterHints).
    Hints(crate::cli::hints::HintsArgs),
}

/// A sort key for `--sort`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortArg {
    /// Newest first.
    Time,
    /// Destination name.
    DestName,
    /// Destination namespace.
    DestNamespace,
    /// Destination endpoint type.
    DestType,
    /// Source name.
    SourceName,
    /// Source namespace.
    SourceNamespace,
    /// Source endpoint type.
    SourceType,
}

impl From<SortArg> for SortBy {
    fn from(sort: SortArg) -> SortBy {
        match sort {
            SortArg::Time => SortBy::Time,
            SortArg::DestName => SortBy::DestName,
            SortArg::DestNamespace => SortBy::DestNamespace,
            SortArg::DestType => SortBy::DestType,
            SortArg::SourceName => SortBy::SourceName,
            SortArg::SourceNamespace => SortBy::SourceNamespace,
            SortArg::SourceType => SortBy::SourceType,
        }
    }
}

/// Paging flags.
#[derive(Clone, Copy, Debug, Args)]
pub struct PageArgs {
    /// Results per page; 0 returns everything.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub page_size: u32,
    /// Which page to show, counting from 1 (needs --page-size).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "page_size")]
    pub page: u32,
}

impl PageArgs {
    /// (`page`, `page_size`) as the API counts them, from 0.
    pub fn request(&self) -> (i64, i64) {
        (i64::from(self.page) - 1, i64::from(self.page_size))
    }
}

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
    #[command(flatten)]
    /// Which page.
    pub paging: PageArgs,
    /// One result per key per window of this width (a multiple of the server's window, e.g. 1m).
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::time::parse_duration)]
    pub aggregation_interval: Option<std::time::Duration>,
    #[command(flatten)]
    /// How to print.
    pub output: OutputArgs,
}

/// Runs `eddy flows ...`.
pub async fn run(args: FlowsArgs) -> Result<(), CliError> {
    match args.command {
        FlowsCommand::List(args) => list(args).await,
        FlowsCommand::Watch(args) => crate::cli::watch::run(args).await,
        FlowsCommand::Hints(args) => crate::cli::hints::run(args).await,
    }
}

/// A `Flows` client over `channel` that accepts large responses.
pub fn client(channel: Channel) -> FlowsClient<Channel> {
    FlowsClient::new(channel).max_decoding_message_size(MAX_RESPONSE)
}

/// `showing 1-20 of 345 flows (page 1 of 18)` or `345 flows`; `nouns` is (singular, plural).
pub fn footer(
    meta: Option<&ListMetadata>,
    shown: usize,
    paging: &PageArgs,
    nouns: (&str, &str),
) -> String {
    let total = meta.map_or(0, |m| m.total_results);
    let noun = if total == 1 { nouns.0 } else { nouns.1 };
    if paging.page_size == 0 {
        return format!("{total} {noun}\n");
    }
    let pages = meta.map_or(0, |m| m.total_pages);
    let first = i64::from(paging.page - 1) * i64::from(paging.page_size);
    let shown = i64::try_from(shown).unwrap_or(i64::MAX);
    if shown == 0 {
        return format!(
            "page {} of {pages} is empty ({total} {noun} in all)\n",
            paging.page
        );
    }
    format!(
        "showing {}-{} of {total} {noun} (page {} of {pages})\n",
        first + 1,
        first + shown,
        paging.page
    )
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let channel = args.server.connect().await?;
    let (page, page_size) = args.paging.request();
    let aggregation_interval = match args.aggregation_interval {
        None => 0,
        Some(width) if width.subsec_nanos() == 0 => {
            i64::try_from(width.as_secs()).unwrap_or(i64::MAX)
        }
        Some(_) => {
            return Err(CliError::Usage(
                "--aggregation-interval: must be whole seconds".into(),
            ))
        }
    };
    let request = FlowListRequest {
        start_time_gte: args.range.gte(),
        start_time_lt: args.range.lt(),
        page,
        page_size,
        sort_by: args
            .sort
            .iter()
            .map(|&sort| SortOption {
                sort_by: SortBy::from(sort) as i32,
            })
            .collect(),
        filter: args.filter.to_proto(),
        aggregation_interval,
    };
    let result = client(channel)
        .list(request)
        .await
        .map_err(|status| {
            CliError::status(
                "Flows.List",
                status,
                &args.server.server,
                args.server.uses_tls(),
            )
        })?
        .into_inner();
    let mut out = Output::new(&args.output);
    match out.format {
        Format::Table | Format::Wide => {
            let mut table = Table::new(render::columns(out.format == Format::Wide));
            for flow in &result.flows {
                table.push(render::flow_row(flow, out.format == Format::Wide, out.now));
            }
            if !table.is_empty() {
                let text = table.render(out.color);
                out.write(&text)?;
            }
            out.write(&footer(
                result.meta.as_ref(),
                table.len(),
                &args.paging,
                ("flow", "flows"),
            ))?;
        }
        Format::Json => out.json_document(&result)?,
        Format::Ndjson => {
            for flow in &result.flows {
                out.json_line(flow)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
