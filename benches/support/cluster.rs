//! The synthetic cluster the queries and memory benches ingest: app names, team namespaces,
//! policy traces, and updates of TCP flows between workload pods.

use eddy::proto::{
    Action, EndpointType, Flow, FlowKey, FlowUpdate, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

pub const APPS: [&str; 12] = [
    "frontend",
    "checkout",
    "cart",
    "ledger",
    "fraud-check",
    "search",
    "catalog",
    "auth",
    "billing",
    "notifier",
    "redis",
    "postgres",
];
/// Team namespaces: `team-00` and on.
pub const NAMESPACES: u64 = 100;
/// Destination pods.
pub const DESTS: u64 = 2_000;
/// Distinct policy traces; each names one enforced and one staged (pending) policy.
pub const TRACES: u64 = 40;

/// The app of pod (or trace) `index`.
pub fn app(index: u64) -> &'static str {
    APPS[index as usize % APPS.len()]
}

/// The names of the team namespaces, by index.
pub fn namespace_names() -> Vec<String> {
    (0..NAMESPACES).map(|i| format!("team-{i:02}")).collect()
}

/// The source reports even-numbered flows, the destination odd-numbered ones.
pub fn reporter(index: u64) -> Reporter {
    if index.is_multiple_of(2) {
        Reporter::Src
    } else {
        Reporter::Dst
    }
}

/// What a bench chooses for the policies of a trace; the rest is fixed by `policy_trace`.
pub struct PolicyChoices {
    pub enforced_name: String,
    pub enforced_tier: &'static str,
    pub pending_action: Action,
    pub pending_rule_index: i64,
}

/// Trace `trace`: an enforced Calico policy (rule `trace % 3`, denying every eighth trace)
/// and a staged one (`staged-TRACE`, default tier), both in the trace's team namespace.
/// Returns the trace and the action the flow takes.
pub fn policy_trace(trace: u64, choices: PolicyChoices) -> (PolicyTrace, Action) {
    let action = if trace % 8 == 7 {
        Action::Deny
    } else {
        Action::Allow
    };
    let namespace = format!("team-{:02}", trace % NAMESPACES);
    let enforced = PolicyHit {
        kind: PolicyKind::CalicoNetworkPolicy as i32,
        namespace: namespace.clone(),
        name: choices.enforced_name,
        tier: choices.enforced_tier.into(),
        action: action as i32,
        policy_index: 0,
        rule_index: (trace % 3) as i64,
        trigger: None,
    };
    let pending = PolicyHit {
        kind: PolicyKind::StagedNetworkPolicy as i32,
        namespace,
        name: format!("staged-{trace}"),
        tier: "default".into(),
        action: choices.pending_action as i32,
        policy_index: 0,
        rule_index: choices.pending_rule_index,
        trigger: None,
    };
    let trace = PolicyTrace {
        enforced_policies: vec![enforced],
        pending_policies: vec![pending],
    };
    (trace, action)
}

/// A workload pod as an update names it.
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub labels: Vec<String>,
}

/// A TCP flow between two workload pods, and its packet counters.
pub struct TcpFlow<'a> {
    pub source: Pod,
    pub dest: Pod,
    pub port: i64,
    pub reporter: Reporter,
    pub trace: &'a (PolicyTrace, Action),
    pub packets_in: i64,
    pub packets_out: i64,
}

impl TcpFlow<'_> {
    /// The update of this flow in the bucket starting at `bucket`: 100 bytes a packet, one
    /// connection started and completed.
    pub fn update(self, bucket: i64) -> FlowUpdate {
        let (trace, action) = self.trace;
        FlowUpdate {
            flow: Some(Flow {
                key: Some(FlowKey {
                    source_name: self.source.name,
                    source_namespace: self.source.namespace,
                    source_type: EndpointType::WorkloadEndpoint as i32,
                    dest_name: self.dest.name,
                    dest_namespace: self.dest.namespace,
                    dest_type: EndpointType::WorkloadEndpoint as i32,
                    dest_port: self.port,
                    proto: "TCP".into(),
                    reporter: self.reporter as i32,
                    action: *action as i32,
                    policies: Some(trace.clone()),
                    ..Default::default()
                }),
                start_time: bucket + 1,
                end_time: bucket + 1,
                source_labels: self.source.labels,
                dest_labels: self.dest.labels,
                packets_in: self.packets_in,
                packets_out: self.packets_out,
                bytes_in: self.packets_in * 100,
                bytes_out: self.packets_out * 100,
                num_connections_started: 1,
                num_connections_completed: 1,
                num_connections_live: 0,
            }),
        }
    }
}
