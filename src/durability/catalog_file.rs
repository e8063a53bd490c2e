//! The catalog file: a durable copy of the catalog's interners (strings, label sets, traces)
//! with their exact ids, so recovery restores the catalog as it was and loads bucket rows by
//! id instead of interning every value of every bucket file again.
//!
//! It lives at `<data-dir>/catalog/catalog.log`, an append-only sequence of records, each
//! framed as the write-ahead log's are (see `segment`):
//!
//! ```text
//! record  : payload length (u32 LE, > 0) | CRC32C of the payload (u32 LE) | payload
//! header  : the first record; payload "EDDYCATL" | format version (u32 LE, 2) |
//!           generation (u64 LE, random, chosen when the file is created)
//! entries : every later record; payload
//!           strings mark | label sets mark | traces mark      (u32 LE each)
//!           then entries to the payload's end, each
//!           table (u8: 0 strings, 1 label sets, 2 traces) | id (u32 LE) |
//!           length (u32 LE) | the value's stored bytes (see `intern::encoding`)
//! ```
//!
//! A table's mark is the id its next new value would get when the record was written. Each
//! [`CatalogFile::append`] writes the entries interned since the last marks (those the
//! collector removed meanwhile are not written) and the new marks, as one record or, past
//! [`RECORD_TARGET`] bytes, several records carrying the same marks, then syncs the file. A
//! file holding more than twice the catalog's live entries is rewritten instead: header (same
//! generation) and every live entry, into `catalog.log.tmp`, synced, renamed over, the folder
//! synced.
//!
//! Recovery ([`CatalogFile::open`]) restores every entry read under its id and raises each
//! table's next id to at least the greatest mark read. A value written under two ids (removed,
//! then interned again under a new id) is restored under the later id only. A torn tail (the
//! last record cut short, or failing its checksum with nothing after it) is cut off; any other
//! damage sets the file aside in `damaged/` and starts a fresh file with a new generation.
//!
//! The invariant: a bucket file written after an `append` that covered its ids can be read by
//! id with this file's generation. Ids are never given twice within a generation, because each
//! table's next id is restored to at least its last durable mark; and ids past a torn tail
//! were never in a durable bucket file, because the caller writes a bucket file only after the
//! append covering its ids is synced. Within one record the marks are taken traces first, then
//! label sets, then strings, so the strings a trace's rules name are always in the record that
//! holds the trace or an earlier one.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::catalog::{Catalog, Marks};
use crate::durability::segment::{is_tail, record_at, RECORD_OVERHEAD};
use crate::durability::wal::sync_directory;
use crate::durability::DAMAGED_DIRECTORY;
use crate::intern::RestoreError;

/// The catalog file's folder inside the data directory.
pub const CATALOG_DIRECTORY: &str = "catalog";
/// The catalog file's name inside its folder.
pub const FILE_NAME: &str = "catalog.log";
/// The first bytes of the header record's payload.
pub const MAGIC: &[u8; 8] = b"EDDYCATL";
/// The format version this code writes and reads. Version 2 stores label sets with their
/// well-known keys by number (`intern::encoding::KNOWN_KEYS`); a file of version 1 is set
/// aside as any unreadable one is, and the bucket files of its generation load by values.
pub const FORMAT_VERSION: u32 = 2;
/// Payload bytes past which an append closes its record and begins another.
pub const RECORD_TARGET: usize = 16 * 1024 * 1024;
/// Entries a file always holds before it may be rewritten.
pub const REWRITE_FLOOR: u64 = 65_536;

/// Bytes of the header record's payload.
const HEADER_PAYLOAD: usize = 20;
/// Bytes of the marks at the start of an entries record's payload.
const MARKS_BYTES: usize = 12;
/// Bytes before each entry's value: its table, its id and its length.
const ENTRY_OVERHEAD: usize = 9;
/// The catalog's interned tables, in the order of their tags.
const TABLES: usize = 3;
const STRINGS: u8 = 0;
const LABEL_SETS: u8 = 1;
const TRACES: u8 = 2;

/// The catalog file of a data directory, open for appends.
pub struct CatalogFile {
    path: PathBuf,
    file: File,
    generation: u64,
    /// Each table's next id when the last record was written: where the next append starts.
    marks: Marks,
    /// Entries the file holds, over every record (removed ones included).
    entries: u64,
    /// Bytes of the file's header and whole records.
    bytes: u64,
    /// A failed append may have left bytes past `bytes` that cutting them off did not remove:
    /// they are cut before the next write.
    dirty: bool,
}

/// A set of ids as one bit each, up to the greatest id it holds.
#[derive(Debug, Default)]
struct IdSet {
    words: Vec<u64>,
}

impl IdSet {
    fn of(ids: impl Iterator<Item = u32> + Clone) -> Self {
        let Some(max) = ids.clone().max() else {
            return IdSet::default();
        };
        let mut words = vec![0u64; max as usize / 64 + 1];
        for id in ids {
            words[id as usize / 64] |= 1 << (id % 64);
        }
        IdSet { words }
    }

