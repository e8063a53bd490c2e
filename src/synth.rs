//! Synthetic cluster traffic, seeded so runs repeat: workloads in namespaces, each node
//! reporting a fixed set of flows (its *templates*) with fresh counters at every flush, as
//! Felix does. Shared by `eddy serve --demo` (a small fixed cluster) and `eddy flowgen` (a
//! cluster sized to `--nodes` and `--flows-per-node`).
//!
//! The mix: allowed pod-to-pod calls through services (some with a staged policy that would
//! deny), cross-namespace denies at the end of a tier, DNS, probes from public and private
//! networks, egress to a network set, and scrapes of host endpoints. Keys are distinct within
//! a node; the same key may come from several nodes, as with replicas behind one service.

pub mod keys;
pub mod realistic;
pub mod traces;
pub mod workloads;

use std::collections::HashSet;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::proto::{Action, EndpointType, Flow, FlowKey, Reporter};
use crate::synth::keys::{call, outside, random_template};
use crate::synth::workloads::{kube_dns, workload, Workload};

/// One flow a node reports at every flush: its key and its endpoints' labels.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowTemplate {
    /// The key, with its policy trace.
    pub key: FlowKey,
    /// Source labels.
    pub source_labels: Vec<String>,
    /// Destination labels.
    pub dest_labels: Vec<String>,
}

/// A simulated cluster: which flows each node reports.
#[derive(Clone, Debug)]
pub struct Cluster {
    nodes: Vec<Vec<FlowTemplate>>,
}

impl Cluster {
    /// The small fixed cluster of `eddy serve --demo`: eight services, seven call paths split
    /// over the nodes, DNS from every node, and denied probes from the public network.
    pub fn demo(nodes: usize) -> Cluster {
        let mut rng = SmallRng::seed_from_u64(0);
        // frontend, checkout, cart, ledger, fraud-check, prometheus, redis in their home namespaces.
        let services: Vec<Workload> = [0, 1, 2, 3, 4, 17, 11]
            .iter()
            .map(|&index| {
                let mut w = workload(index, &mut rng);
                w.pods = format!("{}-*", w.app);
                w
            })
            .collect();
        let dns = kube_dns();
        let calls = [(0, 1), (0, 2), (1, 3), (1, 4), (2, 6), (5, 0), (5, 3)];
        let templates = (0..nodes)
            .map(|node| {
                let mut node_flows = Vec::new();
                for (index, &(client, server)) in
                    calls.iter().enumerate().filter(|(i, _)| i % 3 == node % 3)
                {
                    let (source, dest) = (&services[client], &services[server]);
                    for reporter in [Reporter::Src, Reporter::Dst] {
                        let trace = traces::allowed(
                            &dest.namespace,
                            &dest.app,
                            (index % 2) as i64,
                            index == 3,
                        );
                        node_flows.push(call(source, dest, reporter, Action::Allow, trace));
                    }
                }
                let local = &services[node % services.len()];
                node_flows.push(call(
                    local,
                    &dns,
                    Reporter::Src,
                    Action::Allow,
                    traces::allowed("kube-system", "kube-dns", 0, false),
                ));
                let target = &services[3 + node % 2];
                let deny = (target.port, Action::Deny, traces::denied(&target.namespace));
                node_flows.push(outside(
                    ("pub", "-", EndpointType::Network),
                    target,
                    true,
                    deny,
                    Vec::new(),
                ));
                node_flows
            })
            .collect();
        Cluster { nodes: templates }
    }

