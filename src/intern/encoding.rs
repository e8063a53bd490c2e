//! How each catalog table stores its values as bytes in its arena: strings and trace encodings
//! as they are, label sets as their labels each prefixed by its length (a LEB128 varint), a
//! label whose key is a well-known one ([`KNOWN_KEYS`]) as the key's number and the rest; and
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

/// Sorted, de-duplicated label sets, stored as their labels in order. Each label starts with a
/// LEB128 varint `head`: an even head is twice the label's length, and the label's bytes
/// follow; an odd head is twice the number of a [`KNOWN_KEYS`] entry plus one, and the length
/// of the rest (a varint) and its bytes follow. A label is stored the second way exactly when
/// its key (up to and with its first `=`) is a known one, so each label set has one encoding.
/// Their weight is the bytes of their labels.
pub enum LabelSet {}

/// Label keys, with their `=`, that Kubernetes, its recommended labels and Calico put on pods
/// and endpoints, and common conventions. Stored by their number: append only.
pub const KNOWN_KEYS: [&str; 28] = [
    "projectcalico.org/namespace=",
    "projectcalico.org/orchestrator=",
    "projectcalico.org/serviceaccount=",
    "pod-template-hash=",
    "controller-revision-hash=",
    "pod-template-generation=",
    "statefulset.kubernetes.io/pod-name=",
    "apps.kubernetes.io/pod-index=",
    "batch.kubernetes.io/job-name=",
    "batch.kubernetes.io/controller-uid=",
    "job-name=",
    "controller-uid=",
    "app.kubernetes.io/name=",
    "app.kubernetes.io/instance=",
    "app.kubernetes.io/version=",
    "app.kubernetes.io/component=",
    "app.kubernetes.io/part-of=",
    "app.kubernetes.io/managed-by=",
    "k8s-app=",
    "app=",
    "name=",
    "version=",
    "component=",
    "tier=",
    "release=",
    "environment=",
    "env=",
    "team=",
];

/// The number of `label`'s key in [`KNOWN_KEYS`], if it is one.
fn known_key(label: &[u8]) -> Option<usize> {
    let end = label.iter().position(|byte| *byte == b'=')? + 1;
    let key = &label[..end];
    KNOWN_KEYS
        .iter()
        .position(|known| known.len() == key.len() && known.as_bytes() == key)
}

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

/// Reads a varint from the front of `stored`, advancing it.
fn read_varint(stored: &mut &[u8]) -> Option<usize> {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let (&byte, rest) = stored.split_first()?;
        *stored = rest;
        value |= usize::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
        shift += 7;
    }
}

/// Calls `write` with the stored bytes of `label`, piece by piece.
fn write_label(label: &[u8], mut write: impl FnMut(&[u8])) {
    match known_key(label) {
        Some(number) => {
            let (head, used) = varint(2 * number + 1);
            write(&head[..used]);
            let rest = &label[KNOWN_KEYS[number].len()..];
            let (length, used) = varint(rest.len());
            write(&length[..used]);
            write(rest);
        }
        None => {
            let (head, used) = varint(2 * label.len());
            write(&head[..used]);
            write(label);
        }
    }
}

/// How many bytes `label` is stored in.
fn stored_length(label: &[u8]) -> usize {
    let mut length = 0;
    write_label(label, |piece| length += piece.len());
    length
}

/// One label of a stored label set: its known key (empty for none) and the rest of its bytes.
#[derive(Clone, Copy)]
struct StoredLabel<'a> {
    key: &'static str,
    rest: &'a [u8],
}

impl StoredLabel<'_> {
    fn len(&self) -> usize {
        self.key.len() + self.rest.len()
    }

    fn is(&self, label: &[u8]) -> bool {
        label.len() == self.len()
            && label.starts_with(self.key.as_bytes())
            && &label[self.key.len()..] == self.rest
    }

    fn bytes(&self) -> Vec<u8> {
        [self.key.as_bytes(), self.rest].concat()
    }

    /// The label as text, invalid UTF-8 replaced: one allocation.
    fn text(&self) -> String {
        let mut text = String::with_capacity(self.len());
        text.push_str(self.key);
        text.push_str(&String::from_utf8_lossy(self.rest));
        text
    }
}

/// The labels of a stored label set, in order. Stops at the first malformed label (never
/// written by [`LabelSet::encode`]).
fn stored_labels(mut stored: &[u8]) -> impl Iterator<Item = StoredLabel<'_>> {
    std::iter::from_fn(move || {
        let head = read_varint(&mut stored)?;
        let (key, length) = if head % 2 == 1 {
            (*KNOWN_KEYS.get(head / 2)?, read_varint(&mut stored)?)
        } else {
            ("", head / 2)
        };
        if length > stored.len() {
            return None;
        }
        let (rest, after) = stored.split_at(length);
        stored = after;
        Some(StoredLabel { key, rest })
    })
}

