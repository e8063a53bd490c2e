//! Expands a canonical trace into the distinct policy rules it contributes to (SPEC §8.2):
//! per hit of enforced and pending, the policy (the trigger's for an EndOfTier hit that has
//! one, else `(EndOfTier, tier)`), with the hit's action, at the rule level (with the rule
//! index) and at the policy level (rule index 0). Done once per trace, not per update.

use eddy_dataflows::model::{PolicyRule, StatLevel, TraceId};

use crate::catalog::Catalog;
use crate::intern::InternerFull;
use crate::proto::{PolicyHit, PolicyKind};

fn rules_of_hit(hit: &PolicyHit, catalog: &Catalog) -> Result<[PolicyRule; 2], InternerFull> {
    let owner = match (&hit.trigger, hit.kind == PolicyKind::EndOfTier as i32) {
        (Some(trigger), true) => trigger.as_ref(),
        _ => hit,
    };
    let symbols = &catalog.symbols;
    let rule = PolicyRule {
        kind: owner.kind,
        tier: symbols.intern(&owner.tier)?,
        namespace: symbols.intern(&owner.namespace)?,
        name: symbols.intern(&owner.name)?,
        action: hit.action,
        rule_index: hit.rule_index,
        level: StatLevel::Rule,
    };
    let policy = PolicyRule {
        rule_index: 0,
        level: StatLevel::Policy,
        ..rule
    };
    Ok([rule, policy])
}

/// The distinct rules of each trace in `traces`, paired with the trace id.
pub fn trace_rules(traces: &[TraceId], catalog: &Catalog) -> Vec<(TraceId, PolicyRule)> {
    let mut rules = Vec::new();
    for &id in traces {
        let trace = catalog.trace(id);
        let mut distinct = Vec::new();
        for hit in trace
            .enforced_policies
            .iter()
            .chain(&trace.pending_policies)
        {
            match rules_of_hit(hit, catalog) {
                Ok(pair) => distinct.extend(pair),
                Err(full) => tracing::warn!(%full, "a policy's statistics are not kept"),
            }
        }
        distinct.sort_unstable();
        distinct.dedup();
        catalog.keep_rule_strings(
            distinct
                .iter()
                .flat_map(|rule| [rule.tier, rule.namespace, rule.name]),
        );
        rules.extend(distinct.into_iter().map(|rule| (id, rule)));
    }
    rules
}
