//! Closed buckets as Parquet files (SPEC §13.3): one file per bucket, `buckets/bucket-<start>.parquet`,
//! one row per flow key with data in the bucket. A file is replaced whole — written beside
//! it, flushed, renamed over it, the directory flushed — so a reader or a crash sees the old
//! file or the new one, never a mix. The schema is documented in `docs/durability.md`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use eddy_dataflows::model::Bucket;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use rustc_hash::FxHashMap;

use crate::durability::wal::sync_directory;
use crate::ingest::canonical::{canonical_trace, canonical_trace_bytes};
use crate::proto::{Action, EndpointType, Flow, FlowKey, Reporter};
use crate::proto_json::{json, Spelling};

/// The folder of the bucket files inside the data directory.
pub const BUCKET_DIRECTORY: &str = "buckets";

/// The Parquet schema of a bucket file, in column order.
pub const SCHEMA: &str = "
message eddy_flow {
  REQUIRED INT64 bucket_start;
  REQUIRED INT64 bucket_end;
  REQUIRED INT64 id;
  REQUIRED BYTE_ARRAY source_name (UTF8);
  REQUIRED BYTE_ARRAY source_namespace (UTF8);
  REQUIRED BYTE_ARRAY source_type (UTF8);
  REQUIRED BYTE_ARRAY dest_name (UTF8);
  REQUIRED BYTE_ARRAY dest_namespace (UTF8);
  REQUIRED BYTE_ARRAY dest_type (UTF8);
  REQUIRED INT64 dest_port;
  REQUIRED BYTE_ARRAY dest_service_name (UTF8);
  REQUIRED BYTE_ARRAY dest_service_namespace (UTF8);
  REQUIRED BYTE_ARRAY dest_service_port_name (UTF8);
  REQUIRED INT64 dest_service_port;
  REQUIRED BYTE_ARRAY proto (UTF8);
  REQUIRED BYTE_ARRAY reporter (UTF8);
  REQUIRED BYTE_ARRAY action (UTF8);
  REQUIRED BYTE_ARRAY policies (UTF8);
  REQUIRED GROUP source_labels (LIST) {
    REPEATED GROUP list {
      REQUIRED BYTE_ARRAY element (UTF8);
    }
  }
  REQUIRED GROUP dest_labels (LIST) {
    REPEATED GROUP list {
      REQUIRED BYTE_ARRAY element (UTF8);
    }
  }
  REQUIRED INT64 packets_in;
  REQUIRED INT64 packets_out;
  REQUIRED INT64 bytes_in;
  REQUIRED INT64 bytes_out;
  REQUIRED INT64 num_connections_started;
  REQUIRED INT64 num_connections_completed;
  REQUIRED INT64 num_connections_live;
  REQUIRED INT64 updates;
  REQUIRED BYTE_ARRAY policies_proto;
  REQUIRED INT64 catalog_source_name;
  REQUIRED INT64 catalog_source_namespace;
  REQUIRED INT64 catalog_dest_name;
  REQUIRED INT64 catalog_dest_namespace;
  REQUIRED INT64 catalog_dest_service_name;
  REQUIRED INT64 catalog_dest_service_namespace;
  REQUIRED INT64 catalog_dest_service_port_name;
  REQUIRED INT64 catalog_proto;
  REQUIRED INT64 catalog_policies;
  REQUIRED INT64 catalog_source_labels;
  REQUIRED INT64 catalog_dest_labels;
}
";

/// Columns of the files written before `policies_proto` was added; they load through the
/// `policies` JSON column.
pub const COLUMNS_WITHOUT_PROTO: usize = 28;

/// The column holding the canonical policy trace's protobuf encoding.
pub const POLICIES_PROTO_COLUMN: usize = 28;

/// Columns of the files written before the catalog id columns were added; they load by
/// their values alone.
pub const COLUMNS_WITHOUT_CATALOG_IDS: usize = 29;

/// The first of the catalog id columns: the key's eight strings (in [`CatalogIds::strings`]
/// order), the trace, the source and the destination label sets.
pub const FIRST_CATALOG_COLUMN: usize = 29;

/// A row's key and label sets as ids of the catalog, meaningful with the catalog file of the
/// generation the bucket file names (`CATALOG_GENERATION_KEY`): recovery restores that
/// catalog and loads the row by its ids, without decoding its texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogIds {
    /// Source name, source namespace, destination name, destination namespace, service
    /// name, service namespace, service port name, protocol.
    pub strings: [u32; 8],
    /// The canonical policy trace.
    pub trace: u32,
    /// The source and destination label sets.
    pub labels: (u32, u32),
}

