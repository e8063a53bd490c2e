//! The `eddy` binary: parses the command line and runs the chosen subcommand.

use clap::Parser;
use eddy::config::{Cli, Command, ServeArgs};

/// mimalloc: the server allocates and frees many small strings per update (protobuf decode),
/// where it measured faster than the system allocator (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Flows(args) => eddy::cli::main(eddy::cli::flows::run(*args)),
        Command::Stats(args) => eddy::cli::main(eddy::cli::stats::run(*args)),
        Command::Flowgen(args) => eddy::cli::main(eddy::cli::flowgen::run(*args)),
        Command::Completions(args) => {
            eddy::cli::main(async move { eddy::cli::completions::run(&args) })
        }
        Command::Man(args) => eddy::cli::main(async move { eddy::cli::man::run(&args) }),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    eddy::logging::init(&args.log_level, args.operations.log_format).map_err(anyhow::Error::msg)?;
    eddy::daemon::run(args).map_err(|error| {
        tracing::error!(%error, "eddy serve failed");
        anyhow::Error::new(error)
    })
}
