//! Durable history (SPEC §13): with a data directory, every stored update is written to a
//! write-ahead log before its receipt, and recovered at start-up.
//!
//! The directory holds `wal/` (the log's segments), `buckets/` (closed buckets as Parquet
//! files, for other tools and for recovery), `catalog/` (the catalog's values by id, so
//! recovery reads the bucket files by their catalog ids) and `damaged/` (files set aside
//! because they failed their checksum). Parts: the log's file format (`segment`), what a
//! record holds (`batch`), the log itself with group commit (`wal`), the bucket files
//! (`checkpoint` writes one, `bucket_read` reads one back with `coded_column`, `bucket_load`
//! turns it into engine records, `buckets` decides which and what log position each covers),
//! the catalog file (`catalog_file`),
//! the directory's bytes and bound (`disk`), start-up recovery (`recovery`).
//!
//! The rule that keeps totals exact: a bucket file holds exactly its bucket's updates logged
//! in records ending at or before the position in its metadata; recovery loads the file and
//! replays the bucket's later records only. Log segments go once every update in them is past
//! retention or in its bucket's file, and their batches are past the de-duplication horizon,
//! so the directory holds one retention of bucket files plus about the horizon of log.

pub mod batch;
pub mod bucket_load;
pub mod bucket_read;
pub mod buckets;
pub mod catalog_file;
pub mod checkpoint;
pub mod coded_column;
pub mod disk;
pub mod recovery;
pub mod segment;
#[cfg(test)]
mod test_rows;
pub mod wal;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::durability::buckets::BucketFiles;
use crate::durability::disk::{DiskError, DiskUsage};
use crate::durability::recovery::RecoveryStages;
use crate::durability::wal::Wal;
use eddy_dataflows::model::Bucket;

/// The write-ahead log's folder inside the data directory.
pub const WAL_DIRECTORY: &str = "wal";
/// Where files failing their checksum are moved, inside the data directory.
pub const DAMAGED_DIRECTORY: &str = "damaged";

/// What recovery and the log count, for metrics.
#[derive(Debug, Default)]
pub struct DurabilityCounters {
    /// Files moved to `damaged/` because they failed their checksum.
    pub damaged_files: AtomicU64,
    /// Stored updates refused because the directory could not take their batch.
    pub refused_updates: AtomicU64,
    /// Torn tails cut off at recovery.
    pub torn_tails: AtomicU64,
    /// Updates recovered from the log at start-up.
    pub recovered_updates: AtomicU64,
    /// Recovered updates not stored again because they had left retention.
    pub recovered_expired: AtomicU64,
    /// How long recovery took, in microseconds.
    pub recovery_micros: AtomicU64,
}

/// The updates one batch stored, encoded for the log (outside any lock), with the buckets
/// they fall in.
pub struct EncodedBatch {
    /// The log record, framed.
    record: Vec<u8>,
    arrival: i64,
    buckets: Vec<Bucket>,
}

impl EncodedBatch {
    /// The stored `updates` of a batch from `peer` that arrived at `arrival`, each the bytes
    /// of a `FlowUpdate` as received (logged as they are), falling in `buckets`.
    pub fn new<'a>(
        peer: Option<IpAddr>,
        arrival: i64,
        updates: impl Iterator<Item = &'a [u8]> + Clone,
        buckets: impl IntoIterator<Item = Bucket>,
    ) -> Self {
        let mut buckets: Vec<Bucket> = buckets.into_iter().collect();
        buckets.sort_unstable();
        buckets.dedup();
        EncodedBatch {
            record: batch::wire_record(arrival, peer, updates),
            arrival,
            buckets,
        }
    }
}

/// The data directory of a running server.
pub struct Durability {
    directory: PathBuf,
    wal: Wal,
    buckets: BucketFiles,
    disk: Arc<DiskUsage>,
    counters: Arc<DurabilityCounters>,
    stages: RecoveryStages,
}

impl Durability {
    /// The data directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Writes one encoded batch; called under the catalog's handover lock, which is held
    /// until the engine took the batch. Returns the position to wait on with
    /// [`Durability::flush_through`]. Nothing is written when it fails.
    pub fn append(&self, batch: &EncodedBatch) -> Result<u64, DiskError> {
        let position = self
            .wal
            .append(&batch.record, &batch.buckets, batch.arrival)?;
        self.buckets.touch(&batch.buckets, position);
        Ok(position)
    }

    /// Whether the log takes writes: not after a failed flush, until a restart recovers it.
    pub fn writable(&self) -> Result<(), DiskError> {
        self.wal.writable()
    }

    /// Returns once everything logged up to `position` is durable under the sync mode.
    pub async fn flush_through(&self, position: u64) -> Result<(), DiskError> {
        self.wal.flush_through(position).await
    }

