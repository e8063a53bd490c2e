//! Start-up recovery (SPEC §13.2, §13.4): loads the retained buckets from their files, then
//! reads the log's segments in order, cuts off a torn tail, sets damaged files aside, and
//! hands the engine every logged update inside retention that no file holds. Batches that
//! arrived within the de-duplication horizon also refill the de-duplication windows, so a
//! client replaying them after the restart is not counted twice. The server answers no call
//! until this is done.
//!
//! Exactly once: a bucket file records the log position it covers (it holds exactly its
//! bucket's updates logged in records ending at or before it; see `buckets`). A logged update
//! is replayed unless its bucket's file was loaded and covers the record holding it. A file
//! failing its checksum is set aside and its bucket recovered from the log alone.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_dataflows::model::{Bucket, FlowRecord};

use crate::catalog::Catalog;
use crate::config::durability::DurabilityArgs;
use crate::durability::batch::{read_batch, BatchView};
use crate::durability::bucket_load::{records_of, Interned, Loaded, NotLoaded};
use crate::durability::bucket_read::{read_bucket, BucketRead};
use crate::durability::buckets::{BucketFiles, WrittenFile};
use crate::durability::checkpoint::BUCKET_DIRECTORY;
use crate::durability::disk::DiskUsage;
use crate::durability::segment::{self, Ending};
use crate::durability::wal::{sync_directory, SegmentInfo, Wal};
use crate::durability::{Durability, DurabilityCounters, DAMAGED_DIRECTORY, WAL_DIRECTORY};
use crate::ingest::connection::{ConnectionIngest, Refused};
use crate::ingest::dedup::{fingerprint, HORIZON_SECONDS};
use crate::ingest::wire;
use crate::ingest::NotPrepared;
use crate::retention::Retention;
use crate::state::ServerState;
use crate::worker::protocol::IngestBatch;

/// Records handed to the engine at once when loading a bucket file or replaying the log.
const LOAD_CHUNK: usize = 64 * 1024;

/// Bucket files read, decoded and converted at once, each on its own blocking thread with its
/// own cache, while the engine takes the records of the file before them.
const LOADERS: usize = 2;

/// What recovery found, for the log line.
#[derive(Default)]
struct Found {
    /// Bucket files loaded.
    files: usize,
    /// Rows loaded from them.
    rows: u64,
    /// Updates replayed from the log.
    logged: u64,
    /// Buckets that got updates from the log that their files do not hold.
    replayed: BTreeSet<Bucket>,
    /// Where the time went.
    stages: RecoveryStages,
}

/// Where recovery's time went: the bucket files' stages, the log's, and the engine's.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecoveryStages {
    /// Reading and decoding the bucket files' columns (on the loading thread).
    pub decode: Duration,
    /// Turning their rows into engine records, interning their values (on the loading
    /// thread, beside the engine taking the previous file).
    pub convert: Duration,
    /// Waiting for the loading thread: the part of its work not hidden behind the engine.
    pub waited: Duration,
    /// Handing the files' records to the engine.
    pub handover: Duration,
    /// Reading the log and replaying it (its records prepared and handed to the engine).
    pub log: Duration,
    /// Waiting, at the end, until the engine reflects everything handed over.
    pub settle: Duration,
}

impl RecoveryStages {
    /// Adds the loading thread's times of `other`.
    fn add(&mut self, other: &RecoveryStages) {
        self.decode += other.decode;
        self.convert += other.convert;
    }
}

