//! Which bucket files exist and which need writing: buckets that received updates since their
//! file was written are written again at the next epoch once closed, and files of buckets
//! past the retention floor are deleted (SPEC §13.3).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_dataflows::filter::FlowFilter;
use eddy_dataflows::model::{Bucket, BucketRange};
use eddy_dataflows::queries::list::{ListQuery, SortField};
use parking_lot::Mutex;

use crate::api::convert::flow_result;
use crate::catalog::Catalog;
use crate::durability::checkpoint::{self, BucketRow};
use crate::durability::disk::DiskUsage;
use crate::retention::Retention;
use crate::worker::Engine;

/// The bucket files of a data directory.
pub struct BucketFiles {
    directory: PathBuf,
    /// Buckets with updates their file does not hold yet.
    dirty: Mutex<BTreeSet<Bucket>>,
    /// The files written, and their sizes.
    written: Mutex<BTreeMap<Bucket, u64>>,
}

impl BucketFiles {
    /// The files in `directory` (created if missing), counted in `disk`.
    pub fn open(directory: PathBuf, disk: &DiskUsage) -> std::io::Result<Self> {
        std::fs::create_dir_all(&directory)?;
        let mut written = BTreeMap::new();
        for entry in std::fs::read_dir(&directory)? {
            let path = entry?.path();
            match checkpoint::bucket_of(&path) {
                Some(bucket) => {
                    let bytes = std::fs::metadata(&path)?.len();
                    disk.add(bytes);
                    written.insert(bucket, bytes);
                }
                // A file left half-written by a crash.
                None if path.extension().is_some_and(|ext| ext == "tmp") => {
                    std::fs::remove_file(&path)?;
                }
                None => {}
            }
        }
        Ok(BucketFiles {
            directory,
            dirty: Mutex::new(BTreeSet::new()),
            written: Mutex::new(written),
        })
    }

    /// The folder of the files.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Notes that `buckets` received updates.
    pub fn touch(&self, buckets: impl IntoIterator<Item = Bucket>) {
        self.dirty.lock().extend(buckets);
    }

    /// How many bucket files exist.
    pub fn files(&self) -> usize {
        self.written.lock().len()
    }

    /// At an epoch: deletes the files below `floor`, then writes the file of every closed
    /// bucket (below `current`) that received updates since its file was written.
    pub async fn at_epoch(
        &self,
        engine: &Engine,
        catalog: &Arc<Catalog>,
        retention: Retention,
        floor: Bucket,
        current: Bucket,
        disk: &Arc<DiskUsage>,
    ) {
        let expired: Vec<(Bucket, u64)> = {
            let mut written = self.written.lock();
            let kept = written.split_off(&floor);
            std::mem::replace(&mut *written, kept).into_iter().collect()
        };
        for (bucket, bytes) in expired {
            match std::fs::remove_file(checkpoint::path_of(&self.directory, bucket)) {
                Ok(()) => disk.release(bytes),
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
            if let Err(error) = self.write(engine, catalog, retention, bucket, disk).await {
                tracing::warn!(bucket, %error, "cannot write a bucket file; trying again at the next epoch");
                self.dirty.lock().insert(bucket);
            }
        }
    }

    /// Reads bucket `bucket` from the engine and writes its file.
    async fn write(
        &self,
        engine: &Engine,
        catalog: &Arc<Catalog>,
        retention: Retention,
        bucket: Bucket,
        disk: &Arc<DiskUsage>,
    ) -> std::io::Result<()> {
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
        let mut rows: Vec<BucketRow> = partials
            .iter()
            .flat_map(|partial| &partial.rows)
            .filter_map(|row| {
                flow_result(row, catalog).flow.map(|flow| BucketRow {
                    id: row.key.id as i64,
                    flow,
                    updates: row.stats.records,
                })
            })
            .collect();
        rows.sort_unstable_by_key(|row| row.id);
        let directory = self.directory.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            checkpoint::write_bucket(&directory, bucket, &rows)
        })
        .await
        .map_err(|joined| std::io::Error::other(joined.to_string()))??;
        let previous = self.written.lock().insert(bucket, bytes);
        disk.release(previous.unwrap_or(0));
        disk.add(bytes);
        Ok(())
    }
}
