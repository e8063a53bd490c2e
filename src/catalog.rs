//! The catalog: every interned value the frontend knows (strings, label sets, canonical
//! policy traces and their rules), shared by ingest (which adds) and queries (which resolve
//! and match).

pub mod collector;
pub mod rules;

use std::sync::atomic::{AtomicU64, Ordering};

use eddy_dataflows::model::{FlowKey, PolicyRule, TraceId};
use prost::Message;

use crate::catalog::collector::CollectorCounters;
use crate::catalog::rules::TraceRuleTable;
use crate::ingest::policy_rules::rules_of_trace;
use crate::intern::encoding::{Bytes, LabelSet};
use crate::intern::{CatalogTable, InternTable, InternerFull, RestoreError, Symbols, TableLimit};
use crate::proto::PolicyTrace;

/// Bounds of the catalog's tables, each in entries and in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CatalogLimits {
    /// Distinct strings (names, namespaces, protocols, policy fields).
    pub strings: TableLimit,
    /// Distinct label sets.
    pub label_sets: TableLimit,
    /// Distinct canonical policy traces.
    pub traces: TableLimit,
    /// The distinct policy rules of the traces, summed over the traces.
    pub trace_rules: TableLimit,
}

/// 256 MiB: the default byte bound of every table.
pub const DEFAULT_TABLE_BYTES: usize = 256 * 1024 * 1024;

impl Default for CatalogLimits {
    fn default() -> Self {
        let limit = |entries| TableLimit {
            entries,
            bytes: DEFAULT_TABLE_BYTES,
        };
        CatalogLimits {
            strings: limit(4_000_000),
            label_sets: limit(1_000_000),
            traces: limit(1_000_000),
            trace_rules: limit(4_000_000),
        }
    }
}

/// The ids each table will give next, noted when a collection round begins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    /// Strings.
    pub strings: u32,
    /// Label sets.
    pub label_sets: u32,
    /// Traces.
    pub traces: u32,
}

/// The interned values. Ids are never reused while the process runs.
pub struct Catalog {
    /// Names, namespaces, protocols and policy fields.
    pub symbols: Symbols,
    /// Sorted, de-duplicated label sets.
    pub label_sets: InternTable<LabelSet>,
    /// Canonical policy traces, by their protobuf encoding.
    pub traces: InternTable<Bytes>,
    /// The distinct rules of every trace, and those not yet handed to the engine.
    pub rules: TraceRuleTable,
    /// Held from [`Catalog::take_new_rules`] until the batch carrying those rules is handed
    /// to the engine, so no batch using a trace can overtake the one with its rules.
    pub handover: tokio::sync::Mutex<()>,
    /// Held shared by an ingest batch from its first intern until it is handed to the engine,
    /// and exclusively by the collector while it begins a round (notes how far ids go and
    /// sends its used-ids read): so every id below that mark is either in the engine before
    /// the read or stamped with the new round when it is interned again.
    pub gate: tokio::sync::RwLock<()>,
    /// Entries removed by the collector, by table.
    pub removed: CollectorCounters,
    /// `Connect` calls ended because a table was full, by table (in [`CatalogTable::ALL`]
    /// order).
    refused: [AtomicU64; 4],
    /// The last collection round begun, over every collector.
    rounds: AtomicU64,
}

impl Catalog {
    /// An empty catalog. Label set 0 is the empty set; trace 0 is the empty trace.
    pub fn new(limits: CatalogLimits) -> Self {
        let at_least_one = |limit: TableLimit| TableLimit {
            entries: limit.entries.max(1),
            ..limit
        };
        let catalog = Catalog {
            symbols: Symbols::new(limits.strings),
            label_sets: InternTable::new(CatalogTable::LabelSets, at_least_one(limits.label_sets)),
            traces: InternTable::new(CatalogTable::Traces, at_least_one(limits.traces)),
            rules: TraceRuleTable::new(limits.trace_rules),
            handover: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            removed: CollectorCounters::default(),
            refused: Default::default(),
            rounds: AtomicU64::new(0),
        };
        catalog
            .label_sets
            .intern(&[][..])
            .expect("an empty table has room for the empty label set");
        catalog
            .intern_trace(&[][..], || Ok(Vec::new()))
            .expect("an empty table has room for the empty trace");
        catalog
    }

    /// The id of a canonical trace's encoding. A trace seen for the first time gets its
    /// distinct rules from `expand` (which may intern their strings); they are recorded with
    /// it and queued until [`Catalog::take_new_rules`] hands them to the engine. Fails if the
    /// trace table or the rules table is full, or `expand` does.
    pub fn intern_trace(
        &self,
        encoded: &[u8],
        expand: impl FnOnce() -> Result<Vec<PolicyRule>, InternerFull>,
    ) -> Result<u32, InternerFull> {
        if let Some(id) = self.traces.find(encoded) {
            return Ok(id);
        }
        let expanded = expand()?;
        let mut rules = self.rules.lock();
        if let Some(id) = self.traces.find(encoded) {
            return Ok(id);
        }
        rules.reserve(expanded.len())?;
        let (id, new) = self.traces.intern_noting_new(encoded)?;
        if new {
            rules.insert(id, expanded.into());
        }
        Ok(id)
    }

