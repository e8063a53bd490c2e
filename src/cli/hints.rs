//! `eddy flows hints FIELD`: the distinct values of one field over the selected flows
//! (Flows.FilterHints, SPEC §6), to build filters with.

use clap::{Args, ValueEnum};

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::filter::FilterArgs;
use crate::cli::flows::{client, footer, PageArgs};
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::table::{Align, Table};
use crate::cli::time::RangeArgs;
use crate::proto::{FilterHintsRequest, FilterType};

/// Which field `eddy flows hints` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HintType {
    /// Destination names.
    DestName,
    /// Source names.
    SourceName,
    /// Destination namespaces.
    DestNamespace,
    /// Source namespaces.
    SourceNamespace,
    /// Policy tiers.
    PolicyTier,
    /// Policy names.
    PolicyName,
    /// Policy kinds.
    PolicyKind,
    /// Policy namespaces.
    PolicyNamespace,
}

impl HintType {
    fn proto(self) -> FilterType {
        match self {
            HintType::DestName => FilterType::DestName,
            HintType::SourceName => FilterType::SourceName,
            HintType::DestNamespace => FilterType::DestNamespace,
            HintType::SourceNamespace => FilterType::SourceNamespace,
            HintType::PolicyTier => FilterType::PolicyTier,
            HintType::PolicyName => FilterType::PolicyName,
            HintType::PolicyKind => FilterType::PolicyKind,
            HintType::PolicyNamespace => FilterType::PolicyNamespace,
        }
    }

    fn title(self) -> &'static str {
        match self {
            HintType::DestName => "DEST NAME",
            HintType::SourceName => "SOURCE NAME",
            HintType::DestNamespace => "DEST NAMESPACE",
            HintType::SourceNamespace => "SOURCE NAMESPACE",
            HintType::PolicyTier => "POLICY TIER",
            HintType::PolicyName => "POLICY NAME",
            HintType::PolicyKind => "POLICY KIND",
            HintType::PolicyNamespace => "POLICY NAMESPACE",
        }
    }
}

/// `eddy flows hints`.
#[derive(Debug, Args)]
pub struct HintsArgs {
    /// The field whose values to list.
    #[arg(value_enum)]
    pub field: HintType,
    #[command(flatten)]
    /// Where the server is.
    pub server: ServerArgs,
    #[command(flatten)]
    /// The time range.
    pub range: RangeArgs,
    #[command(flatten)]
    /// Which flows.
    pub filter: FilterArgs,
    #[command(flatten)]
    /// Which page.
    pub paging: PageArgs,
    #[command(flatten)]
    /// How to print.
    pub output: OutputArgs,
}

/// Runs `eddy flows hints`.
pub async fn run(args: HintsArgs) -> Result<(), CliError> {
    let channel = args.server.connect().await?;
    let (page, page_size) = args.paging.request();
    let request = FilterHintsRequest {
        r#type: args.field.proto() as i32,
        filter: args.filter.to_proto(),
        start_time_gte: args.range.gte(),
        start_time_lt: args.range.lt(),
        page,
        page_size,
    };
    let result = client(channel)
        .filter_hints(request)
        .await
        .map_err(args.server.refused("Flows.FilterHints"))?
        .into_inner();
    let mut out = Output::new(&args.output);
    match out.format {
        Format::Table | Format::Wide => {
            let mut table = Table::new(vec![(args.field.title(), Align::Left)]);
            for hint in &result.hints {
                table.push(vec![hint.value.clone().into()]);
            }
            if !table.is_empty() {
                let text = table.render(out.color);
                out.write(&text)?;
            }
            out.write(&footer(
                result.meta.as_ref(),
                table.len(),
                &args.paging,
                ("value", "values"),
            ))?;
        }
        Format::Json => out.json_document(&result)?,
        Format::Ndjson => {
            for hint in &result.hints {
                out.json_line(hint)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
