//! In the steady state a `Connect` call's update costs no heap allocation in the frontend
//! (issue 10): once a call has sent a key with its labels, preparing another send of it reads
//! the update in place, finds its record remembered and allocates nothing. Counted by a global
//! allocator that counts the allocations of the thread that asks.

#![allow(unsafe_code, reason = "a counting global allocator counts allocations")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use eddy::catalog::{Catalog, CatalogLimits};
use eddy::ingest::connection::ConnectionIngest;
use eddy::ingest::dedup::fingerprint;
use eddy::ingest::{Bounds, InputLimits};
use eddy::retention::Retention;
use eddy::synth::realistic::{update, BucketChoice};
use prost::Message;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Counts the allocations of each thread; allocates with the system allocator.
struct CountingAllocator;

// SAFETY: every method forwards to the system allocator unchanged and only adds a counter.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WINDOW: i64 = 15;
const NOW: i64 = 1_700_000_100;

#[test]
fn a_steady_state_update_allocates_nothing() {
    let retention = Retention {
        window: WINDOW,
        closed_buckets: 4,
    };
    let limits = InputLimits::default();
    let bounds = Bounds {
        retention: &retention,
        limits: &limits,
        now: NOW,
    };
    let keys = 500u64;
    let sends: Vec<Vec<Vec<u8>>> = (0..3)
        .map(|send| {
            (0..keys)
                .map(|key| {
                    let bucket = BucketChoice::OneOfLastFour { now: NOW };
                    update(key, 0, send, WINDOW, bucket).encode_to_vec()
                })
                .collect()
        })
        .collect();
    let catalog = Catalog::new(CatalogLimits::default());
    let mut call = ConnectionIngest::new();
    let mut prepare_all = |updates: &[Vec<u8>]| {
        let mut checksum = 0u64;
        for encoded in updates {
            let prepared = call
                .prepare(encoded, &catalog, bounds)
                .expect("a realistic update is accepted");
            checksum ^= fingerprint(&prepared.record, prepared.start_time, prepared.end_time);
        }
        checksum
    };

    let before = ALLOCATIONS.with(Cell::get);
    prepare_all(&sends[0]);
    let first = ALLOCATIONS.with(Cell::get) - before;
    assert!(
        first >= keys,
        "the first send of each key is decoded and interned: {first} allocations"
    );

    let before = ALLOCATIONS.with(Cell::get);
    let second = prepare_all(&sends[1]);
    let third = prepare_all(&sends[2]);
    let steady = ALLOCATIONS.with(Cell::get) - before;
    assert_eq!(steady, 0, "allocations for {} steady updates", 2 * keys);
    assert_ne!(second, third, "each send changes a counter");
}