    fn contains(&self, id: u32) -> bool {
        self.words
            .get(id as usize / 64)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }
}

/// What recovery restored: the generation and which ids of each table came from the file.
/// Each table's ids are a bitset up to the greatest id restored: an eighth of a byte per id
/// (4 million ids take 512 KiB).
#[derive(Debug)]
pub struct RestoredIds {
    generation: u64,
    /// Strings, label sets, traces.
    tables: [IdSet; TABLES],
    torn: bool,
    set_aside: bool,
}

impl RestoredIds {
    fn empty(generation: u64, set_aside: bool) -> Self {
        RestoredIds {
            generation,
            tables: Default::default(),
            torn: false,
            set_aside,
        }
    }

    /// The generation of the catalog file: bucket files written with it can be read by id.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether string `id` was restored from the file.
    pub fn has_string(&self, id: u32) -> bool {
        self.tables[STRINGS as usize].contains(id)
    }

    /// Whether label set `id` was restored from the file.
    pub fn has_label_set(&self, id: u32) -> bool {
        self.tables[LABEL_SETS as usize].contains(id)
    }

    /// Whether trace `id` was restored from the file.
    pub fn has_trace(&self, id: u32) -> bool {
        self.tables[TRACES as usize].contains(id)
    }

    /// Whether the file had a torn tail, cut off (for the torn tails counter).
    pub fn torn(&self) -> bool {
        self.torn
    }

    /// Whether the file was damaged and set aside in `damaged/` (for the damaged files
    /// counter): nothing was restored, and the generation is new.
    pub fn set_aside(&self) -> bool {
        self.set_aside
    }
}

/// How a file's bytes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Clean,
    /// The bytes from the valid ones on are a crash's leftovers.
    Torn,
}

/// The entries and marks read from a file, not yet restored.
struct FileContents<'a> {
    generation: u64,
    /// Each table's entries in the order read.
    tables: [Vec<(u32, &'a [u8])>; TABLES],
    /// The greatest marks read.
    marks: Marks,
    /// Entries over every record.
    entries: u64,
    /// Bytes of the header and the whole, valid records.
    valid_bytes: usize,
    ending: Ending,
}

/// The little-endian u32 at `at` in `bytes`, if they reach that far.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a file's bytes: its header, then each record's entries. `Err` says why the file is
/// damaged.
fn read(bytes: &[u8]) -> Result<FileContents<'_>, String> {
    let header = record_at(bytes).ok_or("the header record is cut short or fails its checksum")?;
    if header.len() != HEADER_PAYLOAD || &header[..8] != MAGIC {
        return Err("the header record is not a catalog file's".into());
    }
    let version = u32_at(header, 8).unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(format!("format version {version}, not {FORMAT_VERSION}"));
    }
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&header[12..20]);
    let mut contents = FileContents {
        generation: u64::from_le_bytes(generation),
        tables: Default::default(),
        marks: Marks::default(),
        entries: 0,
        valid_bytes: RECORD_OVERHEAD + header.len(),
        ending: Ending::Clean,
    };
    let mut offset = contents.valid_bytes;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(payload) = record_at(rest) else {
            if is_tail(rest) {
                contents.ending = Ending::Torn;
                return Ok(contents);
            }
            return Err(format!(
                "the record at byte {offset} fails its checksum with data after it"
            ));
        };
        read_entries(payload, &mut contents)
            .ok_or_else(|| format!("the record at byte {offset} is malformed"))?;
        offset += RECORD_OVERHEAD + payload.len();
        contents.valid_bytes = offset;
    }
    Ok(contents)
}

/// Adds the marks and entries of one entries record's payload to `contents`; `None` if the
/// payload is malformed.
fn read_entries<'a>(payload: &'a [u8], contents: &mut FileContents<'a>) -> Option<()> {
    let marks = Marks {
        strings: u32_at(payload, 0)?,
        label_sets: u32_at(payload, 4)?,
        traces: u32_at(payload, 8)?,
    };
    let mut at = MARKS_BYTES;
    while at < payload.len() {
        let table = *payload.get(at)?;
        let id = u32_at(payload, at + 1)?;
        let length = u32_at(payload, at + 5)? as usize;
        let start = at + ENTRY_OVERHEAD;
        let value = payload.get(start..start.checked_add(length)?)?;
        contents
            .tables
            .get_mut(usize::from(table))?
            .push((id, value));
        contents.entries += 1;
        at = start + length;
    }
    let greatest = &mut contents.marks;
    greatest.strings = greatest.strings.max(marks.strings);
    greatest.label_sets = greatest.label_sets.max(marks.label_sets);
    greatest.traces = greatest.traces.max(marks.traces);
    Some(())
}

