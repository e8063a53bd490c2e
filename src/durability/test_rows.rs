//! Bucket rows for the durability module's unit tests: one flow, `web` to `db-<id>` in
//! namespace `shop`, denied by `deny-all`, in the bucket starting at 1,700,000,100.

use crate::durability::checkpoint::{BucketRow, CatalogIds};
use crate::proto::{
    Action, EndpointType, Flow, FlowKey, PolicyHit, PolicyKind, PolicyTrace, Reporter,
};

/// The row of flow `id` with `source_labels` and `packets` packets in, made of 3 updates.
pub fn row(id: i64, source_labels: &[&str], packets: i64) -> BucketRow {
    BucketRow {
        id,
        flow: Flow {
            key: Some(FlowKey {
                source_name: "web".into(),
                source_namespace: "shop".into(),
                source_type: EndpointType::WorkloadEndpoint as i32,
                dest_name: format!("db-{id}"),
                dest_namespace: "shop".into(),
                dest_type: EndpointType::Network as i32,
                dest_port: 5432,
                dest_service_port: 80,
                proto: "TCP".into(),
                reporter: Reporter::Dst as i32,
                action: Action::Deny as i32,
                policies: Some(PolicyTrace {
                    enforced_policies: vec![PolicyHit {
                        kind: PolicyKind::CalicoNetworkPolicy as i32,
                        name: "deny-all".into(),
                        namespace: "shop".into(),
                        action: Action::Deny as i32,
                        ..PolicyHit::default()
                    }],
                    pending_policies: vec![],
                }),
                ..FlowKey::default()
            }),
            start_time: 1_700_000_100,
            end_time: 1_700_000_115,
            source_labels: source_labels
                .iter()
                .map(|label| label.to_string())
                .collect(),
            dest_labels: vec!["app=db".into()],
            packets_in: packets,
            packets_out: 2,
            bytes_in: 300,
            bytes_out: 400,
            num_connections_started: 1,
            num_connections_completed: 0,
            num_connections_live: 1,
        },
        updates: 3,
        catalog: CatalogIds {
            strings: [1, 2, 3, 2, 0, 0, 0, 4],
            trace: 5,
            labels: (6, 7),
        },
    }
}
