//! The realistic workload of the project's speed and memory targets: flow updates shaped as
//! Felix sends them (about 510 bytes encoded), every field drawn from a splitmix64 hash of a
//! key index so every run sends the same key set. Shared by the benches and `eddy flowgen
//! --profile realistic`.
//!
//! A key has one of 16 source and destination namespaces and apps, a source name unique per
//! key (high cardinality), 10% of destinations in a `Network` (`pub` or `pvt`, namespace `-`,
//! no service), one of 8 (port, protocol, service port) triples, 3–6 labels per side, and a
//! policy trace of 0–2 `Pass` hits before the deciding hit (60% a namespaced allow, 20% a
//! Kubernetes policy, 10% an end-of-tier deny with its trigger, 10% a profile).

use crate::proto::{
    Action, EndpointType, Flow, FlowKey, FlowUpdate, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

/// Which bucket an update falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketChoice {
    /// A closed bucket among the four before `now` (a bucket boundary), drawn from the key.
    OneOfLastFour {
        /// The end of the newest closed bucket.
        now: i64,
    },
    /// The bucket starting at this second.
    Exactly(i64),
}

/// The destination and source namespaces.
pub const NAMESPACES: [&str; 16] = [
    "frontend",
    "checkout",
    "payments",
    "catalog",
    "search",
    "accounts",
    "orders",
    "shipping",
    "inventory",
    "recommendations",
    "monitoring",
    "logging",
    "ingress",
    "data",
    "messaging",
    "kube-system",
];
/// The applications of each side.
pub const APPS: [&str; 16] = [
    "web",
    "api",
    "cart",
    "worker",
    "db",
    "cache",
    "gateway",
    "auth",
    "indexer",
    "scheduler",
    "exporter",
    "collector",
    "queue",
    "notifier",
    "billing",
    "profile",
];
/// (port, protocol, service port name).
const PORTS: [(i64, &str, &str); 8] = [
    (80, "tcp", "http"),
    (443, "tcp", "https"),
    (8080, "tcp", "http-alt"),
    (5432, "tcp", "postgres"),
    (6379, "tcp", "redis"),
    (9090, "tcp", "metrics"),
    (53, "udp", "dns"),
    (3306, "tcp", "mysql"),
];
/// The `team` label values.
const TEAMS: [&str; 6] = ["core", "growth", "platform", "payments", "sre", "data"];

/// splitmix64: every choice of the workload is drawn from it, so every run sends the same.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stream of choices seeded from one value.
struct Draws(u64);

impl Draws {
    /// The next choice in `0..bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = splitmix(self.0);
        self.0 % bound
    }

    /// The next choice in `low..=high`.
    fn within(&mut self, low: i64, high: i64) -> i64 {
        low + self.below((high - low + 1) as u64) as i64
    }

    fn pick<'a>(&mut self, values: &[&'a str]) -> &'a str {
        values[self.below(values.len() as u64) as usize]
    }
}

/// A pod's 10 hex digits: unique per key and pod generation.
fn pod_hash(key: u64, generation: u64, side: u64) -> String {
    format!(
        "{:010x}",
        splitmix(key ^ (generation << 32) ^ (side << 62)) & 0xff_ffff_ffff
    )
}

fn labels(app: &str, hash: &str, namespace: &str, draws: &mut Draws) -> Vec<String> {
    let all = [
        format!("app={app}"),
        format!("pod-template-hash={hash}"),
        format!("projectcalico.org/namespace={namespace}"),
        format!("team={}", draws.pick(&TEAMS)),
        format!("version=v{}", draws.within(1, 3)),
        "environment=production".to_string(),
    ];
    let count = draws.within(3, 6) as usize;
    all.into_iter().take(count).collect()
}

fn policy_hit(
    kind: PolicyKind,
    tier: &str,
    namespace: &str,
    name: &str,
    action: Action,
) -> PolicyHit {
    PolicyHit {
        kind: kind as i32,
        namespace: namespace.into(),
        name: name.into(),
        tier: tier.into(),
        action: action as i32,
        ..Default::default()
    }
}

/// 0–2 leading Pass hits, then the deciding hit; returns the trace and the flow's action.
fn trace(dest_namespace: &str, dest_app: &str, draws: &mut Draws) -> (PolicyTrace, Action) {
    let passes = [
        ("security", "pass-to-app-tiers"),
        ("platform", "allow-cluster-dns"),
    ];
    let mut hits: Vec<PolicyHit> = passes
        .iter()
        .take(draws.below(3) as usize)
        .map(|(tier, name)| {
            let mut hit = policy_hit(
                PolicyKind::GlobalNetworkPolicy,
                tier,
                "",
                name,
                Action::Pass,
            );
            hit.rule_index = draws.within(0, 2);
            hit
        })
        .collect();
    let allow_name = format!("allow-{dest_app}");
    let deciding = match draws.below(10) {
        0..=5 => {
            let mut hit = policy_hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                dest_namespace,
                &allow_name,
                Action::Allow,
            );
            hit.rule_index = draws.within(0, 3);
            hit
        }
        6 | 7 => policy_hit(
            PolicyKind::NetworkPolicy,
            "default",
            dest_namespace,
            &format!("knp.default.{dest_app}-ingress"),
            Action::Allow,
        ),
        8 => {
            let mut hit = policy_hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny);
            hit.rule_index = -1;
            hit.trigger = Some(Box::new(policy_hit(
                PolicyKind::CalicoNetworkPolicy,
                "default",
                dest_namespace,
                &allow_name,
                Action::Allow,
            )));
            hit
        }
        _ => policy_hit(
            PolicyKind::Profile,
            "__PROFILE__",
            "",
            &format!("kns.{dest_namespace}"),
            Action::Allow,
        ),
    };
    let action = Action::try_from(deciding.action).unwrap_or(Action::Allow);
    hits.push(deciding);
    for (index, hit) in hits.iter_mut().enumerate() {
        hit.policy_index = index as i64;
    }
    let trace = PolicyTrace {
        enforced_policies: hits.clone(),
        pending_policies: hits,
    };
    (trace, action)
}

