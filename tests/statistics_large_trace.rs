//! Statistics of one flow whose trace is as large as an update may carry (SPEC §8, §12.1,
//! §12.3): one result per distinct rule, each on the whole shared time axis, streamed one at a
//! time rather than all built before the first is sent.

mod common;

use common::*;
use eddy::proto::{
    Action, PolicyHit, PolicyKind, PolicyTrace, StatisticType, StatisticsGroupBy, StatisticsRequest,
};

fn hits(prefix: &str, count: usize) -> Vec<PolicyHit> {
    (0..count)
        .map(|index| {
            let mut hit = hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                "shop",
                &format!("{prefix}-{index}"),
                Action::Allow,
            );
            hit.rule_index = index as i64;
            hit
        })
        .collect()
}

#[tokio::test]
async fn a_trace_of_the_largest_size_gives_one_dense_result_per_rule() {
    let server = TestServer::start(2).await;
    let mut key = key(("shop", "client"), ("shop", "web"));
    key.policies = Some(PolicyTrace {
        enforced_policies: hits("enforced", 256),
        pending_policies: hits("pending", 256),
    });
    server.ingest(vec![flow(key, NOW - 20, 3)]).await;
    for _ in 0..3 {
        let mut stream = server
            .statistics()
            .list(StatisticsRequest {
                r#type: StatisticType::PacketCount as i32,
                group_by: StatisticsGroupBy::PolicyRule as i32,
                time_series: true,
                ..Default::default()
            })
            .await
            .expect("Statistics.List succeeds")
            .into_inner();
        let mut results = Vec::new();
        while let Some(result) = stream.message().await.expect("the stream has no error") {
            results.push(result);
        }
        assert_eq!(results.len(), 512);
        let width = results[0].x.len();
        assert_eq!(width, 241, "240 closed buckets and the current one");
        for result in &results {
            assert_eq!(result.x, results[0].x);
            assert_eq!(result.allowed_in.len(), width);
            assert_eq!(result.allowed_in.iter().sum::<i64>(), 3);
        }
    }
}
