//! The top talkers view: bytes and packets, in and out, per (source namespace, destination
//! namespace) per bucket. Read summed over a range and sorted by bytes, the first k rows are
//! the k pairs that moved the most bytes; a pair's rows live on one worker, so the merge of
//! every worker's first k is exact.
//!
//! Its rows are consolidated per ingest batch: a batch costs at most one row per namespace
//! pair and bucket it touches, whatever its size.

use std::collections::BTreeMap;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Semigroup};
use serde::{Deserialize, Serialize};

use crate::model::{Bucket, FlowRecord, Stats, Sym};
use crate::views::bucketed::BucketedView;
use crate::views::registry::{
    columns, Column, ColumnType, Row, Sort, Value, ViewSchema, SPAN_COLUMNS,
};

/// The top talkers view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct TopTalkers;

/// A (source namespace, destination namespace) pair.
pub type NamespacePair = (Sym, Sym);

const COLUMNS: &[Column] = &columns::<10>(&[
    &[
        Column {
            name: "source_namespace",
            kind: ColumnType::String,
            description: "namespace of the source endpoint",
        },
        Column {
            name: "dest_namespace",
            kind: ColumnType::String,
            description: "namespace of the destination endpoint",
        },
    ],
    &SPAN_COLUMNS,
    &[
        Column {
            name: "bytes",
            kind: ColumnType::Integer,
            description: "bytes in and out",
        },
        Column {
            name: "bytes_in",
            kind: ColumnType::Integer,
            description: "bytes received",
        },
        Column {
            name: "bytes_out",
            kind: ColumnType::Integer,
            description: "bytes sent",
        },
        Column {
            name: "packets",
            kind: ColumnType::Integer,
            description: "packets in and out",
        },
        Column {
            name: "packets_in",
            kind: ColumnType::Integer,
            description: "packets received",
        },
        Column {
            name: "packets_out",
            kind: ColumnType::Integer,
            description: "packets sent",
        },
    ],
]);

const SCHEMA: ViewSchema = ViewSchema {
    name: "top_talkers",
    description: "Bytes and packets per (source namespace, destination namespace); \
                  sorted by bytes, largest first, the first rows are the top talkers.",
    columns: COLUMNS,
    default_sort: Sort {
        column: 4,
        descending: true,
    },
};

/// What a pair moved in a bucket: the difference type of the view.
///
/// Sums wrap (they never reach 2^63 bytes in a retained range), so addition is exact in any
/// order and a row is gone exactly when every field sums to zero: any retraction, partial or
/// whole, in any merge order of the arrangement, leaves the exact remainder.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Traffic {
    /// Updates that contributed.
    pub updates: i64,
    /// Bytes received.
    pub bytes_in: i64,
    /// Bytes sent.
    pub bytes_out: i64,
    /// Packets received.
    pub packets_in: i64,
    /// Packets sent.
    pub packets_out: i64,
}

impl Traffic {
    /// The traffic a record's counters add (a retraction's are negative).
    pub fn of(stats: &Stats) -> Traffic {
        Traffic {
            updates: stats.records,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            packets_in: stats.packets_in,
            packets_out: stats.packets_out,
        }
    }
}

impl IsZero for Traffic {
    fn is_zero(&self) -> bool {
        *self == Traffic::default()
    }
}

impl Semigroup for Traffic {
    fn plus_equals(&mut self, rhs: &Self) {
        self.updates = self.updates.wrapping_add(rhs.updates);
        self.bytes_in = self.bytes_in.wrapping_add(rhs.bytes_in);
        self.bytes_out = self.bytes_out.wrapping_add(rhs.bytes_out);
        self.packets_in = self.packets_in.wrapping_add(rhs.packets_in);
        self.packets_out = self.packets_out.wrapping_add(rhs.packets_out);
    }
}

impl Monoid for Traffic {
    fn zero() -> Self {
        Traffic::default()
    }
}

impl Abelian for Traffic {
    fn negate(&mut self) {
        self.updates = self.updates.wrapping_neg();
        self.bytes_in = self.bytes_in.wrapping_neg();
        self.bytes_out = self.bytes_out.wrapping_neg();
        self.packets_in = self.packets_in.wrapping_neg();
        self.packets_out = self.packets_out.wrapping_neg();
    }
}

impl BucketedView for TopTalkers {
    type Key = NamespacePair;
    type Measures = Traffic;

    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn row_of(&self, record: &FlowRecord) -> Option<(NamespacePair, Traffic)> {
        let pair = (record.key.source_namespace, record.key.dest_namespace);
        Some((pair, Traffic::of(&record.stats)))
    }

    fn row(&self, pair: &NamespacePair, start: i64, end: i64, traffic: &Traffic) -> Row {
        vec![
            Value::String(pair.0),
            Value::String(pair.1),
            Value::Timestamp(start),
            Value::Timestamp(end),
            Value::Integer(traffic.bytes_in.saturating_add(traffic.bytes_out)),
            Value::Integer(traffic.bytes_in),
            Value::Integer(traffic.bytes_out),
            Value::Integer(traffic.packets_in.saturating_add(traffic.packets_out)),
            Value::Integer(traffic.packets_in),
            Value::Integer(traffic.packets_out),
        ]
    }

    fn reference(&self, records: &[FlowRecord]) -> BTreeMap<(NamespacePair, Bucket), Traffic> {
        let mut sums: BTreeMap<(NamespacePair, Bucket), Traffic> = BTreeMap::new();
        for record in records {
            let pair = (record.key.source_namespace, record.key.dest_namespace);
            let sum = sums.entry((pair, record.bucket)).or_default();
            sum.updates += record.stats.records;
            sum.bytes_in += record.stats.bytes_in;
            sum.bytes_out += record.stats.bytes_out;
            sum.packets_in += record.stats.packets_in;
            sum.packets_out += record.stats.packets_out;
        }
        sums.retain(|_, sum| *sum != Traffic::default());
        sums
    }
}
