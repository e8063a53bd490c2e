//! `eddy views list|read|watch`: Eddy's own views API (`eddy.views.v1.Views`) from the
//! command line: the subcommands, the client they share, and `list`. `read` is in
//! `views_read`, `watch` in `views_watch`.

use clap::{Args, Subcommand};
use tonic::transport::Channel;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::flows::MAX_RESPONSE;
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::table::{Align, Table};
use crate::cli::views_read::ReadArgs;
use crate::cli::views_watch::WatchViewArgs;
use crate::proto::views::views_client::ViewsClient;
use crate::proto::views::{ColumnType, ListViewsRequest, ViewInfo};

/// `eddy views`.
#[derive(Debug, Args)]
pub struct ViewsArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ViewsCommand,
}

/// The `views` subcommands.
#[derive(Debug, Subcommand)]
pub enum ViewsCommand {
    /// List the server's views with their columns (Views.ListViews).
    List(ListViewsArgs),
    /// Read one view's rows: filtered, sorted, limited (Views.Read).
    Read(ReadArgs),
    /// Print one view's rows, then the rows that change at every epoch, until Ctrl-C
    /// (Views.Subscribe).
    Watch(WatchViewArgs),
}

/// `eddy views list`.
#[derive(Debug, Args)]
pub struct ListViewsArgs {
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs `eddy views`.
pub async fn run(args: ViewsArgs) -> Result<(), CliError> {
    match args.command {
        ViewsCommand::List(args) => list(args).await,
        ViewsCommand::Read(args) => crate::cli::views_read::run(args).await,
        ViewsCommand::Watch(args) => crate::cli::views_watch::run(args).await,
    }
}

/// A client of the views service on `server`.
pub async fn client(server: &ServerArgs) -> Result<ViewsClient<Channel>, CliError> {
    let channel = server.connect().await?;
    Ok(ViewsClient::new(channel).max_decoding_message_size(MAX_RESPONSE))
}

/// Every view the server has, or the error of `Views.ListViews`.
pub async fn views(
    client: &mut ViewsClient<Channel>,
    server: &ServerArgs,
) -> Result<Vec<ViewInfo>, CliError> {
    let answer = client
        .list_views(ListViewsRequest {})
        .await
        .map_err(server.refused("Views.ListViews"))?;
    Ok(answer.into_inner().views)
}

/// The word for a column type in tables.
pub fn type_word(kind: i32) -> &'static str {
    match ColumnType::try_from(kind) {
        Ok(ColumnType::String) => "string",
        Ok(ColumnType::Integer) => "integer",
        Ok(ColumnType::Float) => "float",
        Ok(ColumnType::Bool) => "bool",
        Ok(ColumnType::Timestamp) => "timestamp",
        Ok(ColumnType::Unspecified) | Err(_) => "unknown",
    }
}

async fn list(args: ListViewsArgs) -> Result<(), CliError> {
    let mut client = client(&args.server).await?;
    let views = views(&mut client, &args.server).await?;
    let mut out = Output::new(&args.output);
    match out.format {
        Format::Ndjson => {
            for view in &views {
                out.json_line(view)?;
            }
        }
        Format::Json => out.json_array(&views)?,
        Format::Table | Format::Wide => {
            let wide = out.format == Format::Wide;
            let mut table = Table::new(vec![
                ("VIEW", Align::Left),
                ("SORTED BY", Align::Left),
                ("COLUMNS", Align::Left),
                ("DESCRIPTION", Align::Left),
            ]);
            for view in &views {
                let columns: Vec<String> = view
                    .columns
                    .iter()
                    .map(|column| {
                        if wide {
                            format!("{} ({})", column.name, type_word(column.r#type))
                        } else {
                            column.name.clone()
                        }
                    })
                    .collect();
                let direction = if view.default_descending {
                    "desc"
                } else {
                    "asc"
                };
                table.push(vec![
                    view.name.clone().into(),
                    format!("{} {direction}", view.default_sort).into(),
                    columns.join(", ").into(),
                    view.description.clone().into(),
                ]);
            }
            if table.is_empty() {
                out.write("the server has no views\n")?;
            } else {
                let text = table.render(out.color);
                out.write(&text)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
