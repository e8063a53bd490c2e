//! Which bucket files exist and which need writing: buckets that received updates since their
//! file was written are written again at the next epoch once closed, and files of buckets
//! past the retention floor are deleted (SPEC §13.3).
//!
//! Each file records the log position it covers: it holds exactly the updates of its bucket
//! logged in records ending at or before that position, so recovery loads the file and
//! replays only the bucket's later records (SPEC §13.2). To make that exact without stopping
//! ingest while the engine is read, a file is written optimistically: under the handover lock
//! (which the collector holds from logging a batch until the engine took it) the position of
//! the bucket's last logged record is noted; the engine is read without the lock; under the
//! lock again, if no record for the bucket was logged meanwhile, the rows read are exactly
//! the bucket's logged updates and the log's end is the covered position. Otherwise the
//! bucket stays due and is tried again at the next epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::{Bucket, BucketRange};
use eddy_dataflows::queries::list::{ListQuery, ListRow, SortField};
use parking_lot::Mutex;

use crate::api::convert::RowConverter;
use crate::catalog::Catalog;
use crate::durability::catalog_file::CatalogFile;
use crate::durability::checkpoint::{self, BucketRow, CatalogIds};
use crate::durability::disk::DiskUsage;
use crate::durability::wal::Wal;
use crate::proto::Flow;
use crate::retention::Retention;
use crate::worker::Engine;

/// A bucket file on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    /// Its size in bytes.
    pub bytes: u64,
    /// The log position it covers (`None` for a file that records none: the log alone
    /// recovers its bucket).
    pub covered: Option<u64>,
}

/// The bucket files of a data directory.
pub struct BucketFiles {
    directory: PathBuf,
    /// Buckets with updates their file does not hold yet.
    dirty: Mutex<BTreeSet<Bucket>>,
    /// The files on disk.
    written: Mutex<BTreeMap<Bucket, WrittenFile>>,
    /// For each bucket, the log position after the last record holding one of its updates.
    last_logged: Mutex<BTreeMap<Bucket, u64>>,
    /// The catalog file the files' catalog ids refer to: appended before each file is
    /// written, so every id a file holds is in it.
    catalog_file: Arc<Mutex<CatalogFile>>,
}

/// Why a bucket file was not written.
#[derive(Debug, thiserror::Error)]
enum NotWritten {
    /// The bucket received updates while the engine was read.
    #[error("the bucket changed while it was read")]
    Changed,
    /// Reading the engine or writing the file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BucketFiles {
    /// The bucket files recovery found in `directory` (already counted in the disk usage),
    /// their catalog ids referring to `catalog_file`.
    pub fn new(
        directory: PathBuf,
        written: BTreeMap<Bucket, WrittenFile>,
        catalog_file: CatalogFile,
    ) -> Self {
        BucketFiles {
            directory,
            dirty: Mutex::new(BTreeSet::new()),
            written: Mutex::new(written),
            last_logged: Mutex::new(BTreeMap::new()),
            catalog_file: Arc::new(Mutex::new(catalog_file)),
        }
    }

    /// The bucket files in `directory` (created if missing), oldest first; files left
    /// half-written by a crash are deleted.
    pub fn scan(directory: &Path) -> std::io::Result<Vec<(Bucket, PathBuf)>> {
        std::fs::create_dir_all(directory)?;
        let mut files = Vec::new();
        for entry in std::fs::read_dir(directory)? {
            let path = entry?.path();
            match checkpoint::bucket_of(&path) {
                Some(bucket) => files.push((bucket, path)),
                None if path.extension().is_some_and(|ext| ext == "tmp") => {
                    std::fs::remove_file(&path)?;
                }
                None => {}
            }
        }
        files.sort();
        Ok(files)
    }

    /// The folder of the files.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Notes that `buckets` received updates logged in the record ending at `position`.
    /// Called under the handover lock, as the record is logged.
    pub fn touch(&self, buckets: &[Bucket], position: u64) {
        self.dirty.lock().extend(buckets.iter().copied());
        let mut last_logged = self.last_logged.lock();
        for bucket in buckets {
            last_logged.insert(*bucket, position);
        }
    }

    /// Notes that recovery replayed updates of `buckets` that their files do not hold.
    pub fn recovered(&self, buckets: impl IntoIterator<Item = Bucket>) {
        self.dirty.lock().extend(buckets);
    }

    /// How many bucket files exist.
    pub fn files(&self) -> usize {
        self.written.lock().len()
    }

    /// The log position each bucket's file covers, for buckets whose file records one.
    pub fn covered(&self) -> BTreeMap<Bucket, u64> {
        self.written
            .lock()
            .iter()
            .filter_map(|(bucket, file)| file.covered.map(|covered| (*bucket, covered)))
            .collect()
    }

