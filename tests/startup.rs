//! Start-up of the real `eddy serve` binary (SPEC §12.7): Go's duration forms configure the
//! windows from flags and from Goldmane's variables, and every refused setting or taken port
//! stops the process with exit code 1 and one line on standard error naming the setting.

mod process;

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use process::{EddyProcess, SERVING, STOPPED};

/// Command-line arguments of one case.
type Args<'a> = &'a [&'a str];
/// Environment variables of one case.
type Env<'a> = &'a [(&'a str, &'a str)];

/// `eddy serve` with JSON logs, `args`, an empty environment plus `env`, and (unless `args`
/// set them) free loopback ports and one worker.
fn serve(args: &[&str], env: &[(&str, &str)], directory: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command.args(["serve", "--log-format", "json"]);
    let defaults = [
        ("--listen", "127.0.0.1:0"),
        ("--health-port", "0"),
        ("--workers", "1"),
    ];
    for (flag, value) in defaults {
        if !args.contains(&flag) {
            command.args([flag, value]);
        }
    }
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(directory);
    command
}

#[test]
fn go_durations_set_the_window_from_the_variable_and_the_flag() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let cases: [(Args, Env, i64); 3] = [
        (&[], &[("AGGREGATION_WINDOW", "1m30s")], 90),
        (&["--aggregation-window", "1m30s"], &[], 90),
        (&["--aggregation-window", "1m0s"], &[], 60),
    ];
    for (args, env, window) in cases {
        let server = EddyProcess::start(serve(args, env, directory.path()));
        let serving = server.line(SERVING);
        assert_eq!(serving["window_seconds"], window, "{args:?} {env:?}");
        assert_eq!(
            serving["retained_buckets"],
            3600 / window,
            "the default retention of 1h"
        );
    }
}

#[test]
fn sigterm_right_after_the_serving_line_still_stops_the_server_cleanly() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let mut server = EddyProcess::start(serve(&[], &[], directory.path()));
    server.line(SERVING);
    server.terminate();
    server.line(STOPPED);
    let status = server.child.wait().expect("the server exits");
    assert_eq!(
        status.code(),
        Some(0),
        "handlers are registered before the server says it is serving (SPEC §11.6)"
    );
}

/// Runs `eddy serve` expecting it to refuse to start; returns its standard error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let output = assert_cmd::Command::from_std(serve(args, env, directory.path()))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("the eddy binary runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{args:?} {env:?} must fail: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stderr).expect("UTF-8")
}

#[test]
fn refused_settings_fail_with_one_line_naming_the_setting() {
    let cases: [(Args, Env, &str); 8] = [
        (
            &[],
            &[("AGGREGATION_WINDOW", "2h")],
            "--aggregation-window (AGGREGATION_WINDOW) must be from 1s to 1h, not 7200s",
        ),
        (
            &["--aggregation-window", "1500ms"],
            &[],
            "--aggregation-window (AGGREGATION_WINDOW) must be whole seconds, not 1.5s",
        ),
        (
            &["--aggregation-window", "1s", "--retention", "2d"],
            &[],
            "--retention (EDDY_RETENTION) (172800s) keeps 172800 buckets of 1s; at most 100000 \
             are allowed: shorten it or widen --aggregation-window (AGGREGATION_WINDOW)",
        ),
        (
            &[],
            &[("EDDY_RETENTION", "9223372036854775807s")],
            "--retention (EDDY_RETENTION) (9223372036854775807s) keeps \
             614891469123651720 buckets of 15s; at most 100000 are allowed: shorten it or \
             widen --aggregation-window (AGGREGATION_WINDOW)",
        ),
        (
            &[],
            &[
                ("PUSH_URL", "http://127.0.0.1:9/flows"),
                ("EMITTER_AGGREGATION_WINDOW", "1h0m0s"),
            ],
            "--emit-after-seconds (EMIT_AFTER_SECONDS) (30s) plus \
             --emitter-aggregation-window (EMITTER_AGGREGATION_WINDOW) (3600s) must be shorter \
             than --retention (EDDY_RETENTION) (3600s), or windows leave retention before they \
             are sent",
        ),
        (
            &["--emit-after-seconds", "4294967295"],
            &[
                ("PUSH_URL", "http://127.0.0.1:9/flows"),
                ("EMITTER_AGGREGATION_WINDOW", "9223372036854775800s"),
            ],
            "--emit-after-seconds (EMIT_AFTER_SECONDS) (4294967295s) plus \
             --emitter-aggregation-window (EMITTER_AGGREGATION_WINDOW) \
             (9223372036854775800s) must be shorter than \
             --retention (EDDY_RETENTION) (3600s), or windows leave retention before they are sent",
        ),
        (
            &[],
            &[("CA_CERT_PATH", "/nonexistent/ca.pem")],
            "CA_CERT_PATH (--ca-cert-path) is set without SERVER_CERT_PATH and \
             SERVER_KEY_PATH: the gRPC port would be plaintext and accept any client; set the \
             server certificate and key too, or unset CA_CERT_PATH",
        ),
        (
            &["--workers", "0"],
            &[],
            "--workers (EDDY_WORKERS) must be between 1 and 256",
        ),
    ];
    for (args, env, message) in cases {
        assert_eq!(
            refused(args, env),
            format!("eddy: {message}\n"),
            "{args:?} {env:?}"
        );
    }
}

#[test]
fn unparseable_durations_are_refused_naming_the_flag() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let output = serve(&[], &[("AGGREGATION_WINDOW", "fifteen")], directory.path())
        .output()
        .expect("the eddy binary runs");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.lines().next().is_some_and(|line| line
            .contains("invalid value 'fifteen' for '--aggregation-window <AGGREGATION_WINDOW>'")),
        "{stderr}"
    );
}

/// A port held by the test for as long as the value lives.
fn taken_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("a bound address").port();
    (listener, port)
}

#[test]
fn a_taken_port_fails_with_one_line_naming_its_setting() {
    let (_held, port) = taken_port();
    let port_text = port.to_string();
    let listen = format!("127.0.0.1:{port}");
    assert_eq!(
        refused(&["--health-port", &port_text], &[]),
        format!(
            "eddy: health port 127.0.0.1:{port} is in use: set --health-port/HEALTH_PORT \
             (0 picks a free port)\n"
        ),
        "the health probes listen on 127.0.0.1 by default"
    );
    assert_eq!(
        refused(&["--listen", &listen], &[]),
        format!(
            "eddy: gRPC port {listen} is in use: set --listen/EDDY_LISTEN or PORT \
             (port 0 picks a free port)\n"
        )
    );
    assert_eq!(
        refused(
            &[],
            &[
                ("PROMETHEUS_PORT", &port_text),
                ("EDDY_PROMETHEUS_ADDRESS", "127.0.0.1")
            ]
        ),
        format!(
            "eddy: metrics port {listen} is in use: set --prometheus-port/PROMETHEUS_PORT \
             (0 turns metrics off)\n"
        )
    );
}
