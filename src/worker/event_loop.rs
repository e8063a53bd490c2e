//! One timely worker: builds the views, then loops over controller commands and dataflow
//! steps. A worker gets the ingest batches holding a flow it owns (`keys::owner_of`) or trace
//! rules, inserts the records of the flows it owns, so a flow's rows and key live on one
//! worker, and keeps every trace's rules.
//! Queries wait until the views reflect their tick, then read this worker's shard.
//!
//! State: the views' inputs and arrangements, the commands waiting for the
//! frontier, and the retention floor. The loop never blocks on tokio; it parks only when idle, and the controller
//! unparks it after every send.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError};
use eddy_dataflows::inputs::EngineInputs;
use eddy_dataflows::model::{Bucket, Tick};
use eddy_dataflows::queries::{expire, hints, list, sizes, stats, used_ids};
use eddy_dataflows::views::Views;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::worker::Worker;

use crate::worker::fault::InjectedFault;
use crate::worker::progress::Progress;
use crate::worker::protocol::Command;
use crate::worker::EngineCounters;

/// How long an idle worker parks before looking at its channel again.
const IDLE_PARK: Duration = Duration::from_millis(20);

/// Runs one worker until the controller hangs up, telling `progress` how far its views have
/// come. `injected` may make it panic (tests of the fault path only).
pub fn run(
    worker: &mut Worker,
    commands: Receiver<Command>,
    counters: &EngineCounters,
    progress: &Progress,
    injected: &InjectedFault,
) {
    let probe = ProbeHandle::new();
    let index = worker.index();
    let (mut inputs, mut views) = EngineInputs::build(worker, &probe);
    let mut waiting: VecDeque<Command> = VecDeque::new();
    let mut floor = Bucket::MIN;
    let mut compacted_to: Tick = 0;
    // The tick at which the latest retention retraction was inserted: commands queued after an
    // expiry wait for it too, so no answer shows data that had already left retention.
    let mut retracted_at: Tick = 0;
    // Whether the last park lasted all of IDLE_PARK: nothing arrived, the worker is idle.
    let mut idle = false;
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Ingest(batch, taken)) => {
                    // Each batch counts once for the fault injection: at its first taker.
                    if injected.armed() && batch.takers.first() == Some(&index) {
                        injected.before_batch();
                    }
                    // Every worker holds every trace's rules, ahead of the batch's records.
                    inputs.insert_rules(&batch.batch.trace_rules);
                    inputs.retract_rules(&batch.batch.retired_rules);
                    let mut dropped = 0;
                    let retained = batch.records_of(index).filter(|record| {
                        let kept = record.bucket >= floor;
                        dropped += usize::from(!kept);
                        kept
                    });
                    inputs.insert(retained);
                    if dropped > 0 {
                        counters
                            .dropped_below_floor
                            .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    taken.fire();
                }
                Ok(Command::Advance(tick)) => inputs.advance_to(tick),
                Ok(Command::Expire {
                    as_of,
                    floor: new_floor,
                }) => {
                    floor = floor.max(new_floor);
                    waiting.push_back(Command::Expire {
                        as_of,
                        floor: new_floor,
                    });
                }
                Ok(command) => waiting.push_back(command),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        // A command the views already reflect is answered without parking first: parking with
        // no dataflow work to do would hold an idle read for the whole park.
        let answerable = |command: &Command, retracted_at: Tick| {
            !probe.less_than(&(command.as_of().unwrap_or(0).max(retracted_at) + 1))
        };
        if waiting
            .front()
            .is_some_and(|command| answerable(command, retracted_at))
        {
            worker.step();
            idle = false;
        } else {
            if idle {
                crate::memory_return::thread_idle();
            }
            let parked = Instant::now();
            worker.step_or_park(Some(IDLE_PARK));
            idle = parked.elapsed() >= IDLE_PARK;
        }
        while let Some(command) = waiting.front() {
            if !answerable(command, retracted_at) {
                break;
            }
            let Some(command) = waiting.pop_front() else {
                break;
            };
            // Every tick before the frontier is in the views.
            let reflected = probe
                .with_frontier(|frontier| frontier.first().copied())
                .unwrap_or(Tick::MAX);
            if answer(command, &mut views, &mut inputs, reflected) {
                retracted_at = inputs.time();
            }
        }
        if let Some(frontier) = probe.with_frontier(|frontier| frontier.first().copied()) {
            if frontier > compacted_to {
                views.compact_to(frontier);
                compacted_to = frontier;
                progress.advanced(index, frontier);
            }
        }
    }
}

/// Executes a command whose tick is reflected (the views hold every tick before `reflected`);
/// returns whether it inserted a retraction.
fn answer(command: Command, views: &mut Views, inputs: &mut EngineInputs, reflected: Tick) -> bool {
    match command {
        Command::List { query, reply, .. } => {
            let partial = list::list(views, &query);
            // The reply channel has room for every worker; a closed one means the caller left.
            let _ = reply.try_send(partial);
            false
        }
        Command::Hints { query, reply, .. } => {
            let values = hints::hints(views, &query);
            let _ = reply.try_send(values);
            false
        }
        Command::Stats { query, reply, .. } => {
            let rows = stats::stats(views, &query);
            let _ = reply.try_send(rows);
            false
        }
        Command::View {
            view, query, reply, ..
        } => {
            // The frontend sends only indices of the registry, which every worker built.
            let rows = views
                .registered
                .get_mut(view)
                .map(|view| view.read(&query))
                .unwrap_or_default();
            let _ = reply.try_send(rows);
            false
        }
        Command::ViewChanges {
            view,
            watch,
            window,
            reply,
            ..
        } => {
            let changes = views
                .registered
                .get_mut(view)
                .map(|view| view.changes(watch, window, reflected))
                .unwrap_or_default();
            let _ = reply.try_send(changes);
            false
        }
        Command::Expire { floor, .. } => {
            expire::expire(views, inputs, floor);
            true
        }
        Command::UsedIds { marks, reply, .. } => {
            let _ = reply.try_send(used_ids::used_ids(views, marks));
            false
        }
        Command::Sync { reply, .. } => {
            let _ = reply.try_send(());
            false
        }
        Command::Sizes { reply, .. } => {
            let _ = reply.try_send(sizes::sizes(views));
            false
        }
        Command::Ingest(..) | Command::Advance(_) => false,
    }
}
