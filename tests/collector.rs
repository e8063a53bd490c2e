//! FlowCollector.Connect through gRPC (SPEC §9, with §2.4 placement and §10 errors): one
//! receipt per update, in order, on one and on many concurrent streams; a receipt means the
//! update is visible (read-your-writes); invalid updates are receipted, skipped and counted by
//! reason; replays are de-duplicated per peer IP, per connection or not at all; bytes that are
//! not a message get INTERNAL and the server keeps answering.

mod common;

use common::*;
use eddy::ingest::dedup::DedupScope;
use eddy::ingest::SkipReason;
use eddy::proto::{
    Action, Flow, FlowKey, FlowListRequest, FlowListResult, FlowUpdate, PolicyKind, PolicyTrace,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use tonic::Code;

/// A closed bucket's start: inside the default List range.
fn closed() -> i64 {
    bucket(NOW) - WINDOW
}

/// A flow with explicit counters, all different so that no two are duplicates by accident.
fn counted(key: FlowKey, start: i64, packets: i64, bytes: i64, connections: i64) -> Flow {
    Flow {
        key: Some(key),
        start_time: start,
        end_time: start + 2,
        source_labels: vec![],
        dest_labels: vec![],
        packets_in: packets,
        packets_out: 2 * packets,
        bytes_in: bytes,
        bytes_out: 2 * bytes,
        num_connections_started: connections,
        num_connections_completed: connections,
        num_connections_live: 0,
    }
}

async fn list(server: &TestServer, request: FlowListRequest) -> FlowListResult {
    server
        .flows()
        .list(request)
        .await
        .expect("List succeeds")
        .into_inner()
}

/// Every key in the default range, sorted by dest name: (dest name, packets_in, packets_out,
/// bytes_in, connections started).
async fn totals_by_dest(server: &TestServer) -> Vec<(String, i64, i64, i64, i64)> {
    let mut rows: Vec<_> = server
        .list_all()
        .await
        .into_iter()
        .map(|result| {
            let flow = result.flow.expect("flow is set");
            let key = flow.key.expect("key is set");
            (
                key.dest_name,
                flow.packets_in,
                flow.packets_out,
                flow.bytes_in,
                flow.num_connections_started,
            )
        })
        .collect();
    rows.sort();
    rows
}

fn skipped(server: &TestServer, reason: SkipReason) -> u64 {
    server.state.ingest.skipped_total(reason)
}

/// Every skip counter, in `SkipReason::ALL` order.
fn all_skipped(server: &TestServer) -> Vec<u64> {
    SkipReason::ALL
        .iter()
        .map(|reason| skipped(server, *reason))
        .collect()
}

/// Sends each update, waits for its receipt, and checks after every receipt that List
/// already shows it: receipts come one per update, in order, and mean "processed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_receipt_comes_in_order_after_its_update_is_visible() {
    let server = TestServer::start(1).await;
    let mut conn = CollectorConn::open(&server.channel).await;
    let k = key(("shop", "frontend"), ("shop", "checkout"));
    for i in 1..=20 {
        conn.send_and_wait(counted(k.clone(), closed() + (i % WINDOW), i, 10 * i, 1))
            .await;
        let flows = server.list_all().await;
        assert_eq!(flows.len(), 1);
        let flow = flows[0].flow.as_ref().expect("flow is set");
        // 1 + 2 + ... + i
        assert_eq!(flow.packets_in, i * (i + 1) / 2, "after receipt {i}");
        assert_eq!(flow.packets_out, i * (i + 1), "after receipt {i}");
        assert_eq!(flow.bytes_in, 5 * i * (i + 1), "after receipt {i}");
        assert_eq!(flow.num_connections_started, i, "after receipt {i}");
    }
    conn.close().await;
    assert_eq!(server.state.ingest.received_total(), 20);
    assert_eq!(server.state.ingest.stored_total(), 20);
    assert_eq!(all_skipped(&server), vec![0; SkipReason::ALL.len()]);
    common::assert_accounting(&server.state);
}

