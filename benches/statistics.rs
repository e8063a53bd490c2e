//! Statistics latency: 1,000 policies over 240 buckets (one flow per policy per bucket, each
//! hitting one enforced and one pending rule), then `Statistics.List` through a real client:
//! per policy with a time series, per rule without, and one policy matched by name.
//!
//! `cargo bench --bench statistics`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

mod support;

use std::sync::Arc;

use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    Action, Flow, FlowKey, FlowUpdate, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace,
    StatisticType, StatisticsGroupBy, StatisticsRequest,
};
use eddy::retention::Retention;
use eddy::server::ServerConfig;
use eddy::worker::clock::ManualClock;
use support::cluster::reporter;
use support::ingest::send_receipted;
use support::measure::timed_statistics;
use support::server::{connect, start_server, workers_per_core};

const POLICIES: usize = 1_000;
const BUCKETS: i64 = 240;
const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;
/// Updates the loading Connect call may have sent without a receipt.
const UNRECEIPTED: usize = 4096;

fn policy_hit(policy: usize, action: Action, rule: i64) -> PolicyHit {
    PolicyHit {
        kind: PolicyKind::CalicoNetworkPolicy as i32,
        namespace: format!("ns-{}", policy % 50),
        name: format!("policy-{policy}"),
        tier: format!("tier-{}", policy % 4),
        action: action as i32,
        policy_index: 0,
        rule_index: rule,
        trigger: None,
    }
}

fn update(policy: usize, start: i64) -> FlowUpdate {
    FlowUpdate {
        flow: Some(Flow {
            key: Some(FlowKey {
                source_name: format!("client-{}", policy % 97),
                source_namespace: format!("ns-{}", policy % 50),
                dest_name: format!("server-{policy}"),
                dest_namespace: format!("ns-{}", policy % 50),
                dest_port: 443,
                proto: "TCP".into(),
                reporter: reporter(policy as u64) as i32,
                action: Action::Allow as i32,
                policies: Some(PolicyTrace {
                    enforced_policies: vec![policy_hit(policy, Action::Allow, 1)],
                    pending_policies: vec![policy_hit(policy, Action::Deny, 2)],
                }),
                ..Default::default()
            }),
            start_time: start,
            end_time: start,
            packets_in: 10,
            packets_out: 5,
            bytes_in: 1000,
            bytes_out: 500,
            num_connections_started: 1,
            num_connections_live: 1,
            ..Default::default()
        }),
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: BUCKETS,
        };
        let (_state, address) = start_server(
            ServerConfig::new(workers_per_core(), retention),
            Arc::new(ManualClock::new(NOW)),
        )
        .await;
        let channel = connect(address).await;
        let oldest = retention.oldest(NOW);
        let updates = (0..POLICIES * BUCKETS as usize).map(move |index| {
            let (bucket, policy) = (index / POLICIES, index % POLICIES);
            update(policy, oldest + bucket as i64 * WINDOW + 1)
        });
        send_receipted(channel.clone(), UNRECEIPTED, updates).await;
        let mut client = StatisticsClient::new(channel);
        let cases = [
            (
                "per policy, time series",
                StatisticsGroupBy::Policy,
                true,
                None,
            ),
            (
                "per rule, totals",
                StatisticsGroupBy::PolicyRule,
                false,
                None,
            ),
            (
                "one policy by name, time series",
                StatisticsGroupBy::Policy,
                true,
                Some(PolicyMatch {
                    name: "policy-7".into(),
                    ..Default::default()
                }),
            ),
        ];
        println!("| query | results | p50 | p99 |");
        println!("|---|---|---|---|");
        for (name, group_by, time_series, policy_match) in cases {
            let mut times = Vec::new();
            let mut results = 0;
            for _ in 0..20 {
                let request = StatisticsRequest {
                    r#type: StatisticType::PacketCount as i32,
                    group_by: group_by as i32,
                    time_series,
                    policy_match: policy_match.clone(),
                    ..Default::default()
                };
                let (elapsed, count) = timed_statistics(&mut client, request).await;
                times.push(elapsed);
                results = count;
            }
            times.sort();
            println!(
                "| {name} | {results} | {:.1} ms | {:.1} ms |",
                times[times.len() / 2].as_secs_f64() * 1e3,
                times[times.len() * 99 / 100].as_secs_f64() * 1e3
            );
        }
    });
}
