//! The live stream bounds (SPEC §7.5, §12.5) reach the real `eddy serve` binary from their
//! environment variables: a stream limit set by `EDDY_MAX_STREAMS` refuses the stream beyond it,
//! and a bound out of range stops the process with a usage error naming the flag.

mod process;

use std::process::Command;

use eddy::proto::flows_client::FlowsClient;
use eddy::proto::FlowStreamRequest;
use process::EddyProcess;
use tonic::Code;

/// `eddy serve` with JSON logs on free loopback ports, one worker, and only `env`.
fn serve(env: &[(&str, &str)], directory: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eddy"));
    command
        .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
        .args(["--health-port", "0", "--workers", "1"])
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(directory);
    command
}

#[tokio::test]
async fn the_stream_limit_comes_from_its_variable() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let server = EddyProcess::start(serve(&[("EDDY_MAX_STREAMS", "1")], directory.path()));
    let address = server.serving_address().to_string();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid URI")
        .connect()
        .await
        .expect("the server accepts connections");
    let mut client = FlowsClient::new(channel);
    let _first = client
        .stream(FlowStreamRequest::default())
        .await
        .expect("the first stream opens");
    let refused = client
        .stream(FlowStreamRequest::default())
        .await
        .expect_err("a second stream is beyond the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), "too many live streams (limit 1)");
}

#[test]
fn a_bound_out_of_range_is_a_usage_error_naming_the_flag() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    for (variable, flag) in [
        ("EDDY_STREAM_BUFFER", "--stream-buffer"),
        ("EDDY_MAX_STREAMS", "--max-streams"),
        ("EDDY_STREAM_BACKFILLS", "--stream-backfills"),
        ("EDDY_STREAM_QUEUE", "--stream-queue"),
    ] {
        let output = serve(&[(variable, "0")], directory.path())
            .output()
            .expect("the eddy binary runs");
        assert_eq!(output.status.code(), Some(2), "{variable}: a usage error");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr
                .lines()
                .next()
                .is_some_and(|line| line.contains(&format!("invalid value '0' for '{flag} "))),
            "{variable}: {stderr}"
        );
    }
}