/// Thousands of updates sent without waiting get exactly as many receipts, then the call ends
/// cleanly; a List right after the last receipt sees every update (read-your-writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_updates_get_exactly_one_receipt_each_and_are_all_visible() {
    const UPDATES: i64 = 3000;
    const KEYS: i64 = 30;
    let server = TestServer::start(2).await;
    let mut conn = CollectorConn::open(&server.channel).await;
    let flows: Vec<Flow> = (0..UPDATES)
        .map(|i| {
            let k = key(("shop", "frontend"), ("shop", &format!("d{:02}", i % KEYS)));
            counted(k, closed() + i % WINDOW, i + 1, 1, 1)
        })
        .collect();
    // Send and read concurrently: the request buffer is smaller than the updates.
    let sender = conn.clone_sender();
    let sending = tokio::spawn(async move {
        for flow in flows {
            sender
                .send(FlowUpdate { flow: Some(flow) })
                .await
                .expect("the request stream is open");
        }
    });
    conn.receipts(UPDATES as usize).await;
    sending.await.expect("the sender finishes");
    let page = list(
        &server,
        FlowListRequest {
            page_size: 7,
            ..Default::default()
        },
    )
    .await;
    let meta = page.meta.expect("metadata is set");
    assert_eq!((meta.total_results, meta.total_pages), (KEYS, 5));
    let rows = totals_by_dest(&server).await;
    assert_eq!(rows.len(), KEYS as usize);
    for (k, row) in rows.iter().enumerate() {
        let k = k as i64;
        // Updates i = k, k + 30, ..., k + 2970 with packets i + 1.
        let packets: i64 = (0..UPDATES / KEYS).map(|j| k + j * KEYS + 1).sum();
        assert_eq!(
            row,
            &(
                format!("d{k:02}"),
                packets,
                2 * packets,
                UPDATES / KEYS,
                UPDATES / KEYS
            )
        );
    }
    conn.close().await;
    assert_eq!(server.state.ingest.received_total(), UPDATES as u64);
    assert_eq!(server.state.ingest.stored_total(), UPDATES as u64);
    common::assert_accounting(&server.state);
}

/// Several concurrent streams, some sharing an HTTP/2 connection and some on their own TCP
/// connections, each get exactly their own receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_each_get_one_receipt_per_update() {
    const STREAMS: i64 = 6;
    const UPDATES: i64 = 400;
    let server = TestServer::start(2).await;
    let mut tasks = Vec::new();
    for stream in 0..STREAMS {
        let channel = if stream % 2 == 0 {
            server.channel.clone()
        } else {
            server.new_channel().await
        };
        tasks.push(tokio::spawn(async move {
            let mut conn = CollectorConn::open(&channel).await;
            let sender = conn.clone_sender();
            let sending = tokio::spawn(async move {
                for i in 0..UPDATES {
                    // Two keys per stream; packets unique within the stream.
                    let dest = format!("s{stream}-k{}", i % 2);
                    let flow = counted(
                        key(("shop", "frontend"), ("shop", &dest)),
                        closed() + i % WINDOW,
                        i + 1,
                        stream + 1,
                        1,
                    );
                    sender
                        .send(FlowUpdate { flow: Some(flow) })
                        .await
                        .expect("the request stream is open");
                }
            });
            conn.receipts(UPDATES as usize).await;
            sending.await.expect("the sender finishes");
            conn.close().await;
        }));
    }
    for task in tasks {
        task.await.expect("every stream gets its receipts");
    }
    let rows = totals_by_dest(&server).await;
    assert_eq!(rows.len(), (2 * STREAMS) as usize);
    for stream in 0..STREAMS {
        for parity in 0..2 {
            // i = parity, parity + 2, ..., packets i + 1.
            let packets: i64 = (0..UPDATES / 2).map(|j| parity + 2 * j + 1).sum();
            let expected = (
                format!("s{stream}-k{parity}"),
                packets,
                2 * packets,
                (stream + 1) * UPDATES / 2,
                UPDATES / 2,
            );
            assert!(rows.contains(&expected), "{expected:?} in {rows:?}");
        }
    }
    assert_eq!(
        server.state.ingest.received_total(),
        (STREAMS * UPDATES) as u64
    );
    assert_eq!(
        server.state.ingest.stored_total(),
        (STREAMS * UPDATES) as u64
    );
    common::assert_accounting(&server.state);
}

