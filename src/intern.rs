//! The interners: strings, label sets and canonical policy traces become small ids at the
//! frontend, so workers hold only fixed-size keys.
//!
//! Each table is bounded in entries and in bytes of the values it holds. When a table is full,
//! interning a new value fails with [`InternerFull`] and the `Connect` call that needed it ends
//! with `RESOURCE_EXHAUSTED` (see `api::collector`); existing entries keep working.
//!
//! Ids are never reused, so an id means the same thing for its whole life; entries that no
//! retained flow uses any more are removed by the catalog collector, so churn (pods that come
//! and go) does not fill the tables. Every entry remembers the collection round in which it was
//! last interned (its "touched" round), so the collector never removes an entry that a batch
//! interned after the collector noted it unused (see `catalog::collector`). State: every
//! distinct value held once behind a cheap clone (`Arc`), in a map from value to id and one from
//! id to entry.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

/// Values copied out of a table per lock hold when scanning it: a queued writer waits for at
/// most one chunk, never for a whole scan.
const SCAN_CHUNK: usize = 4096;

/// The catalog's tables, as metrics and errors name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogTable {
    /// Names, namespaces, protocols, policy fields.
    Strings,
    /// Sorted, de-duplicated label sets.
    LabelSets,
    /// Canonical policy traces.
    Traces,
    /// The distinct policy rules of each trace.
    TraceRules,
}

impl CatalogTable {
    /// Every table, in metric order.
    pub const ALL: [CatalogTable; 4] = [
        CatalogTable::Strings,
        CatalogTable::LabelSets,
        CatalogTable::Traces,
        CatalogTable::TraceRules,
    ];

    /// The table's metric label.
    pub fn label(self) -> &'static str {
        match self {
            CatalogTable::Strings => "strings",
            CatalogTable::LabelSets => "label_sets",
            CatalogTable::Traces => "traces",
            CatalogTable::TraceRules => "trace_rules",
        }
    }

    /// The table's position in [`CatalogTable::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The bounds of one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimit {
    /// Entries held at a time.
    pub entries: usize,
    /// Bytes of the values held at a time (see [`Weigh`]).
    pub bytes: usize,
}

impl TableLimit {
    /// A bound in entries only (bytes unbounded in effect).
    pub fn entries(entries: usize) -> Self {
        TableLimit {
            entries,
            bytes: usize::MAX,
        }
    }
}

/// A table is full and cannot take a new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the catalog's {} table is full ({} entries, {} bytes at most)", table.label(), limit.entries, limit.bytes)]
pub struct InternerFull {
    /// The table that is full.
    pub table: CatalogTable,
    /// The table's bounds.
    pub limit: TableLimit,
}

/// The bytes a value counts for against its table's byte bound: the bytes of its content.
pub trait Weigh {
    /// The value's size in bytes.
    fn weight(&self) -> usize;
}

impl Weigh for Arc<str> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for Arc<[u8]> {
    fn weight(&self) -> usize {
        self.len()
    }
}

impl Weigh for Arc<[String]> {
    fn weight(&self) -> usize {
        self.iter().map(String::len).sum()
    }
}

/// One value and the collection round it was last interned in.
struct Entry<K> {
    value: K,
    touched: AtomicU64,
}

struct Table<K> {
    ids: FxHashMap<K, u32>,
    values: FxHashMap<u32, Entry<K>>,
    /// The id the next new value gets.
    next: u32,
    /// Changes whenever a value is added or removed.
    version: u64,
    /// Bytes of the values held.
    bytes: usize,
}

/// A bounded map between values and `u32` ids. Ids are given in increasing order and never
/// reused, so an id means the same value for as long as it exists; values no longer used
/// anywhere are removed by [`InternTable::remove_unused`] (see `catalog::collector`).
pub struct InternTable<K> {
    table: RwLock<Table<K>>,
    name: CatalogTable,
    limit: TableLimit,
    /// The current collection round: every intern stamps the entry it returns with it.
    round: AtomicU64,
}

impl<K: Hash + Eq + Clone + Weigh> InternTable<K> {
    /// An empty table called `name` that holds at most `limit`.
    pub fn new(name: CatalogTable, limit: TableLimit) -> Self {
        InternTable {
            table: RwLock::new(Table {
                ids: FxHashMap::default(),
                values: FxHashMap::default(),
                next: 0,
                version: 0,
                bytes: 0,
            }),
            name,
            limit,
            round: AtomicU64::new(0),
        }
    }

