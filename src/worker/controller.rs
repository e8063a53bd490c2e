//! The controller: the one thread that orders everything the workers see.
//!
//! It receives [`Request`]s from tokio on two bounded channels ([`Inbox`]): the ordered one
//! (ingest batches, and reads that must come after everything sent before them: Sync, Sizes,
//! UsedIds, the stream hub's Lists) and the query one (List, FilterHints, Statistics). It
//! closes ticks on a timer, when a query needs read-your-writes, and when a tick holds
//! `tick_records` records; rolls retention forward at every epoch end (SPEC §2.3); and
//! forwards [`Command`]s to the workers over bounded crossbeam channels, unparking each
//! worker after a send.
//!
//! Queries do not wait behind ingest (issue 10): the controller takes ingest only while every
//! closed tick is reflected in the views ([`Progress`]), so at most one tick of ingest (the
//! open one, or the closed one the workers are finishing) is ever ahead of a query; for a while
//! after a query a tick holds at most one gathered batch ([`Pacing::records_per_tick`]). Ingest
//! held back waits in the ordered channel; once it is full `Connect` stops reading and
//! receipts wait: backpressure (SPEC §9.2), not a backlog in front of reads. A query may pass
//! ingest that waits in the channel: that ingest was not taken, so nothing of it is receipted,
//! and read-your-writes (SPEC §9.1) needs only what was receipted before the query was sent.
//! A query that finds the open tick empty does not close it: it reads as of the last closed
//! tick, so queries arriving together share one tick.
//!
//! Ingest batches waiting in the ordered channel are gathered into one batch of up to
//! [`FORWARD_RECORDS`] records before the workers owning its flows get it (each inserts the flows
//! it owns), so under load many small batches (Felix sends one update at a time) cost one
//! wake-up per owning worker, not one each; once the channel is empty the gathered batch goes at once, since its
//! callers wait until every owning worker takes it before they receipt (SPEC §12.8). The gathered
//! batch is bounded by `FORWARD_RECORDS` plus one incoming batch.
//!
//! A worker whose channel is closed has died: the controller reports the fault and stops,
//! which closes the request channels, so no later batch is accepted.

use std::sync::Arc;
use std::thread::Thread;
use std::time::Instant;

use crossbeam_channel::Sender;
use eddy_dataflows::model::{Bucket, Tick};
use flume::Selector;
use tokio::sync::{oneshot, watch};

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::pacing::Pacing;
use crate::worker::progress::Progress;
use crate::worker::protocol::{Command, IngestBatch, RoutedBatch, Taken};
use crate::worker::shared_reads::ViewChanges;

/// Records gathered before they are forwarded to the workers.
pub const FORWARD_RECORDS: usize = 4096;

/// Records one tick holds by default before the controller closes it.
pub const TICK_RECORDS: usize = 32_768;

/// The channels the controller serves.
pub struct Inbox {
    /// Ingest and the reads that keep their place behind it.
    pub ordered: flume::Receiver<Request>,
    /// Queries, which pass ingest not yet taken.
    pub queries: flume::Receiver<Request>,
    /// Wakes the controller when a worker's views advanced.
    pub progress: flume::Receiver<()>,
}

/// What woke the controller.
enum Event {
    Request(Request),
    /// A request from the query channel.
    Query(Request),
    /// A worker advanced, or the query channel closed: look again.
    Progress,
    QueriesClosed,
    /// Every sender of the ordered channel is gone.
    Closed,
    Timeout,
}

/// A request from the tokio side to the controller.
#[derive(Debug)]
pub enum Request {
    /// Records to insert, gathered with others and sent to the workers owning them; the sender
    /// is told once each of those took them, and dropped unanswered if one will not.
    Ingest(IngestBatch, oneshot::Sender<()>),
    /// A read (List, FilterHints, Statistics, Sync, Sizes, UsedIds) for every worker. The
    /// controller sets the command's `as_of` to the last closed tick, closing the open tick
    /// first if anything was forwarded in it, so the read sees everything forwarded before
    /// it; each worker replies once on the command's reply channel.
    Read(Command),
}