/// One row of a bucket file: a flow's totals in the bucket, its id and how many updates
/// made it.
#[derive(Clone, Debug, PartialEq)]
pub struct BucketRow {
    /// The flow's id (`FlowResult.id`).
    pub id: i64,
    /// The flow, its times the bucket's bounds.
    pub flow: Flow,
    /// Updates summed into it.
    pub updates: i64,
    /// Its key and label sets as catalog ids (zero when the file names no generation).
    pub catalog: CatalogIds,
}

/// A column's values and, for lists, its levels.
enum Column {
    Int(Vec<i64>),
    Text(Vec<ByteArray>),
    List {
        values: Vec<ByteArray>,
        definition: Vec<i16>,
        repetition: Vec<i16>,
    },
}

fn text(value: &str) -> ByteArray {
    ByteArray::from(value.as_bytes().to_vec())
}

/// The values and levels of a list column holding `lists`, one list per row.
pub(crate) fn list_levels<'a>(
    lists: impl Iterator<Item = &'a [String]>,
) -> (Vec<ByteArray>, Vec<i16>, Vec<i16>) {
    let (mut values, mut definition, mut repetition) = (Vec::new(), Vec::new(), Vec::new());
    for labels in lists {
        if labels.is_empty() {
            definition.push(0);
            repetition.push(0);
        }
        for (index, label) in labels.iter().enumerate() {
            values.push(text(label));
            definition.push(1);
            repetition.push(i16::from(index > 0));
        }
    }
    (values, definition, repetition)
}

fn list(rows: &[BucketRow], labels: impl Fn(&Flow) -> &[String]) -> Column {
    let (values, definition, repetition) = list_levels(rows.iter().map(|row| labels(&row.flow)));
    Column::List {
        values,
        definition,
        repetition,
    }
}

/// The key written for a flow without one (the engine never returns such a flow).
static NO_KEY: LazyLock<FlowKey> = LazyLock::new(FlowKey::default);

/// The key of `row`'s flow.
fn key_of(row: &BucketRow) -> &FlowKey {
    row.flow.key.as_ref().unwrap_or(&NO_KEY)
}

/// The columns of `rows`, in schema order.
fn columns(rows: &[BucketRow]) -> Result<Vec<Column>, serde_json::Error> {
    let key = key_of;
    let ints = |read: &dyn Fn(&BucketRow) -> i64| Column::Int(rows.iter().map(read).collect());
    let texts = |read: &dyn Fn(&BucketRow) -> String| {
        Column::Text(rows.iter().map(|row| text(&read(row))).collect())
    };
    let endpoint = |value: i32| {
        EndpointType::try_from(value).map_or_else(|_| value.to_string(), |v| v.as_str_name().into())
    };
    let mut policies = Vec::with_capacity(rows.len());
    let mut encoded = Vec::with_capacity(rows.len());
    // Each distinct trace is written as JSON once; its rows share the bytes.
    let mut spelled: FxHashMap<Vec<u8>, ByteArray> = FxHashMap::default();
    for row in rows {
        let trace = key(row).policies.as_ref();
        let bytes = canonical_trace_bytes(trace);
        let policy = match spelled.get(&bytes) {
            Some(policy) => policy.clone(),
            None => {
                // Spelled from the canonical form, which the shared bytes identify.
                let canonical = canonical_trace(trace.cloned().unwrap_or_default());
                let policy = text(&serde_json::to_string(&json(
                    &canonical,
                    Spelling::Canonical,
                ))?);
                spelled.insert(bytes.clone(), policy.clone());
                policy
            }
        };
        policies.push(policy);
        encoded.push(ByteArray::from(bytes));
    }
    Ok(vec![
        ints(&|row| row.flow.start_time),
        ints(&|row| row.flow.end_time),
        ints(&|row| row.id),
        texts(&|row| key(row).source_name.clone()),
        texts(&|row| key(row).source_namespace.clone()),
        texts(&|row| endpoint(key(row).source_type)),
        texts(&|row| key(row).dest_name.clone()),
        texts(&|row| key(row).dest_namespace.clone()),
        texts(&|row| endpoint(key(row).dest_type)),
        ints(&|row| key(row).dest_port),
        texts(&|row| key(row).dest_service_name.clone()),
        texts(&|row| key(row).dest_service_namespace.clone()),
        texts(&|row| key(row).dest_service_port_name.clone()),
        ints(&|row| key(row).dest_service_port),
        texts(&|row| key(row).proto.clone()),
        texts(&|row| {
            let value = key(row).reporter;
            Reporter::try_from(value).map_or_else(|_| value.to_string(), |v| v.as_str_name().into())
        }),
        texts(&|row| {
            let value = key(row).action;
            Action::try_from(value).map_or_else(|_| value.to_string(), |v| v.as_str_name().into())
        }),
        Column::Text(policies),
        list(rows, |flow| &flow.source_labels),
        list(rows, |flow| &flow.dest_labels),
        ints(&|row| row.flow.packets_in),
        ints(&|row| row.flow.packets_out),
        ints(&|row| row.flow.bytes_in),
        ints(&|row| row.flow.bytes_out),
        ints(&|row| row.flow.num_connections_started),
        ints(&|row| row.flow.num_connections_completed),
        ints(&|row| row.flow.num_connections_live),
        ints(&|row| row.updates),
        Column::Text(encoded),
        ints(&|row| i64::from(row.catalog.strings[0])),
        ints(&|row| i64::from(row.catalog.strings[1])),
        ints(&|row| i64::from(row.catalog.strings[2])),
        ints(&|row| i64::from(row.catalog.strings[3])),
        ints(&|row| i64::from(row.catalog.strings[4])),
        ints(&|row| i64::from(row.catalog.strings[5])),
        ints(&|row| i64::from(row.catalog.strings[6])),
        ints(&|row| i64::from(row.catalog.strings[7])),
        ints(&|row| i64::from(row.catalog.trace)),
        ints(&|row| i64::from(row.catalog.labels.0)),
        ints(&|row| i64::from(row.catalog.labels.1)),
    ])
}

