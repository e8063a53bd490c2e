//! Policy traces and labels of synthetic flows: tiers with a platform `Pass`, namespaced allow
//! rules, staged policies (some of which would deny), and end-of-tier denies with triggers.

use crate::proto::{Action, PolicyHit, PolicyKind, PolicyTrace};

/// One policy hit without a trigger.
pub fn hit(
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

fn with_rule(mut hit: PolicyHit, rule: i64) -> PolicyHit {
    hit.rule_index = rule;
    hit
}

fn platform_pass() -> PolicyHit {
    hit(
        PolicyKind::GlobalNetworkPolicy,
        "platform",
        "",
        "allow-dns-and-monitoring",
        Action::Pass,
        0,
    )
}

/// An allowed call to `app` in `namespace`: the platform tier passes, a namespaced policy
/// allows with rule `rule`; a staged policy would allow too, or deny when `staged_deny`.
pub fn allowed(namespace: &str, app: &str, rule: i64, staged_deny: bool) -> PolicyTrace {
    let staged_action = if staged_deny {
        Action::Deny
    } else {
        Action::Allow
    };
    PolicyTrace {
        enforced_policies: vec![
            platform_pass(),
            with_rule(
                hit(
                    PolicyKind::CalicoNetworkPolicy,
                    "default",
                    namespace,
                    &format!("allow-to-{app}"),
                    Action::Allow,
                    1,
                ),
                rule,
            ),
        ],
        pending_policies: vec![
            platform_pass(),
            with_rule(
                hit(
                    PolicyKind::StagedNetworkPolicy,
                    "default",
                    namespace,
                    &format!("staged-tighten-{app}"),
                    staged_action,
                    1,
                ),
                rule,
            ),
        ],
    }
}

/// A deny at the end of the `default` tier, triggered by `default-deny` in `namespace`.
pub fn denied(namespace: &str) -> PolicyTrace {
    let mut end_of_tier = hit(PolicyKind::EndOfTier, "default", "", "", Action::Deny, 1);
    end_of_tier.trigger = Some(Box::new(hit(
        PolicyKind::NetworkPolicy,
        "default",
        namespace,
        "default-deny",
        Action::Deny,
        1,
    )));
    PolicyTrace {
        enforced_policies: vec![end_of_tier.clone()],
        pending_policies: vec![end_of_tier],
    }
}

/// Allowed by one global policy of the platform tier, enforced and staged alike.
pub fn platform_allowed(name: &str, rule: i64) -> PolicyTrace {
    let allow = with_rule(
        hit(
            PolicyKind::GlobalNetworkPolicy,
            "platform",
            "",
            name,
            Action::Allow,
            0,
        ),
        rule,
    );
    PolicyTrace {
        enforced_policies: vec![allow.clone()],
        pending_policies: vec![allow],
    }
}

/// Pod labels of a workload.
pub fn labels(app: &str, namespace: &str, version: u32) -> Vec<String> {
    vec![
        format!("app={app}"),
        format!("app.kubernetes.io/part-of={namespace}"),
        "managed-by=helm".into(),
        format!("version=v{version}"),
    ]
}