/// Opens the data directory named by `args`, recovers its bucket files and log into `state`'s
/// engine and de-duplication windows, and returns the directory ready for writing. Errors
/// name the setting or the file.
pub async fn recover(
    args: &DurabilityArgs,
    state: &ServerState,
) -> Result<Option<Arc<Durability>>, String> {
    let Some(directory) = args.data_dir.clone() else {
        return Ok(None);
    };
    // No call is answered before recovery ends, so no query waits behind its ticks.
    let _bulk = state.engine.bulk_load();
    let started = Instant::now();
    let wal_directory = directory.join(WAL_DIRECTORY);
    let bucket_directory = directory.join(BUCKET_DIRECTORY);
    for folder in [
        &directory,
        &wal_directory,
        &bucket_directory,
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
    let mut found = Found::default();
    let written = load_bucket_files(
        &directory,
        &bucket_directory,
        state,
        now,
        &counters,
        &mut found,
    )
    .await?;
    let covered: BTreeMap<Bucket, u64> = written
        .iter()
        .filter_map(|(bucket, file)| file.covered.map(|at| (*bucket, at)))
        .collect();
    let mut kept = Vec::new();
    let paths = segment_paths(&wal_directory)?;
    let count = paths.len();
    let mut replaying = Replaying::default();
    let log_started = Instant::now();
    // The catalog's gate is held while replayed records wait to be handed over: no
    // collection removes one of their ids meanwhile.
    let gate = state.catalog.gate.read().await;
    for (index, path) in paths.into_iter().enumerate() {
        let last = index + 1 == count;
        let recovered = recover_segment(
            &directory,
            path,
            last,
            state,
            now,
            &covered,
            &counters,
            &mut found,
            &mut replaying,
        )
        .await?;
        if let Some(info) = recovered {
            kept.push(info);
        }
    }
    hand_over(state, std::mem::take(&mut replaying.records)).await?;
    drop(gate);
    found.stages.log = log_started.elapsed();
    // Positions never go back, even when every segment was deleted: a file covers a
    // position, and a later record must lie past it.
    let next = kept
        .last()
        .map_or(0, |info: &SegmentInfo| info.end)
        .max(covered.values().copied().max().unwrap_or(0));
    let used = kept.iter().map(SegmentInfo::bytes).sum::<u64>()
        + written.values().map(|file| file.bytes).sum::<u64>();
    let disk = Arc::new(DiskUsage::new(used, args.max_disk_bytes));
    let buckets = BucketFiles::new(bucket_directory, written);
    buckets.recovered(found.replayed.iter().copied());
    let wal = Wal::create(wal_directory, next, kept, args.sync, disk.clone(), now)
        .map_err(|error| format!("--data-dir (EDDY_DATA_DIR): {error}"))?;
    let settling = Instant::now();
    state
        .engine
        .sync()
        .await
        .map_err(|stopped| stopped.to_string())?;
    found.stages.settle = settling.elapsed();
    let elapsed = started.elapsed();
    counters
        .recovery_micros
        .store(elapsed.as_micros() as u64, Ordering::Relaxed);
    let updates = counters.recovered_updates.load(Ordering::Relaxed);
    let seconds = elapsed.as_secs_f64().max(1e-6);
    tracing::info!(
        directory = %directory.display(),
        updates,
        expired = counters.recovered_expired.load(Ordering::Relaxed),
        bucket_files = found.files,
        rows_from_files = found.rows,
        updates_from_log = found.logged,
        segments = wal.segments() - 1,
        seconds = elapsed.as_secs_f64(),
        rows_per_second = ((found.rows + found.logged) as f64 / seconds).round(),
        decode_seconds = found.stages.decode.as_secs_f64(),
        convert_seconds = found.stages.convert.as_secs_f64(),
        waited_seconds = found.stages.waited.as_secs_f64(),
        handover_seconds = found.stages.handover.as_secs_f64(),
        log_seconds = found.stages.log.as_secs_f64(),
        settle_seconds = found.stages.settle.as_secs_f64(),
        "recovered the data directory"
    );
    let durability = Arc::new(Durability {
        directory,
        wal,
        buckets,
        disk,
        counters,
        stages: found.stages,
    });
    tokio::spawn(at_every_epoch(state.clone(), durability.clone()));
    Ok(Some(durability))
}

/// What the loading thread made of one bucket file.
enum FileLoad {
    /// Its records, row group by row group, and the log position it covers.
    Loaded { covered: u64, groups: Vec<Loaded> },
    /// A file written before files recorded their position: recovered from the log.
    Uncovered,
    /// Why the file does not read back.
    Damaged(String),
}

/// Reads, decodes and converts the bucket file at `path` into engine records (interning its
/// values into `catalog` through `interned`); adds the time each part took to `stages`.
fn load_file(
    path: &Path,
    catalog: &Catalog,
    interned: &mut Interned,
    retention: &Retention,
    now: i64,
    stages: &mut RecoveryStages,
) -> Result<FileLoad, String> {
    let started = Instant::now();
    let read =
        read_bucket(path).map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let decoded = Instant::now();
    stages.decode += decoded - started;
    let (covered, groups) = match read {
        BucketRead::Loaded { covered, groups } => (covered, groups),
        BucketRead::Uncovered => return Ok(FileLoad::Uncovered),
        BucketRead::Damaged(reason) => return Ok(FileLoad::Damaged(reason)),
    };
    let mut loaded = Vec::with_capacity(groups.len());
    for group in &groups {
        match records_of(group, catalog, interned, retention, now) {
            Ok(records) => loaded.push(records),
            Err(NotLoaded::Damaged(reason)) => return Ok(FileLoad::Damaged(reason)),
            Err(NotLoaded::Full(full)) => {
                return Err(format!(
                    "cannot recover a bucket file's row: {full}; raise the catalog bounds"
                ))
            }
        }
    }
    stages.convert += decoded.elapsed();
    Ok(FileLoad::Loaded {
        covered,
        groups: loaded,
    })
}

/// The loading thread's work on one file: what it made of it, the cache to pass on to the
/// next file, and the time it took.
type Loading = tokio::task::JoinHandle<(Result<FileLoad, String>, Interned, RecoveryStages)>;

/// Loads every retained bucket file into the engine; sets aside those failing their checksum.
/// [`LOADERS`] blocking threads read, decode and convert the next files while the engine
/// takes the current one's records; files are handed over in order. Returns the files kept
/// on disk.
async fn load_bucket_files(
    directory: &Path,
    bucket_directory: &Path,
    state: &ServerState,
    now: i64,
    counters: &DurabilityCounters,
    found: &mut Found,
) -> Result<BTreeMap<Bucket, WrittenFile>, String> {
    let floor = state.retention.oldest(now);
    let files = BucketFiles::scan(bucket_directory).map_err(|error| {
        format!("--data-dir (EDDY_DATA_DIR): cannot read the bucket files: {error}")
    })?;
    // Starts loading a file inside retention (others are not read, and are deleted at the
    // first epoch), with a cache from `idle`.
    let load = |bucket: Bucket, path: &Path, idle: &mut Vec<Interned>| -> Option<Loading> {
        if bucket < floor {
            return None;
        }
        let mut interned = idle.pop().unwrap_or_default();
        let (path, catalog, retention) =
            (path.to_path_buf(), state.catalog.clone(), state.retention);
        Some(tokio::task::spawn_blocking(move || {
            let mut stages = RecoveryStages::default();
            let loaded = load_file(&path, &catalog, &mut interned, &retention, now, &mut stages);
            (loaded, interned, stages)
        }))
    };
    let mut written = BTreeMap::new();
    // The catalog's gate is held while ids are cached: no collection removes one meanwhile.
    let gate = state.catalog.gate.read().await;
    let mut idle: Vec<Interned> = Vec::with_capacity(LOADERS);
    let mut files = files.into_iter();
    // The files being loaded, in order: at most `LOADERS` at once.
    let mut queue: VecDeque<(Bucket, PathBuf, Option<Loading>)> = VecDeque::new();
    let mut start_loading = |queue: &mut VecDeque<(Bucket, PathBuf, Option<Loading>)>,
                             idle: &mut Vec<Interned>| {
        while queue.len() < LOADERS {
            let Some((bucket, path)) = files.next() else {
                break;
            };
            let task = load(bucket, &path, idle);
            queue.push_back((bucket, path, task));
        }
    };
    start_loading(&mut queue, &mut idle);
    while let Some((bucket, path, current)) = queue.pop_front() {
        let cannot = |error: std::io::Error| format!("cannot read `{}`: {error}", path.display());
        let bytes = std::fs::metadata(&path).map_err(cannot)?.len();
        let mut file = WrittenFile {
            bytes,
            covered: None,
        };
        let loaded = match current {
            Some(task) => {
                let waited = Instant::now();
                let (loaded, interned, stages) = task.await.map_err(|joined| joined.to_string())?;
                found.stages.waited += waited.elapsed();
                found.stages.add(&stages);
                idle.push(interned);
                Some(loaded?)
            }
            None => None,
        };
        start_loading(&mut queue, &mut idle);
        let damage = match loaded {
            Some(FileLoad::Loaded { covered, groups }) => {
                hand_over_groups(state, groups, counters, found).await?;
                found.files += 1;
                file.covered = Some(covered);
                None
            }
            Some(FileLoad::Damaged(reason)) => Some(reason),
            Some(FileLoad::Uncovered) | None => None,
        };
        if let Some(reason) = damage {
            tracing::error!(path = %path.display(), %reason, "a bucket file does not read back; its bucket is recovered from the log");
            set_aside(directory, &path, counters)?;
            continue;
        }
        written.insert(bucket, file);
    }
    drop(gate);
    Ok(written)
}

/// Hands a bucket file's records to the engine, [`LOAD_CHUNK`] at a time.
async fn hand_over_groups(
    state: &ServerState,
    groups: Vec<Loaded>,
    counters: &DurabilityCounters,
    found: &mut Found,
) -> Result<(), String> {
    let started = Instant::now();
    for group in groups {
        found.rows += (group.records.len()) as u64;
        counters
            .recovered_updates
            .fetch_add(group.updates, Ordering::Relaxed);
        counters
            .recovered_expired
            .fetch_add(group.expired, Ordering::Relaxed);
        let mut records = group.records;
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(LOAD_CHUNK));
            hand_over(state, records).await?;
            records = rest;
        }
    }
    found.stages.handover += started.elapsed();
    Ok(())
}

