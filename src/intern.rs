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
//! interned after the collector noted it unused (see `catalog::collector`).
//!
//! State, per table: every distinct value's bytes once, in one byte arena (see
//! [`encoding`] for how each table's values become bytes); a map from id to the value's place
//! in the arena and its touched round (16 bytes an entry); and a hash table of ids, hashed by
//! their value's bytes, for finding a value's id (4 bytes an entry). Removed values leave
//! holes in the arena, reclaimed by compacting it once the holes outweigh the live bytes.

pub mod encoding;
mod slots;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;

use crate::intern::encoding::{stored_hash, Encoding, Utf8};
use crate::intern::slots::{Slot, Slots};

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

/// Entries read back from a file (the catalog file, see `durability::catalog_file`) that a
/// table cannot take as they are. Never a panic: file input is checked, not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The table has no room for the entries.
    #[error(transparent)]
    Full(#[from] InternerFull),
    /// The id is held already, by other bytes (in the table or earlier among the entries).
    #[error("the catalog's {} table holds id {id} with another value", table.label())]
    IdTaken {
        /// The table.
        table: CatalogTable,
        /// The id given.
        id: u32,
    },
    /// The value is held already under another id.
    #[error("the catalog's {} table holds the value of id {id} under id {held}", table.label())]
    ValueTaken {
        /// The table.
        table: CatalogTable,
        /// The id given.
        id: u32,
        /// The id holding the same value.
        held: u32,
    },
    /// The bytes are not a value of the table, or the id is out of range.
    #[error("entry {id} is not a value of the catalog's {} table: {reason}", table.label())]
    Invalid {
        /// The table.
        table: CatalogTable,
        /// The id given.
        id: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A collection round as a slot stores it.
fn stamp(round: u64) -> u32 {
    u32::try_from(round).unwrap_or(u32::MAX)
}

/// Arena bytes of removed values a table always tolerates before compacting.
const COMPACT_FLOOR: usize = 64 * 1024;

struct Table {
    /// The bytes of every value held, and holes left by removed ones.
    arena: Vec<u8>,
    /// Each value's place in the arena, by id.
    slots: Slots,
    /// The ids, hashed by their value's bytes ([`stored_hash`]).
    index: HashTable<u32>,
    /// The id the next new value gets.
    next: u32,
    /// Changes whenever a value is added or removed.
    version: u64,
    /// Bytes the values held count for (see [`Encoding::weight`]).
    bytes: usize,
    /// Arena bytes of removed values.
    holes: usize,
}

impl Table {
    fn stored(&self, slot: &Slot) -> &[u8] {
        &self.arena[slot.range()]
    }

    /// Makes room for `additional` new values in the id map and the hash table at once: the
    /// hash table grows (re-hashing every stored value) at most once, not at each doubling.
    fn reserve(&mut self, additional: usize) {
        let Table {
            arena,
            slots,
            index,
            ..
        } = self;
        index.reserve(additional, |id| rehash(arena, slots, *id));
    }

    /// Records value `id`, whose bytes (of `hash`) were just appended to the arena from
    /// `start`, stamped with `round`.
    fn place(&mut self, id: u32, start: usize, hash: u64, round: u64) {
        let len = (self.arena.len() - start) as u32;
        self.slots.insert(
            id,
            Slot {
                start: start as u32,
                len,
                touched: AtomicU32::new(stamp(round)),
            },
        );
        let Table {
            arena,
            slots,
            index,
            ..
        } = self;
        index.insert_unique(hash, id, |id| rehash(arena, slots, *id));
    }

    /// The id of the value `matches` accepts among those hashed to `hash`.
    fn find(&self, hash: u64, matches: impl Fn(&[u8]) -> bool) -> Option<u32> {
        self.index
            .find(hash, |id| {
                self.slots
                    .get(id)
                    .is_some_and(|slot| matches(self.stored(slot)))
            })
            .copied()
    }

    /// Rewrites the arena with the live values only, in id order, and returns its memory.
    fn compact(&mut self) {
        let ids: Vec<u32> = self.slots.keys().collect();
        let mut arena = Vec::with_capacity(self.arena.len() - self.holes);
        for id in ids {
            if let Some(slot) = self.slots.get_mut(&id) {
                let start = arena.len();
                arena.extend_from_slice(&self.arena[slot.range()]);
                slot.start = start as u32;
            }
        }
        self.arena = arena;
        self.holes = 0;
    }

    /// Shrinks the id map and the hash table to what they hold.
    fn shrink(&mut self) {
        let Table {
            arena,
            slots,
            index,
            ..
        } = self;
        slots.shrink_to_fit();
        index.shrink_to_fit(|id| rehash(arena, slots, *id));
    }
}

/// The hash of value `id`'s bytes, for moving it within the hash table.
fn rehash(arena: &[u8], slots: &Slots, id: u32) -> u64 {
    slots
        .get(&id)
        .map_or(0, |slot| stored_hash(&arena[slot.range()]))
}

/// A value to intern, as a caller hands it in ([`Given`]) or as its stored bytes
/// ([`Stored`]): hashed and compared as its stored bytes would be.
trait Candidate<E: Encoding> {
    fn hash(&self) -> u64;
    fn matches(&self, stored: &[u8]) -> bool;
    fn weight(&self) -> usize;
    fn encode(&self, arena: &mut Vec<u8>);
}

/// A value as callers hand it in.
struct Given<'a, E: Encoding>(&'a E::Value);

impl<E: Encoding> Candidate<E> for Given<'_, E> {
    fn hash(&self) -> u64 {
        E::hash(self.0)
    }

    fn matches(&self, stored: &[u8]) -> bool {
        E::matches(self.0, stored)
    }

    fn weight(&self) -> usize {
        E::weight(self.0)
    }

    fn encode(&self, arena: &mut Vec<u8>) {
        E::encode(self.0, arena);
    }
}

