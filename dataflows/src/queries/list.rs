//! The List read (SPEC §4): scan this worker's flows, keep the keys that match the filter and
//! have data in the range, aggregate per key (or per key and window), and keep the best
//! `limit` rows in the requested order along with the total count.

use std::sync::Arc;

use crate::filter::FlowFilter;
use crate::flow_table::FlowTable;
use crate::model::{Bucket, BucketRange, FlowKey, LabelPair, Stats};
use crate::views::flows::FlowsReader;
use crate::views::Views;

/// A field a List may be sorted by (SPEC §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortField {
    /// Result start time, descending.
    Time,
    /// Destination name, byte order.
    DestName,
    /// Destination namespace, byte order.
    DestNamespace,
    /// Destination type, enum number.
    DestType,
    /// Source name, byte order.
    SourceName,
    /// Source namespace, byte order.
    SourceNamespace,
    /// Source type, enum number.
    SourceType,
}

/// The most sort fields that can matter: a repeated field adds nothing to the order.
pub const MAX_SORT_FIELDS: usize = 7;

/// A validated List query, as every worker receives it.
#[derive(Clone, Debug)]
pub struct ListQuery {
    /// The selected buckets.
    pub range: BucketRange,
    /// The bucket width W in seconds.
    pub window: i64,
    /// 0 for one result per key, else the width of the aligned result windows (a multiple of W).
    pub interval: i64,
    /// The compiled filter.
    pub filter: FlowFilter,
    /// Sort fields in order of precedence, without repeats.
    pub sort: Vec<SortField>,
    /// How many of the best rows each worker must return; `None` for all.
    pub limit: Option<usize>,
    /// The byte-order rank of every interned string, indexed by id (for name sorts).
    pub name_ranks: Arc<Vec<u32>>,
}

/// The position of a row in the requested order; smaller sorts first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    parts: [u64; MAX_SORT_FIELDS],
    id: u64,
    start_descending: u64,
}

/// One List result: a key aggregated over a span of buckets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    /// The flow key.
    pub key: FlowKey,
    /// Start of the earliest contributing bucket.
    pub start: Bucket,
    /// End of the latest contributing bucket.
    pub end: i64,
    /// Summed counters.
    pub stats: Stats,
    /// Every label pair present in the contributing buckets, ascending.
    pub labels: Vec<LabelPair>,
    /// Where the row sorts.
    pub order: OrderKey,
}

/// One worker's answer to a List.
#[derive(Clone, Debug, Default)]
pub struct ListPartial {
    /// The worker's best rows (at most the query's limit), in order.
    pub rows: Vec<ListRow>,
    /// How many rows matched on this worker before the limit.
    pub total: u64,
}

fn rank(ranks: &[u32], id: u32) -> u64 {
    ranks
        .get(id as usize)
        .map_or(u64::from(u32::MAX) + 1, |r| u64::from(*r))
}

fn enum_order(value: i32) -> u64 {
    (i64::from(value) - i64::from(i32::MIN)) as u64
}

impl ListQuery {
    /// The order of the row of the flow of `key` starting at `start`.
    fn order_of(&self, key: &FlowKey, start: Bucket) -> OrderKey {
        let mut parts = [0u64; MAX_SORT_FIELDS];
        for (part, field) in parts.iter_mut().zip(&self.sort) {
            *part = match field {
                SortField::Time => u64::MAX - (start as u64 ^ (1 << 63)),
                SortField::DestName => rank(&self.name_ranks, key.dest_name),
                SortField::DestNamespace => rank(&self.name_ranks, key.dest_namespace),
                SortField::DestType => enum_order(key.dest_type),
                SortField::SourceName => rank(&self.name_ranks, key.source_name),
                SortField::SourceNamespace => rank(&self.name_ranks, key.source_namespace),
                SortField::SourceType => enum_order(key.source_type),
            };
        }
        OrderKey {
            parts,
            id: key.id,
            start_descending: u64::MAX - (start as u64 ^ (1 << 63)),
        }
    }

    /// The start of the result window holding `bucket`.
    fn window_of(&self, bucket: Bucket) -> Bucket {
        if self.interval > 0 {
            bucket - bucket.rem_euclid(self.interval)
        } else {
            0
        }
    }
}

