//! The reference for Statistics.List (SPEC §8), computed from the retained rows of the model.
//!
//! Where SPEC §8 is silent, this follows the reading the server documents: a hit whose action
//! is not Allow, Deny or Pass makes no result of its own, and a rule hit by a flow in range
//! has a result even when the requested counters are all zero.

use std::collections::{BTreeMap, BTreeSet};

use eddy::proto::{PolicyHit, PolicyKind, PolicyMatch, StatisticsRequest, StatisticsResult};

use crate::model::{decode_key, Model};

/// Where a result sorts (SPEC §8.8): tier, kind, namespace, name, action, rule, direction.
type Order = (String, i32, String, String, i32, i64, i32);

/// The policy a hit counts for (SPEC §8.2): a triggered EndOfTier counts for its trigger.
fn owner(hit: &PolicyHit) -> &PolicyHit {
    match &hit.trigger {
        Some(trigger) if hit.kind == PolicyKind::EndOfTier as i32 => trigger,
        _ => hit,
    }
}

/// SPEC §8.6: wildcards as in §5.5, on the policy the hit counts for and the hit's action.
fn wanted(policy_match: &PolicyMatch, hit: &PolicyHit) -> bool {
    let owner = owner(hit);
    let field = |wanted: &str, value: &str| wanted.is_empty() || wanted == value;
    (policy_match.kind == 0 || policy_match.kind == owner.kind)
        && field(&policy_match.tier, &owner.tier)
        && field(&policy_match.namespace, &owner.namespace)
        && field(&policy_match.name, &owner.name)
        && (policy_match.action == 0 || policy_match.action == hit.action)
}

/// The expected results of `request`, in order; `None` when the time range is invalid.
pub fn expected(model: &Model, request: &StatisticsRequest) -> Option<Vec<StatisticsResult>> {
    let range = model.range(request.start_time_gte, request.start_time_lt)?;
    let by_rule = request.group_by == 1;
    let window = model.window;
    let first = range.0 + (window - range.0.rem_euclid(window)) % window;
    let axis: Vec<i64> = (first..range.1).step_by(window as usize).collect();
    let width = if request.time_series { axis.len() } else { 1 };
    let policy_match = request.policy_match.clone().unwrap_or_default();
    let mut results: BTreeMap<Order, StatisticsResult> = BTreeMap::new();
    // One row per (key, bucket): every update of a key has the same trace and reporter.
    for row in model.rows(range, window, None) {
        let key = decode_key(&row.key);
        let egress = key.reporter == 1;
        let (packets, bytes, live) = (
            (row.counters[0], row.counters[1]),
            (row.counters[2], row.counters[3]),
            row.counters[6],
        );
        let (value_in, value_out) = match request.r#type {
            0 => packets,
            1 => bytes,
            _ if egress => (0, live),
            _ => (live, 0),
        };
        let slot = if request.time_series {
            ((row.start - first) / window) as usize
        } else {
            0
        };
        let trace = key.policies.unwrap_or_default();
        let mut counted = BTreeSet::new();
        for hit in trace
            .enforced_policies
            .iter()
            .chain(&trace.pending_policies)
        {
            let column = match hit.action {
                1 => 0,
                2 => 2,
                3 => 4,
                _ => continue,
            };
            if !wanted(&policy_match, hit) {
                continue;
            }
            let owner = owner(hit);
            let (action, rule_index, direction) = match by_rule {
                true => (hit.action, hit.rule_index, if egress { 2 } else { 1 }),
                false => (0, 0, 0),
            };
            let order: Order = (
                owner.tier.clone(),
                owner.kind,
                owner.namespace.clone(),
                owner.name.clone(),
                action,
                rule_index,
                direction,
            );
            // Once per distinct (policy, rule) per flow, and per distinct action per policy.
            if !counted.insert((order.clone(), hit.action)) {
                continue;
            }
            let result = results.entry(order).or_insert_with(|| StatisticsResult {
                policy: Some(PolicyHit {
                    kind: owner.kind,
                    tier: owner.tier.clone(),
                    namespace: owner.namespace.clone(),
                    name: owner.name.clone(),
                    action,
                    rule_index,
                    ..Default::default()
                }),
                direction,
                group_by: request.group_by,
                r#type: request.r#type,
                allowed_in: vec![0; width],
                allowed_out: vec![0; width],
                denied_in: vec![0; width],
                denied_out: vec![0; width],
                passed_in: vec![0; width],
                passed_out: vec![0; width],
                x: if request.time_series {
                    axis.clone()
                } else {
                    Vec::new()
                },
            });
            let columns = [
                &mut result.allowed_in,
                &mut result.allowed_out,
                &mut result.denied_in,
                &mut result.denied_out,
                &mut result.passed_in,
                &mut result.passed_out,
            ];
            columns[column][slot] += value_in;
            columns[column + 1][slot] += value_out;
        }
    }
    Some(results.into_values().collect())
}
