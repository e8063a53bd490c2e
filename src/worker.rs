//! The engine: timely workers holding the views, the controller thread that orders their
//! commands, and the async handle the gRPC services use.
//!
//! ```text
//! tokio tasks --Request (flume, bounded: ordered, queries)--> controller thread
//!     --Command (crossbeam, bounded, then unpark)--> timely worker i
//!     --reply (tokio mpsc, one slot per worker)--> the waiting tokio task
//! ```
//!
//! An ingest batch counts as handed over once a worker took it (its `Taken` signal). If a
//! worker or the controller dies ([`fault`]), every waiting and later call fails with
//! [`EngineStopped`], so nothing is receipted that no worker holds and no read hangs.

pub mod clock;
pub mod controller;
pub mod event_loop;
pub mod fault;
pub mod pacing;
pub mod progress;
pub mod protocol;
pub mod shared_reads;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use eddy_dataflows::model::Bucket;
use eddy_dataflows::queries::hints::HintsQuery;
use eddy_dataflows::queries::list::{ListPartial, ListQuery};
use eddy_dataflows::queries::sizes::ViewSizes;
use eddy_dataflows::queries::stats::{StatsQuery, StatsRow};
use eddy_dataflows::queries::used_ids::{IdMarks, UsedIds};
use eddy_dataflows::views::registry::{Row, ViewChanges, ViewQuery, Watch};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::controller::{Announcements, Controller, Inbox, Request};
use crate::worker::fault::{FaultInjection, Faults, InjectedFault, ThreadSentinel};
use crate::worker::pacing::{BulkLoad, Pacing, TickRecords};
use crate::worker::progress::Progress;
use crate::worker::protocol::{Command, IngestBatch, Reply};
use crate::worker::shared_reads::{ReadLimits, ReadSlots};

/// How many commands may wait in one worker's channel.
pub const WORKER_QUEUE: usize = 256;
/// How many requests may wait for the controller on each of its channels.
pub const CONTROLLER_QUEUE: usize = 1024;

/// How the engine is laid out and timed.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Number of timely worker threads.
    pub workers: usize,
    /// Window and retention.
    pub retention: Retention,
    /// How often the controller closes a tick when nothing else does.
    pub tick_interval: Duration,
    /// Records after which the controller closes a tick: at most this much ingest (plus one
    /// gathered batch) is ever ahead of a query.
    pub tick_records: usize,
    /// A fault to inject (tests of the fault path only).
    pub fault_injection: Option<FaultInjection>,
}

/// Counters the engine keeps about itself.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Records that reached a worker after their bucket had left retention.
    pub dropped_below_floor: AtomicU64,
}

/// A used-ids read on its way: see [`Engine::ask_used_ids`].
pub struct UsedIdsRead {
    engine: Engine,
    marks: IdMarks,
    answers: mpsc::Receiver<UsedIds>,
}

impl UsedIdsRead {
    /// The ids used on any worker.
    pub async fn gather(self) -> Result<UsedIds, EngineStopped> {
        let mut used = UsedIds::below(self.marks);
        for part in &self.engine.gather(self.answers).await? {
            used.union(part);
        }
        Ok(used)
    }
}

/// An ingest batch in the engine's ordered queue: see [`Engine::enqueue`].
pub struct Queued<'a> {
    engine: &'a Engine,
    /// Fired once every worker the batch was sent to took it; `None` for an empty batch.
    taken: Option<oneshot::Receiver<()>>,
}

impl Queued<'_> {
    /// Waits until every worker the batch went to took it. Once this returns, any later query
    /// sees it; if it fails, no worker holds the batch.
    pub async fn taken(self) -> Result<(), EngineStopped> {
        let Some(taken_by_worker) = self.taken else {
            return self.engine.running();
        };
        tokio::select! {
            taken = taken_by_worker => taken.map_err(|_| EngineStopped),
            _ = self.engine.failed() => Err(EngineStopped),
        }
    }
}

/// The engine stopped: its threads are gone, or one of them failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the dataflow engine is not running")]
pub struct EngineStopped;

/// The handle the services use. Cheap to clone; the engine stops when the last clone and
/// [`Engine::shutdown`] are done.
#[derive(Clone)]
pub struct Engine {
    requests: flume::Sender<Request>,
    queries: flume::Sender<Request>,
    workers: usize,
    counters: Arc<EngineCounters>,
    epochs: watch::Receiver<Bucket>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    faults: Faults,
    read_slots: ReadSlots,
    tick_records: Arc<TickRecords>,
}

