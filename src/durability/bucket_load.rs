//! Turns a bucket file's decoded columns into engine records (SPEC §13.4): each distinct
//! string, enum, label set and policy trace of the file is decoded and interned once, and
//! each row becomes a `FlowRecord` carrying its totals and update count.

use eddy_dataflows::model::{FlowKey, FlowRecord};
use parquet::data_type::ByteArray;
use prost::Message;
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::durability::bucket_read::{enum_value, RowGroup, Values};
use crate::durability::checkpoint::POLICIES_PROTO_COLUMN;
use crate::ingest::canonical::{canonical_trace_bytes, flow_id, label_set};
use crate::ingest::policy_rules::rules_of_trace;
use crate::ingest::Measures;
use crate::intern::InternerFull;
use crate::proto::{self, Action, EndpointType, PolicyTrace, Reporter};
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

/// Each row's range of elements in a list column.
fn list_ranges(
    definition: &[i16],
    repetition: &[i16],
    count: usize,
) -> Result<Vec<(usize, usize)>, String> {
    let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(count);
    let mut next = 0;
    for (defined, repeated) in definition.iter().zip(repetition) {
        if *repeated == 0 {
            ranges.push((next, next));
        }
        if *defined > 0 {
            next += 1;
            ranges
                .last_mut()
                .ok_or("a list starts with a repeated level")?
                .1 = next;
        }
    }
    if ranges.len() == count {
        Ok(ranges)
    } else {
        Err("a label column has the wrong number of rows".into())
    }
}

/// The catalog ids of the values met so far, by their bytes in the files, so that each
/// distinct value is decoded and interned once per recovery. Valid while the catalog's gate
/// is held (no collection removes an id meanwhile).
#[derive(Default)]
pub struct Interned {
    /// Strings: id and text.
    texts: FxHashMap<Box<[u8]>, (u32, Box<str>)>,
    /// Enums by name, per enum column.
    enums: [FxHashMap<Box<[u8]>, i32>; 4],
    /// Traces from `policies_proto`: id and canonical encoding.
    encoded_traces: FxHashMap<Box<[u8]>, (u32, Vec<u8>)>,
    /// Traces from the JSON of older files: id and canonical encoding.
    json_traces: FxHashMap<Box<[u8]>, (u32, Vec<u8>)>,
    /// Label sets, by their elements' lengths and bytes.
    label_sets: FxHashMap<Vec<u8>, u32>,
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
    let text = |index: usize| match columns.get(index) {
        Some(Values::Text(values)) if values.len() == count => Ok(values.as_slice()),
        _ => Err(format!("column {index} is not {count} texts")),
    };
    let list = |index: usize| match columns.get(index) {
        Some(Values::List {
            values,
            definition,
            repetition,
        }) => Ok((
            values.as_slice(),
            list_ranges(definition, repetition, count)?,
        )),
        _ => Err(format!("column {index} is not a list")),
    };
    let strings: Vec<&[ByteArray]> = [3, 4, 6, 7, 10, 11, 12, 14]
        .into_iter()
        .map(text)
        .collect::<Result<_, _>>()?;
    let enums: Vec<&[ByteArray]> = [5, 8, 15, 16]
        .into_iter()
        .map(text)
        .collect::<Result<_, _>>()?;
    let (start, end, dest_port, service_port) = (int(0)?, int(1)?, int(9)?, int(13)?);
    let counters: Vec<&[i64]> = (20..28).map(int).collect::<Result<_, _>>()?;
    let encoded = if columns.len() > POLICIES_PROTO_COLUMN {
        Some(text(POLICIES_PROTO_COLUMN)?)
    } else {
        None
    };
    let policies = text(17)?;
    let labels = [list(18)?, list(19)?];

