//! Compiles a request `Filter` (SPEC §5) into id sets the workers can test, resolving string
//! matches, aliases, fuzzy matching and policy matches against the catalog once per request.
//!
//! The scan compares every stored string (and decodes every trace) a filter constrains, so a
//! request's compilation runs on tokio's blocking pool, not on an async thread, and the tables
//! are read a chunk of values at a time (see `intern::InternTable::scan_from`): a writer waits
//! for one chunk, never for a whole scan.

use std::sync::Arc;

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

/// The string matches of one field: a stored value matches if it, or its alias, equals an
/// exact value or contains a fuzzy one (case-insensitive).
struct StringMatcher {
    exact: Vec<String>,
    fuzzy: Vec<String>,
    aliases: Aliases,
}

impl StringMatcher {
    /// `None` when the field is unconstrained (no matches, or an empty fuzzy value).
    fn new(
        field: &str,
        matches: &[StringMatch],
        aliases: Aliases,
    ) -> Result<Option<Self>, ApiError> {
        if matches.is_empty() {
            return Ok(None);
        }
        let mut matcher = StringMatcher {
            exact: Vec::new(),
            fuzzy: Vec::new(),
            aliases,
        };
        let mut matches_all = false;
        for wanted in matches {
            if match_type(field, wanted)? {
                matches_all |= wanted.value.is_empty();
                matcher.fuzzy.push(wanted.value.to_lowercase());
            } else {
                matcher.exact.push(wanted.value.clone());
            }
        }
        Ok((!matches_all).then_some(matcher))
    }

    fn matches_one(&self, value: &str) -> bool {
        self.exact.iter().any(|exact| exact == value) || {
            let lowered = value.to_lowercase();
            self.fuzzy
                .iter()
                .any(|fuzzy| lowered.contains(fuzzy.as_str()))
        }
    }

    fn matches(&self, stored: &str) -> bool {
        self.matches_one(stored) || self.aliases.of(stored).is_some_and(|a| self.matches_one(a))
    }
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

/// A validated filter that can resolve itself against the catalog, all at once or, for
/// long-lived streams, incrementally as new strings and traces are interned.
pub struct FilterMatcher {
    source_names: Option<StringMatcher>,
    source_namespaces: Option<StringMatcher>,
    dest_names: Option<StringMatcher>,
    dest_namespaces: Option<StringMatcher>,
    protocols: Option<StringMatcher>,
    policies: Vec<PolicyMatch>,
    pending_actions: Vec<i32>,
    dest_ports: Option<Vec<i64>>,
    actions: Option<Vec<i32>>,
    reporter: Option<i32>,
}

/// How far a compiled filter has been resolved: catalog ids below these were examined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Strings examined.
    pub symbols: u32,
    /// Traces examined.
    pub traces: u32,
}

impl FilterMatcher {
    /// Validates `filter` (absent matches everything).
    pub fn new(filter: Option<&Filter>) -> Result<Self, ApiError> {
        let empty = Filter::default();
        let filter = filter.unwrap_or(&empty);
        Ok(FilterMatcher {
            source_names: StringMatcher::new(
                "filter.source_names",
                &filter.source_names,
                Aliases::Names,
            )?,
            source_namespaces: StringMatcher::new(
                "filter.source_namespaces",
                &filter.source_namespaces,
                Aliases::Namespaces,
            )?,
            dest_names: StringMatcher::new(
                "filter.dest_names",
                &filter.dest_names,
                Aliases::Names,
            )?,
            dest_namespaces: StringMatcher::new(
                "filter.dest_namespaces",
                &filter.dest_namespaces,
                Aliases::Namespaces,
            )?,
            protocols: StringMatcher::new("filter.protocols", &filter.protocols, Aliases::None)?,
            policies: filter.policies.clone(),
            pending_actions: filter.pending_actions.clone(),
            dest_ports: (!filter.dest_ports.is_empty())
                .then(|| filter.dest_ports.iter().map(|p| p.port).collect()),
            actions: (!filter.actions.is_empty()).then(|| filter.actions.clone()),
            reporter: (filter.reporter != 0).then_some(filter.reporter),
        })
    }

    /// The compiled filter before any catalog id is examined: constrained fields match nothing.
    pub fn unresolved(&self) -> FlowFilter {
        let set = |matcher: &Option<StringMatcher>| matcher.as_ref().map(|_| IdSet::default());
        FlowFilter {
            source_names: set(&self.source_names),
            source_namespaces: set(&self.source_namespaces),
            dest_names: set(&self.dest_names),
            dest_namespaces: set(&self.dest_namespaces),
            protocols: set(&self.protocols),
            dest_ports: self.dest_ports.clone(),
            actions: self.actions.clone(),
            reporter: self.reporter,
            traces: (!self.policies.is_empty() || !self.pending_actions.is_empty())
                .then(IdSet::default),
        }
    }

