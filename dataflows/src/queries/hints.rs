//! The FilterHints read (SPEC §6): the distinct values of one key field over the flows that
//! match a filter in a range. Unfiltered reads of a field the hints view holds (namespaces,
//! the trace) use that view; filtered reads take the matching flows from the key store and
//! read only their rows of the flows view, and reads of a name field (one value per flow,
//! which the hints view does not hold) walk the flows view.

use differential_dataflow::trace::cursor::Cursor;

use crate::filter::FlowFilter;
use crate::keys::FlowKeys;
use crate::model::BucketRange;
use crate::queries::{cursor_over_all, visit_flows, EVERY_TICK};
use crate::traces::{FlowsTrace, HintsTrace};
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
        let (flows, keys) = views.reader::<FlowsReader>().trace_and_keys();
        from_flows_view(flows, &keys, query)
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

fn from_flows_view(flows: &mut FlowsTrace, keys: &FlowKeys, query: &HintsQuery) -> Vec<u32> {
    let candidates = (!query.filter.is_empty()).then(|| keys.matching(&query.filter));
    // The flows with updates in the range, ascending.
    let mut present = Vec::new();
    visit_flows(flows, candidates.as_deref(), EVERY_TICK, |id, flow| {
        if flow
            .rows()
            .iter()
            .any(|row| query.range.contains(row.bucket) && row.records > 0)
        {
            present.push(id);
        }
    });
    let mut values: Vec<u32> = if candidates.is_none() && present.len() == keys.len() {
        // Every flow with a live row has its key in the store (its invariant), so when as
        // many flows have updates in the range as keys are held, they are the same flows: the
        // values are read in the store's order, without a look-up per flow.
        keys.keys().map(|key| query.field.value_of(key)).collect()
    } else {
        present
            .iter()
            .filter_map(|id| keys.get(*id))
            .map(|key| query.field.value_of(key))
            .collect()
    };
    values.sort_unstable();
    values.dedup();
    values
}
