//! Start-up recovery (SPEC §13.2, §13.4): reads the log's segments in order, cuts off a torn
//! tail, sets damaged files aside, and hands every logged update still inside retention to
//! the engine; batches that arrived within the de-duplication horizon also refill the
//! de-duplication windows, so a client replaying them after the restart is not counted twice.
//! The server answers no call until this is done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use eddy_dataflows::model::Bucket;
use prost::Message;

use crate::config::durability::DurabilityArgs;
use crate::durability::batch::LoggedBatch;
use crate::durability::buckets::BucketFiles;
use crate::durability::checkpoint::BUCKET_DIRECTORY;
use crate::durability::disk::DiskUsage;
use crate::durability::segment::{self, Ending};
use crate::durability::wal::{sync_directory, SegmentInfo, Wal};
use crate::durability::{Durability, DurabilityCounters, DAMAGED_DIRECTORY, WAL_DIRECTORY};
use crate::ingest::dedup::{fingerprint, HORIZON_SECONDS};
use crate::ingest::{prepare, NotPrepared};
use crate::state::ServerState;
use crate::worker::protocol::IngestBatch;

/// Opens the data directory named by `args`, recovers its log into `state`'s engine and
/// de-duplication windows, and returns the directory ready for writing. Errors name the
/// setting or the file.
pub async fn recover(
    args: &DurabilityArgs,
    state: &ServerState,
) -> Result<Option<Arc<Durability>>, String> {
    let Some(directory) = args.data_dir.clone() else {
        return Ok(None);
    };
    let started = Instant::now();
    let wal_directory = directory.join(WAL_DIRECTORY);
    for folder in [
        &directory,
        &wal_directory,
        &directory.join(DAMAGED_DIRECTORY),
    ] {
        std::fs::create_dir_all(folder).map_err(|error| {
            format!(
                "--data-dir (EDDY_DATA_DIR): cannot create `{}`: {error}",
                folder.display()
            )
        })?;
    }
    let counters = Arc::new(DurabilityCounters::default());
    let now = state.now();
    let mut kept = Vec::new();
    let mut replayed = BTreeSet::new();
    let paths = segment_paths(&wal_directory)?;
    let count = paths.len();
    for (index, path) in paths.into_iter().enumerate() {
        let last = index + 1 == count;
        let recovered =
            recover_segment(&directory, path, last, state, now, &counters, &mut replayed).await?;
        if let Some(info) = recovered {
            kept.push(info);
        }
    }
    let next = kept.last().map_or(0, |info: &SegmentInfo| info.end);
    let used = kept.iter().map(SegmentInfo::bytes).sum();
    let disk = Arc::new(DiskUsage::new(used, args.max_disk_bytes));
    let buckets = BucketFiles::open(directory.join(BUCKET_DIRECTORY), &disk).map_err(|error| {
        format!("--data-dir (EDDY_DATA_DIR): cannot open the bucket files: {error}")
    })?;
    // The files may predate updates the log holds: every recovered bucket is written again.
    buckets.touch(replayed.iter().copied());
    let wal = Wal::create(wal_directory, next, kept, args.sync, disk.clone(), now)
        .map_err(|error| format!("--data-dir (EDDY_DATA_DIR): {error}"))?;
    state
        .engine
        .sync()
        .await
        .map_err(|stopped| stopped.to_string())?;
    let elapsed = started.elapsed();
    counters
        .recovery_micros
        .store(elapsed.as_micros() as u64, Ordering::Relaxed);
    let updates = counters.recovered_updates.load(Ordering::Relaxed);
    tracing::info!(
        directory = %directory.display(),
        updates,
        expired = counters.recovered_expired.load(Ordering::Relaxed),
        segments = wal.segments() - 1,
        seconds = elapsed.as_secs_f64(),
        updates_per_second = (updates as f64 / elapsed.as_secs_f64().max(1e-6)).round(),
        "recovered the data directory"
    );
    let durability = Arc::new(Durability {
        directory,
        wal,
        buckets,
        disk,
        counters,
    });
    tokio::spawn(at_every_epoch(state.clone(), durability.clone()));
    Ok(Some(durability))
}

/// The log's segments, in log order.
fn segment_paths(wal_directory: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(wal_directory).map_err(|error| {
        format!(
            "--data-dir (EDDY_DATA_DIR): cannot read `{}`: {error}",
            wal_directory.display()
        )
    })?;
    let mut segments: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter_map(|path| segment::first_of(&path).map(|first| (first, path)))
        .collect();
    segments.sort();
    Ok(segments.into_iter().map(|(_, path)| path).collect())
}

