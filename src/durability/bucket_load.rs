//! Turns a bucket file's decoded columns into engine records (SPEC §13.4). The text columns
//! come as dictionary codes (`coded_column`): each distinct string, enum and policy trace of
//! a column chunk is decoded and interned once, and rows find their ids by index; each row's
//! label sets are encoded as the catalog stores them and found by their bytes, a chunk's at
//! once. Each row becomes a `FlowRecord` carrying its totals and update count.

use eddy_dataflows::model::{FlowKey, FlowRecord};
use prost::Message;
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::durability::bucket_read::{enum_value, RowGroup, Values};
use crate::durability::catalog_file::RestoredIds;
use crate::durability::checkpoint::POLICIES_PROTO_COLUMN;
use crate::durability::coded_column::Coded;
use crate::ingest::canonical::{canonical_trace_bytes, flow_id_in};
use crate::ingest::policy_rules::rules_of_trace;
use crate::ingest::Measures;
use crate::intern::encoding::encode_labels;
use crate::intern::InternerFull;
use crate::proto::{Action, EndpointType, PolicyTrace, Reporter};
use crate::proto_json::from_json;
use crate::retention::Retention;

/// The records of one row group, with the updates they carry and those past retention.
#[derive(Default)]
pub struct Loaded {
    /// One record per row inside retention.
    pub records: Vec<FlowRecord>,
    /// Updates summed into them.
    pub updates: u64,
    /// Updates of rows past retention, skipped.
    pub expired: u64,
    /// Whether the rows were read by their catalog ids ([`records_by_ids`]).
    pub by_ids: bool,
}

impl Loaded {
    /// Nothing loaded yet, with room for the records of `rows` rows read by catalog ids or
    /// not (`by_ids`).
    fn for_rows(rows: usize, by_ids: bool) -> Loaded {
        Loaded {
            records: Vec::with_capacity(rows),
            by_ids,
            ..Loaded::default()
        }
    }
}

/// Why a row group does not load: damage, or a catalog table without room.
pub enum NotLoaded {
    /// The columns are not a bucket file's.
    Damaged(String),
    /// A catalog table is full.
    Full(InternerFull),
}

impl From<String> for NotLoaded {
    fn from(reason: String) -> Self {
        NotLoaded::Damaged(reason)
    }
}

impl From<&str> for NotLoaded {
    fn from(reason: &str) -> Self {
        NotLoaded::Damaged(reason.into())
    }
}

impl From<InternerFull> for NotLoaded {
    fn from(full: InternerFull) -> Self {
        NotLoaded::Full(full)
    }
}

/// What recovery keeps across files: each trace decoded once, and the converting thread's
/// buffers, reused from one row group to the next. Valid while the catalog's gate is held (no
/// collection removes an id meanwhile).
#[derive(Default)]
pub struct Interned {
    /// Traces from `policies_proto`, by their bytes: id and canonical encoding.
    encoded_traces: FxHashMap<Box<[u8]>, (u32, Vec<u8>)>,
    /// Traces from the JSON of older files, by their bytes: id and canonical encoding.
    json_traces: FxHashMap<Box<[u8]>, (u32, Vec<u8>)>,
    /// The stored bytes of a list column's label sets, one after the other.
    label_bytes: Vec<u8>,
    /// Where each row's label set ends in `label_bytes`.
    label_ends: Vec<usize>,
    /// A row's key fields laid out for hashing its flow id.
    key_bytes: Vec<u8>,
}

/// A string column of a row group: its rows' codes, and each distinct value's catalog id
/// and text.
type StringColumn<'a> = (&'a [u32], Vec<(u32, &'a str)>);

/// An enum column of a row group: its rows' codes, and each distinct value's number.
type EnumColumn<'a> = (&'a [u32], Vec<i32>);

/// A text column chunk of one value per row.
fn text_column(columns: &[Values], index: usize, count: usize) -> Result<&Coded, String> {
    match columns.get(index) {
        Some(Values::Text(coded)) if coded.indices.len() == count => Ok(coded),
        _ => Err(format!("column {index} is not {count} texts")),
    }
}

