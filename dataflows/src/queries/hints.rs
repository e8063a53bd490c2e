//! The FilterHints read (SPEC §6): the distinct values of one key field over the flows that
//! match a filter in a range. Unfiltered reads of a field the hints view holds (namespaces,
//! the trace) use that view; filtered reads take the matching flows from the flow index and
//! read only their rows in the flow table, and reads of a name field (one value per flow,
//! which the hints view does not hold) walk the flow table.

use differential_dataflow::trace::cursor::Cursor;

use crate::filter::FlowFilter;
use crate::flow_table::FlowTable;
use crate::model::BucketRange;
use crate::queries::cursor_over_all;
use crate::traces::HintsTrace;
use crate::views::flows::FlowsReader;
use crate::views::hints::{HintField, HintsReader};
use crate::views::Views;

/// A validated FilterHints query, as every worker receives it.
#[derive(Clone, Debug)]
pub struct HintsQuery {
    /// The selected buckets.
    pub range: BucketRange,
    /// The field whose values are wanted.
    pub field: HintField,
    /// The compiled filter.
    pub filter: FlowFilter,
}

/// Answers `query` from this worker's shard: the distinct values (ids), ascending.
pub fn hints(views: &mut Views, query: &HintsQuery) -> Vec<u32> {
    if query.filter.is_empty() && query.field.is_held() {
        from_hints_view(views.reader::<HintsReader>().trace(), query)
    } else {
        from_flows_view(&views.reader::<FlowsReader>().table(), query)
    }
}

fn from_hints_view(hints: &mut HintsTrace, query: &HintsQuery) -> Vec<u32> {
    let (mut cursor, storage) = cursor_over_all(hints);
    let mut values = Vec::new();
    cursor.seek_key(&storage, &(query.field, 0, i64::MIN));
    while let Some((field, value, bucket)) = cursor.get_key(&storage) {
        if *field != query.field {
            break;
        }
        if query.range.contains(*bucket) && values.last() != Some(value) {
            let mut count = 0isize;
            cursor.map_times(&storage, |_, diff| count += diff);
            if count > 0 {
                values.push(*value);
            }
        }
        cursor.step_key(&storage);
    }
    values
}

fn from_flows_view(table: &FlowTable, query: &HintsQuery) -> Vec<u32> {
    let candidates = (!query.filter.is_empty()).then(|| table.matching(&query.filter));
    let mut values = Vec::new();
    table.visit(candidates.as_deref(), |key, rows| {
        if rows
            .iter()
            .any(|row| query.range.contains(row.bucket) && row.stats.records > 0)
        {
            values.push(query.field.value_of(key));
        }
    });
    values.sort_unstable();
    values.dedup();
    values
}
