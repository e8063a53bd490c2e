//! Flow keys of a synthetic cluster: calls between workloads through their services, and
//! flows between a workload and the outside (networks, network sets, host endpoints), with a
//! random mix for generated clusters.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::proto::{Action, EndpointType, FlowKey, PolicyTrace, Reporter};
use crate::synth::workloads::Workload;
use crate::synth::{traces, FlowTemplate};

/// A key from `source` to the workload `dest`, through its service.
pub fn call(
    source: &Workload,
    dest: &Workload,
    reporter: Reporter,
    action: Action,
    trace: PolicyTrace,
) -> FlowTemplate {
    FlowTemplate {
        key: FlowKey {
            source_name: source.pods.clone(),
            source_namespace: source.namespace.clone(),
            source_type: EndpointType::WorkloadEndpoint as i32,
            dest_name: dest.pods.clone(),
            dest_namespace: dest.namespace.clone(),
            dest_type: EndpointType::WorkloadEndpoint as i32,
            dest_port: dest.port,
            dest_service_name: dest.app.clone(),
            dest_service_namespace: dest.namespace.clone(),
            dest_service_port_name: dest.port_name.into(),
            dest_service_port: dest.port,
            proto: dest.proto.into(),
            reporter: reporter as i32,
            action: action as i32,
            policies: Some(trace),
        },
        source_labels: source.labels.clone(),
        dest_labels: dest.labels.clone(),
    }
}

/// A key between a workload and something outside the cluster's pods.
pub fn outside(
    (name, namespace, kind): (&str, &str, EndpointType),
    workload: &Workload,
    inbound: bool,
    (port, action, trace): (i64, Action, PolicyTrace),
    labels: Vec<String>,
) -> FlowTemplate {
    let mut key = FlowKey {
        proto: "TCP".into(),
        dest_port: port,
        action: action as i32,
        policies: Some(trace),
        ..FlowKey::default()
    };
    let (pods, ns) = (workload.pods.clone(), workload.namespace.clone());
    if inbound {
        (key.source_name, key.source_namespace, key.source_type) =
            (name.into(), namespace.into(), kind as i32);
        (key.dest_name, key.dest_namespace) = (pods, ns);
        key.dest_type = EndpointType::WorkloadEndpoint as i32;
        key.reporter = Reporter::Dst as i32;
        FlowTemplate {
            key,
            source_labels: labels,
            dest_labels: workload.labels.clone(),
        }
    } else {
        (key.source_name, key.source_namespace) = (pods, ns);
        key.source_type = EndpointType::WorkloadEndpoint as i32;
        (key.dest_name, key.dest_namespace, key.dest_type) =
            (name.into(), namespace.into(), kind as i32);
        key.reporter = Reporter::Src as i32;
        FlowTemplate {
            key,
            source_labels: workload.labels.clone(),
            dest_labels: labels,
        }
    }
}

/// One random flow involving `local`, a workload running on the node.
pub fn random_template(
    local: &Workload,
    workloads: &[Workload],
    dns: &Workload,
    nodes: usize,
    rng: &mut SmallRng,
) -> FlowTemplate {
    let other = &workloads[rng.random_range(0..workloads.len())];
    let rule = rng.random_range(0..4);
    let as_client = rng.random_bool(0.5);
    let (source, dest, reporter) = if as_client {
        (local, other, Reporter::Src)
    } else {
        (other, local, Reporter::Dst)
    };
    match rng.random_range(0..100) {
        0..60 => {
            let trace = traces::allowed(&dest.namespace, &dest.app, rule, rng.random_bool(0.1));
            call(source, dest, reporter, Action::Allow, trace)
        }
        60..70 => call(
            source,
            dest,
            reporter,
            Action::Deny,
            traces::denied(&dest.namespace),
        ),
        70..78 => call(
            local,
            dns,
            Reporter::Src,
            Action::Allow,
            traces::allowed(&dns.namespace, &dns.app, 0, false),
        ),
        78..86 => {
            let network = if rng.random_bool(0.7) { "pub" } else { "pvt" };
            let deny = (local.port, Action::Deny, traces::denied(&local.namespace));
            outside(
                (network, "-", EndpointType::Network),
                local,
                true,
                deny,
                Vec::new(),
            )
        }
        86..93 => {
            let allow = (
                443,
                Action::Allow,
                traces::platform_allowed("allow-egress-external", rule),
            );
            outside(
                ("external-apis", "-", EndpointType::NetworkSet),
                local,
                false,
                allow,
                vec!["external=true".into()],
            )
        }
        _ => {
            let host = format!("node-{}", rng.random_range(0..nodes.max(1)));
            let allow = (
                9100,
                Action::Allow,
                traces::platform_allowed("allow-host-metrics", rule),
            );
            let labels = vec![
                format!("kubernetes.io/hostname={host}"),
                "node-role=worker".into(),
            ];
            outside(
                (&host, "-", EndpointType::HostEndpoint),
                local,
                false,
                allow,
                labels,
            )
        }
    }
}
