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
//! Bound: at most [`REMEMBERED_BYTES`] of remembered bytes per call; beyond it the call forgets
//! everything and starts again.

use eddy_dataflows::model::FlowKey;
use prost::Message;
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::ingest::wire::{self, Side};
use crate::ingest::{prepare, Bounds, Measures, NotPrepared, SkipReason};
use crate::proto::FlowUpdate;

/// Bytes of remembered keys and labels, with a per-entry overhead, one call holds at most.
pub const REMEMBERED_BYTES: usize = 8 * 1024 * 1024;

/// What each remembered record costs beyond its bytes: the map's slot and the record.
const ENTRY_OVERHEAD: usize = 128;

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
    /// Records by the bytes that determine them (see [`remembered_as`]).
    remembered: FxHashMap<Box<[u8]>, Remembered>,
    /// Bytes `remembered` accounts for.
    remembered_bytes: usize,
    /// The lookup bytes of the update being prepared, reused from update to update.
    lookup: Vec<u8>,
}

/// Writes into `out` the bytes that determine an update's key and label sets: the encoded key,
/// then each side's labels, every part prefixed by its length, each side by its count.
fn remembered_as(out: &mut Vec<u8>, key: &[u8], flow: &wire::FlowView<'_>) {
    out.clear();
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    for side in [Side::Source, Side::Dest] {
        let count_at = out.len();
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut count = 0u32;
        for label in flow.labels(side) {
            count += 1;
            out.extend_from_slice(&(label.len() as u32).to_le_bytes());
            out.extend_from_slice(label);
        }
        out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    }
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
        remembered_as(&mut self.lookup, key, &flow);
        let round = catalog.round();
        if let Some(known) = self.remembered.get_mut(&self.lookup[..]) {
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
            self.forget_lookup();
        }
        let prepared = decoded(encoded, catalog, bounds)?;
        self.remember(prepared.record, round);
        Ok(prepared)
    }

    /// Forgets the record remembered under the current lookup bytes.
    fn forget_lookup(&mut self) {
        if self.remembered.remove(&self.lookup[..]).is_some() {
            self.remembered_bytes -= self.lookup.len() + ENTRY_OVERHEAD;
        }
    }

    /// Remembers `record`'s key and labels under the current lookup bytes, stamped in `round`
    /// (read before it was interned, so never later than its entries' stamps).
    fn remember(&mut self, record: eddy_dataflows::model::FlowRecord, round: u64) {
        let cost = self.lookup.len() + ENTRY_OVERHEAD;
        if self.remembered_bytes + cost > REMEMBERED_BYTES {
            self.remembered.clear();
            self.remembered_bytes = 0;
        }
        let remembered = Remembered {
            key: record.key,
            labels: record.labels,
            round,
        };
        let bytes: Box<[u8]> = self.lookup.as_slice().into();
        if self.remembered.insert(bytes, remembered).is_none() {
            self.remembered_bytes += cost;
        }
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
