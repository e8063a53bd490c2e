//! The threads that read `Connect` calls: a tokio runtime of their own, whose threads run a
//! few nice levels below the rest of the server (queries, the controller, the engine's
//! workers). While the CPU has room nothing changes; once it is saturated, the scheduler gives
//! a query's answer and the engine's work before decoding more updates, and the updates not
//! yet read wait in HTTP/2 flow control (SPEC §9.2). Without this, a query's answer queued on
//! the same tokio threads behind the tasks of every busy `Connect` call.
//!
//! The frames of a call are still read by its connection's task on the main runtime; what
//! moves here is the work per update: decoding, interning, de-duplication and the hand-over
//! to the engine.

use std::io;

use tokio::runtime::{Builder, Handle, Runtime};

/// Nice levels the ingest threads run below the rest of the server by default. Measured with
/// the queries bench at 1M rows, ingest at full speed beside (BENCHMARKS.md): against the
/// shared runtime, List's p99 median went from 54 to 43 ms and Statistics' from 48 to 46 ms
/// (five alternated runs each); on one build, Statistics' p99 read 62–82 ms at 0 levels,
/// 44–45 at 5 and 47–49 at 10, which also took a fifth to a third of the ingest rate.
pub const INGEST_NICE: u8 = 5;

/// The runtime `Connect` calls are served on. Dropping it stops its threads without waiting
/// for them (it may be dropped on a runtime thread, where waiting is not allowed).
#[derive(Debug)]
pub struct IngestThreads {
    runtime: Option<Runtime>,
}

impl IngestThreads {
    /// Starts `threads` threads that run `nice` levels below the thread that starts them (0:
    /// at the same priority), and so do the blocking threads the runtime starts later,
    /// whichever thread starts them. A thread whose priority cannot be lowered logs a warning
    /// and runs at the priority it has.
    pub fn start(threads: usize, nice: u8) -> io::Result<IngestThreads> {
        let target = match (nice, own_nice()) {
            (0, _) => None,
            (_, Ok(own)) => Some((own + i32::from(nice)).min(LOWEST_PRIORITY)),
            (_, Err(error)) => {
                tracing::warn!(%error, "cannot read the server's priority; the ingest threads run at it");
                None
            }
        };
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("eddy-ingest")
            .on_thread_start(move || {
                if let Some(target) = target {
                    if let Err(error) = set_own_nice(target) {
                        tracing::warn!(
                            %error,
                            "cannot lower the priority of an ingest thread; it runs at the \
                             server's priority"
                        );
                    }
                }
            })
            .on_thread_park(crate::memory_return::thread_idle)
            .enable_all()
            .build()?;
        Ok(IngestThreads {
            runtime: Some(runtime),
        })
    }

    /// Where a `Connect` call's task is spawned.
    pub fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is present until the threads are dropped")
            .handle()
    }
}

impl Drop for IngestThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The highest nice value: the lowest priority.
const LOWEST_PRIORITY: i32 = 19;

/// The calling thread's nice value (Linux keeps one per thread; `who` 0 is the caller).
#[allow(
    unsafe_code,
    reason = "getpriority(2) has no safe wrapper in the standard library; it reads no memory \
              of ours, and errno is the calling thread's own"
)]
fn own_nice() -> io::Result<i32> {
    // SAFETY: getpriority(2) takes and returns integers. A nice value of -1 is also what it
    // returns on error, so errno is cleared first and read after: only an error sets it.
    let (value, error) = unsafe {
        *libc::__errno_location() = 0;
        let value = libc::getpriority(libc::PRIO_PROCESS, 0);
        (value, *libc::__errno_location())
    };
    match error {
        0 => Ok(value),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// Sets the calling thread's nice value to `target` (`who` 0 is the calling thread).
#[allow(
    unsafe_code,
    reason = "setpriority(2) has no safe wrapper in the standard library; it takes integers \
              and changes only the calling thread's priority"
)]
fn set_own_nice(target: i32) -> io::Result<()> {
    // SAFETY: setpriority(2) reads no pointer and changes only the calling thread's priority.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, target) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value, as the kernel reports it (not through `getpriority`).
    fn nice_in_proc() -> i64 {
        let status = std::fs::read_to_string("/proc/thread-self/stat")
            .expect("Linux exposes the thread's stat");
        // Field 19 (1-based) is the nice value; the command name before it is in parentheses.
        let after_name = &status[status.rfind(')').expect("stat names the command") + 2..];
        after_name
            .split(' ')
            .nth(16)
            .and_then(|field| field.parse().ok())
            .expect("stat has a numeric nice field")
    }

    #[test]
    fn ingest_threads_run_the_given_levels_below_their_starter() {
        let starter = nice_in_proc();
        let threads = IngestThreads::start(1, 3).expect("a runtime starts");
        let (sender, receiver) = std::sync::mpsc::channel();
        threads.handle().spawn(async move {
            let _ = sender.send(nice_in_proc());
        });
        let nice = receiver
            .recv()
            .expect("the task runs on an ingest thread and reports");
        assert_eq!(nice, (starter + 3).min(19));
        assert_eq!(
            i64::from(own_nice().expect("a thread reads its priority")),
            starter
        );
        // A blocking thread is started by an ingest thread, already lowered: it takes the
        // same level, not a second step down.
        let (sender, receiver) = std::sync::mpsc::channel();
        threads.handle().spawn(async move {
            let _ = sender.send(tokio::task::spawn_blocking(nice_in_proc).await);
        });
        let blocking = receiver
            .recv()
            .expect("the blocking task runs and reports")
            .expect("the blocking task does not panic");
        assert_eq!(blocking, (starter + 3).min(19));
        let unchanged = IngestThreads::start(1, 0).expect("a runtime starts");
        let (sender, receiver) = std::sync::mpsc::channel();
        unchanged.handle().spawn(async move {
            let _ = sender.send(nice_in_proc());
        });
        assert_eq!(receiver.recv().expect("the task reports"), starter);
    }
}