    /// At an epoch: deletes the files below `floor`, then writes the file of every closed
    /// bucket (below `current`) that received updates since its file was written.
    #[allow(clippy::too_many_arguments)]
    pub async fn at_epoch(
        &self,
        engine: &Engine,
        catalog: &Arc<Catalog>,
        wal: &Wal,
        retention: Retention,
        floor: Bucket,
        current: Bucket,
        disk: &Arc<DiskUsage>,
    ) {
        let expired: Vec<(Bucket, WrittenFile)> = {
            let mut written = self.written.lock();
            let kept = written.split_off(&floor);
            std::mem::replace(&mut *written, kept).into_iter().collect()
        };
        {
            let mut last_logged = self.last_logged.lock();
            let kept = last_logged.split_off(&floor);
            *last_logged = kept;
        }
        for (bucket, file) in expired {
            match std::fs::remove_file(checkpoint::path_of(&self.directory, bucket)) {
                Ok(()) => disk.release(file.bytes),
                Err(error) => tracing::warn!(bucket, %error, "cannot delete a bucket file"),
            }
        }
        let due: Vec<Bucket> = {
            let mut dirty = self.dirty.lock();
            let open = dirty.split_off(&current);
            let closed = std::mem::replace(&mut *dirty, open);
            closed
                .into_iter()
                .filter(|bucket| *bucket >= floor)
                .collect()
        };
        for bucket in due {
            match self
                .write(engine, catalog, wal, retention, bucket, disk)
                .await
            {
                Ok(()) => {}
                Err(NotWritten::Changed) => {
                    tracing::debug!(bucket, "a bucket changed while its file was prepared; trying again at the next epoch");
                    self.dirty.lock().insert(bucket);
                }
                Err(NotWritten::Io(error)) => {
                    tracing::warn!(bucket, %error, "cannot write a bucket file; trying again at the next epoch");
                    self.dirty.lock().insert(bucket);
                }
            }
        }
    }

    /// The position after the last logged record holding an update of `bucket`.
    fn last_logged(&self, bucket: Bucket) -> Option<u64> {
        self.last_logged.lock().get(&bucket).copied()
    }

    /// Reads bucket `bucket` from the engine and writes its file, covering the log up to
    /// where the bucket's rows are exact (see the module's documentation).
    async fn write(
        &self,
        engine: &Engine,
        catalog: &Arc<Catalog>,
        wal: &Wal,
        retention: Retention,
        bucket: Bucket,
        disk: &Arc<DiskUsage>,
    ) -> Result<(), NotWritten> {
        let before = {
            let _handover = catalog.handover.lock().await;
            self.last_logged(bucket)
        };
        let query = ListQuery {
            range: BucketRange {
                gte: bucket,
                lt: bucket + retention.window,
            },
            window: retention.window,
            interval: 0,
            filter: FlowFilter::default(),
            sort: vec![SortField::Time],
            limit: None,
            name_ranks: Arc::new(Vec::new()),
        };
        let partials = engine
            .list(query)
            .await
            .map_err(|stopped| std::io::Error::other(stopped.to_string()))?;
        // Each distinct trace decoded once per file, not once per row.
        let mut converter = RowConverter::new(catalog);
        let mut rows: Vec<BucketRow> = partials
            .iter()
            .flat_map(|partial| &partial.rows)
            .filter_map(|row| {
                let flow = converter.flow_result(row).flow?;
                let catalog_ids = catalog_ids_of(row, &flow, catalog);
                Some(BucketRow {
                    id: row.key.id as i64,
                    flow,
                    updates: row.stats.records,
                    catalog: catalog_ids,
                })
            })
            .collect();
        rows.sort_unstable_by_key(|row| row.id);
        let covered = {
            let _handover = catalog.handover.lock().await;
            if self.last_logged(bucket) != before {
                return Err(NotWritten::Changed);
            }
            wal.end()
        };
        let directory = self.directory.clone();
        let (catalog, catalog_file) = (catalog.clone(), self.catalog_file.clone());
        let bytes = tokio::task::spawn_blocking(move || {
            // Every id the rows hold was interned before they were read: the append covers
            // them before the file naming its generation exists.
            let (generation, catalog_bytes) = {
                let mut catalog_file = catalog_file.lock();
                let before = catalog_file.bytes();
                let appended = catalog_file.append(&catalog);
                let catalog_bytes = (before, catalog_file.bytes());
                appended.map(|()| (catalog_file.generation(), catalog_bytes))?
            };
            let bytes =
                checkpoint::write_bucket(&directory, bucket, &rows, covered, Some(generation))?;
            Ok::<_, std::io::Error>((bytes, catalog_bytes))
        })
        .await
        .map_err(|joined| std::io::Error::other(joined.to_string()))??;
        let (bytes, (catalog_before, catalog_after)) = bytes;
        disk.release(catalog_before);
        disk.add(catalog_after);
        let file = WrittenFile {
            bytes,
            covered: Some(covered),
        };
        let previous = self.written.lock().insert(bucket, file);
        disk.release(previous.map_or(0, |file| file.bytes));
        disk.add(bytes);
        Ok(())
    }
}

/// Stands for an id the catalog does not hold: a row naming it loads by its values.
const NO_ID: u32 = u32::MAX;

/// The catalog ids of a List row written as `flow`. A row with several label pairs in the
/// bucket is written with the labels common to them (as `RowConverter::flow_result` does), interned here
/// so the file can name them; if the table has no room the row names [`NO_ID`].
fn catalog_ids_of(row: &ListRow, flow: &Flow, catalog: &Catalog) -> CatalogIds {
    let key = &row.key;
    let labels = match row.labels.as_slice() {
        [pair] => *pair,
        _ => {
            let intern = |labels: &[String]| catalog.label_sets.intern(labels).unwrap_or(NO_ID);
            (intern(&flow.source_labels), intern(&flow.dest_labels))
        }
    };
    CatalogIds {
        strings: key.strings(),
        trace: key.trace,
        labels,
    }
}