    /// Restores traces given as their canonical encodings under their ids (see
    /// [`InternTable::restore_all`]), each with its rules recorded and queued for the engine
    /// exactly as [`Catalog::intern_trace`] does for a new trace (the rules' strings are
    /// interned, so restore the strings first). All or nothing for the traces and their
    /// rules (strings the rules interned stay). Fails for bytes that are not a trace's
    /// encoding, a conflict with a held trace, or a full trace or rules table.
    pub fn restore_traces(&self, entries: &[(u32, &[u8])]) -> Result<(), RestoreError> {
        let mut expanded = Vec::with_capacity(entries.len());
        for (id, bytes) in entries {
            let trace = PolicyTrace::decode(*bytes).map_err(|_| RestoreError::Invalid {
                table: CatalogTable::Traces,
                id: *id,
                reason: "not a policy trace's encoding",
            })?;
            expanded.push(rules_of_trace(Some(&trace), &self.symbols)?);
        }
        let mut rules = self.rules.lock();
        rules.reserve(expanded.iter().map(Vec::len).sum())?;
        let new = self.traces.restore_noting_new(entries)?;
        for (((id, _), expanded), _) in entries
            .iter()
            .zip(expanded)
            .zip(&new)
            .filter(|(_, new)| **new)
        {
            rules.insert(*id, expanded.into());
        }
        Ok(())
    }

    /// The rules of the traces first seen since the last call, paired with their trace.
    pub fn take_new_rules(&self) -> Vec<(TraceId, PolicyRule)> {
        self.rules.take_pending()
    }

    /// The canonical trace behind `id` (empty for an unknown id).
    pub fn trace(&self, id: u32) -> PolicyTrace {
        self.traces
            .read_stored(id, |bytes| PolicyTrace::decode(bytes).ok())
            .flatten()
            .unwrap_or_default()
    }

    /// Calls `visit` with every trace whose id is at least `from`, in id order, and returns
    /// the id the next new trace will get (the next `from`).
    pub fn scan_traces_from(&self, from: u32, mut visit: impl FnMut(u32, &PolicyTrace)) -> u32 {
        self.traces.scan_from(from, |id, bytes| {
            if let Ok(trace) = PolicyTrace::decode(bytes) {
                visit(id, &trace);
            }
        })
    }

    /// The labels of set `id` (empty for an unknown id).
    pub fn label_set(&self, id: u32) -> Vec<String> {
        self.label_sets.get(id).unwrap_or_default()
    }

    /// Begins a new collection round on every table (call with the gate held exclusively)
    /// and returns it with how far each table's ids go. Rounds only grow, whichever
    /// collector begins them.
    pub fn begin_round(&self) -> (u64, Marks) {
        let round = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let marks = Marks {
            strings: self.symbols.table().begin_round(round),
            label_sets: self.label_sets.begin_round(round),
            traces: self.traces.begin_round(round),
        };
        (round, marks)
    }

