//! The query commands end to end: the real `eddy` binary (run with assert_cmd) against an
//! in-process server on `127.0.0.1:0` with a manual clock and known flows. Every filter flag
//! is checked by the flows it returns, not just by the exit code.

mod common;

use std::collections::BTreeSet;
use std::process::Output;

use common::*;
use eddy::proto::{Action, EndpointType, PolicyKind, PolicyTrace, Reporter};
use serde_json::Value;

/// `eddy <command...> --server <address> <flags...>`.
async fn against(server: &TestServer, command: &[&str], flags: &[&str]) -> Output {
    let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
    args.extend(["--server".to_string(), server.address.to_string()]);
    args.extend(flags.iter().map(|s| s.to_string()));
    run_eddy(args).await
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The flows of the known data set, named by letter (the source name's first word).
fn letters(output: &Output) -> BTreeSet<String> {
    assert!(output.status.success(), "eddy failed: {}", stderr(output));
    stdout(output)
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("each line is JSON");
            let labels = value["flow"]["sourceLabels"].as_array().expect("labels");
            labels[0]
                .as_str()
                .expect("a string label")
                .trim_start_matches("flow=")
                .to_string()
        })
        .collect()
}

/// The cells of a table line: columns are separated by at least two spaces.
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect()
}

fn set(letters: &str) -> BTreeSet<String> {
    letters.chars().map(String::from).collect()
}

