//! How each catalog table stores its values as bytes in its arena: strings and trace encodings
//! as they are, label sets as their labels each prefixed by its length (a LEB128 varint), and
//! how a value handed by a caller is hashed and compared with stored bytes without being
//! encoded first (so a look-up allocates nothing).
//!
//! Invariant: for every value, [`Encoding::hash`] equals `xxh3_64` of the bytes
//! [`Encoding::encode`] appends, so a table rehashes stored values from the arena alone.

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// The encoding of one table's values.
pub trait Encoding {
    /// A value as callers hand it in.
    type Value: ?Sized;
    /// A value as callers get it back.
    type Owned;

    /// Appends the stored bytes of `value` to `arena`.
    fn encode(value: &Self::Value, arena: &mut Vec<u8>);
    /// `xxh3_64` of the stored bytes of `value`.
    fn hash(value: &Self::Value) -> u64;
    /// Whether `stored` are the stored bytes of `value`.
    fn matches(value: &Self::Value, stored: &[u8]) -> bool;
    /// The bytes `value` counts for against its table's byte bound.
    fn weight(value: &Self::Value) -> usize;
    /// The same, from its stored bytes.
    fn stored_weight(stored: &[u8]) -> usize;
    /// The value behind stored bytes.
    fn decode(stored: &[u8]) -> Self::Owned;
    /// Whether `stored` are bytes [`Encoding::encode`] could have written: checked on bytes
    /// read from a file before a table takes them as they are (see
    /// `InternTable::restore_all`).
    fn valid_stored(stored: &[u8]) -> bool;
}

/// The hash a table keeps its stored values under.
pub fn stored_hash(stored: &[u8]) -> u64 {
    xxh3_64(stored)
}

/// Strings (names, namespaces, protocols, policy fields), stored as their UTF-8 bytes.
pub enum Utf8 {}

impl Encoding for Utf8 {
    type Value = str;
    type Owned = String;

    fn encode(value: &str, arena: &mut Vec<u8>) {
        arena.extend_from_slice(value.as_bytes());
    }

    fn hash(value: &str) -> u64 {
        xxh3_64(value.as_bytes())
    }

    fn matches(value: &str, stored: &[u8]) -> bool {
        value.as_bytes() == stored
    }

    fn weight(value: &str) -> usize {
        value.len()
    }

    fn stored_weight(stored: &[u8]) -> usize {
        stored.len()
    }

    fn decode(stored: &[u8]) -> String {
        String::from_utf8_lossy(stored).into_owned()
    }

    fn valid_stored(stored: &[u8]) -> bool {
        std::str::from_utf8(stored).is_ok()
    }
}

/// Opaque bytes (canonical policy trace encodings), stored as they are.
pub enum Bytes {}

impl Encoding for Bytes {
    type Value = [u8];
    type Owned = Vec<u8>;

    fn encode(value: &[u8], arena: &mut Vec<u8>) {
        arena.extend_from_slice(value);
    }

    fn hash(value: &[u8]) -> u64 {
        xxh3_64(value)
    }

    fn matches(value: &[u8], stored: &[u8]) -> bool {
        value == stored
    }

    fn weight(value: &[u8]) -> usize {
        value.len()
    }

    fn stored_weight(stored: &[u8]) -> usize {
        stored.len()
    }

    fn decode(stored: &[u8]) -> Vec<u8> {
        stored.to_vec()
    }

    fn valid_stored(_stored: &[u8]) -> bool {
        true
    }
}

/// Sorted, de-duplicated label sets, stored as their labels in order, each prefixed by its
/// length as a LEB128 varint. Their weight is the bytes of their labels.
pub enum LabelSet {}

/// The LEB128 encoding of `length`, and how many of its bytes are used.
fn varint(mut length: usize) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut used = 0;
    loop {
        let low = (length & 0x7f) as u8;
        length >>= 7;
        if length == 0 {
            bytes[used] = low;
            return (bytes, used + 1);
        }
        bytes[used] = low | 0x80;
        used += 1;
    }
}

/// The labels of a stored label set, in order. Stops at the first malformed length (never
/// written by [`LabelSet::encode`]).
fn stored_labels(mut stored: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let mut length = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = stored.split_first()?;
            stored = rest;
            length |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        if length > stored.len() {
            return None;
        }
        let (label, rest) = stored.split_at(length);
        stored = rest;
        Some(label)
    })
}

/// Appends the stored bytes of the label set of `labels` (sorted, de-duplicated) to `arena`.
pub fn encode_labels<'a>(labels: impl IntoIterator<Item = &'a str>, arena: &mut Vec<u8>) {
    for label in labels {
        let (length, used) = varint(label.len());
        arena.extend_from_slice(&length[..used]);
        arena.extend_from_slice(label.as_bytes());
    }
}

