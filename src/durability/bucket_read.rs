//! Reads a bucket file back for recovery (SPEC §13.2, §13.4): checks the checksum its
//! metadata holds, then decodes one row group at a time, its columns whole (no row-by-row
//! reading): the integers as they are, the texts as dictionary codes (`coded_column`), each
//! distinct text once.

use std::path::Path;

use parquet::basic::Type;
use parquet::column::reader::ColumnReader;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::SchemaDescriptor;

use crate::durability::checkpoint::{
    CATALOG_GENERATION_KEY, COLUMNS_WITHOUT_CATALOG_IDS, COLUMNS_WITHOUT_PROTO, COVERED_KEY,
    CRC_KEY, DATA_BYTES_KEY, SCHEMA,
};
use crate::durability::coded_column::{read_coded, Coded, Levels};

/// What opening a bucket file found.
pub enum BucketOpen {
    /// The file passed its checksum: its row groups are decoded one at a time.
    Opened(OpenedBucket),
    /// A whole file without the covered position (written before files recorded it): its
    /// bucket is recovered from the log alone.
    Uncovered,
    /// The file fails its checksum or does not decode as a bucket file.
    Damaged(String),
}

/// A bucket file that passed its checksum and has the bucket schema.
pub struct OpenedBucket {
    /// It holds exactly the updates of its bucket logged in records ending at or before
    /// this position.
    pub covered: u64,
    /// The generation of the catalog file its catalog id columns refer to, if it has them
    /// and they refer to one.
    pub generation: Option<u64>,
    /// The file's reader, over its bytes.
    reader: SerializedFileReader<bytes::Bytes>,
}

