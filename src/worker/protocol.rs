//! The only types that cross between tokio and the timely workers.
//!
//! The controller thread is the single sender of [`Command`]s, so every worker sees the
//! broadcast commands in the same order. Data (`Ingest`) goes to one worker; everything else
//! goes to every worker. Replies travel on tokio channels, which a worker fills without
//! blocking (each reply channel has room for one message per worker).

use std::sync::Arc;

use eddy_dataflows::keys::owner_of;
use eddy_dataflows::model::{Bucket, FlowRecord, PolicyRule, Tick, TraceId};
use eddy_dataflows::queries::hints::HintsQuery;
use eddy_dataflows::queries::list::{ListPartial, ListQuery};
use eddy_dataflows::queries::sizes::ViewSizes;
use eddy_dataflows::queries::stats::{StatsQuery, StatsRow};
use eddy_dataflows::queries::used_ids::{IdMarks, UsedIds};
use eddy_dataflows::views::registry::{Row, ViewChanges, ViewQuery, Watch};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Where a worker sends its part of an answer. Sized to hold one message per worker.
pub type Reply<T> = mpsc::Sender<T>;

/// What one ingest step hands to the engine.
#[derive(Clone, Debug, Default)]
pub struct IngestBatch {
    /// Validated, interned flow updates.
    pub records: Vec<FlowRecord>,
    /// The distinct policy rules of traces seen for the first time.
    pub trace_rules: Vec<(TraceId, PolicyRule)>,
    /// The rules of traces the catalog removed (no retained flow uses them), to retract.
    pub retired_rules: Vec<(TraceId, PolicyRule)>,
}

/// An ingest batch as the controller sends it: the positions of its records grouped by owner
/// (`keys::owner_of`: by connection), hashed and grouped once here, so a worker reads only its
/// own records rather than every record of every batch it takes.
#[derive(Debug)]
pub struct RoutedBatch {
    /// The batch.
    pub batch: IngestBatch,
    /// The positions in `batch.records` of worker 0's records, then worker 1's, and so on,
    /// each worker's in order.
    by_owner: Vec<u32>,
    /// Where each worker's positions start in `by_owner`, and where the last one's end.
    starts: Vec<usize>,
    /// The workers that need the batch, ascending: every worker if it carries rule changes
    /// (each worker keeps every trace's rules), else those owning one of its records.
    pub takers: Vec<usize>,
}

impl RoutedBatch {
    /// `batch` with its records grouped by owner among `peers` workers.
    pub fn new(batch: IngestBatch, peers: usize) -> Self {
        let peers = peers.max(1);
        let owners: Vec<usize> = batch
            .records
            .iter()
            .map(|record| owner_of(&record.key, peers))
            .collect();
        // A counting sort of the positions by owner: stable, so each worker's are in order.
        let mut starts = vec![0usize; peers + 1];
        for owner in &owners {
            starts[owner + 1] += 1;
        }
        for worker in 0..peers {
            starts[worker + 1] += starts[worker];
        }
        let mut next = starts.clone();
        let mut by_owner = vec![0u32; owners.len()];
        for (position, owner) in owners.iter().enumerate() {
            by_owner[next[*owner]] = u32::try_from(position).expect(
                "a batch holds fewer than 2^32 records (the controller gathers a few thousand)",
            );
            next[*owner] += 1;
        }
        let takers = if !batch.trace_rules.is_empty() || !batch.retired_rules.is_empty() {
            (0..peers).collect()
        } else {
            (0..peers)
                .filter(|&worker| starts[worker + 1] > starts[worker])
                .collect()
        };
        RoutedBatch {
            batch,
            by_owner,
            starts,
            takers,
        }
    }

    /// The records `worker` owns, in order.
    pub fn records_of(&self, worker: usize) -> impl Iterator<Item = &FlowRecord> {
        let positions = match (self.starts.get(worker), self.starts.get(worker + 1)) {
            (Some(&start), Some(&end)) => &self.by_owner[start..end],
            _ => &[],
        };
        positions
            .iter()
            .map(|position| &self.batch.records[*position as usize])
    }
}

/// Tells the callers whose batches a gathered ingest batch holds that every worker it was sent
/// to took it. Dropped without every [`Taken::fire`] (a worker died first), each caller sees
/// its sender dropped, and no update of the batch is receipted (SPEC §12.8).
#[derive(Clone, Debug, Default)]
pub struct Taken(Arc<Mutex<Takers>>);

/// The workers yet to take a batch, and the callers waiting for them.
#[derive(Debug, Default)]
struct Takers {
    left: usize,
    callers: Vec<oneshot::Sender<()>>,
}

