//! The emitter (SPEC §11.5): with `PUSH_URL` set, every `EMITTER_AGGREGATION_WINDOW` of closed
//! buckets is read from the engine once `EMIT_AFTER_SECONDS` have passed after its end, and
//! POSTed as one NDJSON body (one JSON `Flow` per line: proto field names, enums as numbers).
//!
//! Windows are aligned to multiples of their width and sent in order, one at a time; a
//! failed POST is retried with capped exponential backoff, and later windows wait (they are
//! only time ranges, so waiting holds no data). The end of the last delivered window is kept
//! in a state file, so a restart continues with the next window: nothing is sent twice and
//! nothing is skipped, except windows that left retention while the upstream was unreachable
//! (counted in `eddy_emitter_expired_windows_total`).
//!
//! After a restart the engine holds only what nodes send it again: they replay what they
//! reported within the replay horizon (six minutes, as de-duplication assumes). So a window is
//! never marked delivered from an empty read of times this process did not see (SPEC §12.7):
//! a window that ended more than the horizon before the process started is not sent but
//! counted as expired, like windows that left retention; a window that ended before the start
//! but within the horizon is sent no earlier than one window width after the start, once the
//! replays are in. Missed windows, however many (a state file far in the past), are passed
//! over in one step, and the emitter yields to the runtime after every window.
//!
//! With `FILE_CONFIG_PATH` ([`switch`]), windows are sent only while that file says
//! `emitFlows: true`; while it does not, due windows wait in the same way.

pub mod post;
pub mod progress;
pub mod switch;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::BucketRange;
use eddy_dataflows::queries::list::{ListQuery, ListRow, SortField};
use tokio::sync::watch;

use crate::api::convert::RowConverter;
use crate::emitter::post::Poster;
use crate::emitter::progress::{Progress, ProgressError};
use crate::emitter::switch::FileSwitch;
use crate::ingest::dedup::HORIZON_SECONDS;
use crate::proto::Flow;
use crate::proto_json::{json, Spelling};
use crate::state::ServerState;
use crate::worker::EngineStopped;

/// The longest the emitter sleeps before looking at the clock again.
const POLL: Duration = Duration::from_secs(1);

/// Retry delays: `initial`, doubled after every failure, never above `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after failure number `failures` (0 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// What the emitter needs, checked at start-up.
#[derive(Clone, Debug)]
pub struct EmitterConfig {
    /// Where windows go.
    pub poster: Poster,
    /// Window width in seconds: a multiple of the aggregation window.
    pub width: i64,
    /// Seconds to wait after a window's end before sending it.
    pub emit_after: i64,
    /// The state file.
    pub state_file: PathBuf,
    /// Retry delays.
    pub backoff: Backoff,
    /// `FILE_CONFIG_PATH`, which turns sending on and off; without it, sending is always on.
    pub switch: Option<FileSwitch>,
}

/// The window after a delivered end `from`: `[from, next multiple of width)`.
pub fn window_after(from: i64, width: i64) -> (i64, i64) {
    (from, from - from.rem_euclid(width) + width)
}

/// How many windows of `width` lie between the window starting at `from` and the window
/// boundary `to` (a multiple of `width`), and `to` itself, if `to` is after `from`.
pub fn windows_until(from: i64, to: i64, width: i64) -> Option<(u64, i64)> {
    let (_, first_end) = window_after(from, width);
    if to < first_end {
        return None;
    }
    let whole = (to - first_end) / width;
    Some((whole.unsigned_abs() + 1, to))
}

/// The emitter, with its progress loaded.
#[derive(Debug)]
pub struct Emitter {
    config: EmitterConfig,
    next: i64,
    started_at: i64,
}

