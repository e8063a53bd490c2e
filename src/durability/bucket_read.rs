//! Reads a bucket file back for recovery (SPEC §13.2, §13.4): checks the checksum its
//! metadata holds, decodes its columns whole (no row-by-row reading), and rebuilds its rows.
//! Text repeated across rows (namespaces, policy traces, enum names) is decoded once per
//! distinct value.

use std::collections::HashMap;
use std::path::Path;

use parquet::column::reader::ColumnReader;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;

use crate::durability::checkpoint::{
    BucketRow, COLUMNS_WITHOUT_PROTO, COVERED_KEY, CRC_KEY, DATA_BYTES_KEY, POLICIES_PROTO_COLUMN,
    SCHEMA,
};
use crate::proto::{Action, EndpointType, Flow, FlowKey, PolicyTrace, Reporter};
use crate::proto_json::from_json;
use prost::Message;

/// What reading a bucket file found.
#[derive(Debug)]
pub enum BucketRead {
    /// The file's rows and the log position it covers.
    Loaded {
        /// It holds exactly the updates of its bucket logged in records ending at or before
        /// this position.
        covered: u64,
        /// The file's row groups, decoded column by column.
        groups: Vec<RowGroup>,
    },
    /// A whole file without the covered position (written before files recorded it): its
    /// bucket is recovered from the log alone.
    Uncovered,
    /// The file fails its checksum or does not decode as a bucket file.
    Damaged(String),
}

/// The decoded columns of one row group, in schema order.
#[derive(Debug)]
pub struct RowGroup {
    /// Rows in the group.
    pub count: usize,
    /// Its columns; the last (`policies_proto`) is missing in older files.
    pub columns: Vec<Values>,
}

impl RowGroup {
    /// The group's rows as flows.
    pub fn rows(&self) -> Result<Vec<BucketRow>, String> {
        let mut rows = Vec::with_capacity(self.count);
        build_rows(&self.columns, self.count, &mut rows)?;
        Ok(rows)
    }
}

/// One decoded column.
#[derive(Debug)]
pub enum Values {
    /// Integers, one per row.
    Int(Vec<i64>),
    /// Byte strings, one per row.
    Text(Vec<parquet::data_type::ByteArray>),
    /// A list column's values and levels.
    List {
        /// Every row's elements, in order.
        values: Vec<parquet::data_type::ByteArray>,
        /// Definition levels: 0 for an empty list.
        definition: Vec<i16>,
        /// Repetition levels: 0 where a row starts.
        repetition: Vec<i16>,
    },
}

/// Reads the bucket file at `path`. An error is one reading the file at all (not damage).
pub fn read_bucket(path: &Path) -> std::io::Result<BucketRead> {
    let bytes = bytes::Bytes::from(std::fs::read(path)?);
    Ok(decode(bytes).unwrap_or_else(BucketRead::Damaged))
}

/// Decodes a bucket file's bytes.
fn decode(bytes: bytes::Bytes) -> Result<BucketRead, String> {
    let reader = SerializedFileReader::new(bytes.clone()).map_err(|error| error.to_string())?;
    let metadata = reader.metadata();
    let Some(covered) = metadata_value(metadata, COVERED_KEY) else {
        return Ok(BucketRead::Uncovered);
    };
    let data_bytes = metadata_value(metadata, DATA_BYTES_KEY).ok_or("no data length")?;
    let crc = metadata_value(metadata, CRC_KEY).ok_or("no checksum")?;
    let data = usize::try_from(data_bytes)
        .ok()
        .and_then(|length| bytes.get(..length))
        .ok_or("the data length passes the file's end")?;
    if u64::from(crc32c::crc32c(data)) != crc {
        return Err("the data fails its checksum".into());
    }
    check_schema(metadata.file_metadata().schema_descr())?;
    let mut groups = Vec::with_capacity(reader.num_row_groups());
    for group in 0..reader.num_row_groups() {
        let group = reader
            .get_row_group(group)
            .map_err(|error| error.to_string())?;
        let count = group.metadata().num_rows().max(0) as usize;
        let mut columns = Vec::with_capacity(group.num_columns());
        for column in 0..group.num_columns() {
            let reader = group
                .get_column_reader(column)
                .map_err(|error| error.to_string())?;
            let list = group
                .metadata()
                .column(column)
                .column_descr()
                .max_rep_level()
                > 0;
            columns.push(read_column(reader, count, list)?);
        }
        groups.push(RowGroup { count, columns });
    }
    Ok(BucketRead::Loaded { covered, groups })
}

/// A numeric key-value entry of the file's metadata.
fn metadata_value(metadata: &ParquetMetaData, key: &str) -> Option<u64> {
    metadata
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|entry| entry.key == key)?
        .value
        .as_ref()?
        .parse()
        .ok()
}

