//! The write-ahead log: appends framed batches to the active segment, flushes them with group
//! commit, rolls segments by size and age, and deletes segments no longer needed.
//!
//! Group commit: a batch is written under a short lock, then its writer waits until the log is
//! flushed past the batch's end. One waiter at a time flushes, covering every batch written
//! before it started; the others find their batch covered and return, so concurrent `Connect`
//! calls share one fsync.
//!
//! State: the active segment (written at explicit offsets, so a failed write is cut off
//! without leaving a hole), the closed segments' positions and contents (the buckets and the
//! latest arrival each holds, for deletion), the position flushed so far.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use eddy_dataflows::model::Bucket;
use parking_lot::Mutex;

use crate::config::durability::SyncMode;
use crate::durability::disk::{DiskError, DiskUsage};
use crate::durability::segment;

/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A segment is closed once it is this many seconds old, so old data leaves in small files.
pub const SEGMENT_SECONDS: i64 = 60;

/// What the log knows about one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment's file.
    pub path: PathBuf,
    /// Position of its first byte.
    pub first: u64,
    /// Position after its last byte.
    pub end: u64,
    /// The buckets its updates fall in, each with the position after the segment's last
    /// record holding one of its updates.
    pub buckets: BTreeMap<Bucket, u64>,
    /// The latest arrival of any of its batches (`i64::MIN` when empty).
    pub last_arrival: i64,
}

impl SegmentInfo {
    /// An empty segment at `first`.
    pub fn empty(path: PathBuf, first: u64) -> Self {
        SegmentInfo {
            path,
            first,
            end: first + segment::HEADER_BYTES as u64,
            buckets: BTreeMap::new(),
            last_arrival: i64::MIN,
        }
    }

    /// Notes a record ending at `end`, holding updates falling in `buckets` that arrived at
    /// `arrival`.
    pub fn note(&mut self, buckets: &[Bucket], arrival: i64, end: u64) {
        for bucket in buckets {
            self.buckets.insert(*bucket, end);
        }
        self.last_arrival = self.last_arrival.max(arrival);
    }

    /// Bytes of the segment's file.
    pub fn bytes(&self) -> u64 {
        self.end - self.first
    }
}

/// The segment being written.
struct Active {
    file: Arc<File>,
    info: SegmentInfo,
    opened_at: i64,
}

struct Writer {
    active: Active,
    closed: Vec<SegmentInfo>,
}

/// The write-ahead log of one data directory.
pub struct Wal {
    directory: PathBuf,
    sync: SyncMode,
    writer: Mutex<Writer>,
    flushed: AtomicU64,
    flushing: tokio::sync::Mutex<()>,
    failed: AtomicBool,
    disk: Arc<DiskUsage>,
}

/// Flushes a directory, so a file created or renamed in it survives a power cut.
pub fn sync_directory(directory: &Path) -> std::io::Result<()> {
    File::open(directory)?.sync_all()
}

/// Creates the segment starting at `first` in `directory`, header written.
fn create_segment(
    directory: &Path,
    first: u64,
    sync: SyncMode,
    now: i64,
    disk: &DiskUsage,
) -> Result<Active, DiskError> {
    let path = directory.join(segment::file_name(first));
    disk.reserve(segment::HEADER_BYTES as u64)?;
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .and_then(|file| file.write_all_at(&segment::header(first), 0).map(|()| file))
        .and_then(|file| {
            if sync == SyncMode::Batch {
                file.sync_data()?;
                sync_directory(directory)?;
            }
            Ok(file)
        });
    match created {
        Ok(file) => Ok(Active {
            file: Arc::new(file),
            info: SegmentInfo::empty(path, first),
            opened_at: now,
        }),
        Err(error) => {
            disk.release(segment::HEADER_BYTES as u64);
            let _ = std::fs::remove_file(&path);
            Err(DiskError::from_io(error))
        }
    }
}

impl Wal {
    /// A log in `directory` whose next segment starts at `first`, after the `closed` segments
    /// recovery found.
    pub fn create(
        directory: PathBuf,
        first: u64,
        closed: Vec<SegmentInfo>,
        sync: SyncMode,
        disk: Arc<DiskUsage>,
        now: i64,
    ) -> Result<Wal, DiskError> {
        let active = create_segment(&directory, first, sync, now, &disk)?;
        Ok(Wal {
            directory,
            sync,
            writer: Mutex::new(Writer { active, closed }),
            flushed: AtomicU64::new(first),
            flushing: tokio::sync::Mutex::new(()),
            failed: AtomicBool::new(false),
            disk,
        })
    }

