//! The allocation counter of the `count-allocations` build: a global allocator that forwards
//! to mimalloc and counts every allocation and the bytes live on the heap, exported on
//! `/metrics` as `eddy_allocations_total` and `eddy_heap_live_bytes` so the benches can report
//! allocations per update and tell retained data from allocator slack in the resident set.
//! Production builds leave the feature off and pay nothing.

#![allow(
    unsafe_code,
    reason = "a global allocator is unsafe to implement; it only forwards to mimalloc"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use mimalloc::MiMalloc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};

/// Allocations (including reallocations) made through [`CountingMiMalloc`].
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated through [`CountingMiMalloc`] and not yet freed.
static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// mimalloc with a count of allocations; the `eddy` binary's allocator when the
/// `count-allocations` feature is on.
pub struct CountingMiMalloc;

// SAFETY: every method forwards to mimalloc unchanged and only adds to a counter.
unsafe impl GlobalAlloc for CountingMiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes allocated so far in this process and not yet freed.
pub fn live_heap_bytes() -> u64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The `eddy_allocations_total` and `eddy_heap_live_bytes` families, read from the counters
/// at every scrape.
pub struct AllocationsCollector {
    counter: IntCounter,
    live: IntGauge,
}

impl AllocationsCollector {
    /// The collector of `eddy_allocations_total`.
    pub fn new() -> prometheus::Result<AllocationsCollector> {
        let counter = IntCounter::new(
            "eddy_allocations_total",
            "Heap allocations and reallocations by the whole process (count-allocations builds only).",
        )?;
        let live = IntGauge::new(
            "eddy_heap_live_bytes",
            "Bytes allocated on the heap and not yet freed (count-allocations builds only).",
        )?;
        Ok(AllocationsCollector { counter, live })
    }
}

impl Collector for AllocationsCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.counter.desc();
        descs.extend(self.live.desc());
        descs
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.counter.reset();
        self.counter.inc_by(allocations());
        self.live
            .set(i64::try_from(live_heap_bytes()).unwrap_or(i64::MAX));
        let mut families = self.counter.collect();
        families.extend(self.live.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_exports_the_counters_under_their_names() {
        let collector = AllocationsCollector::new().expect("a valid metric name");
        let families = collector.collect();
        assert_eq!(families.len(), 2);
        assert_eq!(families[0].name(), "eddy_allocations_total");
        assert_eq!(families[1].name(), "eddy_heap_live_bytes");
        assert_eq!(
            families[0].get_metric()[0].get_counter().get_value(),
            allocations() as f64
        );
    }
}