/// The UTF-8 text of a value.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|error| error.to_string())
}

/// Appends the stored bytes of the label set of `labels` (sorted and de-duplicated here, as
/// the catalog keeps them) to `bytes`, and notes where it ends.
fn push_label_set(labels: &mut Vec<&str>, bytes: &mut Vec<u8>, ends: &mut Vec<usize>) {
    if !labels.windows(2).all(|pair| pair[0] < pair[1]) {
        labels.sort_unstable();
        labels.dedup();
    }
    encode_labels(labels.iter().copied(), bytes);
    ends.push(bytes.len());
}

/// A list column's label sets, one catalog id per row: each row's set is encoded as the
/// catalog stores it (the chunk's distinct labels checked as UTF-8 once), and the chunk's
/// sets are interned under one hold of the table's lock, found by their bytes.
fn label_sets_of(
    coded: &Coded,
    count: usize,
    catalog: &Catalog,
    interned: &mut Interned,
) -> Result<Vec<u32>, NotLoaded> {
    let texts: Vec<&str> = coded
        .distinct
        .iter()
        .map(|label| utf8(label))
        .collect::<Result<_, _>>()?;
    let Interned {
        label_bytes: bytes,
        label_ends: ends,
        ..
    } = interned;
    bytes.clear();
    ends.clear();
    ends.reserve(count);
    // Each row's labels are collected from the levels as they come (a repetition level of 0
    // starts a row, a definition level above 0 is a label).
    let mut labels: Vec<&str> = Vec::new();
    let (mut next, mut started) = (0, false);
    for (defined, repeated) in coded.definition.iter().zip(&coded.repetition) {
        if *repeated == 0 {
            if started {
                push_label_set(&mut labels, bytes, ends);
            }
            labels.clear();
            started = true;
        }
        if *defined > 0 {
            if !started {
                return Err("a list starts with a repeated level".to_string().into());
            }
            let element = coded
                .indices
                .get(next)
                .ok_or("fewer label values than levels")?;
            next += 1;
            labels.push(
                texts
                    .get(*element as usize)
                    .ok_or("a label code past the labels")?,
            );
        }
    }
    if started {
        push_label_set(&mut labels, bytes, ends);
    }
    if ends.len() != count || coded.definition.len() != coded.repetition.len() {
        return Err("a label column has the wrong number of rows"
            .to_string()
            .into());
    }
    let mut start = 0;
    let stored: Vec<&[u8]> = ends
        .iter()
        .map(|end| {
            let set = &bytes[start..*end];
            start = *end;
            set
        })
        .collect();
    Ok(catalog.label_sets.intern_all_stored(&stored)?)
}

/// The catalog id and canonical encoding of each distinct trace of a column chunk, decoded
/// from protobuf (`policies_proto`) or from the JSON of older files.
fn traces_of(
    coded: &Coded,
    encoded: bool,
    catalog: &Catalog,
    interned: &mut Interned,
) -> Result<Vec<(u32, Vec<u8>)>, NotLoaded> {
    let known = if encoded {
        &mut interned.encoded_traces
    } else {
        &mut interned.json_traces
    };
    let mut traces = Vec::with_capacity(coded.distinct.len());
    for written in &coded.distinct {
        if let Some(trace) = known.get(written.as_ref()) {
            traces.push(trace.clone());
            continue;
        }
        let trace = if encoded {
            PolicyTrace::decode(written.as_ref()).map_err(|error| error.to_string())?
        } else {
            from_json::<PolicyTrace>(written.as_ref())?
        };
        let bytes = canonical_trace_bytes(Some(&trace));
        let id = catalog.intern_trace(&bytes, || rules_of_trace(Some(&trace), &catalog.symbols))?;
        known.insert(written.as_ref().into(), (id, bytes.clone()));
        traces.push((id, bytes));
    }
    Ok(traces)
}

