//! Reads that share one pass: an identical query that arrives while another waits for a
//! dispatch slot joins it and gets its answer, and only a bounded number of reads run on the
//! workers at once, so many clients asking the same thing (Whisker polls List from every open
//! browser) cost one scan, not one each.
//!
//! A read already sent to the workers may be joined too, while nothing has changed the views
//! since it was sent ([`ViewChanges`]): callers asking while a scan runs get its answer
//! instead of queueing one scan each.
//!
//! Read-your-writes (SPEC §9.1) holds for every joined caller. A read that waits for its slot
//! is sent after every caller that joined it arrived, and the controller closes a tick after
//! every update receipted before that. A read sent already is joined only while the count of
//! changes forwarded to the workers is the one read just before it was sent: an update is
//! forwarded (and counted) before it can be receipted, so every update receipted before such
//! a caller arrived was forwarded before the read reached the controller.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::future::{BoxFuture, FutureExt, WeakShared};
use parking_lot::Mutex;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// The kinds of read that are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// `Flows.List`.
    List,
    /// `Flows.FilterHints`.
    Hints,
    /// `Statistics.List`.
    Stats,
}

impl ReadKind {
    /// Every kind, in metric order.
    pub const ALL: [ReadKind; 3] = [ReadKind::List, ReadKind::Hints, ReadKind::Stats];

    /// The metric label of this kind.
    pub fn label(self) -> &'static str {
        match self {
            ReadKind::List => "list",
            ReadKind::Hints => "filter_hints",
            ReadKind::Stats => "statistics",
        }
    }

    fn index(self) -> usize {
        match self {
            ReadKind::List => 0,
            ReadKind::Hints => 1,
            ReadKind::Stats => 2,
        }
    }
}

/// How reads share: the reads that may run on the workers at once and the most callers one
/// shared read answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Reads sent to the workers and not yet answered, at most.
    pub in_flight: usize,
    /// Callers one shared read answers, at most (the first caller included).
    pub max_waiters: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            in_flight: 2,
            max_waiters: 256,
        }
    }
}

/// Running totals of shared reads, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadTotals {
    dispatched: [u64; 3],
    joined: [u64; 3],
}

impl ReadTotals {
    /// Reads of `kind` sent to the engine.
    pub fn dispatched(&self, kind: ReadKind) -> u64 {
        self.dispatched[kind.index()]
    }

    /// Calls of `kind` answered by joining a read another call started.
    pub fn joined(&self, kind: ReadKind) -> u64 {
        self.joined[kind.index()]
    }
}

/// How many changes (ingest batches, expiries) the controller has forwarded to the workers.
/// The controller counts a change before it sends it, so before any of its updates is
/// receipted.
#[derive(Debug, Default)]
pub struct ViewChanges(AtomicU64);