/// Fails unless the file's columns are the bucket schema's, in order.
fn check_schema(file: &SchemaDescriptor) -> Result<(), String> {
    let ours = parse_message_type(SCHEMA).map_err(|error| error.to_string())?;
    let ours = SchemaDescriptor::new(std::sync::Arc::new(ours));
    let count = file.num_columns();
    let same = (count == ours.num_columns() || count == COLUMNS_WITHOUT_PROTO)
        && ours.columns().iter().zip(file.columns()).all(|(a, b)| {
            a.path() == b.path()
                && a.physical_type() == b.physical_type()
                && a.max_def_level() == b.max_def_level()
                && a.max_rep_level() == b.max_rep_level()
        });
    if same {
        Ok(())
    } else {
        Err("the columns are not a bucket file's".into())
    }
}

/// Reads every value of one column chunk of `count` rows (a list column if `list`).
fn read_column(reader: ColumnReader, count: usize, list: bool) -> Result<Values, String> {
    let error = |error: parquet::errors::ParquetError| error.to_string();
    match reader {
        ColumnReader::Int64ColumnReader(mut reader) => {
            let mut values = Vec::with_capacity(count);
            while reader
                .read_records(count, None, None, &mut values)
                .map_err(error)?
                .0
                > 0
            {}
            Ok(Values::Int(values))
        }
        ColumnReader::ByteArrayColumnReader(mut reader) => {
            let (mut values, mut definition, mut repetition) =
                (Vec::with_capacity(count), Vec::new(), Vec::new());
            while reader
                .read_records(
                    count,
                    list.then_some(&mut definition),
                    list.then_some(&mut repetition),
                    &mut values,
                )
                .map_err(error)?
                .0
                > 0
            {}
            Ok(if list {
                Values::List {
                    values,
                    definition,
                    repetition,
                }
            } else {
                Values::Text(values)
            })
        }
        _ => Err("a column of an unexpected type".into()),
    }
}

/// Decodes each distinct text of a column once.
#[derive(Default)]
struct Texts<T> {
    decoded: HashMap<Vec<u8>, T>,
}