/// What reading a whole bucket file found.
#[cfg(test)]
#[derive(Debug)]
pub enum BucketRead {
    /// The file's rows and the log position it covers.
    Loaded {
        /// The log position it covers.
        covered: u64,
        /// The file's row groups, decoded column by column.
        groups: Vec<RowGroup>,
    },
    /// A whole file without the covered position.
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

/// One decoded column.
#[derive(Debug)]
pub enum Values {
    /// Integers, one per row.
    Int(Vec<i64>),
    /// Byte strings as dictionary codes: one per row, or for a list column one per element
    /// with the levels telling the rows apart.
    Text(Coded),
}

/// Reads the bucket file at `path` and decodes every row group.
#[cfg(test)]
pub fn read_bucket(path: &Path) -> std::io::Result<BucketRead> {
    Ok(match open_bucket(path)? {
        BucketOpen::Opened(opened) => (0..opened.groups())
            .map(|group| opened.group(group))
            .collect::<Result<_, _>>()
            .map_or_else(BucketRead::Damaged, |groups| BucketRead::Loaded {
                covered: opened.covered,
                groups,
            }),
        BucketOpen::Uncovered => BucketRead::Uncovered,
        BucketOpen::Damaged(reason) => BucketRead::Damaged(reason),
    })
}

/// Reads the bucket file at `path` and checks its checksum and schema. An error is one
/// reading the file at all (not damage).
pub fn open_bucket(path: &Path) -> std::io::Result<BucketOpen> {
    let bytes = bytes::Bytes::from(std::fs::read(path)?);
    Ok(open(bytes).unwrap_or_else(BucketOpen::Damaged))
}

/// Opens a bucket file's bytes.
fn open(bytes: bytes::Bytes) -> Result<BucketOpen, String> {
    let reader = SerializedFileReader::new(bytes.clone()).map_err(|error| error.to_string())?;
    let metadata = reader.metadata();
    let Some(covered) = metadata_value(metadata, COVERED_KEY) else {
        return Ok(BucketOpen::Uncovered);
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
    let columns = check_schema(metadata.file_metadata().schema_descr())?;
    let generation = metadata_value(metadata, CATALOG_GENERATION_KEY)
        .filter(|_| columns > COLUMNS_WITHOUT_CATALOG_IDS);
    Ok(BucketOpen::Opened(OpenedBucket {
        covered,
        generation,
        reader,
    }))
}

impl OpenedBucket {
    /// How many row groups the file holds.
    pub fn groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    /// Decodes row group `index`; an error is damage.
    pub fn group(&self, index: usize) -> Result<RowGroup, String> {
        let columns = self
            .reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .num_columns();
        let every: Vec<usize> = (0..columns).collect();
        self.group_columns(index, &every)
    }

    /// Decodes the columns `wanted` of row group `index`, in that order (the others are not
    /// read); an error is damage.
    pub fn group_columns(&self, index: usize, wanted: &[usize]) -> Result<RowGroup, String> {
        let error = |error: parquet::errors::ParquetError| error.to_string();
        let group = self.reader.get_row_group(index).map_err(error)?;
        let count = group.metadata().num_rows().max(0) as usize;
        let mut columns = Vec::with_capacity(wanted.len());
        for &column in wanted {
            if column >= group.num_columns() {
                return Err(format!("no column {column}"));
            }
            let chunk = group.metadata().column(column);
            let values = match chunk.column_type() {
                Type::INT64 => read_ints(group.get_column_reader(column).map_err(error)?, count)?,
                Type::BYTE_ARRAY => {
                    let descriptor = chunk.column_descr();
                    let levels = Levels {
                        repetition: descriptor.max_rep_level(),
                        definition: descriptor.max_def_level(),
                    };
                    let limit = chunk.num_values().max(0) as usize;
                    let pages = group.get_column_page_reader(column).map_err(error)?;
                    Values::Text(read_coded(pages, levels, limit)?)
                }
                _ => return Err("a column of an unexpected type".into()),
            };
            columns.push(values);
        }
        Ok(RowGroup { count, columns })
    }
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

/// The number of columns of the file, unless they are not the bucket schema's (or the
/// columns of an older file, a prefix of it), in order.
fn check_schema(file: &SchemaDescriptor) -> Result<usize, String> {
    let ours = parse_message_type(SCHEMA).map_err(|error| error.to_string())?;
    let ours = SchemaDescriptor::new(std::sync::Arc::new(ours));
    let count = file.num_columns();
    let known = [
        ours.num_columns(),
        COLUMNS_WITHOUT_CATALOG_IDS,
        COLUMNS_WITHOUT_PROTO,
    ];
    let same = known.contains(&count)
        && ours.columns().iter().zip(file.columns()).all(|(a, b)| {
            a.path() == b.path()
                && a.physical_type() == b.physical_type()
                && a.max_def_level() == b.max_def_level()
                && a.max_rep_level() == b.max_rep_level()
        });
    if same {
        Ok(count)
    } else {
        Err("the columns are not a bucket file's".into())
    }
}

/// Reads every value of one integer column chunk of `count` rows.
fn read_ints(reader: ColumnReader, count: usize) -> Result<Values, String> {
    let ColumnReader::Int64ColumnReader(mut reader) = reader else {
        return Err("an integer column of an unexpected type".into());
    };
    let mut values = Vec::with_capacity(count);
    while reader
        .read_records(count, None, None, &mut values)
        .map_err(|error| error.to_string())?
        .0
        > 0
    {}
    Ok(Values::Int(values))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durability::checkpoint::{path_of, write_bucket};
    use crate::durability::test_rows::row;

    /// Each value of a text column, in order.
    fn texts(column: &Values) -> Vec<&str> {
        let Values::Text(coded) = column else {
            panic!("a text column: {column:?}");
        };
        coded
            .indices
            .iter()
            .map(|index| std::str::from_utf8(&coded.distinct[*index as usize]).expect("UTF-8"))
            .collect()
    }

    #[test]
    fn a_written_file_reads_back_as_its_columns_and_covered_position() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let rows = vec![
            row(1, &["a=1", "b=2"], 5),
            row(2, &[], 6),
            row(3, &["a=1"], 7),
        ];
        write_bucket(directory.path(), 1_700_000_100, &rows, 4242, None).expect("the file");
        let read = read_bucket(&path_of(directory.path(), 1_700_000_100)).expect("readable");
        let BucketRead::Loaded { covered, groups } = read else {
            panic!("the file loads: {read:?}");
        };
        assert_eq!(covered, 4242);
        assert_eq!(groups.len(), 1);
        let columns = &groups[0].columns;
        assert_eq!(groups[0].count, 3);
        assert!(matches!(&columns[20], Values::Int(packets) if packets == &[5, 6, 7]));
        assert_eq!(texts(&columns[6]), ["db-1", "db-2", "db-3"]);
        assert_eq!(texts(&columns[3]), ["web", "web", "web"]);
        let Values::Text(namespaces) = &columns[4] else {
            panic!("a text column");
        };
        assert_eq!(namespaces.distinct.len(), 1, "one dictionary entry");
        assert_eq!(texts(&columns[18]), ["a=1", "b=2", "a=1"]);
        let Values::Text(labels) = &columns[18] else {
            panic!("a list column");
        };
        assert_eq!(labels.definition, [1, 1, 0, 1]);
        assert_eq!(labels.repetition, [0, 1, 0, 0]);
    }

    #[test]
    fn a_flipped_byte_in_the_data_is_damage() {
        let directory = tempfile::tempdir().expect("a temporary directory");
        write_bucket(
            directory.path(),
            1_700_000_100,
            &[row(1, &["a=1"], 5)],
            7,
            None,
        )
        .expect("a file");
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
