//! The generic side of the views: typed schemas and values, the one query every registered
//! view answers, and the object-safe traits through which the engine builds, feeds, compacts
//! and reads a view without knowing its types. The list of registered views is
//! [`crate::views::REGISTERED`].
//!
//! Everything here is plain data (no closures), so a query could be sequenced to workers in
//! other processes like any other command.

use std::any::Any;
use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::Scope;

use crate::model::{BucketRange, FlowRecord, PolicyRule, Sym, Tick, TraceId};
use crate::views::flows::FlowsHandle;

/// The type of a column, as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// An interned string: an id on the workers, resolved to text by the frontend.
    String,
    /// A signed 64-bit integer.
    Integer,
    /// A 64-bit float.
    Float,
    /// A boolean.
    Bool,
    /// A time in Unix seconds.
    Timestamp,
}

/// One column of a view's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// The column's name, unique in its view.
    pub name: &'static str,
    /// What its values are.
    pub kind: ColumnType,
    /// One line for people reading the schema.
    pub description: &'static str,
}

/// How rows are ordered: by one column, then by the whole row (so the order is total).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    /// The column index.
    pub column: usize,
    /// Largest first.
    pub descending: bool,
}

/// The two columns of a row's span, after a view's key columns: its bucket's start and end,
/// or the range's when a read sums over it.
pub const SPAN_COLUMNS: [Column; 2] = [
    Column {
        name: "start_time",
        kind: ColumnType::Timestamp,
        description: "start of the bucket, or of the range when summed",
    },
    Column {
        name: "end_time",
        kind: ColumnType::Timestamp,
        description: "end of the bucket, or of the range when summed",
    },
];

/// The counters of a flow's `Stats` after its update count, in their order: the last columns
/// of a view that sums whole counters.
pub const COUNTER_COLUMNS: [Column; 7] = [
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
        name: "connections_started",
        kind: ColumnType::Integer,
        description: "connections started",
    },
    Column {
        name: "connections_completed",
        kind: ColumnType::Integer,
        description: "connections completed",
    },
    Column {
        name: "connections_live",
        kind: ColumnType::Integer,
        description: "connections live",
    },
];

/// `N` columns: `parts` one after the other (a view's own columns and the shared groups
/// above). Evaluated when the crate is built, so a wrong `N` fails the build.
pub const fn columns<const N: usize>(parts: &[&[Column]]) -> [Column; N] {
    let mut all = [SPAN_COLUMNS[0]; N];
    let mut at = 0;
    let mut part = 0;
    while part < parts.len() {
        let mut index = 0;
        while index < parts[part].len() {
            all[at] = parts[part][index];
            at += 1;
            index += 1;
        }
        part += 1;
    }
    assert!(at == N, "N counts every column of the parts");
    all
}

/// What the API says about a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewSchema {
    /// The view's name, unique among the registered views.
    pub name: &'static str,
    /// What the view holds, in a sentence or two.
    pub description: &'static str,
    /// Its columns, in row order.
    pub columns: &'static [Column],
    /// The order of a read that asks for none.
    pub default_sort: Sort,
}

impl ViewSchema {
    /// The index of the column called `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }
}

/// A typed value of a row or a filter. Strings are interned ids here; the frontend turns
/// them into text.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum Value {
    /// An interned string.
    String(Sym),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Unix seconds.
    Timestamp(i64),
}

impl Value {
    /// The column type this value belongs to.
    pub fn kind(&self) -> ColumnType {
        match self {
            Value::String(_) => ColumnType::String,
            Value::Integer(_) => ColumnType::Integer,
            Value::Float(_) => ColumnType::Float,
            Value::Bool(_) => ColumnType::Bool,
            Value::Timestamp(_) => ColumnType::Timestamp,
        }
    }

    /// A total order: values of one type by value (floats by `total_cmp`, strings by id),
    /// values of different types by type.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Integer(a), Value::Integer(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => {
                a.cmp(b)
            }
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