impl<T: Clone> Texts<T> {
    fn get(
        &mut self,
        bytes: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<T, String> {
        if let Some(value) = self.decoded.get(bytes) {
            return Ok(value.clone());
        }
        let value = decode(bytes)?;
        self.decoded.insert(bytes.to_vec(), value.clone());
        Ok(value)
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|error| error.to_string())
}

/// An enum written by name (or by number when the number had no name).
pub(crate) fn enum_value(
    bytes: &[u8],
    by_name: impl Fn(&str) -> Option<i32>,
) -> Result<i32, String> {
    let text = std::str::from_utf8(bytes).map_err(|error| error.to_string())?;
    by_name(text)
        .or_else(|| text.parse().ok())
        .ok_or_else(|| format!("`{text}` is not a known value"))
}

/// Splits a list column into each row's labels.
fn label_lists(
    values: &[parquet::data_type::ByteArray],
    definition: &[i16],
    repetition: &[i16],
    count: usize,
    texts: &mut Texts<String>,
) -> Result<Vec<Vec<String>>, String> {
    let mut lists: Vec<Vec<String>> = Vec::with_capacity(count);
    let mut next = values.iter();
    for (defined, repeated) in definition.iter().zip(repetition) {
        if *repeated == 0 {
            lists.push(Vec::new());
        }
        if *defined > 0 {
            let value = next.next().ok_or("fewer label values than levels")?;
            let label = texts.get(value.data(), utf8)?;
            lists
                .last_mut()
                .ok_or("a list starts with a repeated level")?
                .push(label);
        }
    }
    if lists.len() == count {
        Ok(lists)
    } else {
        Err("a label column has the wrong number of rows".into())
    }
}

/// Builds the `count` rows of one row group from its columns, in schema order.
fn build_rows(columns: &[Values], count: usize, rows: &mut Vec<BucketRow>) -> Result<(), String> {
    let int = |index: usize| match columns.get(index) {
        Some(Values::Int(values)) if values.len() == count => Ok(values.as_slice()),
        _ => Err(format!("column {index} is not {count} integers")),
    };
    let text = |index: usize| match columns.get(index) {
        Some(Values::Text(values)) if values.len() == count => Ok(values.as_slice()),
        _ => Err(format!("column {index} is not {count} texts")),
    };
    let mut texts = Texts::<String>::default();
    let mut labels = Texts::<String>::default();
    let mut endpoints = Texts::<i32>::default();
    let mut traces = Texts::<PolicyTrace>::default();
    let mut lists = [18, 19].into_iter().map(|index| match columns.get(index) {
        Some(Values::List {
            values,
            definition,
            repetition,
        }) => label_lists(values, definition, repetition, count, &mut labels),
        _ => Err(format!("column {index} is not a list")),
    });
    let source_labels = lists.next().ok_or("no source labels")??;
    let dest_labels = lists.next().ok_or("no destination labels")??;
    let (start, end, id) = (int(0)?, int(1)?, int(2)?);
    let (source_name, source_namespace, source_type) = (text(3)?, text(4)?, text(5)?);
    let (dest_name, dest_namespace, dest_type, dest_port) = (text(6)?, text(7)?, text(8)?, int(9)?);
    let (service_name, service_namespace, service_port_name, service_port) =
        (text(10)?, text(11)?, text(12)?, int(13)?);
    let (proto, reporter, action, policies) = (text(14)?, text(15)?, text(16)?, text(17)?);
    let counters: Vec<&[i64]> = (20..28).map(int).collect::<Result<_, _>>()?;
    let encoded = if columns.len() > POLICIES_PROTO_COLUMN {
        Some(text(POLICIES_PROTO_COLUMN)?)
    } else {
        None
    };
    let endpoint = |bytes: &[u8]| {
        enum_value(bytes, |name| {
            EndpointType::from_str_name(name).map(|value| value as i32)
        })
    };
    let mut name =
        |column: &[parquet::data_type::ByteArray], row: usize| texts.get(column[row].data(), utf8);
    for row in 0..count {
        let key = FlowKey {
            source_name: name(source_name, row)?,
            source_namespace: name(source_namespace, row)?,
            source_type: endpoints.get(source_type[row].data(), endpoint)?,
            dest_name: name(dest_name, row)?,
            dest_namespace: name(dest_namespace, row)?,
            dest_type: endpoints.get(dest_type[row].data(), endpoint)?,
            dest_port: dest_port[row],
            dest_service_name: name(service_name, row)?,
            dest_service_namespace: name(service_namespace, row)?,
            dest_service_port_name: name(service_port_name, row)?,
            dest_service_port: service_port[row],
            proto: name(proto, row)?,
            reporter: enum_value(reporter[row].data(), |name| {
                Reporter::from_str_name(name).map(|value| value as i32)
            })?,
            action: enum_value(action[row].data(), |name| {
                Action::from_str_name(name).map(|value| value as i32)
            })?,
            policies: Some(match encoded {
                Some(encoded) => traces.get(encoded[row].data(), |bytes| {
                    PolicyTrace::decode(bytes).map_err(|error| error.to_string())
                })?,
                None => traces.get(policies[row].data(), from_json::<PolicyTrace>)?,
            }),
        };
        rows.push(BucketRow {
            id: id[row],
            flow: Flow {
                key: Some(key),
                start_time: start[row],
                end_time: end[row],
                source_labels: source_labels[row].clone(),
                dest_labels: dest_labels[row].clone(),
                packets_in: counters[0][row],
                packets_out: counters[1][row],
                bytes_in: counters[2][row],
                bytes_out: counters[3][row],
                num_connections_started: counters[4][row],
                num_connections_completed: counters[5][row],
                num_connections_live: counters[6][row],
            },
            updates: counters[7][row],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::checkpoint::{path_of, write_bucket};
    use crate::proto::{PolicyHit, PolicyKind};

    fn row(id: i64, source_labels: &[&str], packets: i64) -> BucketRow {
        BucketRow {
            id,
            flow: Flow {
                key: Some(FlowKey {
                    source_name: "web".into(),
                    source_namespace: "shop".into(),
                    source_type: EndpointType::WorkloadEndpoint as i32,
                    dest_name: format!("db-{id}"),
                    dest_namespace: "shop".into(),
                    dest_type: EndpointType::Network as i32,
                    dest_port: 5432,
                    proto: "TCP".into(),
                    reporter: Reporter::Dst as i32,
                    action: Action::Deny as i32,
                    policies: Some(PolicyTrace {
                        enforced_policies: vec![PolicyHit {
                            kind: PolicyKind::CalicoNetworkPolicy as i32,
                            name: "deny-all".into(),
                            namespace: "shop".into(),
                            action: Action::Deny as i32,
                            ..PolicyHit::default()
                        }],
                        pending_policies: vec![],
                    }),
                    ..FlowKey::default()
                }),
                start_time: 1_700_000_100,
                end_time: 1_700_000_115,
                source_labels: source_labels.iter().map(|l| l.to_string()).collect(),
                dest_labels: vec!["app=db".into()],
                packets_in: packets,
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

    #[test]
    fn a_written_file_reads_back_as_its_rows_and_covered_position() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let rows = vec![
            row(1, &["a=1", "b=2"], 5),
            row(2, &[], 6),
            row(3, &["a=1"], 7),
        ];
        write_bucket(directory.path(), 1_700_000_100, &rows, 4242).expect("the file");
        let read = read_bucket(&path_of(directory.path(), 1_700_000_100)).expect("readable");
        let BucketRead::Loaded { covered, groups } = read else {
            panic!("the file loads: {read:?}");
        };
        assert_eq!(covered, 4242);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].rows().expect("the rows decode"), rows);
    }

    #[test]
    fn a_flipped_byte_in_the_data_is_damage() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        write_bucket(directory.path(), 1_700_000_100, &[row(1, &["a=1"], 5)], 7).expect("a file");
        let path = path_of(directory.path(), 1_700_000_100);
        let mut bytes = std::fs::read(&path).expect("the file");
        bytes[40] ^= 0x10;
        std::fs::write(&path, &bytes).expect("rewritten");
        let read = read_bucket(&path).expect("readable");
        assert!(matches!(read, BucketRead::Damaged(_)), "{read:?}");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("cut");
        let cut = read_bucket(&path).expect("readable");
        assert!(matches!(cut, BucketRead::Damaged(_)), "{cut:?}");
    }
}