/// The enum columns at `indices` (source type, destination type, reporter, action): each
/// row's code, and each code's number.
fn enum_columns(
    columns: &[Values],
    indices: [usize; 4],
    count: usize,
) -> Result<Vec<EnumColumn<'_>>, String> {
    let mut enums = Vec::with_capacity(4);
    for (position, index) in indices.into_iter().enumerate() {
        let coded = text_column(columns, index, count)?;
        let values = coded
            .distinct
            .iter()
            .map(|bytes| {
                enum_value(bytes, |name| match position {
                    0 | 1 => EndpointType::from_str_name(name).map(|value| value as i32),
                    2 => Reporter::from_str_name(name).map(|value| value as i32),
                    _ => Action::from_str_name(name).map(|value| value as i32),
                })
            })
            .collect::<Result<_, _>>()?;
        enums.push((coded.indices.as_slice(), values));
    }
    Ok(enums)
}

/// Each row's four enum numbers.
fn enums_of(enums: &[EnumColumn], row: usize) -> Result<[i32; 4], String> {
    let mut numbers = [0i32; 4];
    for (index, (codes, values)) in enums.iter().enumerate() {
        numbers[index] = *values
            .get(codes[row] as usize)
            .ok_or("an enum code past its values")?;
    }
    Ok(numbers)
}

/// The measures of row `row` (its bucket's bounds and counters, the last its update count)
/// and the updates it carries, unless they are past `retention` at `now`: then its updates
/// count in `loaded` as expired.
fn retained(
    start: &[i64],
    end: &[i64],
    counters: &[&[i64]],
    row: usize,
    (retention, now): (&Retention, i64),
    loaded: &mut Loaded,
) -> Option<(Measures, u64)> {
    let updates = counters[7][row].max(0) as u64;
    let measures = Measures {
        start_time: start[row],
        end_time: end[row],
        counters: std::array::from_fn(|index| counters[index][row]),
    };
    if measures.validate(retention, now).is_ok() {
        return Some((measures, updates));
    }
    loaded.expired += updates;
    None
}

/// The records of `group`, interned into `catalog` (through `interned`), at `now` under
/// `retention`.
pub fn records_of(
    group: &RowGroup,
    catalog: &Catalog,
    interned: &mut Interned,
    retention: &Retention,
    now: i64,
) -> Result<Loaded, NotLoaded> {
    let count = group.count;
    let columns = &group.columns;
    let int = |index: usize| match columns.get(index) {
        Some(Values::Int(values)) if values.len() == count => Ok(values.as_slice()),
        _ => Err(format!("column {index} is not {count} integers")),
    };
    let mut strings: Vec<StringColumn> = Vec::with_capacity(8);
    for index in [3, 4, 6, 7, 10, 11, 12, 14] {
        let coded = text_column(columns, index, count)?;
        let texts: Vec<&str> = coded
            .distinct
            .iter()
            .map(|value| utf8(value))
            .collect::<Result<_, _>>()?;
        let ids = catalog.symbols.intern_all(&texts)?;
        strings.push((&coded.indices, ids.into_iter().zip(texts).collect()));
    }
    let enums = enum_columns(columns, [5, 8, 15, 16], count)?;
    let (start, end, dest_port, service_port) = (int(0)?, int(1)?, int(9)?, int(13)?);
    let counters: Vec<&[i64]> = (20..28).map(int).collect::<Result<_, _>>()?;
    let encoded = columns.len() > POLICIES_PROTO_COLUMN;
    let trace_column = text_column(
        columns,
        if encoded { POLICIES_PROTO_COLUMN } else { 17 },
        count,
    )?;
    let traces = traces_of(trace_column, encoded, catalog, interned)?;
    let mut labels = Vec::with_capacity(2);
    for index in [18, 19] {
        let Some(Values::Text(coded)) = columns.get(index) else {
            return Err(format!("column {index} is not a list").into());
        };
        labels.push(label_sets_of(coded, count, catalog, interned)?);
    }
    let mut loaded = Loaded::for_rows(count, false);
    for row in 0..count {
        let Some((measures, updates)) =
            retained(start, end, &counters, row, (retention, now), &mut loaded)
        else {
            continue;
        };
        let mut ids = [0u32; 8];
        let mut texts = [""; 8];
        for (index, (codes, values)) in strings.iter().enumerate() {
            let (id, text) = values
                .get(codes[row] as usize)
                .ok_or("a text code past its values")?;
            ids[index] = *id;
            texts[index] = text;
        }
        let [source_type, dest_type, reporter, action] = enums_of(&enums, row)?;
        let (trace, trace_bytes) = traces
            .get(trace_column.indices[row] as usize)
            .ok_or("a trace code past its traces")?;
        let id = flow_id_in(
            texts,
            [
                i64::from(source_type),
                i64::from(dest_type),
                dest_port[row],
                service_port[row],
                i64::from(reporter),
                i64::from(action),
            ],
            trace_bytes,
            &mut interned.key_bytes,
        );
        let mut stats = measures.stats();
        stats.records = counters[7][row];
        loaded.updates += updates;
        loaded.records.push(FlowRecord {
            key: FlowKey {
                id,
                source_name: ids[0],
                source_namespace: ids[1],
                source_type,
                dest_name: ids[2],
                dest_namespace: ids[3],
                dest_type,
                dest_port: dest_port[row],
                dest_service_name: ids[4],
                dest_service_namespace: ids[5],
                dest_service_port_name: ids[6],
                dest_service_port: service_port[row],
                proto: ids[7],
                reporter,
                action,
                trace: *trace,
            },
            bucket: retention.bucket_of(measures.start_time),
            labels: (labels[0][row], labels[1][row]),
            stats,
        });
    }
    Ok(loaded)
}

