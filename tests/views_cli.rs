//! `eddy views list|read` end to end: the real binary (assert_cmd) against an in-process
//! server on `127.0.0.1:0` with a manual clock and known traffic; every flag checked by the
//! rows it prints, in table and JSON forms, and a bad request by its one-line error and exit
//! code.

mod common;

use std::process::Output;

use common::*;
use serde_json::Value;

/// `eddy views <command...> --server <address> <flags...>`.
async fn views(server: &TestServer, command: &[&str], flags: &[&str]) -> Output {
    let mut args: Vec<String> = ["views"]
        .iter()
        .chain(command)
        .map(|s| s.to_string())
        .collect();
    args.extend(["--server".to_string(), server.address.to_string()]);
    args.extend(flags.iter().map(|s| s.to_string()));
    run_eddy(args).await
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "eddy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The cells of a table line: columns are separated by at least two spaces.
fn cells(line: &str) -> Vec<String> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .map(String::from)
        .collect()
}

/// shop → shop (3 and 4 packets each way), shop → payments (10), web → shop (1); 100 bytes
/// a packet.
async fn known_traffic(server: &TestServer) {
    let recent = bucket(NOW) - WINDOW + 1;
    server
        .ingest(vec![
            flow(key(("shop", "frontend"), ("shop", "cart")), recent, 3),
            flow(key(("shop", "frontend"), ("shop", "checkout")), recent, 4),
            flow(key(("shop", "checkout"), ("payments", "api")), recent, 10),
            flow(
                key(("web", "proxy"), ("shop", "frontend")),
                recent - WINDOW,
                1,
            ),
        ])
        .await;
}

#[tokio::test]
async fn views_list_prints_top_talkers_and_its_columns() {
    let server = TestServer::start(1).await;
    let table = stdout(&views(&server, &["list"], &["-o", "table", "--color", "never"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0]),
        vec!["VIEW", "SORTED BY", "COLUMNS", "DESCRIPTION"]
    );
    let top = cells(lines[1]);
    assert_eq!(top[0], "top_talkers");
    assert_eq!(top[1], "bytes desc");
    assert!(top[2].starts_with("source_namespace, dest_namespace, start_time"));

    let json = stdout(&views(&server, &["list"], &["-o", "json"]).await);
    let parsed: Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(parsed[0]["name"], "top_talkers");
    assert_eq!(parsed[0]["columns"][4]["name"], "bytes");
    assert_eq!(parsed[0]["columns"][4]["type"], "COLUMN_TYPE_INTEGER");
}

#[tokio::test]
async fn views_read_filters_sorts_and_limits_top_talkers() {
    let server = TestServer::start(2).await;
    known_traffic(&server).await;
    let table = stdout(
        &views(
            &server,
            &["read", "top_talkers"],
            &["-o", "table", "--color", "never"],
        )
        .await,
    );
    let lines: Vec<Vec<String>> = table.lines().map(cells).collect();
    assert_eq!(lines[0][0], "SOURCE_NAMESPACE");
    assert_eq!(lines[0][4], "BYTES");
    let summary: Vec<(String, String, String)> = lines[1..]
        .iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[4].clone()))
        .collect();
    let triple = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        summary,
        vec![
            triple("shop", "payments", "2000"),
            triple("shop", "shop", "1400"),
            triple("web", "shop", "200"),
        ]
    );

    let ndjson = stdout(
        &views(
            &server,
            &["read", "top_talkers"],
            &[
                "--where",
                "dest_namespace=shop",
                "--sort",
                "packets",
                "--reverse",
                "--limit",
                "1",
                "-o",
                "ndjson",
            ],
        )
        .await,
    );
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(rows.len(), 1, "{ndjson}");
    let values = &rows[0]["values"];
    assert_eq!(values[0]["stringValue"], "web");
    assert_eq!(values[7]["integerValue"], "2");

    let typed = stdout(
        &views(
            &server,
            &["read", "top_talkers"],
            &["--where", "bytes=1400", "-o", "json"],
        )
        .await,
    );
    let parsed: Value = serde_json::from_str(&typed).expect("one JSON document");
    let only = parsed["rows"].as_array().expect("rows");
    assert_eq!(only.len(), 1, "{typed}");
    assert_eq!(only[0]["values"][1]["stringValue"], "shop");
}