/// Hands `records` and the catalog's new rules to the engine, as the collector does.
async fn hand_over(state: &ServerState, records: Vec<FlowRecord>) -> Result<(), String> {
    let _handover = state.catalog.handover.lock().await;
    state
        .engine
        .ingest(IngestBatch {
            records,
            trace_rules: state.catalog.take_new_rules(),
            retired_rules: Vec::new(),
        })
        .await
        .map_err(|stopped| stopped.to_string())
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

/// Recovers one segment: replays its batches' updates that no loaded file holds, or sets the
/// segment aside when damaged. Returns what the log keeps of it.
#[allow(clippy::too_many_arguments)]
async fn recover_segment(
    directory: &Path,
    path: PathBuf,
    last: bool,
    state: &ServerState,
    now: i64,
    covered: &BTreeMap<Bucket, u64>,
    counters: &DurabilityCounters,
    found: &mut Found,
    replaying: &mut Replaying,
) -> Result<Option<SegmentInfo>, String> {
    let bytes = std::fs::read(&path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?;
    let read = segment::read(&bytes);
    let batches: Option<Vec<BatchView>> = read
        .records
        .iter()
        .map(|payload| read_batch(payload).ok())
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
    let mut end = read.first + segment::HEADER_BYTES as u64;
    for (batch, payload) in batches.into_iter().zip(&read.records) {
        end += (segment::RECORD_OVERHEAD + payload.len()) as u64;
        let buckets: Vec<Option<Bucket>> = batch
            .updates
            .iter()
            .map(|update| {
                let flow = wire::read_update(update).ok()?.flow?;
                Some(state.retention.bucket_of(flow.start_time))
            })
            .collect();
        // Replayed unless a loaded file holds it: an update without a flow is replayed to be
        // skipped as it was at ingest (it never is: only stored updates are logged).
        let replayed: Vec<bool> = buckets
            .iter()
            .map(|bucket| {
                bucket.is_none_or(|bucket| covered.get(&bucket).is_none_or(|at| end > *at))
            })
            .collect();
        let mut noted: Vec<Bucket> = buckets.iter().flatten().copied().collect();
        noted.sort_unstable();
        noted.dedup();
        info.note(&noted, batch.arrival, end);
        for (bucket, replay) in buckets.iter().zip(&replayed) {
            if let (Some(bucket), true) = (bucket, replay) {
                found.replayed.insert(*bucket);
            }
        }
        found.logged += replayed.iter().filter(|replay| **replay).count() as u64;
        replay(state, replaying, &batch, &replayed, now, counters).await?;
    }
    info.end = end;
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
        "a data file failed its checksum: set aside"
    );
    Ok(())
}

/// The log's replay in progress: the records remembered across the log, and the replayed
/// records not yet handed to the engine.
#[derive(Default)]
struct Replaying {
    /// Records remembered by their key and label bytes, as a `Connect` call does.
    ingest: ConnectionIngest,
    /// Replayed records waiting to go to the engine [`LOAD_CHUNK`] at a time.
    records: Vec<FlowRecord>,
}

/// Prepares the updates of one logged batch that `replayed` marks as the collector did (read
/// in place, records remembered across the log), keeping them for the engine until
/// [`LOAD_CHUNK`] wait, and refills the de-duplication window of its peer with all of them if
/// it arrived within the horizon. Call with the catalog's gate held shared, until the kept
/// records are handed over.
async fn replay(
    state: &ServerState,
    replaying: &mut Replaying,
    batch: &BatchView<'_>,
    replayed: &[bool],
    now: i64,
    counters: &DurabilityCounters,
) -> Result<(), String> {
    let recent = batch.arrival > now - HORIZON_SECONDS;
    let Replaying { ingest, records } = replaying;
    let mut fingerprints = Vec::new();
    let (mut expired, mut kept) = (0, 0);
    for (update, replay) in batch.updates.iter().zip(replayed) {
        if !recent && !replay {
            continue;
        }
        match ingest.prepare(update, &state.catalog, state.bounds(now)) {
            Ok(done) => {
                if recent {
                    fingerprints.push((
                        (),
                        fingerprint(&done.record, done.start_time, done.end_time),
                    ));
                }
                if *replay {
                    records.push(done.record);
                    kept += 1;
                }
            }
            Err(Refused::NotPrepared(NotPrepared::Skipped(_))) => expired += u64::from(*replay),
            Err(Refused::NotPrepared(NotPrepared::Full(full))) => {
                return Err(format!(
                    "cannot recover a logged update: {full}; raise the catalog bounds"
                ))
            }
            Err(Refused::Malformed(error)) => {
                // Only updates that decoded at ingest are logged, and the record passed its
                // checksum: this is not expected, and the update cannot be counted.
                tracing::error!(%error, "a logged update does not decode; it is skipped");
                expired += u64::from(*replay);
            }
        }
    }
    if recent {
        let window = state.dedup.for_connection(batch.peer, batch.arrival);
        state
            .dedup
            .remove_duplicates(&window, &mut fingerprints, batch.arrival);
    }
    counters
        .recovered_updates
        .fetch_add(kept, Ordering::Relaxed);
    counters
        .recovered_expired
        .fetch_add(expired, Ordering::Relaxed);
    if records.len() >= LOAD_CHUNK {
        let full = std::mem::replace(records, Vec::with_capacity(LOAD_CHUNK));
        hand_over(state, full).await?;
    }
    Ok(())
}

/// At every epoch: deletes the bucket files retention no longer needs, writes the files of
/// closed buckets that changed, then deletes the log segments the files and retention no
/// longer need. Holds no part of the state but the
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
        let current = retention.bucket_of(now);
        durability
            .buckets
            .at_epoch(
                &engine,
                &catalog,
                &durability.wal,
                retention,
                floor,
                current,
                &durability.disk,
            )
            .await;
        durability.remove_expired(floor, now - HORIZON_SECONDS);
    }
}
