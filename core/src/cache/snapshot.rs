//! Snapshot encoding of the whole cache: the clock, the limits and eviction state, and every
//! stored item with its deadline, recency and frequency.
//!
//! Format 2 added the limits, the write sequence, the eviction count and each item's `seq` and
//! `freq`; format 3 (the version byte of [`crate::codec`] is [`SNAPSHOT_FORMAT`]) each item's
//! revisions. Older formats still restore: format 1 (clock and items only) with no limits and
//! every item at recency 0, and both with each item's revisions taken from its `seq` (0 in
//! format 1), as if written once there.
//!
//! The encoding lists items in key order, so the same state always yields the same bytes and
//! replicas can compare snapshots byte for byte. Expired items that the log has not removed yet
//! are part of the state and are kept, so a restored replica removes them through the log exactly
//! like the others.

use super::entry::{Entry, Items, KEY_BYTES_MAX, Meta};
use super::evict::LFU_INIT;
use super::{Cache, Limits, Revisions};
use crate::codec::{self, DecodeError};
use crate::types::Instant;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

/// The largest snapshot [`Cache::restore`] accepts. A snapshot is as large as the cache it
/// describes, which already fits in the memory of the replica that produced it, and the layers
/// that store or transfer snapshots bound what they hand over; so no tighter limit is imposed
/// here.
pub const SNAPSHOT_BYTES_MAX: usize = usize::MAX;

/// The version byte of snapshots (format 3); format 1 is [`crate::codec::WIRE_VERSION`].
pub const SNAPSHOT_FORMAT: u8 = 3;

/// The version byte of format 2 snapshots, which still restore.
const SNAPSHOT_FORMAT_2: u8 = 2;

/// A format 1 snapshot, as it is decoded.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotOwned {
    pub(super) clock: Instant,
    pub(super) items: Vec<(String, Bytes, Option<Instant>)>,
}

/// A format 2 snapshot, as it is decoded.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotOwnedV2 {
    pub(super) clock: Instant,
    pub(super) limits: Limits,
    pub(super) last_seq: u64,
    pub(super) evicted_total: u64,
    pub(super) digest: u64,
    pub(super) items: Vec<(String, Bytes, Option<Instant>, u64, u8)>,
}

/// A format 3 snapshot, as it is decoded. [`SnapshotRef`] encodes to exactly the same shape
/// without copying the cache.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotOwnedV3 {
    pub(super) clock: Instant,
    pub(super) limits: Limits,
    pub(super) last_seq: u64,
    pub(super) evicted_total: u64,
    pub(super) digest: u64,
    pub(super) items: Vec<(String, Bytes, Option<Instant>, u64, u8, Revisions)>,
}

impl From<SnapshotOwnedV2> for SnapshotOwnedV3 {
    fn from(v2: SnapshotOwnedV2) -> SnapshotOwnedV3 {
        let written_once = |seq| Revisions { create: seq, modified: seq, version: 1 };
        SnapshotOwnedV3 {
            clock: v2.clock,
            limits: v2.limits,
            last_seq: v2.last_seq,
            evicted_total: v2.evicted_total,
            digest: v2.digest,
            items: v2
                .items
                .into_iter()
                .map(|(k, v, e, seq, freq)| (k, v, e, seq, freq, written_once(seq)))
                .collect(),
        }
    }
}

/// The snapshot as it is encoded: borrows the cache instead of cloning every key and value.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    clock: Instant,
    limits: Limits,
    last_seq: u64,
    evicted_total: u64,
    digest: u64,
    items: ItemsRef<'a>,
}

/// Serializes the items as a sequence of `(key, value, expires_at, seq, freq, revisions)`
/// tuples in key order, the same encoding as the `Vec` in [`SnapshotOwnedV3`].
struct ItemsRef<'a>(&'a Items);