fn rank(value: &Value) -> u8 {
    match value {
        Value::String(_) => 0,
        Value::Integer(_) => 1,
        Value::Float(_) => 2,
        Value::Bool(_) => 3,
        Value::Timestamp(_) => 4,
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.total_cmp(other) == Ordering::Equal
    }
}

/// One row of a view: one value per column, in the schema's order.
pub type Row = Vec<Value>;

/// Keeps rows whose column `column` equals `value`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnFilter {
    /// The column index.
    pub column: usize,
    /// The value it must equal (of the column's type).
    pub value: Value,
}

/// A validated read of one view, as every worker receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewQuery {
    /// The selected buckets.
    pub range: BucketRange,
    /// One row per bucket instead of one summed over the range.
    pub per_bucket: bool,
    /// The aggregation window in seconds: a bucket's row ends at its start plus this.
    pub window: i64,
    /// Every filter must hold.
    pub filters: Vec<ColumnFilter>,
    /// The order of the answer.
    pub sort: Sort,
    /// At most this many rows (all when `None`).
    pub limit: Option<usize>,
    /// Whether the sort column holds strings: then the order of ids is not the order of the
    /// text, so workers return every row and the frontend sorts and cuts.
    pub sort_is_string: bool,
}

impl ViewQuery {
    /// Whether `row` passes every filter.
    pub fn keeps(&self, row: &[Value]) -> bool {
        self.filters
            .iter()
            .all(|filter| row.get(filter.column) == Some(&filter.value))
    }

    /// The answer's order: the sort column, then the whole row, strings by id.
    pub fn order(&self, a: &[Value], b: &[Value]) -> Ordering {
        let column = |row: &[Value]| row.get(self.sort.column).copied();
        let by_column = match (column(a), column(b)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (x, y) => x.is_some().cmp(&y.is_some()),
        };
        let by_column = if self.sort.descending {
            by_column.reverse()
        } else {
            by_column
        };
        by_column.then_with(|| {
            a.iter()
                .zip(b)
                .map(|(x, y)| x.total_cmp(y))
                .find(|order| order.is_ne())
                .unwrap_or(Ordering::Equal)
        })
    }

    /// Filters, sorts and (unless the sort column holds strings) cuts `rows`: one worker's
    /// answer, and the merge of every worker's (a row lives on one worker, so the top rows
    /// of the union are among the top rows of each part).
    pub fn finish(&self, mut rows: Vec<Row>) -> Vec<Row> {
        rows.retain(|row| self.keeps(row));
        rows.sort_by(|a, b| self.order(a, b));
        if let (Some(limit), false) = (self.limit, self.sort_is_string) {
            rows.truncate(limit);
        }
        rows
    }

    /// The merged answer of every worker's part.
    pub fn merge(&self, parts: impl IntoIterator<Item = Vec<Row>>) -> Vec<Row> {
        self.finish(parts.into_iter().flatten().collect())
    }

    /// An empty answer to collect rows into one at a time ([`TopRows`]).
    pub fn top_rows(&self) -> TopRows<'_> {
        TopRows {
            query: self,
            rows: Vec::new(),
        }
    }
}

/// The answer to a [`ViewQuery`] collected one row at a time: rows that fail a filter are
/// dropped at once, and under a limit (on a sort column that is not a string) at most twice
/// the limit are held, so a read of a large view holds its best rows, not all of them.
pub struct TopRows<'query> {
    query: &'query ViewQuery,
    rows: Vec<Row>,
}

impl TopRows<'_> {
    /// Adds `row` if it passes the query's filters.
    pub fn push(&mut self, row: Row) {
        if !self.query.keeps(&row) {
            return;
        }
        self.rows.push(row);
        if let (Some(limit), false) = (self.query.limit, self.query.sort_is_string) {
            if self.rows.len() >= limit.saturating_mul(2).max(64) {
                self.rows.sort_by(|a, b| self.query.order(a, b));
                self.rows.truncate(limit);
            }
        }
    }

    /// The answer: the rows kept, [`ViewQuery::finish`]ed.
    pub fn finish(self) -> Vec<Row> {
        self.query.finish(self.rows)
    }
}