    /// Examines the catalog ids interned since `resolved` and adds the matching ones to
    /// `compiled`; returns how far it got.
    pub fn resolve(
        &self,
        compiled: &mut FlowFilter,
        catalog: &Catalog,
        resolved: Resolved,
    ) -> Resolved {
        let fields = [
            (&self.source_names, &mut compiled.source_names),
            (&self.source_namespaces, &mut compiled.source_namespaces),
            (&self.dest_names, &mut compiled.dest_names),
            (&self.dest_namespaces, &mut compiled.dest_namespaces),
            (&self.protocols, &mut compiled.protocols),
        ];
        let mut fields: Vec<_> = fields
            .into_iter()
            .filter_map(|(matcher, set)| Some((matcher.as_ref()?, set.as_mut()?)))
            .collect();
        let symbols = if fields.is_empty() {
            catalog.symbols.len() as u32
        } else {
            catalog.symbols.scan_from(resolved.symbols, |id, value| {
                for (matcher, set) in fields.iter_mut() {
                    if matcher.matches(value) {
                        set.push_newest(id);
                    }
                }
            })
        };
        let traces = match compiled.traces.as_mut() {
            Some(set) => catalog.scan_traces_from(resolved.traces, |id, trace| {
                if trace_matches(trace, &self.policies, &self.pending_actions) {
                    set.push_newest(id);
                }
            }),
            None => catalog.traces.len() as u32,
        };
        Resolved { symbols, traces }
    }
}

/// Compiles `filter` (absent matches everything) against everything interned so far: checks
/// it here, then scans the catalog on the blocking pool.
pub async fn compile(
    filter: Option<&Filter>,
    catalog: &Arc<Catalog>,
) -> Result<FlowFilter, ApiError> {
    let matcher = FilterMatcher::new(filter)?;
    let catalog = catalog.clone();
    tokio::task::spawn_blocking(move || {
        let mut compiled = matcher.unresolved();
        matcher.resolve(&mut compiled, &catalog, Resolved::default());
        compiled
    })
    .await
    .map_err(|failed| ApiError::Internal(format!("filter compilation failed: {failed}")))
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_is_case_insensitive_and_empty_matches_all() {
        let fuzzy = |value: &str| StringMatch {
            value: value.into(),
            r#type: MatchType::Fuzzy as i32,
        };
        let matcher = StringMatcher::new("f", &[fuzzy("kout-a")], Aliases::Names)
            .expect("valid")
            .expect("constrained");
        assert!(matcher.matches("Checkout-API"));
        assert!(!matcher.matches("cart"));
        let public = StringMatcher::new("f", &[fuzzy("public")], Aliases::Names)
            .expect("valid")
            .expect("constrained");
        assert!(public.matches("pub"));
        assert!(StringMatcher::new("f", &[fuzzy("")], Aliases::Names)
            .expect("valid")
            .is_none());
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

#[cfg(test)]
mod scan_tests {
    use crate::catalog::CatalogLimits;

    use super::*;

    /// A fuzzy filter over a table many scan chunks long, with values removed in between,
    /// finds exactly the matching strings.
    #[tokio::test]
    async fn a_fuzzy_filter_over_a_large_table_finds_every_match() {
        let catalog = Arc::new(Catalog::new(CatalogLimits::default()));
        let mut expected = Vec::new();
        let mut removable = Vec::new();
        for n in 0..20_000u32 {
            let name = if n % 7 == 0 {
                format!("Checkout-{n}")
            } else {
                format!("cart-{n}")
            };
            let id = catalog.symbols.intern(&name).expect("room");
            match (n % 7 == 0, n % 3 == 0) {
                (true, true) => removable.push(id),
                (true, false) => expected.push(id),
                _ => {}
            }
        }
        let (round, _) = catalog.begin_round();
        let removed = catalog.symbols.table().remove_unused(&removable, round);
        assert_eq!(removed.len(), removable.len());
        let filter = Filter {
            dest_names: vec![StringMatch {
                value: "KOUT".into(),
                r#type: MatchType::Fuzzy as i32,
            }],
            ..Default::default()
        };
        let compiled = compile(Some(&filter), &catalog)
            .await
            .expect("a valid filter");
        let names = compiled.dest_names.expect("the field is constrained");
        assert_eq!(names.ids(), &expected[..]);
        assert!(compiled.source_names.is_none());
    }
}
