//! Engine faults (SPEC §12.8): a worker or the controller thread that panics, or returns while
//! the engine is still running, is a fault. The first fault is recorded where every engine
//! handle sees it: reads and ingest waiting on the engine fail at once, and the daemon exits
//! non-zero. Also the test-only switch that injects a fault ([`FAULT_INJECT_VAR`], described in
//! RELIABILITY.md and hidden from `--help`).

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

/// The environment variable that injects a fault, for tests of the fault path only.
pub const FAULT_INJECT_VAR: &str = "EDDY_FAULT_INJECT";

/// What an injected stall logs as it starts.
pub const STALL_MESSAGE: &str = "injected fault: a worker stalls until a line arrives on stdin";

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultInjection {
    /// A worker panics instead of taking the engine's ingest batch number `n + 1` (each batch
    /// is counted once, by the first worker that owns part of it).
    WorkerPanicAfterBatches(u64),
    /// The first owner of the engine's ingest batch number `n + 1` stops before taking it,
    /// once, until a line (or the end) arrives on the process's standard input: an engine
    /// that cannot keep up (SPEC §9.2), for as long as the test needs.
    WorkerStallAfterBatches(u64),
}

impl FaultInjection {
    /// Parses `worker-panic-after-batches:N` or `worker-stall-after-batches:N`.
    pub fn parse(value: &str) -> Result<FaultInjection, String> {
        let invalid = || {
            format!(
                "{FAULT_INJECT_VAR} `{value}`: expected worker-panic-after-batches:N or \
                 worker-stall-after-batches:N"
            )
        };
        let (kind, count) = value.split_once(':').ok_or_else(invalid)?;
        let count = count.parse::<u64>().map_err(|_| invalid())?;
        match kind {
            "worker-panic-after-batches" => Ok(FaultInjection::WorkerPanicAfterBatches(count)),
            "worker-stall-after-batches" => Ok(FaultInjection::WorkerStallAfterBatches(count)),
            _ => Err(invalid()),
        }
    }

    /// The injection the environment asks for, if any.
    pub fn from_env() -> Result<Option<FaultInjection>, String> {
        match std::env::var(FAULT_INJECT_VAR) {
            Ok(value) if !value.is_empty() => FaultInjection::parse(&value).map(Some),
            _ => Ok(None),
        }
    }
}

/// What the workers share to carry out an injected fault.
#[derive(Debug, Default)]
pub struct InjectedFault {
    injection: Option<FaultInjection>,
    batches: AtomicU64,
}

impl InjectedFault {
    /// Carries out `injection`, if any.
    pub fn new(injection: Option<FaultInjection>) -> Self {
        InjectedFault {
            injection,
            batches: AtomicU64::new(0),
        }
    }

    /// Whether a fault is to be injected at all (tests of the fault path only).
    pub fn armed(&self) -> bool {
        self.injection.is_some()
    }

    /// Called before an ingest batch is taken, by the batch's first owning worker only;
    /// panics or stalls the calling worker when the injection says so.
    pub fn before_batch(&self) {
        if self.count_batch() {
            tracing::warn!("{STALL_MESSAGE}");
            // Whatever the read returns (a line, the end, an error), the stall is over.
            let _ = std::io::stdin().lock().read_line(&mut String::new());
        }
    }

    /// Counts one batch; panics when the injection says so, and returns whether to stall
    /// before taking it.
    fn count_batch(&self) -> bool {
        let Some(injection) = self.injection else {
            return false;
        };
        let taken = self.batches.fetch_add(1, Ordering::Relaxed);
        match injection {
            FaultInjection::WorkerPanicAfterBatches(limit) => {
                assert!(
                    taken < limit,
                    "injected fault: worker panic after {limit} ingest batches"
                );
                false
            }
            FaultInjection::WorkerStallAfterBatches(batches) => taken == batches,
        }
    }
}

/// The engine's first fault, shared by every handle. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Faults {
    first: Arc<watch::Sender<Option<String>>>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            first: Arc::new(watch::channel(None).0),
        }
    }
}