/// Key `key`'s update, the `send`-th send of it, while its pods are in generation `pods`
/// (0 for the standard workload, in which pods are never replaced): every field drawn from the
/// key, `bytes_out` changed by every send, the bucket chosen as `bucket` says.
pub fn update(key: u64, pods: u64, send: u64, window: i64, bucket: BucketChoice) -> FlowUpdate {
    let mut draws = Draws(splitmix(key));
    let source_namespace = draws.pick(&NAMESPACES);
    let source_app = draws.pick(&APPS);
    let source_hash = pod_hash(key, pods, 0);
    let network = draws.below(10) == 0;
    let dest_namespace = draws.pick(&NAMESPACES);
    let dest_app = draws.pick(&APPS);
    let dest_hash = pod_hash(key, pods, 1);
    let (port, proto, port_name) = PORTS[draws.below(PORTS.len() as u64) as usize];
    let reporter = if draws.below(2) == 0 {
        Reporter::Src
    } else {
        Reporter::Dst
    };
    let source_labels = labels(source_app, &source_hash, source_namespace, &mut draws);
    let (trace, action) = trace(dest_namespace, dest_app, &mut draws);
    let (dest_name, dest_ns, dest_type, dest_labels, service) = if network {
        let name = if draws.below(2) == 0 { "pub" } else { "pvt" };
        (
            name.to_string(),
            "-",
            EndpointType::Network,
            Vec::new(),
            None,
        )
    } else {
        let labels = labels(dest_app, &dest_hash, dest_namespace, &mut draws);
        (
            format!("{dest_app}-{dest_hash}-*"),
            dest_namespace,
            EndpointType::WorkloadEndpoint,
            labels,
            Some((dest_app, dest_namespace, port_name, port)),
        )
    };
    let packets_in = draws.within(1, 2000);
    let packets_out = draws.within(1, 2000);
    let started = draws.within(1, 20);
    let completed = draws.within(0, started);
    let live = draws.within(0, 3);
    let start = match bucket {
        BucketChoice::OneOfLastFour { now } => now - window * draws.within(1, 4),
        BucketChoice::Exactly(start) => start,
    };
    FlowUpdate {
        flow: Some(Flow {
            key: Some(FlowKey {
                source_name: format!("{source_app}-{source_hash}-*"),
                source_namespace: source_namespace.into(),
                source_type: EndpointType::WorkloadEndpoint as i32,
                dest_name,
                dest_namespace: dest_ns.into(),
                dest_type: dest_type as i32,
                dest_port: port,
                dest_service_name: service.map(|s| s.0).unwrap_or_default().into(),
                dest_service_namespace: service.map(|s| s.1).unwrap_or_default().into(),
                dest_service_port_name: service.map(|s| s.2).unwrap_or_default().into(),
                dest_service_port: service.map_or(0, |s| s.3),
                proto: proto.into(),
                reporter: reporter as i32,
                action: action as i32,
                policies: Some(trace),
            }),
            start_time: start,
            end_time: start + window,
            source_labels,
            dest_labels,
            packets_in,
            packets_out,
            bytes_in: 700 * packets_in,
            bytes_out: 700 * packets_out + send as i64,
            num_connections_started: started,
            num_connections_completed: completed,
            num_connections_live: live,
        }),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn flow(update: &FlowUpdate) -> &Flow {
        update
            .flow
            .as_ref()
            .expect("the generator always sets the flow")
    }

    fn key(update: &FlowUpdate) -> &FlowKey {
        flow(update)
            .key
            .as_ref()
            .expect("the generator always sets the key")
    }

    #[test]
    fn the_same_key_gives_the_same_update_and_sends_differ_in_one_counter() {
        let first = update(7, 0, 0, 15, BucketChoice::Exactly(900));
        assert_eq!(first, update(7, 0, 0, 15, BucketChoice::Exactly(900)));
        let second = update(7, 0, 1, 15, BucketChoice::Exactly(900));
        let (a, b) = (flow(&first), flow(&second));
        assert_eq!(a.key, b.key);
        assert_eq!(b.bytes_out, a.bytes_out + 1);
        assert_eq!((a.start_time, a.end_time), (900, 915));
    }

    #[test]
    fn updates_average_about_510_encoded_bytes_with_unique_source_names() {
        let keys = 10_000u64;
        let updates: Vec<FlowUpdate> = (0..keys)
            .map(|key| update(key, 0, 0, 15, BucketChoice::OneOfLastFour { now: 1500 }))
            .collect();
        let mean = updates.iter().map(|u| u.encoded_len()).sum::<usize>() as u64 / keys;
        assert!((450..=570).contains(&mean), "mean encoded size {mean}");
        let names: std::collections::HashSet<&str> = updates
            .iter()
            .map(|u| key(u).source_name.as_str())
            .collect();
        assert_eq!(names.len() as u64, keys);
        let networks = updates
            .iter()
            .filter(|u| key(u).dest_type == EndpointType::Network as i32)
            .count();
        assert!(
            (800..=1200).contains(&networks),
            "{networks} network destinations"
        );
        assert!(updates.iter().all(|u| {
            let start = flow(u).start_time;
            (1440..1500).contains(&start) && start % 15 == 0
        }));
    }
}