impl Engine {
    /// Starts the workers and the controller.
    pub fn start(config: EngineConfig, clock: Arc<dyn Clock>) -> Result<Engine, String> {
        let workers = config.workers.max(1);
        let counters = Arc::new(EngineCounters::default());
        let mut senders = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (sender, receiver) = crossbeam_channel::bounded(WORKER_QUEUE);
            senders.push(sender);
            receivers.push(Some(receiver));
        }
        let receivers = Arc::new(Mutex::new(receivers));
        let (thread_tx, thread_rx) = std::sync::mpsc::channel();
        let worker_counters = counters.clone();
        let faults = Faults::default();
        let worker_faults = faults.clone();
        let injected = Arc::new(InjectedFault::new(config.fault_injection));
        let (progress, woken) = Progress::new(workers);
        let progress = Arc::new(progress);
        let worker_progress = progress.clone();
        let mut timely_config = timely::Config::process(workers);
        differential_dataflow::configure(
            &mut timely_config.worker,
            &differential_dataflow::Config::default().idle_merge_effort(Some(1000)),
        );
        let guards = timely::execute(timely_config, move |worker| {
            let index = worker.index();
            let sentinel = ThreadSentinel::new(worker_faults.clone(), format!("worker {index}"));
            let receiver = receivers.lock()[index]
                .take()
                .expect("each worker index takes its command channel exactly once");
            let _ = thread_tx.send((index, std::thread::current()));
            event_loop::run(
                worker,
                receiver,
                &worker_counters,
                &worker_progress,
                &injected,
            );
            sentinel.finished();
        })?;
        let mut threads = vec![None; workers];
        for _ in 0..workers {
            let (index, thread) = thread_rx
                .recv()
                .map_err(|_| "a timely worker ended before it started".to_string())?;
            threads[index] = Some(thread);
        }
        let threads: Vec<_> = threads.into_iter().flatten().collect();
        let (requests, ordered) = flume::bounded(CONTROLLER_QUEUE);
        let (queries, query_inbox) = flume::bounded(CONTROLLER_QUEUE);
        let inbox = Inbox {
            ordered,
            queries: query_inbox,
            progress: woken,
        };
        let (epoch_tx, epochs) = watch::channel(config.retention.bucket_of(clock.now()));
        let read_slots = ReadSlots::new(ReadLimits::default());
        let tick_records = Arc::new(TickRecords::new(config.tick_records));
        let controller = Controller::new(
            senders,
            threads,
            clock,
            config.retention,
            Pacing {
                tick_interval: config.tick_interval,
                tick_records: tick_records.clone(),
            },
            progress,
            Announcements {
                epochs: epoch_tx,
                changes: read_slots.changes(),
            },
        );
        let sentinel = ThreadSentinel::new(faults.clone(), "the controller".into());
        let controller_thread = std::thread::Builder::new()
            .name("eddy-controller".into())
            .spawn(move || match controller.run(inbox) {
                Ok(()) => sentinel.finished(),
                Err(cause) => sentinel.fail(cause),
            })
            .map_err(|e| format!("cannot start the controller thread: {e}"))?;
        let timely_thread = std::thread::Builder::new()
            .name("eddy-timely-join".into())
            .spawn(move || drop(guards))
            .map_err(|e| format!("cannot start the worker join thread: {e}"))?;
        Ok(Engine {
            requests,
            queries,
            workers,
            counters,
            epochs,
            threads: Arc::new(Mutex::new(vec![controller_thread, timely_thread])),
            faults,
            read_slots,
            tick_records,
        })
    }

    /// Closes ticks at [`pacing::BULK_TICK_RECORDS`] records rather than the configured
    /// number until the guard is dropped: for a bulk load no call waits on (recovery), where
    /// fewer, larger ticks cost the views less per record. One bulk load at a time.
    pub fn bulk_load(&self) -> BulkLoad {
        BulkLoad::start(self.tick_records.clone())
    }

    /// The cause of the engine's first fault, if a worker or the controller died.
    pub fn fault(&self) -> Option<String> {
        self.faults.first()
    }

    /// Waits until a worker or the controller dies and returns the cause.
    pub async fn failed(&self) -> String {
        self.faults.occurred().await
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Watches the current bucket: changes at every epoch end, once that epoch's retention
    /// change has been sent to the workers.
    pub fn epochs(&self) -> watch::Receiver<Bucket> {
        self.epochs.clone()
    }

    /// This engine with its queries' reads shared under `limits` (default:
    /// [`ReadLimits::default`]). Call before cloning the handle.
    pub fn with_read_limits(mut self, limits: ReadLimits) -> Self {
        self.read_slots = self.read_slots.with_limits(limits);
        self
    }

    /// The dispatch slots the queries' shared reads take, and their totals.
    pub fn read_slots(&self) -> &ReadSlots {
        &self.read_slots
    }

    /// The engine's own counters.
    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// Hands a batch to the engine and waits until a worker took it. Once this returns, any
    /// later query sees it; if it fails, no worker holds the batch.
    pub async fn ingest(&self, batch: IngestBatch) -> Result<(), EngineStopped> {
        self.enqueue(batch).await?.taken().await
    }

    /// Puts a batch in the engine's ordered queue and returns once it is there, before any
    /// worker took it: every batch and ordered read sent after this returns comes after it.
    /// Callers that must keep batches in order (trace rules before the records using them, the
    /// log's order) hold their lock only this long; [`Queued::taken`] then waits for the
    /// workers without holding back the next batch.
    pub async fn enqueue(&self, batch: IngestBatch) -> Result<Queued<'_>, EngineStopped> {
        if batch.records.is_empty()
            && batch.trace_rules.is_empty()
            && batch.retired_rules.is_empty()
        {
            return Ok(Queued {
                engine: self,
                taken: None,
            });
        }
        let (taken, taken_by_worker) = oneshot::channel();
        self.send(Request::Ingest(batch, taken)).await?;
        Ok(Queued {
            engine: self,
            taken: Some(taken_by_worker),
        })
    }

    /// Whether no worker or controller has died.
    fn running(&self) -> Result<(), EngineStopped> {
        match self.faults.first() {
            None => Ok(()),
            Some(_) => Err(EngineStopped),
        }
    }

    /// Runs a Statistics on every worker and returns their rows. Sees every update receipted
    /// before the call (SPEC §9.1), without waiting behind ingest not yet taken.
    pub async fn stats(&self, query: StatsQuery) -> Result<Vec<Vec<StatsRow>>, EngineStopped> {
        let query = Arc::new(query);
        self.query(|reply| Command::Stats {
            as_of: 0,
            query,
            reply,
        })
        .await
    }

    /// Runs a List on every worker and returns their partial answers. Sees every update
    /// receipted before the call (SPEC §9.1), without waiting behind ingest not yet taken.
    pub async fn list_receipted(
        &self,
        query: ListQuery,
    ) -> Result<Vec<ListPartial>, EngineStopped> {
        let query = Arc::new(query);
        self.query(|reply| Command::List {
            as_of: 0,
            query,
            reply,
        })
        .await
    }

    /// Runs a List on every worker, behind everything handed to the engine before it, and
    /// returns their partial answers.
    pub async fn list(&self, query: ListQuery) -> Result<Vec<ListPartial>, EngineStopped> {
        let query = Arc::new(query);
        self.read(|reply| Command::List {
            as_of: 0,
            query,
            reply,
        })
        .await
    }

    /// Runs a FilterHints on every worker and returns their distinct value ids. Sees every
    /// update receipted before the call (SPEC §9.1), without waiting behind ingest not yet
    /// taken.
    pub async fn hints(&self, query: HintsQuery) -> Result<Vec<Vec<u32>>, EngineStopped> {
        let query = Arc::new(query);
        self.query(|reply| Command::Hints {
            as_of: 0,
            query,
            reply,
        })
        .await
    }

    /// Reads the registered view numbered `view` (its index in `views::REGISTERED`) on every
    /// worker and merges their rows: one consistent tick for every worker. Sees every update
    /// receipted before the call (SPEC §9.1), without waiting behind ingest not yet taken.
    pub async fn read_view(
        &self,
        view: usize,
        query: ViewQuery,
    ) -> Result<Vec<Row>, EngineStopped> {
        let query = Arc::new(query);
        let parts = self
            .query(|reply| Command::View {
                as_of: 0,
                view,
                query: query.clone(),
                reply,
            })
            .await?;
        Ok(query.merge(parts))
    }

    /// Asks every worker for the rows of the registered view numbered `view` that changed
    /// since its last watch (rows one per bucket, each `window` long), and with
    /// [`Watch::Snapshot`] for every row: one answer per worker, each complete up to the ticks
    /// that worker reflects, and seeing every update receipted before the call.
    pub async fn view_changes(
        &self,
        view: usize,
        watch: Watch,
        window: i64,
    ) -> Result<Vec<ViewChanges>, EngineStopped> {
        self.query(|reply| Command::ViewChanges {
            as_of: 0,
            view,
            watch,
            window,
            reply,
        })
        .await
    }

    /// Waits until everything handed to the engine so far, and any retention change it
    /// caused, is reflected in every view.
    pub async fn sync(&self) -> Result<(), EngineStopped> {
        self.read(|reply| Command::Sync { as_of: 0, reply })
            .await
            .map(drop)
    }

    /// Counts the live rows of every view, summed over the workers. Walks every view once:
    /// for metrics, not for a hot path.
    pub async fn sizes(&self) -> Result<ViewSizes, EngineStopped> {
        let mut total = ViewSizes::default();
        for part in self
            .read(|reply| Command::Sizes { as_of: 0, reply })
            .await?
        {
            total.add(&part);
        }
        Ok(total)
    }

    /// Asks every worker which string, label-set and trace ids below `marks` the retained
    /// flows use. Returns once the read is queued behind everything handed to the engine so
    /// far; the answer (walking the flows view once: for the catalog collector, once per
    /// epoch) comes from [`UsedIdsRead::gather`].
    pub async fn ask_used_ids(&self, marks: IdMarks) -> Result<UsedIdsRead, EngineStopped> {
        let (reply, answers) = mpsc::channel(self.workers);
        self.send(Request::Read(Command::UsedIds {
            as_of: 0,
            marks,
            reply,
        }))
        .await?;
        Ok(UsedIdsRead {
            engine: self.clone(),
            marks,
            answers,
        })
    }

    /// Sends a read to every worker (the controller sets its tick) and gathers one answer
    /// from each.
    async fn read<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Vec<T>, EngineStopped> {
        let (reply, answers) = mpsc::channel(self.workers);
        self.send(Request::Read(command(reply))).await?;
        self.gather(answers).await
    }

    /// Sends a query to every worker on the query channel, which passes ingest not yet taken,
    /// and gathers one answer from each.
    async fn query<T>(
        &self,
        command: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Vec<T>, EngineStopped> {
        let (reply, answers) = mpsc::channel(self.workers);
        self.running()?;
        tokio::select! {
            sent = self.queries.send_async(Request::Read(command(reply))) => {
                sent.map_err(|_| EngineStopped)?;
            }
            _ = self.failed() => return Err(EngineStopped),
        }
        self.gather(answers).await
    }

    /// How many requests (mostly ingest batches) wait for the controller.
    pub fn queued_requests(&self) -> usize {
        self.requests.len()
    }

    async fn send(&self, request: Request) -> Result<(), EngineStopped> {
        self.running()?;
        tokio::select! {
            sent = self.requests.send_async(request) => sent.map_err(|_| EngineStopped),
            _ = self.failed() => Err(EngineStopped),
        }
    }

    /// One answer from each worker; fails as soon as the engine has a fault, since a dead
    /// worker's frontier never advances and the live workers would never answer.
    async fn gather<T>(&self, mut answers: mpsc::Receiver<T>) -> Result<Vec<T>, EngineStopped> {
        let mut parts = Vec::with_capacity(self.workers);
        while parts.len() < self.workers {
            let answer = tokio::select! {
                answer = answers.recv() => answer.ok_or(EngineStopped)?,
                _ = self.failed() => return Err(EngineStopped),
            };
            parts.push(answer);
        }
        Ok(parts)
    }

    /// How many records reached a worker after leaving retention.
    pub fn dropped_below_floor(&self) -> u64 {
        self.counters.dropped_below_floor.load(Ordering::Relaxed)
    }

    /// Stops the engine once every other handle is dropped: closes the request channel and
    /// waits for the controller and the workers to finish what they were sent.
    pub fn shutdown(self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        drop(self);
        for thread in threads {
            let _ = thread.join();
        }
    }
}