/// Appends the stored bytes of the label set of `labels` (sorted, de-duplicated) to `arena`.
pub fn encode_labels<'a>(labels: impl IntoIterator<Item = &'a str>, arena: &mut Vec<u8>) {
    for label in labels {
        write_label(label.as_bytes(), |piece| arena.extend_from_slice(piece));
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
            write_label(label.as_bytes(), |piece| hasher.update(piece));
        }
        hasher.digest()
    }

    fn matches(value: &[String], stored: &[u8]) -> bool {
        let mut labels = stored_labels(stored);
        value
            .iter()
            .all(|label| labels.next().is_some_and(|held| held.is(label.as_bytes())))
            && labels.next().is_none()
    }

    fn weight(value: &[String]) -> usize {
        value.iter().map(String::len).sum()
    }

    fn stored_weight(stored: &[u8]) -> usize {
        stored_labels(stored).map(|label| label.len()).sum()
    }

    fn decode(stored: &[u8]) -> Vec<String> {
        stored_labels(stored).map(|label| label.text()).collect()
    }

    /// Labels of valid UTF-8, each stored as [`LabelSet::encode`] stores it (lengths in their
    /// shortest varint form, a known key always by its number), covering every byte. (Their
    /// order is not checked: the table never relied on it.)
    fn valid_stored(stored: &[u8]) -> bool {
        let mut covered = 0;
        for label in stored_labels(stored) {
            let bytes = label.bytes();
            if std::str::from_utf8(&bytes).is_err() {
                return false;
            }
            let canonical = known_key(&bytes).map_or("", |number| KNOWN_KEYS[number]);
            if canonical != label.key {
                return false;
            }
            covered += stored_length(&bytes);
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
        assert_eq!(stored::<LabelSet>(&labels(&["ab"])), b"\x04ab".to_vec());
        assert_eq!(
            stored::<LabelSet>(std::slice::from_ref(&long))[..2],
            [0xdc, 0x04],
            "twice 302 as a varint"
        );
    }

    /// A label with a well-known key is stored as the key's number and the rest: the
    /// `projectcalico.org/namespace=` of every Calico endpoint takes 2 bytes, not 29.
    #[test]
    fn labels_with_known_keys_are_stored_by_the_keys_number() {
        let set = labels(&[
            "app=checkout",
            "app.kubernetes.io/name=web",
            "appx=1",
            "pod-template-hash=6d4cf56db6",
            "projectcalico.org/namespace=payments",
            "version",
            "version=v2=3",
        ]);
        let bytes = stored::<LabelSet>(&set);
        assert_eq!(LabelSet::decode(&bytes), set);
        assert_eq!(LabelSet::hash(&set), stored_hash(&bytes));
        assert!(LabelSet::matches(&set, &bytes));
        assert!(LabelSet::valid_stored(&bytes));
        assert_eq!(LabelSet::weight(&set), LabelSet::stored_weight(&bytes));
        let namespace = stored::<LabelSet>(&labels(&["projectcalico.org/namespace=payments"]));
        assert_eq!(namespace, b"\x01\x08payments".to_vec());
        let plain = stored::<LabelSet>(&labels(&["appx=1"]));
        assert_eq!(plain, b"\x0cappx=1".to_vec());
        assert_eq!(
            stored::<LabelSet>(&labels(&["version=v2=3"])),
            b"\x2b\x04v2=3".to_vec(),
            "the key ends at the first `=`"
        );
        assert!(!LabelSet::matches(&labels(&["app=checkou"]), &bytes));
        assert!(!LabelSet::matches(
            &labels(&["projectcalico.org/namespace=payment"]),
            &namespace
        ));
        for (number, key) in KNOWN_KEYS.iter().enumerate() {
            assert_eq!(known_key(key.as_bytes()), Some(number), "{key}");
            assert_eq!(
                key.find('='),
                Some(key.len() - 1),
                "{key} ends at its only `=`"
            );
        }
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
        assert!(!LabelSet::valid_stored(b"\x0aab"), "a label cut short");
        assert!(
            !LabelSet::valid_stored(b"\x82\x00a"),
            "a length not in its shortest form"
        );
        assert!(!LabelSet::valid_stored(b"\x02\xff"), "not UTF-8");
        assert!(
            !LabelSet::valid_stored(b"\x0eapp=web"),
            "a known key stored as a plain label"
        );
        assert!(
            !LabelSet::valid_stored(b"\x39\x01a"),
            "a key number past the known keys"
        );
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