    /// Deletes the log segments recovery no longer needs (SPEC §13.2): closed segments
    /// whose batches all arrived before `arrived_before` (so replays of them can no longer
    /// arrive within the de-duplication horizon) and whose every update either fell below
    /// `floor` or is held by its bucket's file (the file covers the segment's last record of
    /// that bucket).
    pub fn remove_expired(&self, floor: Bucket, arrived_before: i64) {
        let covered = self.buckets.covered();
        let (removed, bytes) = self.wal.remove_segments(|segment| {
            segment.last_arrival < arrived_before
                && segment.buckets.iter().all(|(bucket, last)| {
                    *bucket < floor || covered.get(bucket).is_some_and(|at| at >= last)
                })
        });
        if removed > 0 {
            tracing::debug!(
                removed,
                bytes,
                "deleted write-ahead log segments the bucket files and retention no longer need"
            );
        }
    }

    /// Bytes the data directory holds.
    pub fn bytes_used(&self) -> u64 {
        self.disk.used()
    }

    /// Counts `count` stored updates whose batch the directory refused: received, neither
    /// stored nor receipted (the node sends them again).
    pub fn refused(&self, count: usize) {
        self.counters
            .refused_updates
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    /// The bucket files.
    pub fn buckets(&self) -> &BucketFiles {
        &self.buckets
    }

    /// The log position after the last record written.
    pub fn log_end(&self) -> u64 {
        self.wal.end()
    }

    /// Segments the log holds.
    pub fn segments(&self) -> usize {
        self.wal.segments()
    }

    /// Recovery's and the log's counters.
    pub fn counters(&self) -> &DurabilityCounters {
        &self.counters
    }

    /// Where recovery's time went.
    pub fn recovery_stages(&self) -> RecoveryStages {
        self.stages
    }

    /// How long recovery took, in seconds.
    pub fn recovery_seconds(&self) -> f64 {
        self.counters.recovery_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::durability::SyncMode;
    use crate::durability::buckets::WrittenFile;
    use crate::durability::catalog_file::CatalogFile;
    use crate::durability::wal::SegmentInfo;

    /// A closed segment file of `first..end` holding `buckets` (each with its last record's
    /// end), its batches arrived at `arrival`.
    fn segment(
        directory: &Path,
        first: u64,
        end: u64,
        buckets: &[(Bucket, u64)],
        arrival: i64,
    ) -> SegmentInfo {
        let mut info = SegmentInfo::empty(directory.join(segment::file_name(first)), first);
        std::fs::write(&info.path, vec![0; (end - first) as usize]).expect("a segment file");
        info.end = end;
        for (bucket, last) in buckets {
            info.note(&[*bucket], arrival, *last);
        }
        info
    }

    #[test]
    fn a_segment_goes_once_each_of_its_buckets_is_filed_or_expired_and_its_batches_are_past_the_horizon(
    ) {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let wal_directory = directory.path().join(WAL_DIRECTORY);
        std::fs::create_dir_all(&wal_directory).expect("the log's folder");
        let closed = vec![
            segment(&wal_directory, 0, 100, &[(10, 90)], 100),
            segment(&wal_directory, 100, 200, &[(10, 150), (20, 190)], 100),
            segment(&wal_directory, 200, 300, &[(5, 250)], 100),
            segment(&wal_directory, 300, 400, &[(10, 350)], 100),
            segment(&wal_directory, 400, 500, &[(5, 450)], 1_000),
        ];
        let paths: Vec<PathBuf> = closed.iter().map(|info| info.path.clone()).collect();
        let disk = Arc::new(DiskUsage::new(500, None));
        let wal = Wal::create(wal_directory, 500, closed, SyncMode::None, disk.clone(), 0)
            .expect("the log opens");
        let filed = WrittenFile {
            bytes: 0,
            covered: Some(150),
        };
        let catalog = crate::catalog::Catalog::new(crate::catalog::CatalogLimits::default());
        let (catalog_file, _) =
            CatalogFile::open(directory.path(), &catalog).expect("the catalog file opens");
        let buckets = BucketFiles::new(
            directory.path().join("buckets"),
            BTreeMap::from([(10, filed)]),
            catalog_file,
        );
        let durability = Durability {
            directory: directory.path().to_path_buf(),
            wal,
            buckets,
            disk,
            counters: Arc::new(DurabilityCounters::default()),
            stages: RecoveryStages::default(),
        };
        durability.remove_expired(8, 500);
        let kept: Vec<bool> = paths.iter().map(|path| path.exists()).collect();
        // Bucket 10 filed up to 150, bucket 5 expired, bucket 20 neither, the last segment
        // within the horizon.
        assert_eq!(kept, [false, true, false, true, true]);
        assert_eq!(durability.segments(), 4, "three closed and the active one");
        assert_eq!(
            durability.bytes_used(),
            300 + segment::HEADER_BYTES as u64,
            "the deleted segments' bytes are released"
        );
    }
}