impl Faults {
    /// Records `cause` unless a fault was already recorded, and logs it first: whoever waits
    /// for the fault may end the process at once.
    pub fn report(&self, cause: String) {
        self.first.send_if_modified(|first| {
            if first.is_some() {
                return false;
            }
            tracing::error!(cause = %cause, "the dataflow engine failed");
            *first = Some(cause);
            true
        });
    }

    /// The first fault, if one happened.
    pub fn first(&self) -> Option<String> {
        self.first.borrow().clone()
    }

    /// Waits for the first fault and returns its cause.
    pub async fn occurred(&self) -> String {
        let mut receiver = self.first.subscribe();
        let cause = match receiver.wait_for(Option::is_some).await {
            Ok(first) => first.clone(),
            // The sender lives in `self`, so the channel never closes while this waits.
            Err(_) => None,
        };
        match cause {
            Some(cause) => cause,
            None => std::future::pending().await,
        }
    }
}

/// Held by an engine thread while it runs: if the thread unwinds, or ends without
/// [`ThreadSentinel::finished`], the fault is reported.
#[derive(Debug)]
pub struct ThreadSentinel {
    faults: Faults,
    name: String,
    armed: bool,
}

impl ThreadSentinel {
    /// Watches the thread called `name`.
    pub fn new(faults: Faults, name: String) -> Self {
        ThreadSentinel {
            faults,
            name,
            armed: true,
        }
    }

    /// The thread ended as it should (the engine is stopping).
    pub fn finished(mut self) {
        self.armed = false;
    }

    /// The thread is about to end because of `cause`: reports it now.
    pub fn fail(mut self, cause: String) {
        self.armed = false;
        self.faults.report(format!("{}: {cause}", self.name));
    }
}

impl Drop for ThreadSentinel {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let how = if std::thread::panicking() {
            "panicked"
        } else {
            "stopped"
        };
        self.faults.report(format!("{} {how}", self.name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_parses_its_forms() {
        assert_eq!(
            FaultInjection::parse("worker-panic-after-batches:3"),
            Ok(FaultInjection::WorkerPanicAfterBatches(3))
        );
        assert_eq!(
            FaultInjection::parse("worker-stall-after-batches:4"),
            Ok(FaultInjection::WorkerStallAfterBatches(4))
        );
        assert!(FaultInjection::parse("worker-panic-after-batches").is_err());
        assert!(FaultInjection::parse("worker-panic-after-batches:x").is_err());
        assert!(FaultInjection::parse("worker-stall-after-batches:x").is_err());
        assert!(FaultInjection::parse("controller-panic:1").is_err());
    }

    #[test]
    fn the_first_fault_wins_and_a_panicking_thread_reports_itself() {
        let faults = Faults::default();
        assert_eq!(faults.first(), None);
        let watched = faults.clone();
        let joined = std::thread::spawn(move || {
            let _sentinel = ThreadSentinel::new(watched, "worker 1".into());
            panic!("boom");
        })
        .join();
        assert!(joined.is_err());
        faults.report("later".into());
        assert_eq!(faults.first(), Some("worker 1 panicked".into()));
        let quiet = Faults::default();
        ThreadSentinel::new(quiet.clone(), "controller".into()).finished();
        assert_eq!(quiet.first(), None);
    }

    #[test]
    fn an_injected_panic_comes_with_the_batch_after_the_limit() {
        let fault = InjectedFault::new(Some(FaultInjection::WorkerPanicAfterBatches(2)));
        fault.before_batch();
        fault.before_batch();
        let third = std::panic::catch_unwind(|| fault.before_batch());
        assert!(third.is_err());
        InjectedFault::new(None).before_batch();
    }

    #[test]
    fn an_injected_stall_holds_only_the_batch_after_the_limit() {
        let fault = InjectedFault::new(Some(FaultInjection::WorkerStallAfterBatches(1)));
        let stalls: Vec<_> = (0..3).map(|_| fault.count_batch()).collect();
        assert_eq!(stalls, [false, true, false]);
        assert!(!InjectedFault::new(None).count_batch());
    }
}
