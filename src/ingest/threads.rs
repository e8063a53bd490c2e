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
/// the queries bench at 1M rows, ingest at full speed beside (five alternated runs of each
/// build, BENCHMARKS.md): List's p99 median went from 54 to 43 ms and Statistics' from 48 to
/// 46 ms, with the ingest rate beside them unchanged.
pub const INGEST_NICE: u8 = 5;

/// The runtime `Connect` calls are served on. Dropping it stops its threads without waiting
/// for them (it may be dropped on a runtime thread, where waiting is not allowed).
#[derive(Debug)]
pub struct IngestThreads {
    runtime: Option<Runtime>,
}

impl IngestThreads {
    /// Starts `threads` threads that run `nice` levels below the thread that starts them (0:
    /// at the same priority). A thread whose priority cannot be lowered logs a warning and
    /// runs at the priority it has.
    pub fn start(threads: usize, nice: u8) -> io::Result<IngestThreads> {
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("eddy-ingest")
            .on_thread_start(move || lower_priority(nice))
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

/// Adds `nice` to the calling thread's nice value (Linux keeps one per thread).
#[allow(
    unsafe_code,
    reason = "nice(2) has no safe wrapper in the standard library; it takes and returns plain \
              integers and touches no memory of ours"
)]
fn lower_priority(nice: u8) {
    if nice == 0 {
        return;
    }
    // SAFETY: nice(2) reads no pointer and changes only the calling thread's scheduling
    // priority. It returns the new nice value, which may be -1; errno tells an error apart.
    let (result, error) = unsafe {
        *libc::__errno_location() = 0;
        let result = libc::nice(i32::from(nice));
        (result, *libc::__errno_location())
    };
    if result == -1 && error != 0 {
        tracing::warn!(
            nice,
            error = %io::Error::from_raw_os_error(error),
            "cannot lower the priority of an ingest thread; it runs at the server's priority"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    fn own_nice() -> i64 {
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
        let starter = own_nice();
        let threads = IngestThreads::start(1, 3).expect("a runtime starts");
        let (sender, receiver) = std::sync::mpsc::channel();
        threads.handle().spawn(async move {
            let _ = sender.send(own_nice());
        });
        let nice = receiver
            .recv()
            .expect("the task runs on an ingest thread and reports");
        assert_eq!(nice, (starter + 3).min(19));
        let unchanged = IngestThreads::start(1, 0).expect("a runtime starts");
        let (sender, receiver) = std::sync::mpsc::channel();
        unchanged.handle().spawn(async move {
            let _ = sender.send(own_nice());
        });
        assert_eq!(receiver.recv().expect("the task reports"), starter);
    }
}