/// A value as its stored bytes.
struct Stored<'a, E: Encoding>(&'a [u8], std::marker::PhantomData<fn() -> E>);

impl<E: Encoding> Candidate<E> for Stored<'_, E> {
    fn hash(&self) -> u64 {
        stored_hash(self.0)
    }

    fn matches(&self, stored: &[u8]) -> bool {
        self.0 == stored
    }

    fn weight(&self) -> usize {
        E::stored_weight(self.0)
    }

    fn encode(&self, arena: &mut Vec<u8>) {
        arena.extend_from_slice(self.0);
    }
}

/// Values copied out of a table under one hold of its lock: their bytes and, for each, its
/// id and its range in those bytes.
struct Chunk {
    bytes: Vec<u8>,
    values: Vec<(u32, std::ops::Range<usize>)>,
}

/// A bounded map between values and `u32` ids. Ids are given in increasing order and never
/// reused, so an id means the same value for as long as it exists; values no longer used
/// anywhere are removed by [`InternTable::remove_unused`] (see `catalog::collector`).
pub struct InternTable<E: Encoding> {
    table: RwLock<Table>,
    name: CatalogTable,
    limit: TableLimit,
    /// The current collection round: every intern stamps the entry it returns with it.
    round: AtomicU64,
    encoding: std::marker::PhantomData<fn() -> E>,
}

impl<E: Encoding> InternTable<E> {
    /// An empty table called `name` that holds at most `limit`.
    pub fn new(name: CatalogTable, limit: TableLimit) -> Self {
        InternTable {
            table: RwLock::new(Table {
                arena: Vec::new(),
                slots: Slots::default(),
                index: HashTable::new(),
                next: 0,
                version: 0,
                bytes: 0,
                holes: 0,
            }),
            name,
            limit,
            round: AtomicU64::new(0),
            encoding: std::marker::PhantomData,
        }
    }

    /// The id of `value`, adding it if it is new.
    pub fn intern(&self, value: &E::Value) -> Result<u32, InternerFull> {
        self.intern_noting_new(value).map(|(id, _)| id)
    }

    /// The id of `value`, adding it if it is new, and whether this call added it. Either way
    /// the entry is stamped with the current collection round.
    pub fn intern_noting_new(&self, value: &E::Value) -> Result<(u32, bool), InternerFull> {
        let round = self.round.load(Ordering::Acquire);
        let value = Given::<E>(value);
        let hash = value.hash();
        {
            let table = self.table.read();
            if let Some(id) = table.find(hash, |stored| value.matches(stored)) {
                touch(&table, id, round);
                return Ok((id, false));
            }
        }
        self.add(&mut self.table.write(), &value, hash, round)
    }

    /// The ids of `values`, in order, adding those that are new: the bulk form of
    /// [`InternTable::intern`], for many values at once (a column chunk's distinct values at
    /// recovery). Values are hashed outside the table's lock, found under one hold of it
    /// shared, and the new ones added under one hold of it exclusive. Fails at the first value
    /// that finds the table full; those before it stay interned.
    pub fn intern_all<V: AsRef<E::Value>>(&self, values: &[V]) -> Result<Vec<u32>, InternerFull> {
        let given: Vec<Given<E>> = values.iter().map(|value| Given(value.as_ref())).collect();
        self.intern_candidates(&given)
    }

