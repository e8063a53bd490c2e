//! The workloads of a synthetic cluster: apps with their ports, protocols and home
//! namespaces, copies of them in extra namespaces, Kubernetes-style aggregated pod names
//! (`checkout-5d4c7b9f8c-*`) and pod labels.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::synth::traces;

/// (name, port, protocol, service port name, home namespace) of the apps workloads run.
const APPS: [(&str, i64, &str, &str, &str); 20] = [
    ("frontend", 8080, "TCP", "http", "shop"),
    ("checkout", 5050, "TCP", "grpc", "shop"),
    ("cart", 7070, "TCP", "grpc", "shop"),
    ("ledger", 9000, "TCP", "grpc", "payments"),
    ("fraud-check", 9443, "TCP", "https", "payments"),
    ("catalog", 3550, "TCP", "grpc", "inventory"),
    ("recommendations", 8080, "TCP", "http", "shop"),
    ("ads", 9555, "TCP", "grpc", "media"),
    ("email", 5000, "TCP", "http", "notifications"),
    ("currency", 7000, "TCP", "grpc", "payments"),
    ("shipping", 50051, "TCP", "grpc", "shipping"),
    ("redis", 6379, "TCP", "redis", "shop"),
    ("postgres", 5432, "TCP", "postgres", "inventory"),
    ("kafka", 9092, "TCP", "kafka", "analytics"),
    ("api-gateway", 443, "TCP", "https", "auth"),
    ("auth", 8443, "TCP", "https", "auth"),
    ("search", 9200, "TCP", "http", "search"),
    ("prometheus", 9090, "TCP", "http", "monitoring"),
    ("statsd", 8125, "UDP", "statsd", "monitoring"),
    ("diameter-gateway", 3868, "SCTP", "diameter", "telecom"),
];

/// Namespaces that copies of apps also run in (staging, per-team forks).
const EXTRA_NAMESPACES: [&str; 6] = ["staging", "canary", "team-a", "team-b", "perf", "sandbox"];

/// Characters of a Kubernetes pod-template hash.
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// An app in a namespace.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// App name, also the service name.
    pub app: String,
    /// The aggregated pod name Felix reports, e.g. `checkout-5d4c7b9f8c-*`.
    pub pods: String,
    /// Service port and protocol.
    pub port: i64,
    /// `TCP`, `UDP` or `SCTP`.
    pub proto: &'static str,
    /// Service port name.
    pub port_name: &'static str,
    /// Pod labels.
    pub labels: Vec<String>,
}

fn pod_hash(rng: &mut SmallRng) -> String {
    (0..10)
        .map(|_| char::from(HASH_ALPHABET[rng.random_range(0..HASH_ALPHABET.len())]))
        .collect()
}

/// The `index`-th workload: apps in their home namespaces first, then copies elsewhere.
pub fn workload(index: usize, rng: &mut SmallRng) -> Workload {
    let (name, port, proto, port_name, home) = APPS[index % APPS.len()];
    let round = index / APPS.len();
    let namespace = match round {
        0 => home,
        r => EXTRA_NAMESPACES[(r - 1) % EXTRA_NAMESPACES.len()],
    };
    let app = match round.saturating_sub(1) / EXTRA_NAMESPACES.len() {
        0 => name.to_string(),
        copy => format!("{name}-{copy}"),
    };
    let version = rng.random_range(1..=3);
    Workload {
        pods: format!("{app}-{}-*", pod_hash(rng)),
        labels: traces::labels(&app, namespace, version),
        namespace: namespace.into(),
        app,
        port,
        proto,
        port_name,
    }
}

/// The cluster DNS service.
pub fn kube_dns() -> Workload {
    Workload {
        namespace: "kube-system".into(),
        app: "kube-dns".into(),
        pods: "coredns-7db6d8ff4d-*".into(),
        port: 53,
        proto: "UDP",
        port_name: "dns",
        labels: vec!["k8s-app=kube-dns".into()],
    }
}
