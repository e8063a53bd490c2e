//! Queries that do not wait (issue 10) through real gRPC: identical concurrent Lists share one
//! engine read, and a receipted update is visible to every later List, FilterHints and
//! Statistics while other `Connect` streams ingest at full speed beside them (SPEC §9.1).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use eddy::proto::{
    Action, FilterHintsRequest, FilterType, FlowListRequest, PolicyKind, PolicyMatch, PolicyTrace,
    StatisticType, StatisticsGroupBy, StatisticsRequest,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::worker::shared_reads::{ReadKind, ReadLimits};
use tokio::task::JoinSet;

const RETENTION: Retention = Retention {
    window: WINDOW,
    closed_buckets: 240,
};

/// A server whose queries run one read at a time and share up to `max_waiters` callers.
async fn server(workers: usize, max_waiters: usize) -> TestServer {
    let config = ServerConfig {
        reads: ReadLimits {
            in_flight: 1,
            max_waiters,
        },
        ..ServerConfig::new(workers, RETENTION)
    };
    TestServer::start_config(config, NOW).await
}

fn filter_dest_name(name: &str) -> eddy::proto::Filter {
    eddy::proto::Filter {
        dest_names: vec![exact(name)],
        ..Default::default()
    }
}

async fn identical_lists_share_one_read(workers: usize) {
    const CALLERS: u64 = 24;
    let server = server(workers, 64).await;
    let start = bucket(NOW) - WINDOW;
    let flows: Vec<_> = (0..40)
        .map(|i| {
            flow(
                key(("shop", &format!("client-{i}")), ("shop", "checkout")),
                start + 1,
                i + 1,
            )
        })
        .collect();
    server.ingest(flows).await;
    let slots = server.state.engine.read_slots().clone();
    let before = slots.totals();
    // Hold the only read slot so every caller finds the first one's read still waiting.
    let held = slots.acquire().await;
    let request = FlowListRequest {
        page_size: 10,
        ..Default::default()
    };
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let mut client = server.flows();
        let request = request.clone();
        callers.spawn(async move {
            client
                .list(request)
                .await
                .expect("List succeeds")
                .into_inner()
        });
    }
    let mut totals = slots.watch_totals();
    totals
        .wait_for(|totals| {
            totals.joined(ReadKind::List) == before.joined(ReadKind::List) + CALLERS - 1
        })
        .await
        .expect("the totals live as long as the engine");
    drop(held);
    let mut answers = Vec::new();
    while let Some(answer) = callers.join_next().await {
        answers.push(answer.expect("a caller finishes"));
    }
    let after = slots.totals();
    assert_eq!(
        after.dispatched(ReadKind::List) - before.dispatched(ReadKind::List),
        1
    );
    assert_eq!(
        after.joined(ReadKind::List) - before.joined(ReadKind::List),
        CALLERS - 1
    );
    assert_eq!(answers.len(), CALLERS as usize);
    let first = &answers[0];
    assert_eq!(first.flows.len(), 10);
    assert_eq!(first.meta.as_ref().map(|meta| meta.total_results), Some(40));
    for answer in &answers {
        assert_eq!(answer, first);
    }
    // Without a held slot the answer is the same one a lone caller gets.
    assert_eq!(&list_ok(&server, request).await, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_lists_share_one_engine_read_with_one_worker() {
    identical_lists_share_one_read(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_concurrent_lists_share_one_engine_read_with_two_workers() {
    identical_lists_share_one_read(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_read_answers_at_most_max_waiters_callers() {
    const CALLERS: u64 = 10;
    let server = server(2, 4).await;
    server
        .ingest(vec![flow(
            key(("shop", "a"), ("shop", "b")),
            bucket(NOW) - WINDOW,
            3,
        )])
        .await;
    let slots = server.state.engine.read_slots().clone();
    let before = slots.totals();
    let held = slots.acquire().await;
    let mut callers = JoinSet::new();
    for _ in 0..CALLERS {
        let mut client = server.flows();
        callers.spawn(async move {
            client
                .list(FlowListRequest::default())
                .await
                .expect("List succeeds")
                .into_inner()
        });
    }
    // Ten callers, four per read: reads of 4, 4 and 2 callers, seven of them joined.
    let mut totals = slots.watch_totals();
    totals
        .wait_for(|totals| totals.joined(ReadKind::List) == before.joined(ReadKind::List) + 7)
        .await
        .expect("the totals live as long as the engine");
    drop(held);
    while let Some(answer) = callers.join_next().await {
        assert_eq!(answer.expect("a caller finishes").flows.len(), 1);
    }
    assert_eq!(
        slots.totals().dispatched(ReadKind::List) - before.dispatched(ReadKind::List),
        3
    );
}

/// Source names one background stream cycles through.
const BUSY_NAMES: i64 = 5_000;

/// Keeps a `Connect` stream ingesting flows into namespace `busy` until `stop`, cycling
/// through [`BUSY_NAMES`] source names; returns how many distinct keys it sent.
async fn ingest_until(
    channel: tonic::transport::Channel,
    stream: usize,
    stop: Arc<AtomicBool>,
) -> i64 {
    let mut conn = CollectorConn::open(&channel).await;
    let start = bucket(NOW) - WINDOW;
    let mut sent = 0i64;
    loop {
        for _ in 0..256 {
            let name = format!("load-{stream}-{}", sent % BUSY_NAMES);
            conn.send_flow(flow(key(("busy", &name), ("busy", "sink")), start + 3, 1))
                .await;
            sent += 1;
        }
        conn.receipts(256).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    conn.close().await;
    sent.min(BUSY_NAMES)
}

async fn receipted_updates_are_visible_under_ingest(workers: usize) {
    let server = TestServer::start(workers).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut background = JoinSet::new();
    for stream in 0..3 {
        let channel = server.new_channel().await;
        background.spawn(ingest_until(channel, stream, stop.clone()));
    }
    let start = bucket(NOW) - WINDOW;
    let mut conn = CollectorConn::open(&server.new_channel().await).await;
    for round in 0..12i64 {
        let dest = format!("dest-{round}");
        let policy = format!("policy-{round}");
        let mut k = key(("probe", "client"), ("probe", &dest));
        k.policies = Some(PolicyTrace {
            enforced_policies: vec![hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                "probe",
                &policy,
                Action::Allow,
            )],
            pending_policies: vec![],
        });
        conn.send_and_wait(flow(k, start + 2, round + 1)).await;

        let listed = list_ok(
            &server,
            FlowListRequest {
                filter: Some(filter_dest_name(&dest)),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(
            listed.flows.len(),
            1,
            "round {round}: the receipted flow is listed"
        );
        assert_eq!(flow_of(&listed.flows[0]).packets_in, round + 1);

        let hints = server
            .flows()
            .filter_hints(FilterHintsRequest {
                r#type: FilterType::DestName as i32,
                filter: Some(eddy::proto::Filter {
                    dest_namespaces: vec![exact("probe")],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("FilterHints succeeds")
            .into_inner();
        let mut expected: Vec<String> = (0..=round).map(|r| format!("dest-{r}")).collect();
        expected.sort();
        let values: Vec<String> = hints.hints.into_iter().map(|hint| hint.value).collect();
        assert_eq!(
            values, expected,
            "round {round}: every receipted name is a hint"
        );

        let mut stream = server
            .statistics()
            .list(StatisticsRequest {
                r#type: StatisticType::PacketCount as i32,
                group_by: StatisticsGroupBy::Policy as i32,
                policy_match: Some(PolicyMatch {
                    name: policy.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("Statistics succeeds")
            .into_inner();
        let mut results = Vec::new();
        while let Some(result) = stream.message().await.expect("results stream") {
            results.push(result);
        }
        assert_eq!(
            results.len(),
            1,
            "round {round}: the receipted policy counts"
        );
        assert_eq!(results[0].allowed_in, vec![round + 1]);
    }
    stop.store(true, Ordering::Relaxed);
    let mut busy_keys = 0;
    while let Some(done) = background.join_next().await {
        busy_keys += done.expect("a background stream ends cleanly");
    }
    conn.close().await;
    // Every background update was receipted, so the busy namespace holds every key sent.
    let busy = list_ok(
        &server,
        FlowListRequest {
            filter: Some(eddy::proto::Filter {
                dest_namespaces: vec![exact("busy")],
                ..Default::default()
            }),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert!(busy_keys >= 3 * 256, "each background stream sent a round");
    assert_eq!(
        busy.meta.as_ref().map(|meta| meta.total_results),
        Some(busy_keys)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipted_updates_are_visible_to_later_queries_under_ingest_with_one_worker() {
    receipted_updates_are_visible_under_ingest(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipted_updates_are_visible_to_later_queries_under_ingest_with_two_workers() {
    receipted_updates_are_visible_under_ingest(2).await;
}
