//! A sorted set stored as a list of sorted, copy-on-write chunks: the cache's ordered map of
//! keys and its two indexes.
//!
//! Why not `BTreeSet`: its nodes hold at most 11 elements and keys inserted in order leave
//! them about half full, so a set of one-word pointers costs about 19 bytes per element, and
//! an index of `(u64, u64, pointer)` about 50. Here a chunk holds up to [`CHUNK_MAX`]
//! elements: appends fill chunks completely, other inserts split a full chunk in two halves
//! (the chunks of a randomly filled set average about three quarters full), removals merge a
//! small chunk into a neighbour and give back capacity. So a set of pointers costs about 8 to
//! 11 bytes per element.
//!
//! **Copy-on-write** is the other reason. Each chunk is behind an `Arc`: cloning the set
//! (a snapshot taken off the node's loop) copies one pointer per chunk, and a later write
//! copies only the chunk it changes, if it is still shared.
//!
//! Costs: a lookup is two binary searches (over the chunks' last elements, then within one
//! chunk), O(log n) comparisons as in a B-tree. An insert or removal moves at most
//! [`CHUNK_MAX`] elements within its chunk, and a split or merge moves the list of chunks
//! (n / 256 pointers), so they are O(log n + CHUNK_MAX + n / CHUNK_MAX). For ten million keys
//! that is a few microseconds.
//!
//! Invariants ([`Chunked::check`]): no chunk is empty or holds more than [`CHUNK_MAX`];
//! each is strictly increasing; every element of a chunk is less than every element of the
//! next; `len` is the total.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// The most elements one chunk holds.
pub(super) const CHUNK_MAX: usize = 256;

/// A place between two elements ([`Chunked::position`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Position {
    chunk: usize,
    within: usize,
}

/// A chunk this small after a removal is merged into a neighbour, if they fit in one.
const MERGE_BELOW: usize = CHUNK_MAX / 4;

#[derive(Clone)]
pub(super) struct Chunked<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked { chunks: Vec::new(), len: 0 }
    }
}

