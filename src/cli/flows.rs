//! `eddy flows list|watch|hints`: the `Flows` service from the command line (SPEC §4, §6, §7):
//! the subcommands, and what they share (sort keys, paging flags, the client, the footer).

use clap::{Args, Subcommand, ValueEnum};
use tonic::transport::Channel;

use crate::cli::error::CliError;
use crate::cli::watch::WatchArgs;
use crate::proto::flows_client::FlowsClient;
use crate::proto::{ListMetadata, SortBy};

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
    List(crate::cli::list::ListArgs),
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
    /// Show one page of N results (see --page); 0 returns everything in one answer.
    #[arg(long, value_name = "N")]
    pub page_size: Option<u32>,
    /// Which page to show, counting from 1 (needs --page-size).
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "page_size")]
    pub page: u32,
}

impl PageArgs {
    /// (`page`, `page_size`) as the API counts them, from 0.
    pub fn request(&self) -> (i64, i64) {
        (
            i64::from(self.page) - 1,
            i64::from(self.page_size.unwrap_or(0)),
        )
    }
}

/// Runs `eddy flows ...`.
pub async fn run(args: FlowsArgs) -> Result<(), CliError> {
    match args.command {
        FlowsCommand::List(args) => crate::cli::list::run(args).await,
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
    let Some(page_size) = paging.page_size.filter(|&size| size > 0) else {
        return format!("{total} {noun}\n");
    };
    let pages = meta.map_or(0, |m| m.total_pages);
    let first = i64::from(paging.page - 1) * i64::from(page_size);
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