/// What the controller tells the tokio side as it goes.
pub struct Announcements {
    /// The current bucket, sent at every epoch end once its expiry was sent to the workers.
    pub epochs: watch::Sender<Bucket>,
    /// The changes forwarded to the workers, each counted before it is sent.
    pub changes: Arc<ViewChanges>,
}

/// The controller's state.
pub struct Controller {
    workers: Vec<Sender<Command>>,
    threads: Vec<Thread>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    pacing: Pacing,
    progress: Arc<Progress>,
    epochs: watch::Sender<Bucket>,
    /// Counted before each ingest batch or expiry is sent: shared reads join a running read
    /// only while it has not moved.
    changes: Arc<ViewChanges>,
    tick: Tick,
    /// Records forwarded in the open tick.
    open_records: usize,
    /// Whether anything was forwarded in the open tick (records, rules or an expiry).
    open_used: bool,
    floor: Bucket,
    gathered: Option<(IngestBatch, Vec<oneshot::Sender<()>>)>,
    dead_worker: Option<usize>,
    /// When the latest query arrived: ticks are smaller for a while after one.
    last_query: Option<Instant>,
}

impl Controller {
    /// A controller for these workers, starting at tick 0.
    pub fn new(
        workers: Vec<Sender<Command>>,
        threads: Vec<Thread>,
        clock: Arc<dyn Clock>,
        retention: Retention,
        pacing: Pacing,
        progress: Arc<Progress>,
        announcements: Announcements,
    ) -> Self {
        let Announcements { epochs, changes } = announcements;
        Controller {
            workers,
            threads,
            clock,
            retention,
            pacing,
            progress,
            epochs,
            changes,
            tick: 0,
            open_records: 0,
            open_used: false,
            floor: Bucket::MIN,
            gathered: None,
            dead_worker: None,
            last_query: None,
        }
    }

    /// Serves requests until every sender is gone, then returns (dropping the worker channels,
    /// which stops the workers). Returns the cause if a worker died first.
    pub fn run(mut self, inbox: Inbox) -> Result<(), String> {
        let mut next_tick = Instant::now() + self.pacing.tick_interval;
        let mut queries_open = true;
        // Whether the last wait ended with nothing to do: the controller is idle.
        let mut idle = false;
        loop {
            self.roll_retention();
            if idle {
                crate::memory_return::thread_idle();
            }
            let event = self.next_event(&inbox, queries_open, next_tick);
            idle = matches!(event, Event::Timeout);
            match event {
                Event::Request(request) => self.handle(request),
                Event::Query(request) => {
                    self.last_query = Some(Instant::now());
                    self.handle(request);
                }
                Event::Progress | Event::Timeout => {}
                Event::QueriesClosed => queries_open = false,
                Event::Closed => {
                    self.forward_gathered();
                    return self.health();
                }
            }
            if inbox.ordered.is_empty() || !self.takes_ingest() {
                self.forward_gathered();
            }
            let now = Instant::now();
            let since_query = self.last_query.map(|at| now.saturating_duration_since(at));
            if self.open_records >= self.pacing.records_per_tick(since_query) {
                self.close_tick();
            }
            // Checked after every request too: steady ingest must not hold a tick open.
            if now >= next_tick {
                self.close_tick();
                next_tick = now + self.pacing.tick_interval;
            }
            self.health()?;
        }
    }

    /// The next thing to do: a query first, then ingest if the engine has caught up, else
    /// waits for either, for a worker's progress or for the next tick.
    fn next_event(&self, inbox: &Inbox, queries_open: bool, deadline: Instant) -> Event {
        if let Ok(query) = inbox.queries.try_recv() {
            return Event::Query(query);
        }
        let takes_ingest = self.takes_ingest();
        if takes_ingest {
            if let Ok(request) = inbox.ordered.try_recv() {
                return Event::Request(request);
            }
        }
        let mut selector = Selector::new().recv(&inbox.progress, |_| Event::Progress);
        if queries_open {
            selector = selector.recv(&inbox.queries, |query| match query {
                Ok(query) => Event::Query(query),
                Err(_) => Event::QueriesClosed,
            });
        }
        if takes_ingest || !queries_open {
            selector = selector.recv(&inbox.ordered, |request| match request {
                Ok(request) => Event::Request(request),
                Err(_) => Event::Closed,
            });
        }
        selector.wait_deadline(deadline).unwrap_or(Event::Timeout)
    }

