//! Statistics latency: 1,000 policies over 240 buckets (one flow per policy per bucket, each
//! hitting one enforced and one pending rule), then `Statistics.List` through a real client:
//! per policy with a time series, per rule without, and one policy matched by name.
//!
//! `cargo bench --bench statistics`.

#![allow(clippy::print_stdout, reason = "a benchmark prints its report")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy::proto::flow_collector_client::FlowCollectorClient;
use eddy::proto::statistics_client::StatisticsClient;
use eddy::proto::{
    Action, Flow, FlowKey, FlowUpdate, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace, Reporter,
    StatisticType, StatisticsGroupBy, StatisticsRequest,
};
use eddy::retention::Retention;
use eddy::server::{build_state, serve, ServerConfig};
use eddy::worker::clock::ManualClock;
use tokio_stream::wrappers::ReceiverStream;

const POLICIES: usize = 1_000;
const BUCKETS: i64 = 240;
const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_107;

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
                reporter: if policy % 2 == 0 {
                    Reporter::Src
                } else {
                    Reporter::Dst
                } as i32,
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

async fn timed(
    client: &mut StatisticsClient<tonic::transport::Channel>,
    request: StatisticsRequest,
) -> (Duration, usize) {
    let started = Instant::now();
    let mut stream = client
        .list(request)
        .await
        .expect("Statistics succeeds")
        .into_inner();
    let mut results = 0;
    while let Some(_result) = stream.message().await.expect("results arrive") {
        results += 1;
    }
    (started.elapsed(), results)
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async {
        let retention = Retention {
            window: WINDOW,
            closed_buckets: BUCKETS,
        };
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let state = build_state(
            ServerConfig::new(workers, retention),
            Arc::new(ManualClock::new(NOW)),
        )
        .expect("the engine starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let address = listener.local_addr().expect("an address");
        tokio::spawn(serve(state.clone(), listener, std::future::pending()));
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("a valid URI")
            .connect()
            .await
            .expect("the server is up");
        let (tx, rx) = tokio::sync::mpsc::channel(4096);
        let mut receipts = FlowCollectorClient::new(channel.clone())
            .connect(ReceiverStream::new(rx))
            .await
            .expect("Connect is accepted")
            .into_inner();
        let total = POLICIES * BUCKETS as usize;
        let sender = tokio::spawn(async move {
            let oldest = retention.oldest(NOW);
            for bucket in 0..BUCKETS {
                for policy in 0..POLICIES {
                    let _ = tx.send(update(policy, oldest + bucket * WINDOW + 1)).await;
                }
            }
        });
        for _ in 0..total {
            receipts
                .message()
                .await
                .expect("a receipt")
                .expect("one per update");
        }
        sender.await.expect("the sender finishes");
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
                let (elapsed, count) = timed(&mut client, request).await;
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