/// The columns a file with catalog ids is read by (see [`records_by_ids`]): bucket start and
/// end, id, the four enums, the two ports, the eight counters, the catalog ids. Its texts are
/// not read.
pub const BY_ID_COLUMNS: [usize; 28] = [
    0, 1, 2, 5, 8, 15, 16, 9, 13, 20, 21, 22, 23, 24, 25, 26, 27, 29, 30, 31, 32, 33, 34, 35, 36,
    37, 38, 39,
];

/// The records of `group`, read by [`BY_ID_COLUMNS`] from a file whose catalog ids refer to
/// the catalog file `restored` came from, at `now` under `retention`. `None` when a row
/// names an id the catalog file did not restore: the group then loads by its values.
pub fn records_by_ids(
    group: &RowGroup,
    restored: &RestoredIds,
    retention: &Retention,
    now: i64,
) -> Result<Option<Loaded>, String> {
    let count = group.count;
    let columns = &group.columns;
    let int = |index: usize| match columns.get(index) {
        Some(Values::Int(values)) if values.len() == count => Ok(values.as_slice()),
        _ => Err(format!(
            "column {} is not {count} integers",
            BY_ID_COLUMNS[index.min(27)]
        )),
    };
    let (start, end, flow_id) = (int(0)?, int(1)?, int(2)?);
    let enums = enum_columns(columns, [3, 4, 5, 6], count)?;
    let (dest_port, service_port) = (int(7)?, int(8)?);
    let counters: Vec<&[i64]> = (9..17).map(int).collect::<Result<_, _>>()?;
    let ids: Vec<&[i64]> = (17..28).map(int).collect::<Result<_, _>>()?;
    let mut loaded = Loaded::for_rows(count, true);
    for row in 0..count {
        let Some((measures, updates)) =
            retained(start, end, &counters, row, (retention, now), &mut loaded)
        else {
            continue;
        };
        if flow_id[row] <= 0 {
            return Ok(None);
        }
        let id = |column: usize| u32::try_from(ids[column][row]).ok();
        let mut strings = [0u32; 8];
        for (column, string) in strings.iter_mut().enumerate() {
            match id(column) {
                Some(value) if restored.has_string(value) => *string = value,
                _ => return Ok(None),
            }
        }
        let (Some(trace), Some(source_labels), Some(dest_labels)) = (id(8), id(9), id(10)) else {
            return Ok(None);
        };
        if !(restored.has_trace(trace)
            && restored.has_label_set(source_labels)
            && restored.has_label_set(dest_labels))
        {
            return Ok(None);
        }
        let [source_type, dest_type, reporter, action] = enums_of(&enums, row)?;
        let mut stats = measures.stats();
        stats.records = counters[7][row];
        loaded.updates += updates;
        loaded.records.push(FlowRecord {
            key: FlowKey {
                id: flow_id[row] as u64,
                source_name: strings[0],
                source_namespace: strings[1],
                source_type,
                dest_name: strings[2],
                dest_namespace: strings[3],
                dest_type,
                dest_port: dest_port[row],
                dest_service_name: strings[4],
                dest_service_namespace: strings[5],
                dest_service_port_name: strings[6],
                dest_service_port: service_port[row],
                proto: strings[7],
                reporter,
                action,
                trace,
            },
            bucket: retention.bucket_of(measures.start_time),
            labels: (source_labels, dest_labels),
            stats,
        });
    }
    Ok(Some(loaded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogLimits;
    use crate::durability::bucket_read::{open_bucket, read_bucket, BucketOpen, BucketRead};
    use crate::durability::catalog_file::CatalogFile;
    use crate::durability::checkpoint::{path_of, write_bucket, BucketRow, CatalogIds};
    use crate::durability::test_rows;
    use crate::ingest::{prepare, Bounds, InputLimits};
    use crate::proto::{FlowUpdate, PolicyHit};

    const RETENTION: Retention = Retention {
        window: 15,
        closed_buckets: 240,
    };
    const NOW: i64 = 1_700_000_200;

    /// The test row of flow `id` to `dest` with `labels`, in the bucket starting at
    /// `start_time`, its trace's hits named `hits`.
    fn row(id: i64, dest: &str, labels: &[&str], start_time: i64, hits: &[&str]) -> BucketRow {
        let mut row = test_rows::row(id, labels, 10 + id);
        row.flow.start_time = start_time;
        row.flow.end_time = start_time + 15;
        let key = row.flow.key.as_mut().expect("the test row has a key");
        key.dest_name = dest.into();
        let trace = key.policies.as_mut().expect("the test row has a trace");
        let hit = trace.enforced_policies[0].clone();
        trace.enforced_policies = hits
            .iter()
            .enumerate()
            .map(|(index, name)| PolicyHit {
                name: (*name).into(),
                policy_index: index as i64,
                ..hit.clone()
            })
            .collect();
        row
    }

    /// What `prepare` makes of `rows`, each record carrying its row's update count.
    fn prepared(rows: &[BucketRow], catalog: &Catalog) -> Vec<FlowRecord> {
        let limits = InputLimits::default();
        let bounds = Bounds {
            retention: &RETENTION,
            limits: &limits,
            now: NOW,
        };
        rows.iter()
            .filter_map(|row| {
                let update = FlowUpdate {
                    flow: Some(row.flow.clone()),
                };
                let mut record = prepare(&update, catalog, bounds).ok()?;
                record.stats.records = row.updates;
                Some(record)
            })
            .collect()
    }

    /// The records loaded from a file of `rows` (through the JSON traces if `without_proto`)
    /// and those `prepare` makes of them. `prepare` goes first, into the same catalog, so
    /// both find the same ids: a value mapped to the wrong row, or a label set not in
    /// canonical order, would get another.
    fn loaded_rows(rows: &[BucketRow], without_proto: bool) -> (Loaded, Vec<FlowRecord>) {
        let directory = tempfile::tempdir().expect("a temporary directory");
        write_bucket(directory.path(), 1_700_000_100, rows, 9, None).expect("the file");
        let read = read_bucket(&path_of(directory.path(), 1_700_000_100)).expect("readable");
        let BucketRead::Loaded { mut groups, .. } = read else {
            panic!("the file loads: {read:?}");
        };
        let mut group = groups.pop().expect("one row group");
        if without_proto {
            group.columns.truncate(POLICIES_PROTO_COLUMN);
        }
        let catalog = Catalog::new(CatalogLimits::default());
        let expected = prepared(rows, &catalog);
        let mut interned = Interned::default();
        let Ok(loaded) = records_of(&group, &catalog, &mut interned, &RETENTION, NOW) else {
            panic!("the group loads");
        };
        (loaded, expected)
    }

    fn rows() -> Vec<BucketRow> {
        vec![
            row(1, "db-1", &["b=2", "a=1"], 1_700_000_100, &["deny-all"]),
            row(2, "db-2", &[], 1_700_000_100, &["deny-all"]),
            row(
                3,
                "db-1",
                &["a=1", "b=2"],
                1_700_000_100,
                &["x", "deny-all"],
            ),
            row(4, "db-3", &["a=1"], 1_600_000_000, &[]),
        ]
    }

    /// `rows` with the catalog ids of `records` (the records `prepare` made of them, rows
    /// past retention left out).
    fn with_ids(rows: &[BucketRow], records: &[FlowRecord]) -> Vec<BucketRow> {
        rows.iter()
            .filter(|row| row.flow.start_time >= 1_700_000_000)
            .zip(records)
            .map(|(row, record)| {
                let key = &record.key;
                let mut row = row.clone();
                row.id = key.id as i64;
                row.catalog = CatalogIds {
                    strings: key.strings(),
                    trace: key.trace,
                    labels: record.labels,
                };
                row
            })
            .chain(
                rows.iter()
                    .filter(|row| row.flow.start_time < 1_700_000_000)
                    .cloned(),
            )
            .collect()
    }

    /// SPEC §13.2: a bucket file read by its catalog ids after a restart gives the records
    /// its updates made, each counted once.
    #[test]
    fn rows_read_by_catalog_ids_are_the_records_prepare_made_before_the_restart() {
        let data = tempfile::tempdir().expect("a temporary directory");
        let catalog = Catalog::new(CatalogLimits::default());
        let expected = prepared(&rows(), &catalog);
        let (mut catalog_file, _) = CatalogFile::open(data.path(), &catalog).expect("opened");
        catalog_file.append(&catalog).expect("appended");
        let rows = with_ids(&rows(), &expected);
        let generation = catalog_file.generation();
        write_bucket(data.path(), 1_700_000_100, &rows, 9, Some(generation)).expect("written");
        drop(catalog_file);

        // A restart: a fresh catalog restored from the file.
        let restarted = Catalog::new(CatalogLimits::default());
        let (_, restored) = CatalogFile::open(data.path(), &restarted).expect("reopened");
        assert_eq!(restored.generation(), generation);
        let Ok(BucketOpen::Opened(opened)) = open_bucket(&path_of(data.path(), 1_700_000_100))
        else {
            panic!("the file opens");
        };
        assert_eq!(opened.generation, Some(generation));
        let group = opened.group_columns(0, &BY_ID_COLUMNS).expect("decoded");
        let loaded = records_by_ids(&group, &restored, &RETENTION, NOW)
            .expect("not damaged")
            .expect("every id restored");
        assert!(loaded.by_ids);
        assert_eq!(loaded.records, expected);
        assert_eq!((loaded.updates, loaded.expired), (9, 3));
        assert_eq!(
            restarted.symbols.resolve(loaded.records[0].key.dest_name),
            "db-1"
        );

        // A row naming an id the catalog file does not hold: the group loads by its values.
        let mut unknown = rows.clone();
        unknown[1].catalog.labels.1 = 1_000_000;
        write_bucket(data.path(), 1_700_000_100, &unknown, 9, Some(generation)).expect("written");
        let Ok(BucketOpen::Opened(opened)) = open_bucket(&path_of(data.path(), 1_700_000_100))
        else {
            panic!("the file opens");
        };
        let group = opened.group_columns(0, &BY_ID_COLUMNS).expect("decoded");
        assert!(records_by_ids(&group, &restored, &RETENTION, NOW)
            .expect("not damaged")
            .is_none());
    }

    #[test]
    fn rows_become_the_records_prepare_makes_and_expired_rows_are_counted() {
        for without_proto in [false, true] {
            let (loaded, expected) = loaded_rows(&rows(), without_proto);
            assert_eq!(expected.len(), 3);
            assert_eq!(loaded.records, expected, "without proto: {without_proto}");
            assert_eq!(loaded.updates, 9);
            assert_eq!(loaded.expired, 3);
            assert_eq!(loaded.records[0].labels, loaded.records[2].labels);
            assert_ne!(loaded.records[0].key.trace, loaded.records[2].key.trace);
        }
    }
}
