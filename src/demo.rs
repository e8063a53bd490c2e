//! Demo traffic: a small simulated cluster whose nodes report flows to the server over its own
//! gRPC `Connect`, every few seconds, so a newcomer sees flows at once (`eddy serve --demo`).
//!
//! The cluster is fixed and seeded: a few namespaces with services, clients calling them,
//! denied probes from the public network, policy traces with tiers, staged policies and
//! end-of-tier hits, and pod labels.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio_stream::wrappers::ReceiverStream;

use crate::proto::flow_collector_client::FlowCollectorClient;
use crate::proto::{
    Action, EndpointType, Flow, FlowKey, FlowUpdate, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

/// How often each simulated node reports.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

struct Service {
    namespace: &'static str,
    name: &'static str,
    port: i64,
    proto: &'static str,
}

const SERVICES: [Service; 8] = [
    Service {
        namespace: "shop",
        name: "frontend",
        port: 8080,
        proto: "TCP",
    },
    Service {
        namespace: "shop",
        name: "checkout",
        port: 5050,
        proto: "TCP",
    },
    Service {
        namespace: "shop",
        name: "cart",
        port: 7070,
        proto: "TCP",
    },
    Service {
        namespace: "payments",
        name: "ledger",
        port: 9000,
        proto: "TCP",
    },
    Service {
        namespace: "payments",
        name: "fraud-check",
        port: 9443,
        proto: "TCP",
    },
    Service {
        namespace: "kube-system",
        name: "kube-dns",
        port: 53,
        proto: "UDP",
    },
    Service {
        namespace: "monitoring",
        name: "prometheus",
        port: 9090,
        proto: "TCP",
    },
    Service {
        namespace: "shop",
        name: "redis",
        port: 6379,
        proto: "TCP",
    },
];

/// (client index, server index) pairs that talk; every service also resolves DNS.
const CALLS: [(usize, usize); 7] = [(0, 1), (0, 2), (1, 3), (1, 4), (2, 7), (6, 0), (6, 3)];

fn hit(
    kind: PolicyKind,
    tier: &str,
    namespace: &str,
    name: &str,
    action: Action,
    index: i64,
) -> PolicyHit {
    PolicyHit {
        kind: kind as i32,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action: action as i32,
        policy_index: index,
        rule_index: 0,
        trigger: None,
    }
}

fn allow_trace(dest: &Service) -> PolicyTrace {
    PolicyTrace {
        enforced_policies: vec![
            hit(
                PolicyKind::GlobalNetworkPolicy,
                "platform",
                "",
                "allow-dns-and-monitoring",
                Action::Pass,
                0,
            ),
            hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                dest.namespace,
                &format!("allow-to-{}", dest.name),
                Action::Allow,
                1,
            ),
        ],
        pending_policies: vec![
            hit(
                PolicyKind::GlobalNetworkPolicy,
                "platform",
                "",
                "allow-dns-and-monitoring",
                Action::Pass,
                0,
            ),
            hit(
                PolicyKind::StagedNetworkPolicy,
                "default",
                dest.namespace,
                &format!("staged-tighten-{}", dest.name),
                Action::Allow,
                1,
            ),
        ],
    }
}

fn deny_trace(dest: &Service) -> PolicyTrace {
    let mut end_of_tier = hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny, 1);
    end_of_tier.trigger = Some(Box::new(hit(
        PolicyKind::NetworkPolicy,
        "default",
        dest.namespace,
        "default-deny",
        Action::Deny,
        1,
    )));
    PolicyTrace {
        enforced_policies: vec![end_of_tier.clone()],
        pending_policies: vec![end_of_tier],
    }
}

fn labels(service: &Service) -> Vec<String> {
    vec![
        format!("app={}", service.name),
        format!("team={}", service.namespace),
        "managed-by=helm".into(),
    ]
}

