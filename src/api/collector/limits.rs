//! The bounds of `Connect` (SPEC §12.6): how many calls may be open at once, and how many bytes
//! of updates one call hands to the engine as one batch; with the counts of what they refused.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api::status::ApiError;

/// The `Connect` bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectLimits {
    /// Most `Connect` calls open at once.
    pub max_calls: usize,
    /// Most bytes (encoded updates) in one batch; a batch holds at least one update.
    pub max_batch_bytes: usize,
}

impl Default for ConnectLimits {
    fn default() -> Self {
        ConnectLimits {
            max_calls: 10_000,
            max_batch_bytes: 1024 * 1024,
        }
    }
}

/// The open `Connect` calls and what the bounds refused. Shared by every call.
#[derive(Debug)]
pub struct ConnectCalls {
    limits: ConnectLimits,
    open: Arc<Semaphore>,
    refused: AtomicU64,
    byte_bound_batches: AtomicU64,
}

/// Held by an open `Connect` call; its slot is free again once dropped.
#[derive(Debug)]
pub struct CallSlot {
    _permit: OwnedSemaphorePermit,
}

impl ConnectCalls {
    /// No call open yet.
    pub fn new(limits: ConnectLimits) -> Self {
        ConnectCalls {
            limits,
            open: Arc::new(Semaphore::new(limits.max_calls.min(Semaphore::MAX_PERMITS))),
            refused: AtomicU64::new(0),
            byte_bound_batches: AtomicU64::new(0),
        }
    }

    /// The bounds.
    pub fn limits(&self) -> ConnectLimits {
        self.limits
    }

    /// A slot for a new call, or `RESOURCE_EXHAUSTED` when every slot is taken.
    pub fn admit(&self) -> Result<CallSlot, ApiError> {
        match self.open.clone().try_acquire_owned() {
            Ok(permit) => Ok(CallSlot { _permit: permit }),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(ApiError::ResourceExhausted(format!(
                    "too many concurrent Connect calls (at most {}); retry later",
                    self.limits.max_calls
                )))
            }
        }
    }

    /// Counts a batch that ended because it reached the byte bound.
    pub fn batch_at_byte_bound(&self) {
        self.byte_bound_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls refused because every slot was taken.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Batches that ended at the byte bound.
    pub fn byte_bound_batches_total(&self) -> u64 {
        self.byte_bound_batches.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_refused_when_all_are_taken_and_free_again_once_dropped() {
        let calls = ConnectCalls::new(ConnectLimits {
            max_calls: 2,
            max_batch_bytes: 10,
        });
        let first = calls.admit().expect("a first slot");
        let _second = calls.admit().expect("a second slot");
        assert!(matches!(
            calls.admit(),
            Err(ApiError::ResourceExhausted(message)) if message.contains("at most 2")
        ));
        assert_eq!(calls.refused_total(), 1);
        drop(first);
        assert!(calls.admit().is_ok());
        assert_eq!(calls.refused_total(), 1);
    }
}
