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
use tokio::sync::watch;

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::protocol::{Command, IngestBatch};

/// A request from the tokio side to the controller.
#[derive(Debug)]
pub enum Request {
    /// Records to insert, sent to one worker; nothing comes back.
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
            Request::Read(mut command) => {
                let tick = self.close_tick();
                if let Some(as_of) = command.as_of_mut() {
                    *as_of = tick;
                }
                self.broadcast(command);
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