impl Emitter {
    /// Loads the state file; without one, starts with the window holding `now` and records
    /// that, so a restart before the first delivery does not skip it.
    pub fn new(config: EmitterConfig, now: i64) -> Result<Emitter, ProgressError> {
        let next = match progress::load(&config.state_file)? {
            Some(progress) => progress.last_window_end,
            None => {
                let start = now - now.rem_euclid(config.width);
                progress::store(
                    &config.state_file,
                    Progress {
                        last_window_end: start,
                    },
                )?;
                start
            }
        };
        Ok(Emitter {
            config,
            next,
            started_at: now,
        })
    }

    /// Passes over, in one step, every window that can no longer be sent with its data: those
    /// that left retention or ended before this process started. Counts them as expired and
    /// records the progress. Returns whether it passed over any.
    fn pass_over_lost_windows(&mut self, state: &ServerState) -> bool {
        let width = self.config.width;
        let lost_before = state
            .retention
            .oldest(state.now())
            .max(self.started_at.saturating_sub(HORIZON_SECONDS));
        let boundary = lost_before - lost_before.rem_euclid(width);
        let Some((count, next)) = windows_until(self.next, boundary, width) else {
            return false;
        };
        tracing::warn!(
            start = self.next,
            end = next,
            windows = count,
            "emitter windows left retention or ended before the replays this process can get; not sent"
        );
        let emitter = &state.metrics.emitter;
        emitter.windows_expired.fetch_add(count, Ordering::Relaxed);
        self.advance(state, next);
        true
    }

    /// Records that every window before `end` is done with.
    fn advance(&mut self, state: &ServerState, end: i64) {
        self.next = end;
        state
            .metrics
            .emitter
            .last_window_end
            .store(end, Ordering::Relaxed);
        if let Err(error) = progress::store(
            &self.config.state_file,
            Progress {
                last_window_end: end,
            },
        ) {
            tracing::error!(%error, "cannot record emitter progress");
        }
    }

    /// Start of the next window to send.
    pub fn next_window_start(&self) -> i64 {
        self.next
    }

    /// Sends windows until shutdown or until the engine stops, switched by the configured
    /// `FILE_CONFIG_PATH` if any.
    pub async fn run(self, state: ServerState) {
        let (_always_on, mut enabled) = watch::channel(true);
        if let Some(switch) = self.config.switch.clone() {
            enabled = switch.watch();
        }
        self.run_switched(state, enabled).await;
    }

