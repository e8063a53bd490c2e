//! Reads one text column chunk of a bucket file as dictionary codes (SPEC §13.4): the chunk's
//! distinct values (its dictionary page's entries, then the values of any page written plain
//! after the dictionary filled) and, for each value in order, its index among them. Recovery
//! converts each distinct value once and maps rows by index, without hashing value bytes per
//! row. Pages come from the Parquet crate's page reader (decompressed); their levels and
//! values are decoded here (PLAIN, PLAIN_DICTIONARY / RLE_DICTIONARY, and the RLE /
//! bit-packed hybrid of levels and dictionary indices).

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};

/// One text column chunk, coded.
#[derive(Debug, Default, PartialEq)]
pub struct Coded {
    /// The chunk's values, each once where its pages were dictionary-encoded.
    pub distinct: Vec<Bytes>,
    /// Each value's index into `distinct`, in order.
    pub indices: Vec<u32>,
    /// Definition levels (list columns only): 0 for an empty list.
    pub definition: Vec<i16>,
    /// Repetition levels (list columns only): 0 where a row starts.
    pub repetition: Vec<i16>,
}

/// A column chunk's level bounds: its maximum repetition and definition levels (0 for a
/// required column outside any list).
#[derive(Clone, Copy, Debug)]
pub struct Levels {
    /// Maximum repetition level.
    pub repetition: i16,
    /// Maximum definition level.
    pub definition: i16,
}

/// Reads every page of one column chunk of byte arrays holding at most `limit` levels.
pub fn read_coded(
    pages: Box<dyn PageReader>,
    levels: Levels,
    limit: usize,
) -> Result<Coded, String> {
    // Reserved whole: a chunk holds `limit` levels (its metadata's count), so the vectors do
    // not grow page by page.
    let mut coded = Coded {
        indices: Vec::with_capacity(limit),
        ..Coded::default()
    };
    for (max, levels) in [
        (levels.repetition, &mut coded.repetition),
        (levels.definition, &mut coded.definition),
    ] {
        if max > 0 {
            levels.reserve_exact(limit);
        }
    }
    // The dictionary's place in `distinct`: its first index and its length.
    let mut dictionary: Option<(u32, u32)> = None;
    for page in pages {
        let page = page.map_err(|error| error.to_string())?;
        let (values, encoding, count) = match page {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY)
                    || dictionary.is_some()
                {
                    return Err(format!("a dictionary page encoded {encoding}"));
                }
                let first = index_of(coded.distinct.len())?;
                plain(&buf, num_values as usize, &mut coded.distinct)?;
                dictionary = Some((first, num_values));
                continue;
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                ..
            } => {
                let count = checked_count(&coded, num_values, limit)?;
                let mut rest = buf;
                for (max, level_encoding, out) in [
                    (levels.repetition, rep_level_encoding, &mut coded.repetition),
                    (levels.definition, def_level_encoding, &mut coded.definition),
                ] {
                    if max > 0 {
                        if level_encoding != Encoding::RLE {
                            return Err(format!("levels encoded {level_encoding}"));
                        }
                        let length = rest
                            .get(..4)
                            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
                            .map(|bytes| u32::from_le_bytes(bytes) as usize)
                            .filter(|length| 4 + length <= rest.len())
                            .ok_or("a data page's levels pass its end")?;
                        levels_of(&rest[4..4 + length], max, count, out)?;
                        rest = rest.slice(4 + length..);
                    }
                }
                (rest, encoding, count)
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let count = checked_count(&coded, num_values, limit)?;
                let (repetition, definition) =
                    (rep_levels_byte_len as usize, def_levels_byte_len as usize);
                if repetition + definition > buf.len() {
                    return Err("a data page's levels pass its end".into());
                }
                if levels.repetition > 0 {
                    levels_of(
                        &buf[..repetition],
                        levels.repetition,
                        count,
                        &mut coded.repetition,
                    )?;
                }
                if levels.definition > 0 {
                    levels_of(
                        &buf[repetition..repetition + definition],
                        levels.definition,
                        count,
                        &mut coded.definition,
                    )?;
                }
                (buf.slice(repetition + definition..), encoding, count)
            }
        };
        let present = if levels.definition > 0 {
            let page_levels = &coded.definition[coded.definition.len() - count..];
            page_levels
                .iter()
                .filter(|level| **level == levels.definition)
                .count()
        } else {
            count
        };
        match encoding {
            Encoding::PLAIN => {
                let first = coded.distinct.len();
                plain(&values, present, &mut coded.distinct)?;
                for index in first..coded.distinct.len() {
                    coded.indices.push(index_of(index)?);
                }
            }
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                let (first, length) = dictionary.ok_or("dictionary codes without a dictionary")?;
                let (width, codes) = values
                    .split_first()
                    .ok_or("a dictionary-coded page without its bit width")?;
                let start = coded.indices.len();
                hybrid(codes, *width, present, |code| coded.indices.push(code))?;
                if coded.indices[start..].iter().any(|code| *code >= length) {
                    return Err("a dictionary code past the dictionary".into());
                }
                for code in &mut coded.indices[start..] {
                    *code += first;
                }
            }
            other => return Err(format!("values encoded {other}")),
        }
    }
    Ok(coded)
}