/// The file of the bucket starting at `bucket`.
pub fn path_of(directory: &Path, bucket: Bucket) -> PathBuf {
    directory.join(format!("bucket-{bucket}.parquet"))
}

/// The bucket a file name belongs to, if it is a bucket file's name.
pub fn bucket_of(path: &Path) -> Option<Bucket> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("bucket-")?
        .strip_suffix(".parquet")?
        .parse()
        .ok()
}

fn io_error(error: ParquetError) -> io::Error {
    io::Error::other(error)
}

/// Key-value metadata naming the log position a file covers: it holds exactly the updates of
/// its bucket logged in records ending at or before it (SPEC §13.2).
pub const COVERED_KEY: &str = "eddy.covered_log_position";
/// Key-value metadata giving how many bytes the checksum covers: the file from its first
/// byte to the end of its last row group.
pub const DATA_BYTES_KEY: &str = "eddy.data_bytes";
/// Key-value metadata holding the CRC32C of those bytes.
pub const CRC_KEY: &str = "eddy.data_crc32c";
/// Key-value metadata naming the generation of the catalog file the catalog id columns
/// refer to; absent when they refer to none.
pub const CATALOG_GENERATION_KEY: &str = "eddy.catalog_generation";

/// Rows of one row group: recovery decodes and converts a row group at a time, and each
/// column chunk of it has its own dictionary.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;

/// The most bytes of a column chunk's dictionary page. Past it the writer writes the
/// chunk's remaining values plain; large enough for a row group whose every value is
/// distinct (names and labels unique per key), so that recovery converts each distinct
/// value of a chunk once and maps rows to it by index.
const DICTIONARY_BYTES: usize = 8 * 1024 * 1024;

/// The bytes of the Parquet file holding `rows` of `bucket`, covering log position
/// `covered`, with the checksum of its data in its metadata, and the generation of the
/// catalog file its rows' catalog ids refer to, if they refer to one.
pub fn encode_bucket(
    rows: &[BucketRow],
    covered: u64,
    generation: Option<u64>,
) -> io::Result<Vec<u8>> {
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(io_error)?);
    let properties = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_page_size_limit(DICTIONARY_BYTES)
            .set_created_by("eddy".into())
            .build(),
    );
    let buffer = Vec::with_capacity(64 * 1024 + rows.len() * 64);
    let mut writer = SerializedFileWriter::new(buffer, schema, properties).map_err(io_error)?;
    for rows in rows.chunks(ROW_GROUP_ROWS) {
        let mut group = writer.next_row_group().map_err(io_error)?;
        let mut columns = columns(rows).map_err(io::Error::other)?.into_iter();
        while let Some(mut column) = group.next_column().map_err(io_error)? {
            match columns.next() {
                Some(Column::Int(values)) => {
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, None, None)
                        .map_err(io_error)?;
                }
                Some(Column::Text(values)) => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, None, None)
                        .map_err(io_error)?;
                }
                Some(Column::List {
                    values,
                    definition,
                    repetition,
                }) => {
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, Some(&definition), Some(&repetition))
                        .map_err(io_error)?;
                }
                None => {
                    return Err(io::Error::other(
                        "the bucket schema has more columns than rows carry",
                    ))
                }
            }
            column.close().map_err(io_error)?;
        }
        group.close().map_err(io_error)?;
    }
    writer.flush()?;
    let data = writer.inner();
    let (data_bytes, crc) = (data.len(), crc32c::crc32c(data));
    let generation = generation.map(|generation| (CATALOG_GENERATION_KEY, generation.to_string()));
    for (key, value) in [
        (COVERED_KEY, covered.to_string()),
        (DATA_BYTES_KEY, data_bytes.to_string()),
        (CRC_KEY, crc.to_string()),
    ]
    .into_iter()
    .chain(generation)
    {
        writer.append_key_value_metadata(KeyValue::new(key.into(), value));
    }
    writer.into_inner().map_err(io_error)
}

