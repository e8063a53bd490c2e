//! A borrowed reader of the two outer levels of an encoded `FlowUpdate` (the update and its
//! `Flow`): the flow's numbers, and its key and labels as slices of the request buffer, with
//! no allocation. It reads the wire format exactly as prost does at these levels (varints of
//! at most ten bytes, keys within `u32`, field numbers from 1, wire types 0–5, unknown fields
//! skipped with prost's recursion limit, known fields only in their own wire type, the last
//! value of a singular scalar kept), so what it refuses prost refuses, and what it accepts
//! prost reads with the same values, unless the key or a label's text is invalid: it does not
//! look inside the key or at the labels' text, and the caller decodes those with prost the
//! first time it meets their bytes (see `ingest::connection`).
//!
//! A singular message field present more than once is merged by prost; the reader does not
//! merge, it answers [`WireError::Merge`] and the caller decodes the update with prost.

/// prost's recursion limit: how many message levels deep a decode may go.
const RECURSION_LIMIT: u32 = 100;

/// Why the reader did not read an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The bytes are not a valid encoding at the levels the reader reads.
    Malformed,
    /// A singular message field appears more than once: prost merges the copies.
    Merge,
}

/// One encoded `FlowUpdate`, read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UpdateView<'a> {
    /// The update's flow, if present.
    pub flow: Option<FlowView<'a>>,
}

/// One encoded `Flow`, read: its numbers, and its key and labels as encoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowView<'a> {
    /// The encoded `FlowKey` (its fields, without the length prefix), if present.
    pub key: Option<&'a [u8]>,
    /// Start of the flow's interval, in Unix seconds.
    pub start_time: i64,
    /// End of the flow's interval, in Unix seconds.
    pub end_time: i64,
    /// The counters, in field order: packets in and out, bytes in and out, connections
    /// started, completed and live.
    pub counters: [i64; 7],
    /// The label fields of both sides as encoded (tags and lengths included), when they are
    /// one run of fields with no other field among them (as senders write them); empty when
    /// there is no label.
    pub labels_run: Option<&'a [u8]>,
    /// Every field of the flow, as encoded, for reading the labels.
    body: &'a [u8],
}

/// The labels of one side of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `source_labels`.
    Source,
    /// `dest_labels`.
    Dest,
}

impl<'a> FlowView<'a> {
    /// The labels of `side`, in the order sent, as encoded (not checked to be UTF-8: prost
    /// checks them when it decodes the update).
    pub fn labels(&self, side: Side) -> Labels<'a> {
        let field = match side {
            Side::Source => 4,
            Side::Dest => 5,
        };
        Labels {
            reader: Reader { rest: self.body },
            field,
        }
    }
}

/// The labels of one side, in the order sent.
#[derive(Clone, Debug)]
pub struct Labels<'a> {
    reader: Reader<'a>,
    field: u32,
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    /// The next label. The flow's fields were read whole when it was read, so reading them
    /// again cannot fail; a failure would end the labels.
    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.reader.rest.is_empty() {
            let (tag, wire_type) = self.reader.key().ok()?;
            if tag == self.field && wire_type == WireType::LengthDelimited {
                return self.reader.length_delimited().ok();
            }
            self.reader.skip(wire_type, tag, RECURSION_LIMIT - 1).ok()?;
        }
        None
    }
}

/// Reads `bytes` as an encoded `FlowUpdate`.
pub fn read_update(bytes: &[u8]) -> Result<UpdateView<'_>, WireError> {
    let mut reader = Reader { rest: bytes };
    let mut update = UpdateView::default();
    while !reader.rest.is_empty() {
        let (tag, wire_type) = reader.key()?;
        match tag {
            1 => {
                if update.flow.is_some() {
                    return Err(WireError::Merge);
                }
                let body = reader.message(wire_type, RECURSION_LIMIT)?;
                update.flow = Some(read_flow(body)?);
            }
            _ => reader.skip(wire_type, tag, RECURSION_LIMIT)?,
        }
    }
    Ok(update)
}

/// Reads `body` as the fields of a `Flow`, one level below the update.
fn read_flow(body: &[u8]) -> Result<FlowView<'_>, WireError> {
    let depth = RECURSION_LIMIT - 1;
    let mut reader = Reader { rest: body };
    let mut flow = FlowView {
        body,
        labels_run: Some(&[]),
        ..FlowView::default()
    };
    // Where the run of label fields starts and ends, and whether it is one run.
    let mut run: Option<(usize, usize)> = None;
    let mut one_run = true;
    while !reader.rest.is_empty() {
        let field_start = body.len() - reader.rest.len();
        let (tag, wire_type) = reader.key()?;
        if let (4 | 5, Some((_, end))) = (tag, run) {
            one_run &= end == field_start;
        }
        match tag {
            1 => {
                if flow.key.is_some() {
                    return Err(WireError::Merge);
                }
                flow.key = Some(reader.message(wire_type, depth)?);
            }
            2 => flow.start_time = reader.int64(wire_type)?,
            3 => flow.end_time = reader.int64(wire_type)?,
            4 | 5 => {
                reader.expect(wire_type, WireType::LengthDelimited)?;
                reader.length_delimited()?;
                let end = body.len() - reader.rest.len();
                run = Some((run.map_or(field_start, |(start, _)| start), end));
            }
            6..=12 => flow.counters[tag as usize - 6] = reader.int64(wire_type)?,
            _ => reader.skip(wire_type, tag, depth)?,
        }
    }
    flow.labels_run = match run {
        None => Some(&[]),
        Some((start, end)) => one_run.then(|| &body[start..end]),
    };
    Ok(flow)
}

