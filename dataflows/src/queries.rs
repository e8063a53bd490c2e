//! Reads of one worker's shard of the views. Each function is answered on the worker thread
//! that owns the traces; the controller merges the partial answers of every worker.

pub mod expire;
pub mod hints;
pub mod list;
pub mod sizes;
pub mod stats;
pub mod used_ids;

use differential_dataflow::trace::cursor::{cursor_list, Cursor, CursorList, Navigable};
use differential_dataflow::trace::TraceReader;
use timely::progress::Antichain;

use crate::model::FlowId;
use crate::traces::FlowsTrace;

/// A cursor over every batch of a trace, with the storage it reads from.
pub(crate) fn cursor_over_all<Tr>(
    trace: &mut Tr,
) -> (CursorList<<Tr::Batch as Navigable>::Cursor>, Vec<Tr::Batch>)
where
    Tr: TraceReader,
    Tr::Batch: Navigable,
    <Tr::Batch as Navigable>::Cursor: Cursor,
{
    let batches = trace
        .batches_through(Antichain::new().borrow())
        .expect("the empty frontier is always a clean cut of a trace");
    cursor_list(batches)
}

/// The cursor of the flows view over every batch.
pub(crate) type FlowsCursor = CursorList<<<FlowsTrace as TraceReader>::Batch as Navigable>::Cursor>;
/// The batches a [`FlowsCursor`] reads.
pub(crate) type FlowsStorage = Vec<<FlowsTrace as TraceReader>::Batch>;

/// Calls `visit` with the cursor on each flow of the flows view, in id order: every flow, or
/// only the ids in `only` (ascending), reached by seeking so the others are not read.
pub(crate) fn visit_flows(
    flows: &mut FlowsTrace,
    only: Option<&[FlowId]>,
    mut visit: impl FnMut(FlowId, &mut FlowsCursor, &FlowsStorage),
) {
    let (mut cursor, storage) = cursor_over_all(flows);
    match only {
        None => {
            while let Some(id) = cursor.get_key(&storage).copied() {
                visit(id, &mut cursor, &storage);
                cursor.step_key(&storage);
            }
        }
        Some(ids) => {
            for id in ids {
                cursor.seek_key(&storage, id);
                if cursor.get_key(&storage) == Some(id) {
                    visit(*id, &mut cursor, &storage);
                }
            }
        }
    }
}