/// Every kind of invalid update is receipted, skipped and counted by reason, interleaved
/// with valid ones on one stream; an EndOfTier hit without a trigger is valid and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_updates_are_receipted_skipped_and_counted_by_reason() {
    let server = TestServer::start(2).await;
    let current = bucket(NOW);
    let oldest = current - 240 * WINDOW;
    let future = current + WINDOW;
    let valid = |dest: &str, start: i64, packets: i64| {
        counted(
            key(("shop", "frontend"), ("shop", dest)),
            start,
            packets,
            1,
            1,
        )
    };
    let mut updates: Vec<FlowUpdate> = Vec::new();
    let mut push = |flow: Flow| updates.push(FlowUpdate { flow: Some(flow) });
    push(valid("first", closed(), 1));
    // No flow (pushed below), no key.
    push(Flow {
        key: None,
        ..valid("no-key", closed(), 2)
    });
    // start_time <= 0.
    push(Flow {
        start_time: 0,
        end_time: 5,
        ..valid("zero-start", closed(), 3)
    });
    push(Flow {
        start_time: -5,
        end_time: 5,
        ..valid("negative-start", closed(), 4)
    });
    push(Flow {
        start_time: i64::MIN,
        end_time: 5,
        ..valid("min-start", closed(), 5)
    });
    // end_time < start_time.
    push(Flow {
        end_time: closed() - 1,
        ..valid("end-before-start", closed(), 6)
    });
    // Each negative counter.
    let base = valid("negative-counter", closed(), 7);
    push(Flow {
        packets_in: -1,
        ..base.clone()
    });
    push(Flow {
        packets_out: -1,
        ..base.clone()
    });
    push(Flow {
        bytes_in: -1,
        ..base.clone()
    });
    push(Flow {
        bytes_out: -1,
        ..base.clone()
    });
    push(Flow {
        num_connections_started: -1,
        ..base.clone()
    });
    push(Flow {
        num_connections_completed: -1,
        ..base.clone()
    });
    push(Flow {
        num_connections_live: i64::MIN,
        ..base.clone()
    });
    // Outside retention: older than the oldest bucket, newer than the future bucket.
    push(valid("too-old", oldest - 1, 8));
    push(valid("too-new", future + WINDOW, 9));
    push(Flow {
        start_time: i64::MAX,
        end_time: i64::MAX,
        ..valid("far-future", closed(), 10)
    });
    // Valid edges: end == start, the oldest bucket's first second, the future bucket's last.
    push(Flow {
        end_time: closed() + 3,
        ..valid("end-equals-start", closed() + 3, 11)
    });
    push(valid("oldest-bucket", oldest, 12));
    push(valid("future-bucket", future + WINDOW - 1, 13));
    // An EndOfTier hit without a trigger is valid.
    let mut end_of_tier = key(("shop", "frontend"), ("shop", "end-of-tier"));
    end_of_tier.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(PolicyKind::EndOfTier, "security", "", "", Action::Deny)],
        pending_policies: vec![],
    });
    end_of_tier.action = Action::Deny as i32;
    push(counted(end_of_tier.clone(), closed(), 14, 1, 1));
    updates.insert(1, FlowUpdate { flow: None });
    let total = updates.len();
    assert_eq!(total, 21);

    let mut conn = CollectorConn::open(&server.channel).await;
    for update in updates {
        conn.send(update).await;
    }
    conn.receipts(total).await;
    conn.close().await;

    assert_eq!(skipped(&server, SkipReason::NoFlow), 1);
    assert_eq!(skipped(&server, SkipReason::NoKey), 1);
    assert_eq!(skipped(&server, SkipReason::NonPositiveStart), 3);
    assert_eq!(skipped(&server, SkipReason::EndBeforeStart), 1);
    assert_eq!(skipped(&server, SkipReason::NegativeCounter), 7);
    assert_eq!(skipped(&server, SkipReason::OutsideRetention), 3);
    assert_eq!(skipped(&server, SkipReason::Duplicate), 0);
    assert_eq!(server.state.ingest.received_total(), 21);
    assert_eq!(server.state.ingest.stored_total(), 5);

    // Only the valid updates are stored; the future bucket needs an end past now.
    assert_eq!(
        totals_by_dest(&server).await,
        vec![
            ("end-equals-start".to_string(), 11, 22, 1, 1),
            ("end-of-tier".to_string(), 14, 28, 1, 1),
            ("first".to_string(), 1, 2, 1, 1),
            ("oldest-bucket".to_string(), 12, 24, 1, 1),
        ]
    );
    let with_future = list(
        &server,
        FlowListRequest {
            start_time_lt: future + WINDOW,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(with_future.flows.len(), 5);
    let stored_end_of_tier = with_future
        .flows
        .iter()
        .map(|result| result.flow.as_ref().expect("flow is set"))
        .find(|flow| flow.key.as_ref().expect("key is set").dest_name == "end-of-tier")
        .expect("the EndOfTier flow is listed");
    assert_eq!(stored_end_of_tier.key.as_ref(), Some(&end_of_tier));

    // The server keeps accepting and answering on a new stream.
    server.ingest(vec![valid("after", closed(), 15)]).await;
    assert_eq!(server.list_all().await.len(), 5);
    assert_eq!(server.state.ingest.stored_total(), 6);
    common::assert_accounting(&server.state);
}

/// A replay of the same updates on a new connection from the same IP is absorbed: receipted,
/// counted as duplicates, counters not doubled (SPEC §9.4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_reconnecting_from_the_same_ip_is_absorbed() {
    let server = TestServer::start(2).await;
    let flows: Vec<Flow> = (1..=3)
        .map(|i| {
            counted(
                key(("shop", "frontend"), ("shop", &format!("d{i}"))),
                closed() + i,
                i,
                100 * i,
                i,
            )
        })
        .collect();
    server.ingest(flows.clone()).await;
    let before = totals_by_dest(&server).await;
    assert_eq!(
        before,
        vec![
            ("d1".to_string(), 1, 2, 100, 1),
            ("d2".to_string(), 2, 4, 200, 2),
            ("d3".to_string(), 3, 6, 300, 3),
        ]
    );
    // Same channel, new call; then a brand-new TCP connection (another source port).
    server.ingest(flows.clone()).await;
    let other = server.new_channel().await;
    assert_eq!(send_on_new_connection(&other, flows.clone()).await, 3);
    assert_eq!(totals_by_dest(&server).await, before);
    assert_eq!(skipped(&server, SkipReason::Duplicate), 6);
    assert_eq!(server.state.ingest.received_total(), 9);
    assert_eq!(server.state.ingest.stored_total(), 3);
    // The same update twice on one stream is a duplicate too.
    let again = counted(key(("a", "b"), ("c", "d")), closed(), 5, 5, 5);
    server.ingest(vec![again.clone(), again]).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 7);
    assert_eq!(server.list_all().await.len(), 4);
    common::assert_accounting(&server.state);
}