impl<T: Ord + Clone> Chunked<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// The index of the first chunk whose last element is not less than `q` (the chunk that
    /// holds `q` if any does); `chunks.len()` if `q` is past every element.
    fn chunk_for<Q: Ord + ?Sized>(&self, q: &Q) -> usize
    where
        T: Borrow<Q>,
    {
        self.chunks.partition_point(|c| last(c).borrow() < q)
    }

    pub fn get<Q: Ord + ?Sized>(&self, q: &Q) -> Option<&T>
    where
        T: Borrow<Q>,
    {
        let chunk = self.chunks.get(self.chunk_for(q))?;
        chunk.binary_search_by(|x| x.borrow().cmp(q)).ok().map(|j| &chunk[j])
    }

    pub fn contains<Q: Ord + ?Sized>(&self, q: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.get(q).is_some()
    }

    /// Inserts `x`, giving back the equal element it replaces, if any.
    pub fn replace(&mut self, x: T) -> Option<T> {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(with_room(x)));
            self.len = 1;
            return None;
        }
        // Past every element: into the last chunk.
        let i = self.chunk_for(&x).min(self.chunks.len() - 1);
        let at = match self.chunks[i].binary_search(&x) {
            Ok(j) => return Some(std::mem::replace(&mut Arc::make_mut(&mut self.chunks[i])[j], x)),
            Err(j) => j,
        };
        self.len += 1;
        let full = self.chunks[i].len() == CHUNK_MAX;
        if full && at == CHUNK_MAX && i + 1 == self.chunks.len() {
            // Appending past the end of a full last chunk, as keys written in order do: start
            // a new chunk and leave this one full.
            self.chunks.push(Arc::new(with_room(x)));
        } else if full {
            let chunk = Arc::make_mut(&mut self.chunks[i]);
            let mut right = chunk.split_off(CHUNK_MAX / 2);
            right.reserve_exact(CHUNK_MAX - right.len());
            if at <= CHUNK_MAX / 2 {
                chunk.insert(at, x);
            } else {
                right.insert(at - CHUNK_MAX / 2, x);
            }
            self.chunks.insert(i + 1, Arc::new(right));
        } else {
            let chunk = Arc::make_mut(&mut self.chunks[i]);
            if chunk.len() == chunk.capacity() {
                // Grow by doubling, but never past a full chunk.
                let want = (chunk.len() * 2).clamp(chunk.len() + 1, CHUNK_MAX);
                chunk.reserve_exact(want - chunk.len());
            }
            chunk.insert(at, x);
        }
        None
    }

    /// Inserts `x`; false if an equal element was there (it is replaced).
    pub fn insert(&mut self, x: T) -> bool {
        self.replace(x).is_none()
    }

    /// Removes and gives back the element equal to `q`.
    pub fn take<Q: Ord + ?Sized>(&mut self, q: &Q) -> Option<T>
    where
        T: Borrow<Q>,
    {
        let i = self.chunk_for(q);
        let j = self.chunks.get(i)?.binary_search_by(|x| x.borrow().cmp(q)).ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        let x = chunk.remove(j);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(i);
        } else if chunk.len() < MERGE_BELOW {
            self.merge_around(i);
        } else if chunk.capacity() > 2 * chunk.len() {
            chunk.shrink_to(chunk.len() + chunk.len() / 2);
        }
        Some(x)
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, q: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.take(q).is_some()
    }

    /// Merges the small chunk `i` into a neighbour, if the two fit in one chunk.
    fn merge_around(&mut self, i: usize) {
        let fits = |a: &Vec<T>, b: &Vec<T>| a.len() + b.len() <= CHUNK_MAX;
        let (left, right) =
            if i + 1 < self.chunks.len() && fits(&self.chunks[i], &self.chunks[i + 1]) {
                (i, i + 1)
            } else if i > 0 && fits(&self.chunks[i - 1], &self.chunks[i]) {
                (i - 1, i)
            } else {
                return;
            };
        let taken = self.chunks.remove(right);
        let tail = Arc::try_unwrap(taken).unwrap_or_else(|shared| (*shared).clone());
        let chunk = Arc::make_mut(&mut self.chunks[left]);
        chunk.reserve_exact(tail.len());
        chunk.extend(tail);
    }

    pub fn first(&self) -> Option<&T> {
        self.chunks.first().map(|c| &c[0])
    }

    pub fn last(&self) -> Option<&T> {
        self.chunks.last().map(|c| last(c))
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The elements from `start` on, in order.
    pub fn range_from<Q: Ord + ?Sized>(&self, start: Bound<&Q>) -> impl Iterator<Item = &T> + Clone
    where
        T: Borrow<Q>,
    {
        let at = self.position(|x| match start {
            Bound::Included(q) => x.borrow() < q,
            Bound::Excluded(q) => x.borrow() <= q,
            Bound::Unbounded => false,
        });
        self.split_at(at).1
    }

    /// Where the elements for which `before` holds end; `before` must hold for a prefix.
    pub fn position(&self, before: impl Fn(&T) -> bool) -> Position {
        let chunk = self.chunks.partition_point(|c| before(last(c)));
        let within = self.chunks.get(chunk).map_or(0, |c| c.partition_point(&before));
        Position { chunk, within }
    }

    /// The elements before `at`, and those from it on, each in order.
    pub fn split_at(
        &self,
        at: Position,
    ) -> (impl Iterator<Item = &T> + Clone, impl Iterator<Item = &T> + Clone) {
        let Position { chunk: i, within: j } = at;
        let (head, tail) = self.chunks.get(i).map_or((&[][..], &[][..]), |c| c.split_at(j));
        let full_before = self.chunks[..i].iter().flat_map(|c| c.iter());
        let full_after = self.chunks.get(i + 1..).unwrap_or(&[]).iter().flat_map(|c| c.iter());
        (full_before.chain(head.iter()), tail.iter().chain(full_after))
    }

    /// Checks the invariants (see the module documentation); panics on a violation.
    pub fn check(&self) {
        let mut total = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            assert!(
                !chunk.is_empty() && chunk.len() <= CHUNK_MAX,
                "chunk {i} size {}",
                chunk.len()
            );
            assert!(chunk.windows(2).all(|w| w[0] < w[1]), "chunk {i} is strictly increasing");
            if let Some(next) = self.chunks.get(i + 1) {
                assert!(last(chunk) < &next[0], "chunk {i} is before chunk {}", i + 1);
            }
            total += chunk.len();
        }
        assert_eq!(total, self.len, "len is the total");
    }
}

fn last<T>(chunk: &[T]) -> &T {
    chunk.last().expect("no chunk is empty")
}

/// A new chunk holding `x`, with room to grow.
fn with_room<T>(x: T) -> Vec<T> {
    let mut v = Vec::with_capacity(8);
    v.push(x);
    v
}