/// Writes `rows` as the file of `bucket` in `directory`, covering log position `covered`,
/// its catalog ids referring to the catalog file of `generation` if given, replacing it
/// whole. Returns the file's size in bytes.
pub fn write_bucket(
    directory: &Path,
    bucket: Bucket,
    rows: &[BucketRow],
    covered: u64,
    generation: Option<u64>,
) -> io::Result<u64> {
    let path = path_of(directory, bucket);
    // A leading dot: readers of the folder (pyarrow, Spark) skip the file being written.
    let temporary = directory.join(format!(".bucket-{bucket}.parquet.tmp"));
    let bytes = encode_bucket(rows, covered, generation)?;
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, &path)?;
    sync_directory(directory)?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, Row};

    use super::*;
    use crate::durability::test_rows::row;

    fn field<'a>(row: &'a Row, name: &str) -> &'a Field {
        row.get_column_iter()
            .find(|(column, _)| column.as_str() == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("the file has a column `{name}`"))
    }

    #[test]
    fn a_bucket_file_reads_back_as_its_rows_and_replaces_the_old_one() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let bucket = 1_700_000_100;
        write_bucket(directory.path(), bucket, &[row(1, &[], 5)], 10, None)
            .expect("the first file");
        let bytes = write_bucket(
            directory.path(),
            bucket,
            &[row(7, &["a=1", "b,c=2"], 10), row(9, &[], 20)],
            20,
            Some(5),
        )
        .expect("the file is replaced");
        let path = path_of(directory.path(), bucket);
        assert_eq!(bucket_of(&path), Some(bucket));
        assert_eq!(std::fs::metadata(&path).expect("the file").len(), bytes);
        let reader = SerializedFileReader::new(File::open(&path).expect("the file opens"))
            .expect("a Parquet file");
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let rows: Vec<Row> = reader
            .get_row_iter(None)
            .expect("rows")
            .map(|row| row.expect("a row"))
            .collect();
        assert_eq!(field(&rows[0], "id"), &Field::Long(7));
        assert_eq!(field(&rows[0], "packets_in"), &Field::Long(10));
        assert_eq!(field(&rows[1], "packets_in"), &Field::Long(20));
        assert_eq!(field(&rows[0], "bucket_start"), &Field::Long(bucket));
        assert_eq!(field(&rows[0], "updates"), &Field::Long(3));
        assert_eq!(field(&rows[0], "catalog_dest_name"), &Field::Long(3));
        assert_eq!(field(&rows[0], "catalog_proto"), &Field::Long(4));
        assert_eq!(field(&rows[0], "catalog_dest_labels"), &Field::Long(7));
        let metadata = reader.metadata().file_metadata().key_value_metadata();
        let generation = metadata
            .and_then(|entries| {
                entries
                    .iter()
                    .find(|entry| entry.key == CATALOG_GENERATION_KEY)
            })
            .and_then(|entry| entry.value.clone());
        assert_eq!(generation.as_deref(), Some("5"));
        assert_eq!(field(&rows[0], "dest_type"), &Field::Str("Network".into()));
        assert_eq!(field(&rows[0], "action"), &Field::Str("Deny".into()));
        let Field::Str(policies) = field(&rows[0], "policies") else {
            panic!("policies are text");
        };
        assert!(policies.contains("\"deny-all\""), "{policies}");
        assert_eq!(
            format!("{}", field(&rows[0], "source_labels")),
            r#"["a=1", "b,c=2"]"#
        );
        assert_eq!(format!("{}", field(&rows[1], "source_labels")), "[]");
        let names: Vec<_> = std::fs::read_dir(directory.path())
            .expect("the folder")
            .map(|entry| entry.expect("an entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    }
}
