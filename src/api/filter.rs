//! Compiles a request `Filter` (SPEC §5) into id sets the workers can test, resolving string
//! matches, aliases, fuzzy matching and policy matches against the catalog once per request.

use eddy_dataflows::filter::{FlowFilter, IdSet};

use crate::api::status::ApiError;
use crate::catalog::Catalog;
use crate::proto::{
    Filter, MatchType, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace, StringMatch,
};

/// Which aliases a string field answers to (SPEC §5.2).
#[derive(Clone, Copy)]
enum Aliases {
    None,
    Names,
    Namespaces,
}

impl Aliases {
    /// The other spelling a stored value also answers to.
    fn of(self, stored: &str) -> Option<&'static str> {
        match (self, stored) {
            (Aliases::Names, "pub") => Some("PUBLIC NETWORK"),
            (Aliases::Names, "pvt") => Some("PRIVATE NETWORK"),
            (Aliases::Namespaces, "-") => Some("Global"),
            (Aliases::Namespaces, "Global") => Some("-"),
            _ => None,
        }
    }
}

/// A case-insensitive substring test (SPEC §5.3).
pub fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty() || haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn string_matches(stored: &str, wanted: &StringMatch, fuzzy: bool) -> bool {
    if fuzzy {
        contains_ignoring_case(stored, &wanted.value)
    } else {
        stored == wanted.value
    }
}

fn match_type(field: &str, wanted: &StringMatch) -> Result<bool, ApiError> {
    match MatchType::try_from(wanted.r#type) {
        Ok(MatchType::Exact) => Ok(false),
        Ok(MatchType::Fuzzy) => Ok(true),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown match type {}", wanted.r#type),
        )),
    }
}

fn compile_strings(
    field: &str,
    matches: &[StringMatch],
    aliases: Aliases,
    catalog: &Catalog,
) -> Result<Option<IdSet>, ApiError> {
    if matches.is_empty() {
        return Ok(None);
    }
    let mut exact = Vec::new();
    let mut fuzzy = Vec::new();
    for wanted in matches {
        if match_type(field, wanted)? {
            if wanted.value.is_empty() {
                return Ok(None);
            }
            fuzzy.push(wanted);
        } else {
            exact.push(wanted);
        }
    }
    let ids = catalog.symbols.ids_where(|stored| {
        let alias = aliases.of(stored);
        exact
            .iter()
            .any(|w| stored == w.value || alias == Some(w.value.as_str()))
            || fuzzy.iter().any(|w| {
                string_matches(stored, w, true) || alias.is_some_and(|a| string_matches(a, w, true))
            })
    });
    Ok(Some(IdSet::new(ids)))
}

fn wildcard_or_equal(wanted: &str, candidates: &[&str]) -> bool {
    wanted.is_empty() || candidates.contains(&wanted)
}

/// Whether `hit` satisfies `wanted` (SPEC §5.5): empty strings and unspecified enums are
/// wildcards; an EndOfTier hit also answers with its trigger's name and namespace.
pub fn hit_matches(hit: &PolicyHit, wanted: &PolicyMatch) -> bool {
    let trigger = hit
        .trigger
        .as_deref()
        .filter(|_| hit.kind == PolicyKind::EndOfTier as i32);
    let names: Vec<&str> = std::iter::once(hit.name.as_str())
        .chain(trigger.map(|t| t.name.as_str()))
        .collect();
    let namespaces: Vec<&str> = std::iter::once(hit.namespace.as_str())
        .chain(trigger.map(|t| t.namespace.as_str()))
        .collect();
    (wanted.kind == PolicyKind::KindUnspecified as i32 || wanted.kind == hit.kind)
        && wildcard_or_equal(&wanted.tier, &[hit.tier.as_str()])
        && wildcard_or_equal(&wanted.name, &names)
        && wildcard_or_equal(&wanted.namespace, &namespaces)
        && (wanted.action == 0 || wanted.action == hit.action)
}

fn trace_matches(trace: &PolicyTrace, policies: &[PolicyMatch], pending_actions: &[i32]) -> bool {
    let policies_ok = policies.is_empty()
        || trace
            .enforced_policies
            .iter()
            .chain(&trace.pending_policies)
            .any(|hit| policies.iter().any(|wanted| hit_matches(hit, wanted)));
    let pending_ok = pending_actions.is_empty()
        || trace
            .pending_policies
            .iter()
            .any(|hit| pending_actions.contains(&hit.action));
    policies_ok && pending_ok
}

/// Compiles `filter` (absent matches everything).
pub fn compile(filter: Option<&Filter>, catalog: &Catalog) -> Result<FlowFilter, ApiError> {
    let Some(filter) = filter else {
        return Ok(FlowFilter::default());
    };
    let traces = if filter.policies.is_empty() && filter.pending_actions.is_empty() {
        None
    } else {
        Some(IdSet::new(catalog.traces_where(|trace| {
            trace_matches(trace, &filter.policies, &filter.pending_actions)
        })))
    };
    Ok(FlowFilter {
        source_names: compile_strings(
            "filter.source_names",
            &filter.source_names,
            Aliases::Names,
            catalog,
        )?,
        source_namespaces: compile_strings(
            "filter.source_namespaces",
            &filter.source_namespaces,
            Aliases::Namespaces,
            catalog,
        )?,
        dest_names: compile_strings(
            "filter.dest_names",
            &filter.dest_names,
            Aliases::Names,
            catalog,
        )?,
        dest_namespaces: compile_strings(
            "filter.dest_namespaces",
            &filter.dest_namespaces,
            Aliases::Namespaces,
            catalog,
        )?,
        protocols: compile_strings(
            "filter.protocols",
            &filter.protocols,
            Aliases::None,
            catalog,
        )?,
        dest_ports: (!filter.dest_ports.is_empty())
            .then(|| filter.dest_ports.iter().map(|p| p.port).collect()),
        actions: (!filter.actions.is_empty()).then(|| filter.actions.clone()),
        reporter: (filter.reporter != 0).then_some(filter.reporter),
        traces,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_is_case_insensitive_and_empty_matches_all() {
        assert!(contains_ignoring_case("Checkout-API", "kout-a"));
        assert!(contains_ignoring_case("x", ""));
        assert!(!contains_ignoring_case("x", "y"));
    }

    #[test]
    fn end_of_tier_answers_with_its_trigger_name() {
        let hit = PolicyHit {
            kind: PolicyKind::EndOfTier as i32,
            tier: "t".into(),
            trigger: Some(Box::new(PolicyHit {
                name: "np".into(),
                namespace: "ns".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let wanted = PolicyMatch {
            name: "np".into(),
            namespace: "ns".into(),
            ..Default::default()
        };
        assert!(hit_matches(&hit, &wanted));
        let wrong = PolicyMatch {
            name: "other".into(),
            ..Default::default()
        };
        assert!(!hit_matches(&hit, &wrong));
    }
}
