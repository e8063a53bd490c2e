//! A flow filter (SPEC §5) compiled by the frontend into sets of ids, so that a worker
//! evaluates it on interned keys without ever seeing a string.
//!
//! `None` in a field means "no constraint"; `Some(set)` means the key's value must be in the
//! set (an empty set matches nothing). String matching, aliases, fuzzy matching and policy
//! matching were already resolved into these sets by the frontend.

use crate::model::{FlowKey, Sym, TraceId};

/// A sorted set of ids, searched by binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdSet(Vec<u32>);

impl IdSet {
    /// Builds a set from any ids, sorting and de-duplicating them.
    pub fn new(mut ids: Vec<u32>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        IdSet(ids)
    }

    /// Adds an id larger than every id in the set (catalog ids grow, so a scan in id order
    /// keeps the set sorted).
    pub fn push_newest(&mut self, id: u32) {
        debug_assert!(
            self.0.last().is_none_or(|last| *last < id),
            "ids are added in order"
        );
        self.0.push(id);
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    /// The ids, ascending.
    pub fn ids(&self) -> &[u32] {
        &self.0
    }
}

/// A filter over interned flow keys. The default matches every key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// Allowed source names.
    pub source_names: Option<IdSet>,
    /// Allowed source namespaces.
    pub source_namespaces: Option<IdSet>,
    /// Allowed destination names.
    pub dest_names: Option<IdSet>,
    /// Allowed destination namespaces.
    pub dest_namespaces: Option<IdSet>,
    /// Allowed protocols.
    pub protocols: Option<IdSet>,
    /// Allowed destination ports.
    pub dest_ports: Option<Vec<i64>>,
    /// Allowed final actions (enum numbers).
    pub actions: Option<Vec<i32>>,
    /// Required reporter (enum number).
    pub reporter: Option<i32>,
    /// Allowed policy traces: those satisfying both the policy matches and pending actions.
    pub traces: Option<IdSet>,
}

fn allows(set: &Option<IdSet>, id: Sym) -> bool {
    set.as_ref().is_none_or(|set| set.contains(id))
}

impl FlowFilter {
    /// Whether the filter constrains nothing.
    pub fn is_empty(&self) -> bool {
        *self == FlowFilter::default()
    }

    /// Whether `key` satisfies every constrained field (AND across fields, SPEC §5.1).
    pub fn matches(&self, key: &FlowKey) -> bool {
        allows(&self.source_names, key.source_name)
            && allows(&self.source_namespaces, key.source_namespace)
            && allows(&self.dest_names, key.dest_name)
            && allows(&self.dest_namespaces, key.dest_namespace)
            && allows(&self.protocols, key.proto)
            && self
                .dest_ports
                .as_ref()
                .is_none_or(|ports| ports.contains(&key.dest_port))
            && self
                .actions
                .as_ref()
                .is_none_or(|actions| actions.contains(&key.action))
            && self
                .reporter
                .is_none_or(|reporter| reporter == key.reporter)
            && allows(&self.traces, key.trace as TraceId)
    }
}
