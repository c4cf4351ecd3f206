//! Snapshot encoding of the whole cache: the clock and every stored item with its deadline.
//!
//! The encoding lists items in key order, so the same state always yields the same bytes and
//! replicas can compare snapshots byte for byte. Expired items that the log has not removed yet
//! are part of the state and are kept, so a restored replica removes them through the log exactly
//! like the others.

use super::{Cache, Item, item_bytes};
use crate::codec::{self, DecodeError};
use crate::types::Instant;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// The largest snapshot [`Cache::restore`] accepts. A snapshot is as large as the cache it
/// describes, which already fits in the memory of the replica that produced it, and the layers
/// that store or transfer snapshots bound what they hand over; so no tighter limit is imposed
/// here.
pub const SNAPSHOT_BYTES_MAX: usize = usize::MAX;

/// The snapshot as it is decoded. [`SnapshotRef`] encodes to exactly the same shape without
/// copying the cache.
#[derive(Serialize, Deserialize)]
pub(super) struct SnapshotOwned {
    pub(super) clock: Instant,
    pub(super) items: Vec<(String, Bytes, Option<Instant>)>,
}

/// The snapshot as it is encoded: borrows the cache instead of cloning every key and value.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    clock: Instant,
    items: ItemsRef<'a>,
}

/// Serializes the item map as a sequence of `(key, value, expires_at)` tuples in key order, the
/// same encoding as the `Vec` in [`SnapshotOwned`].
struct ItemsRef<'a>(&'a BTreeMap<String, Item>);

impl Serialize for ItemsRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0.iter().map(|(key, item)| (key.as_str(), &item.value, item.expires_at)),
        )
    }
}

/// The cache's state at one moment, detached from the cache so that it can be encoded on
/// another thread while the cache moves on. Taking it copies the keys and the map but not the
/// values (`Bytes` are shared), so its cost does not grow with value sizes; encoding copies
/// everything.
#[derive(Clone, Debug)]
pub struct SnapshotSource {
    clock: Instant,
    items: BTreeMap<String, Item>,
}

impl SnapshotSource {
    /// The same bytes [`Cache::snapshot`] gives for the state this was taken from.
    pub fn encode(&self) -> Bytes {
        Bytes::from(codec::encode(&SnapshotRef { clock: self.clock, items: ItemsRef(&self.items) }))
    }
}

impl Cache {
    /// Encodes the whole cache, including deadlines and the clock. Deterministic: the same state
    /// always produces the same bytes.
    pub fn snapshot(&self) -> Bytes {
        Bytes::from(codec::encode(&SnapshotRef { clock: self.clock, items: ItemsRef(&self.items) }))
    }

    /// The state to encode later (see [`SnapshotSource`]).
    pub fn snapshot_source(&self) -> SnapshotSource {
        SnapshotSource { clock: self.clock, items: self.items.clone() }
    }

    /// Rebuilds a cache from [`Cache::snapshot`] output, including its expiration index. Input
    /// that is malformed, or lists keys out of order or twice, is an error and never a panic.
    pub fn restore(bytes: &[u8]) -> Result<Cache, DecodeError> {
        let decoded: SnapshotOwned = codec::decode(bytes, SNAPSHOT_BYTES_MAX)?;
        let mut cache = Cache { clock: decoded.clock, ..Cache::default() };
        for (position, (key, value, expires_at)) in decoded.items.into_iter().enumerate() {
            // Strictly increasing keys are what `snapshot` writes; anything else (a duplicate in
            // particular) means the bytes are not a snapshot of one consistent state.
            if let Some((last, _)) = cache.items.last_key_value()
                && *last >= key
            {
                return Err(DecodeError::Malformed(format!(
                    "snapshot keys are not strictly increasing at item {position}"
                )));
            }
            cache.approx_bytes += item_bytes(&key, value.len(), expires_at.is_some());
            if let Some(deadline) = expires_at {
                cache.expirations.insert((deadline, key.clone()));
            }
            cache.items.insert(key, Item { value, expires_at });
        }
        if cfg!(debug_assertions) {
            cache.check_invariants();
        }
        Ok(cache)
    }
}