impl Taken {
    /// A signal for these callers, given once `takers` workers fired it.
    pub fn new(callers: Vec<oneshot::Sender<()>>, takers: usize) -> Self {
        Taken(Arc::new(Mutex::new(Takers {
            left: takers,
            callers,
        })))
    }

    /// One worker holds the batch; once every worker does, tells every caller.
    pub fn fire(&self) {
        let mut takers = self.0.lock();
        takers.left = takers.left.saturating_sub(1);
        if takers.left == 0 {
            for caller in takers.callers.drain(..) {
                // A caller that left no longer waits for the answer.
                let _ = caller.send(());
            }
        }
    }
}

/// A command from the controller to a worker.
#[derive(Clone, Debug)]
pub enum Command {
    /// Insert the records of the flows this worker owns (`keys::owner_of`, found by the
    /// controller) and the batch's rule changes at the worker's current tick, then fire the
    /// [`Taken`] signal. Sent to the batch's takers only ([`RoutedBatch::takers`]), so a small
    /// batch wakes one worker, not every one; records for buckets below the worker's retention
    /// floor are dropped.
    Ingest(Arc<RoutedBatch>, Taken),
    /// Close every tick before `0`: advance the worker's input to this tick. Broadcast, in
    /// increasing order. Nothing comes back.
    Advance(Tick),
    /// Answer a List once every tick up to `as_of` is reflected in the views. Broadcast; each
    /// worker sends exactly one [`ListPartial`] on `reply`.
    List {
        /// The last closed tick the answer must include.
        as_of: Tick,
        /// The validated query.
        query: Arc<ListQuery>,
        /// Where the partial answer goes.
        reply: Reply<ListPartial>,
    },
    /// Answer a FilterHints once every tick up to `as_of` is reflected. Broadcast; each worker
    /// sends exactly one list of distinct value ids, ascending, on `reply`.
    Hints {
        /// The last closed tick the answer must include.
        as_of: Tick,
        /// The validated query.
        query: Arc<HintsQuery>,
        /// Where the partial answer goes.
        reply: Reply<Vec<u32>>,
    },
    /// Answer a Statistics once every tick up to `as_of` is reflected. Broadcast; each worker
    /// sends exactly one list of rows on `reply`.
    Stats {
        /// The last closed tick the answer must include.
        as_of: Tick,
        /// The validated query.
        query: Arc<StatsQuery>,
        /// Where the partial answer goes.
        reply: Reply<Vec<StatsRow>>,
    },
    /// Answer a read of a registered view (its index in `views::REGISTERED`) once every tick
    /// up to `as_of` is reflected. Broadcast; each worker sends exactly one list of rows, its
    /// shard's answer ([`ViewQuery::finish`]ed), on `reply`. Plain data: the same command
    /// serves every registered view.
    View {
        /// The last closed tick the answer must include.
        as_of: Tick,
        /// The view's index in the registry.
        view: usize,
        /// The validated query.
        query: Arc<ViewQuery>,
        /// Where the partial answer goes.
        reply: Reply<Vec<Row>>,
    },
    /// Answer a subscription's [`Watch`] of a registered view once every tick up to `as_of`
    /// is reflected: the rows that changed on this worker since the last watch, up to the
    /// ticks the views reflect, and with a snapshot every row. Broadcast; each worker sends
    /// exactly one [`ViewChanges`] on `reply`.
    ViewChanges {
        /// The last closed tick the answer must include.
        as_of: Tick,
        /// The view's index in the registry.
        view: usize,
        /// What is asked for.
        watch: Watch,
        /// The aggregation window: a row ends this long after its bucket starts.
        window: i64,
        /// Where the worker's changes go.
        reply: Reply<ViewChanges>,
    },
    /// Retention moved (SPEC §2.3): from now on drop records for buckets below `floor`, and
    /// once every tick up to `as_of` is reflected, retract everything held below `floor`.
    /// Broadcast. Nothing comes back.
    Expire {
        /// The last closed tick whose data must be retracted.
        as_of: Tick,
        /// The oldest retained bucket.
        floor: Bucket,
    },
    /// Count the live rows of every view once every tick up to `as_of` is reflected (for
    /// metrics). Broadcast; each worker sends one [`ViewSizes`] on `reply`.
    Sizes {
        /// The last closed tick the counts must include.
        as_of: Tick,
        /// Where the worker's counts go.
        reply: Reply<ViewSizes>,
    },
    /// Report which string, label-set and trace ids below the marks the retained flows use,
    /// once every tick up to `as_of` is reflected. Broadcast; each worker sends one
    /// [`UsedIds`].
    UsedIds {
        /// Set by the controller.
        as_of: Tick,
        /// Ids at or above these are not reported.
        marks: IdMarks,
        /// Where the answer goes.
        reply: Reply<UsedIds>,
    },
    /// A barrier: reply once every tick up to `as_of` is reflected. Broadcast; each worker
    /// sends one `()` on `reply`.
    Sync {
        /// The last closed tick that must be reflected.
        as_of: Tick,
        /// Where the acknowledgement goes.
        reply: Reply<()>,
    },
}

