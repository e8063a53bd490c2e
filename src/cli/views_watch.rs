//! `eddy views watch NAME`: one view's rows, then the rows that change at every epoch
//! (`Views.Subscribe`), until Ctrl-C, `--epochs`, or the server ends the subscription.
//! Filtered with `--where COL=VALUE` as `eddy views read`.
//!
//! Tables: the snapshot, then each epoch's changes, as a table under a line naming what it is
//! and its time, with a first column `+/-` giving each row's multiplicity (`+1` a row now in
//! the view, `-1` a row that left it: a changed row is its old values `-1`, its new values
//! `+1`). JSON forms: each message of the subscription as one line.

use clap::Args;

use crate::cli::connect::ServerArgs;
use crate::cli::error::CliError;
use crate::cli::output::{Format, Output, OutputArgs};
use crate::cli::table::{Align, Cell, Table};
use crate::cli::time::format_rfc3339;
use crate::cli::views::{client, views};
use crate::cli::views_read::{cell, filters, parse_where, title};
use crate::cli::watch::Interrupt;
use crate::proto::views::subscribe_response::Event;
use crate::proto::views::{Column, Mark, SubscribeRequest, SubscribeResponse};

/// `eddy views watch`.
#[derive(Debug, Args)]
pub struct WatchViewArgs {
    /// The view to watch (see `eddy views list`).
    pub view: String,
    /// Only rows whose column equals the value, e.g. `source_namespace=shop`; repeat to
    /// require several.
    #[arg(long = "where", value_name = "COLUMN=VALUE", value_parser = parse_where)]
    pub filters: Vec<(String, String)>,
    /// Stop after the snapshot and this many epochs.
    #[arg(long, value_name = "N")]
    pub epochs: Option<u64>,
    /// Where the server is.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How to print.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The rows received since the last mark, printed as one table at the next mark.
struct Pending {
    columns: Vec<Column>,
    rows: Vec<Vec<Cell>>,
}

impl Pending {
    fn print(&mut self, out: &mut Output, mark: &Mark) -> std::io::Result<()> {
        if mark.snapshot {
            self.columns = mark.columns.clone();
        }
        let what = if mark.snapshot { "snapshot" } else { "changes" };
        out.write(&format!(
            "{what} at {} ({} rows)\n",
            format_rfc3339(mark.time),
            self.rows.len()
        ))?;
        if !self.rows.is_empty() {
            let mut titles = vec![("+/-".to_string(), Align::Right)];
            titles.extend(self.columns.iter().map(title));
            let mut table = Table::new(titles);
            for row in self.rows.drain(..) {
                table.push(row);
            }
            let text = table.render(out.color);
            out.write(&text)?;
        }
        out.flush()
    }
}

/// Runs `eddy views watch`.
pub async fn run(args: WatchViewArgs) -> Result<(), CliError> {
    let mut interrupt = Interrupt::catch();
    if interrupt.fired() {
        return Ok(());
    }
    let (address, tls) = (args.server.server.clone(), args.server.uses_tls());
    let failed = |status| CliError::status("Views.Subscribe", status, &address, tls);
    let mut client = client(&args.server).await?;
    let known = views(&mut client, &args.server).await?;
    let view = known.iter().find(|view| view.name == args.view);
    let request = SubscribeRequest {
        view: args.view.clone(),
        filters: filters(&args.filters, view)?,
    };
    let mut stream = tokio::select! {
        _ = interrupt.wait() => return Ok(()),
        opened = client.subscribe(request) => opened.map_err(failed)?.into_inner(),
    };
    let mut out = Output::new(&args.output);
    let mut pending = Pending {
        columns: view.map(|view| view.columns.clone()).unwrap_or_default(),
        rows: Vec::new(),
    };
    let mut epochs = 0u64;
    loop {
        let message: SubscribeResponse = tokio::select! {
            _ = interrupt.wait() => return Ok(()),
            message = stream.message() => match message.map_err(failed)? {
                Some(message) => message,
                None => return Ok(()),
            },
        };
        let mark = match &message.event {
            Some(Event::Mark(mark)) => Some(mark.clone()),
            _ => None,
        };
        match out.format {
            Format::Json | Format::Ndjson => {
                out.json_line(&message)?;
                out.flush()?;
            }
            Format::Table | Format::Wide => match &message.event {
                Some(Event::Change(change)) => {
                    let mut row = vec![Cell::from(format!("{:+}", change.multiplicity))];
                    let values = change.row.as_ref().map(|row| row.values.as_slice());
                    row.extend(values.unwrap_or_default().iter().map(cell));
                    pending.rows.push(row);
                }
                Some(Event::Mark(mark)) => pending.print(&mut out, mark)?,
                None => {}
            },
        }
        if let Some(mark) = mark {
            if !mark.snapshot {
                epochs += 1;
            }
            if args.epochs.is_some_and(|most| epochs >= most) {
                return Ok(());
            }
        }
    }
}
