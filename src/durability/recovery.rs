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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_dataflows::model::{Bucket, FlowRecord};

use crate::catalog::Catalog;
use crate::config::durability::DurabilityArgs;
use crate::durability::batch::{read_batch, BatchView};
use crate::durability::bucket_load::{
    records_by_ids, records_of, Interned, Loaded, NotLoaded, BY_ID_COLUMNS,
};
use crate::durability::bucket_read::{open_bucket, BucketOpen, OpenedBucket};
use crate::durability::buckets::{BucketFiles, WrittenFile};
use crate::durability::catalog_file::{CatalogFile, RestoredIds};
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

/// Blocking threads decoding and converting the bucket files' row groups, each with its own
/// buffers and decoded traces, while the engine takes the records of the files before them.
const LOADERS: usize = 2;

/// Converted row groups waiting for the hand-over, at most: the loading threads wait past
/// it, so recovery holds a bounded part of the files' records at once.
const GROUPS_AHEAD: usize = 4;

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

/// Where recovery's time went: the catalog file's, the bucket files' stages, the log's, and
/// the engine's; and how the files' rows were read.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecoveryStages {
    /// Rows of the bucket files read by their catalog ids (the others by their values).
    pub rows_by_ids: u64,
    /// Restoring the catalog from its file.
    pub catalog: Duration,
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
    let restoring = Instant::now();
    let (catalog_file, restored) = CatalogFile::open(&directory, &state.catalog)
        .map_err(|error| format!("--data-dir (EDDY_DATA_DIR): the catalog file: {error}"))?;
    found.stages.catalog = restoring.elapsed();
    if restored.set_aside() {
        counters.damaged_files.fetch_add(1, Ordering::Relaxed);
    }
    if restored.torn() {
        counters.torn_tails.fetch_add(1, Ordering::Relaxed);
    }
    let written = load_bucket_files(
        &directory,
        &bucket_directory,
        state,
        Arc::new(restored),
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
        + written.values().map(|file| file.bytes).sum::<u64>()
        + catalog_file.bytes();
    let disk = Arc::new(DiskUsage::new(used, args.max_disk_bytes));
    let buckets = BucketFiles::new(bucket_directory, written, catalog_file);
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
        rows_by_catalog_ids = found.stages.rows_by_ids,
        updates_from_log = found.logged,
        segments = wal.segments() - 1,
        seconds = elapsed.as_secs_f64(),
        rows_per_second = ((found.rows + found.logged) as f64 / seconds).round(),
        catalog_seconds = found.stages.catalog.as_secs_f64(),
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

/// What a loading thread sends the hand-over: a file opened, or one of its row groups
/// converted into engine records.
enum LoadEvent {
    /// File `file` (its place among the retained files) opened, or why it is not loaded.
    Opened {
        file: usize,
        opening: Result<Opening, String>,
    },
    /// Row group `group` of file `file`, converted, and the time it took.
    Group {
        file: usize,
        group: usize,
        loaded: Result<Loaded, NotLoaded>,
        stages: RecoveryStages,
    },
}

/// What opening a bucket file found.
enum Opening {
    /// It passed its checksum: its row groups follow.
    Groups { covered: u64, count: usize },
    /// A file written before files recorded their position: recovered from the log.
    Uncovered,
    /// Why the file does not read back.
    Damaged(String),
}

/// The row groups the loading threads share, in file order: the file being handed out and
/// its next group, and the retained files not opened yet.
struct Work {
    /// The retained files' paths, in order.
    paths: Vec<PathBuf>,
    /// The next file to open.
    next_file: usize,
    /// The open file: its place, its reader, its next group.
    open: Option<(usize, Arc<OpenedBucket>, usize)>,
}

impl Work {
    /// The next row group to convert, opening the next file when the open one has none left
    /// (and telling the hand-over through `events`). None once every file is handed out.
    fn next(
        &mut self,
        events: &tokio::sync::mpsc::Sender<LoadEvent>,
        stages: &mut RecoveryStages,
    ) -> Option<(usize, Arc<OpenedBucket>, usize)> {
        loop {
            if let Some((file, opened, group)) = &mut self.open {
                if *group < opened.groups() {
                    *group += 1;
                    return Some((*file, opened.clone(), *group - 1));
                }
            }
            let file = self.next_file;
            let path = self.paths.get(file)?;
            self.next_file += 1;
            let started = Instant::now();
            let opening = match open_bucket(path) {
                Ok(BucketOpen::Opened(opened)) => {
                    let count = opened.groups();
                    let covered = opened.covered;
                    self.open = Some((file, Arc::new(opened), 0));
                    Ok(Opening::Groups { covered, count })
                }
                Ok(BucketOpen::Uncovered) => Ok(Opening::Uncovered),
                Ok(BucketOpen::Damaged(reason)) => Ok(Opening::Damaged(reason)),
                Err(error) => Err(format!("cannot read `{}`: {error}", path.display())),
            };
            stages.decode += started.elapsed();
            events
                .blocking_send(LoadEvent::Opened { file, opening })
                .ok()?;
        }
    }
}

/// A loading thread: takes the next row group from `work` until none is left, decodes it
/// and converts it into engine records (interning its values into `catalog`, its buffers
/// and decoded traces kept from one group to the next), and sends it to the hand-over.
fn load_groups(
    work: &std::sync::Mutex<Work>,
    events: &tokio::sync::mpsc::Sender<LoadEvent>,
    catalog: &Catalog,
    restored: &RestoredIds,
    retention: &Retention,
    now: i64,
) {
    let mut interned = Interned::default();
    loop {
        let mut opening = RecoveryStages::default();
        let next = match work.lock() {
            Ok(mut work) => work.next(events, &mut opening),
            Err(_) => None,
        };
        let Some((file, opened, group)) = next else {
            return;
        };
        let mut stages = opening;
        let by_ids = (opened.generation == Some(restored.generation()))
            .then(|| load_by_ids(&opened, group, restored, retention, now, &mut stages));
        let loaded = match by_ids {
            Some(Ok(Some(loaded))) => Ok(loaded),
            Some(Err(reason)) => Err(NotLoaded::Damaged(reason)),
            // Another generation, or an id the catalog file did not restore.
            None | Some(Ok(None)) => load_by_values(
                &opened,
                group,
                catalog,
                &mut interned,
                retention,
                now,
                &mut stages,
            ),
        };
        let event = LoadEvent::Group {
            file,
            group,
            loaded,
            stages,
        };
        if events.blocking_send(event).is_err() {
            return;
        }
    }
}

/// Row group `group` of `opened` read by its catalog ids (its texts not decoded), the time
/// taken added to `stages`; `None` when a row names an id the catalog file did not restore.
fn load_by_ids(
    opened: &OpenedBucket,
    group: usize,
    restored: &RestoredIds,
    retention: &Retention,
    now: i64,
    stages: &mut RecoveryStages,
) -> Result<Option<Loaded>, String> {
    let started = Instant::now();
    let decoded = opened.group_columns(group, &BY_ID_COLUMNS);
    let converting = Instant::now();
    stages.decode += converting - started;
    let loaded = decoded.and_then(|decoded| records_by_ids(&decoded, restored, retention, now));
    stages.convert += converting.elapsed();
    loaded
}

/// Row group `group` of `opened` read by its values, interned into `catalog` (through
/// `interned`), the time taken added to `stages`.
fn load_by_values(
    opened: &OpenedBucket,
    group: usize,
    catalog: &Catalog,
    interned: &mut Interned,
    retention: &Retention,
    now: i64,
    stages: &mut RecoveryStages,
) -> Result<Loaded, NotLoaded> {
    let started = Instant::now();
    let decoded = opened.group(group);
    let converting = Instant::now();
    stages.decode += converting - started;
    let loaded = decoded
        .map_err(NotLoaded::Damaged)
        .and_then(|decoded| records_of(&decoded, catalog, interned, retention, now));
    stages.convert += converting.elapsed();
    loaded
}

/// A retained file's row groups as they arrive from the loading threads.
struct Arriving {
    /// The log position it covers.
    covered: u64,
    /// Its row groups, in order, as they arrive.
    groups: Vec<Option<Loaded>>,
    /// Row groups not arrived yet.
    missing: usize,
    /// Why a row group does not load, if one does not.
    damage: Option<String>,
}

/// A bucket file: its bucket and its path.
type BucketPath = (Bucket, PathBuf);

/// Loads every retained bucket file into the engine; sets aside those failing their checksum.
/// [`LOADERS`] blocking threads take the files' row groups in order, decode and convert
/// them, while the engine takes the records of the files before them; a file's records are
/// handed over once all its row groups converted (a file that does not read back hands over
/// nothing). Returns the files kept on disk.
async fn load_bucket_files(
    directory: &Path,
    bucket_directory: &Path,
    state: &ServerState,
    restored: Arc<RestoredIds>,
    now: i64,
    counters: &DurabilityCounters,
    found: &mut Found,
) -> Result<BTreeMap<Bucket, WrittenFile>, String> {
    let floor = state.retention.oldest(now);
    let files = BucketFiles::scan(bucket_directory).map_err(|error| {
        format!("--data-dir (EDDY_DATA_DIR): cannot read the bucket files: {error}")
    })?;
    let mut written = BTreeMap::new();
    // Files past retention are not read, and are deleted at the first epoch.
    let (retained, expired): (Vec<BucketPath>, Vec<BucketPath>) =
        files.into_iter().partition(|(bucket, _)| *bucket >= floor);
    for (bucket, path) in &expired {
        written.insert(*bucket, written_file(path, None)?);
    }
    // The catalog's gate is held while ids are cached: no collection removes one meanwhile.
    let gate = state.catalog.gate.read().await;
    let work = Arc::new(std::sync::Mutex::new(Work {
        paths: retained.iter().map(|(_, path)| path.clone()).collect(),
        next_file: 0,
        open: None,
    }));
    let (events, mut arrivals) = tokio::sync::mpsc::channel(GROUPS_AHEAD);
    for _ in 0..LOADERS {
        let (work, events, catalog, restored, retention) = (
            work.clone(),
            events.clone(),
            state.catalog.clone(),
            restored.clone(),
            state.retention,
        );
        tokio::task::spawn_blocking(move || {
            load_groups(&work, &events, &catalog, &restored, &retention, now);
        });
    }
    drop(events);
    let mut arriving: BTreeMap<usize, Arriving> = BTreeMap::new();
    let mut settled = 0;
    loop {
        let waited = Instant::now();
        let Some(event) = arrivals.recv().await else {
            break;
        };
        found.stages.waited += waited.elapsed();
        let file = match event {
            LoadEvent::Opened { file, opening } => match opening? {
                Opening::Groups { covered, count } => {
                    arriving.insert(
                        file,
                        Arriving {
                            covered,
                            groups: (0..count).map(|_| None).collect(),
                            missing: count,
                            damage: None,
                        },
                    );
                    file
                }
                Opening::Uncovered => {
                    let (bucket, path) = &retained[file];
                    written.insert(*bucket, written_file(path, None)?);
                    settled += 1;
                    continue;
                }
                Opening::Damaged(reason) => {
                    set_aside_bucket(directory, &retained[file].1, &reason, counters)?;
                    settled += 1;
                    continue;
                }
            },
            LoadEvent::Group {
                file,
                group,
                loaded,
                stages,
            } => {
                found.stages.add(&stages);
                let into = arriving
                    .get_mut(&file)
                    .ok_or("a row group of a file not opened")?;
                into.missing -= 1;
                match loaded {
                    Ok(records) => into.groups[group] = Some(records),
                    Err(NotLoaded::Damaged(reason)) => into.damage = Some(reason),
                    Err(NotLoaded::Full(full)) => {
                        return Err(format!(
                            "cannot recover a bucket file's row: {full}; raise the catalog bounds"
                        ))
                    }
                }
                file
            }
        };
        if arriving.get(&file).is_some_and(|into| into.missing == 0) {
            let Some(complete) = arriving.remove(&file) else {
                continue;
            };
            let (bucket, path) = &retained[file];
            settled += 1;
            if let Some(reason) = complete.damage {
                set_aside_bucket(directory, path, &reason, counters)?;
                continue;
            }
            hand_over_groups(
                state,
                complete.groups.into_iter().flatten(),
                counters,
                found,
            )
            .await?;
            found.files += 1;
            written.insert(*bucket, written_file(path, Some(complete.covered))?);
        }
    }
    drop(gate);
    if settled < retained.len() {
        return Err("a thread loading the bucket files stopped".into());
    }
    Ok(written)
}

/// The bucket file at `path` as kept on disk, covering `covered` when it was loaded.
fn written_file(path: &Path, covered: Option<u64>) -> Result<WrittenFile, String> {
    let bytes = std::fs::metadata(path)
        .map_err(|error| format!("cannot read `{}`: {error}", path.display()))?
        .len();
    Ok(WrittenFile { bytes, covered })
}

/// Sets aside the bucket file at `path`, which does not read back for `reason`.
fn set_aside_bucket(
    directory: &Path,
    path: &Path,
    reason: &str,
    counters: &DurabilityCounters,
) -> Result<(), String> {
    tracing::error!(path = %path.display(), %reason, "a bucket file does not read back; its bucket is recovered from the log");
    set_aside(directory, path, counters)
}

/// Hands a bucket file's records to the engine, [`LOAD_CHUNK`] at a time.
async fn hand_over_groups(
    state: &ServerState,
    groups: impl Iterator<Item = Loaded>,
    counters: &DurabilityCounters,
    found: &mut Found,
) -> Result<(), String> {
    let started = Instant::now();
    for group in groups {
        found.rows += (group.records.len()) as u64;
        if group.by_ids {
            found.stages.rows_by_ids += group.records.len() as u64;
        }
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
