//! The catalog's table of trace rules: the distinct policy rules of every interned trace, kept
//! while the trace is, and which of them the engine has not been handed yet.
//!
//! Bounded in rules and in bytes (each rule counts `size_of::<PolicyRule>()`). A trace's rules
//! are recorded under this table's lock at the moment the trace is first interned, so a trace
//! never exists without its rules; removing a trace gives back the rules the engine holds, to be
//! retracted, or drops them unsent if no batch has taken them yet.

use std::sync::Arc;

use eddy_dataflows::model::{PolicyRule, TraceId};
use parking_lot::{Mutex, MutexGuard};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::intern::{CatalogTable, InternerFull, TableLimit};

/// The bytes one rule counts for.
const RULE_BYTES: usize = std::mem::size_of::<PolicyRule>();

/// The rules held and the ones not yet handed to the engine.
#[derive(Default)]
pub struct RuleEntries {
    by_trace: FxHashMap<TraceId, Arc<[PolicyRule]>>,
    /// Traces whose rules no batch has taken yet, in the order they were interned.
    pending: Vec<TraceId>,
    rules: usize,
}

impl RuleEntries {
    /// Whether `count` more rules fit under `limit`.
    fn has_room(&self, count: usize, limit: TableLimit) -> bool {
        let rules = self.rules.saturating_add(count);
        rules <= limit.entries && rules.saturating_mul(RULE_BYTES) <= limit.bytes
    }

    /// Records the rules of a new trace, queued for the engine.
    fn insert(&mut self, trace: TraceId, rules: Arc<[PolicyRule]>) {
        self.rules += rules.len();
        self.by_trace.insert(trace, rules);
        self.pending.push(trace);
    }
}

/// The trace rules table.
pub struct TraceRuleTable {
    entries: Mutex<RuleEntries>,
    limit: TableLimit,
}

/// The table locked for a trace's first intern: check room, intern the trace, record rules.
pub struct RulesLocked<'a> {
    entries: MutexGuard<'a, RuleEntries>,
    limit: TableLimit,
}

impl RulesLocked<'_> {
    /// Fails unless `count` more rules fit.
    pub fn reserve(&self, count: usize) -> Result<(), InternerFull> {
        if self.entries.has_room(count, self.limit) {
            Ok(())
        } else {
            Err(InternerFull {
                table: CatalogTable::TraceRules,
                limit: self.limit,
            })
        }
    }

    /// Records the rules of a trace interned for the first time (room was reserved).
    pub fn insert(&mut self, trace: TraceId, rules: Arc<[PolicyRule]>) {
        self.entries.insert(trace, rules);
    }
}

impl TraceRuleTable {
    /// An empty table bounded by `limit`.
    pub fn new(limit: TableLimit) -> Self {
        TraceRuleTable {
            entries: Mutex::new(RuleEntries::default()),
            limit,
        }
    }

    /// Locks the table for a trace's first intern.
    pub fn lock(&self) -> RulesLocked<'_> {
        RulesLocked {
            entries: self.entries.lock(),
            limit: self.limit,
        }
    }

    /// The rules no batch has taken yet, paired with their trace, in the order the traces were
    /// interned; from now on they count as handed to the engine.
    pub fn take_pending(&self) -> Vec<(TraceId, PolicyRule)> {
        let mut entries = self.entries.lock();
        let pending = std::mem::take(&mut entries.pending);
        pending
            .into_iter()
            .filter_map(|trace| Some((trace, entries.by_trace.get(&trace)?.clone())))
            .flat_map(|(trace, rules)| {
                rules
                    .iter()
                    .map(move |rule| (trace, *rule))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Forgets the rules of removed traces; returns how many rules it forgot and those already
    /// taken for the engine, which must be retracted from it (rules never taken are dropped
    /// unsent).
    pub fn remove(&self, traces: &[TraceId]) -> (usize, Vec<(TraceId, PolicyRule)>) {
        if traces.is_empty() {
            return (0, Vec::new());
        }
        let mut entries = self.entries.lock();
        let removed: FxHashSet<TraceId> = traces.iter().copied().collect();
        let unsent: FxHashSet<TraceId> = entries
            .pending
            .iter()
            .copied()
            .filter(|trace| removed.contains(trace))
            .collect();
        if !unsent.is_empty() {
            entries.pending.retain(|trace| !unsent.contains(trace));
        }
        let mut retract = Vec::new();
        let mut forgotten = 0;
        for trace in traces {
            if let Some(rules) = entries.by_trace.remove(trace) {
                entries.rules -= rules.len();
                forgotten += rules.len();
                if !unsent.contains(trace) {
                    retract.extend(rules.iter().map(|rule| (*trace, *rule)));
                }
            }
        }
        (forgotten, retract)
    }

    /// Calls `visit` with every string id the held rules name.
    pub fn for_each_string(&self, mut visit: impl FnMut(u32)) {
        let entries = self.entries.lock();
        for rule in entries.by_trace.values().flat_map(|rules| rules.iter()) {
            visit(rule.tier);
            visit(rule.namespace);
            visit(rule.name);
        }
    }

    /// How many rules the table holds.
    pub fn len(&self) -> usize {
        self.entries.lock().rules
    }

    /// Whether the table holds no rule.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the held rules count for.
    pub fn bytes(&self) -> usize {
        self.len() * RULE_BYTES
    }
}
