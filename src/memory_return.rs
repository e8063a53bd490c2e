//! Hands the memory a thread has freed back to the operating system when the thread is about
//! to wait for work.
//!
//! mimalloc returns a freed page only when the thread that owns it next allocates or frees
//! (after its purge delay), so a thread that goes idle after a burst (the ingest threads after
//! a load, a worker after a large tick) keeps the burst's pages resident until its next burst.
//! Eddy's threads call [`thread_idle`] when they have nothing to do: at most once per
//! [`RETURN_INTERVAL`], the thread collects its heap and purges its free pages at once. A
//! timely worker calls it once a park has lasted its whole timeout and the controller once a
//! wait has ended with no event, so under sustained load neither does; a tokio thread calls it
//! each time it parks, which under load is between batches, so at most ten times a second.

#![allow(
    unsafe_code,
    reason = "mi_collect is a C function; calling it is the only unsafe operation here"
)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The least time between two returns by one thread.
pub const RETURN_INTERVAL: Duration = Duration::from_millis(100);

thread_local! {
    /// When this thread last returned memory.
    static LAST_RETURN: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Called by a thread about to park: returns the memory it freed to the operating system,
/// unless it did so less than [`RETURN_INTERVAL`] ago.
pub fn thread_idle() {
    let now = Instant::now();
    let due = LAST_RETURN.with(|last| {
        let due = last
            .get()
            .is_none_or(|at| now.duration_since(at) >= RETURN_INTERVAL);
        if due {
            last.set(Some(now));
        }
        due
    });
    if due {
        // SAFETY: `mi_collect` takes no pointers; it walks and purges the calling thread's own
        // mimalloc heap (and the process's abandoned segments and arenas, under mimalloc's own
        // locks). A thread whose heap mimalloc never initialised returns at once.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}