/// Five flows with distinct fields; `E` is twenty minutes old, the others one window old.
async fn known_flows(server: &TestServer) {
    let recent = bucket(NOW) - WINDOW + 1;
    let old = bucket(NOW) - 20 * 60 + 1;
    let with = |letter: &str, key: eddy::proto::FlowKey, start: i64, packets: i64| {
        let mut f = flow(key, start, packets);
        f.source_labels = vec![format!("flow={letter}")];
        f.dest_labels = vec!["app=x".into()];
        f
    };
    let mut a = key(("shop", "frontend"), ("shop", "checkout"));
    a.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "shop",
            "allow-checkout",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    let mut b = key(("shop", "frontend"), ("payments", "ledger"));
    (b.dest_port, b.reporter) = (9000, Reporter::Src as i32);
    b.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "payments",
            "allow-ledger",
            Action::Allow,
        )],
        pending_policies: vec![hit(
            PolicyKind::StagedNetworkPolicy,
            "default",
            "payments",
            "staged-ledger",
            Action::Deny,
        )],
    });
    let mut c = key(("-", "pub"), ("payments", "ledger"));
    (c.source_type, c.dest_port, c.action) =
        (EndpointType::Network as i32, 9000, Action::Deny as i32);
    let mut end_of_tier = hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny);
    end_of_tier.trigger = Some(Box::new(hit(
        PolicyKind::NetworkPolicy,
        "default",
        "payments",
        "default-deny",
        Action::Deny,
    )));
    c.policies = Some(PolicyTrace {
        enforced_policies: vec![end_of_tier.clone()],
        pending_policies: vec![end_of_tier],
    });
    let mut d = key(("monitoring", "prometheus"), ("kube-system", "kube-dns"));
    (d.dest_port, d.proto, d.reporter) = (53, "UDP".into(), Reporter::Src as i32);
    d.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::GlobalNetworkPolicy,
            "platform",
            "",
            "allow-dns",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    let mut e = key(("shop", "cart"), ("shop", "redis"));
    e.dest_port = 6379;
    e.policies = Some(PolicyTrace {
        enforced_policies: vec![
            hit(
                PolicyKind::GlobalNetworkPolicy,
                "platform",
                "",
                "pass-all",
                Action::Pass,
            ),
            hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                "shop",
                "allow-redis",
                Action::Allow,
            ),
        ],
        pending_policies: vec![],
    });
    server
        .ingest(vec![
            with("A", a, recent, 12),
            with("B", b, recent, 20),
            with("C", c, recent, 30),
            with("D", d, recent, 40),
            with("E", e, old, 50),
        ])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_prints_known_flows_as_a_table_and_as_json() {
    let server = TestServer::start(1).await;
    known_flows(&server).await;

    let table = against(
        &server,
        &["flows", "list"],
        &["-o", "table", "--dest-name", "checkout"],
    )
    .await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "header, one row, footer: {text}");
    for column in [
        "START",
        "SOURCE",
        "DESTINATION",
        "PORT",
        "REPORTER",
        "ACTION",
        "PKTS IN",
        "BYTES OUT",
    ] {
        assert!(
            lines[0].contains(column),
            "header has {column}: {}",
            lines[0]
        );
    }
    let row: Vec<&str> = cells(lines[1]);
    assert!(row[0].ends_with(" ago"), "a relative start: {row:?}");
    assert_eq!(
        row[1..],
        [
            "shop/frontend",
            "shop/checkout",
            "TCP/443",
            "dst",
            "allow",
            "12",
            "12",
            "1.2 KiB",
            "1.2 KiB"
        ]
    );
    assert_eq!(lines[2], "1 flow");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    // Columns line up: every row starts its SOURCE column where the header does.
    let all = against(&server, &["flows", "list"], &["-o", "table"]).await;
    let all_text = stdout(&all);
    let source_at = all_text
        .lines()
        .next()
        .and_then(|h| h.find("SOURCE"))
        .expect("a header");
    for line in all_text.lines().skip(1).take(5) {
        assert_ne!(line.as_bytes()[source_at], b' ', "aligned: {line}");
        assert_eq!(line.as_bytes()[source_at - 1], b' ', "aligned: {line}");
    }

    let coloured = against(
        &server,
        &["flows", "list"],
        &["-o", "table", "--color", "always", "--action", "deny"],
    )
    .await;
    assert!(
        stdout(&coloured).contains("\x1b[31mdeny\x1b[0m"),
        "{}",
        stdout(&coloured)
    );

    let wide = against(
        &server,
        &["flows", "list"],
        &["-o", "wide", "--dest-name", "ledger", "--reporter", "dst"],
    )
    .await;
    let wide_text = stdout(&wide);
    assert!(
        wide_text.contains("default/end-of-tier<payments/default-deny:deny"),
        "{wide_text}"
    );
    assert!(wide_text.contains("Network"), "{wide_text}");
    assert!(
        wide_text.contains(&eddy::cli::time::format_rfc3339(bucket(NOW) - WINDOW)),
        "{wide_text}"
    );

    let json = against(
        &server,
        &["flows", "list"],
        &["-o", "json", "--sort", "dest-name"],
    )
    .await;
    // The protobuf JSON mapping, as grpcurl prints it: camelCase, enum names, int64 strings.
    let document: Value = serde_json::from_str(&stdout(&json)).expect("one JSON document");
    assert_eq!(document["meta"]["totalResults"], "5");
    assert_eq!(document["meta"]["totalPages"], "1");
    let flows = document["flows"].as_array().expect("flows");
    let first = &flows[0]["flow"];
    assert_eq!(first["Key"]["destName"], "checkout");
    assert_eq!(first["Key"]["destNamespace"], "shop");
    assert_eq!(first["Key"]["destPort"], "443");
    assert_eq!(first["Key"]["action"], "Allow");
    assert_eq!(first["Key"]["reporter"], "Dst");
    assert_eq!(
        first["Key"]["policies"]["enforcedPolicies"][0]["name"],
        "allow-checkout"
    );
    assert_eq!(first["packetsIn"], "12");
    assert_eq!(first["bytesIn"], "1200");
    assert_eq!(first["numConnectionsLive"], "0", "defaults are printed");
    assert_eq!(first["startTime"], (bucket(NOW) - WINDOW).to_string());
    assert_eq!(first["endTime"], bucket(NOW).to_string());
    assert_eq!(first["destLabels"], serde_json::json!(["app=x"]));
    assert!(flows[0]["id"]
        .as_str()
        .and_then(|id| id.parse::<i64>().ok())
        .is_some_and(|id| id > 0));

    // Not a terminal and no -o: one JSON result per line.
    let ndjson = against(&server, &["flows", "list"], &[]).await;
    assert_eq!(letters(&ndjson), set("ABCDE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_flag_reaches_the_server() {
    let server = TestServer::start(1).await;
    known_flows(&server).await;
    let cases: &[(&[&str], &str)] = &[
        (&["--source-name", "frontend"], "AB"),
        (&["--source-name~", "PROM"], "D"),
        (&["--source-name", "PUBLIC NETWORK"], "C"),
        (&["--source-namespace", "monitoring"], "D"),
        (&["--source-namespace~", "sho"], "ABE"),
        (&["--dest-name", "ledger"], "BC"),
        (&["--dest-name~", "DNS"], "D"),
        (&["--dest-namespace", "payments"], "BC"),
        (&["--dest-namespace~", "pay"], "BC"),
        (
            &["--dest-namespace", "shop", "--dest-namespace~", "kube"],
            "ADE",
        ),
        (&["--protocol", "UDP"], "D"),
        (&["--protocol~", "tc"], "ABCE"),
        (&["--dest-port", "9000"], "BC"),
        (&["--dest-port", "53", "--dest-port", "6379"], "DE"),
        (&["--action", "deny"], "C"),
        (&["--action", "allow", "--action", "pass"], "ABDE"),
        (&["--pending-action", "deny"], "BC"),
        (&["--policy", "default/allow-checkout"], "A"),
        (&["--policy", "default/payments/default-deny"], "C"),
        (&["--policy", "gnp:platform/*"], "DE"),
        (&["--policy", "kind=StagedNetworkPolicy,action=deny"], "B"),
        (
            &["--policy", "*/shop/*", "--policy", "*/kube-system/*"],
            "AE",
        ),
        (&["--reporter", "src"], "BD"),
        (&["--reporter", "dst"], "ACE"),
        (&["--dest-namespace", "payments", "--reporter", "dst"], "C"),
        (&["--source-name-like", "PROM"], "D"),
        (&["--source-namespace-like", "sho"], "ABE"),
        (&["--dest-name-like", "DNS"], "D"),
        (&["--dest-namespace-like", "pay"], "BC"),
        (&["--protocol-like", "tc"], "ABCE"),
        (&["--from-namespace", "monitoring"], "D"),
        (&["--to-namespace", "payments"], "BC"),
        (&["--verdict", "DROPPED"], "C"),
        (&["--verdict", "FORWARDED"], "ABDE"),
        (&["--action", "Deny"], "C"),
        (&["--port", "9000"], "BC"),
        (&["--to-port", "53"], "D"),
        (&["--since", "10m"], "ABCD"),
        (&["--until", "10m"], "E"),
        (&["--since", "1h", "--until", "15m"], "E"),
    ];
    for (flags, expected) in cases {
        let output = against(&server, &["flows", "list"], flags).await;
        assert_eq!(letters(&output), set(expected), "flags {flags:?}");
    }
    let since = eddy::cli::time::format_rfc3339(NOW - 600);
    let absolute = against(&server, &["flows", "list"], &["--since", &since]).await;
    assert_eq!(letters(&absolute), set("ABCD"), "--since {since}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorting_paging_and_hints_reach_the_server() {
    let server = TestServer::start(1).await;
    known_flows(&server).await;
    let page = against(
        &server,
        &["flows", "list"],
        &[
            "-o",
            "json",
            "--sort",
            "dest-name",
            "--sort",
            "source-name",
            "--page-size",
            "2",
            "--page",
            "2",
        ],
    )
    .await;
    let document: Value = serde_json::from_str(&stdout(&page)).expect("JSON");
    assert_eq!(document["meta"]["totalResults"], "5");
    assert_eq!(document["meta"]["totalPages"], "3");
    let names: Vec<(&str, &str)> = document["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .map(|f| {
            (
                f["flow"]["Key"]["destName"].as_str().unwrap_or(""),
                f["flow"]["Key"]["sourceName"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(names, [("ledger", "frontend"), ("ledger", "pub")]);
    let table = against(
        &server,
        &["flows", "list"],
        &[
            "-o",
            "table",
            "--sort",
            "dest-name",
            "--page-size",
            "2",
            "--page",
            "3",
        ],
    )
    .await;
    assert!(
        stdout(&table).ends_with("showing 5-5 of 5 flows (page 3 of 3)\n"),
        "{}",
        stdout(&table)
    );

    let hints = against(
        &server,
        &["flows", "hints", "dest-namespace"],
        &["-o", "json"],
    )
    .await;
    let document: Value = serde_json::from_str(&stdout(&hints)).expect("JSON");
    assert_eq!(
        document["hints"],
        serde_json::json!([{"value": "kube-system"}, {"value": "payments"}, {"value": "shop"}])
    );
    assert_eq!(document["meta"]["totalResults"], "3");
    let table = against(
        &server,
        &["flows", "hints", "policy-name"],
        &["-o", "table", "--reporter", "dst"],
    )
    .await;
    assert_eq!(
        stdout(&table),
        "POLICY NAME\nallow-checkout\nallow-redis\ndefault-deny\npass-all\n4 values\n"
    );
    let filtered = against(
        &server,
        &["flows", "hints", "dest-name"],
        &["--since", "10m", "--dest-namespace~", "E"],
    )
    .await;
    assert_eq!(
        stdout(&filtered),
        "{\"value\":\"kube-dns\"}\n{\"value\":\"ledger\"}\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_prints_policy_counters_as_a_table_and_as_json() {
    let server = TestServer::start(1).await;
    known_flows(&server).await;
    let json = against(
        &server,
        &["stats"],
        &["-o", "json", "--policy", "default/allow-checkout"],
    )
    .await;
    assert!(json.status.success(), "{}", stderr(&json));
    let results: Value = serde_json::from_str(&stdout(&json)).expect("JSON");
    let results = results.as_array().expect("an array of results");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0]["policy"]["name"], "allow-checkout");
    assert_eq!(results[0]["allowedIn"], serde_json::json!(["12"]));
    assert_eq!(results[0]["deniedIn"], serde_json::json!(["0"]));
    assert_eq!(results[0]["policy"]["kind"], "CalicoNetworkPolicy");
    let rules = against(
        &server,
        &["stats"],
        &[
            "-o",
            "ndjson",
            "--group-by",
            "rule",
            "--type",
            "bytes",
            "--policy",
            "default/payments/default-deny",
            "--action",
            "deny",
        ],
    )
    .await;
    let lines: Vec<Value> = stdout(&rules)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["policy"]["name"], "default-deny");
    assert_eq!(lines[0]["direction"], "Ingress");
    assert_eq!(lines[0]["deniedIn"], serde_json::json!(["3000"]));
    let table = against(
        &server,
        &["stats"],
        &[
            "-o",
            "table",
            "--type",
            "bytes",
            "--policy",
            "gnp:platform/*",
        ],
    )
    .await;
    let text = stdout(&table);
    assert!(text.starts_with("KIND "), "{text}");
    let pass_all = text
        .lines()
        .find(|l| l.contains("pass-all"))
        .expect("a pass-all row");
    assert_eq!(
        cells(pass_all),
        [
            "GlobalNetworkPolicy",
            "platform",
            "pass-all",
            "0",
            "0",
            "0",
            "0",
            "4.9 KiB",
            "4.9 KiB"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_failed_calls_give_one_clear_line_and_an_exit_code() {
    let server = TestServer::start(1).await;
    let usage: &[&[&str]] = &[
        &["flows", "list", "--action", "maybe"],
        &["flows", "list", "--since", "yesterday"],
        &["flows", "list", "--policy", "a/b/c/d"],
        &["flows", "list", "--page", "2"],
        &["flows", "list", "--dest-port", "70000"],
        &["flows", "hints", "colour"],
        &["stats", "--type", "furlongs"],
        &["flows", "list", "--tls-ca", "/nonexistent/ca.pem"],
    ];
    for args in usage {
        let output = run_eddy(args.iter().map(|s| s.to_string()).collect()).await;
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let flag = args
            .iter()
            .find(|a| a.starts_with("--"))
            .copied()
            .unwrap_or("colour");
        assert!(
            stderr(&output).contains(flag),
            "{args:?} names {flag}: {}",
            stderr(&output)
        );
    }

    let invalid = against(
        &server,
        &["flows", "list"],
        &["--since", "1m", "--until", "10m"],
    )
    .await;
    assert_eq!(invalid.status.code(), Some(1));
    let line = stderr(&invalid);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(
        line.starts_with("eddy: error: Flows.List failed with INVALID_ARGUMENT: start_time_gte"),
        "{line}"
    );
    assert!(
        line.trim_end().ends_with("hint: check --since/--until"),
        "{line}"
    );
    let window = against(
        &server,
        &["flows", "list"],
        &["--aggregation-interval", "7s"],
    )
    .await;
    assert_eq!(window.status.code(), Some(1));
    assert!(
        stderr(&window).contains("hint: check --aggregation-interval"),
        "{}",
        stderr(&window)
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = closed.local_addr().expect("an address").to_string();
    drop(closed);
    for command in [
        &["flows", "list"][..],
        &["flows", "hints", "dest-name"],
        &["stats"],
        &["flows", "watch"],
    ] {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(["--server".into(), address.clone()]);
        let output = run_eddy(args).await;
        assert_eq!(output.status.code(), Some(3), "{command:?}");
        let line = stderr(&output);
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains(&format!(
                "cannot reach the server at {address} (UNAVAILABLE: "
            )),
            "{line}"
        );
        assert!(line.contains("hint: nothing is listening there"), "{line}");
    }
}

/// A real-clock server with a 1 s window, so streams emit within seconds.
async fn realtime() -> RealtimeServer {
    let retention = eddy::retention::Retention {
        window: 1,
        closed_buckets: 60,
    };
    RealtimeServer::start(1, retention, eddy::streams::StreamLimits::default()).await
}

/// Four flows (A to D) starting now on `server`'s clock.
async fn live_flows(server: &RealtimeServer) {
    let now = server.now();
    let labelled = |letter: &str, key: eddy::proto::FlowKey, packets: i64| {
        let mut f = flow(key, now, packets);
        f.source_labels = vec![format!("flow={letter}")];
        f
    };
    let mut c = key(("-", "pub"), ("payments", "ledger"));
    c.action = Action::Deny as i32;
    let mut d = key(("shop", "frontend"), ("payments", "ledger"));
    d.reporter = Reporter::Src as i32;
    server
        .ingest(vec![
            labelled("A", key(("shop", "frontend"), ("shop", "checkout")), 1),
            labelled("B", key(("shop", "cart"), ("shop", "redis")), 2),
            labelled("C", c, 3),
            labelled("D", d, 4),
        ])
        .await;
}

/// Reads one line of a child's standard output off the runtime.
async fn first_line(stdout: std::process::ChildStdout) -> String {
    tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("stdout is readable");
        line
    })
    .await
    .expect("the reader finishes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_each_bucket_as_it_is_emitted() {
    let server = realtime().await;
    live_flows(&server).await;
    let address = server.address.to_string();
    let run = |flags: &[&str]| {
        let mut args = vec![
            "flows".to_string(),
            "watch".into(),
            "--server".into(),
            address.clone(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        run_eddy(args)
    };
    let all = run(&["--since", "30s", "--count", "4", "-o", "ndjson"]).await;
    assert_eq!(letters(&all), set("ABCD"));
    for line in stdout(&all).lines() {
        let result: Value = serde_json::from_str(line).expect("JSON");
        let flow = &result["flow"];
        let seconds = |field: &str| flow[field].as_str().and_then(|s| s.parse::<i64>().ok());
        let width = seconds("endTime").unwrap_or(0) - seconds("startTime").unwrap_or(0);
        assert_eq!(width, 1, "one bucket per result: {line}");
    }
    let filtered = run(&[
        "--since",
        "30s",
        "--count",
        "1",
        "--dest-namespace",
        "payments",
        "--reporter",
        "dst",
    ])
    .await;
    assert_eq!(letters(&filtered), set("C"));
    let table = run(&[
        "--since",
        "30s",
        "--count",
        "1",
        "-o",
        "table",
        "--action",
        "allow",
        "--dest-name",
        "ledger",
    ])
    .await;
    assert!(table.status.success(), "{}", stderr(&table));
    let text = stdout(&table);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one row per result: {text}");
    assert!(lines[0].starts_with("START"), "{text}");
    assert_eq!(
        cells(lines[1])[1..6],
        [
            "shop/frontend",
            "payments/ledger",
            "TCP/443",
            "src",
            "allow"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_exits_cleanly_on_ctrl_c() {
    let server = realtime().await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "flows",
            "watch",
            "-o",
            "table",
            "--server",
            &server.address.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("eddy starts");
    let stdout = child.stdout.take().expect("piped stdout");
    // The header is printed once the stream is open, so the signal handler is in place.
    let header = tokio::time::timeout(std::time::Duration::from_secs(60), first_line(stdout))
        .await
        .expect("the header arrives");
    assert!(header.starts_with("START"), "{header}");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("the waiter finishes")
        .expect("eddy exits");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}

/// The lines of a successful command's standard output.
fn lines_of(output: &Output) -> Vec<String> {
    assert!(output.status.success(), "eddy failed: {}", stderr(output));
    stdout(output).lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_last_takes_the_most_recent_rows() {
    let server = TestServer::start(1).await;
    known_flows(&server).await;
    let two = against(
        &server,
        &["flows", "list"],
        &["--last", "2", "-o", "ndjson"],
    )
    .await;
    let letters = letters(&two);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters.is_subset(&set("ABCD")),
        "the recent ones: {letters:?}"
    );
    let table = against(&server, &["flows", "list"], &["--last", "2", "-o", "table"]).await;
    let lines = lines_of(&table);
    assert_eq!(lines.len(), 4, "a header, two rows, a footer: {lines:?}");
    assert!(lines[0].starts_with("START"), "{lines:?}");
    assert_eq!(lines[3], "the 2 most recent of 5 flows");
    let all = against(&server, &["flows", "list"], &["--last", "9", "-o", "table"]).await;
    assert_eq!(lines_of(&all).last().map(String::as_str), Some("5 flows"));
    let json = against(&server, &["flows", "list"], &["--last", "3", "-o", "json"]).await;
    let document: Value = serde_json::from_str(&stdout(&json)).expect("one JSON document");
    assert_eq!(document["flows"].as_array().map(Vec::len), Some(3));
    assert_eq!(document["meta"]["totalResults"], "5");

    for flags in [
        &["--last", "2", "--sort", "dest-name"][..],
        &["--last", "2", "--page-size", "3"],
        &["--last", "0"],
        &["--count", "1"],
    ] {
        let refused = against(&server, &["flows", "list"], flags).await;
        assert_eq!(
            refused.status.code(),
            Some(2),
            "{flags:?}: {}",
            stderr(&refused)
        );
        assert!(
            stderr(&refused).contains(flags[0]),
            "{flags:?}: {}",
            stderr(&refused)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lists_are_read_in_pages_and_tables_stop_at_the_default() {
    let server = TestServer::start(1).await;
    let start = bucket(NOW) - WINDOW + 1;
    let flows: Vec<_> = (0..1203)
        .map(|n| {
            flow(
                key(("load", &format!("client-{n:04}")), ("shop", "db")),
                start,
                1,
            )
        })
        .collect();
    server.ingest(flows).await;

    let ndjson = against(&server, &["flows", "list"], &["-o", "ndjson"]).await;
    let lines = lines_of(&ndjson);
    assert_eq!(lines.len(), 1203, "every flow, over three pages of 500");
    let ids: BTreeSet<String> = lines
        .iter()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("JSON");
            value["id"].as_str().expect("an id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), 1203, "no flow twice");

    let table = against(&server, &["flows", "list"], &["-o", "table"]).await;
    let lines = lines_of(&table);
    assert_eq!(lines.len(), 1 + 100 + 1, "a header, 100 rows, a footer");
    assert_eq!(
        lines[101],
        "showing 100 of 1203 flows; 1103 more: use --last N or --page-size N"
    );
    let longer = against(
        &server,
        &["flows", "list"],
        &["-o", "wide", "--last", "1100"],
    )
    .await;
    let lines = lines_of(&longer);
    assert_eq!(lines.len(), 1 + 1100 + 1, "{:?}", lines.last());
    assert_eq!(lines[1101], "the 1100 most recent of 1203 flows");
    let source_at = lines[0].find("SOURCE").expect("a header");
    for line in &lines[1..1101] {
        assert_eq!(
            &line[source_at..source_at + 5],
            "load/",
            "aligned across pages: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_follow_prints_the_list_then_each_emitted_bucket() {
    let server = realtime().await;
    let labelled = |letter: &str, start: i64| {
        let mut f = flow(key(("shop", "frontend"), ("shop", "checkout")), start, 1);
        f.source_labels = vec![format!("flow={letter}")];
        f
    };
    // A closed bucket: listed, and already emitted (late data is not re-sent, SPEC §7.6).
    server.ingest(vec![labelled("A", server.now() - 5)]).await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(["flows", "list", "-f", "--count", "1", "-o", "ndjson"])
        .args(["--server", &server.address.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("eddy starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = std::io::BufReader::new(stdout);
    // The stream is opened before the list is read: once the list is out, it is listening.
    let (listed, mut reader) = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).expect("stdout is readable");
        (line, reader)
    })
    .await
    .expect("the reader finishes");
    let listed: Value = serde_json::from_str(&listed).expect("the listed flow as JSON");
    assert_eq!(
        listed["flow"]["sourceLabels"],
        serde_json::json!(["flow=A"])
    );
    server.ingest(vec![labelled("B", server.now())]).await;
    let (rest, output) = tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut reader, &mut rest).expect("stdout is readable");
        (rest, child.wait_with_output().expect("eddy exits"))
    })
    .await
    .expect("the waiter finishes");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let streamed: Vec<Value> = rest
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(streamed.len(), 1, "--count 1 streamed result: {rest}");
    let flow = &streamed[0]["flow"];
    assert_eq!(flow["sourceLabels"], serde_json::json!(["flow=B"]));
    let seconds = |field: &str| flow[field].as_str().and_then(|s| s.parse::<i64>().ok());
    assert_eq!(
        seconds("endTime").unwrap_or(0) - seconds("startTime").unwrap_or(0),
        1,
        "one bucket: {flow}"
    );
}