    /// The id of `value`, adding it if it is new.
    pub fn intern<Q>(&self, value: &Q) -> Result<u32, InternerFull>
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.intern_noting_new(value).map(|(id, _)| id)
    }

    /// The id of `value`, adding it if it is new, and whether this call added it. Either way
    /// the entry is stamped with the current collection round.
    pub fn intern_noting_new<Q>(&self, value: &Q) -> Result<(u32, bool), InternerFull>
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        let round = self.round.load(Ordering::Acquire);
        {
            let table = self.table.read();
            if let Some(id) = table.ids.get(value) {
                touch(&table, *id, round);
                return Ok((*id, false));
            }
        }
        let mut table = self.table.write();
        if let Some(id) = table.ids.get(value).copied() {
            touch(&table, id, round);
            return Ok((id, false));
        }
        let owned = K::from(value);
        let weight = owned.weight();
        if table.values.len() >= self.limit.entries
            || table.bytes.saturating_add(weight) > self.limit.bytes
            || table.next == u32::MAX
        {
            return Err(self.full());
        }
        let id = table.next;
        table.next += 1;
        table.version += 1;
        table.bytes += weight;
        table.values.insert(
            id,
            Entry {
                value: owned.clone(),
                touched: AtomicU64::new(round),
            },
        );
        table.ids.insert(owned, id);
        Ok((id, true))
    }

    /// Stamps the entries `ids` with the current collection round, as interning their values
    /// would, under one hold of the table's lock. Returns false if any of them is gone (the
    /// catalog collector removed it): its value must be interned again, under a new id.
    pub fn touch_ids(&self, ids: &[u32]) -> bool {
        let round = self.round.load(Ordering::Acquire);
        let table = self.table.read();
        ids.iter().all(|id| touch(&table, *id, round))
    }

    /// The error this table gives when it is full.
    pub fn full(&self) -> InternerFull {
        InternerFull {
            table: self.name,
            limit: self.limit,
        }
    }

    /// The id of `value`, if it is in the table.
    pub fn lookup<Q>(&self, value: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.read().ids.get(value).copied()
    }

    /// The id of `value`, if it is in the table, stamping it like an intern does.
    pub fn find<Q>(&self, value: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let round = self.round.load(Ordering::Acquire);
        let table = self.table.read();
        let id = table.ids.get(value).copied()?;
        touch(&table, id, round);
        Some(id)
    }

    /// The value behind `id`.
    pub fn get(&self, id: u32) -> Option<K> {
        self.table.read().values.get(&id).map(|e| e.value.clone())
    }

    /// Calls `visit` with every value whose id is at least `from`, in id order, and returns
    /// the id the next new value will get (the next `from`). Values are copied out (cheap
    /// clones) a chunk at a time and visited without the table's lock.
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &K)) -> u32 {
        let mut from = from;
        loop {
            let (chunk, next) = self.chunk_from(from);
            for (id, value) in &chunk {
                visit(*id, value);
            }
            match chunk.last() {
                Some((last, _)) if chunk.len() == SCAN_CHUNK => from = last + 1,
                _ => return next,
            }
        }
    }

    /// Up to [`SCAN_CHUNK`] values with ids at least `from`, in id order, and the next id.
    fn chunk_from(&self, from: u32) -> (Vec<(u32, K)>, u32) {
        let table = self.table.read();
        let mut chunk = Vec::new();
        if (table.next - from.min(table.next)) as usize <= table.values.len() {
            for id in from..table.next {
                if let Some(entry) = table.values.get(&id) {
                    chunk.push((id, entry.value.clone()));
                    if chunk.len() == SCAN_CHUNK {
                        break;
                    }
                }
            }
        } else {
            let mut newer: Vec<u32> = table
                .values
                .keys()
                .copied()
                .filter(|id| *id >= from)
                .collect();
            newer.sort_unstable();
            newer.truncate(SCAN_CHUNK);
            chunk.extend(
                newer
                    .into_iter()
                    .filter_map(|id| Some((id, table.values.get(&id)?.value.clone()))),
            );
        }
        (chunk, table.next)
    }

    /// Every (id, value), in no particular order, and the id the next new value will get.
    pub fn snapshot(&self) -> (Vec<(u32, K)>, u32) {
        let table = self.table.read();
        let values = table
            .values
            .iter()
            .map(|(id, entry)| (*id, entry.value.clone()))
            .collect();
        (values, table.next)
    }

    /// The ids below `below` in the table that `pick` accepts, ascending.
    pub fn ids_below(&self, below: u32, pick: impl Fn(u32) -> bool) -> Vec<u32> {
        let table = self.table.read();
        let mut ids: Vec<u32> = table
            .values
            .keys()
            .copied()
            .filter(|id| *id < below && pick(*id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Starts collection round `round` (greater than any before) and returns the id the next
    /// new value will get. Entries interned from now on are stamped with `round`, so
    /// [`InternTable::remove_unused`] for this round keeps them.
    pub fn begin_round(&self, round: u64) -> u32 {
        let table = self.table.read();
        self.round.store(round, Ordering::Release);
        table.next
    }

    /// The id the next new value will get: every id in the table is below it.
    pub fn next_id(&self) -> u32 {
        self.table.read().next
    }

    /// Changes whenever a value is added or removed.
    pub fn version(&self) -> u64 {
        self.table.read().version
    }

    /// Removes the values whose ids are in `unused`, except id 0 (the table's first value) and
    /// those interned since collection round `round` began. Returns the ids it removed.
    pub fn remove_unused(&self, unused: &[u32], round: u64) -> Vec<u32> {
        let mut table = self.table.write();
        let mut removed = Vec::new();
        for id in unused.iter().filter(|id| **id != 0) {
            let untouched = table
                .values
                .get(id)
                .is_some_and(|entry| entry.touched.load(Ordering::Relaxed) < round);
            if !untouched {
                continue;
            }
            if let Some(entry) = table.values.remove(id) {
                table.ids.remove(&entry.value);
                table.bytes -= entry.value.weight();
                removed.push(*id);
            }
        }
        if !removed.is_empty() {
            table.version += 1;
            table.values.shrink_to_fit();
            table.ids.shrink_to_fit();
        }
        removed
    }

    /// How many values the table holds.
    pub fn len(&self) -> usize {
        self.table.read().values.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the values the table holds.
    pub fn bytes(&self) -> usize {
        self.table.read().bytes
    }
}

/// Stamps entry `id` with `round` (a store only when it changes, to keep the line shared).
/// Returns whether the entry exists.
fn touch<K>(table: &Table<K>, id: u32, round: u64) -> bool {
    let Some(entry) = table.values.get(&id) else {
        return false;
    };
    if entry.touched.load(Ordering::Relaxed) < round {
        entry.touched.store(round, Ordering::Relaxed);
    }
    true
}

/// The string table, with a cached byte-order rank of every string for sorting by name.
pub struct Symbols {
    table: InternTable<Arc<str>>,
    /// The ranks and the table version they were computed at.
    ranks: Mutex<(u64, Arc<Vec<u32>>)>,
}

impl Symbols {
    /// An empty string table holding at most `limit`. The empty string is id 0.
    pub fn new(limit: TableLimit) -> Self {
        let limit = TableLimit {
            entries: limit.entries.max(1),
            ..limit
        };
        let symbols = Symbols {
            table: InternTable::new(CatalogTable::Strings, limit),
            ranks: Mutex::new((u64::MAX, Arc::new(Vec::new()))),
        };
        symbols
            .table
            .intern("")
            .expect("an empty table with room for one entry accepts the empty string");
        symbols
    }

    /// The underlying table.
    pub fn table(&self) -> &InternTable<Arc<str>> {
        &self.table
    }

    /// The id of `value`, adding it if new.
    pub fn intern(&self, value: &str) -> Result<u32, InternerFull> {
        self.table.intern(value)
    }

    /// The id of `value`, if known.
    pub fn lookup(&self, value: &str) -> Option<u32> {
        self.table.lookup(value)
    }

    /// The string behind `id` (empty for an unknown id).
    pub fn resolve(&self, id: u32) -> String {
        self.table
            .get(id)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// Calls `visit` with every string whose id is at least `from`, in id order, and returns
    /// the id the next new string will get (the next `from`). Does not hold the table's lock
    /// while visiting.
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &str)) -> u32 {
        self.table.scan_from(from, |id, value| visit(id, value))
    }

    /// The id the next new string will get: every string's id is below it.
    pub fn next_id(&self) -> u32 {
        self.table.next_id()
    }

    /// How many strings are interned.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no string is interned (never true: the empty string always is).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The byte-order rank of every string, indexed by id (ids no longer in the table rank
    /// last); rebuilt only when strings were added or removed.
    pub fn ranks(&self) -> Arc<Vec<u32>> {
        let mut cached = self.ranks.lock();
        let version = self.table.version();
        if cached.0 == version {
            return cached.1.clone();
        }
        let (values, next) = self.table.snapshot();
        let mut order: Vec<(&Arc<str>, u32)> =
            values.iter().map(|(id, value)| (value, *id)).collect();
        order.sort_unstable();
        let mut ranks = vec![u32::MAX; next as usize];
        for (rank, (_, id)) in order.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        *cached = (version, Arc::new(ranks));
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(limit: TableLimit) -> InternTable<Arc<str>> {
        InternTable::new(CatalogTable::Strings, limit)
    }

    #[test]
    fn removed_ids_are_not_reused_and_free_room() {
        let table = strings(TableLimit::entries(2));
        let a = table.intern("a").expect("room for a");
        let b = table.intern("b").expect("room for b");
        assert_eq!(table.remove_unused(&[b], 1), vec![b]);
        assert_eq!(table.lookup("b"), None);
        let c = table.intern("c").expect("room again");
        assert!(c > b, "ids only grow");
        assert_eq!(table.get(a).as_deref(), Some("a"));
        let mut seen = Vec::new();
        assert_eq!(
            table.scan_from(0, |id, value| seen.push((id, value.to_string()))),
            c + 1
        );
        assert_eq!(seen, vec![(a, "a".to_string()), (c, "c".to_string())]);
        assert_eq!(table.ids_below(c, |_| true), vec![a]);
    }

    #[test]
    fn a_value_interned_after_its_round_began_is_not_removed() {
        let table = strings(TableLimit::entries(10));
        let _ = table.intern("first").expect("room");
        let kept = table.intern("kept").expect("room");
        let dropped = table.intern("dropped").expect("room");
        let mark = table.begin_round(1);
        assert_eq!(mark, dropped + 1);
        // A batch interns "kept" again after the collector noted it unused.
        assert_eq!(table.intern("kept"), Ok(kept));
        assert_eq!(table.remove_unused(&[kept, dropped], 1), vec![dropped]);
        assert_eq!(table.lookup("kept"), Some(kept));
        assert_eq!(table.lookup("dropped"), None);
        // Untouched in the next round, it goes.
        table.begin_round(2);
        assert_eq!(table.remove_unused(&[kept], 2), vec![kept]);
    }

    #[test]
    fn a_table_is_bounded_in_bytes_and_removal_frees_them() {
        let table = strings(TableLimit {
            entries: 100,
            bytes: 10,
        });
        assert_eq!(table.intern(""), Ok(0), "the first value, never removed");
        let six = table.intern("sixsix").expect("6 of 10 bytes");
        let full = table
            .intern("fivee")
            .expect_err("11 bytes is over the bound");
        assert_eq!(full.table, CatalogTable::Strings);
        assert_eq!(table.intern("four"), Ok(six + 1));
        assert_eq!(table.bytes(), 10);
        assert_eq!(table.intern("four"), Ok(six + 1), "known values still work");
        assert_eq!(table.remove_unused(&[six], 1), vec![six]);
        assert_eq!(table.bytes(), 4);
        assert!(table.intern("fivee").is_ok());
    }

    #[test]
    fn scans_cross_chunks_in_id_order() {
        let table = strings(TableLimit::entries(3 * SCAN_CHUNK));
        let count = 2 * SCAN_CHUNK + 7;
        for n in 0..count {
            table.intern(n.to_string().as_str()).expect("room");
        }
        let removed = table.remove_unused(&[5, SCAN_CHUNK as u32 + 1], 1);
        assert_eq!(removed.len(), 2);
        let mut seen = Vec::new();
        let next = table.scan_from(3, |id, value| seen.push((id, value.to_string())));
        assert_eq!(next, count as u32);
        let expected: Vec<(u32, String)> = (3..count as u32)
            .filter(|id| !removed.contains(id))
            .map(|id| (id, id.to_string()))
            .collect();
        assert_eq!(seen, expected);
    }
}
