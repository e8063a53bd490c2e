//! The routing index of live streams: each filter group is filed under the ids of one of its
//! exact-set fields (the smallest of destination namespace, source namespace, destination
//! name, source name), so a row only meets the groups that can match it. Groups with none
//! of those fields constrained are checked for every row.
//!
//! State: one entry per (group, id of its indexed field). Rebuilt whenever groups come or go
//! or one of their indexable id sets grows.

use std::collections::HashMap;

use eddy_dataflows::filter::{FlowFilter, IdSet};
use eddy_dataflows::model::FlowKey;

/// Identifies a filter group.
pub type GroupId = u64;

#[derive(Clone, Copy)]
enum IndexedField {
    DestNamespace,
    SourceNamespace,
    DestName,
    SourceName,
}

impl IndexedField {
    const ALL: [IndexedField; 4] = [
        IndexedField::DestNamespace,
        IndexedField::SourceNamespace,
        IndexedField::DestName,
        IndexedField::SourceName,
    ];

    fn set(self, filter: &FlowFilter) -> Option<&IdSet> {
        match self {
            IndexedField::DestNamespace => filter.dest_namespaces.as_ref(),
            IndexedField::SourceNamespace => filter.source_namespaces.as_ref(),
            IndexedField::DestName => filter.dest_names.as_ref(),
            IndexedField::SourceName => filter.source_names.as_ref(),
        }
    }

    fn value(self, key: &FlowKey) -> u32 {
        match self {
            IndexedField::DestNamespace => key.dest_namespace,
            IndexedField::SourceNamespace => key.source_namespace,
            IndexedField::DestName => key.dest_name,
            IndexedField::SourceName => key.source_name,
        }
    }
}

/// The sizes of a filter's indexable id sets: when they are unchanged, so is its place in
/// the index.
pub fn indexed_sizes(filter: &FlowFilter) -> [Option<usize>; 4] {
    IndexedField::ALL.map(|field| field.set(filter).map(|set| set.ids().len()))
}

/// Groups by the value of their indexed field, plus the groups that must see every row.
#[derive(Default)]
pub struct GroupIndex {
    by_field: [HashMap<u32, Vec<GroupId>>; 4],
    everywhere: Vec<GroupId>,
}

impl GroupIndex {
    /// An index over `groups`.
    pub fn build<'a>(groups: impl Iterator<Item = (GroupId, &'a FlowFilter)>) -> Self {
        let mut index = GroupIndex::default();
        for (group, filter) in groups {
            let smallest = IndexedField::ALL
                .iter()
                .enumerate()
                .filter_map(|(slot, field)| Some((slot, field.set(filter)?)))
                .min_by_key(|(_, set)| set.ids().len());
            match smallest {
                Some((slot, set)) => {
                    for id in set.ids() {
                        index.by_field[slot].entry(*id).or_default().push(group);
                    }
                }
                None => index.everywhere.push(group),
            }
        }
        index
    }

    /// Appends to `out` every group that may match `key`.
    pub fn candidates(&self, key: &FlowKey, out: &mut Vec<GroupId>) {
        out.extend_from_slice(&self.everywhere);
        for (slot, field) in IndexedField::ALL.iter().enumerate() {
            if let Some(groups) = self.by_field[slot].get(&field.value(key)) {
                out.extend_from_slice(groups);
            }
        }
    }
}