/// Keeps the best `limit` rows seen so far, in amortised linear time.
struct TopRows {
    limit: Option<usize>,
    rows: Vec<ListRow>,
    /// The order of the worst row kept by the latest truncation.
    cutoff: Option<OrderKey>,
}

impl TopRows {
    /// Whether a row in this position could still be among the best `limit`: after a
    /// truncation, a row ordered after the worst one kept never is.
    fn admits(&self, order: &OrderKey) -> bool {
        match (self.limit, &self.cutoff) {
            (Some(0), _) => false,
            (Some(_), Some(cutoff)) => order < cutoff,
            _ => true,
        }
    }

    fn push(&mut self, row: ListRow) {
        self.rows.push(row);
        if let Some(limit) = self.limit {
            if self.rows.len() >= limit.max(16).saturating_mul(2) {
                self.truncate(limit);
            }
        }
    }

    fn truncate(&mut self, limit: usize) {
        if self.rows.len() > limit && limit > 0 {
            self.rows
                .select_nth_unstable_by(limit - 1, |a, b| a.order.cmp(&b.order));
            self.cutoff = Some(self.rows[limit - 1].order);
        }
        self.rows.truncate(limit);
    }

    fn finish(mut self) -> Vec<ListRow> {
        if let Some(limit) = self.limit {
            self.truncate(limit);
        }
        self.rows.sort_unstable_by_key(|row| row.order);
        self.rows
    }
}

/// Answers `query` from this worker's shard of the flows view. A filtered query reads only
/// the flows whose key matches, found in the flow index.
pub fn list(views: &mut Views, query: &ListQuery) -> ListPartial {
    list_flows(&views.reader::<FlowsReader>().table(), query)
}

fn list_flows(table: &FlowTable, query: &ListQuery) -> ListPartial {
    let candidates = (!query.filter.is_empty()).then(|| table.matching(&query.filter));
    let mut top = TopRows {
        limit: query.limit,
        rows: Vec::new(),
        cutoff: None,
    };
    let mut total = 0u64;
    table.visit(candidates.as_deref(), |key, rows| {
        // The window being aggregated, and its row unless it cannot make the page (then it is
        // only counted). Apart, so a flow whose rows cannot make the page moves no row.
        let mut open_window: Option<Bucket> = None;
        let mut open_row: Option<ListRow> = None;
        for flow_row in rows {
            let bucket = flow_row.bucket;
            if !query.range.contains(bucket) || flow_row.stats.records <= 0 {
                continue;
            }
            let window = query.window_of(bucket);
            if open_window == Some(window) {
                if let Some(row) = open_row.as_mut() {
                    row.stats.add(&flow_row.stats);
                    row.end = bucket + query.window;
                    row.labels.push(flow_row.labels);
                }
                continue;
            }
            if open_window.is_some() {
                total += 1;
                if let Some(row) = open_row.take() {
                    top.push(row);
                }
            }
            open_window = Some(window);
            // Set now: `TopRows` compares orders as rows arrive.
            let order = query.order_of(key, bucket);
            if top.admits(&order) {
                open_row = Some(ListRow {
                    key: *key,
                    start: bucket,
                    end: bucket + query.window,
                    stats: flow_row.stats,
                    labels: vec![flow_row.labels],
                    order,
                });
            }
        }
        if open_window.is_some() {
            total += 1;
            if let Some(row) = open_row {
                top.push(row);
            }
        }
    });
    let mut rows = top.finish();
    for row in &mut rows {
        row.labels.sort_unstable();
        row.labels.dedup();
    }
    ListPartial { rows, total }
}

/// Merges the partial answers of every worker and cuts out one page.
pub fn merge(partials: Vec<ListPartial>, page: usize, page_size: usize) -> (Vec<ListRow>, u64) {
    let total = partials.iter().map(|p| p.total).sum();
    let mut rows: Vec<ListRow> = partials.into_iter().flat_map(|p| p.rows).collect();
    rows.sort_unstable_by_key(|row| row.order);
    (page_of(rows, page, page_size), total)
}

/// Page `page` (0-based) of `page_size` items; every item when `page_size` is 0 (SPEC §4.4).
pub fn page_of<T>(items: Vec<T>, page: usize, page_size: usize) -> Vec<T> {
    if page_size == 0 {
        return items;
    }
    items
        .into_iter()
        .skip(page.saturating_mul(page_size))
        .take(page_size)
        .collect()
}
