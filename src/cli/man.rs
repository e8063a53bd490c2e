//! `eddy man`: manual pages in roff, generated from the same definitions as `--help`: one
//! page per command and subcommand (`eddy.1`, `eddy-serve.1`, `eddy-flows-list.1`, ...) into
//! a directory, or the top page `eddy.1` on standard output.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Command, CommandFactory};
use clap_mangen::Man;

use crate::cli::error::CliError;
use crate::config::Cli;

/// `eddy man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing) instead of printing `eddy.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Writes the pages `args` asks for.
pub fn run(args: &ManArgs) -> Result<(), CliError> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let Some(dir) = &args.dir else {
        let mut out = std::io::stdout().lock();
        page(command)
            .render(&mut out)
            .and_then(|()| out.flush())
            .map_err(CliError::Output)?;
        return Ok(());
    };
    let in_dir = |error: std::io::Error| {
        CliError::Output(std::io::Error::new(
            error.kind(),
            format!("{}: {error}", dir.display()),
        ))
    };
    std::fs::create_dir_all(dir).map_err(in_dir)?;
    write_pages(&command, dir).map_err(in_dir)
}

/// The page of one (built) command, its source naming the program and version on every page.
fn page(command: Command) -> Man {
    Man::new(command).source(concat!("eddy ", env!("CARGO_PKG_VERSION")))
}

/// Writes the page of `command` and of each visible subcommand, depth first, into `dir`.
fn write_pages(command: &Command, dir: &Path) -> std::io::Result<()> {
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(subcommand, dir)?;
    }
    page(command.clone()).generate_to(dir).map(drop)
}
