//! `eddy completions SHELL`: the shell completion script for the whole command line, written
//! to standard output (e.g. `eddy completions bash > /etc/bash_completion.d/eddy`).

use std::io::Write;

use clap::{Args, CommandFactory};
use clap_complete::{Generator, Shell};

use crate::cli::error::CliError;
use crate::config::Cli;

/// `eddy completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Writes the completion script for `args.shell` to standard output.
pub fn run(args: &CompletionsArgs) -> Result<(), CliError> {
    let mut command = Cli::command().bin_name("eddy");
    command.build();
    let mut out = std::io::stdout().lock();
    args.shell
        .try_generate(&command, &mut out)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}
