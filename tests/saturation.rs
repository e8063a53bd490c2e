//! Counters that reach `i64::MAX` through gRPC (SPEC §12.2): sums saturate and never wrap in
//! List (per key and per aggregation window) and in Statistics (summed and as a time series),
//! and expiry of a saturated row removes it whole, leaving nothing behind in any view.

mod common;

use common::*;
use eddy::proto::{
    Action, Flow, FlowListRequest, PolicyKind, PolicyTrace, StatisticType, StatisticsGroupBy,
    StatisticsRequest, StatisticsResult,
};
use eddy::retention::Retention;

const MAX: i64 = i64::MAX;

/// A flow of one key whose `packets_in` and `bytes_in` are `i64::MAX`; `packets_out` tells
/// updates apart so they are not de-duplicated.
fn huge(start: i64, packets_out: i64) -> Flow {
    let mut key = key(("shop", "client"), ("shop", "web"));
    key.policies = Some(PolicyTrace {
        enforced_policies: vec![hit(
            PolicyKind::CalicoNetworkPolicy,
            "default",
            "shop",
            "allow-web",
            Action::Allow,
        )],
        pending_policies: vec![],
    });
    let mut flow = flow(key, start, 1);
    flow.packets_in = MAX;
    flow.bytes_in = MAX;
    flow.packets_out = packets_out;
    flow
}

/// (packets_in, packets_out, bytes_in, updates) of every listed row, in list order.
fn counters(flows: &[eddy::proto::FlowResult]) -> Vec<(i64, i64, i64, i64)> {
    flows
        .iter()
        .map(|result| {
            let flow = flow_of(result);
            (
                flow.packets_in,
                flow.packets_out,
                flow.bytes_in,
                flow.num_connections_started,
            )
        })
        .collect()
}

async fn statistics(server: &TestServer, time_series: bool) -> Vec<StatisticsResult> {
    let mut stream = server
        .statistics()
        .list(StatisticsRequest {
            r#type: StatisticType::PacketCount as i32,
            group_by: StatisticsGroupBy::Policy as i32,
            time_series,
            ..Default::default()
        })
        .await
        .expect("Statistics.List succeeds")
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.expect("the stream has no error") {
        results.push(result);
    }
    results
}

#[tokio::test]
async fn two_maximal_updates_of_one_flow_list_as_the_maximum_not_a_wrapped_sum() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        server
            .ingest(vec![huge(NOW - 20, 1), huge(NOW - 20, 2)])
            .await;
        assert_eq!(
            counters(&server.list_all().await),
            vec![(MAX, 3, MAX, 2)],
            "{workers} workers, one bucket"
        );
        // Two more in two other buckets: the per-key aggregate and each window saturate.
        server.ingest(vec![huge(NOW - 50, 4), huge(NOW, 8)]).await;
        assert_eq!(
            counters(&server.list_all().await),
            vec![(MAX, 15, MAX, 4)],
            "{workers} workers, three buckets"
        );
        let per_window = list_ok(
            &server,
            FlowListRequest {
                aggregation_interval: 30,
                ..Default::default()
            },
        )
        .await;
        let mut windows = counters(&per_window.flows);
        windows.sort();
        assert_eq!(
            windows,
            vec![(MAX, 3, MAX, 2), (MAX, 4, MAX, 1), (MAX, 8, MAX, 1)],
            "{workers} workers, 30 s windows"
        );
    }
}

#[tokio::test]
async fn statistics_of_maximal_counters_saturate_summed_and_per_bucket() {
    for workers in [1, 2] {
        let server = TestServer::start(workers).await;
        server
            .ingest(vec![huge(NOW - 20, 1), huge(NOW - 20, 2), huge(NOW, 4)])
            .await;
        let summed = statistics(&server, false).await;
        assert_eq!(summed.len(), 1, "{workers} workers: one policy");
        assert_eq!(summed[0].allowed_in, vec![MAX], "{workers} workers");
        assert_eq!(summed[0].allowed_out, vec![7], "{workers} workers");
        let series = statistics(&server, true).await;
        assert_eq!(series.len(), 1, "{workers} workers: one policy");
        let x = &series[0].x;
        let slot = |t: i64| {
            x.iter()
                .position(|start| *start == bucket(t))
                .expect("the bucket is on the axis")
        };
        assert_eq!(series[0].allowed_in[slot(NOW - 20)], MAX);
        assert_eq!(series[0].allowed_in[slot(NOW)], MAX);
        assert_eq!(series[0].allowed_out[slot(NOW - 20)], 3);
        assert_eq!(series[0].allowed_in.iter().filter(|v| **v != 0).count(), 2);
    }
}

#[tokio::test]
async fn a_saturated_row_that_expires_leaves_nothing_behind() {
    let short = Retention {
        window: 1,
        closed_buckets: 5,
    };
    for workers in [1, 2] {
        let server = TestServer::start_with(workers, short, NOW).await;
        server
            .ingest(vec![huge(NOW - 2, 1), huge(NOW - 2, 2), huge(NOW - 2, 5)])
            .await;
        assert_eq!(counters(&server.list_all().await), vec![(MAX, 8, MAX, 3)]);
        assert_eq!(statistics(&server, false).await.len(), 1);
        server.advance_clock(10).await;
        assert_eq!(server.list_all().await, vec![], "{workers} workers: List");
        assert_eq!(
            statistics(&server, false).await,
            vec![],
            "{workers} workers: Statistics"
        );
        // A new, small update of the same flow is counted from zero.
        let key = huge(NOW, 1).key.expect("huge flows have a key");
        server.ingest(vec![flow(key, NOW + 8, 3)]).await;
        let after = counters(&server.list_all().await);
        assert_eq!(
            after,
            vec![(3, 3, 300, 1)],
            "{workers} workers: after expiry"
        );
    }
}