/// A registered view, type-erased: its schema, its build on one worker, and its reference.
pub trait ViewDefinition: Sync {
    /// Name, description, typed columns.
    fn schema(&self) -> &'static ViewSchema;

    /// Builds the view's input and arrangement in `scope`, attached to `probe`.
    fn build(&self, scope: Scope<'_, Tick>, probe: &ProbeHandle<Tick>) -> BuiltView;

    /// The answer to `query` computed from scratch from every record ever inserted
    /// (retractions included, records below `floor` left out) and the rules of every trace
    /// the records use: what the view must read.
    fn reference(
        &self,
        records: &[FlowRecord],
        rules: &[(TraceId, PolicyRule)],
        query: &ViewQuery,
    ) -> Vec<Row>;
}

/// The two halves of a view on one worker: where its rows go in, where they are read.
pub struct BuiltView {
    /// The input side, kept with the engine's inputs.
    pub feed: Box<dyn ViewFeed>,
    /// The arrangement, kept with the other views.
    pub reader: Box<dyn ViewReader>,
}

/// A view's input on one worker: derives rows from each record, consolidated per batch, and
/// takes the other engine commands it needs (each with a default that ignores it).
pub trait ViewFeed {
    /// Notes the rows `record` contributes (a retraction contributes their negation).
    fn note(&mut self, record: &FlowRecord);

    /// Takes the distinct rules of newly interned traces (every worker gets every trace's
    /// rules, before or with the trace's first record).
    fn insert_rules(&mut self, _rules: &[(TraceId, PolicyRule)]) {}

    /// Forgets the rules of traces no retained flow uses any more.
    fn retract_rules(&mut self, _rules: &[(TraceId, PolicyRule)]) {}

    /// Closes every tick before `tick`.
    fn advance_to(&mut self, tick: Tick);
}

/// What a subscription asks a view's reader for at an epoch (or when new subscribers come).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// The changes since the last call, and every row as of now: the view's changes are
    /// recorded from now on.
    Snapshot,
    /// The changes since the last call.
    Changes,
    /// Nothing: the view has no subscriber any more and stops recording its changes.
    Stop,
}

/// What a view's reader answers a [`Watch`] with, on one worker: rows one per bucket, every
/// tick before `before` included and none after.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ViewChanges {
    /// Each row that changed with its multiplicity: a changed row is the old row with −1 and
    /// the new row with +1; a row that appeared is +1 only, one that left −1 only.
    pub changes: Vec<(Row, i64)>,
    /// Every row, when a snapshot was asked for.
    pub snapshot: Option<Vec<Row>>,
}

/// The live rows of a view's arrangement on one worker (for metrics): the keys with at least
/// one live value, and the live (key, value) pairs. A row is live when its differences,
/// summed over every time, are not zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveRows {
    /// Keys of the arrangement with a live value.
    pub keys: u64,
    /// Live (key, value) pairs.
    pub rows: u64,
}

/// A view's arrangement on one worker. `Any`, so that a query written for one view's own
/// layout (Goldmane's List, FilterHints, Statistics and expiry) can reach its reader by type
/// ([`crate::views::Views::reader`]).
pub trait ViewReader: Any {
    /// Answers `query` from this worker's shard ([`ViewQuery::finish`]ed).
    fn read(&mut self, query: &ViewQuery) -> Vec<Row>;

    /// The rows (one per bucket, each ending `window` after its start) that changed since
    /// the last call, up to the ticks before `before` (every one of them is in the
    /// arrangement), and with [`Watch::Snapshot`] every row as of then.
    fn changes(&mut self, watch: Watch, window: i64, before: Tick) -> ViewChanges;

    /// Allows the arrangement to forget history before `tick` and merge its batches.
    fn compact_to(&mut self, tick: Tick);

    /// Counts the arrangement's live rows. Walks it whole: callers ask rarely.
    fn live_rows(&mut self) -> LiveRows;

    /// Takes a handle on this worker's flows view, given to every view once all are built: a
    /// view derived from the flows at read time (`views::derived`) keeps it, others ignore it.
    fn read_flows_through(&mut self, _flows: &FlowsHandle) {}
}
