//! Expands a canonical trace into the distinct policy rules it contributes to (SPEC §8.2):
//! per hit of enforced and pending, the policy (the trigger's for an EndOfTier hit that has
//! one, else `(EndOfTier, tier)`), with the hit's action, at the rule level (with the rule
//! index) and at the policy level (rule index 0). Done once per trace, when it is first interned,
//! not per update; a rule whose strings do not fit the catalog fails the trace's intern.

use eddy_dataflows::model::{PolicyRule, StatLevel};

use crate::intern::{InternerFull, Symbols};
use crate::proto::{PolicyHit, PolicyKind, PolicyTrace};

fn rules_of_hit(hit: &PolicyHit, symbols: &Symbols) -> Result<[PolicyRule; 2], InternerFull> {
    let owner = match (&hit.trigger, hit.kind == PolicyKind::EndOfTier as i32) {
        (Some(trigger), true) => trigger.as_ref(),
        _ => hit,
    };
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

/// The distinct rules of `trace` (none for an absent trace), interning their strings.
pub fn rules_of_trace(
    trace: Option<&PolicyTrace>,
    symbols: &Symbols,
) -> Result<Vec<PolicyRule>, InternerFull> {
    let mut distinct = Vec::new();
    if let Some(trace) = trace {
        for hit in trace
            .enforced_policies
            .iter()
            .chain(&trace.pending_policies)
        {
            distinct.extend(rules_of_hit(hit, symbols)?);
        }
    }
    distinct.sort_unstable();
    distinct.dedup();
    Ok(distinct)
}
