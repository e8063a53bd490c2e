//! One timely worker: builds the views, then loops over controller commands and dataflow
//! steps. Queries wait until the views reflect their tick, then read this worker's shard.
//!
//! State: the input sessions, the view traces, the commands waiting for the frontier, and the
//! retention floor. The loop never blocks on tokio; it parks only when idle, and the controller
//! unparks it after every send.

use std::collections::VecDeque;
use std::time::Duration;

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
    let index = worker.index();
    let probe = ProbeHandle::new();
    let (mut inputs, mut views) = EngineInputs::build(worker, &probe);
    let mut waiting: VecDeque<Command> = VecDeque::new();
    let mut floor = Bucket::MIN;
    let mut compacted_to: Tick = 0;
    // The tick at which the latest retention retraction was inserted: commands queued after an
    // expiry wait for it too, so no answer shows data that had already left retention.
    let mut retracted_at: Tick = 0;
    loop {
        loop {
            match commands.try_recv() {
                Ok(Command::Ingest(batch, taken)) => {
                    injected.before_batch();
                    inputs.insert_rules(&batch.trace_rules);
                    inputs.retract_rules(&batch.retired_rules);
                    let retained = batch.records.iter().filter(|r| r.bucket >= floor);
                    inputs.insert(retained);
                    let dropped = batch.records.iter().filter(|r| r.bucket < floor).count();
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
        worker.step_or_park(Some(IDLE_PARK));
        while let Some(command) = waiting.front() {
            if probe.less_than(&(command.as_of().unwrap_or(0).max(retracted_at) + 1)) {
                break;
            }
            let Some(command) = waiting.pop_front() else {
                break;
            };
            if answer(command, &mut views, &mut inputs) {
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

/// Executes a command whose tick is reflected; returns whether it inserted a retraction.
fn answer(command: Command, views: &mut Views, inputs: &mut EngineInputs) -> bool {
    match command {
        Command::List { query, reply, .. } => {
            let partial = list::list(&mut views.flows, &query);
            // The reply channel has room for every worker; a closed one means the caller left.
            let _ = reply.try_send(partial);
            false
        }
        Command::Hints { query, reply, .. } => {
            let values = hints::hints(&mut views.flows, &mut views.hints, &query);
            let _ = reply.try_send(values);
            false
        }
        Command::Stats { query, reply, .. } => {
            let rows = stats::stats(&mut views.policy_stats, &query);
            let _ = reply.try_send(rows);
            false
        }
        Command::Expire { floor, .. } => {
            inputs.insert(&expire::expired(&mut views.flows, floor));
            true
        }
        Command::UsedIds { marks, reply, .. } => {
            let _ = reply.try_send(used_ids::used_ids(&mut views.flows, marks));
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