    /// Sends windows until shutdown or until the engine stops, while `enabled` is true.
    pub async fn run_switched(mut self, state: ServerState, mut enabled: watch::Receiver<bool>) {
        tracing::info!(
            next_window_start = self.next,
            width = self.config.width,
            on = *enabled.borrow(),
            "emitter started"
        );
        let shutdown = state.shutdown.clone();
        let mut epochs = state.engine.epochs();
        loop {
            tokio::task::yield_now().await;
            if self.pass_over_lost_windows(&state) {
                continue;
            }
            let (start, end) = window_after(self.next, self.config.width);
            let mut due = end.saturating_add(self.config.emit_after);
            if end <= self.started_at {
                // Its data can only come from replays: wait a whole window for them.
                due = due.max(self.started_at.saturating_add(self.config.width));
            }
            loop {
                let now = state.now();
                if now >= due && *enabled.borrow_and_update() {
                    break;
                }
                let wait = if now >= due {
                    POLL
                } else {
                    Duration::from_secs((due - now).unsigned_abs()).min(POLL)
                };
                tokio::select! {
                    _ = shutdown.wait() => return,
                    changed = epochs.changed() => if changed.is_err() { return },
                    switched = enabled.changed() => if switched.is_err() { return },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            if self.pass_over_lost_windows(&state) {
                continue;
            }
            let emitter = &state.metrics.emitter;
            let floor = state.retention.oldest(state.now());
            let Ok(flows) = read_window(&state, start.max(floor), end).await else {
                return;
            };
            if !flows.is_empty() {
                let body = match ndjson(&flows) {
                    Ok(body) => body,
                    Err(error) => {
                        // Progress is not advanced: a restarted emitter retries this window.
                        tracing::error!(%error, start, end, "emitter cannot write a window as JSON; stopping");
                        return;
                    }
                };
                let delivered = tokio::select! {
                    _ = shutdown.wait() => false,
                    () = self.deliver(&state, body, start) => true,
                };
                if !delivered {
                    return;
                }
                emitter
                    .flows_delivered
                    .fetch_add(flows.len() as u64, Ordering::Relaxed);
            }
            emitter.windows_delivered.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(start, end, flows = flows.len(), "emitter window delivered");
            self.advance(&state, end);
        }
    }

    /// POSTs `body` until it is accepted.
    async fn deliver(&self, state: &ServerState, body: Vec<u8>, start: i64) {
        let mut failures = 0;
        loop {
            match self.config.poster.post(body.clone()).await {
                Ok(()) => return,
                Err(error) => {
                    let delay = self.config.backoff.delay(failures);
                    failures = failures.saturating_add(1);
                    state
                        .metrics
                        .emitter
                        .failed_attempts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%error, window_start = start, failures, retry_in = ?delay,
                        "emitter POST failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Every flow with data in buckets `[start, end)`, one per flow key, oldest first.
pub async fn read_window(
    state: &ServerState,
    start: i64,
    end: i64,
) -> Result<Vec<Flow>, EngineStopped> {
    let query = ListQuery {
        range: BucketRange {
            gte: start,
            lt: end,
        },
        window: state.retention.window,
        interval: 0,
        filter: FlowFilter::default(),
        sort: vec![SortField::Time],
        limit: None,
        name_ranks: Arc::new(Vec::new()),
    };
    let mut rows: Vec<ListRow> = state
        .engine
        .list(query)
        .await?
        .into_iter()
        .flat_map(|partial| partial.rows)
        .collect();
    rows.sort_unstable_by_key(|row| (row.start, row.key.id));
    let mut converter = RowConverter::new(&state.catalog);
    Ok(rows
        .iter()
        .filter_map(|row| converter.flow_result(row).flow)
        .collect())
}

/// One JSON object per flow in the emitter's spelling, each followed by a newline.
pub fn ndjson(flows: &[Flow]) -> Result<Vec<u8>, serde_json::Error> {
    let mut body = Vec::new();
    for flow in flows {
        serde_json::to_writer(&mut body, &json(flow, Spelling::Emitter))?;
        body.push(b'\n');
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let delays: Vec<u128> = (0..6).map(|n| backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn windows_are_aligned_to_their_width() {
        assert_eq!(
            window_after(1_700_000_100, 300),
            (1_700_000_100, 1_700_000_400)
        );
        assert_eq!(
            window_after(1_700_000_115, 300),
            (1_700_000_115, 1_700_000_400)
        );
    }

    #[test]
    fn windows_until_a_boundary_are_counted_in_one_step() {
        assert_eq!(windows_until(1_000, 1_100, 300), None);
        assert_eq!(
            windows_until(0, 1_699_999_800, 300),
            Some((5_666_666, 1_699_999_800))
        );
        assert_eq!(windows_until(1_000, 1_200, 300), Some((1, 1_200)));
        assert_eq!(windows_until(1_000, 1_500, 300), Some((2, 1_500)));
        assert_eq!(windows_until(1_200, 1_200, 300), None);
    }

    #[test]
    fn flows_serialise_with_proto_field_names_and_numeric_enums() {
        let flow = Flow {
            key: Some(crate::proto::FlowKey {
                action: 1,
                ..Default::default()
            }),
            start_time: 15,
            ..Default::default()
        };
        let body = String::from_utf8(ndjson(&[flow.clone(), flow]).expect("JSON")).expect("UTF-8");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2);
        let value: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
        assert_eq!(value["Key"]["action"], 1);
        assert_eq!(value["start_time"], 15);
    }
}
