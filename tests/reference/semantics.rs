//! The reference semantics of filters (SPEC §5) and of List order (SPEC §4.3), written from
//! the contract without looking at how the server compiles them.

use std::cmp::Ordering;
use std::collections::HashMap;

use eddy::proto::{Filter, FlowKey, PolicyHit, PolicyKind, PolicyMatch, PolicyTrace, StringMatch};

use crate::model::{decode_key, Row};

/// SPEC §5.2: the other spelling a stored name or namespace answers to.
fn alias(stored: &str, namespaces: bool) -> Option<&'static str> {
    match (namespaces, stored) {
        (false, "pub") => Some("PUBLIC NETWORK"),
        (false, "pvt") => Some("PRIVATE NETWORK"),
        (true, "-") => Some("Global"),
        (true, "Global") => Some("-"),
        _ => None,
    }
}

/// SPEC §5.3: exact is byte equality, fuzzy a case-insensitive substring.
fn string_matches(stored: &str, wanted: &StringMatch) -> bool {
    if wanted.r#type == 1 {
        stored.to_lowercase().contains(&wanted.value.to_lowercase())
    } else {
        stored == wanted.value
    }
}

fn any_string(wanted: &[StringMatch], stored: &str, aliases: Option<bool>) -> bool {
    let alias = aliases.and_then(|namespaces| alias(stored, namespaces));
    wanted.is_empty()
        || wanted.iter().any(|w| {
            string_matches(stored, w) || alias.is_some_and(|alias| string_matches(alias, w))
        })
}

/// SPEC §5.5: wildcards, and an EndOfTier hit also answers with its trigger's names.
fn hit_matches(hit: &PolicyHit, wanted: &PolicyMatch) -> bool {
    let trigger = hit
        .trigger
        .as_deref()
        .filter(|_| hit.kind == PolicyKind::EndOfTier as i32);
    let name_ok = wanted.name.is_empty()
        || wanted.name == hit.name
        || trigger.is_some_and(|t| t.name == wanted.name);
    let namespace_ok = wanted.namespace.is_empty()
        || wanted.namespace == hit.namespace
        || trigger.is_some_and(|t| t.namespace == wanted.namespace);
    (wanted.kind == 0 || wanted.kind == hit.kind)
        && (wanted.tier.is_empty() || wanted.tier == hit.tier)
        && name_ok
        && namespace_ok
        && (wanted.action == 0 || wanted.action == hit.action)
}

/// SPEC §5.1-§5.5: whether a canonical key passes `filter`.
pub fn matches(filter: &Filter, key: &FlowKey) -> bool {
    let empty = PolicyTrace::default();
    let trace = key.policies.as_ref().unwrap_or(&empty);
    let hits = || {
        trace
            .enforced_policies
            .iter()
            .chain(&trace.pending_policies)
    };
    any_string(&filter.source_names, &key.source_name, Some(false))
        && any_string(&filter.dest_names, &key.dest_name, Some(false))
        && any_string(&filter.source_namespaces, &key.source_namespace, Some(true))
        && any_string(&filter.dest_namespaces, &key.dest_namespace, Some(true))
        && any_string(&filter.protocols, &key.proto, None)
        && (filter.dest_ports.is_empty()
            || filter.dest_ports.iter().any(|p| p.port == key.dest_port))
        && (filter.actions.is_empty() || filter.actions.contains(&key.action))
        && (filter.reporter == 0 || filter.reporter == key.reporter)
        && (filter.policies.is_empty()
            || hits().any(|hit| filter.policies.iter().any(|w| hit_matches(hit, w))))
        && (filter.pending_actions.is_empty()
            || trace
                .pending_policies
                .iter()
                .any(|hit| filter.pending_actions.contains(&hit.action)))
}

/// SPEC §4.3: the requested order, then id ascending, then start descending.
pub fn sort_rows(rows: &mut [Row], sort_by: &[i32], ids: &HashMap<Vec<u8>, i64>) {
    let id = |row: &Row| ids.get(&row.key).copied().unwrap_or(i64::MAX);
    rows.sort_by(|a, b| {
        let (ka, kb) = (decode_key(&a.key), decode_key(&b.key));
        let mut order = Ordering::Equal;
        for option in sort_by {
            order = order.then_with(|| match option {
                0 => b.start.cmp(&a.start),
                1 => ka.dest_name.as_bytes().cmp(kb.dest_name.as_bytes()),
                2 => ka
                    .dest_namespace
                    .as_bytes()
                    .cmp(kb.dest_namespace.as_bytes()),
                3 => ka.dest_type.cmp(&kb.dest_type),
                4 => ka.source_name.as_bytes().cmp(kb.source_name.as_bytes()),
                5 => ka
                    .source_namespace
                    .as_bytes()
                    .cmp(kb.source_namespace.as_bytes()),
                _ => ka.source_type.cmp(&kb.source_type),
            });
        }
        if sort_by.is_empty() {
            order = b.start.cmp(&a.start);
        }
        order
            .then_with(|| id(a).cmp(&id(b)))
            .then_with(|| b.start.cmp(&a.start))
    });
}