    /// Whether ingest may be forwarded now: every closed tick is reflected in the views, so
    /// what is forwarded lands in the only tick a query may have to wait for.
    fn takes_ingest(&self) -> bool {
        self.progress.reflected() >= self.tick
    }

    /// Whether every worker still takes commands.
    fn health(&self) -> Result<(), String> {
        match self.dead_worker {
            None => Ok(()),
            Some(worker) => Err(format!("worker {worker} no longer takes commands")),
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Ingest(batch, taken) => {
                let gathered = match self.gathered.take() {
                    None => {
                        let mut batch = batch;
                        let room = FORWARD_RECORDS.saturating_sub(batch.records.len());
                        batch.records.reserve(room);
                        (batch, vec![taken])
                    }
                    Some((mut gathered, mut callers)) => {
                        gathered.records.extend(batch.records);
                        gathered.trace_rules.extend(batch.trace_rules);
                        gathered.retired_rules.extend(batch.retired_rules);
                        callers.push(taken);
                        (gathered, callers)
                    }
                };
                let full = gathered.0.records.len() >= FORWARD_RECORDS;
                self.gathered = Some(gathered);
                if full {
                    self.forward_gathered();
                }
            }
            Request::Read(mut command) => {
                let tick = if self.open_used || self.tick == 0 {
                    self.close_tick()
                } else {
                    self.tick - 1
                };
                if let Some(as_of) = command.as_of_mut() {
                    *as_of = tick;
                }
                self.broadcast(command);
            }
        }
    }

    /// Sends the gathered ingest batch, if any, to the workers that own a flow or a trace in
    /// it: each inserts what it owns, and the callers are told once all of them took it.
    fn forward_gathered(&mut self) {
        if let Some((batch, callers)) = self.gathered.take() {
            self.open_records += batch.records.len();
            self.open_used = true;
            let routed = Arc::new(RoutedBatch::new(batch, self.workers.len()));
            self.changes.count_one();
            let taken = Taken::new(callers, routed.takers.len());
            if routed.takers.is_empty() {
                // Nothing to insert: the callers' updates were all skipped before the engine.
                taken.fire();
            }
            for &worker in &routed.takers {
                self.send(worker, Command::Ingest(routed.clone(), taken.clone()));
            }
        }
    }

    /// Closes the open tick and returns it: everything received so far is at or before it.
    fn close_tick(&mut self) -> Tick {
        self.forward_gathered();
        let closed = self.tick;
        self.tick += 1;
        self.open_records = 0;
        self.open_used = false;
        self.broadcast(Command::Advance(self.tick));
        closed
    }

    /// At an epoch end, moves the retention floor, has every worker retract what fell out,
    /// and announces the new current bucket to whoever watches epochs (live streams).
    fn roll_retention(&mut self) {
        let now = self.clock.now();
        let floor = self.retention.oldest(now);
        if floor > self.floor {
            self.floor = floor;
            let as_of = self.close_tick();
            self.changes.count_one();
            self.broadcast(Command::Expire { as_of, floor });
            // The retraction lands in a later tick: the next query closes the open one.
            self.open_used = true;
            self.epochs.send_replace(self.retention.bucket_of(now));
        }
    }

    fn broadcast(&mut self, command: Command) {
        for worker in 0..self.workers.len() {
            self.send(worker, command.clone());
        }
    }

    /// Sends `command` to `worker`; a closed channel means the worker died, which [`run`]
    /// reports. The unsent command is dropped, so its callers are answered with an error.
    ///
    /// [`run`]: Controller::run
    fn send(&mut self, worker: usize, command: Command) {
        if self.workers[worker].send(command).is_err() {
            self.dead_worker.get_or_insert(worker);
        }
        self.threads[worker].unpark();
    }
}