/// A data page's level count, refused if the chunk would then hold more than `limit`.
fn checked_count(coded: &Coded, num_values: u32, limit: usize) -> Result<usize, String> {
    let count = num_values as usize;
    let read = coded.indices.len().max(coded.definition.len());
    if read + count > limit {
        return Err("a column chunk holds more values than its metadata says".into());
    }
    Ok(count)
}

/// An index into `distinct` as a code.
fn index_of(index: usize) -> Result<u32, String> {
    u32::try_from(index).map_err(|_| "a column chunk with too many values".to_string())
}

/// Appends `count` PLAIN byte arrays (each a 4-byte little-endian length, then its bytes)
/// of `data` to `out`, as slices of it.
fn plain(data: &Bytes, count: usize, out: &mut Vec<Bytes>) -> Result<(), String> {
    // At least 4 bytes a value: a count the page cannot hold reserves no more than it can.
    out.reserve(count.min(data.len() / 4));
    let mut at = 0;
    for _ in 0..count {
        let length = data
            .get(at..at + 4)
            .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
            .map(|bytes| u32::from_le_bytes(bytes) as usize)
            .ok_or("a plain value passes its page's end")?;
        let end = at + 4 + length;
        if end > data.len() {
            return Err("a plain value passes its page's end".into());
        }
        out.push(data.slice(at + 4..end));
        at = end;
    }
    Ok(())
}

/// Decodes `count` levels of at most `max` (the RLE / bit-packed hybrid) into `out`.
fn levels_of(data: &[u8], max: i16, count: usize, out: &mut Vec<i16>) -> Result<(), String> {
    let width = (16 - max.leading_zeros()) as u8;
    let mut bad = false;
    hybrid(data, width, count, |level| match i16::try_from(level) {
        Ok(level) if level <= max => out.push(level),
        _ => bad = true,
    })?;
    if bad {
        Err("a level past its column's maximum".into())
    } else {
        Ok(())
    }
}

/// Reads an unsigned LEB128 varint from the front of `data`.
fn varint(data: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (byte, rest) = data
            .split_first()
            .ok_or("a run header passes its page's end")?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a run header longer than ten bytes".into())
}

