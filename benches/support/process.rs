//! The bench's own command line, and child processes that run one configuration each so
//! resident memory is measured per configuration.

use std::process::Command;

/// The arguments after the bench's name, without the `--bench` flag cargo passes.
pub fn arguments() -> Vec<String> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect()
}

/// The arguments as numbers; `usage` names them in the panic when one is not a number.
pub fn numeric_arguments(usage: &str) -> Vec<u64> {
    arguments()
        .iter()
        .map(|a| {
            a.parse()
                .unwrap_or_else(|_| panic!("arguments are numbers: {usage}"))
        })
        .collect()
}

/// Runs this bench again with `args` in a child process and waits for it; `configuration`
/// names the run in the panic when it fails.
pub fn run_in_child(args: &[String], configuration: &str) {
    let me = std::env::current_exe().expect("the bench knows its own path");
    let status = Command::new(&me)
        .args(args)
        .status()
        .expect("the bench can run itself");
    assert!(status.success(), "{configuration} failed");
}