impl<T: Ord + Clone> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Chunked<T> {
        let mut set = Chunked::default();
        for x in iter {
            set.insert(x);
        }
        set
    }
}

impl<T: PartialEq> PartialEq for Chunked<T> {
    fn eq(&self, other: &Chunked<T>) -> bool {
        self.len == other.len
            && self
                .chunks
                .iter()
                .flat_map(|c| c.iter())
                .eq(other.chunks.iter().flat_map(|c| c.iter()))
    }
}

impl<T: Eq> Eq for Chunked<T> {}

impl<T: fmt::Debug> fmt::Debug for Chunked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.chunks.iter().flat_map(|c| c.iter())).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16),
        Remove(u16),
        /// Clone the set (a snapshot) and keep the clone until the end.
        Snapshot,
        RangeFrom(u16, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a small range so removals hit; runs of inserts in order (appends).
        prop_oneof![
            6 => (0..2000u16).prop_map(Op::Insert),
            3 => (0..2000u16).prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
            1 => (0..2000u16, any::<bool>()).prop_map(|(k, inc)| Op::RangeFrom(k, inc)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        // Against BTreeSet: every operation's answer, the whole order after each one, and
        // clones taken along the way keep exactly what they held (copy-on-write).
        #[test]
        fn behaves_as_a_btreeset(ops in prop::collection::vec(op(), 0..3000)) {
            let mut set = Chunked::default();
            let mut model = BTreeSet::new();
            let mut snapshots = Vec::new();
            for op in &ops {
                match *op {
                    Op::Insert(k) => prop_assert_eq!(set.insert(k), model.insert(k)),
                    Op::Remove(k) => prop_assert_eq!(set.take(&k), model.take(&k)),
                    Op::Snapshot => snapshots.push((set.clone(), model.clone())),
                    Op::RangeFrom(k, inc) => {
                        let b = if inc { Bound::Included(&k) } else { Bound::Excluded(&k) };
                        let got: Vec<u16> = set.range_from(b).copied().collect();
                        let want: Vec<u16> = model.range((b, Bound::Unbounded)).copied().collect();
                        prop_assert_eq!(got, want);
                        let (head, tail) = set.split_at(set.position(|x| *x < k));
                        prop_assert!(head.eq(model.range(..k)));
                        prop_assert!(tail.eq(model.range(k..)));
                    }
                }
                set.check();
                prop_assert_eq!(set.len(), model.len());
                prop_assert_eq!(set.first(), model.first());
                prop_assert_eq!(set.last(), model.last());
            }
            prop_assert!(set.iter().eq(model.iter()));
            for k in 0..2000u16 {
                prop_assert_eq!(set.get(&k), model.get(&k));
            }
            for (snap, m) in &snapshots {
                snap.check();
                prop_assert!(snap.iter().eq(m.iter()), "a clone is unchanged by later writes");
            }
        }
    }

    // Keys written in order fill their chunks; the whole set then costs about one element's
    // size per element, not the half-empty nodes of a B-tree.
    #[test]
    fn appends_fill_chunks() {
        let set: Chunked<u64> = (0..100_000).collect();
        set.check();
        let capacity: usize = set.chunks.iter().map(|c| c.capacity()).sum();
        assert!(capacity <= 100_000 + CHUNK_MAX, "capacity {capacity}");
    }

    // Removing most elements merges chunks and gives back capacity.
    #[test]
    fn removals_give_back_room() {
        let mut set: Chunked<u64> = (0..100_000).collect();
        for k in 0..100_000 {
            if k % 10 != 0 {
                set.remove(&k);
            }
        }
        set.check();
        assert_eq!(set.len(), 10_000);
        let capacity: usize = set.chunks.iter().map(|c| c.capacity()).sum();
        assert!(capacity <= 4 * 10_000, "capacity {capacity}");
    }

    // A clone shares every chunk until one side writes to it.
    #[test]
    fn clones_share_chunks_until_written() {
        let mut set: Chunked<u64> = (0..10_000).collect();
        let snapshot = set.clone();
        let shared =
            |s: &Chunked<u64>| s.chunks.iter().filter(|c| Arc::strong_count(c) > 1).count();
        assert_eq!(shared(&set), set.chunks.len());
        set.insert(10_000);
        assert_eq!(shared(&set), set.chunks.len() - 1, "only the written chunk was copied");
        assert_eq!(snapshot.len(), 10_000);
    }
}