/// Labels compare as sets and hits in another order are the same canonical key: such an
/// update is a duplicate; a change to any counter, time or label set is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_compare_canonical_keys_times_counters_and_label_sets() {
    let server = TestServer::start(1).await;
    let trace = |first_then_second: bool| {
        let a = hit(
            PolicyKind::CalicoNetworkPolicy,
            "security",
            "shop",
            "np-a",
            Action::Pass,
        );
        let mut b = hit(
            PolicyKind::GlobalNetworkPolicy,
            "default",
            "",
            "gnp-b",
            Action::Allow,
        );
        b.policy_index = 1;
        PolicyTrace {
            enforced_policies: if first_then_second {
                vec![a, b]
            } else {
                vec![b, a]
            },
            pending_policies: vec![],
        }
    };
    let mut k = key(("shop", "frontend"), ("shop", "checkout"));
    k.policies = Some(trace(true));
    let original = Flow {
        source_labels: vec!["app=frontend".into(), "tier=web".into()],
        dest_labels: vec!["app=checkout".into(), "team=pay".into(), "x=1,2".into()],
        ..counted(k.clone(), closed() + 1, 10, 1000, 2)
    };
    let mut reordered_key = k.clone();
    reordered_key.policies = Some(trace(false));
    let same = vec![
        // Labels in another order.
        Flow {
            source_labels: vec!["tier=web".into(), "app=frontend".into()],
            dest_labels: vec!["x=1,2".into(), "team=pay".into(), "app=checkout".into()],
            ..original.clone()
        },
        // Repeated labels: the same sets.
        Flow {
            source_labels: vec![
                "app=frontend".into(),
                "tier=web".into(),
                "app=frontend".into(),
            ],
            ..original.clone()
        },
        // Hits in another order: the same canonical key.
        Flow {
            key: Some(reordered_key),
            ..original.clone()
        },
    ];
    let different = vec![
        Flow {
            packets_in: 11,
            ..original.clone()
        },
        Flow {
            packets_out: 21,
            ..original.clone()
        },
        Flow {
            bytes_in: 1001,
            ..original.clone()
        },
        Flow {
            bytes_out: 2001,
            ..original.clone()
        },
        Flow {
            num_connections_started: 3,
            ..original.clone()
        },
        Flow {
            num_connections_completed: 3,
            ..original.clone()
        },
        Flow {
            num_connections_live: 1,
            ..original.clone()
        },
        // Another start and end in the same bucket.
        Flow {
            start_time: closed() + 2,
            end_time: closed() + 3,
            ..original.clone()
        },
        Flow {
            end_time: closed() + 9,
            ..original.clone()
        },
        // Another label set (a subset).
        Flow {
            dest_labels: vec!["app=checkout".into(), "team=pay".into()],
            ..original.clone()
        },
    ];
    server.ingest(vec![original.clone()]).await;
    server.ingest(same.clone()).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 3);
    let flows = server.list_all().await;
    assert_eq!(flows.len(), 1);
    let only = flows[0].flow.as_ref().expect("flow is set");
    assert_eq!(
        (only.packets_in, only.packets_out, only.bytes_in),
        (10, 20, 1000)
    );
    // The stored trace is in canonical order (§3.2) whichever order arrived.
    assert_eq!(
        only.key.as_ref().expect("key is set").policies,
        Some(trace(true))
    );

    server.ingest(different.clone()).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 3);
    assert_eq!(server.state.ingest.stored_total(), 11);
    let flows = server.list_all().await;
    assert_eq!(flows.len(), 1);
    let summed = flows[0].flow.as_ref().expect("flow is set");
    // Eleven updates of 10 packets in, 20 out, 1000 bytes in, 2000 out, 2 connections,
    // plus one extra unit in each of the changed counters.
    assert_eq!(summed.packets_in, 11 * 10 + 1);
    assert_eq!(summed.packets_out, 11 * 20 + 1);
    assert_eq!(summed.bytes_in, 11 * 1000 + 1);
    assert_eq!(summed.bytes_out, 11 * 2000 + 1);
    assert_eq!(summed.num_connections_started, 11 * 2 + 1);
    assert_eq!(summed.num_connections_completed, 11 * 2 + 1);
    assert_eq!(summed.num_connections_live, 1);
    assert_eq!(
        summed.dest_labels,
        vec!["app=checkout".to_string(), "team=pay".into()]
    );
    assert_eq!(
        summed.source_labels,
        vec!["app=frontend".to_string(), "tier=web".into()]
    );
    // Replaying the changed updates is absorbed too.
    server.ingest(different).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 13);
    let replayed = server.list_all().await;
    assert_eq!(
        replayed[0].flow.as_ref().expect("flow is set").packets_in,
        111
    );
    common::assert_accounting(&server.state);
}

