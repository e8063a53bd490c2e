//! Compiles a request `Filter` (SPEC §5) into id sets the workers can test, resolving string
//! matches, aliases, fuzzy matching and policy matches against the catalog once per request.
//!
//! A field matched only by exact values is resolved by looking each value (and the stored
//! spellings aliased to it) up in the string table. A fuzzy match compares every stored string
//! (and a policy match decodes every trace), so a request's compilation runs on tokio's
//! blocking pool, not on an async thread, and the tables are read a chunk of values at a time
//! (see `intern::InternTable::scan_from`): a writer waits for one chunk, never for a whole scan.

use std::sync::Arc;

use eddy_dataflows::filter::{FlowFilter, IdSet};

use crate::api::status::ApiError;
use crate::catalog::Catalog;
use crate::intern::Symbols;
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
    /// (stored value, the other spelling it also answers to) pairs of this kind.
    fn pairs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Aliases::None => &[],
            Aliases::Names => &[("pub", "PUBLIC NETWORK"), ("pvt", "PRIVATE NETWORK")],
            Aliases::Namespaces => &[("-", "Global"), ("Global", "-")],
        }
    }

    /// The other spelling a stored value also answers to.
    fn of(self, stored: &str) -> Option<&'static str> {
        self.pairs()
            .iter()
            .find(|(value, _)| *value == stored)
            .map(|(_, alias)| *alias)
    }

    /// The stored values that answer to `wanted`: itself and any value aliased to it.
    fn stored_spellings(self, wanted: &str) -> impl Iterator<Item = &str> {
        std::iter::once(wanted).chain(
            self.pairs()
                .iter()
                .filter(move |(_, alias)| *alias == wanted)
                .map(|(value, _)| *value),
        )
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
        self.exact.iter().any(|exact| exact == value)
            || !self.fuzzy.is_empty() && {
                let lowered = value.to_lowercase();
                self.fuzzy
                    .iter()
                    .any(|fuzzy| lowered.contains(fuzzy.as_str()))
            }
    }

    fn matches(&self, stored: &str) -> bool {
        self.matches_one(stored) || self.aliases.of(stored).is_some_and(|a| self.matches_one(a))
    }

    /// Whether the matching strings can be looked up rather than found by a scan.
    fn exact_only(&self) -> bool {
        self.fuzzy.is_empty()
    }

    /// The ids in `from..below` of the stored strings an exact-only matcher matches,
    /// ascending, found by lookups in the string table.
    fn look_up(&self, symbols: &Symbols, from: u32, below: u32) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .exact
            .iter()
            .flat_map(|exact| self.aliases.stored_spellings(exact))
            .filter_map(|stored| symbols.lookup(stored))
            .filter(|id| (from..below).contains(id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
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
        // Read first: a string interned during the lookups gets an id at or above it and is
        // left to the next resolution, which starts there.
        let below = catalog.symbols.next_id();
        let (exact, mut scanned): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .filter_map(|(matcher, set)| Some((matcher.as_ref()?, set.as_mut()?)))
            .partition(|(matcher, _)| matcher.exact_only());
        for (matcher, set) in exact {
            for id in matcher.look_up(&catalog.symbols, resolved.symbols, below) {
                set.push_newest(id);
            }
        }
        if !scanned.is_empty() {
            // Strings interned since `below` wait for the next resolution, as above.
            catalog.symbols.scan_from(resolved.symbols, |id, value| {
                for (matcher, set) in scanned.iter_mut() {
                    if id < below && matcher.matches(value) {
                        set.push_newest(id);
                    }
                }
            });
        }
        let symbols = below;
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

    /// Exact matches are looked up: the value and the stored spelling aliased to it are found,
    /// only among the ids not resolved yet, and a later resolution adds what was interned since.
    #[test]
    fn exact_matches_are_looked_up_with_their_aliases_and_resolved_incrementally() {
        let catalog = Catalog::new(CatalogLimits::default());
        let ids = |values: &[&str]| -> Vec<u32> {
            values
                .iter()
                .map(|value| catalog.symbols.intern(value).expect("room"))
                .collect()
        };
        let first = ids(&["web", "-", "Global", "frontend", "pub"]);
        let exact = |value: &str| StringMatch {
            value: value.into(),
            r#type: MatchType::Exact as i32,
        };
        let filter = Filter {
            dest_namespaces: vec![exact("Global"), exact("frontend"), exact("missing")],
            source_names: vec![exact("PUBLIC NETWORK")],
            ..Default::default()
        };
        let matcher = FilterMatcher::new(Some(&filter)).expect("a valid filter");
        let mut compiled = matcher.unresolved();
        let resolved = matcher.resolve(&mut compiled, &catalog, Resolved::default());
        let namespaces = |compiled: &FlowFilter| {
            compiled
                .dest_namespaces
                .as_ref()
                .expect("constrained")
                .ids()
                .to_vec()
        };
        assert_eq!(namespaces(&compiled), vec![first[1], first[2], first[3]]);
        assert_eq!(
            compiled.source_names.as_ref().expect("constrained").ids(),
            &[first[4]]
        );
        assert_eq!(resolved.symbols, catalog.symbols.next_id());
        let later = ids(&["missing", "other"]);
        let again = matcher.resolve(&mut compiled, &catalog, resolved);
        assert_eq!(
            namespaces(&compiled),
            vec![first[1], first[2], first[3], later[0]]
        );
        assert_eq!(again.symbols, later[1] + 1);
    }
}
