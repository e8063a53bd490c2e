//! The catalog: every interned value the frontend knows (strings, label sets, canonical
//! policy traces), shared by ingest (which adds) and queries (which resolve and match).

pub mod collector;

use std::sync::Arc;

use parking_lot::Mutex;
use prost::Message;
use rustc_hash::FxHashSet;

use crate::catalog::collector::CollectorCounters;
use crate::intern::{InternTable, InternerFull, Symbols};
use crate::proto::PolicyTrace;

/// Bounds of the catalog's tables.
#[derive(Clone, Copy, Debug)]
pub struct CatalogLimits {
    /// Distinct strings (names, namespaces, protocols, policy fields, labels).
    pub strings: usize,
    /// Distinct label sets.
    pub label_sets: usize,
    /// Distinct canonical policy traces.
    pub traces: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            strings: 4_000_000,
            label_sets: 1_000_000,
            traces: 1_000_000,
        }
    }
}

/// The interned values. Ids are never reused while the process runs.
pub struct Catalog {
    /// Names, namespaces, protocols and policy fields.
    pub symbols: Symbols,
    /// Sorted, de-duplicated label sets.
    pub label_sets: InternTable<Arc<[String]>>,
    /// Canonical policy traces, by their protobuf encoding.
    pub traces: InternTable<Arc<[u8]>>,
    /// Traces interned but not yet handed to the engine (bounded by the trace table).
    new_traces: Mutex<Vec<u32>>,
    /// Held from [`Catalog::take_new_traces`] until the batch carrying those traces' rules is
    /// handed to the engine, so no batch using a trace can overtake the one with its rules.
    pub handover: tokio::sync::Mutex<()>,
    /// Held shared by an ingest batch from its first intern until it is handed to the engine,
    /// and exclusively by the collector while it notes which ids exist: so every id below
    /// that mark is either in the engine or used by nobody.
    pub gate: tokio::sync::RwLock<()>,
    /// Entries removed by the collector, by table.
    pub removed: CollectorCounters,
    /// Strings named by the policy rules of traces (kept while their trace is: always).
    rule_strings: Mutex<FxHashSet<u32>>,
}

impl Catalog {
    /// An empty catalog. Label set 0 is the empty set; trace 0 is the empty trace.
    pub fn new(limits: CatalogLimits) -> Self {
        let catalog = Catalog {
            symbols: Symbols::new(limits.strings),
            label_sets: InternTable::new(limits.label_sets.max(1)),
            traces: InternTable::new(limits.traces.max(1)),
            new_traces: Mutex::new(Vec::new()),
            handover: tokio::sync::Mutex::new(()),
            gate: tokio::sync::RwLock::new(()),
            removed: CollectorCounters::default(),
            rule_strings: Mutex::new(FxHashSet::default()),
        };
        catalog
            .label_sets
            .intern(&[][..])
            .expect("an empty table has room for the empty label set");
        catalog
            .intern_trace(&[][..])
            .expect("an empty table has room for the empty trace");
        catalog
    }

    /// The id of a canonical trace's encoding. A trace seen for the first time is queued
    /// until [`Catalog::take_new_traces`] hands it to the engine.
    pub fn intern_trace(&self, encoded: &[u8]) -> Result<u32, InternerFull> {
        let (id, new) = self.traces.intern_noting_new(encoded)?;
        if new {
            self.new_traces.lock().push(id);
        }
        Ok(id)
    }

    /// The traces first seen since the last call, in the order they were seen.
    pub fn take_new_traces(&self) -> Vec<u32> {
        std::mem::take(&mut *self.new_traces.lock())
    }

    /// The canonical trace behind `id` (empty for an unknown id).
    pub fn trace(&self, id: u32) -> PolicyTrace {
        self.traces
            .get(id)
            .and_then(|bytes| PolicyTrace::decode(&bytes[..]).ok())
            .unwrap_or_default()
    }

    /// Calls `visit` with every trace whose id is at least `from`, in id order, and returns
    /// the id the next new trace will get (the next `from`).
    pub fn scan_traces_from(&self, from: u32, mut visit: impl FnMut(u32, &PolicyTrace)) -> u32 {
        self.traces.scan_from(from, |id, bytes| {
            if let Ok(trace) = PolicyTrace::decode(&bytes[..]) {
                visit(id, &trace);
            }
        })
    }

    /// Records strings that policy rules name, so the collector keeps them.
    pub fn keep_rule_strings(&self, ids: impl IntoIterator<Item = u32>) {
        self.rule_strings.lock().extend(ids);
    }

    /// Calls `visit` with every string a policy rule names.
    pub fn for_each_rule_string(&self, mut visit: impl FnMut(u32)) {
        self.rule_strings.lock().iter().for_each(|id| visit(*id));
    }

    /// The labels of set `id` (empty for an unknown id).
    pub fn label_set(&self, id: u32) -> Vec<String> {
        self.label_sets
            .get(id)
            .map(|labels| labels.to_vec())
            .unwrap_or_default()
    }
}