/// A table's entries in id order, each id once. `Err` for an id written with two values,
/// which a file never holds.
fn by_id(mut entries: Vec<(u32, &[u8])>) -> Result<Vec<(u32, &[u8])>, u32> {
    entries.sort_by_key(|(id, _)| *id);
    let mut distinct: Vec<(u32, &[u8])> = Vec::with_capacity(entries.len());
    for (id, value) in entries {
        match distinct.last() {
            Some((last, held)) if *last == id => {
                if *held != value {
                    return Err(id);
                }
            }
            _ => distinct.push((id, value)),
        }
    }
    Ok(distinct)
}

/// `entries` (in id order, each id once) with each value under its latest id only: a value
/// removed and interned again later is written under both.
fn latest_only(mut entries: Vec<(u32, &[u8])>) -> Vec<(u32, &[u8])> {
    let latest: FxHashMap<&[u8], u32> = entries.iter().map(|(id, value)| (*value, *id)).collect();
    entries.retain(|(id, value)| latest.get(value) == Some(id));
    entries
}

/// Restores one table's entries through `restore`, each value under its latest id; returns
/// the entries restored. A value under two ids is rare, so the entries are first restored as
/// they are and only de-duplicated by value when the table refuses them for it.
fn restore_table<'a>(
    name: &str,
    entries: Vec<(u32, &'a [u8])>,
    restore: impl Fn(&[(u32, &[u8])]) -> Result<(), RestoreError>,
) -> Result<Vec<(u32, &'a [u8])>, String> {
    let entries =
        by_id(entries).map_err(|id| format!("{name} id {id} is written with two values"))?;
    match restore(&entries) {
        Ok(()) => Ok(entries),
        Err(RestoreError::ValueTaken { .. }) => {
            let latest = latest_only(entries);
            restore(&latest).map_err(|error| error.to_string())?;
            Ok(latest)
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Restores a file's entries into `catalog` and raises its next ids to the marks; returns
/// which ids came from the file. `Err` says why they did not restore. The strings and the
/// label sets are restored at once, on two threads; the traces after them (their rules name
/// strings).
fn restore(contents: &mut FileContents<'_>, catalog: &Catalog) -> Result<RestoredIds, String> {
    let [strings, label_sets, traces] = std::mem::take(&mut contents.tables);
    let (strings, label_sets) = std::thread::scope(|scope| {
        let strings = scope.spawn(|| {
            restore_table("strings", strings, |entries| {
                catalog.symbols.restore_all(entries)
            })
            .map(|entries| IdSet::of(entries.iter().map(|(id, _)| *id)))
        });
        let label_sets = restore_table("label sets", label_sets, |entries| {
            catalog.label_sets.restore_all(entries)
        })
        .map(|entries| IdSet::of(entries.iter().map(|(id, _)| *id)));
        let strings = strings
            .join()
            .unwrap_or_else(|_| Err("restoring the strings stopped".into()));
        (strings, label_sets)
    });
    let (strings, label_sets) = (strings?, label_sets?);
    let traces = restore_table("traces", traces, |entries| catalog.restore_traces(entries))
        .map(|entries| IdSet::of(entries.iter().map(|(id, _)| *id)))?;
    catalog.symbols.advance_next(contents.marks.strings);
    catalog.label_sets.advance_next(contents.marks.label_sets);
    catalog.traces.advance_next(contents.marks.traces);
    Ok(RestoredIds {
        generation: contents.generation,
        tables: [strings, label_sets, traces],
        torn: contents.ending == Ending::Torn,
        set_aside: false,
    })
}

/// Each table's next id, taken traces first, then label sets, then strings: a trace below
/// its mark was interned after its rules' strings, so they are below theirs.
fn current_marks(catalog: &Catalog) -> Marks {
    let traces = catalog.traces.next_id();
    let label_sets = catalog.label_sets.next_id();
    let strings = catalog.symbols.next_id();
    Marks {
        strings,
        label_sets,
        traces,
    }
}

/// The framed header record of a file of `generation`.
fn header(generation: u64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(HEADER_PAYLOAD);
    payload.extend_from_slice(MAGIC);
    payload.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    payload.extend_from_slice(&generation.to_le_bytes());
    let mut framed = Vec::with_capacity(RECORD_OVERHEAD + HEADER_PAYLOAD);
    crate::durability::segment::frame(&payload, &mut framed);
    framed
}

/// Writes entries records into a file from an offset, each closed past [`RECORD_TARGET`]
/// bytes; every record carries the same marks. The first error stops it.
struct RecordWriter<'a> {
    file: &'a File,
    offset: u64,
    marks: [u8; MARKS_BYTES],
    payload: Vec<u8>,
    framed: Vec<u8>,
    entries: u64,
    error: Option<std::io::Error>,
}

impl<'a> RecordWriter<'a> {
    fn new(file: &'a File, offset: u64, marks: Marks) -> Self {
        let mut bytes = [0u8; MARKS_BYTES];
        bytes[..4].copy_from_slice(&marks.strings.to_le_bytes());
        bytes[4..8].copy_from_slice(&marks.label_sets.to_le_bytes());
        bytes[8..].copy_from_slice(&marks.traces.to_le_bytes());
        RecordWriter {
            file,
            offset,
            marks: bytes,
            payload: bytes.to_vec(),
            framed: Vec::new(),
            entries: 0,
            error: None,
        }
    }

    fn push(&mut self, table: u8, id: u32, value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if self.payload.len() > MARKS_BYTES
            && self.payload.len() + ENTRY_OVERHEAD + value.len() > RECORD_TARGET
        {
            self.write_record();
        }
        self.payload.push(table);
        self.payload.extend_from_slice(&id.to_le_bytes());
        // Values are at most 4 GiB: a table's arena places are u32.
        self.payload
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(value);
        self.entries += 1;
    }

    /// Writes the record begun, and begins another.
    fn write_record(&mut self) {
        if self.payload.len() > u32::MAX as usize {
            self.error = Some(std::io::Error::new(
                ErrorKind::InvalidData,
                "a catalog file record over 4 GiB",
            ));
            return;
        }
        self.framed.clear();
        crate::durability::segment::frame(&self.payload, &mut self.framed);
        match self.file.write_all_at(&self.framed, self.offset) {
            Ok(()) => self.offset += self.framed.len() as u64,
            Err(error) => self.error = Some(error),
        }
        self.payload.clear();
        self.payload.extend_from_slice(&self.marks);
    }

    /// Writes the last record (always one, so the marks are written even with no entries);
    /// returns the offset after it and the entries written.
    fn finish(mut self) -> std::io::Result<(u64, u64)> {
        if self.error.is_none() {
            self.write_record();
        }
        match self.error {
            Some(error) => Err(error),
            None => Ok((self.offset, self.entries)),
        }
    }
}

/// Pushes every entry of `catalog` with ids from `from` up to `to`, table by table. Each
/// table's lock is held a chunk of values at a time (see `InternTable::scan_range`).
fn write_entries(catalog: &Catalog, from: Marks, to: Marks, writer: &mut RecordWriter<'_>) {
    catalog
        .symbols
        .table()
        .scan_range(from.strings, to.strings, |id, value| {
            writer.push(STRINGS, id, value)
        });
    catalog
        .label_sets
        .scan_range(from.label_sets, to.label_sets, |id, value| {
            writer.push(LABEL_SETS, id, value)
        });
    catalog
        .traces
        .scan_range(from.traces, to.traces, |id, value| {
            writer.push(TRACES, id, value)
        });
}

/// The temporary file a new or rewritten file is written to before it is renamed over.
fn temporary(path: &Path) -> PathBuf {
    path.with_extension("log.tmp")
}

fn open_read_write(path: &Path, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .open(path)
}

/// Writes a file with `write` into the temporary file beside `path`, syncs it and renames it
/// over `path`; returns it, open. On an error the temporary file is removed and `path` is
/// untouched. The caller syncs the folder ([`sync_folder`]).
fn write_and_rename(
    path: &Path,
    write: impl FnOnce(&File) -> std::io::Result<()>,
) -> std::io::Result<File> {
    let temporary = temporary(path);
    let written = open_read_write(&temporary, true).and_then(|file| {
        write(&file)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        Ok(file)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Syncs the folder holding `path`, so a file created or renamed in it survives a power cut.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(folder) => sync_directory(folder),
        None => Ok(()),
    }
}

/// Moves the damaged file at `path` into `<directory>/damaged/`, under a name not taken yet.
fn set_aside(directory: &Path, path: &Path, reason: &str) -> std::io::Result<()> {
    let damaged = directory.join(DAMAGED_DIRECTORY);
    std::fs::create_dir_all(&damaged)?;
    let mut target = damaged.join(FILE_NAME);
    let mut attempt = 0;
    while target.exists() {
        attempt += 1;
        target = damaged.join(format!("{FILE_NAME}.{attempt}"));
    }
    std::fs::rename(path, &target)?;
    sync_directory(&damaged)?;
    sync_folder(path)?;
    tracing::error!(
        path = %path.display(),
        moved_to = %target.display(),
        reason,
        "the catalog file is damaged: set aside; bucket files are loaded by value"
    );
    Ok(())
}

impl CatalogFile {
    /// Reads `<directory>/catalog/catalog.log` if present and restores its entries into
    /// `catalog` (fresh, nothing interned but the empty label set and trace) with their ids,
    /// and each table's next id to at least the last marks. A torn tail (the last record cut
    /// short or failing its checksum, with nothing after it) is cut off and the file kept.
    /// Any other damage (a bad header, a bad record with bytes after it, entries that do not
    /// restore) moves the file into `<directory>/damaged/` (created if missing) with a
    /// `tracing::error!`, and starts a fresh file with a new generation and an empty
    /// [`RestoredIds`]. (Entries that do not restore may leave the tables restored before
    /// them in `catalog`: harmless, their ids are above nothing the new generation holds.)
    /// No file: a fresh file, new generation, empty [`RestoredIds`]. Returns `Err` only for
    /// I/O errors (cannot read, cut, move or create).
    pub fn open(
        directory: &Path,
        catalog: &Catalog,
    ) -> std::io::Result<(CatalogFile, RestoredIds)> {
        let folder = directory.join(CATALOG_DIRECTORY);
        if !folder.is_dir() {
            std::fs::create_dir_all(&folder)?;
            sync_directory(directory)?;
        }
        let path = folder.join(FILE_NAME);
        match std::fs::remove_file(temporary(&path)) {
            Err(error) if error.kind() != ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let Some(bytes) = bytes else {
            let file = CatalogFile::create(path)?;
            let restored = RestoredIds::empty(file.generation, false);
            return Ok((file, restored));
        };
        let restored = read(&bytes).and_then(|mut contents| {
            let restored = restore(&mut contents, catalog)?;
            Ok((contents, restored))
        });
        match restored {
            Ok((contents, restored)) => {
                if contents.ending == Ending::Torn {
                    tracing::warn!(
                        path = %path.display(),
                        kept = contents.valid_bytes,
                        cut = bytes.len() - contents.valid_bytes,
                        "cut the torn tail of the catalog file"
                    );
                }
                let file = open_read_write(&path, false)?;
                if contents.valid_bytes < bytes.len() {
                    file.set_len(contents.valid_bytes as u64)?;
                    file.sync_all()?;
                }
                let file = CatalogFile {
                    path,
                    file,
                    generation: contents.generation,
                    marks: contents.marks,
                    entries: contents.entries,
                    bytes: contents.valid_bytes as u64,
                    dirty: false,
                };
                Ok((file, restored))
            }
            Err(reason) => {
                set_aside(directory, &path, &reason)?;
                let file = CatalogFile::create(path)?;
                let restored = RestoredIds::empty(file.generation, true);
                Ok((file, restored))
            }
        }
    }

    /// A new file at `path` of a new generation, holding its header only: written beside it,
    /// synced and renamed into place.
    fn create(path: PathBuf) -> std::io::Result<CatalogFile> {
        let generation = rand::random::<u64>();
        let header = header(generation);
        let file = write_and_rename(&path, |file| file.write_all_at(&header, 0))?;
        sync_folder(&path)?;
        Ok(CatalogFile {
            path,
            file,
            generation,
            marks: Marks::default(),
            entries: 0,
            bytes: header.len() as u64,
            dirty: false,
        })
    }

    /// The generation of this file: a random number chosen when the file was created, kept
    /// by appends and rewrites.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Appends every entry interned since the last append (ids from the last marks up to
    /// each table's next id) and the new marks as one record (several past
    /// [`RECORD_TARGET`] bytes), then flushes it to disk (`sync_data`); nothing when no table
    /// gained an id. When the file holds more than twice as many entries as the catalog
    /// holds live (and more than [`REWRITE_FLOOR`]), rewrites it instead: header (same
    /// generation) and every live entry, into a `.tmp` beside it, synced, renamed over, the
    /// folder synced. An error leaves the previous file valid (its bytes past the last whole
    /// record are cut off, now or before the next write), and the next append writes the same
    /// entries again.
    pub fn append(&mut self, catalog: &Catalog) -> std::io::Result<()> {
        let marks = current_marks(catalog);
        if marks == self.marks {
            return Ok(());
        }
        let live = [
            catalog.symbols.len(),
            catalog.label_sets.len(),
            catalog.traces.len(),
        ]
        .iter()
        .sum::<usize>() as u64;
        if self.entries > REWRITE_FLOOR && self.entries > live.saturating_mul(2) {
            return self.rewrite(catalog, marks);
        }
        if self.dirty {
            self.file.set_len(self.bytes)?;
            self.dirty = false;
        }
        let mut writer = RecordWriter::new(&self.file, self.bytes, marks);
        write_entries(catalog, self.marks, marks, &mut writer);
        let written = writer
            .finish()
            .and_then(|written| self.file.sync_data().map(|()| written));
        match written {
            Ok((end, entries)) => {
                self.bytes = end;
                self.entries += entries;
                self.marks = marks;
                Ok(())
            }
            Err(error) => {
                self.dirty = self
                    .file
                    .set_len(self.bytes)
                    .and_then(|()| self.file.sync_data())
                    .is_err();
                Err(error)
            }
        }
    }

    /// Rewrites the file as its header and every live entry below `marks`, with `marks`.
    fn rewrite(&mut self, catalog: &Catalog, marks: Marks) -> std::io::Result<()> {
        let header = header(self.generation);
        let mut written = (0, 0);
        let file = write_and_rename(&self.path, |file| {
            file.write_all_at(&header, 0)?;
            let mut writer = RecordWriter::new(file, header.len() as u64, marks);
            write_entries(catalog, Marks::default(), marks, &mut writer);
            written = writer.finish()?;
            Ok(())
        })?;
        // Renamed: the new file is the file from now on, even if syncing its folder fails.
        self.file = file;
        (self.bytes, self.entries) = written;
        self.marks = marks;
        self.dirty = false;
        tracing::debug!(
            entries = self.entries,
            bytes = self.bytes,
            "rewrote the catalog file with its live entries"
        );
        sync_folder(&self.path)
    }

    /// The file's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogLimits;
    use crate::ingest::policy_rules::rules_of_trace;
    use crate::proto::{PolicyHit, PolicyKind, PolicyTrace};
    use prost::Message;

    fn catalog() -> Catalog {
        Catalog::new(CatalogLimits::default())
    }

    fn file_path(directory: &Path) -> PathBuf {
        directory.join(CATALOG_DIRECTORY).join(FILE_NAME)
    }

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    fn policy_trace(name: &str) -> PolicyTrace {
        PolicyTrace {
            enforced_policies: vec![PolicyHit {
                kind: PolicyKind::CalicoNetworkPolicy as i32,
                tier: "default".into(),
                namespace: "web".into(),
                name: name.into(),
                action: 1,
                rule_index: 3,
                ..PolicyHit::default()
            }],
            ..PolicyTrace::default()
        }
    }

    fn intern_trace(catalog: &Catalog, trace: &PolicyTrace) -> u32 {
        catalog
            .intern_trace(&trace.encode_to_vec(), || {
                rules_of_trace(Some(trace), &catalog.symbols)
            })
            .expect("room for a trace")
    }

    /// The entries of each record after the header, as (table, id) pairs.
    fn records(directory: &Path) -> Vec<Vec<(u8, u32)>> {
        let bytes = std::fs::read(file_path(directory)).expect("the file reads");
        let mut offset = RECORD_OVERHEAD + HEADER_PAYLOAD;
        let mut records = Vec::new();
        while let Some(payload) = record_at(&bytes[offset..]) {
            let mut entries = Vec::new();
            let mut at = MARKS_BYTES;
            while at < payload.len() {
                let id = u32_at(payload, at + 1).expect("an id");
                entries.push((payload[at], id));
                at += ENTRY_OVERHEAD + u32_at(payload, at + 5).expect("a length") as usize;
            }
            records.push(entries);
            offset += RECORD_OVERHEAD + payload.len();
        }
        assert_eq!(offset, bytes.len(), "whole records only");
        records
    }

    /// SPEC §13.2: after a restart the catalog's ids mean what they meant before it.
    #[test]
    fn appended_entries_restore_with_their_ids_and_later_values_get_new_ones() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let first = catalog();
        let (mut file, restored) = CatalogFile::open(directory.path(), &first).expect("opens");
        assert_eq!(restored.generation(), file.generation());
        assert!(!restored.has_string(0) && !restored.has_label_set(0) && !restored.has_trace(0));
        let header_bytes = file.bytes();
        assert_eq!(header_bytes, (RECORD_OVERHEAD + HEADER_PAYLOAD) as u64);
        assert_eq!(
            std::fs::metadata(file_path(directory.path()))
                .expect("a file")
                .len(),
            header_bytes
        );

        let pod = first.symbols.intern("pod-a").expect("room");
        let namespace = first.symbols.intern("default-ns").expect("room");
        let web = first
            .label_sets
            .intern(&labels(&["app=web", "team=core"]))
            .expect("room");
        let trace = policy_trace("allow-web");
        let trace_id = intern_trace(&first, &trace);
        let gone = first.symbols.intern("gone").expect("room");
        let (round, _) = first.begin_round();
        assert_eq!(
            first.symbols.table().remove_unused(&[gone], round),
            vec![gone]
        );
        let handed = first.take_new_rules();
        assert_eq!(handed.len(), 2);
        file.append(&first).expect("appends");
        let appended = file.bytes();
        assert!(appended > header_bytes);
        file.append(&first).expect("nothing to append");
        assert_eq!(file.bytes(), appended, "no table gained an id");

        let later = first.symbols.intern("later").expect("room");
        file.append(&first).expect("appends");
        let written = records(directory.path());
        assert_eq!(written.len(), 2);
        assert_eq!(written[1], vec![(STRINGS, later)], "only the new entry");
        assert!(
            !written[0].contains(&(STRINGS, gone)),
            "removed before it was written"
        );
        assert_eq!(
            file.bytes(),
            std::fs::metadata(file_path(directory.path()))
                .expect("a file")
                .len()
        );
        let generation = file.generation();
        let next = (
            first.symbols.next_id(),
            first.label_sets.next_id(),
            first.traces.next_id(),
        );
        drop(file);

        let second = catalog();
        let (mut file, restored) = CatalogFile::open(directory.path(), &second).expect("reopens");
        assert_eq!(
            (file.generation(), restored.generation()),
            (generation, generation)
        );
        assert!(!restored.torn() && !restored.set_aside());
        for id in [0, pod, namespace, later] {
            assert!(restored.has_string(id));
            assert_eq!(second.symbols.resolve(id), first.symbols.resolve(id));
        }
        assert!(!restored.has_string(gone));
        assert!(restored.has_label_set(web) && restored.has_label_set(0));
        assert_eq!(second.label_set(web), labels(&["app=web", "team=core"]));
        assert!(restored.has_trace(trace_id) && restored.has_trace(0));
        assert!(!restored.has_trace(trace_id + 1));
        assert_eq!(second.trace(trace_id), trace);
        assert_eq!(
            second.take_new_rules(),
            handed,
            "the restored trace's rules, queued"
        );
        assert!(second.symbols.next_id() >= next.0);
        assert!(second.label_sets.next_id() >= next.1);
        assert!(second.traces.next_id() >= next.2);
        let fresh = second.symbols.intern("fresh").expect("room");
        assert!(fresh >= next.0, "a new value gets an id above the marks");
        assert_eq!(second.symbols.lookup("gone"), None);
        assert!(second.symbols.intern("gone").expect("room") > gone);
        assert_eq!(second.symbols.lookup("pod-a"), Some(pod));

        file.append(&second).expect("appends");
        let written = records(directory.path());
        assert_eq!(written.len(), 3);
        assert_eq!(
            written[2],
            vec![(STRINGS, fresh), (STRINGS, fresh + 1)],
            "only the values interned after the restore"
        );
    }

    /// SPEC §13.4: a torn tail is truncated at recovery.
    #[test]
    fn a_torn_tail_is_cut_and_the_records_before_it_restore() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let first = catalog();
        let (mut file, _) = CatalogFile::open(directory.path(), &first).expect("opens");
        let kept = first.symbols.intern("kept").expect("room");
        file.append(&first).expect("appends");
        let whole = file.bytes();
        let torn = first.symbols.intern("torn").expect("room");
        let set = first.label_sets.intern(&labels(&["a=b"])).expect("room");
        file.append(&first).expect("appends");
        let generation = file.generation();
        drop(file);
        let path = file_path(directory.path());
        let length = std::fs::metadata(&path).expect("a file").len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|file| file.set_len(length - 3))
            .expect("cut mid-record");

        let second = catalog();
        let (mut file, restored) = CatalogFile::open(directory.path(), &second).expect("reopens");
        assert_eq!(restored.generation(), generation, "the generation is kept");
        assert!(restored.torn() && !restored.set_aside());
        assert!(restored.has_string(kept));
        assert_eq!(second.symbols.resolve(kept), "kept");
        assert!(!restored.has_string(torn) && !restored.has_label_set(set));
        assert_eq!(second.symbols.lookup("torn"), None);
        assert_eq!(file.bytes(), whole);
        assert_eq!(
            std::fs::metadata(&path).expect("a file").len(),
            whole,
            "the tail is cut"
        );
        let again = second.symbols.intern("torn").expect("room");
        assert!(again > kept);
        file.append(&second).expect("appends after the cut");
        drop(file);
        let (_, restored) = CatalogFile::open(directory.path(), &catalog()).expect("reopens");
        assert!(!restored.torn());
        assert!(restored.has_string(again));
    }

    /// SPEC §13.4: a file failing its checksum is set aside, and start-up goes on.
    #[test]
    fn a_damaged_middle_record_sets_the_file_aside_and_starts_a_new_generation() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let first = catalog();
        let (mut file, _) = CatalogFile::open(directory.path(), &first).expect("opens");
        let mut ids = Vec::new();
        let mut ends = vec![file.bytes()];
        for value in ["one", "two", "three"] {
            ids.push(first.symbols.intern(value).expect("room"));
            file.append(&first).expect("appends");
            ends.push(file.bytes());
        }
        let generation = file.generation();
        drop(file);
        let path = file_path(directory.path());
        let mut bytes = std::fs::read(&path).expect("the file reads");
        let middle = (ends[1] + ends[2]) as usize / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&path, &bytes).expect("written back");

        let second = catalog();
        let (file, restored) = CatalogFile::open(directory.path(), &second).expect("reopens");
        assert!(restored.set_aside() && !restored.torn());
        assert_ne!(restored.generation(), generation, "a new generation");
        assert_eq!(file.generation(), restored.generation());
        assert!(ids.iter().all(|id| !restored.has_string(*id)));
        assert!(!restored.has_string(0) && !restored.has_label_set(0));
        let damaged = directory.path().join(DAMAGED_DIRECTORY).join(FILE_NAME);
        assert_eq!(std::fs::read(&damaged).expect("set aside"), bytes);
        assert_eq!(file.bytes(), (RECORD_OVERHEAD + HEADER_PAYLOAD) as u64);
        assert_eq!(
            std::fs::metadata(&path).expect("a new file").len(),
            file.bytes()
        );
        drop(file);
        let (_, again) = CatalogFile::open(directory.path(), &catalog()).expect("reopens");
        assert_eq!(
            again.generation(),
            restored.generation(),
            "the new file is kept"
        );
    }

    /// SPEC §13.4: a file that does not read back is set aside, and start-up goes on.
    #[test]
    fn a_bad_header_or_entries_that_do_not_restore_set_the_file_aside() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = file_path(directory.path());
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("the folder");
        std::fs::write(&path, b"not a catalog file").expect("written");
        let (_, restored) = CatalogFile::open(directory.path(), &catalog()).expect("opens");
        assert!(restored.set_aside());

        // Whole records, valid checksums, but one id written with two values.
        let mut bytes = header(7);
        let mut payload = vec![0u8; MARKS_BYTES];
        for value in [&b"a"[..], b"b"] {
            payload.push(STRINGS);
            payload.extend_from_slice(&5u32.to_le_bytes());
            payload.extend_from_slice(&(value.len() as u32).to_le_bytes());
            payload.extend_from_slice(value);
        }
        crate::durability::segment::frame(&payload, &mut bytes);
        std::fs::write(&path, &bytes).expect("written");
        let restarted = catalog();
        let (_, restored) = CatalogFile::open(directory.path(), &restarted).expect("opens");
        assert!(restored.set_aside());
        assert_ne!(restored.generation(), 7);
        assert_eq!(restarted.symbols.len(), 1, "nothing restored");

        // A label set that is not a stored label set.
        let mut bytes = header(8);
        let mut payload = vec![0u8; MARKS_BYTES];
        payload.push(LABEL_SETS);
        payload.extend_from_slice(&3u32.to_le_bytes());
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(b"\x05a");
        crate::durability::segment::frame(&payload, &mut bytes);
        std::fs::write(&path, &bytes).expect("written");
        let (_, restored) = CatalogFile::open(directory.path(), &catalog()).expect("opens");
        assert!(restored.set_aside());

        // A file of format version 1 (label sets stored before well-known keys had numbers),
        // whole and checksummed: not read as version 2.
        let mut old_header = MAGIC.to_vec();
        old_header.extend_from_slice(&1u32.to_le_bytes());
        old_header.extend_from_slice(&9u64.to_le_bytes());
        let mut bytes = Vec::new();
        crate::durability::segment::frame(&old_header, &mut bytes);
        std::fs::write(&path, &bytes).expect("written");
        let (_, restored) = CatalogFile::open(directory.path(), &catalog()).expect("opens");
        assert!(restored.set_aside());
        assert_ne!(restored.generation(), 9);
        let damaged: Vec<_> = std::fs::read_dir(directory.path().join(DAMAGED_DIRECTORY))
            .expect("the damaged folder")
            .collect();
        assert_eq!(damaged.len(), 4, "each set aside under its own name");
    }

    #[test]
    fn a_value_written_under_two_ids_restores_under_the_later() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let first = catalog();
        let (mut file, _) = CatalogFile::open(directory.path(), &first).expect("opens");
        let old = first.symbols.intern("churn").expect("room");
        file.append(&first).expect("appends");
        let (round, _) = first.begin_round();
        assert_eq!(
            first.symbols.table().remove_unused(&[old], round),
            vec![old]
        );
        let new = first.symbols.intern("churn").expect("room");
        assert!(new > old);
        file.append(&first).expect("appends");
        drop(file);
        let second = catalog();
        let (_, restored) = CatalogFile::open(directory.path(), &second).expect("reopens");
        assert!(!restored.has_string(old) && restored.has_string(new));
        assert_eq!(second.symbols.lookup("churn"), Some(new));
        assert_eq!(second.symbols.resolve(old), "");
    }

    #[test]
    fn a_file_mostly_of_removed_entries_is_rewritten_with_the_live_ones() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let first = catalog();
        let (mut file, _) = CatalogFile::open(directory.path(), &first).expect("opens");
        let values: Vec<String> = (0..70_000).map(|n| format!("pod-{n:06}")).collect();
        let ids = first.symbols.intern_all(&values).expect("room");
        file.append(&first).expect("appends");
        let full = file.bytes();
        let (round, _) = first.begin_round();
        let (kept, unused): (Vec<u32>, Vec<u32>) = ids.iter().partition(|id| *id % 1000 == 0);
        assert_eq!(
            first.symbols.table().remove_unused(&unused, round).len(),
            unused.len()
        );
        let generation = file.generation();
        let last = first.symbols.intern("last").expect("room");
        file.append(&first).expect("rewrites");
        assert!(file.bytes() < full / 100, "only the live entries");
        assert_eq!(file.generation(), generation);
        assert_eq!(
            records(directory.path()).len(),
            1,
            "one record of every live entry"
        );
        assert!(!temporary(&file_path(directory.path())).exists());
        let after = first.symbols.intern("after").expect("room");
        file.append(&first).expect("appends to the rewritten file");
        drop(file);

        let second = catalog();
        let (_, restored) = CatalogFile::open(directory.path(), &second).expect("reopens");
        assert_eq!(restored.generation(), generation);
        for id in kept.iter().chain([&last, &after]) {
            assert!(restored.has_string(*id));
            assert_eq!(second.symbols.resolve(*id), first.symbols.resolve(*id));
        }
        assert!(unused.iter().all(|id| !restored.has_string(*id)));
        assert_eq!(second.symbols.len(), kept.len() + 3, "and the empty string");
        assert!(second.symbols.next_id() > after);
    }
}