    /// A cluster of `nodes` nodes each reporting `flows_per_node` distinct flows, drawn from
    /// `seed`: the same arguments always give the same cluster.
    pub fn generate(seed: u64, nodes: usize, flows_per_node: usize) -> Cluster {
        let mut rng = SmallRng::seed_from_u64(seed);
        let wanted = ((flows_per_node * nodes.max(1)) as f64 / 2.0).sqrt().ceil() as usize;
        let count = (wanted + 8).clamp(12, 20_000);
        let workloads: Vec<Workload> = (0..count).map(|index| workload(index, &mut rng)).collect();
        let dns = kube_dns();
        let per_node = (count * 3 / nodes.max(1)).max(2);
        let templates = (0..nodes)
            .map(|node| {
                let local: Vec<&Workload> = (0..per_node)
                    .map(|j| &workloads[(node * per_node + j * 7) % count])
                    .collect();
                let mut seen = HashSet::new();
                let mut flows = Vec::with_capacity(flows_per_node);
                let mut attempts = 0usize;
                while flows.len() < flows_per_node {
                    attempts += 1;
                    let home = local[rng.random_range(0..local.len())];
                    let mut template = random_template(home, &workloads, &dns, nodes, &mut rng);
                    if attempts > 20 * flows_per_node + 1000 {
                        // The key space near this node is used up: vary the port (a NodePort range).
                        template.key.dest_port = 30_000 + (attempts % 2768) as i64;
                    }
                    if seen.insert(prost::Message::encode_to_vec(&template.key)) {
                        flows.push(template);
                    }
                }
                flows
            })
            .collect();
        Cluster { nodes: templates }
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The flows `node` reports at every flush.
    pub fn templates(&self, node: usize) -> &[FlowTemplate] {
        self.nodes.get(node).map_or(&[], Vec::as_slice)
    }

    /// How many distinct keys all nodes together report.
    pub fn distinct_keys(&self) -> usize {
        let keys: HashSet<Vec<u8>> = self
            .nodes
            .iter()
            .flatten()
            .map(|t| prost::Message::encode_to_vec(&t.key))
            .collect();
        keys.len()
    }

    /// What `node` reports at the flush at `now`: every template with fresh counters.
    pub fn report(&self, node: usize, now: i64, rng: &mut SmallRng) -> Vec<Flow> {
        self.templates(node)
            .iter()
            .map(|template| counters(template, now, rng))
            .collect()
    }
}

/// A flow of `template` with random counters, `start_time = end_time = now`.
pub fn counters(template: &FlowTemplate, now: i64, rng: &mut SmallRng) -> Flow {
    let connections = rng.random_range(1..20);
    let packets = connections * rng.random_range(5..200);
    Flow {
        key: Some(template.key.clone()),
        start_time: now,
        end_time: now,
        source_labels: template.source_labels.clone(),
        dest_labels: template.dest_labels.clone(),
        packets_in: packets,
        packets_out: packets + rng.random_range(0..50),
        bytes_in: packets * rng.random_range(60..1400),
        bytes_out: packets * rng.random_range(60..1400),
        num_connections_started: connections,
        num_connections_completed: connections - rng.random_range(0..=connections),
        num_connections_live: rng.random_range(0..5),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PolicyTrace;

    #[test]
    fn generated_clusters_repeat_and_keep_keys_distinct_per_node() {
        let first = Cluster::generate(7, 3, 200);
        let again = Cluster::generate(7, 3, 200);
        assert_eq!(first.templates(2), again.templates(2));
        for node in 0..3 {
            let keys: HashSet<Vec<u8>> = first
                .templates(node)
                .iter()
                .map(|t| prost::Message::encode_to_vec(&t.key))
                .collect();
            assert_eq!(keys.len(), 200);
        }
        assert!(first.distinct_keys() <= 600);
        assert!(Cluster::generate(8, 3, 200).templates(0) != first.templates(0));
    }

    #[test]
    fn a_crowded_node_still_gets_its_flows() {
        let cluster = Cluster::generate(1, 1, 5000);
        assert_eq!(cluster.templates(0).len(), 5000);
    }

    #[test]
    fn the_mix_has_denies_staged_denies_end_of_tier_triggers_and_outside_endpoints() {
        let cluster = Cluster::generate(3, 2, 500);
        let keys: Vec<&FlowKey> = (0..2)
            .flat_map(|n| cluster.templates(n))
            .map(|t| &t.key)
            .collect();
        assert!(keys.iter().any(|k| k.action == Action::Deny as i32));
        assert!(keys
            .iter()
            .any(|k| k.source_name == "pub" && k.source_type == EndpointType::Network as i32));
        assert!(keys
            .iter()
            .any(|k| k.dest_type == EndpointType::HostEndpoint as i32));
        assert!(keys
            .iter()
            .any(|k| k.dest_type == EndpointType::NetworkSet as i32));
        let traces: Vec<&PolicyTrace> = keys.iter().filter_map(|k| k.policies.as_ref()).collect();
        assert!(traces.iter().any(|t| t
            .pending_policies
            .iter()
            .any(|h| h.action == Action::Deny as i32 && h.trigger.is_none())));
        assert!(traces
            .iter()
            .any(|t| t.enforced_policies.iter().any(|h| h.trigger.is_some())));
    }

    #[test]
    fn counters_are_consistent() {
        let cluster = Cluster::demo(6);
        let mut rng = SmallRng::seed_from_u64(1);
        for node in 0..6 {
            for flow in cluster.report(node, 1_700_000_000, &mut rng) {
                assert_eq!(
                    (flow.start_time, flow.end_time),
                    (1_700_000_000, 1_700_000_000)
                );
                assert!(flow.packets_in > 0 && flow.packets_out >= flow.packets_in);
                assert!(flow.num_connections_completed <= flow.num_connections_started);
            }
        }
    }
}