/// Recovers one segment: replays its batches, or sets it aside when damaged. Returns what the
/// log keeps of it.
async fn recover_segment(
    directory: &Path,
    path: PathBuf,
    last: bool,
    state: &ServerState,
    now: i64,
    counters: &DurabilityCounters,
    replayed: &mut BTreeSet<Bucket>,
) -> Result<Option<SegmentInfo>, String> {
    let bytes = std::fs::read(&path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let read = segment::read(&bytes);
    let batches: Option<Vec<LoggedBatch>> = read
        .records
        .iter()
        .map(|payload| LoggedBatch::decode(*payload).ok())
        .collect();
    let named_first = segment::first_of(&path);
    let (Some(batches), Ending::Clean | Ending::Torn, true) = (
        batches,
        read.ending,
        read.valid_bytes < segment::HEADER_BYTES || named_first == Some(read.first),
    ) else {
        set_aside(directory, &path, counters)?;
        return Ok(None);
    };
    if read.ending == Ending::Torn {
        counters.torn_tails.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            path = %path.display(),
            kept_bytes = read.valid_bytes,
            cut_bytes = bytes.len() - read.valid_bytes,
            last_segment = last,
            "cutting off the torn tail of a write-ahead log segment"
        );
        truncate(&path, read.valid_bytes as u64)?;
    }
    if batches.is_empty() {
        std::fs::remove_file(&path)
            .map_err(|error| format!("cannot delete `{}`: {error}", path.display()))?;
        return Ok(None);
    }
    let mut info = SegmentInfo::empty(path, read.first);
    info.end = read.first + read.valid_bytes as u64;
    for batch in batches {
        let buckets = batch
            .updates
            .iter()
            .filter_map(|update| update.flow.as_ref())
            .map(|flow| state.retention.bucket_of(flow.start_time));
        let mut newest = Bucket::MIN;
        for bucket in buckets {
            newest = newest.max(bucket);
            replayed.insert(bucket);
        }
        info.note(newest, batch.arrival);
        replay(state, batch, now, counters).await?;
    }
    Ok(Some(info))
}

/// Cuts `path` to `length` bytes and flushes it.
fn truncate(path: &Path, length: u64) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| {
            file.set_len(length)?;
            file.sync_all()
        })
        .map_err(|error| format!("cannot cut the torn tail of `{}`: {error}", path.display()))
}

/// Moves a file that failed its checksum into `damaged/`, logging an error and counting it.
pub fn set_aside(
    directory: &Path,
    path: &Path,
    counters: &DurabilityCounters,
) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = directory.join(DAMAGED_DIRECTORY).join(name);
    std::fs::rename(path, &target)
        .and_then(|()| sync_directory(&directory.join(DAMAGED_DIRECTORY)))
        .map_err(|error| format!("cannot set aside `{}`: {error}", path.display()))?;
    counters.damaged_files.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        path = %path.display(),
        moved_to = %target.display(),
        "a data file failed its checksum: set aside, its updates are not recovered"
    );
    Ok(())
}

/// Hands one logged batch to the engine as the collector did, and refills the
/// de-duplication window of its peer if it arrived within the horizon.
async fn replay(
    state: &ServerState,
    batch: LoggedBatch,
    now: i64,
    counters: &DurabilityCounters,
) -> Result<(), String> {
    let gate = state.catalog.gate.read().await;
    let mut records = Vec::with_capacity(batch.updates.len());
    let mut fingerprints = Vec::with_capacity(batch.updates.len());
    let mut expired = 0;
    for update in &batch.updates {
        match prepare(update, &state.catalog, state.bounds(now)) {
            Ok(record) => {
                let (start, end) = update
                    .flow
                    .as_ref()
                    .map_or((0, 0), |flow| (flow.start_time, flow.end_time));
                fingerprints.push(((), fingerprint(&record, start, end)));
                records.push(record);
            }
            Err(NotPrepared::Skipped(_)) => expired += 1,
            Err(NotPrepared::Full(full)) => {
                return Err(format!(
                    "cannot recover a logged update: {full}; raise the catalog bounds"
                ))
            }
        }
    }
    if batch.arrival > now - HORIZON_SECONDS {
        let window = state.dedup.for_connection(batch.peer(), batch.arrival);
        state
            .dedup
            .remove_duplicates(&window, &mut fingerprints, batch.arrival);
    }
    counters
        .recovered_updates
        .fetch_add(records.len() as u64, Ordering::Relaxed);
    counters
        .recovered_expired
        .fetch_add(expired, Ordering::Relaxed);
    let handover = state.catalog.handover.lock().await;
    let handed = state
        .engine
        .ingest(IngestBatch {
            records,
            trace_rules: state.catalog.take_new_rules(),
            retired_rules: Vec::new(),
        })
        .await;
    drop(handover);
    drop(gate);
    handed.map_err(|stopped| stopped.to_string())
}

/// At every epoch: deletes the log segments and bucket files retention no longer needs, and
/// writes the files of closed buckets that changed. Holds no part of the state but the
/// engine, the catalog and the clock.
async fn at_every_epoch(state: ServerState, durability: Arc<Durability>) {
    let (engine, catalog, clock, retention) = (
        state.engine.clone(),
        state.catalog.clone(),
        state.clock.clone(),
        state.retention,
    );
    drop(state);
    let mut epochs = engine.epochs();
    while epochs.changed().await.is_ok() {
        let now = clock.now();
        let floor = retention.oldest(now);
        durability.remove_expired(floor, now - HORIZON_SECONDS);
        let current = retention.bucket_of(now);
        durability
            .buckets
            .at_epoch(
                &engine,
                &catalog,
                retention,
                floor,
                current,
                &durability.disk,
            )
            .await;
    }
}