/// The wire types prost knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WireType {
    Varint,
    SixtyFourBit,
    LengthDelimited,
    StartGroup,
    EndGroup,
    ThirtyTwoBit,
}

/// The bytes not yet read.
#[derive(Clone, Debug)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A varint of at most ten bytes, the tenth at most 1, as prost reads it.
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (index, byte) in self.rest.iter().take(10).enumerate() {
            if index == 9 && *byte > 1 {
                return Err(WireError::Malformed);
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if *byte < 0x80 {
                self.rest = &self.rest[index + 1..];
                return Ok(value);
            }
        }
        Err(WireError::Malformed)
    }

    /// A field key: its field number and wire type.
    fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = u32::try_from(self.varint()?).map_err(|_| WireError::Malformed)?;
        let wire_type = match key & 0x07 {
            0 => WireType::Varint,
            1 => WireType::SixtyFourBit,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::ThirtyTwoBit,
            _ => return Err(WireError::Malformed),
        };
        match key >> 3 {
            0 => Err(WireError::Malformed),
            tag => Ok((tag, wire_type)),
        }
    }

    /// The next `count` bytes.
    fn take(&mut self, count: u64) -> Result<&'a [u8], WireError> {
        let count = usize::try_from(count).map_err(|_| WireError::Malformed)?;
        if count > self.rest.len() {
            return Err(WireError::Malformed);
        }
        let (taken, rest) = self.rest.split_at(count);
        self.rest = rest;
        Ok(taken)
    }

    /// A length-prefixed value.
    fn length_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let length = self.varint()?;
        self.take(length)
    }

    /// Fails unless a known field came in its own wire type.
    fn expect(&self, wire_type: WireType, expected: WireType) -> Result<(), WireError> {
        if wire_type == expected {
            Ok(())
        } else {
            Err(WireError::Malformed)
        }
    }

    /// An `int64` (or enum) field's value.
    fn int64(&mut self, wire_type: WireType) -> Result<i64, WireError> {
        self.expect(wire_type, WireType::Varint)?;
        Ok(self.varint()? as i64)
    }

    /// A message field's body, read at a level with `depth` levels of recursion left.
    fn message(&mut self, wire_type: WireType, depth: u32) -> Result<&'a [u8], WireError> {
        self.expect(wire_type, WireType::LengthDelimited)?;
        if depth == 0 {
            return Err(WireError::Malformed);
        }
        self.length_delimited()
    }

    /// Skips an unknown field as prost does, groups included.
    fn skip(&mut self, wire_type: WireType, tag: u32, depth: u32) -> Result<(), WireError> {
        if depth == 0 {
            return Err(WireError::Malformed);
        }
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::SixtyFourBit => self.take(8).map(drop),
            WireType::ThirtyTwoBit => self.take(4).map(drop),
            WireType::LengthDelimited => self.length_delimited().map(drop),
            WireType::StartGroup => loop {
                let (inner_tag, inner_wire_type) = self.key()?;
                if inner_wire_type == WireType::EndGroup {
                    return if inner_tag == tag {
                        Ok(())
                    } else {
                        Err(WireError::Malformed)
                    };
                }
                self.skip(inner_wire_type, inner_tag, depth - 1)?;
            },
            WireType::EndGroup => Err(WireError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_flow_numbers_key_and_labels() {
        // flow { Key { source_name: "a" }, start_time: 5, source_labels: ["x=1"], dest_labels:
        // ["y=2"], bytes_out: 300 } and an unknown varint field 9 at the top.
        let bytes = [
            0x0a, 0x14, 0x0a, 0x03, 0x0a, 0x01, b'a', 0x10, 0x05, 0x22, 0x03, b'x', b'=', b'1',
            0x2a, 0x03, b'y', b'=', b'2', 0x48, 0xac, 0x02, 0x48, 0x07,
        ];
        let update = read_update(&bytes).expect("a valid update");
        let flow = update.flow.expect("a flow");
        assert_eq!(flow.key, Some(&[0x0a, 0x01, b'a'][..]));
        assert_eq!(flow.start_time, 5);
        assert_eq!(flow.counters, [0, 0, 0, 300, 0, 0, 0]);
        assert_eq!(flow.labels(Side::Source).collect::<Vec<_>>(), vec![b"x=1"]);
        assert_eq!(flow.labels(Side::Dest).collect::<Vec<_>>(), vec![b"y=2"]);
        assert_eq!(flow.labels_run, Some(&bytes[9..19]));
        // A number between the two sides' labels: no single run.
        let split = [0x0a, 0x07, 0x22, 0x01, b'x', 0x10, 0x05, 0x2a, 0x00];
        let flow = read_update(&split).expect("valid").flow.expect("a flow");
        assert_eq!(flow.labels_run, None);
        assert_eq!(flow.labels(Side::Source).collect::<Vec<_>>(), vec![b"x"]);
    }

    #[test]
    fn refuses_what_prost_refuses_and_defers_merges() {
        assert_eq!(read_update(&[0x08, 0xff, 0xff]), Err(WireError::Malformed));
        assert_eq!(read_update(&[0x0f, 0x01]), Err(WireError::Malformed));
        assert_eq!(read_update(&[0x32, 0x7f, 0x01]), Err(WireError::Malformed));
        assert_eq!(read_update(&[0x00, 0x01]), Err(WireError::Malformed));
        // The flow's start_time as a length-delimited field.
        assert_eq!(
            read_update(&[0x0a, 0x02, 0x12, 0x00]),
            Err(WireError::Malformed)
        );
        assert_eq!(
            read_update(&[0x0a, 0x00, 0x0a, 0x00]),
            Err(WireError::Merge)
        );
        assert_eq!(read_update(&[]), Ok(UpdateView::default()));
    }
}