/// An update is remembered for six minutes from its first arrival.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_remembered_for_six_minutes() {
    let server = TestServer::start(1).await;
    let update = counted(key(("a", "src"), ("b", "dst")), closed(), 4, 40, 1);
    server.ingest(vec![update.clone()]).await;
    server.advance_clock(359).await;
    server.ingest(vec![update.clone()]).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 1);
    server.advance_clock(2).await;
    server.ingest(vec![update.clone()]).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 1);
    // Counted again, and remembered again from now.
    server.ingest(vec![update]).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 2);
    let flows = server.list_all().await;
    assert_eq!(flows.len(), 1);
    let flow = flows[0].flow.as_ref().expect("flow is set");
    assert_eq!((flow.packets_in, flow.bytes_in), (8, 80));
    common::assert_accounting(&server.state);
}

/// Sends `flows` twice on one call, then once on a new call and once on a new TCP
/// connection.
async fn replay_three_ways(server: &TestServer, flows: &[Flow]) {
    let twice: Vec<Flow> = flows.iter().chain(flows).cloned().collect();
    server.ingest(twice).await;
    server.ingest(flows.to_vec()).await;
    let other = server.new_channel().await;
    send_on_new_connection(&other, flows.to_vec()).await;
}

fn replay_flows() -> Vec<Flow> {
    vec![
        counted(key(("a", "src"), ("b", "one")), closed(), 1, 10, 1),
        counted(key(("a", "src"), ("b", "two")), closed() + 1, 2, 20, 1),
    ]
}

