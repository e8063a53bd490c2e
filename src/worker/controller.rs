//! The controller: the one thread that orders everything the workers see.
//!
//! It receives [`Request`]s from tokio (ingest batches, queries) on a bounded channel, closes
//! ticks on a timer and whenever a query needs read-your-writes, rolls retention forward at
//! every epoch end (SPEC §2.3), and forwards [`Command`]s to the workers over bounded crossbeam
//! channels, unparking each worker after a send. A full worker channel blocks this thread,
//! which fills the request channel, which makes `Connect` stop reading: backpressure (SPEC §9.2).
//!
//! Ingest batches are gathered into one batch of at least [`FORWARD_RECORDS`] records (or
//! whatever arrived before the tick closes) before one worker gets them, so many small
//! batches (Felix sends one update at a time) cost one worker wake-up, not one each. The
//! gathered batch is bounded by `FORWARD_RECORDS` plus one incoming batch.

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_dataflows::model::{Bucket, Tick};
use tokio::sync::watch;

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::protocol::{Command, IngestBatch};

/// Records gathered before they are forwarded to a worker.
pub const FORWARD_RECORDS: usize = 4096;

/// A request from the tokio side to the controller.
#[derive(Debug)]
pub enum Request {
    /// Records to insert, gathered with others and sent to one worker; nothing comes back.
    Ingest(IngestBatch),
    /// A read (List, FilterHints, Statistics, Sync, Sizes) for every worker. The controller
    /// closes the open tick and sets the command's `as_of` to it, so the read sees everything
    /// sent before it; each worker replies once on the command's reply channel.
    Read(Command),
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
    gathered: Option<IngestBatch>,
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
            gathered: None,
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
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => {
                    self.forward_gathered();
                    return;
                }
            }
            // Checked after every request too: steady ingest must not hold a tick open.
            if Instant::now() >= next_tick {
                self.close_tick();
                next_tick = Instant::now() + self.tick_interval;
            }
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Ingest(batch) => {
                let gathered = match self.gathered.take() {
                    None => {
                        let mut batch = batch;
                        let room = FORWARD_RECORDS.saturating_sub(batch.records.len());
                        batch.records.reserve(room);
                        batch
                    }
                    Some(mut gathered) => {
                        gathered.records.extend(batch.records);
                        gathered.trace_rules.extend(batch.trace_rules);
                        gathered.retired_rules.extend(batch.retired_rules);
                        gathered
                    }
                };
                let full = gathered.records.len() >= FORWARD_RECORDS;
                self.gathered = Some(gathered);
                if full {
                    self.forward_gathered();
                }
            }
            Request::Read(mut command) => {
                let tick = self.close_tick();
                if let Some(as_of) = command.as_of_mut() {
                    *as_of = tick;
                }
                self.broadcast(command);
            }
        }
    }

    /// Sends the gathered ingest batch, if any, to the next worker in turn.
    fn forward_gathered(&mut self) {
        if let Some(batch) = self.gathered.take() {
            let worker = self.next_worker;
            self.next_worker = (self.next_worker + 1) % self.workers.len();
            self.send(worker, Command::Ingest(Arc::new(batch)));
        }
    }

    /// Closes the open tick and returns it: everything received so far is at or before it.
    fn close_tick(&mut self) -> Tick {
        self.forward_gathered();
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
