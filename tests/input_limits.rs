//! Input sizes through `Connect` (SPEC §12.1, §9.3): an update with a string field over
//! 4 KiB, more than 256 labels on a side, a label over 4 KiB, more than 256 hits in a trace
//! list, or a trigger that has a trigger is receipted and skipped as `too_large`; updates at
//! the bounds are stored.

mod common;

use common::*;
use eddy::ingest::SkipReason;
use eddy::proto::{Action, Flow, PolicyHit, PolicyKind, PolicyTrace};

const KIB4: usize = 4096;

fn named(dest: &str) -> Flow {
    flow(key(("shop", "client"), ("shop", dest)), NOW - 20, 1)
}

fn with_hits(dest: &str, enforced: usize, pending: usize) -> Flow {
    let mut flow = named(dest);
    let hits = |count: usize| -> Vec<PolicyHit> {
        (0..count)
            .map(|index| {
                let mut hit = hit(
                    PolicyKind::CalicoNetworkPolicy,
                    "default",
                    "shop",
                    &format!("policy-{index}"),
                    Action::Allow,
                );
                hit.policy_index = index as i64;
                hit
            })
            .collect()
    };
    flow.key.as_mut().expect("flows have keys").policies = Some(PolicyTrace {
        enforced_policies: hits(enforced),
        pending_policies: hits(pending),
    });
    flow
}

fn with_trigger_depth(dest: &str, depth: usize) -> Flow {
    let mut flow = named(dest);
    let mut hit = hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny);
    let mut inner: Option<Box<PolicyHit>> = None;
    for level in 0..depth {
        let mut trigger = PolicyHit {
            name: format!("trigger-{level}"),
            ..Default::default()
        };
        trigger.trigger = inner.take();
        inner = Some(Box::new(trigger));
    }
    hit.trigger = inner;
    flow.key.as_mut().expect("flows have keys").policies = Some(PolicyTrace {
        enforced_policies: vec![hit],
        pending_policies: vec![],
    });
    flow
}

fn with_labels(dest: &str, count: usize, bytes: usize) -> Flow {
    let mut flow = named(dest);
    flow.dest_labels = (0..count)
        .map(|index| {
            let label = format!("k{index:04}=");
            format!("{label}{}", "v".repeat(bytes.saturating_sub(label.len())))
        })
        .collect();
    flow
}

#[tokio::test]
async fn oversized_updates_are_receipted_and_skipped_as_too_large() {
    let server = TestServer::start(2).await;
    let long = "n".repeat(KIB4 + 1);
    let mut long_source = named("long-source");
    long_source
        .key
        .as_mut()
        .expect("flows have keys")
        .source_namespace = long.clone();
    let mut long_policy_field = with_hits("long-policy", 1, 0);
    long_policy_field
        .key
        .as_mut()
        .and_then(|key| key.policies.as_mut())
        .expect("the trace is set")
        .enforced_policies[0]
        .tier = long.clone();
    let mut long_source_label = named("long-source-label");
    long_source_label.source_labels = vec![format!("app={}", "v".repeat(KIB4))];
    let refused = vec![
        named(&long),
        long_source,
        long_policy_field,
        with_labels("many-labels", 257, 8),
        long_source_label,
        with_labels("long-label", 1, KIB4 + 1),
        with_hits("many-enforced", 257, 0),
        with_hits("many-pending", 0, 257),
        with_trigger_depth("nested-trigger", 2),
    ];
    let refused_count = refused.len() as u64;
    let accepted = vec![
        named(&"n".repeat(KIB4)),
        with_labels("labels-at-bound", 256, KIB4),
        with_hits("hits-at-bound", 256, 256),
        with_trigger_depth("one-trigger", 1),
    ];
    let mut all = refused;
    all.extend(accepted);
    server.ingest(all).await;
    let too_large = SkipReason::ALL
        .into_iter()
        .find(|reason| reason.label() == "too_large")
        .expect("too_large is a skip reason");
    assert_eq!(server.state.ingest.skipped_total(too_large), refused_count);
    assert_eq!(server.state.ingest.stored_total(), 4);
    let mut stored: Vec<(usize, usize, usize)> = server
        .list_all()
        .await
        .iter()
        .map(|result| {
            let key = key_of(result);
            let trace = key.policies.clone().unwrap_or_default();
            (
                key.dest_name.len(),
                flow_of(result).dest_labels.len(),
                trace.enforced_policies.len() + trace.pending_policies.len(),
            )
        })
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        vec![
            ("one-trigger".len(), 0, 1),
            ("hits-at-bound".len(), 0, 512),
            ("labels-at-bound".len(), 256, 0),
            (KIB4, 0, 0),
        ]
    );
}