impl ViewChanges {
    /// Counts one change about to be sent to the workers.
    pub fn count_one(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The changes counted so far.
    pub fn counted(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The dispatch slots every shared read takes and the totals they keep. Cheap to clone.
#[derive(Clone)]
pub struct ReadSlots {
    slots: Arc<Semaphore>,
    limits: ReadLimits,
    totals: Arc<watch::Sender<ReadTotals>>,
    changes: Arc<ViewChanges>,
}

/// Leave to run one read on the workers; the slot frees when this drops.
pub struct ReadSlot {
    _permit: OwnedSemaphorePermit,
}

impl ReadSlots {
    /// Slots for these limits.
    pub fn new(limits: ReadLimits) -> Self {
        let limits = ReadLimits {
            in_flight: limits.in_flight.max(1),
            max_waiters: limits.max_waiters.max(1),
        };
        ReadSlots {
            slots: Arc::new(Semaphore::new(limits.in_flight)),
            limits,
            totals: Arc::new(watch::Sender::new(ReadTotals::default())),
            changes: Arc::new(ViewChanges::default()),
        }
    }

    /// New slots for `limits` that watch the same changes as these.
    pub fn with_limits(&self, limits: ReadLimits) -> Self {
        ReadSlots {
            changes: Arc::clone(&self.changes),
            ..ReadSlots::new(limits)
        }
    }

    /// The count of changes these slots watch; the controller counts into it.
    pub fn changes(&self) -> Arc<ViewChanges> {
        Arc::clone(&self.changes)
    }

    /// The limits in force.
    pub fn limits(&self) -> ReadLimits {
        self.limits
    }

    /// Waits for a free slot.
    pub async fn acquire(&self) -> ReadSlot {
        let permit = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the read slots' semaphore is never closed");
        ReadSlot { _permit: permit }
    }

    /// The totals so far.
    pub fn totals(&self) -> ReadTotals {
        *self.totals.borrow()
    }

    /// Watches the totals (tests wait on it for callers to have joined).
    pub fn watch_totals(&self) -> watch::Receiver<ReadTotals> {
        self.totals.subscribe()
    }

    fn count(&self, kind: ReadKind, joined: bool) {
        self.totals.send_modify(|totals| {
            let counts = if joined {
                &mut totals.joined
            } else {
                &mut totals.dispatched
            };
            counts[kind.index()] += 1;
        });
    }
}

/// A read waiting for its slot, or sent with the changes counted just before, which callers
/// with the same key may still join.
struct Waiting<K, V> {
    id: u64,
    key: K,
    callers: usize,
    sent_after: Option<u64>,
    answer: WeakShared<BoxFuture<'static, V>>,
}

/// The reads of one kind waiting for a slot or running, by key.
pub struct SharedReads<K, V> {
    kind: ReadKind,
    slots: ReadSlots,
    waiting: Mutex<Vec<Waiting<K, V>>>,
    next_id: AtomicU64,
}

impl<K, V> SharedReads<K, V>
where
    K: PartialEq + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty table of `kind` reads taking `slots`.
    pub fn new(kind: ReadKind, slots: ReadSlots) -> Arc<Self> {
        Arc::new(SharedReads {
            kind,
            slots,
            waiting: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
        })
    }

    /// The answer to the read `key` names: joins a read with the same key if it has room and
    /// is waiting, or was sent with nothing changed since; else queues `read`, which runs once
    /// it has a slot (it may drop the slot once the workers answered) and answers every caller
    /// that joined it. The caller joins (or queues) when this is called, not when the answer
    /// is first polled.
    pub fn read<F, Fut>(self: &Arc<Self>, key: K, read: F) -> impl Future<Output = V>
    where
        F: FnOnce(ReadSlot) -> Fut + Send + 'static,
        Fut: Future<Output = V> + Send + 'static,
    {
        let max_waiters = self.slots.limits.max_waiters;
        let mut waiting = self.waiting.lock();
        let changes = self.slots.changes.counted();
        // A read every caller left is never polled again, and one sent before a change cannot
        // answer a caller arriving now: forget them.
        waiting.retain(|entry| {
            entry.sent_after.is_none_or(|sent| sent == changes) && entry.answer.upgrade().is_some()
        });
        for entry in waiting.iter_mut() {
            if entry.callers < max_waiters && entry.key == key {
                if let Some(answer) = entry.answer.upgrade() {
                    entry.callers += 1;
                    self.slots.count(self.kind, true);
                    return answer;
                }
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let table = Arc::clone(self);
        let answer = async move {
            let slot = table.slots.acquire().await;
            table.dispatch(id);
            read(slot).await
        }
        .boxed()
        .shared();
        if let Some(weak) = answer.downgrade() {
            waiting.push(Waiting {
                id,
                key,
                callers: 1,
                sent_after: None,
                answer: weak,
            });
        }
        answer
    }

    /// The read `id` got its slot and is about to be sent: callers join it from now on only
    /// while no change is counted.
    fn dispatch(&self, id: u64) {
        let changes = self.slots.changes.counted();
        if let Some(entry) = self.waiting.lock().iter_mut().find(|entry| entry.id == id) {
            entry.sent_after = Some(changes);
        }
        self.slots.count(self.kind, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(in_flight: usize, max_waiters: usize) -> ReadSlots {
        ReadSlots::new(ReadLimits {
            in_flight,
            max_waiters,
        })
    }

    #[tokio::test]
    async fn identical_reads_waiting_for_a_slot_share_one_answer() {
        let slots = slots(1, 16);
        let table = SharedReads::new(ReadKind::List, slots.clone());
        let held = slots.acquire().await;
        let runs = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..5)
            .map(|_| {
                let runs = runs.clone();
                let table = table.clone();
                tokio::spawn(async move {
                    table
                        .read(7u32, move |_slot| async move {
                            runs.fetch_add(1, Ordering::Relaxed) + 100
                        })
                        .await
                })
            })
            .collect();
        let mut totals = slots.watch_totals();
        totals
            .wait_for(|totals| totals.joined(ReadKind::List) == 4)
            .await
            .expect("the totals sender lives in `slots`");
        drop(held);
        for caller in callers {
            assert_eq!(caller.await.expect("the caller finishes"), 100);
        }
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert_eq!(slots.totals().dispatched(ReadKind::List), 1);
        assert_eq!(slots.totals().joined(ReadKind::Hints), 0);
    }

    #[tokio::test]
    async fn different_keys_and_full_reads_do_not_join() {
        let slots = slots(1, 2);
        let table = SharedReads::new(ReadKind::Stats, slots.clone());
        let held = slots.acquire().await;
        let callers: Vec<_> = [1u32, 1, 1, 2]
            .into_iter()
            .map(|key| {
                let table = table.clone();
                tokio::spawn(async move { table.read(key, move |_slot| async move { key }).await })
            })
            .collect();
        let mut totals = slots.watch_totals();
        // Key 1: a read with two callers, then a second read; key 2: its own read.
        totals
            .wait_for(|totals| totals.joined(ReadKind::Stats) == 1)
            .await
            .expect("the totals sender lives in `slots`");
        drop(held);
        let mut answers = Vec::new();
        for caller in callers {
            answers.push(caller.await.expect("the caller finishes"));
        }
        assert_eq!(answers, vec![1, 1, 1, 2]);
        assert_eq!(slots.totals().dispatched(ReadKind::Stats), 3);
        assert_eq!(slots.totals().joined(ReadKind::Stats), 1);
    }

    #[tokio::test]
    async fn a_sent_read_is_joined_until_a_change_is_counted() {
        let slots = slots(2, 16);
        let table = SharedReads::new(ReadKind::List, slots.clone());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(table.read(1u32, move |_slot| async move {
            let _ = released.await;
            10
        }));
        let mut totals = slots.watch_totals();
        totals
            .wait_for(|totals| totals.dispatched(ReadKind::List) == 1)
            .await
            .expect("the totals sender lives in `slots`");
        let joined = tokio::spawn(table.read(1u32, |_slot| async { 20 }));
        totals
            .wait_for(|totals| totals.joined(ReadKind::List) == 1)
            .await
            .expect("the totals sender lives in `slots`");
        slots.changes().count_one();
        // Joins or queues here, while the first read still runs.
        let after_change = table.read(1u32, |_slot| async { 30 });
        assert!(release.send(()).is_ok(), "the first read still runs");
        assert_eq!(first.await.expect("the caller finishes"), 10);
        assert_eq!(joined.await.expect("the caller finishes"), 10);
        assert_eq!(after_change.await, 30);
        assert_eq!(slots.totals().dispatched(ReadKind::List), 2);
        assert_eq!(slots.totals().joined(ReadKind::List), 1);
    }

    #[tokio::test]
    async fn a_read_whose_callers_left_is_not_joined() {
        let slots = slots(1, 16);
        let table = SharedReads::new(ReadKind::Hints, slots.clone());
        let held = slots.acquire().await;
        let left = table.read(3u32, |_slot| async { 1 });
        drop(left);
        drop(held);
        let answer = table.read(3u32, |_slot| async { 2 }).await;
        assert_eq!(answer, 2);
        assert_eq!(slots.totals().joined(ReadKind::Hints), 0);
    }
}
