//! `eddy completions` and `eddy man` through the real binary: each shell's script names real
//! subcommands and flags, and the manual pages exist with the commands' own text.

use assert_cmd::Command;

fn eddy(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .output()
        .expect("eddy runs");
    assert!(
        output.status.success(),
        "eddy {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

#[test]
fn completions_name_real_subcommands_and_flags_for_each_shell() {
    for (shell, first_line, flag) in [
        ("bash", "_eddy() {", "--dest-namespace"),
        ("zsh", "#compdef eddy", "--dest-namespace"),
        (
            "fish",
            "# Print an optspec for argparse",
            "-l dest-namespace",
        ),
    ] {
        let script = eddy(&["completions", shell]);
        assert!(script.starts_with(first_line), "{shell}: {script}");
        for word in [
            "flows",
            "watch",
            "hints",
            "serve",
            flag,
            "aggregation-window",
        ] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
}

#[test]
fn man_writes_a_page_per_command_or_prints_the_top_page() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pages = dir.path().join("man1");
    eddy(&["man", "--dir", pages.to_str().expect("a UTF-8 path")]);
    let page = |name: &str| {
        std::fs::read_to_string(pages.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let top = page("eddy.1");
    assert!(top.contains(".TH eddy 1"), "{top}");
    assert!(top.contains("eddy\\-serve(1)"), "{top}");
    let serve = page("eddy-serve.1");
    assert!(serve.contains("eddy\\-serve \\- Run the server"), "{serve}");
    assert!(
        serve.contains("\\fB\\-\\-aggregation\\-window\\fR"),
        "{serve}"
    );
    assert!(serve.contains("[default: 15s]"), "{serve}");
    let list = page("eddy-flows-list.1");
    assert!(list.contains(".TH eddy-flows-list 1"), "{list}");
    assert!(list.contains("List aggregated flows"), "{list}");
    assert!(list.contains("\\fB\\-\\-dest\\-namespace\\fR"), "{list}");
    assert!(
        list.contains("Destination namespace is exactly NS"),
        "{list}"
    );
    for name in [
        "eddy-flows.1",
        "eddy-flows-watch.1",
        "eddy-stats.1",
        "eddy-man.1",
    ] {
        assert!(pages.join(name).is_file(), "{name}");
    }
    assert_eq!(
        eddy(&["man"]),
        top,
        "without --dir, eddy.1 on standard output"
    );
}