/// The flows one node reports for the interval ending at `now`.
pub fn node_report(node: usize, now: i64, rng: &mut SmallRng) -> Vec<Flow> {
    let mut flows = Vec::new();
    let mut push =
        |key: FlowKey, source_labels: Vec<String>, dest_labels: Vec<String>, rng: &mut SmallRng| {
            let connections = rng.random_range(1..20);
            let packets = connections * rng.random_range(5..200);
            flows.push(Flow {
                key: Some(key),
                start_time: now,
                end_time: now,
                source_labels,
                dest_labels,
                packets_in: packets,
                packets_out: packets + rng.random_range(0..50),
                bytes_in: packets * rng.random_range(60..1400),
                bytes_out: packets * rng.random_range(60..1400),
                num_connections_started: connections,
                num_connections_completed: connections - rng.random_range(0..=connections),
                num_connections_live: rng.random_range(0..5),
            });
        };
    for (index, &(client, server)) in CALLS.iter().enumerate() {
        if index % 3 != node % 3 {
            continue;
        }
        let (source, dest) = (&SERVICES[client], &SERVICES[server]);
        for reporter in [Reporter::Src, Reporter::Dst] {
            let key = FlowKey {
                source_name: format!("{}-*", source.name),
                source_namespace: source.namespace.into(),
                source_type: EndpointType::WorkloadEndpoint as i32,
                dest_name: format!("{}-*", dest.name),
                dest_namespace: dest.namespace.into(),
                dest_type: EndpointType::WorkloadEndpoint as i32,
                dest_port: dest.port,
                dest_service_name: dest.name.into(),
                dest_service_namespace: dest.namespace.into(),
                dest_service_port_name: "http".into(),
                dest_service_port: dest.port,
                proto: dest.proto.into(),
                reporter: reporter as i32,
                action: Action::Allow as i32,
                policies: Some(allow_trace(dest)),
            };
            push(key, labels(source), labels(dest), rng);
        }
    }
    let dns = &SERVICES[5];
    let source = &SERVICES[node % SERVICES.len()];
    let key = FlowKey {
        source_name: format!("{}-*", source.name),
        source_namespace: source.namespace.into(),
        source_type: EndpointType::WorkloadEndpoint as i32,
        dest_name: "kube-dns-*".into(),
        dest_namespace: dns.namespace.into(),
        dest_type: EndpointType::WorkloadEndpoint as i32,
        dest_port: dns.port,
        dest_service_name: dns.name.into(),
        dest_service_namespace: dns.namespace.into(),
        dest_service_port_name: "dns".into(),
        dest_service_port: dns.port,
        proto: "UDP".into(),
        reporter: Reporter::Src as i32,
        action: Action::Allow as i32,
        policies: Some(allow_trace(dns)),
    };
    push(key, labels(source), labels(dns), rng);
    if rng.random_bool(0.5) {
        let target = &SERVICES[3 + node % 2];
        let key = FlowKey {
            source_name: "pub".into(),
            source_namespace: "-".into(),
            source_type: EndpointType::Network as i32,
            dest_name: format!("{}-*", target.name),
            dest_namespace: target.namespace.into(),
            dest_type: EndpointType::WorkloadEndpoint as i32,
            dest_port: target.port,
            proto: "TCP".into(),
            reporter: Reporter::Dst as i32,
            action: Action::Deny as i32,
            policies: Some(deny_trace(target)),
            ..Default::default()
        };
        push(key, Vec::new(), labels(target), rng);
    }
    flows
}

/// Runs `nodes` simulated nodes against the server at `server` until the task is dropped.
pub async fn run(
    server: SocketAddr,
    nodes: usize,
    now: impl Fn() -> i64 + Send + Sync + Clone + 'static,
) {
    for node in 0..nodes {
        let now = now.clone();
        tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(node as u64);
            loop {
                if let Err(error) = report_forever(server, node, &mut rng, &now).await {
                    tracing::debug!(node, %error, "demo node lost its connection; retrying");
                }
                tokio::time::sleep(REPORT_INTERVAL).await;
            }
        });
    }
}

async fn report_forever(
    server: SocketAddr,
    node: usize,
    rng: &mut SmallRng,
    now: &(impl Fn() -> i64 + Send + Sync),
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))?
        .connect()
        .await?;
    let mut client = FlowCollectorClient::new(channel);
    let (updates, outbound) = tokio::sync::mpsc::channel(256);
    let mut receipts = client
        .connect(ReceiverStream::new(outbound))
        .await?
        .into_inner();
    loop {
        for flow in node_report(node, now(), rng) {
            updates.send(FlowUpdate { flow: Some(flow) }).await?;
            receipts.message().await?;
        }
        tokio::time::sleep(REPORT_INTERVAL).await;
    }
}