    /// The last collection round begun: what the tables stamp the entries they intern with.
    /// It changes only with the gate held exclusively, so it is fixed while a batch holds it
    /// shared.
    pub fn round(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Stamps every catalog entry `key` and `labels` use with the current round, as interning
    /// their values again would. Returns false if any of them is gone (removed by the catalog
    /// collector): the update must be interned again, and gets new ids.
    pub fn touch_record(&self, key: &FlowKey, labels: (u32, u32)) -> bool {
        self.symbols.table().touch_ids(&key.strings())
            && self.label_sets.touch_ids(&[labels.0, labels.1])
            && self.traces.touch_ids(&[key.trace])
    }

    /// Counts a `Connect` call ended because `full.table` was full.
    pub fn refused(&self, full: InternerFull) {
        self.refused[full.table.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// `Connect` calls ended because `table` was full.
    pub fn refused_for(&self, table: CatalogTable) -> u64 {
        self.refused[table.index()].load(Ordering::Relaxed)
    }

    /// `Connect` calls ended because a table was full, over every table.
    pub fn refused_total(&self) -> u64 {
        CatalogTable::ALL
            .iter()
            .map(|table| self.refused_for(*table))
            .sum()
    }

    /// Entries held by `table`.
    pub fn len_of(&self, table: CatalogTable) -> usize {
        match table {
            CatalogTable::Strings => self.symbols.len(),
            CatalogTable::LabelSets => self.label_sets.len(),
            CatalogTable::Traces => self.traces.len(),
            CatalogTable::TraceRules => self.rules.len(),
        }
    }

    /// Bytes of the slots by id of the three intern tables (the rules table keeps none).
    pub fn slot_bytes(&self) -> [(CatalogTable, usize); 3] {
        [
            (CatalogTable::Strings, self.symbols.table().slot_bytes()),
            (CatalogTable::LabelSets, self.label_sets.slot_bytes()),
            (CatalogTable::Traces, self.traces.slot_bytes()),
        ]
    }

    /// Bytes of the values `table` holds.
    pub fn bytes_of(&self, table: CatalogTable) -> usize {
        match table {
            CatalogTable::Strings => self.symbols.table().bytes(),
            CatalogTable::LabelSets => self.label_sets.bytes(),
            CatalogTable::Traces => self.traces.bytes(),
            CatalogTable::TraceRules => self.rules.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use eddy_dataflows::model::StatLevel;

    use super::*;

    fn rule(name: u32) -> PolicyRule {
        PolicyRule {
            kind: 1,
            tier: 0,
            namespace: 0,
            name,
            action: 1,
            rule_index: 0,
            level: StatLevel::Policy,
        }
    }

    #[test]
    fn a_trace_used_again_after_the_mark_keeps_its_id_and_rules() {
        let catalog = Catalog::new(CatalogLimits::default());
        let kept = catalog
            .intern_trace(b"kept", || Ok(vec![rule(1)]))
            .expect("room");
        let dropped = catalog
            .intern_trace(b"dropped", || Ok(vec![rule(2), rule(3)]))
            .expect("room");
        assert_eq!(
            catalog.take_new_rules(),
            vec![(kept, rule(1)), (dropped, rule(2)), (dropped, rule(3))]
        );
        let (round, marks) = catalog.begin_round();
        assert_eq!(marks.traces, dropped + 1);
        // A batch finds "kept" after the collector noted both unused.
        let again = catalog
            .intern_trace(b"kept", || panic!("a known trace is not expanded again"))
            .expect("known");
        assert_eq!(again, kept);
        let removed = catalog.traces.remove_unused(&[kept, dropped], round);
        assert_eq!(removed, vec![dropped]);
        assert_eq!(
            catalog.rules.remove(&removed),
            (2, vec![(dropped, rule(2)), (dropped, rule(3))])
        );
        assert_eq!(catalog.rules.len(), 1);
        // Interned again after removal: a new id, with its rules queued again.
        let back = catalog
            .intern_trace(b"dropped", || Ok(vec![rule(2)]))
            .expect("room");
        assert!(back > dropped);
        assert_eq!(catalog.take_new_rules(), vec![(back, rule(2))]);
    }

    #[test]
    fn restored_traces_keep_their_ids_and_queue_their_rules() {
        use crate::proto::{PolicyHit, PolicyKind};
        let catalog = Catalog::new(CatalogLimits::default());
        let trace = PolicyTrace {
            enforced_policies: vec![PolicyHit {
                kind: PolicyKind::CalicoNetworkPolicy as i32,
                tier: "default".into(),
                namespace: "web".into(),
                name: "allow-web".into(),
                action: 1,
                rule_index: 2,
                ..PolicyHit::default()
            }],
            ..PolicyTrace::default()
        };
        let bytes = trace.encode_to_vec();
        catalog
            .symbols
            .restore_all(&[(5, b"default"), (6, b"web"), (7, b"allow-web")])
            .expect("room");
        catalog
            .restore_traces(&[(0, b""), (9, &bytes)])
            .expect("a trace and the empty one");
        assert_eq!(catalog.trace(9), trace);
        assert_eq!(catalog.traces.next_id(), 10);
        let rules = catalog.take_new_rules();
        assert_eq!(rules.len(), 2, "the rule and its policy");
        assert!(rules
            .iter()
            .all(|(id, rule)| *id == 9 && (rule.tier, rule.namespace, rule.name) == (5, 6, 7)));
        assert_eq!(
            catalog.symbols.next_id(),
            8,
            "the rules' strings were restored"
        );
        assert!(matches!(
            catalog.restore_traces(&[(10, &[0xff, 0xff][..])]),
            Err(RestoreError::Invalid { id: 10, .. })
        ));
        assert!(matches!(
            catalog.restore_traces(&[(11, &bytes)]),
            Err(RestoreError::ValueTaken { held: 9, .. })
        ));
        assert!(catalog.take_new_rules().is_empty());
        assert_eq!(catalog.rules.len(), 2);
    }

    #[test]
    fn rules_never_handed_over_are_dropped_unsent_and_a_full_rules_table_refuses() {
        let catalog = Catalog::new(CatalogLimits {
            trace_rules: TableLimit::entries(2),
            ..CatalogLimits::default()
        });
        let pending = catalog
            .intern_trace(b"pending", || Ok(vec![rule(1), rule(2)]))
            .expect("room for two rules");
        let full = catalog
            .intern_trace(b"more", || Ok(vec![rule(3)]))
            .expect_err("a third rule has no room");
        assert_eq!(full.table, CatalogTable::TraceRules);
        assert_eq!(
            catalog.traces.lookup(&b"more"[..]),
            None,
            "no trace without its rules"
        );
        assert_eq!(catalog.rules.remove(&[pending]), (2, vec![]));
        assert!(catalog.take_new_rules().is_empty());
        assert!(catalog.intern_trace(b"more", || Ok(vec![rule(3)])).is_ok());
    }
}
