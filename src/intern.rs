//! The interners: strings, label sets and canonical policy traces become small ids at the
//! frontend, so workers hold only fixed-size keys.
//!
//! Each table is bounded (`limit` entries at a time). When a table is full, an update that
//! needs a new entry is skipped and counted (`interner_full`); existing entries keep working.
//! Ids are never reused, so an id means the same thing for its whole life; entries that no
//! retained flow uses any more are removed by the catalog collector, so churn (pods that
//! come and go) does not fill the tables. State: every distinct value held once behind a
//! cheap clone (`Arc`), in a map from value to id and one from id to value.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

/// A table is full and cannot take a new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("interner table is full ({limit} entries)")]
pub struct InternerFull {
    /// The table's bound.
    pub limit: usize,
}

struct Table<K> {
    ids: FxHashMap<K, u32>,
    values: FxHashMap<u32, K>,
    /// The id the next new value gets.
    next: u32,
    /// Changes whenever a value is added or removed.
    version: u64,
}

/// A bounded map between values and `u32` ids. Ids are given in increasing order and never
/// reused, so an id means the same value for as long as it exists; values no longer used
/// anywhere are removed by [`InternTable::remove_unused`] (see `catalog::collector`).
pub struct InternTable<K> {
    table: RwLock<Table<K>>,
    limit: usize,
}

impl<K: Hash + Eq + Clone> InternTable<K> {
    /// An empty table that holds at most `limit` values at a time.
    pub fn new(limit: usize) -> Self {
        InternTable {
            table: RwLock::new(Table {
                ids: FxHashMap::default(),
                values: FxHashMap::default(),
                next: 0,
                version: 0,
            }),
            limit,
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

    /// The id of `value`, adding it if it is new, and whether this call added it.
    pub fn intern_noting_new<Q>(&self, value: &Q) -> Result<(u32, bool), InternerFull>
    where
        K: Borrow<Q> + for<'a> From<&'a Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(id) = self.table.read().ids.get(value) {
            return Ok((*id, false));
        }
        let mut table = self.table.write();
        if let Some(id) = table.ids.get(value) {
            return Ok((*id, false));
        }
        if table.values.len() >= self.limit || table.next == u32::MAX {
            return Err(InternerFull { limit: self.limit });
        }
        let id = table.next;
        table.next += 1;
        table.version += 1;
        let owned = K::from(value);
        table.values.insert(id, owned.clone());
        table.ids.insert(owned, id);
        Ok((id, true))
    }

    /// The id of `value`, if it is in the table.
    pub fn lookup<Q>(&self, value: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.read().ids.get(value).copied()
    }

    /// The value behind `id`.
    pub fn get(&self, id: u32) -> Option<K> {
        self.table.read().values.get(&id).cloned()
    }

    /// Calls `visit` with every value whose id is at least `from`, in id order, and returns
    /// the id the next new value will get (the next `from`).
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &K)) -> u32 {
        let table = self.table.read();
        if (table.next - from.min(table.next)) as usize <= table.values.len() {
            for id in from..table.next {
                if let Some(value) = table.values.get(&id) {
                    visit(id, value);
                }
            }
        } else {
            let mut newer: Vec<(u32, &K)> = table
                .values
                .iter()
                .filter(|(id, _)| **id >= from)
                .map(|(id, value)| (*id, value))
                .collect();
            newer.sort_unstable_by_key(|(id, _)| *id);
            for (id, value) in newer {
                visit(id, value);
            }
        }
        table.next
    }

    /// Calls `read` with every (id, value) under one read lock, in no particular order, and
    /// the id the next new value will get.
    pub fn with_values<R>(&self, read: impl FnOnce(&FxHashMap<u32, K>, u32) -> R) -> R {
        let table = self.table.read();
        read(&table.values, table.next)
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

    /// The id the next new value will get: every id in the table is below it.
    pub fn next_id(&self) -> u32 {
        self.table.read().next
    }

    /// Changes whenever a value is added or removed.
    pub fn version(&self) -> u64 {
        self.table.read().version
    }

    /// Removes the values whose ids are in `unused` (id 0, the table's first value, stays).
    /// Returns how many it removed.
    pub fn remove_unused(&self, unused: &[u32]) -> usize {
        let mut table = self.table.write();
        let mut removed = 0;
        for id in unused.iter().filter(|id| **id != 0) {
            if let Some(value) = table.values.remove(id) {
                table.ids.remove(&value);
                removed += 1;
            }
        }
        if removed > 0 {
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
}

/// The string table, with a cached byte-order rank of every string for sorting by name.
pub struct Symbols {
    table: InternTable<Arc<str>>,
    /// The ranks and the table version they were computed at.
    ranks: Mutex<(u64, Arc<Vec<u32>>)>,
}

impl Symbols {
    /// An empty string table holding at most `limit` strings. The empty string is id 0.
    pub fn new(limit: usize) -> Self {
        let symbols = Symbols {
            table: InternTable::new(limit.max(1)),
            ranks: Mutex::new((u64::MAX, Arc::new(Vec::new()))),
        };
        symbols
            .table
            .intern("")
            .expect("an empty table with room for one entry accepts the empty string");
        symbols
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
    /// the id the next new string will get (the next `from`).
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &str)) -> u32 {
        self.table.scan_from(from, |id, value| visit(id, value))
    }

    /// The id the next new string will get: every string's id is below it.
    pub fn next_id(&self) -> u32 {
        self.table.next_id()
    }

    /// The ids below `below` of strings that `pick` accepts, ascending.
    pub fn ids_below(&self, below: u32, pick: impl Fn(u32) -> bool) -> Vec<u32> {
        self.table.ids_below(below, pick)
    }

    /// Removes the strings whose ids are in `unused`; returns how many it removed.
    pub fn remove_unused(&self, unused: &[u32]) -> usize {
        self.table.remove_unused(unused)
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
        let ranks = self.table.with_values(|values, next| {
            let mut order: Vec<(&Arc<str>, u32)> =
                values.iter().map(|(id, value)| (value, *id)).collect();
            order.sort_unstable();
            let mut ranks = vec![u32::MAX; next as usize];
            for (rank, (_, id)) in order.into_iter().enumerate() {
                ranks[id as usize] = rank as u32;
            }
            ranks
        });
        *cached = (version, Arc::new(ranks));
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_ids_are_not_reused_and_free_room() {
        let table: InternTable<Arc<str>> = InternTable::new(2);
        let a = table.intern("a").expect("room for a");
        let b = table.intern("b").expect("room for b");
        assert_eq!(table.remove_unused(&[b]), 1);
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
}
