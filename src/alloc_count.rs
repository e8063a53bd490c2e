//! The allocation counter of the `count-allocations` build: a global allocator that forwards
//! to mimalloc and counts every allocation, exported on `/metrics` as
//! `eddy_allocations_total` so the benches can report allocations per update. Production
//! builds leave the feature off and pay nothing.

#![allow(
    unsafe_code,
    reason = "a global allocator is unsafe to implement; it only forwards to mimalloc"
)]

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicU64, Ordering};

use mimalloc::MiMalloc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::IntCounter;

/// Allocations (including reallocations) made through [`CountingMiMalloc`].
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// mimalloc with a count of allocations; the `eddy` binary's allocator when the
/// `count-allocations` feature is on.
pub struct CountingMiMalloc;

// SAFETY: every method forwards to mimalloc unchanged and only adds to a counter.
unsafe impl GlobalAlloc for CountingMiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far in this process.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The `eddy_allocations_total` family, read from the counter at every scrape.
pub struct AllocationsCollector {
    counter: IntCounter,
}

impl AllocationsCollector {
    /// The collector of `eddy_allocations_total`.
    pub fn new() -> prometheus::Result<AllocationsCollector> {
        let counter = IntCounter::new(
            "eddy_allocations_total",
            "Heap allocations and reallocations by the whole process (count-allocations builds only).",
        )?;
        Ok(AllocationsCollector { counter })
    }
}

impl Collector for AllocationsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.counter.reset();
        self.counter.inc_by(allocations());
        self.counter.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collector_exports_the_counter_under_its_name() {
        let collector = AllocationsCollector::new().expect("a valid metric name");
        let families = collector.collect();
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].name(), "eddy_allocations_total");
        assert_eq!(
            families[0].get_metric()[0].get_counter().get_value(),
            allocations() as f64
        );
    }
}
