//! Statistics end to end (SPEC §8): policy and rule groupings over a flow with enforced and
//! pending hits.

mod common;

use common::*;
use eddy::proto::{
    Action, PolicyKind, PolicyTrace, StatisticType, StatisticsGroupBy, StatisticsRequest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforced_allow_and_pending_deny_fill_both_columns() {
    let server = TestServer::start(2).await;
    let start = bucket(NOW) - WINDOW;
    let mut k = key(("shop", "frontend"), ("shop", "checkout"));
    let mut allow = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "web",
        Action::Allow,
    );
    allow.rule_index = 2;
    let deny = hit(
        PolicyKind::CalicoNetworkPolicy,
        "default",
        "shop",
        "web",
        Action::Deny,
    );
    k.policies = Some(PolicyTrace {
        enforced_policies: vec![allow],
        pending_policies: vec![deny],
    });
    server.ingest(vec![flow(k, start + 2, 10)]).await;
    let mut client = server.statistics();
    let mut stream = client
        .list(StatisticsRequest {
            r#type: StatisticType::PacketCount as i32,
            group_by: StatisticsGroupBy::Policy as i32,
            ..Default::default()
        })
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.expect("results stream") {
        results.push(result);
    }
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].allowed_in, vec![10]);
    assert_eq!(results[0].denied_in, vec![10]);
    assert_eq!(results[0].passed_in, vec![0]);
    assert_eq!(
        results[0].policy.as_ref().map(|p| p.name.as_str()),
        Some("web")
    );

    let mut stream = client
        .list(StatisticsRequest {
            r#type: StatisticType::ByteCount as i32,
            group_by: StatisticsGroupBy::PolicyRule as i32,
            time_series: true,
            start_time_gte: start - WINDOW,
            ..Default::default()
        })
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut results = Vec::new();
    while let Some(result) = stream.message().await.expect("results stream") {
        results.push(result);
    }
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].x, vec![start - WINDOW, start, start + WINDOW]);
    assert_eq!(results[0].policy.as_ref().map(|p| p.rule_index), Some(2));
    assert_eq!(results[0].allowed_in, vec![0, 1000, 0]);
    assert_eq!(results[1].denied_out, vec![0, 1000, 0]);
    common::assert_accounting(&server.state);
}
