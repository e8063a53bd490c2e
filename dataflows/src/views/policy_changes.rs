//! The policy changes view: per connection (source namespace and name, destination
//! namespace and name, destination port), the bucket it was first seen in within the retained
//! range, and every pair of consecutive buckets it was seen in whose action differs (allow →
//! deny or back), with both buckets. A bucket's action is deny when any update of the
//! connection in it was denied, allow otherwise.
//!
//! Its rows span buckets, so its measures per (connection, bucket) (allowed and denied
//! updates) are turned into rows per connection ([`BucketedView::key_rows`]); the read is the
//! same with or without `per_bucket`.
//!
//! Registered as [`POLICY_CHANGES`]: derived from the flows view when read ([`FromFlows`]), not
//! kept. Its rows are about as many as the flows' (a connection is one or two flows when names
//! are per pod), so an arrangement of its own would cost ingest as much again; a connection's
//! flows share a worker, where the read finds them.

use std::collections::BTreeMap;

use differential_dataflow::difference::{Abelian, IsZero, Monoid, Semigroup};
use serde::{Deserialize, Serialize};

use crate::keys::{connection_of, Connection};
use crate::model::{Bucket, FlowRecord};
use crate::views::bucketed::BucketedView;
use crate::views::derived::FromFlows;
use crate::views::registry::{Column, ColumnType, Row, Sort, Value, ViewSchema};

/// The policy changes view (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct PolicyChanges;

/// The view as registered: read from the flows view.
pub static POLICY_CHANGES: FromFlows<PolicyChanges> = FromFlows(PolicyChanges);

/// Goldmane's `Action.Deny`.
const DENY: i32 = 2;

const COLUMNS: &[Column] = &[
    Column {
        name: "action_changed",
        kind: ColumnType::Bool,
        description: "true: the action changed between the two buckets; false: first seen",
    },
    Column {
        name: "source_namespace",
        kind: ColumnType::String,
        description: "namespace of the source endpoint",
    },
    Column {
        name: "source_name",
        kind: ColumnType::String,
        description: "name of the source endpoint",
    },
    Column {
        name: "dest_namespace",
        kind: ColumnType::String,
        description: "namespace of the destination endpoint",
    },
    Column {
        name: "dest_name",
        kind: ColumnType::String,
        description: "name of the destination endpoint",
    },
    Column {
        name: "dest_port",
        kind: ColumnType::Integer,
        description: "destination port",
    },
    Column {
        name: "from_time",
        kind: ColumnType::Timestamp,
        description: "start of the bucket before the change (first_seen: the first bucket)",
    },
    Column {
        name: "to_time",
        kind: ColumnType::Timestamp,
        description: "start of the bucket after the change (first_seen: the first bucket)",
    },
    Column {
        name: "from_denied",
        kind: ColumnType::Bool,
        description: "whether the bucket before denied (first seen: the first bucket)",
    },
    Column {
        name: "to_denied",
        kind: ColumnType::Bool,
        description: "whether the bucket after denied (first seen: the first bucket)",
    },
];

const SCHEMA: ViewSchema = ViewSchema {
    name: "policy_changes",
    description: "Connections first seen in the retained range, and connections whose action \
                  changed between two consecutive buckets they were seen in (allow to deny or \
                  back), with both buckets.",
    columns: COLUMNS,
    default_sort: Sort {
        column: 7,
        descending: true,
    },
};

/// Updates of a connection in a bucket, by action: the difference type of the view.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Actions {
    /// Updates allowed (any action but deny).
    pub allowed: i64,
    /// Updates denied.
    pub denied: i64,
}

impl Actions {
    fn of(record: &FlowRecord) -> Actions {
        let updates = record.stats.records;
        if record.key.action == DENY {
            Actions {
                allowed: 0,
                denied: updates,
            }
        } else {
            Actions {
                allowed: updates,
                denied: 0,
            }
        }
    }

    /// The bucket's action is deny: some update was denied.
    fn denies(&self) -> bool {
        self.denied != 0
    }
}

