//! The `eddy` binary: parses the command line and runs the chosen subcommand.

use std::io::Write;

use clap::Parser;
use eddy::config::{Cli, Command, ServeArgs};

/// mimalloc: the server allocates and frees many small strings per update (protobuf decode),
/// where it measured faster than the system allocator (BENCHMARKS.md).
#[cfg(not(feature = "count-allocations"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The same allocator with a count of allocations on `/metrics`, for the benches.
#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: eddy::alloc_count::CountingMiMalloc = eddy::alloc_count::CountingMiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Flows(args) => eddy::cli::main(eddy::cli::flows::run(*args)),
        Command::Stats(args) => eddy::cli::main(eddy::cli::stats::run(*args)),
        Command::Views(args) => eddy::cli::main(eddy::cli::views::run(*args)),
        Command::Flowgen(args) => eddy::cli::main(eddy::cli::flowgen::run(*args)),
        Command::Health(args) => eddy::cli::main(eddy::cli::health::run(*args)),
        Command::Completions(args) => {
            eddy::cli::main(async move { eddy::cli::completions::run(&args) })
        }
        Command::Man(args) => eddy::cli::main(async move { eddy::cli::man::run(&args) }),
    }
}

/// Runs the server. A failure (a setting, a file, a port) is logged, then printed as one
/// line on standard error, and the process exits 1.
fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Err(error) = eddy::logging::init(&args.log_level, args.operations.log_format) {
        fail(&error);
    }
    if let Err(error) = eddy::daemon::run(args) {
        tracing::error!(%error, "eddy serve failed");
        fail(&error.to_string());
    }
    Ok(())
}

fn fail(message: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "eddy: {message}");
    std::process::exit(1)
}