/// With per-connection scope, a replay on a new connection is counted again; the same
/// update twice on one connection is still a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_scope_counts_replays_on_new_connections() {
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 240,
    };
    let config = ServerConfig {
        dedup_scope: DedupScope::Connection,
        ..ServerConfig::new(2, retention)
    };
    let server = TestServer::start_config(config, NOW).await;
    replay_three_ways(&server, &replay_flows()).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 2);
    assert_eq!(server.state.ingest.received_total(), 8);
    assert_eq!(server.state.ingest.stored_total(), 6);
    assert_eq!(
        totals_by_dest(&server).await,
        vec![
            ("one".to_string(), 3, 6, 30, 3),
            ("two".to_string(), 6, 12, 60, 3),
        ]
    );
    common::assert_accounting(&server.state);
}

/// With de-duplication off, every replay is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedup_off_counts_every_replay() {
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 240,
    };
    let config = ServerConfig {
        dedup_scope: DedupScope::Off,
        ..ServerConfig::new(1, retention)
    };
    let server = TestServer::start_config(config, NOW).await;
    replay_three_ways(&server, &replay_flows()).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 0);
    assert_eq!(server.state.ingest.stored_total(), 8);
    assert_eq!(
        totals_by_dest(&server).await,
        vec![
            ("one".to_string(), 4, 8, 40, 4),
            ("two".to_string(), 8, 16, 80, 4),
        ]
    );
    common::assert_accounting(&server.state);
}

/// The default scope over the same replays, for comparison: only the first copy counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_ip_scope_absorbs_every_replay() {
    let server = TestServer::start(2).await;
    replay_three_ways(&server, &replay_flows()).await;
    assert_eq!(skipped(&server, SkipReason::Duplicate), 6);
    assert_eq!(server.state.ingest.stored_total(), 2);
    assert_eq!(
        totals_by_dest(&server).await,
        vec![
            ("one".to_string(), 1, 2, 10, 1),
            ("two".to_string(), 2, 4, 20, 1),
        ]
    );
    common::assert_accounting(&server.state);
}

