//! The ingest state of one `Connect` call: the records its updates were turned into,
//! remembered by the bytes that determine them, so an update whose key and labels the call
//! has sent before costs no decode of its strings, no intern, no lock and no allocation.
//!
//! An update is read with the borrowed reader (`ingest::wire`): its numbers are read in place,
//! and its encoded key and labels are looked up among those remembered. The first time the
//! call sends those bytes, the update is decoded with prost and prepared as any other
//! (`ingest::prepare`); the key half of the record and the label set ids are remembered. The
//! record is a function of those bytes alone (validation of sizes, canonical forms, flow id),
//! except for the catalog ids, which are valid only while their entries exist.
//!
//! Safety against the catalog collector (see `catalog::collector`): each remembered record
//! carries the collection round its entries were last stamped in. A round changes only with
//! the catalog gate held exclusively, and a batch holds it shared, so within a batch the round
//! is fixed. A record stamped in the current round cannot be removed in it (removal skips
//! entries stamped in its round); one from an earlier round is stamped again under each
//! table's lock before use, and if any of its entries is gone, the update is prepared again
//! and gets the new ids (ids are never reused, so a stale id is never taken for another value).
//!
//! Remembered records are found by a 128-bit hash (xxh3) of the bytes that determine them, not
//! by the bytes themselves, so one costs about 128 bytes whatever the size of its key and
//! labels; two different keys taking one hash is as unlikely as two updates sharing a
//! de-duplication fingerprint, far less so.
//!
//! Bound: at most [`REMEMBERED_RECORDS`] records per call (about 4 MiB); beyond it the call
//! forgets them all and starts again.

use eddy_dataflows::model::FlowKey;
use prost::Message;
use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::Xxh3;

use crate::catalog::Catalog;
use crate::ingest::wire::{self, Side};
use crate::ingest::{prepare, Bounds, Measures, NotPrepared, SkipReason};
use crate::proto::FlowUpdate;

/// Records one call remembers at most: what fills a map of 32,768 slots of about 128 bytes.
pub const REMEMBERED_RECORDS: usize = 28_672;

/// An update turned into an engine record, with the interval it came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    /// The record for the engine.
    pub record: eddy_dataflows::model::FlowRecord,
    /// The update's start time (for its fingerprint).
    pub start_time: i64,
    /// The update's end time (for its fingerprint).
    pub end_time: i64,
}

/// Why an update of a `Connect` call was not turned into a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Skipped, or a catalog table is full (as for [`prepare`]).
    NotPrepared(NotPrepared),
    /// The bytes are not a `FlowUpdate`: prost's own error, for the call's status.
    Malformed(prost::DecodeError),
}

impl From<SkipReason> for Refused {
    fn from(reason: SkipReason) -> Self {
        Refused::NotPrepared(NotPrepared::Skipped(reason))
    }
}

impl From<NotPrepared> for Refused {
    fn from(not_prepared: NotPrepared) -> Self {
        Refused::NotPrepared(not_prepared)
    }
}

/// The key half of a record and its label sets, with the round their entries were stamped in.
#[derive(Clone, Copy, Debug)]
struct Remembered {
    key: FlowKey,
    labels: (u32, u32),
    round: u64,
}

/// The ingest state of one `Connect` call.
#[derive(Debug, Default)]
pub struct ConnectionIngest {
    /// Records by the hash of the bytes that determine them (see [`remembered_as`]).
    remembered: FxHashMap<u128, Remembered>,
}

/// Ends one side's labels among the bytes [`remembered_as`] hashes: no label is this long.
const END_OF_SIDE: u64 = u64::MAX;