#[tokio::test]
async fn views_read_reports_bad_requests_in_one_line() {
    let server = TestServer::start(1).await;
    let unknown = views(&server, &["read", "no_such_view"], &["-o", "json"]).await;
    assert_eq!(unknown.status.code(), Some(1));
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        message.contains("Views.Read failed with NOT_FOUND"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    let not_a_number = views(
        &server,
        &["read", "top_talkers"],
        &["--where", "bytes=lots", "-o", "json"],
    )
    .await;
    assert_eq!(not_a_number.status.code(), Some(2));
    let message = String::from_utf8_lossy(&not_a_number.stderr);
    assert!(message.contains("`lots` is not an integer"), "{message}");
}

#[tokio::test]
async fn views_watch_prints_the_snapshot_as_a_table() {
    let server = TestServer::start(1).await;
    known_traffic(&server).await;
    let table = stdout(
        &views(
            &server,
            &["watch", "top_talkers"],
            &[
                "--where",
                "dest_namespace=shop",
                "--epochs",
                "0",
                "-o",
                "table",
                "--color",
                "never",
            ],
        )
        .await,
    );
    let lines: Vec<Vec<String>> = table.lines().map(cells).collect();
    assert_eq!(lines[0][0], "snapshot at 2023-11-14T22:15:00Z (2 rows)");
    assert_eq!(lines[1][..3], ["+/-", "SOURCE_NAMESPACE", "DEST_NAMESPACE"]);
    let rows: Vec<(String, String, String, String)> = lines[2..]
        .iter()
        .map(|row| {
            (
                row[0].clone(),
                row[1].clone(),
                row[2].clone(),
                row[5].clone(),
            )
        })
        .collect();
    let row = |sign: &str, source: &str, bytes: &str| {
        (
            sign.to_string(),
            source.to_string(),
            "shop".to_string(),
            bytes.to_string(),
        )
    };
    assert_eq!(
        rows,
        vec![row("+1", "shop", "1400"), row("+1", "web", "200")]
    );
}

/// Each ndjson line `eddy views watch` prints, as it prints it.
fn watch_lines(args: Vec<String>) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (lines, received) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
            .args(&args)
            .env_remove("EDDY_SERVER")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("eddy runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = lines.send(line.expect("eddy writes text"));
        }
        let status = child.wait().expect("eddy exits");
        let _ = lines.send(format!("exit {}", status.success()));
    });
    received
}

/// A change line as (multiplicity, source, destination, bytes).
fn change_of(line: &str) -> (String, String, String, String) {
    let message: Value = serde_json::from_str(line).expect("one JSON message a line");
    let change = &message["change"];
    let values = &change["row"]["values"];
    (
        change["multiplicity"].as_str().unwrap_or("1").to_string(),
        values[0]["stringValue"].as_str().unwrap_or("").to_string(),
        values[1]["stringValue"].as_str().unwrap_or("").to_string(),
        values[4]["integerValue"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn views_watch_prints_the_snapshot_then_an_epochs_changes_as_ndjson() {
    let server = TestServer::start(2).await;
    known_traffic(&server).await;
    let mut lines = watch_lines(
        [
            "views",
            "watch",
            "top_talkers",
            "--where",
            "source_namespace=shop",
            "--epochs",
            "1",
            "-o",
            "ndjson",
            "--server",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([server.address.to_string()])
        .collect(),
    );
    let mut snapshot = Vec::new();
    loop {
        let line = lines.recv().await.expect("eddy prints the snapshot");
        if line.contains("\"mark\"") {
            assert!(line.contains("\"snapshot\":true"), "{line}");
            break;
        }
        snapshot.push(change_of(&line));
    }
    snapshot.sort();
    let change = |sign: &str, dest: &str, bytes: &str| {
        (
            sign.to_string(),
            "shop".to_string(),
            dest.to_string(),
            bytes.to_string(),
        )
    };
    assert_eq!(
        snapshot,
        vec![change("1", "payments", "2000"), change("1", "shop", "1400")]
    );
    // One more update of shop → payments in the same bucket, then the epoch ends.
    let recent = bucket(NOW) - WINDOW + 1;
    server
        .ingest(vec![flow(
            key(("shop", "checkout"), ("payments", "api")),
            recent,
            1,
        )])
        .await;
    server.advance_clock(WINDOW).await;
    let mut changes = Vec::new();
    loop {
        let line = lines.recv().await.expect("eddy prints the epoch");
        if line.contains("\"mark\"") {
            assert!(!line.contains("\"snapshot\":true"), "{line}");
            break;
        }
        changes.push(change_of(&line));
    }
    changes.sort();
    assert_eq!(
        changes,
        vec![
            change("-1", "payments", "2000"),
            change("1", "payments", "2200")
        ]
    );
    assert_eq!(
        lines.recv().await.as_deref(),
        Some("exit true"),
        "--epochs 1 ends it"
    );
}
