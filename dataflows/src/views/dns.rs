//! The DNS view: flows to destination port 53 per (source namespace, protocol) per bucket,
//! with their updates, packets and bytes. DNS is UDP port 53 (and TCP for large answers);
//! protocols are interned strings on the workers, so the view keeps the protocol as a column
//! and `protocol=udp` selects UDP.
//!
//! The file is the whole view: its columns, the row each update adds, and the from-scratch
//! reference the property tests compare it with. One line of `views.rs` registers it.

use std::collections::BTreeMap;

use crate::model::{Bucket, FlowRecord, Sym};
use crate::views::bucketed::BucketedView;
use crate::views::registry::{
    columns, Column, ColumnType, Row, Sort, Value, ViewSchema, SPAN_COLUMNS,
};
use crate::views::top_talkers::Traffic;

/// The DNS view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct DnsFlows;

/// The destination port of DNS.
const DNS_PORT: i64 = 53;

/// A (source namespace, protocol) pair.
type Asker = (Sym, Sym);

const COLUMNS: &[Column] = &columns::<7>(&[
    &[
        Column {
            name: "source_namespace",
            kind: ColumnType::String,
            description: "namespace of the endpoint asking",
        },
        Column {
            name: "protocol",
            kind: ColumnType::String,
            description: "L4 protocol (udp, tcp)",
        },
    ],
    &SPAN_COLUMNS,
    &[
        Column {
            name: "updates",
            kind: ColumnType::Integer,
            description: "flow updates to port 53",
        },
        Column {
            name: "packets",
            kind: ColumnType::Integer,
            description: "packets in and out",
        },
        Column {
            name: "bytes",
            kind: ColumnType::Integer,
            description: "bytes in and out",
        },
    ],
]);

const SCHEMA: ViewSchema = ViewSchema {
    name: "dns",
    description: "Flows to port 53 per (source namespace, protocol): who asks DNS the most; \
                  protocol=udp for UDP only.",
    columns: COLUMNS,
    default_sort: Sort {
        column: 5,
        descending: true,
    },
};

impl BucketedView for DnsFlows {
    type Key = Asker;
    type Measures = Traffic;

    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn row_of(&self, record: &FlowRecord) -> Option<(Asker, Traffic)> {
        (record.key.dest_port == DNS_PORT).then(|| {
            let asker = (record.key.source_namespace, record.key.proto);
            (asker, Traffic::of(&record.stats))
        })
    }

    fn row(&self, asker: &Asker, start: i64, end: i64, traffic: &Traffic) -> Row {
        vec![
            Value::String(asker.0),
            Value::String(asker.1),
            Value::Timestamp(start),
            Value::Timestamp(end),
            Value::Integer(traffic.updates),
            Value::Integer(traffic.packets_in.saturating_add(traffic.packets_out)),
            Value::Integer(traffic.bytes_in.saturating_add(traffic.bytes_out)),
        ]
    }

    fn reference(&self, records: &[FlowRecord]) -> BTreeMap<(Asker, Bucket), Traffic> {
        let mut sums: BTreeMap<(Asker, Bucket), Traffic> = BTreeMap::new();
        for record in records
            .iter()
            .filter(|record| record.key.dest_port == DNS_PORT)
        {
            let asker = (record.key.source_namespace, record.key.proto);
            let sum = sums.entry((asker, record.bucket)).or_default();
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
