//! How one stored key is laid out in memory: key, value, deadline, revisions and eviction state
//! in **one** reference-counted allocation behind a one-word pointer ([`Entry`]).
//!
//! The allocation is `[count: 8][key length: 4 + pad 4][length: 8][key][meta][value]`, where
//! `meta` is a flags byte, the LFU counter and LEB128 varints: the deadline (only if there is
//! one), the `create` and `modified` revisions, the version, and the write sequence (only if it
//! differs from `modified`, i.e. after a policy change). For a 16-byte key and a 100-byte value
//! that is about 150 bytes, against about 330 for a `BTreeMap<String, Item>` node share, a key
//! `String` and a shared `Bytes` value.
//!
//! Entries are immutable: a write builds a new one. Sharing is what makes the rest cheap:
//!
//! - the ordered set of items, the expiration index and the eviction order hold the same
//!   pointer, so neither index keeps a second copy of the key;
//! - a detached snapshot ([`super::SnapshotSource`]) clones the set, which copies pointers and
//!   bumps counts instead of copying keys and values;
//! - a read hands out the value as a [`Bytes`] that keeps the entry alive, without copying it.
//!
//! An entry compares (and is found in a `BTreeSet` through [`Borrow<[u8]>`]) by its key bytes
//! alone, which orders keys as `str` does. [`Entry::same`] compares everything.

use super::Revisions;
use super::chunked::Chunked;
use crate::types::Instant;
use bytes::Bytes;
use std::borrow::Borrow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use triomphe::ThinArc;

/// The longest key an entry holds (its length is a `u32`).
pub(super) const KEY_BYTES_MAX: usize = u32::MAX as usize;

/// Everything about a stored key except its key and value bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Meta {
    pub expires_at: Option<Instant>,
    /// The log index of the write that stored it (0 after a policy change): its recency.
    pub seq: u64,
    /// Its LFU counter (see `evict`).
    pub freq: u8,
    /// Its revisions (see `ops`).
    pub revisions: Revisions,
}

const HAS_DEADLINE: u8 = 1;
const SEQ_IS_MODIFIED: u8 = 2;

/// The largest scratch buffer kept between builds: larger values get a buffer of their own.
const SCRATCH_KEEP_BYTES: usize = 64 << 10;

thread_local! {
    /// Where an entry's bytes are assembled before they are copied into their allocation.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One stored key (see the module documentation).
#[derive(Clone)]
pub(super) struct Entry(ThinArc<u32, u8>);

impl Entry {
    /// Builds the entry for `key` holding `value`. Keys are at most [`KEY_BYTES_MAX`]: a
    /// proposal cannot carry a longer one and [`super::Cache::restore`] refuses it.
    pub fn new(key: &str, value: &[u8], meta: Meta) -> Entry {
        let key_len = u32::try_from(key.len()).expect("keys are at most KEY_BYTES_MAX");
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            buf.extend_from_slice(key.as_bytes());
            let mut flags = 0;
            if meta.expires_at.is_some() {
                flags |= HAS_DEADLINE;
            }
            if meta.seq == meta.revisions.modified {
                flags |= SEQ_IS_MODIFIED;
            }
            buf.push(flags);
            buf.push(meta.freq);
            if let Some(deadline) = meta.expires_at {
                put_varint(&mut buf, deadline.as_millis());
            }
            put_varint(&mut buf, meta.revisions.create);
            put_varint(&mut buf, meta.revisions.modified);
            put_varint(&mut buf, meta.revisions.version);
            if meta.seq != meta.revisions.modified {
                put_varint(&mut buf, meta.seq);
            }
            buf.extend_from_slice(value);
            let entry = Entry(ThinArc::from_header_and_slice(key_len, &buf));
            if buf.capacity() > SCRATCH_KEEP_BYTES {
                *buf = Vec::new();
            }
            entry
        })
    }

    /// The same value and key under new metadata.
    pub fn with_meta(&self, meta: Meta) -> Entry {
        Entry::new(self.key(), self.value(), meta)
    }

    fn bytes(&self) -> &[u8] {
        &self.0.slice
    }

    fn key_len(&self) -> usize {
        self.0.header.header as usize
    }

    pub fn key_bytes(&self) -> &[u8] {
        &self.bytes()[..self.key_len()]
    }

    pub fn key(&self) -> &str {
        std::str::from_utf8(self.key_bytes()).expect("an entry is only built from a &str key")
    }

    /// The metadata and where the value starts.
    fn decode(&self) -> (Meta, usize) {
        let bytes = self.bytes();
        let mut at = self.key_len();
        let (flags, freq) = (bytes[at], bytes[at + 1]);
        at += 2;
        let expires_at = (flags & HAS_DEADLINE != 0).then(|| Instant(take_varint(bytes, &mut at)));
        let create = take_varint(bytes, &mut at);
        let modified = take_varint(bytes, &mut at);
        let version = take_varint(bytes, &mut at);
        let seq = if flags & SEQ_IS_MODIFIED != 0 { modified } else { take_varint(bytes, &mut at) };
        let meta =
            Meta { expires_at, seq, freq, revisions: Revisions { create, modified, version } };
        (meta, at)
    }

    pub fn meta(&self) -> Meta {
        self.decode().0
    }

    /// The deadline, without decoding the rest.
    pub fn expires_at(&self) -> Option<Instant> {
        let bytes = self.bytes();
        let mut at = self.key_len();
        (bytes[at] & HAS_DEADLINE != 0).then(|| {
            at += 2;
            Instant(take_varint(bytes, &mut at))
        })
    }

    pub fn revisions(&self) -> Revisions {
        self.meta().revisions
    }

    pub fn value(&self) -> &[u8] {
        let start = self.decode().1;
        &self.bytes()[start..]
    }

    pub fn value_len(&self) -> usize {
        self.bytes().len() - self.decode().1
    }

    /// The value as [`Bytes`] sharing this entry's allocation: no copy, however large.
    pub fn value_bytes(&self) -> Bytes {
        Bytes::from_owner(ValueOf(self.clone()))
    }

    /// Whether two entries are the same allocation (an index shares the stored entry).
    pub fn shares(&self, other: &Entry) -> bool {
        std::ptr::eq(self.bytes(), other.bytes())
    }

    /// Whether two entries hold the same key, value and metadata.
    pub fn same(&self, other: &Entry) -> bool {
        self.key_len() == other.key_len() && self.bytes() == other.bytes()
    }
}