/// Decodes `count` values of `width` bits from the RLE / bit-packed hybrid encoding in
/// `data`, calling `emit` with each.
fn hybrid(
    mut data: &[u8],
    width: u8,
    count: usize,
    mut emit: impl FnMut(u32),
) -> Result<(), String> {
    if width > 32 {
        return Err(format!("a bit width of {width}"));
    }
    let width = usize::from(width);
    let mask = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    let mut left = count;
    while left > 0 {
        let header = varint(&mut data)?;
        let run = usize::try_from(header >> 1).map_err(|_| "a run too long".to_string())?;
        if header & 1 == 1 {
            // `run` groups of 8 values, `width` bytes a group, least significant bit first.
            let bytes = run
                .checked_mul(width)
                .filter(|bytes| *bytes <= data.len())
                .ok_or("a bit-packed run passes its page's end")?;
            let (packed, rest) = data.split_at(bytes);
            data = rest;
            let values = run.saturating_mul(8).min(left);
            for index in 0..values {
                let bit = index * width;
                let mut word = [0u8; 8];
                let from = bit / 8;
                let to = (from + 8).min(packed.len());
                word[..to - from].copy_from_slice(&packed[from..to]);
                let value = (u64::from_le_bytes(word) >> (bit % 8)) & mask;
                emit(value as u32);
            }
            left -= values;
        } else {
            let bytes = width.div_ceil(8);
            let (value, rest) = data
                .split_at_checked(bytes)
                .ok_or("a repeated run passes its page's end")?;
            data = rest;
            let mut word = [0u8; 4];
            word[..bytes].copy_from_slice(value);
            let value = u32::from_le_bytes(word);
            let values = run.min(left);
            if values == 0 {
                return Err("an empty repeated run".into());
            }
            for _ in 0..values {
                emit(value);
            }
            left -= values;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::{WriterProperties, WriterVersion};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    use super::*;
    use crate::durability::checkpoint::list_levels;

    /// A file of one text column and one list column holding `texts` and `lists`, its
    /// dictionary pages at most `dictionary_bytes`, written as `version` pages.
    fn written(
        texts: &[String],
        lists: &[Vec<String>],
        dictionary_bytes: usize,
        version: WriterVersion,
    ) -> Bytes {
        let schema = "message m {
          REQUIRED BYTE_ARRAY text (UTF8);
          REQUIRED GROUP labels (LIST) { REPEATED GROUP list { REQUIRED BYTE_ARRAY element (UTF8); } }
        }";
        let schema = Arc::new(parse_message_type(schema).expect("the schema parses"));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_page_size_limit(dictionary_bytes)
            .set_data_page_size_limit(256)
            .set_write_batch_size(16)
            .set_writer_version(version)
            // What a chunk falls back to once its dictionary is full (as Eddy writes them;
            // version 2 pages would otherwise fall back to DELTA_BYTE_ARRAY).
            .set_encoding(Encoding::PLAIN)
            .build();
        let mut writer =
            SerializedFileWriter::new(Vec::new(), schema, Arc::new(properties)).expect("a writer");
        let mut group = writer.next_row_group().expect("a row group");
        let bytes = |text: &String| ByteArray::from(text.as_bytes().to_vec());
        let mut column = group
            .next_column()
            .expect("a column")
            .expect("the text column");
        let values: Vec<ByteArray> = texts.iter().map(bytes).collect();
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .expect("the texts are written");
        column.close().expect("the column closes");
        let mut column = group
            .next_column()
            .expect("a column")
            .expect("the list column");
        let (values, definition, repetition) = list_levels(lists.iter().map(Vec::as_slice));
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, Some(&definition), Some(&repetition))
            .expect("the lists are written");
        column.close().expect("the column closes");
        group.close().expect("the row group closes");
        Bytes::from(writer.into_inner().expect("the file is written"))
    }

    /// The coded columns of the file's only row group.
    fn read(file: Bytes) -> (Coded, Coded) {
        let reader = SerializedFileReader::new(file).expect("a Parquet file");
        let group = reader.get_row_group(0).expect("a row group");
        let mut columns = (0..2).map(|index| {
            let chunk = group.metadata().column(index);
            let descriptor = chunk.column_descr();
            let levels = Levels {
                repetition: descriptor.max_rep_level(),
                definition: descriptor.max_def_level(),
            };
            let pages = group.get_column_page_reader(index).expect("its pages");
            read_coded(pages, levels, chunk.num_values() as usize).expect("the column reads")
        });
        let text = columns.next().expect("the text column");
        (text, columns.next().expect("the list column"))
    }

    fn values(coded: &Coded) -> Vec<String> {
        coded
            .indices
            .iter()
            .map(|index| {
                String::from_utf8(coded.distinct[*index as usize].to_vec()).expect("UTF-8")
            })
            .collect()
    }

    #[test]
    fn columns_read_back_coded_whether_dictionary_or_plain_and_in_either_page_version() {
        let texts: Vec<String> = (0..500).map(|row| format!("value-{}", row % 7)).collect();
        let lists: Vec<Vec<String>> = (0..500)
            .map(|row| {
                (0..row % 4)
                    .map(|label| format!("l{}={}", label, row % 3))
                    .collect()
            })
            .collect();
        let elements: Vec<String> = lists.iter().flatten().cloned().collect();
        for version in [WriterVersion::PARQUET_1_0, WriterVersion::PARQUET_2_0] {
            let (text, list) = read(written(&texts, &lists, 1024 * 1024, version));
            assert_eq!(values(&text), texts, "{version:?}");
            assert_eq!(
                text.distinct.len(),
                7,
                "each distinct value once: {version:?}"
            );
            assert_eq!(values(&list), elements, "{version:?}");
            assert_eq!(list.distinct.len(), 9, "{version:?}");
            let rows = list.repetition.iter().filter(|level| **level == 0).count();
            assert_eq!(rows, 500);
            assert_eq!(
                list.definition.iter().filter(|level| **level == 1).count(),
                elements.len()
            );
            // A dictionary of 32 bytes fills at once: the rest of each chunk is plain.
            let (text, list) = read(written(&texts, &lists, 32, version));
            assert_eq!(values(&text), texts, "{version:?}");
            assert!(text.distinct.len() > 7, "plain pages: {version:?}");
            assert_eq!(values(&list), elements, "{version:?}");
        }
    }

    fn decoded(data: &[u8], width: u8, count: usize) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        hybrid(data, width, count, |value| out.push(value))?;
        Ok(out)
    }

    #[test]
    fn a_bit_packed_run_of_width_zero_may_claim_any_length() {
        // A bit-packed run header claiming 2^62 groups of width 0: no bytes follow, and only
        // the values asked for are read.
        let mut data = Vec::new();
        let mut header = ((1u64 << 62) << 1) | 1;
        while header >= 0x80 {
            data.push((header as u8) | 0x80);
            header >>= 7;
        }
        data.push(header as u8);
        assert_eq!(decoded(&data, 0, 5).expect("the run decodes"), vec![0; 5]);
    }

    #[test]
    fn hybrid_runs_decode_repeated_and_bit_packed_values() {
        // A repeated run of 5 × 3 (width 3: one byte), then one bit-packed group of 8 values
        // 0..=7 (width 3: 3 bytes, least significant bit first).
        let data = [
            5 << 1,
            3,
            (1 << 1) | 1,
            0b1000_1000,
            0b1100_0110,
            0b1111_1010,
        ];
        assert_eq!(
            decoded(&data, 3, 13).expect("the runs decode"),
            [3, 3, 3, 3, 3, 0, 1, 2, 3, 4, 5, 6, 7]
        );
        assert_eq!(
            decoded(&data, 3, 7).expect("fewer values decode"),
            [3, 3, 3, 3, 3, 0, 1]
        );
        assert_eq!(decoded(&[4 << 1], 0, 4).expect("width 0"), [0, 0, 0, 0]);
        let wide = [1 << 1, 0x34, 0x12];
        assert_eq!(decoded(&wide, 13, 1).expect("two bytes a value"), [0x1234]);
    }

    #[test]
    fn cut_or_impossible_runs_are_errors() {
        assert!(decoded(&[5 << 1], 3, 5).is_err(), "no value byte");
        assert!(
            decoded(&[(1 << 1) | 1, 0], 3, 8).is_err(),
            "a group cut short"
        );
        assert!(
            decoded(&[5 << 1, 1], 3, 6).is_err(),
            "fewer values than asked"
        );
        assert!(decoded(&[0, 1], 3, 1).is_err(), "an empty run");
        assert!(decoded(&[1 << 1, 1], 40, 1).is_err(), "too wide");
        let mut levels = Vec::new();
        assert!(
            levels_of(&[1 << 1, 3], 1, 1, &mut levels).is_err(),
            "past the maximum"
        );
    }

    #[test]
    fn plain_values_are_slices_of_their_page() {
        let page = Bytes::from_static(b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00c");
        let mut out = Vec::new();
        plain(&page, 3, &mut out).expect("three values");
        assert_eq!(out, [&b"ab"[..], b"", b"c"]);
        assert!(
            plain(&page, 4, &mut out).is_err(),
            "a fourth value passes the end"
        );
    }
}
