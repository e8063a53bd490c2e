//! The interners: strings, label sets and canonical policy traces become small ids at the
//! frontend, so workers hold only fixed-size keys.
//!
//! Each table is bounded (`limit` entries). When a table is full, an update that needs a new
//! entry is skipped and counted (`interner_full`); existing entries keep working. Entries are
//! never removed while the process runs, so an id means the same thing for its whole life.
//! State: one copy of every distinct value, plus a hash map entry pointing at it.

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
    values: Vec<K>,
}

/// A bounded, append-only map between values and dense `u32` ids.
pub struct InternTable<K> {
    table: RwLock<Table<K>>,
    limit: usize,
}

impl<K: Hash + Eq + Clone> InternTable<K> {
    /// An empty table that holds at most `limit` values.
    pub fn new(limit: usize) -> Self {
        InternTable {
            table: RwLock::new(Table {
                ids: FxHashMap::default(),
                values: Vec::new(),
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
        if table.values.len() >= self.limit {
            return Err(InternerFull { limit: self.limit });
        }
        let id =
            u32::try_from(table.values.len()).map_err(|_| InternerFull { limit: self.limit })?;
        let owned = K::from(value);
        table.values.push(owned.clone());
        table.ids.insert(owned, id);
        Ok((id, true))
    }

    /// The id of `value`, if it was ever interned.
    pub fn lookup<Q>(&self, value: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.table.read().ids.get(value).copied()
    }

    /// The value behind `id`.
    pub fn get(&self, id: u32) -> Option<K> {
        self.table.read().values.get(id as usize).cloned()
    }

    /// Calls `read` with every value, indexed by id, under one read lock.
    pub fn with_values<R>(&self, read: impl FnOnce(&[K]) -> R) -> R {
        read(&self.table.read().values)
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
    ranks: Mutex<Arc<Vec<u32>>>,
}

impl Symbols {
    /// An empty string table holding at most `limit` strings. The empty string is id 0.
    pub fn new(limit: usize) -> Self {
        let symbols = Symbols {
            table: InternTable::new(limit.max(1)),
            ranks: Mutex::new(Arc::new(Vec::new())),
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
    /// the number of strings examined so far (the next `from`).
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &str)) -> u32 {
        self.table.with_values(|values| {
            for (id, value) in values.iter().enumerate().skip(from as usize) {
                visit(id as u32, value);
            }
            values.len() as u32
        })
    }

    /// How many strings are interned.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no string is interned (never true: the empty string always is).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The byte-order rank of every string, indexed by id; rebuilt only when strings were added.
    pub fn ranks(&self) -> Arc<Vec<u32>> {
        let mut cached = self.ranks.lock();
        if cached.len() == self.table.len() {
            return cached.clone();
        }
        let ranks = self.table.with_values(|values| {
            let mut order: Vec<u32> = (0..values.len() as u32).collect();
            order.sort_unstable_by(|a, b| values[*a as usize].cmp(&values[*b as usize]));
            let mut ranks = vec![0u32; values.len()];
            for (rank, id) in order.into_iter().enumerate() {
                ranks[id as usize] = rank as u32;
            }
            ranks
        });
        *cached = Arc::new(ranks);
        cached.clone()
    }
}