    /// [`InternTable::intern_all`] for values handed in as their stored bytes (see
    /// [`encoding`]), which the caller built as the table's encoding does.
    pub fn intern_all_stored<V: AsRef<[u8]>>(
        &self,
        values: &[V],
    ) -> Result<Vec<u32>, InternerFull> {
        let stored: Vec<Stored<E>> = values
            .iter()
            .map(|value| Stored(value.as_ref(), std::marker::PhantomData))
            .collect();
        self.intern_candidates(&stored)
    }

    /// The ids of `values`, adding the new ones, under one hold of the lock shared for the
    /// finds and one exclusive for the additions.
    fn intern_candidates(&self, values: &[impl Candidate<E>]) -> Result<Vec<u32>, InternerFull> {
        let round = self.round.load(Ordering::Acquire);
        let hashes: Vec<u64> = values.iter().map(Candidate::hash).collect();
        let mut ids = vec![0; values.len()];
        let mut missing = Vec::new();
        {
            let table = self.table.read();
            for (index, (value, hash)) in values.iter().zip(&hashes).enumerate() {
                match table.find(*hash, |stored| value.matches(stored)) {
                    Some(id) => {
                        touch(&table, id, round);
                        ids[index] = id;
                    }
                    None => missing.push(index),
                }
            }
        }
        if !missing.is_empty() {
            let mut table = self.table.write();
            table.reserve(missing.len().min(self.limit.entries));
            for index in missing {
                ids[index] = self
                    .add(&mut table, &values[index], hashes[index], round)?
                    .0;
            }
        }
        Ok(ids)
    }

