//! The used-ids read: which string, label-set and trace ids this worker's retained flows refer
//! to, below given marks, so the frontend can drop catalog entries nothing uses any more.
//!
//! Walks every flow of the flow table once, its key and its rows' label pairs: callers ask
//! once per epoch.

use crate::flow_table::FlowTable;
use crate::views::flows::FlowsReader;
use crate::views::Views;

/// A set of ids below a mark, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdBits {
    words: Vec<u64>,
    below: u32,
}

impl IdBits {
    /// An empty set for ids below `below`.
    pub fn below(below: u32) -> Self {
        IdBits {
            words: vec![0; (below as usize).div_ceil(64)],
            below,
        }
    }

    /// Adds `id`; ids at or above the mark are ignored.
    pub fn insert(&mut self, id: u32) {
        if id >= self.below {
            return;
        }
        if let Some(word) = self.words.get_mut(id as usize / 64) {
            *word |= 1 << (id % 64);
        }
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    /// Adds every id of `other` (a set with the same mark).
    pub fn union(&mut self, other: &IdBits) {
        for (word, theirs) in self.words.iter_mut().zip(&other.words) {
            *word |= theirs;
        }
    }
}

/// The ids one worker's retained flows use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedIds {
    /// String ids in flow keys.
    pub strings: IdBits,
    /// Label-set ids (source and destination).
    pub label_sets: IdBits,
    /// Trace ids.
    pub traces: IdBits,
}

/// How far each catalog table's ids went when a used-ids read was asked for: ids at or above
/// a mark are not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdMarks {
    /// String ids.
    pub strings: u32,
    /// Label-set ids.
    pub label_sets: u32,
    /// Trace ids.
    pub traces: u32,
}

impl UsedIds {
    /// Nothing used yet, for ids below `marks`.
    pub fn below(marks: IdMarks) -> Self {
        UsedIds {
            strings: IdBits::below(marks.strings),
            label_sets: IdBits::below(marks.label_sets),
            traces: IdBits::below(marks.traces),
        }
    }

    /// Adds every id of `other` (with the same marks).
    pub fn union(&mut self, other: &UsedIds) {
        self.strings.union(&other.strings);
        self.label_sets.union(&other.label_sets);
        self.traces.union(&other.traces);
    }
}

/// The string, label-set and trace ids below `marks` that this worker's retained flows use.
pub fn used_ids(views: &mut Views, marks: IdMarks) -> UsedIds {
    used_ids_of(&views.reader::<FlowsReader>().table(), marks)
}

fn used_ids_of(table: &FlowTable, marks: IdMarks) -> UsedIds {
    let mut used = UsedIds::below(marks);
    table.visit(None, |key, rows| {
        for row in rows {
            let (source_labels, dest_labels) = row.labels;
            used.label_sets.insert(source_labels);
            used.label_sets.insert(dest_labels);
        }
        for id in key.strings() {
            used.strings.insert(id);
        }
        used.traces.insert(key.trace);
    });
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_bits_hold_ids_below_the_mark() {
        let mut bits = IdBits::below(130);
        bits.insert(0);
        bits.insert(129);
        bits.insert(130);
        assert!(bits.contains(0) && bits.contains(129));
        assert!(!bits.contains(1) && !bits.contains(130) && !bits.contains(5000));
        let mut other = IdBits::below(130);
        other.insert(64);
        bits.union(&other);
        assert!(bits.contains(64));
    }
}
