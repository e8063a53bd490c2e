//! The controller: the one thread that orders everything the workers see.
//!
//! It receives [`Request`]s from tokio (ingest batches, queries) on a bounded channel, closes
//! ticks on a timer and whenever a query needs read-your-writes, rolls retention forward at
//! every epoch end (SPEC §2.3), and forwards [`Command`]s to the workers over bounded crossbeam
//! channels, unparking each worker after a send. A full worker channel blocks this thread,
//! which fills the request channel, which makes `Connect` stop reading: backpressure (SPEC §9.2).
//!
//! Ingest batches waiting in the request channel are gathered into one batch of up to
//! [`FORWARD_RECORDS`] records before every worker gets it (each inserts the flows it owns), so
//! under load many small batches (Felix sends one update at a time) cost one wake-up per
//! worker, not one each; once the channel is empty the gathered batch goes at once, since its
//! callers wait until every worker takes it before they receipt (SPEC §12.8). The gathered batch is bounded by `FORWARD_RECORDS` plus
//! one incoming batch.
//!
//! A worker whose channel is closed has died: the controller reports the fault and stops,
//! which closes the request channel, so no later batch is accepted.

use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use eddy_dataflows::model::{Bucket, Tick};
use tokio::sync::{oneshot, watch};

use crate::retention::Retention;
use crate::worker::clock::Clock;
use crate::worker::protocol::{Command, IngestBatch, Taken};

/// Records gathered before they are forwarded to the workers.
pub const FORWARD_RECORDS: usize = 4096;

/// A request from the tokio side to the controller.
#[derive(Debug)]
pub enum Request {
    /// Records to insert, gathered with others and sent to every worker; the sender is told
    /// once every worker took them, and dropped unanswered if one will not.
    Ingest(IngestBatch, oneshot::Sender<()>),
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
    floor: Bucket,
    gathered: Option<(IngestBatch, Vec<oneshot::Sender<()>>)>,
    dead_worker: Option<usize>,
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
            floor: Bucket::MIN,
            gathered: None,
            dead_worker: None,
        }
    }

    /// Serves requests until every sender is gone, then returns (dropping the worker channels,
    /// which stops the workers). Returns the cause if a worker died first.
    pub fn run(mut self, requests: flume::Receiver<Request>) -> Result<(), String> {
        let mut next_tick = Instant::now() + self.tick_interval;
        loop {
            let request = requests.recv_deadline(next_tick);
            self.roll_retention();
            match request {
                Ok(request) => self.handle(request),
                Err(flume::RecvTimeoutError::Timeout) => {}
                Err(flume::RecvTimeoutError::Disconnected) => {
                    self.forward_gathered();
                    return self.health();
                }
            }
            if requests.is_empty() {
                self.forward_gathered();
            }
            // Checked after every request too: steady ingest must not hold a tick open.
            if Instant::now() >= next_tick {
                self.close_tick();
                next_tick = Instant::now() + self.tick_interval;
            }
            self.health()?;
        }
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
                let tick = self.close_tick();
                if let Some(as_of) = command.as_of_mut() {
                    *as_of = tick;
                }
                self.broadcast(command);
            }
        }
    }

    /// Sends the gathered ingest batch, if any, to every worker: each inserts the flows it
    /// owns, and the callers are told once all took it.
    fn forward_gathered(&mut self) {
        if let Some((batch, callers)) = self.gathered.take() {
            let taken = Taken::new(callers, self.workers.len());
            self.broadcast(Command::Ingest(Arc::new(batch), taken));
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
