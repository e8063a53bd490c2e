//! The controller: the one thread that orders everything the workers see.
//!
//! It receives [`Request`]s from tokio (ingest batches, queries) on a bounded channel, closes
//! ticks on a timer and whenever a query needs read-your-writes, rolls retention forward at
//! every epoch end (SPEC §2.3), and forwards [`Command`]s to the workers over bounded crossbeam
//! channels, unparking each worker after a send. A full worker channel blocks this thread,
//! which fills the request channel, which makes `Connect` stop reading: backpressure (SPEC §9.2).

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_dataflows::model::{Bucket, Tick};
use eddy_dataflows::queries::hints::HintsQuery;
use eddy_dataflows::queries::list::{ListPartial, ListQuery};
use eddy_dataflows::queries::sizes::ViewSizes;
use eddy_dataflows::queries::stats::{StatsQuery, StatsRow};
use tokio::sync::watch;

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::protocol::{Command, IngestBatch, Reply};

/// A request from the tokio side to the controller.
#[derive(Debug)]
pub enum Request {
    /// Records to insert; nothing comes back.
    Ingest(IngestBatch),
    /// A List; every worker replies once on `reply`.
    List(Arc<ListQuery>, Reply<ListPartial>),
    /// A FilterHints; every worker replies once on `reply`.
    Hints(Arc<HintsQuery>, Reply<Vec<u32>>),
    /// A Statistics; every worker replies once on `reply`.
    Stats(Arc<StatsQuery>, Reply<Vec<StatsRow>>),
    /// A barrier; every worker replies once on `reply` when all earlier requests are reflected.
    Sync(Reply<()>),
    /// View sizes; every worker replies once on `reply` with its live row counts.
    Sizes(Reply<ViewSizes>),
}

/// The controller's state.
pub struct Controller {
    workers: Vec<Sender<Command>>,
    threads: Vec<Thread>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    tick_interval: Duration,
    epochs: watch::Sender<Bucket>,
    tick: Tick,
    next_worker: usize,
    floor: Bucket,
}

impl Controller {
    /// A controller for these workers, starting at tick 0.
    pub fn new(
        workers: Vec<Sender<Command>>,
        threads: Vec<Thread>,
        clock: Arc<dyn Clock>,
        retention: Retention,
        tick_interval: Duration,
        epochs: watch::Sender<Bucket>,
    ) -> Self {
        Controller {
            workers,
            threads,
            clock,
            retention,
            tick_interval,
            epochs,
            tick: 0,
            next_worker: 0,
            floor: Bucket::MIN,
        }
    }

    /// Serves requests until every sender is gone, then returns (dropping the worker channels,
    /// which stops the workers).
    pub fn run(mut self, requests: flume::Receiver<Request>) {
        let mut next_tick = Instant::now() + self.tick_interval;
        loop {
            let request = requests.recv_deadline(next_tick);
            self.roll_retention();
            match request {
                Ok(request) => self.handle(request),
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.close_tick();
                    next_tick = Instant::now() + self.tick_interval;
                }
                Err(flume::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Ingest(batch) => {
                let worker = self.next_worker;
                self.next_worker = (self.next_worker + 1) % self.workers.len();
                self.send(worker, Command::Ingest(Arc::new(batch)));
            }
            Request::Stats(query, reply) => {
                let as_of = self.close_tick();
                self.broadcast(Command::Stats {
                    as_of,
                    query,
                    reply,
                });
            }
            Request::List(query, reply) => {
                let as_of = self.close_tick();
                self.broadcast(Command::List {
                    as_of,
                    query,
                    reply,
                });
            }
            Request::Hints(query, reply) => {
                let as_of = self.close_tick();
                self.broadcast(Command::Hints {
                    as_of,
                    query,
                    reply,
                });
            }
            Request::Sync(reply) => {
                let as_of = self.close_tick();
                self.broadcast(Command::Sync { as_of, reply });
            }
            Request::Sizes(reply) => {
                let as_of = self.close_tick();
                self.broadcast(Command::Sizes { as_of, reply });
            }
        }
    }

    /// Closes the open tick and returns it: everything sent so far is at or before it.
    fn close_tick(&mut self) -> Tick {
        let closed = self.tick;
        self.tick += 1;
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
            self.broadcast(Command::Expire { as_of, floor });
            self.epochs.send_replace(self.retention.bucket_of(now));
        }
    }

    fn broadcast(&self, command: Command) {
        for worker in 0..self.workers.len() {
            self.send(worker, command.clone());
        }
    }

    fn send(&self, worker: usize, command: Command) {
        // A closed worker channel means the worker thread ended; shutdown handles that.
        let _ = self.workers[worker].send(command);
        self.threads[worker].unpark();
    }
}