    /// The id of `value` (of `hash`) in `table`, held exclusive: found, or added if new, and
    /// whether it was added; stamped with `round` either way.
    fn add(
        &self,
        table: &mut Table,
        value: &impl Candidate<E>,
        hash: u64,
        round: u64,
    ) -> Result<(u32, bool), InternerFull> {
        if let Some(id) = table.find(hash, |stored| value.matches(stored)) {
            touch(table, id, round);
            return Ok((id, false));
        }
        let weight = value.weight();
        if table.slots.len() >= self.limit.entries
            || table.bytes.saturating_add(weight) > self.limit.bytes
            || table.next == u32::MAX
        {
            return Err(self.full());
        }
        let start = table.arena.len();
        value.encode(&mut table.arena);
        if table.arena.len() > u32::MAX as usize {
            // Places in the arena are u32: a table holds at most 4 GiB of bytes.
            table.arena.truncate(start);
            return Err(self.full());
        }
        let id = table.next;
        table.next += 1;
        table.version += 1;
        table.bytes += weight;
        table.place(id, start, hash, round);
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

    /// Adds values given as their stored bytes (as [`InternTable::scan_from`] hands them)
    /// under the given ids, and raises the next id past each: how a table is restored from a
    /// file. All or nothing, under one hold of the lock, with room for every new value
    /// reserved at once. An id already held with identical bytes is skipped (the values a new
    /// catalog holds from the start). Fails, adding nothing, when an id is held with other
    /// bytes or the same bytes are held under another id (in the table or among `entries`),
    /// when bytes are not a value of the table or the id is `u32::MAX`, or when the values do
    /// not fit the table's bounds ([`RestoreError::Full`]).
    pub fn restore_all(&self, entries: &[(u32, &[u8])]) -> Result<(), RestoreError> {
        self.restore_noting_new(entries).map(|_| ())
    }

    /// [`InternTable::restore_all`], saying for each entry whether this call added it (false
    /// for an entry held already, or given twice).
    pub fn restore_noting_new(&self, entries: &[(u32, &[u8])]) -> Result<Vec<bool>, RestoreError> {
        let invalid = |id: u32, reason| RestoreError::Invalid {
            table: self.name,
            id,
            reason,
        };
        for (id, bytes) in entries {
            if *id == u32::MAX {
                return Err(invalid(*id, "past the last id a table gives"));
            }
            if !E::valid_stored(bytes) {
                return Err(invalid(*id, "bytes the table's encoding does not write"));
            }
        }
        let round = self.round.load(Ordering::Acquire);
        let hashes: Vec<u64> = entries
            .iter()
            .map(|(_, bytes)| stored_hash(bytes))
            .collect();
        let mut table = self.table.write();
        // Every entry checked before any is added, so a failure adds nothing.
        let mut new = vec![false; entries.len()];
        let mut given_ids: FxHashMap<u32, usize> = FxHashMap::default();
        let mut given_values: HashTable<usize> = HashTable::new();
        let (mut count, mut weight, mut arena_bytes) = (0usize, 0usize, 0usize);
        for (index, ((id, bytes), hash)) in entries.iter().zip(&hashes).enumerate() {
            let id_taken = RestoreError::IdTaken {
                table: self.name,
                id: *id,
            };
            if let Some(slot) = table.slots.get(id) {
                if table.stored(slot) != *bytes {
                    return Err(id_taken);
                }
                continue;
            }
            if let Some(held) = table.find(*hash, |stored| stored == *bytes) {
                return Err(RestoreError::ValueTaken {
                    table: self.name,
                    id: *id,
                    held,
                });
            }
            if let Some(first) = given_ids.get(id) {
                if entries[*first].1 != *bytes {
                    return Err(id_taken);
                }
                continue;
            }
            if let Some(first) = given_values.find(*hash, |first| entries[*first].1 == *bytes) {
                return Err(RestoreError::ValueTaken {
                    table: self.name,
                    id: *id,
                    held: entries[*first].0,
                });
            }
            given_ids.insert(*id, index);
            given_values.insert_unique(*hash, index, |first| hashes[*first]);
            new[index] = true;
            count += 1;
            weight = weight.saturating_add(E::stored_weight(bytes));
            arena_bytes = arena_bytes.saturating_add(bytes.len());
        }
        if table.slots.len().saturating_add(count) > self.limit.entries
            || table.bytes.saturating_add(weight) > self.limit.bytes
            || table.arena.len().saturating_add(arena_bytes) > u32::MAX as usize
        {
            return Err(RestoreError::Full(self.full()));
        }
        if count == 0 {
            return Ok(new);
        }
        table.reserve(count);
        table.arena.reserve(arena_bytes);
        for (((id, bytes), hash), _) in entries
            .iter()
            .zip(&hashes)
            .zip(&new)
            .filter(|(_, new)| **new)
        {
            let start = table.arena.len();
            table.arena.extend_from_slice(bytes);
            table.place(*id, start, *hash, round);
            table.next = table.next.max(*id + 1);
        }
        table.version += 1;
        table.bytes += weight;
        Ok(new)
    }

    /// Raises the id the next new value gets to at least `next` (never lowers it): ids below
    /// it that a restored file did not hold are never given.
    pub fn advance_next(&self, next: u32) {
        let mut table = self.table.write();
        if table.next < next {
            table.next = next;
            table.version += 1;
        }
    }

    /// The error this table gives when it is full.
    pub fn full(&self) -> InternerFull {
        InternerFull {
            table: self.name,
            limit: self.limit,
        }
    }

    /// The id of `value`, if it is in the table.
    pub fn lookup(&self, value: &E::Value) -> Option<u32> {
        self.table
            .read()
            .find(E::hash(value), |stored| E::matches(value, stored))
    }

    /// The id of `value`, if it is in the table, stamping it like an intern does.
    pub fn find(&self, value: &E::Value) -> Option<u32> {
        let round = self.round.load(Ordering::Acquire);
        let table = self.table.read();
        let id = table.find(E::hash(value), |stored| E::matches(value, stored))?;
        touch(&table, id, round);
        Some(id)
    }

    /// The value behind `id`.
    pub fn get(&self, id: u32) -> Option<E::Owned> {
        let table = self.table.read();
        let slot = table.slots.get(&id)?;
        Some(E::decode(table.stored(slot)))
    }

    /// Calls `read` with the stored bytes of `id` (see [`encoding`]), under the table's lock.
    pub fn read_stored<T>(&self, id: u32, read: impl FnOnce(&[u8]) -> T) -> Option<T> {
        let table = self.table.read();
        let slot = table.slots.get(&id)?;
        Some(read(table.stored(slot)))
    }

    /// Calls `visit` with the stored bytes of every value whose id is at least `from`, in id
    /// order, and returns the id the next new value will get (the next `from`). Values are
    /// copied out a chunk at a time and visited without the table's lock.
    pub fn scan_from(&self, from: u32, visit: impl FnMut(u32, &[u8])) -> u32 {
        self.scan_range(from, u32::MAX, visit)
    }

    /// [`InternTable::scan_from`] for the ids in `from..below` only: every value held whose
    /// id is in the range, in id order, copied out a chunk at a time. Returns the id the next
    /// new value will get.
    pub fn scan_range(&self, from: u32, below: u32, mut visit: impl FnMut(u32, &[u8])) -> u32 {
        let mut from = from;
        loop {
            let (chunk, next) = self.chunk_from(from, below);
            for (id, range) in &chunk.values {
                visit(*id, &chunk.bytes[range.clone()]);
            }
            match chunk.values.last() {
                Some((last, _)) if chunk.values.len() == SCAN_CHUNK => from = last + 1,
                _ => return next,
            }
        }
    }

    /// Up to [`SCAN_CHUNK`] values with ids in `from..below`, in id order, and the next id.
    fn chunk_from(&self, from: u32, below: u32) -> (Chunk, u32) {
        let table = self.table.read();
        let end = table.next.min(below);
        let ids: Vec<u32> = if (end - from.min(end)) as usize <= table.slots.len() {
            (from..end)
                .filter(|id| table.slots.contains_key(id))
                .take(SCAN_CHUNK)
                .collect()
        } else {
            table
                .slots
                .keys()
                .filter(|id| (from..end).contains(id))
                .take(SCAN_CHUNK)
                .collect()
        };
        let mut chunk = Chunk {
            bytes: Vec::new(),
            values: Vec::with_capacity(ids.len()),
        };
        for id in ids {
            if let Some(slot) = table.slots.get(&id) {
                let start = chunk.bytes.len();
                chunk.bytes.extend_from_slice(table.stored(slot));
                chunk.values.push((id, start..chunk.bytes.len()));
            }
        }
        (chunk, table.next)
    }

    /// Every id with its stored bytes, ordered by those bytes, and the id the next new value
    /// will get. The bytes are copied out under the table's lock and sorted without it.
    pub fn ids_by_stored_bytes(&self) -> (Vec<u32>, u32) {
        let (bytes, mut values, next) = {
            let table = self.table.read();
            let values: Vec<(u32, std::ops::Range<usize>)> = table
                .slots
                .iter()
                .map(|(id, slot)| (id, slot.range()))
                .collect();
            (table.arena.clone(), values, table.next)
        };
        values.sort_unstable_by(|(a, a_range), (b, b_range)| {
            bytes[a_range.clone()]
                .cmp(&bytes[b_range.clone()])
                .then(a.cmp(b))
        });
        (values.into_iter().map(|(id, _)| id).collect(), next)
    }

    /// The ids below `below` in the table that `pick` accepts, ascending.
    pub fn ids_below(&self, below: u32, pick: impl Fn(u32) -> bool) -> Vec<u32> {
        let table = self.table.read();
        table
            .slots
            .keys()
            .take_while(|id| *id < below)
            .filter(|id| pick(*id))
            .collect()
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
        let round = stamp(round);
        let mut table = self.table.write();
        let mut removed = Vec::new();
        for id in unused.iter().filter(|id| **id != 0) {
            let untouched = table
                .slots
                .get(id)
                .is_some_and(|slot| slot.touched.load(Ordering::Relaxed) < round);
            if !untouched {
                continue;
            }
            let Some(slot) = table.slots.remove(id) else {
                continue;
            };
            let stored = &table.arena[slot.range()];
            let (hash, weight) = (stored_hash(stored), E::stored_weight(stored));
            if let Ok(entry) = table.index.find_entry(hash, |held| held == id) {
                entry.remove();
            }
            table.bytes -= weight;
            table.holes += slot.len as usize;
            removed.push(*id);
        }
        if !removed.is_empty() {
            table.version += 1;
            if table.holes > COMPACT_FLOOR.max(table.arena.len() / 2) {
                table.compact();
            }
            table.shrink();
        }
        removed
    }

    /// How many values the table holds.
    pub fn len(&self) -> usize {
        self.table.read().slots.len()
    }

    /// Bytes of the table's slots by id (see `slots`).
    pub fn slot_bytes(&self) -> usize {
        self.table.read().slots.bytes()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the values the table holds count for (see [`Encoding::weight`]).
    pub fn bytes(&self) -> usize {
        self.table.read().bytes
    }

    /// Bytes of the table's arena, holes of removed values included.
    pub fn arena_bytes(&self) -> usize {
        self.table.read().arena.len()
    }
}

/// Stamps entry `id` with `round` (a store only when it changes, to keep the line shared).
/// Returns whether the entry exists.
fn touch(table: &Table, id: u32, round: u64) -> bool {
    let Some(slot) = table.slots.get(&id) else {
        return false;
    };
    let round = stamp(round);
    if slot.touched.load(Ordering::Relaxed) < round {
        slot.touched.store(round, Ordering::Relaxed);
    }
    true
}

/// The string table, with a cached byte-order rank of every string for sorting by name.
pub struct Symbols {
    table: InternTable<Utf8>,
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
    pub fn table(&self) -> &InternTable<Utf8> {
        &self.table
    }

    /// The id of `value`, adding it if new.
    pub fn intern(&self, value: &str) -> Result<u32, InternerFull> {
        self.table.intern(value)
    }

    /// The ids of `values`, in order, adding those that are new, under one hold of the
    /// table's lock (see [`InternTable::intern_all`]).
    pub fn intern_all<V: AsRef<str>>(&self, values: &[V]) -> Result<Vec<u32>, InternerFull> {
        self.table.intern_all(values)
    }

    /// The id of `value`, if known.
    pub fn lookup(&self, value: &str) -> Option<u32> {
        self.table.lookup(value)
    }

    /// The string behind `id` (empty for an unknown id).
    pub fn resolve(&self, id: u32) -> String {
        self.table.get(id).unwrap_or_default()
    }

    /// Calls `visit` with every string whose id is at least `from`, in id order, and returns
    /// the id the next new string will get (the next `from`). Does not hold the table's lock
    /// while visiting.
    pub fn scan_from(&self, from: u32, mut visit: impl FnMut(u32, &str)) -> u32 {
        self.table.scan_from(from, |id, stored| {
            visit(id, std::str::from_utf8(stored).unwrap_or_default())
        })
    }

    /// The id the next new string will get: every string's id is below it.
    pub fn next_id(&self) -> u32 {
        self.table.next_id()
    }

    /// Restores strings given as their stored bytes (UTF-8) under their ids: see
    /// [`InternTable::restore_all`]. The ranks follow (the table's version changes).
    pub fn restore_all(&self, entries: &[(u32, &[u8])]) -> Result<(), RestoreError> {
        self.table.restore_all(entries)
    }

    /// Raises the id the next new string gets to at least `next` (see
    /// [`InternTable::advance_next`]); the ranks are rebuilt to cover it.
    pub fn advance_next(&self, next: u32) {
        self.table.advance_next(next);
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
        let (order, next) = self.table.ids_by_stored_bytes();
        let mut ranks = vec![u32::MAX; next as usize];
        for (rank, id) in order.into_iter().enumerate() {
            ranks[id as usize] = rank as u32;
        }
        *cached = (version, Arc::new(ranks));
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intern::encoding::LabelSet;

    fn strings(limit: TableLimit) -> InternTable<Utf8> {
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
            table.scan_from(0, |id, value| seen.push((id, Utf8::decode(value)))),
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
    fn interning_many_at_once_gives_the_ids_one_at_a_time_would() {
        let table = strings(TableLimit {
            entries: 5,
            bytes: 100,
        });
        let known = table.intern("known").expect("room");
        let ids = table
            .intern_all(&["new", "known", "other", "new"])
            .expect("room for two new values");
        assert_eq!(ids, vec![known + 1, known, known + 2, known + 1]);
        assert_eq!(table.lookup("other"), Some(known + 2));
        assert_eq!(table.len(), 3);
        let full = table
            .intern_all(&["fourth", "fifth", "sixth"])
            .expect_err("room for two more values only");
        assert_eq!(full.table, CatalogTable::Strings);
        assert_eq!(table.lookup("fifth"), Some(known + 4), "those before stay");
        assert_eq!(table.lookup("sixth"), None);
    }

    #[test]
    fn label_sets_interned_as_their_stored_bytes_find_the_same_ids() {
        let table = label_sets(TableLimit::entries(10));
        let set = table.intern(&labels(&["a=1", "b=22"])).expect("room");
        let stored = |values: &[&str]| {
            let mut bytes = Vec::new();
            encoding::encode_labels(values.iter().copied(), &mut bytes);
            bytes
        };
        let ids = table
            .intern_all_stored(&[stored(&["a=1", "b=22"]), stored(&["c=3"])])
            .expect("room");
        assert_eq!(ids, vec![set, set + 1]);
        assert_eq!(table.lookup(&labels(&["c=3"])), Some(set + 1));
        assert_eq!(table.get(set + 1), Some(labels(&["c=3"])));
        assert_eq!(table.bytes(), 10, "weighed by their labels' bytes");
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
        let next = table.scan_from(3, |id, value| seen.push((id, Utf8::decode(value))));
        assert_eq!(next, count as u32);
        let expected: Vec<(u32, String)> = (3..count as u32)
            .filter(|id| !removed.contains(id))
            .map(|id| (id, id.to_string()))
            .collect();
        assert_eq!(seen, expected);
    }

    fn label_sets(limit: TableLimit) -> InternTable<LabelSet> {
        InternTable::new(CatalogTable::LabelSets, limit)
    }

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn label_sets_are_found_by_their_labels_and_weigh_their_labels_bytes() {
        let table = label_sets(TableLimit::entries(10));
        let empty = table.intern(&[]).expect("room");
        let web = table
            .intern(&labels(&["app=web", "team=core"]))
            .expect("room");
        let joined = table.intern(&labels(&["app=webteam=core"])).expect("room");
        assert_eq!(
            (empty, web, joined),
            (0, 1, 2),
            "the same bytes split differently are another set"
        );
        assert_eq!(table.intern(&labels(&["app=web", "team=core"])), Ok(web));
        assert_eq!(table.lookup(&labels(&["app=web"])), None);
        assert_eq!(table.get(web), Some(labels(&["app=web", "team=core"])));
        assert_eq!(table.get(empty), Some(Vec::new()));
        assert_eq!(table.bytes(), 32, "16 + 16 bytes of labels");
        assert_eq!(
            table.arena_bytes(),
            25,
            "`app=` and `team=` are known keys: a byte for the key, one for the rest's length"
        );
        assert_eq!(table.remove_unused(&[web], 1), vec![web]);
        assert_eq!(table.bytes(), 16);
        assert_eq!(table.lookup(&labels(&["app=web", "team=core"])), None);
        assert_eq!(table.lookup(&labels(&["app=webteam=core"])), Some(joined));
    }

    #[test]
    fn an_arena_mostly_of_holes_is_compacted_and_every_value_keeps_its_id() {
        let table = strings(TableLimit::entries(100_000));
        let values: Vec<String> = (0..20_000).map(|n| format!("pod-{n:08}")).collect();
        let ids: Vec<u32> = values
            .iter()
            .map(|value| table.intern(value).expect("room"))
            .collect();
        assert_eq!(table.arena_bytes(), 20_000 * 12);
        let (dropped, kept): (Vec<usize>, Vec<usize>) = (0..values.len()).partition(|n| n % 4 != 0);
        let unused: Vec<u32> = dropped.iter().map(|n| ids[*n]).collect();
        assert_eq!(table.remove_unused(&unused, 1).len(), dropped.len());
        assert_eq!(table.arena_bytes(), kept.len() * 12, "compacted");
        assert_eq!(table.bytes(), kept.len() * 12);
        for n in &kept {
            assert_eq!(table.lookup(&values[*n]), Some(ids[*n]));
            assert_eq!(table.get(ids[*n]).as_deref(), Some(values[*n].as_str()));
        }
        for n in &dropped {
            assert_eq!(table.lookup(&values[*n]), None);
            assert_eq!(table.get(ids[*n]), None);
        }
        let again = table.intern(&values[1]).expect("room");
        assert_eq!(
            again, 20_000,
            "a value interned again after removal gets a new id"
        );
        assert_eq!(table.get(again).as_deref(), Some(values[1].as_str()));
        let mut scanned = 0;
        table.scan_from(0, |id, stored| {
            assert_eq!(table.get(id).as_deref().map(str::as_bytes), Some(stored));
            scanned += 1;
        });
        assert_eq!(scanned, kept.len() + 1);
    }

    #[test]
    fn a_few_removals_leave_holes_until_they_outweigh_the_floor() {
        let table = strings(TableLimit::entries(10));
        let first = table.intern("first").expect("room");
        let a = table.intern("aaaa").expect("room");
        let b = table.intern("bbbb").expect("room");
        assert_eq!(table.remove_unused(&[first, a], 1), vec![a], "id 0 is kept");
        assert_eq!(table.arena_bytes(), 13, "a hole under the floor stays");
        assert_eq!(table.bytes(), 9);
        assert_eq!(table.lookup("bbbb"), Some(b));
        let c = table.intern("cc").expect("room");
        assert_eq!(table.get(c).as_deref(), Some("cc"));
        assert_eq!(table.arena_bytes(), 15);
    }

    #[test]
    fn restored_values_keep_their_ids_and_later_values_get_new_ones() {
        let table = strings(TableLimit::entries(10));
        assert_eq!(table.intern(""), Ok(0));
        let new = table
            .restore_noting_new(&[(0, b""), (7, b"seven"), (3, b"three"), (7, b"seven")])
            .expect("room, no conflict");
        assert_eq!(new, vec![false, true, true, false]);
        assert_eq!(table.get(3).as_deref(), Some("three"));
        assert_eq!(table.lookup("seven"), Some(7));
        assert_eq!(table.next_id(), 8);
        table.advance_next(20);
        table.advance_next(5);
        assert_eq!(table.next_id(), 20, "never lowered");
        assert_eq!(table.intern("new"), Ok(20));
        assert_eq!(table.intern("three"), Ok(3));
        let mut seen = Vec::new();
        assert_eq!(table.scan_range(1, 20, |id, _| seen.push(id)), 21);
        assert_eq!(seen, vec![3, 7]);
    }

    #[test]
    fn restoring_conflicting_or_invalid_entries_fails_and_adds_nothing() {
        let table = strings(TableLimit::entries(4));
        assert_eq!(table.intern(""), Ok(0));
        let taken = table.restore_all(&[(1, b"one"), (0, b"zero")]);
        assert_eq!(
            taken,
            Err(RestoreError::IdTaken {
                table: CatalogTable::Strings,
                id: 0
            })
        );
        assert_eq!(table.lookup("one"), None, "all or nothing");
        assert_eq!(
            table.restore_all(&[(2, b"")]),
            Err(RestoreError::ValueTaken {
                table: CatalogTable::Strings,
                id: 2,
                held: 0
            })
        );
        assert!(matches!(
            table.restore_all(&[(2, b"a"), (3, b"a")]),
            Err(RestoreError::ValueTaken { held: 2, .. })
        ));
        assert!(matches!(
            table.restore_all(&[(2, b"a"), (2, b"b")]),
            Err(RestoreError::IdTaken { id: 2, .. })
        ));
        assert!(matches!(
            table.restore_all(&[(2, &[0xff][..])]),
            Err(RestoreError::Invalid { id: 2, .. })
        ));
        assert!(matches!(
            table.restore_all(&[(u32::MAX, b"a")]),
            Err(RestoreError::Invalid { .. })
        ));
        assert!(matches!(
            table.restore_all(&[(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]),
            Err(RestoreError::Full(InternerFull {
                table: CatalogTable::Strings,
                ..
            }))
        ));
        assert_eq!(table.len(), 1);
        assert_eq!(table.next_id(), 1, "nothing restored, nothing skipped");
        let bytes = strings(TableLimit {
            entries: 10,
            bytes: 3,
        });
        assert!(matches!(
            bytes.restore_all(&[(1, b"ab"), (2, b"cd")]),
            Err(RestoreError::Full(_))
        ));
        assert_eq!(bytes.restore_all(&[(1, b"ab"), (2, b"c")]), Ok(()));
        assert_eq!(bytes.bytes(), 3);
    }

    #[test]
    fn restored_strings_rank_in_byte_order() {
        let symbols = Symbols::new(TableLimit::entries(10));
        symbols
            .restore_all(&[(4, b"b"), (2, b"a")])
            .expect("room, no conflict");
        assert_eq!(*symbols.ranks(), vec![0, u32::MAX, 1, u32::MAX, 2]);
        symbols.advance_next(6);
        assert_eq!(symbols.ranks().len(), 6);
        assert_eq!(symbols.intern("c"), Ok(6));
        assert_eq!(symbols.ranks()[6], 3);
    }

    #[test]
    fn ranks_follow_byte_order_and_skip_removed_strings() {
        let symbols = Symbols::new(TableLimit::entries(10));
        let zeta = symbols.intern("zeta").expect("room");
        let alpha = symbols.intern("alpha").expect("room");
        let mid = symbols.intern("mid").expect("room");
        assert_eq!(*symbols.ranks(), vec![0, 3, 1, 2]);
        assert_eq!(symbols.table().remove_unused(&[mid], 1), vec![mid]);
        let ranks = symbols.ranks();
        assert_eq!(
            (
                ranks[0],
                ranks[alpha as usize],
                ranks[zeta as usize],
                ranks[mid as usize]
            ),
            (0, 1, 2, u32::MAX)
        );
    }
}