    let Interned {
        texts,
        enums: enum_values,
        encoded_traces,
        json_traces,
        label_sets,
    } = interned;
    let traces = if encoded.is_some() {
        encoded_traces
    } else {
        json_traces
    };
    let mut label_key = Vec::new();
    let mut key = proto::FlowKey::default();
    let mut loaded = Loaded {
        records: Vec::with_capacity(count),
        ..Loaded::default()
    };
    for row in 0..count {
        let updates = counters[7][row].max(0) as u64;
        let measures = Measures {
            start_time: start[row],
            end_time: end[row],
            counters: std::array::from_fn(|index| counters[index][row]),
        };
        if measures.validate(retention, now).is_err() {
            loaded.expired += updates;
            continue;
        }
        let mut ids = [0u32; 8];
        for (index, column) in strings.iter().enumerate() {
            let bytes = column[row].data();
            if !texts.contains_key(bytes) {
                let value = std::str::from_utf8(bytes).map_err(|error| error.to_string())?;
                let id = catalog.symbols.intern(value)?;
                texts.insert(bytes.into(), (id, value.into()));
            }
            let (id, value) = &texts[bytes];
            ids[index] = *id;
            let field = match index {
                0 => &mut key.source_name,
                1 => &mut key.source_namespace,
                2 => &mut key.dest_name,
                3 => &mut key.dest_namespace,
                4 => &mut key.dest_service_name,
                5 => &mut key.dest_service_namespace,
                6 => &mut key.dest_service_port_name,
                _ => &mut key.proto,
            };
            field.clear();
            field.push_str(value);
        }
        let mut numbers = [0i32; 4];
        for (index, column) in enums.iter().enumerate() {
            let bytes = column[row].data();
            numbers[index] = match enum_values[index].get(bytes) {
                Some(value) => *value,
                None => {
                    let value = enum_value(bytes, |name| match index {
                        0 | 1 => EndpointType::from_str_name(name).map(|value| value as i32),
                        2 => Reporter::from_str_name(name).map(|value| value as i32),
                        _ => Action::from_str_name(name).map(|value| value as i32),
                    })?;
                    enum_values[index].insert(bytes.into(), value);
                    value
                }
            };
        }
        [key.source_type, key.dest_type, key.reporter, key.action] = numbers;
        key.dest_port = dest_port[row];
        key.dest_service_port = service_port[row];
        let written = match encoded {
            Some(encoded) => encoded[row].data(),
            None => policies[row].data(),
        };
        if !traces.contains_key(written) {
            let trace = match encoded {
                Some(_) => PolicyTrace::decode(written).map_err(|error| error.to_string())?,
                None => from_json::<PolicyTrace>(written)?,
            };
            let bytes = canonical_trace_bytes(Some(&trace));
            let id =
                catalog.intern_trace(&bytes, || rules_of_trace(Some(&trace), &catalog.symbols))?;
            traces.insert(written.into(), (id, bytes));
        }
        let (trace, trace_bytes) = &traces[written];
        let mut sets = [0u32; 2];
        for (index, (values, ranges)) in labels.iter().enumerate() {
            let (from, to) = ranges[row];
            let elements = values
                .get(from..to)
                .ok_or("fewer label values than levels")?;
            label_key.clear();
            for element in elements {
                label_key.extend_from_slice(&(element.len() as u64).to_le_bytes());
                label_key.extend_from_slice(element.data());
            }
            sets[index] = match label_sets.get(label_key.as_slice()) {
                Some(id) => *id,
                None => {
                    let owned: Vec<String> = elements
                        .iter()
                        .map(|element| {
                            std::str::from_utf8(element.data())
                                .map(str::to_owned)
                                .map_err(|error| error.to_string())
                        })
                        .collect::<Result<_, _>>()?;
                    let id = catalog.label_sets.intern(&*label_set(&owned))?;
                    label_sets.insert(label_key.clone(), id);
                    id
                }
            };
        }
        let mut stats = measures.stats();
        stats.records = counters[7][row];
        loaded.updates += updates;
        loaded.records.push(FlowRecord {
            key: FlowKey {
                id: flow_id(&key, trace_bytes),
                source_name: ids[0],
                source_namespace: ids[1],
                source_type: key.source_type,
                dest_name: ids[2],
                dest_namespace: ids[3],
                dest_type: key.dest_type,
                dest_port: key.dest_port,
                dest_service_name: ids[4],
                dest_service_namespace: ids[5],
                dest_service_port_name: ids[6],
                dest_service_port: key.dest_service_port,
                proto: ids[7],
                reporter: key.reporter,
                action: key.action,
                trace: *trace,
            },
            bucket: retention.bucket_of(measures.start_time),
            labels: (sets[0], sets[1]),
            stats,
        });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogLimits;
    use crate::durability::bucket_read::{read_bucket, BucketRead};
    use crate::durability::checkpoint::{path_of, write_bucket, BucketRow};
    use crate::ingest::{prepare, Bounds, InputLimits};
    use crate::proto::{Flow, FlowUpdate, PolicyHit, PolicyKind};

    const RETENTION: Retention = Retention {
        window: 15,
        closed_buckets: 240,
    };
    const NOW: i64 = 1_700_000_200;

    fn row(id: i64, dest: &str, labels: &[&str], start_time: i64, hits: &[&str]) -> BucketRow {
        BucketRow {
            id,
            flow: Flow {
                key: Some(proto::FlowKey {
                    source_name: "web".into(),
                    source_namespace: "shop".into(),
                    source_type: EndpointType::WorkloadEndpoint as i32,
                    dest_name: dest.into(),
                    dest_namespace: "shop".into(),
                    dest_type: EndpointType::Network as i32,
                    dest_port: 5432,
                    dest_service_port: 80,
                    proto: "TCP".into(),
                    reporter: Reporter::Dst as i32,
                    action: Action::Deny as i32,
                    policies: Some(PolicyTrace {
                        enforced_policies: hits
                            .iter()
                            .enumerate()
                            .map(|(index, name)| PolicyHit {
                                kind: PolicyKind::CalicoNetworkPolicy as i32,
                                name: (*name).into(),
                                namespace: "shop".into(),
                                action: Action::Deny as i32,
                                policy_index: index as i64,
                                ..PolicyHit::default()
                            })
                            .collect(),
                        pending_policies: vec![],
                    }),
                    ..proto::FlowKey::default()
                }),
                start_time,
                end_time: start_time + 15,
                source_labels: labels.iter().map(|label| label.to_string()).collect(),
                dest_labels: vec!["app=db".into()],
                packets_in: 10 + id,
                packets_out: 2,
                bytes_in: 300,
                bytes_out: 400,
                num_connections_started: 1,
                num_connections_completed: 0,
                num_connections_live: 1,
            },
            updates: 3,
        }
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

    fn loaded_rows(rows: &[BucketRow], without_proto: bool) -> (Loaded, Vec<FlowRecord>) {
        let directory = tempfile::tempdir().expect("a temporary directory");
        write_bucket(directory.path(), 1_700_000_100, rows, 9).expect("the file");
        let read = read_bucket(&path_of(directory.path(), 1_700_000_100)).expect("readable");
        let BucketRead::Loaded { mut groups, .. } = read else {
            panic!("the file loads: {read:?}");
        };
        let mut group = groups.pop().expect("one row group");
        if without_proto {
            group.columns.truncate(POLICIES_PROTO_COLUMN);
            assert_eq!(group.rows().expect("the rows decode from JSON"), rows);
        }
        let catalog = Catalog::new(CatalogLimits::default());
        let mut interned = Interned::default();
        let Ok(loaded) = records_of(&group, &catalog, &mut interned, &RETENTION, NOW) else {
            panic!("the group loads");
        };
        let expected = Catalog::new(CatalogLimits::default());
        (loaded, prepared(rows, &expected))
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
