//! The write-ahead log's file format: a segment is a header followed by records, each a
//! length, a CRC32C of its payload, and the payload. Reading tells a torn tail (an unfinished
//! last record, cut by a crash) from damage (a record or header failing its checksum with
//! data after it).
//!
//! ```text
//! header  : "EDDYWAL1" | first position (u64 LE) | CRC32C of the 16 bytes before (u32 LE)
//! record  : payload length (u32 LE, > 0) | CRC32C of the payload (u32 LE) | payload
//! ```
//!
//! A position is a byte offset in the log as a whole: a segment's first position plus the
//! offset in its file.

use std::path::Path;

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"EDDYWAL1";
/// Bytes of a segment header.
pub const HEADER_BYTES: usize = 20;
/// Bytes before each record's payload.
pub const RECORD_OVERHEAD: usize = 8;
/// The largest payload a record may carry.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// A segment's header bytes for a segment starting at `first`.
pub fn header(first: u64) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[..8].copy_from_slice(MAGIC);
    bytes[8..16].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Appends one framed record holding `payload` to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Begins a record framed in place: room for its length and checksum, filled by
/// [`end_record`] once the payload that follows is written.
pub fn begin_record(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0; RECORD_OVERHEAD]);
}

/// Frames the record `record` holds (begun with [`begin_record`], its payload written after
/// the room): the same bytes [`frame`] writes, with the payload copied no more.
pub fn end_record(record: &mut [u8]) {
    let (head, payload) = record.split_at_mut(RECORD_OVERHEAD);
    head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    head[4..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());
}

/// The name of the segment starting at position `first`.
pub fn file_name(first: u64) -> String {
    format!("wal-{first:020}.seg")
}

/// The first position a segment's file name gives, if it is a segment's name.
pub fn first_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("wal-")?
        .strip_suffix(".seg")?
        .parse()
        .ok()
}

/// How a segment's bytes ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every byte belongs to a whole, valid record.
    Clean,
    /// The last record is unfinished or fails its checksum with nothing after it: the bytes
    /// from `valid_bytes` on are a crash's leftovers.
    Torn,
    /// A header or record fails its checksum with data after it: the file is damaged.
    Damaged,
}

/// What reading a segment found.
#[derive(Debug)]
pub struct SegmentRead<'a> {
    /// The position of the header's first byte.
    pub first: u64,
    /// Each valid record's payload, in order.
    pub records: Vec<&'a [u8]>,
    /// Bytes of the header and the valid records.
    pub valid_bytes: usize,
    /// How the bytes ended.
    pub ending: Ending,
}

/// Reads a segment's bytes. A file too short for its header is torn (a crash right after
/// creating it); a header failing its checksum is damage.
pub fn read(bytes: &[u8]) -> SegmentRead<'_> {
    let mut read = SegmentRead {
        first: 0,
        records: Vec::new(),
        valid_bytes: 0,
        ending: Ending::Clean,
    };
    if bytes.len() < HEADER_BYTES {
        read.ending = if bytes.is_empty() {
            Ending::Clean
        } else {
            Ending::Torn
        };
        return read;
    }
    let stored_crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if &bytes[..8] != MAGIC || crc32c::crc32c(&bytes[..16]) != stored_crc {
        read.ending = Ending::Damaged;
        return read;
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[8..16]);
    read.first = u64::from_le_bytes(first);
    let mut offset = HEADER_BYTES;
    read.valid_bytes = offset;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let Some(payload) = record_at(rest) else {
            read.ending = if is_tail(rest) {
                Ending::Torn
            } else {
                Ending::Damaged
            };
            return read;
        };
        read.records.push(payload);
        offset += RECORD_OVERHEAD + payload.len();
        read.valid_bytes = offset;
    }
    read
}

/// The payload of the record at the start of `rest`, if it is whole and valid.
pub(crate) fn record_at(rest: &[u8]) -> Option<&[u8]> {
    let head = rest.get(..RECORD_OVERHEAD)?;
    let length = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if length == 0 || length > MAX_PAYLOAD {
        return None;
    }
    let payload = rest.get(RECORD_OVERHEAD..RECORD_OVERHEAD + length)?;
    (crc32c::crc32c(payload) == crc).then_some(payload)
}

/// Whether the invalid bytes `rest` are a crash's leftovers rather than damage: a record
/// reaching or passing the end of the file, or nothing but zeros.
pub(crate) fn is_tail(rest: &[u8]) -> bool {
    if rest.len() < RECORD_OVERHEAD || rest.iter().all(|byte| *byte == 0) {
        return true;
    }
    let length = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    length > 0 && RECORD_OVERHEAD + length >= rest.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let mut bytes = header(1000).to_vec();
        for payload in payloads {
            frame(payload, &mut bytes);
        }
        bytes
    }

    #[test]
    fn whole_records_read_back_in_order() {
        let bytes = segment(&[b"one", b"two"]);
        let read = read(&bytes);
        assert_eq!(read.first, 1000);
        assert_eq!(read.records, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(read.valid_bytes, bytes.len());
        assert_eq!(read.ending, Ending::Clean);
    }

    #[test]
    fn a_cut_or_corrupt_last_record_is_a_torn_tail() {
        let bytes = segment(&[b"one", b"two"]);
        let cut = &bytes[..bytes.len() - 1];
        let read_cut = read(cut);
        assert_eq!(read_cut.records, vec![&b"one"[..]]);
        assert_eq!(read_cut.valid_bytes, HEADER_BYTES + RECORD_OVERHEAD + 3);
        assert_eq!(read_cut.ending, Ending::Torn);
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(read(&flipped).ending, Ending::Torn);
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 64]);
        let read_zeros = read(&zeros);
        assert_eq!(read_zeros.records.len(), 2);
        assert_eq!(read_zeros.ending, Ending::Torn);
    }

    #[test]
    fn a_corrupt_record_with_data_after_it_is_damage() {
        let mut bytes = segment(&[b"one", b"two", b"three"]);
        bytes[HEADER_BYTES + RECORD_OVERHEAD] ^= 0x40;
        let read_damaged = read(&bytes);
        assert!(read_damaged.records.is_empty());
        assert_eq!(read_damaged.ending, Ending::Damaged);
        let mut header_damaged = segment(&[b"one"]);
        header_damaged[9] ^= 1;
        assert_eq!(read(&header_damaged).ending, Ending::Damaged);
    }

    #[test]
    fn segment_names_carry_their_first_position() {
        let name = file_name(42);
        assert_eq!(name, "wal-00000000000000000042.seg");
        assert_eq!(first_of(Path::new(&name)), Some(42));
        assert_eq!(first_of(Path::new("other.seg")), None);
    }
}