impl IsZero for Actions {
    fn is_zero(&self) -> bool {
        *self == Actions::default()
    }
}

impl Semigroup for Actions {
    fn plus_equals(&mut self, rhs: &Self) {
        self.allowed = self.allowed.wrapping_add(rhs.allowed);
        self.denied = self.denied.wrapping_add(rhs.denied);
    }
}

impl Monoid for Actions {
    fn zero() -> Self {
        Actions::default()
    }
}

impl Abelian for Actions {
    fn negate(&mut self) {
        self.allowed = self.allowed.wrapping_neg();
        self.denied = self.denied.wrapping_neg();
    }
}

/// One row: a change (or a first sighting, `changed` false) between two buckets.
fn row(
    changed: bool,
    connection: &Connection,
    from: &(Bucket, Actions),
    to: &(Bucket, Actions),
) -> Row {
    vec![
        Value::Bool(changed),
        Value::String(connection.0),
        Value::String(connection.1),
        Value::String(connection.2),
        Value::String(connection.3),
        Value::Integer(connection.4),
        Value::Timestamp(from.0),
        Value::Timestamp(to.0),
        Value::Bool(from.1.denies()),
        Value::Bool(to.1.denies()),
    ]
}

impl BucketedView for PolicyChanges {
    type Key = Connection;
    type Measures = Actions;
    const ROWS_SPAN_BUCKETS: bool = true;

    fn schema(&self) -> &'static ViewSchema {
        &SCHEMA
    }

    fn row_of(&self, record: &FlowRecord) -> Option<(Connection, Actions)> {
        Some((connection_of(&record.key), Actions::of(record)))
    }

    fn row(&self, connection: &Connection, start: i64, end: i64, actions: &Actions) -> Row {
        row(false, connection, &(start, *actions), &(end, *actions))
    }

    fn key_rows(
        &self,
        connection: &Connection,
        buckets: &[(Bucket, Actions)],
        _window: i64,
    ) -> Vec<Row> {
        let Some(first) = buckets.first() else {
            return Vec::new();
        };
        let mut rows = vec![row(false, connection, first, first)];
        rows.extend(
            buckets
                .windows(2)
                .filter(|pair| pair[0].1.denies() != pair[1].1.denies())
                .map(|pair| row(true, connection, &pair[0], &pair[1])),
        );
        rows
    }

    fn reference(&self, records: &[FlowRecord]) -> BTreeMap<(Connection, Bucket), Actions> {
        let mut sums: BTreeMap<(Connection, Bucket), Actions> = BTreeMap::new();
        for record in records {
            let sum = sums
                .entry((connection_of(&record.key), record.bucket))
                .or_default();
            if record.key.action == DENY {
                sum.denied += record.stats.records;
            } else {
                sum.allowed += record.stats.records;
            }
        }
        sums.retain(|_, sum| *sum != Actions::default());
        sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_first_seen_once_and_each_flip_between_buckets_is_a_row() {
        let connection: Connection = (1, 2, 3, 4, 443);
        let allow = Actions {
            allowed: 2,
            denied: 0,
        };
        let deny = Actions {
            allowed: 1,
            denied: 1,
        };
        let buckets = [(100, allow), (115, deny), (130, deny), (160, allow)];
        let rows = PolicyChanges.key_rows(&connection, &buckets, 15);
        let summary: Vec<(bool, i64, i64, bool, bool)> = rows
            .iter()
            .map(|row| match row[..] {
                [Value::Bool(changed), _, _, _, _, _, Value::Timestamp(from), Value::Timestamp(to), Value::Bool(from_denied), Value::Bool(to_denied)] => {
                    (changed, from, to, from_denied, to_denied)
                }
                _ => panic!("a policy changes row has ten typed columns: {row:?}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (false, 100, 100, false, false),
                (true, 100, 115, false, true),
                (true, 130, 160, true, false),
            ]
        );
        assert!(PolicyChanges.key_rows(&connection, &[], 15).is_empty());
    }
}