/// The hash of the bytes that determine an update's key and label sets: the encoded key
/// prefixed by its length, then the label fields as encoded when they are one run (their tags
/// and lengths tell the sides and labels apart), else each side's labels, each prefixed by its
/// length, each side ended by [`END_OF_SIDE`]. A first byte tells the two forms apart.
fn remembered_as(key: &[u8], flow: &wire::FlowView<'_>) -> u128 {
    let mut hasher = Xxh3::new();
    match flow.labels_run {
        Some(run) => {
            hasher.update(&[0]);
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            hasher.update(run);
        }
        None => {
            hasher.update(&[1]);
            hasher.update(&(key.len() as u64).to_le_bytes());
            hasher.update(key);
            for side in [Side::Source, Side::Dest] {
                for label in flow.labels(side) {
                    hasher.update(&(label.len() as u64).to_le_bytes());
                    hasher.update(label);
                }
                hasher.update(&END_OF_SIDE.to_le_bytes());
            }
        }
    }
    hasher.digest128()
}

impl ConnectionIngest {
    /// A call's state with nothing remembered.
    pub fn new() -> Self {
        ConnectionIngest::default()
    }

    /// Validates, canonicalises and interns one encoded update: the same record, skip reason
    /// or full table as decoding it with prost and calling [`prepare`], and for bytes that are
    /// not a `FlowUpdate` prost's error. Call with the catalog gate held shared.
    pub fn prepare(
        &mut self,
        encoded: &[u8],
        catalog: &Catalog,
        bounds: Bounds<'_>,
    ) -> Result<Prepared, Refused> {
        // Without a flow or a key there is nothing to remember, and whether the update is
        // skipped or malformed depends on what the reader does not check (its labels' text):
        // prost decides.
        let Ok(wire::UpdateView {
            flow: Some(flow @ wire::FlowView { key: Some(key), .. }),
        }) = wire::read_update(encoded)
        else {
            return decoded(encoded, catalog, bounds);
        };
        let measures = Measures {
            start_time: flow.start_time,
            end_time: flow.end_time,
            counters: flow.counters,
        };
        let lookup = remembered_as(key, &flow);
        let round = catalog.round();
        if let Some(known) = self.remembered.get_mut(&lookup) {
            // Remembered only after it passed the size bounds, which depend on these bytes only.
            measures.validate(bounds.retention, bounds.now)?;
            if known.round == round || catalog.touch_record(&known.key, known.labels) {
                known.round = round;
                return Ok(Prepared {
                    record: eddy_dataflows::model::FlowRecord {
                        key: known.key,
                        bucket: bounds.retention.bucket_of(measures.start_time),
                        labels: known.labels,
                        stats: measures.stats(),
                    },
                    start_time: measures.start_time,
                    end_time: measures.end_time,
                });
            }
            self.remembered.remove(&lookup);
        }
        let prepared = decoded(encoded, catalog, bounds)?;
        self.remember(lookup, prepared.record, round);
        Ok(prepared)
    }

    /// Remembers `record`'s key and labels under `lookup`, stamped in `round` (read before it
    /// was interned, so never later than its entries' stamps).
    fn remember(&mut self, lookup: u128, record: eddy_dataflows::model::FlowRecord, round: u64) {
        if self.remembered.len() >= REMEMBERED_RECORDS {
            self.remembered.clear();
        }
        let remembered = Remembered {
            key: record.key,
            labels: record.labels,
            round,
        };
        self.remembered.insert(lookup, remembered);
    }

    /// How many records the call remembers.
    pub fn remembered(&self) -> usize {
        self.remembered.len()
    }
}

/// Decodes `encoded` with prost and prepares it.
fn decoded(encoded: &[u8], catalog: &Catalog, bounds: Bounds<'_>) -> Result<Prepared, Refused> {
    let update = FlowUpdate::decode(encoded).map_err(Refused::Malformed)?;
    let record = prepare(&update, catalog, bounds)?;
    let (start_time, end_time) = update
        .flow
        .as_ref()
        .map_or((0, 0), |flow| (flow.start_time, flow.end_time));
    Ok(Prepared {
        record,
        start_time,
        end_time,
    })
}