impl Encoding for LabelSet {
    type Value = [String];
    type Owned = Vec<String>;

    fn encode(value: &[String], arena: &mut Vec<u8>) {
        encode_labels(value.iter().map(String::as_str), arena);
    }

    fn hash(value: &[String]) -> u64 {
        let mut hasher = Xxh3::new();
        for label in value {
            let (length, used) = varint(label.len());
            hasher.update(&length[..used]);
            hasher.update(label.as_bytes());
        }
        hasher.digest()
    }

    fn matches(value: &[String], stored: &[u8]) -> bool {
        let mut labels = stored_labels(stored);
        value
            .iter()
            .all(|label| labels.next() == Some(label.as_bytes()))
            && labels.next().is_none()
    }

    fn weight(value: &[String]) -> usize {
        value.iter().map(String::len).sum()
    }

    fn stored_weight(stored: &[u8]) -> usize {
        stored_labels(stored).map(<[u8]>::len).sum()
    }

    fn decode(stored: &[u8]) -> Vec<String> {
        stored_labels(stored)
            .map(|label| String::from_utf8_lossy(label).into_owned())
            .collect()
    }

    /// Labels of valid UTF-8, each prefixed by its length in the shortest varint form, covering
    /// every byte. (Their order is not checked: the table never relied on it.)
    fn valid_stored(stored: &[u8]) -> bool {
        let mut covered = 0;
        for label in stored_labels(stored) {
            if std::str::from_utf8(label).is_err() {
                return false;
            }
            covered += varint(label.len()).1 + label.len();
        }
        covered == stored.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored<E: Encoding + ?Sized>(value: &E::Value) -> Vec<u8> {
        let mut arena = Vec::new();
        E::encode(value, &mut arena);
        arena
    }

    fn labels(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn label_sets_round_trip_and_hash_as_their_stored_bytes() {
        let long = "k=".to_string() + &"v".repeat(300);
        for set in [
            labels(&[]),
            labels(&["app=web"]),
            labels(&["", "a=b", &long]),
        ] {
            let bytes = stored::<LabelSet>(&set);
            assert_eq!(LabelSet::decode(&bytes), set);
            assert_eq!(LabelSet::hash(&set), stored_hash(&bytes));
            assert!(LabelSet::matches(&set, &bytes));
            assert_eq!(LabelSet::weight(&set), LabelSet::stored_weight(&bytes));
        }
        assert_eq!(stored::<LabelSet>(&labels(&["ab"])), b"\x02ab".to_vec());
        assert_eq!(
            stored::<LabelSet>(std::slice::from_ref(&long))[..2],
            [0xae, 0x02]
        );
    }

    #[test]
    fn label_sets_differ_by_how_their_bytes_split_into_labels() {
        let joined = stored::<LabelSet>(&labels(&["ab"]));
        assert!(!LabelSet::matches(&labels(&["a", "b"]), &joined));
        assert!(!LabelSet::matches(&labels(&["ab", ""]), &joined));
        assert!(!LabelSet::matches(&labels(&[]), &joined));
        assert!(!LabelSet::matches(&labels(&["a"]), &joined));
    }

    #[test]
    fn only_bytes_an_encoding_writes_are_valid_stored_bytes() {
        assert!(LabelSet::valid_stored(&stored::<LabelSet>(&labels(&[]))));
        assert!(LabelSet::valid_stored(&stored::<LabelSet>(&labels(&[
            "a=1", "b=2"
        ]))));
        assert!(!LabelSet::valid_stored(b"\x05ab"), "a label cut short");
        assert!(
            !LabelSet::valid_stored(b"\x81\x00a"),
            "a length not in its shortest form"
        );
        assert!(!LabelSet::valid_stored(b"\x01\xff"), "not UTF-8");
        assert!(Utf8::valid_stored("pod-1".as_bytes()));
        assert!(!Utf8::valid_stored(&[0xff, 0x00]));
        assert!(Bytes::valid_stored(&[0xff]));
    }

    #[test]
    fn strings_and_bytes_are_stored_as_they_are() {
        assert_eq!(stored::<Utf8>("pod-1"), b"pod-1".to_vec());
        assert_eq!(Utf8::hash("pod-1"), stored_hash(b"pod-1"));
        assert_eq!(Utf8::decode(b"pod-1"), "pod-1");
        assert_eq!(stored::<Bytes>(&[1, 2][..]), vec![1, 2]);
        assert_eq!(Bytes::hash(&[1, 2][..]), stored_hash(&[1, 2]));
        assert!(!Bytes::matches(&[1][..], &[1, 2]));
    }
}