impl Serialize for ItemsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first: postcard needs it, and the chunks' iterator does not know it.
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for entry in self.0.iter() {
            let m = entry.meta();
            let item =
                (entry.key(), AsBytes(entry.value()), m.expires_at, m.seq, m.freq, m.revisions);
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

/// A value encoded as `Bytes` encodes it (serde's `bytes`, not a sequence of `u8`).
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

/// The cache's state at one moment, detached from the cache so that it can be encoded on
/// another thread while the cache moves on. Taking it copies the set's pointers to the entries,
/// which are shared, not the keys or values, so its cost does not grow with their sizes;
/// encoding copies everything.
#[derive(Clone, Debug)]
pub struct SnapshotSource {
    clock: Instant,
    limits: Limits,
    last_seq: u64,
    evicted_total: u64,
    digest: u64,
    items: Items,
}

/// The format 2 bytes of one state (the cache's, or a detached copy's).
fn encode(
    clock: Instant,
    limits: Limits,
    (last_seq, evicted_total, digest): (u64, u64, u64),
    items: &Items,
) -> Bytes {
    let r = SnapshotRef { clock, limits, last_seq, evicted_total, digest, items: ItemsRef(items) };
    Bytes::from(codec::encode_as(SNAPSHOT_FORMAT, &r))
}

impl SnapshotSource {
    fn as_ref(&self) -> SnapshotRef<'_> {
        SnapshotRef {
            clock: self.clock,
            limits: self.limits,
            last_seq: self.last_seq,
            evicted_total: self.evicted_total,
            digest: self.digest,
            items: ItemsRef(&self.items),
        }
    }

    /// The same bytes [`Cache::snapshot`] gives for the state this was taken from, in one
    /// allocation of exactly their size.
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(usize::try_from(self.encoded_len()).unwrap_or(0));
        self.write_to(&mut out).expect("writing into a Vec cannot fail");
        Bytes::from(out)
    }

    /// The length of [`SnapshotSource::encode`]'s bytes, counted without producing them.
    pub fn encoded_len(&self) -> u64 {
        let mut counter = codec::CountingWriter::default();
        self.write_to(&mut counter).expect("counting cannot fail");
        counter.count
    }

    /// Writes [`SnapshotSource::encode`]'s bytes to `out` as they are produced, so a snapshot
    /// as large as the cache goes to its file without a copy of it in memory.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        codec::write_as(SNAPSHOT_FORMAT, &self.as_ref(), out)
    }
}

impl Cache {
    /// Encodes the whole cache, including deadlines and the clock. Deterministic: the same state
    /// always produces the same bytes.
    pub fn snapshot(&self) -> Bytes {
        encode(
            self.clock,
            self.limits,
            (self.last_seq, self.evicted_total, self.digest),
            &self.items,
        )
    }

    /// The state to encode later (see [`SnapshotSource`]).
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource {
            clock: self.clock,
            limits: self.limits,
            last_seq: self.last_seq,
            evicted_total: self.evicted_total,
            digest: self.digest,
            items: self.items.clone(),
        }
    }

    /// Rebuilds a cache from [`Cache::snapshot`] output, including its expiration index. Input
    /// that is malformed, or lists keys out of order or twice, is an error and never a panic.
    pub fn restore(bytes: &[u8]) -> Result<Cache, DecodeError> {
        let decoded: SnapshotOwnedV3 = match bytes.first() {
            Some(&SNAPSHOT_FORMAT) => codec::decode_as(SNAPSHOT_FORMAT, bytes, SNAPSHOT_BYTES_MAX)?,
            Some(&SNAPSHOT_FORMAT_2) => {
                let v2: SnapshotOwnedV2 =
                    codec::decode_as(SNAPSHOT_FORMAT_2, bytes, SNAPSHOT_BYTES_MAX)?;
                v2.into()
            }
            _ => {
                let v1: SnapshotOwned = codec::decode(bytes, SNAPSHOT_BYTES_MAX)?;
                SnapshotOwnedV2 {
                    clock: v1.clock,
                    limits: Limits::default(),
                    last_seq: 0,
                    evicted_total: 0,
                    digest: 0,
                    items: v1.items.into_iter().map(|(k, v, e)| (k, v, e, 0, LFU_INIT)).collect(),
                }
                .into()
            }
        };
        let mut cache = Cache {
            clock: decoded.clock,
            limits: decoded.limits,
            last_seq: decoded.last_seq,
            evicted_total: decoded.evicted_total,
            digest: decoded.digest,
            ..Cache::default()
        };
        for (position, (key, value, expires_at, seq, freq, revisions)) in
            decoded.items.into_iter().enumerate()
        {
            // Strictly increasing keys are what `snapshot` writes; anything else (a duplicate in
            // particular) means the bytes are not a snapshot of one consistent state.
            if let Some(last) = cache.items.last()
                && last.key() >= key.as_str()
            {
                return Err(DecodeError::Malformed(format!(
                    "snapshot keys are not strictly increasing at item {position}"
                )));
            }
            if key.len() > KEY_BYTES_MAX {
                return Err(DecodeError::Malformed(format!(
                    "snapshot item {position} has a key of {} bytes",
                    key.len()
                )));
            }
            cache.put_back(Entry::new(&key, &value, Meta { expires_at, seq, freq, revisions }));
        }
        if cfg!(debug_assertions) {
            cache.check_invariants();
        }
        Ok(cache)
    }
}