impl Command {
    /// The tick a read or expiry waits for; `None` for commands that are applied at once.
    pub fn as_of(&self) -> Option<Tick> {
        match self {
            Command::List { as_of, .. }
            | Command::Hints { as_of, .. }
            | Command::Stats { as_of, .. }
            | Command::View { as_of, .. }
            | Command::ViewChanges { as_of, .. }
            | Command::Expire { as_of, .. }
            | Command::Sync { as_of, .. }
            | Command::Sizes { as_of, .. }
            | Command::UsedIds { as_of, .. } => Some(*as_of),
            Command::Ingest(..) | Command::Advance(_) => None,
        }
    }

    /// The tick a read or expiry waits for, to be set by the controller.
    pub fn as_of_mut(&mut self) -> Option<&mut Tick> {
        match self {
            Command::List { as_of, .. }
            | Command::Hints { as_of, .. }
            | Command::Stats { as_of, .. }
            | Command::View { as_of, .. }
            | Command::ViewChanges { as_of, .. }
            | Command::Expire { as_of, .. }
            | Command::Sync { as_of, .. }
            | Command::Sizes { as_of, .. }
            | Command::UsedIds { as_of, .. } => Some(as_of),
            Command::Ingest(..) | Command::Advance(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use eddy_dataflows::model::{FlowKey, StatLevel, Stats};

    use super::*;

    fn record(id: u64, source_name: u32) -> FlowRecord {
        let key = FlowKey {
            id,
            source_name,
            source_namespace: 2,
            source_type: 1,
            dest_name: 3,
            dest_namespace: 4,
            dest_type: 1,
            dest_port: 443,
            dest_service_name: 0,
            dest_service_namespace: 0,
            dest_service_port_name: 0,
            dest_service_port: 0,
            proto: 5,
            reporter: 1,
            action: 1,
            trace: 9,
        };
        FlowRecord {
            key,
            bucket: 0,
            labels: (0, 0),
            stats: Stats::default(),
        }
    }

    fn rule() -> (TraceId, PolicyRule) {
        let rule = PolicyRule {
            kind: 1,
            tier: 2,
            namespace: 3,
            name: 4,
            action: 1,
            rule_index: 0,
            level: StatLevel::Policy,
        };
        (9, rule)
    }

    #[test]
    fn records_go_to_their_owners_and_rules_to_every_worker() {
        let mut batch = IngestBatch {
            records: vec![record(4, 1), record(6, 1)],
            ..IngestBatch::default()
        };
        let owner = owner_of(&batch.records[0].key, 2);
        let routed = RoutedBatch::new(batch.clone(), 2);
        assert_eq!(routed.takers, vec![owner], "one connection, one owner");
        assert_eq!(routed.records_of(owner).count(), 2);
        assert_eq!(routed.records_of(1 - owner).count(), 0);
        let elsewhere = (2..)
            .map(|name| record(8, name))
            .find(|other| owner_of(&other.key, 2) != owner)
            .expect("some connection is owned by the other worker");
        batch.records.insert(1, elsewhere);
        let routed = RoutedBatch::new(batch.clone(), 2);
        assert_eq!(routed.takers, vec![0, 1]);
        let theirs: Vec<_> = routed.records_of(1 - owner).collect();
        assert_eq!(theirs, vec![&elsewhere]);
        let mine: Vec<_> = routed.records_of(owner).collect();
        assert_eq!(
            mine,
            vec![&batch.records[0], &batch.records[2]],
            "a worker's records in the batch's order, the other's left out"
        );
        assert_eq!(
            routed.records_of(2).count(),
            0,
            "no such worker: no records"
        );
        batch.records.remove(1);
        batch.retired_rules.push(rule());
        assert_eq!(RoutedBatch::new(batch.clone(), 3).takers, vec![0, 1, 2]);
        batch.retired_rules.clear();
        batch.trace_rules.push(rule());
        assert_eq!(RoutedBatch::new(batch, 2).takers, vec![0, 1]);
    }
}