/// Request bytes that are not a valid message get INTERNAL, as tonic answers (SPEC §10.1),
/// on every hand-routed method (Flows, Statistics) and on the Connect stream; an unknown
/// method is UNIMPLEMENTED; the server keeps answering (SPEC §10.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_request_bytes_get_internal_and_the_server_keeps_answering() {
    let server = TestServer::start(2).await;
    server
        .ingest(vec![counted(
            key(("a", "src"), ("b", "before")),
            closed(),
            1,
            1,
            1,
        )])
        .await;
    let garbage: Vec<Vec<u8>> = vec![
        // A truncated varint.
        vec![0x08, 0xff, 0xff],
        // Wire type 7 does not exist.
        vec![0x0f, 0x01],
        // A length-delimited field longer than the message.
        vec![0x32, 0x7f, 0x01],
        // Field number 0.
        vec![0x00, 0x01],
    ];
    for bytes in &garbage {
        let status = raw_unary(&server.channel, "/goldmane.Flows/List", bytes.clone())
            .await
            .expect_err("garbage is not a FlowListRequest");
        assert_eq!(status.code(), Code::Internal, "{bytes:?}: {status}");
        assert_eq!(server.list_all().await.len(), 1);
    }
    // The other methods served by the hand-written router (Flows, Statistics) answer garbage
    // the same way, and an unknown method is UNIMPLEMENTED.
    for bytes in &garbage {
        let status = raw_unary(
            &server.channel,
            "/goldmane.Flows/FilterHints",
            bytes.clone(),
        )
        .await
        .expect_err("garbage is not a FilterHintsRequest");
        assert_eq!(status.code(), Code::Internal, "{bytes:?}: {status}");
        // The server-streaming methods: Flows.Stream, and Statistics.List (its results
        // written as bytes).
        for path in ["/goldmane.Flows/Stream", "/goldmane.Statistics/List"] {
            let (results, ended) = raw_streaming(&server.channel, path, vec![bytes.clone()]).await;
            assert!(results.is_empty());
            let status = ended.expect_err("garbage is not the method's request");
            assert_eq!(status.code(), Code::Internal, "{path} {bytes:?}: {status}");
        }
    }
    for path in ["/goldmane.Flows/Nope", "/goldmane.Statistics/Nope"] {
        let status = raw_unary(&server.channel, path, Vec::new())
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented, "{path}");
    }
    // The raw client itself works: an empty body is the default request.
    let answer = raw_unary(&server.channel, "/goldmane.Flows/List", Vec::new())
        .await
        .expect("an empty message is a valid default request");
    let decoded: FlowListResult =
        prost::Message::decode(&answer[..]).expect("the answer is a FlowListResult");
    assert_eq!(decoded.flows.len(), 1);

    // On Connect: the valid updates before the garbage are receipted and stored, then the call
    // ends with INTERNAL.
    let encode = |dest: &str, packets: i64| {
        prost::Message::encode_to_vec(&FlowUpdate {
            flow: Some(counted(
                key(("a", "src"), ("b", dest)),
                closed(),
                packets,
                1,
                1,
            )),
        })
    };
    let (receipts, end) = raw_streaming(
        &server.channel,
        "/goldmane.FlowCollector/Connect",
        vec![encode("raw-1", 2), encode("raw-2", 3), garbage[0].clone()],
    )
    .await;
    assert_eq!(receipts, vec![Vec::<u8>::new(), Vec::new()]);
    let status = end.expect_err("the call ends with an error");
    assert_eq!(status.code(), Code::Internal, "{status}");
    let (receipts, end) = raw_streaming(
        &server.channel,
        "/goldmane.FlowCollector/Connect",
        vec![garbage[1].clone(), encode("never", 4)],
    )
    .await;
    assert!(receipts.is_empty());
    assert_eq!(end.expect_err("an error").code(), Code::Internal);

    assert_eq!(
        totals_by_dest(&server).await,
        vec![
            ("before".to_string(), 1, 2, 1, 1),
            ("raw-1".to_string(), 2, 4, 1, 1),
            ("raw-2".to_string(), 3, 6, 1, 1),
        ]
    );
    // And Connect still works normally.
    server
        .ingest(vec![counted(
            key(("a", "src"), ("b", "after")),
            closed(),
            5,
            1,
            1,
        )])
        .await;
    assert_eq!(server.list_all().await.len(), 4);
    common::assert_accounting(&server.state);
}

