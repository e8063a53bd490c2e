//! `eddy views read NAME`: one view's rows (`Views.Read`), filtered with `--where COL=VALUE`,
//! sorted with `--sort COL`, cut with `--limit N`, in the output forms of `eddy flows`.
//!
//! A filter's value is typed by the view's column (asked with `Views.ListViews` first): text,
//! an integer, a float, `true`/`false`, or for a timestamp Unix seconds or an RFC 3339 time.
//! A view or column the server does not have is sent as given, and the server's answer
//! (`NOT_FOUND`, `INVALID_ARGUMENT`) is the error.

use clap::Args;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::table::{Align, Cell, Table};
use crate::cli::time::{format_rfc3339, parse_rfc3339, RangeArgs};
use crate::cli::views::{client, views};
use crate::proto::views::value::Kind;
use crate::proto::views::{Column, ColumnType, Filter, ReadRequest, Sort, Value, ViewInfo};

/// `eddy views read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// The view to read (see `eddy views list`).
    pub view: String,
    /// Only rows whose column equals the value, e.g. `source_namespace=shop`; repeat to
    /// require several.
    #[arg(long = "where", value_name = "COLUMN=VALUE", value_parser = parse_where)]
    pub filters: Vec<(String, String)>,
    /// Sort by this column: largest first, or A to Z for text [default: the view's order].
    #[arg(long, value_name = "COLUMN")]
    pub sort: Option<String>,
    /// Reverse the order of --sort.
    #[arg(long, requires = "sort")]
    pub reverse: bool,
    /// At most this many rows.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// One row per bucket instead of one summed over the range.
    #[arg(long)]
    pub per_bucket: bool,
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The time range.
    #[command(flatten)]
    pub range: RangeArgs,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Parses `--where COLUMN=VALUE`.
pub(crate) fn parse_where(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((column, value)) if !column.trim().is_empty() => {
            Ok((column.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("`{text}` is not COLUMN=VALUE")),
    }
}

/// `text` as a value of `column`'s type, or why it is not one.
fn typed(column: &Column, text: &str) -> Result<Kind, String> {
    let wrong = |what: &str| format!("--where {}: `{text}` is not {what}", column.name);
    let kind = match ColumnType::try_from(column.r#type) {
        Ok(ColumnType::Integer) => {
            Kind::IntegerValue(text.parse().map_err(|_| wrong("an integer"))?)
        }
        Ok(ColumnType::Float) => Kind::FloatValue(text.parse().map_err(|_| wrong("a number"))?),
        Ok(ColumnType::Bool) => Kind::BoolValue(text.parse().map_err(|_| wrong("true or false"))?),
        Ok(ColumnType::Timestamp) => Kind::TimestampValue(match text.parse() {
            Ok(seconds) => seconds,
            Err(_) => parse_rfc3339(text)
                .map_err(|_| wrong("Unix seconds or an RFC 3339 time like 2024-05-01T12:00:00Z"))?,
        }),
        Ok(ColumnType::String | ColumnType::Unspecified) | Err(_) => {
            Kind::StringValue(text.to_string())
        }
    };
    Ok(kind)
}

fn column<'a>(view: Option<&'a ViewInfo>, name: &str) -> Option<&'a Column> {
    view.and_then(|view| view.columns.iter().find(|column| column.name == name))
}

/// The filters of `--where`, typed by `view`'s columns when the server has the view.
pub(crate) fn filters(
    wanted: &[(String, String)],
    view: Option<&ViewInfo>,
) -> Result<Vec<Filter>, CliError> {
    wanted
        .iter()
        .map(|(name, text)| {
            let kind = match column(view, name) {
                Some(column) => typed(column, text).map_err(CliError::Usage)?,
                None => Kind::StringValue(text.clone()),
            };
            Ok(Filter {
                column: name.clone(),
                value: Some(Value { kind: Some(kind) }),
            })
        })
        .collect()
}

/// The request `args` describe, typed by `view`'s columns when the server has the view.
fn request(args: &ReadArgs, view: Option<&ViewInfo>) -> Result<ReadRequest, CliError> {
    let filters = filters(&args.filters, view)?;
    let sort = args.sort.as_ref().map(|name| {
        let text =
            column(view, name).is_some_and(|column| column.r#type == ColumnType::String as i32);
        Sort {
            column: name.clone(),
            descending: text == args.reverse,
        }
    });
    Ok(ReadRequest {
        view: args.view.clone(),
        filters,
        start_time_gte: args.range.gte(),
        start_time_lt: args.range.lt(),
        per_bucket: args.per_bucket,
        sort,
        limit: args.limit.unwrap_or(0),
    })
}

/// A value as a table shows it.
pub(crate) fn cell(value: &Value) -> Cell {
    match &value.kind {
        Some(Kind::StringValue(text)) if text.is_empty() => "-".into(),
        Some(Kind::StringValue(text)) => text.clone().into(),
        Some(Kind::IntegerValue(number)) => number.to_string().into(),
        Some(Kind::FloatValue(number)) => number.to_string().into(),
        Some(Kind::BoolValue(flag)) => flag.to_string().into(),
        Some(Kind::TimestampValue(seconds)) => format_rfc3339(*seconds).into(),
        None => "".into(),
    }
}

/// A column's title: its name in capitals.
pub(crate) fn title(column: &Column) -> (String, Align) {
    let align = match ColumnType::try_from(column.r#type) {
        Ok(ColumnType::Integer | ColumnType::Float) => Align::Right,
        _ => Align::Left,
    };
    (column.name.to_uppercase(), align)
}

/// Runs `eddy views read`.
pub async fn run(args: ReadArgs) -> Result<(), CliError> {
    let mut client = client(&args.server).await?;
    let known = views(&mut client, &args.server).await?;
    let view = known.iter().find(|view| view.name == args.view);
    let request = request(&args, view)?;
    let answer = client
        .read(request)
        .await
        .map_err(args.server.refused("Views.Read"))?
        .into_inner();
    let mut out = Output::new(&args.output);
    match out.format {
        Format::Ndjson => {
            for row in &answer.rows {
                out.json_line(row)?;
            }
        }
        Format::Json => out.json_document(&answer)?,
        Format::Table | Format::Wide => {
            let mut table = Table::new(answer.columns.iter().map(title).collect());
            for row in &answer.rows {
                table.push(row.values.iter().map(cell).collect());
            }
            if table.is_empty() {
                out.write(&format!("no rows in {} for this range\n", args.view))?;
            } else {
                let text = table.render(out.color);
                out.write(&text)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