    /// Writes one record, `framed` (`segment::frame` or `segment::end_record`; updates
    /// falling in `buckets`, arrived at `arrival`). Returns the position after it, to wait on
    /// with [`Wal::flush_through`]. Nothing is written when it fails.
    pub fn append(
        &self,
        framed: &[u8],
        buckets: &[Bucket],
        arrival: i64,
    ) -> Result<u64, DiskError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(DiskError::Failed);
        }
        let length = framed.len() as u64;
        let mut writer = self.writer.lock();
        let active = &writer.active;
        let full = active.info.bytes() + length > SEGMENT_BYTES;
        let old = arrival - active.opened_at >= SEGMENT_SECONDS;
        if active.info.last_arrival != i64::MIN && (full || old) {
            self.roll(&mut writer, arrival)?;
        }
        self.disk.reserve(length)?;
        let active = &mut writer.active;
        let offset = active.info.bytes();
        if let Err(error) = active.file.write_all_at(framed, offset) {
            self.disk.release(length);
            if active.file.set_len(offset).is_err() {
                self.failed.store(true, Ordering::Release);
            }
            return Err(DiskError::from_io(error));
        }
        active.info.end += length;
        let end = active.info.end;
        active.info.note(buckets, arrival, end);
        Ok(active.info.end)
    }

    /// Closes the active segment (flushed first) and opens the next one.
    fn roll(&self, writer: &mut Writer, now: i64) -> Result<(), DiskError> {
        let end = writer.active.info.end;
        if let Err(error) = writer.active.file.sync_data() {
            self.failed.store(true, Ordering::Release);
            return Err(DiskError::Io(error));
        }
        self.flushed.fetch_max(end, Ordering::AcqRel);
        let next = create_segment(&self.directory, end, self.sync, now, &self.disk)?;
        let closed = std::mem::replace(&mut writer.active, next);
        writer.closed.push(closed.info);
        Ok(())
    }

    /// Whether the log takes writes: not after a failed flush.
    pub fn writable(&self) -> Result<(), DiskError> {
        if self.failed.load(Ordering::Acquire) {
            Err(DiskError::Failed)
        } else {
            Ok(())
        }
    }

    /// Returns once everything up to `position` is durable under the sync mode: at once for
    /// `none`, after a flush covering it for `batch`.
    pub async fn flush_through(&self, position: u64) -> Result<(), DiskError> {
        if self.sync == SyncMode::None || self.flushed.load(Ordering::Acquire) >= position {
            return Ok(());
        }
        let _flushing = self.flushing.lock().await;
        if self.flushed.load(Ordering::Acquire) >= position {
            return Ok(());
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(DiskError::Failed);
        }
        let (file, end) = {
            let writer = self.writer.lock();
            (writer.active.file.clone(), writer.active.info.end)
        };
        let flushed = tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|joined| std::io::Error::other(joined.to_string()))
            .and_then(|result| result);
        match flushed {
            Ok(()) => {
                self.flushed.fetch_max(end, Ordering::AcqRel);
                Ok(())
            }
            Err(error) => {
                self.failed.store(true, Ordering::Release);
                tracing::error!(%error, "flushing the write-ahead log failed; it takes no more writes");
                Err(DiskError::from_io(error))
            }
        }
    }

    /// The position after the last record written.
    pub fn end(&self) -> u64 {
        self.writer.lock().active.info.end
    }

    /// Deletes the closed segments `expired` picks. Returns how many it deleted and their
    /// bytes.
    pub fn remove_segments(&self, expired: impl Fn(&SegmentInfo) -> bool) -> (usize, u64) {
        let mut writer = self.writer.lock();
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut writer.closed)
            .into_iter()
            .partition(|info| expired(info));
        writer.closed = kept;
        drop(writer);
        let (mut removed, mut bytes) = (0, 0);
        for info in expired {
            match std::fs::remove_file(&info.path) {
                Ok(()) => {
                    self.disk.release(info.bytes());
                    removed += 1;
                    bytes += info.bytes();
                }
                Err(error) => {
                    tracing::warn!(path = %info.path.display(), %error, "cannot delete a write-ahead log segment");
                }
            }
        }
        (removed, bytes)
    }

    /// How many segments the log holds, the active one included.
    pub fn segments(&self) -> usize {
        self.writer.lock().closed.len() + 1
    }
}
