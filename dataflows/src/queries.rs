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
