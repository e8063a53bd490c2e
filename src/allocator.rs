//! The `eddy` binary's allocator settings: mimalloc gives freed memory back to the system at
//! once rather than after its default purge delay (1 s in mimalloc v3, the version the
//! `mimalloc` crate builds). With the delay, memory freed by the
//! engine's merges and by ingest stayed resident: 160–250 bytes per retained row above the
//! live heap at 1M rows, against 15–90 with immediate purging (BENCHMARKS.md, "Memory over
//! retention cycles").
//!
//! An operator can still choose another delay with mimalloc's own `MIMALLOC_PURGE_DELAY`
//! variable (milliseconds; -1 for never): it is left as it is when set.

#![allow(
    unsafe_code,
    reason = "mimalloc's options are set through its C interface"
)]

use libmimalloc_sys::mi_option_t;

/// `mi_option_purge_delay`: its position in `mi_option_e` (mimalloc.h, v2 and v3 alike), which
/// the Rust bindings do not name.
const PURGE_DELAY: mi_option_t = 15;

/// mimalloc's own variable for the purge delay.
const PURGE_DELAY_VARIABLE: &str = "MIMALLOC_PURGE_DELAY";

/// Makes mimalloc purge freed memory at once, unless `MIMALLOC_PURGE_DELAY` chooses a delay.
/// Call at the start of `main`, before any thread is spawned.
pub fn purge_freed_memory_at_once() {
    if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
        // SAFETY: `mi_option_set` stores an option's value; mimalloc reads the purge delay at
        // each purge decision, so setting it after mimalloc started is supported.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 0) }
    }
}

/// mimalloc's purge delay in milliseconds.
pub fn purge_delay_ms() -> std::ffi::c_long {
    // SAFETY: `mi_option_get` reads an option's value.
    unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // mimalloc v3's default purge delay is 1000 ms and no other option defaults to it:
        // option 15 is the purge delay (this test process never sets it, nor does its
        // environment).
        if std::env::var_os(PURGE_DELAY_VARIABLE).is_none() {
            assert_eq!(purge_delay_ms(), 1000);
        }
    }
}