/// An update that needs a new entry in a full catalog table is not receipted: the call ends
/// with RESOURCE_EXHAUSTED after the receipts of the updates before it, nothing after it is
/// read, and the refusal is counted; updates using known values are still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_overflowing_a_catalog_table_ends_the_call_unreceipted() {
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 240,
    };
    let config = ServerConfig {
        // "" (always present), "shop", "frontend", "TCP" and "cart"; the empty label set and
        // one more; the empty trace only.
        catalog: small_catalog(5, 2, 1),
        ..ServerConfig::new(2, retention)
    };
    let server = TestServer::start_config(config, NOW).await;
    let dest = |name: &str| key(("shop", "frontend"), ("shop", name));
    let mut with_policy = dest("cart");
    with_policy.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "",
            "",
            "",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    // Each overflowing update (a sixth string, a third label set, a second trace) ends its
    // call after the receipts of the updates before it; the update after it is never read.
    let overflowing = [
        counted(dest("search"), closed(), 3, 1, 1),
        Flow {
            dest_labels: vec!["app=cart".into()],
            ..counted(dest("cart"), closed(), 5, 1, 1)
        },
        counted(with_policy, closed(), 6, 1, 1),
    ];
    let fits = [
        // The fifth string.
        counted(dest("cart"), closed(), 2, 1, 1),
        // The second label set.
        Flow {
            source_labels: vec!["app=frontend".into()],
            ..counted(dest("cart"), closed(), 4, 1, 1)
        },
        counted(dest("cart"), closed(), 1, 1, 1),
    ];
    for (fitting, overflow) in fits.into_iter().zip(overflowing) {
        let mut conn = CollectorConn::open(&server.channel).await;
        conn.send_flow(fitting).await;
        conn.send_flow(overflow).await;
        conn.send_flow(counted(dest("cart"), closed(), 8, 1, 1))
            .await;
        conn.receipt().await;
        let ended = conn.next().await.expect_err("the call ends with an error");
        assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    }
    assert_eq!(server.state.catalog.refused_total(), 3);
    assert_eq!(server.state.ingest.stored_total(), 3);
    assert_eq!(server.state.ingest.received_total(), 3);
    // Known values only: stored as before.
    let mut conn = CollectorConn::open(&server.channel).await;
    conn.send_and_wait(counted(dest("cart"), closed(), 7, 1, 1))
        .await;
    conn.close().await;
    let flows = server.list_all().await;
    let mut seen: Vec<(String, i64, Vec<String>)> = flows
        .into_iter()
        .map(|result| {
            let flow = result.flow.expect("flow is set");
            (
                flow.key.expect("key is set").dest_name,
                flow.packets_in,
                flow.source_labels,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![("cart".to_string(), 2 + 4 + 1 + 7, vec![])]);
    assert_eq!(server.state.catalog.symbols.lookup("search"), None);
    common::assert_accounting(&server.state);
}

/// Catalog bounds in entries (bytes unbounded in effect).
fn small_catalog(strings: usize, label_sets: usize, traces: usize) -> eddy::catalog::CatalogLimits {
    use eddy::intern::TableLimit;
    eddy::catalog::CatalogLimits {
        strings: TableLimit::entries(strings),
        label_sets: TableLimit::entries(label_sets),
        traces: TableLimit::entries(traces),
        ..Default::default()
    }
}

/// A table's byte bound holds like its entry bound: the update whose string would pass it ends
/// the call unreceipted, and the refusal is counted for that table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_over_the_byte_bound_ends_the_call_unreceipted() {
    use eddy::intern::{CatalogTable, TableLimit};
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 240,
    };
    let config = ServerConfig {
        // "", "shop", "frontend", "TCP" and "cart": 19 bytes.
        catalog: eddy::catalog::CatalogLimits {
            strings: TableLimit {
                entries: 1_000,
                bytes: 19,
            },
            ..Default::default()
        },
        ..ServerConfig::new(2, retention)
    };
    let server = TestServer::start_config(config, NOW).await;
    let dest = |name: &str| key(("shop", "frontend"), ("shop", name));
    let mut conn = CollectorConn::open(&server.channel).await;
    conn.send_and_wait(counted(dest("cart"), closed(), 1, 1, 1))
        .await;
    conn.send_flow(counted(dest("a"), closed(), 2, 1, 1)).await;
    let ended = conn.next().await.expect_err("the call ends with an error");
    assert_eq!(ended.code(), Code::ResourceExhausted, "{ended:?}");
    let catalog = &server.state.catalog;
    assert_eq!(catalog.refused_for(CatalogTable::Strings), 1);
    assert_eq!(catalog.bytes_of(CatalogTable::Strings), 19);
    assert_eq!(server.state.ingest.stored_total(), 1);
    common::assert_accounting(&server.state);
}