/// An entry as the owner of a [`Bytes`] of its value.
struct ValueOf(Entry);

impl AsRef<[u8]> for ValueOf {
    fn as_ref(&self) -> &[u8] {
        self.0.value()
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.key_bytes() == other.key_bytes()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> Ordering {
        self.key_bytes().cmp(other.key_bytes())
    }
}

/// Consistent with `Ord`: both are the key bytes'.
impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key_bytes()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("meta", &self.meta())
            .field("value_len", &self.value_len())
            .finish()
    }
}

/// The stored keys in key order, so a prefix search is a range scan. Two sets are equal when
/// they hold the same entries, metadata and values included ([`Entry::same`]).
#[derive(Clone, Default)]
pub(super) struct Items(Chunked<Entry>);

impl Items {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.0.get(key.as_bytes())
    }

    /// Stores `entry`, giving back the one it replaces.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        self.0.replace(entry)
    }

    pub fn remove(&mut self, key: &str) -> Option<Entry> {
        self.0.take(key.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> {
        self.0.iter()
    }

    /// The entries whose keys sort after `start` (or from it, if included).
    pub fn range_from<'a>(&'a self, start: Bound<&'a str>) -> impl Iterator<Item = &'a Entry> {
        self.0.range_from::<[u8]>(start.map(str::as_bytes))
    }

    pub fn last(&self) -> Option<&Entry> {
        self.0.last()
    }

    /// Checks the set's invariants (see `chunked`).
    pub fn check(&self) {
        self.0.check();
    }
}

impl PartialEq for Items {
    fn eq(&self, other: &Items) -> bool {
        self.0.len() == other.0.len() && self.0.iter().zip(other.0.iter()).all(|(a, b)| a.same(b))
    }
}

impl Eq for Items {}

impl fmt::Debug for Items {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl FromIterator<Entry> for Items {
    fn from_iter<I: IntoIterator<Item = Entry>>(iter: I) -> Items {
        Items(iter.into_iter().collect())
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a varint that [`put_varint`] wrote: entries are only built here, so the bytes are
/// well formed.
fn take_varint(bytes: &[u8], at: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return n;
        }
        shift += 7;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(expires_at: Option<u64>, seq: u64, create: u64, modified: u64) -> Meta {
        Meta {
            expires_at: expires_at.map(Instant),
            seq,
            freq: 7,
            revisions: Revisions { create, modified, version: 300 },
        }
    }

    #[test]
    fn every_field_round_trips() {
        let cases = [
            meta(None, 5, 1, 5),
            meta(Some(0), 0, 1, 5),
            meta(Some(u64::MAX), u64::MAX, u64::MAX, 0),
            meta(Some(1_800_000_000_000), 1 << 40, 127, 128),
        ];
        for m in cases {
            for (key, value) in [("", &b""[..]), ("k", b"v"), ("key:000000000001", &[0xff; 300])] {
                let e = Entry::new(key, value, m);
                assert_eq!(e.key(), key);
                assert_eq!(e.meta(), m);
                assert_eq!(e.expires_at(), m.expires_at);
                assert_eq!(e.value(), value);
                assert_eq!(e.value_len(), value.len());
                assert_eq!(&e.value_bytes()[..], value);
                assert!(e.same(&e.with_meta(m)));
            }
        }
    }

    #[test]
    fn entries_compare_by_key_and_same_compares_everything() {
        let a = Entry::new("a", b"1", meta(None, 1, 1, 1));
        let a2 = Entry::new("a", b"2", meta(None, 1, 1, 1));
        let b = Entry::new("b", b"1", meta(None, 1, 1, 1));
        assert_eq!(a, a2);
        assert!(!a.same(&a2));
        assert!(a < b);
        // Keys order as strings do, including a prefix before its extensions.
        assert!(Entry::new("ab", b"", meta(None, 1, 1, 1)) > a);
        let mut set = Chunked::default();
        set.insert(b.clone());
        set.insert(a.clone());
        assert!(set.get(&b"a"[..]).is_some_and(|e| e.same(&a)));
    }

    #[test]
    fn a_value_outlives_its_entry() {
        let e = Entry::new("k", b"value", meta(None, 1, 1, 1));
        let v = e.value_bytes();
        drop(e);
        assert_eq!(&v[..], b"value");
    }

    #[test]
    fn a_small_entry_is_one_small_allocation() {
        // 16-byte key, 100-byte value, no deadline, revisions below 2^21: the bytes after the
        // pointer's 24-byte header are key + 9 + value.
        let m = meta(None, 1_000_000, 1_000_000, 1_000_000);
        let e = Entry::new(
            "key:000000000001",
            &[b'x'; 100],
            Meta { revisions: Revisions { version: 1, ..m.revisions }, ..m },
        );
        assert_eq!(e.bytes().len(), 16 + 2 + 3 + 3 + 1 + 100);
        assert_eq!(std::mem::size_of::<Entry>(), 8);
    }
}
