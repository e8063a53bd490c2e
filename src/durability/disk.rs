//! The data directory's bytes: how many it holds, the bound `--max-disk-bytes` sets, and the
//! error a write gets when the disk (or the bound) is full.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a write to the data directory was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The bound or the disk is full: nothing was written.
    #[error("the data directory is full ({0})")]
    Full(String),
    /// An earlier flush failed: the log takes no more writes until a restart recovers it.
    #[error("the write-ahead log failed earlier and takes no more writes")]
    Failed,
    /// Writing or flushing failed otherwise.
    #[error("the write-ahead log cannot be written: {0}")]
    Io(#[from] io::Error),
}

impl DiskError {
    /// Classifies an I/O error: no space left is [`DiskError::Full`].
    pub fn from_io(error: io::Error) -> Self {
        if error.kind() == io::ErrorKind::StorageFull {
            DiskError::Full(error.to_string())
        } else {
            DiskError::Io(error)
        }
    }
}

/// Bytes held in the data directory, against an optional bound.
#[derive(Debug)]
pub struct DiskUsage {
    used: AtomicU64,
    limit: Option<u64>,
}

impl DiskUsage {
    /// Usage starting at `used` bytes, bounded by `limit` if set.
    pub fn new(used: u64, limit: Option<u64>) -> Self {
        DiskUsage {
            used: AtomicU64::new(used),
            limit,
        }
    }

    /// Counts `bytes` more as held, unless that passes the bound.
    pub fn reserve(&self, bytes: u64) -> Result<(), DiskError> {
        let reserved = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.saturating_add(bytes);
                match self.limit {
                    Some(limit) if after > limit => None,
                    _ => Some(after),
                }
            });
        match reserved {
            Ok(_) => Ok(()),
            Err(used) => Err(DiskError::Full(format!(
                "{used} bytes held, {bytes} more would pass --max-disk-bytes"
            ))),
        }
    }

    /// Counts `bytes` as released (a file deleted or truncated).
    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }

    /// Counts `bytes` more as held, whatever the bound (files retention bounds, such as the
    /// bucket files).
    pub fn add(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_refuses_what_would_pass_it_and_counts_the_refusal() {
        let usage = DiskUsage::new(100, Some(150));
        assert!(usage.reserve(50).is_ok());
        assert_eq!(usage.used(), 150);
        assert!(matches!(usage.reserve(1), Err(DiskError::Full(_))));
        assert_eq!(usage.used(), 150, "a refused reservation holds nothing");
        usage.release(60);
        assert_eq!(usage.used(), 90);
        assert!(usage.reserve(60).is_ok());
        let unbounded = DiskUsage::new(0, None);
        assert!(unbounded.reserve(u64::MAX / 2).is_ok());
    }
}
