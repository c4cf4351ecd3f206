//! The memory bound: [`Limits`] and the [`EvictionPolicy`] that makes room when a write would
//! pass them, decided at apply time from replicated state only, so every replica evicts exactly
//! the same keys at the same log index.
//!
//! - **What "used" means** ([`Cache::used_bytes`]): for every stored key, expired or not, its
//!   key bytes + value bytes + 80, plus key bytes + 48 more if it has a deadline (its entry in
//!   the expiration index). An estimate of the structures' cost, not the allocator's view: the
//!   same on every replica, and recomputed exactly from a snapshot.
//! - **The limits are replicated.** They live in the state machine, set by
//!   [`Command::SetLimits`](super::Command::SetLimits) entries that a leader proposes when its configuration differs from
//!   the state's (at election and on `hot_reload`). A replica never applies its own
//!   configuration directly.
//! - **When a write would pass a limit** (`used_bytes` over `max_memory_bytes`, or the key count
//!   over `max_keys`; 0 means no limit) and would grow what it passes, the policy decides:
//!   `noeviction` refuses it ([`ApplyResult::OutOfMemory`], nothing changes); the others pick
//!   victims in their order until the write fits. If even evicting every eligible key (never
//!   the key being written) would not make it fit, the write is refused and nothing is
//!   evicted. Deletes, expiry, reset and smaller overwrites always apply.
//! - **Recency and frequency are the log's.** Reads do not go through the log, so "used" means
//!   *written*: a key's recency is the log index of its last `Set` ([`Item::seq`]), and its
//!   frequency a logarithmic counter of its `Set`s (as Redis's LFU counter, with deterministic
//!   increments) that loses one point per [`LFU_DECAY_WRITES`] log entries without a write. A
//!   key that is only read ages like a cold one.
//! - **Random** picks, for each eviction, the first eligible key at or after a pseudo-random
//!   recency drawn from the log index: deterministic, and spread over the keys by write order.
//! - **Cost**: an ordered index of the eligible keys for the LRU, LFU and random policies
//!   (sharing the stored entries: a pointer per key, no copy of it), updated in O(log n) per
//!   write; `volatile-ttl` uses the expiration index.
//!   Each eviction is O(log n).
//!
//! When the policy changes, the index is rebuilt and every stored key starts from the same
//! recency and frequency (ordered by key), so replicas that restored older snapshots and
//! replicas that applied the whole log agree from that entry on.

use super::chunked::Chunked;
use super::entry::{Entry, Meta};
use super::{Cache, entry_bytes};
use serde::{Deserialize, Serialize};

/// How the cache makes room when a write would pass its [`Limits`], with Redis's meaning
/// (`maxmemory-policy`); "used" is "written" (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EvictionPolicy {
    /// Refuse writes that would pass a limit.
    #[default]
    NoEviction,
    /// Evict the least recently written key.
    AllKeysLru,
    /// Evict the least recently written key among those with a TTL.
    VolatileLru,
    /// Evict the least frequently written key.
    AllKeysLfu,
    /// Evict the least frequently written key among those with a TTL.
    VolatileLfu,
    /// Evict a (deterministically) random key.
    AllKeysRandom,
    /// Evict a random key among those with a TTL.
    VolatileRandom,
    /// Evict the key with the nearest deadline.
    VolatileTtl,
}

impl EvictionPolicy {
    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::NoEviction,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::VolatileLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
    ];

    /// Redis's name for the policy (`allkeys-lru`, ...).
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::NoEviction => "noeviction",
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    /// The policy named `name` (Redis's names, any case).
    pub fn parse(name: &str) -> Option<EvictionPolicy> {
        EvictionPolicy::ALL.into_iter().find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Only keys with a deadline may be evicted.
    fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileLfu
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        )
    }

    /// The policy keeps its own ordered index of eligible keys.
    fn ordered(self) -> bool {
        !matches!(self, EvictionPolicy::NoEviction | EvictionPolicy::VolatileTtl)
    }

    fn lfu(self) -> bool {
        matches!(self, EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu)
    }

    fn random(self) -> bool {
        matches!(self, EvictionPolicy::AllKeysRandom | EvictionPolicy::VolatileRandom)
    }
}

/// The memory bound of the cache, part of the replicated state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// The most [`Cache::used_bytes`] may reach; 0 means no limit.
    pub max_memory_bytes: u64,
    /// The most keys (expired or not) the cache may hold; 0 means no limit.
    pub max_keys: u64,
    pub policy: EvictionPolicy,
}

impl Limits {
    /// Whether `bytes` and `keys` pass a limit.
    pub fn exceeded(&self, bytes: u64, keys: u64) -> bool {
        (self.max_memory_bytes > 0 && bytes > self.max_memory_bytes)
            || (self.max_keys > 0 && keys > self.max_keys)
    }
}

/// The most keys one write may evict: a write that would need more (a value far larger than
/// the keys it would displace, or a `volatile-*` policy with few keys that have a TTL) is
/// refused, so one write never costs more than this many O(log n) steps on every replica.
pub const EVICT_PER_WRITE_MAX: usize = 1024;

/// A new key's LFU counter (as Redis's `LFU_INIT_VAL`): new keys are not the first victims.
pub(super) const LFU_INIT: u8 = 5;
/// How hard the LFU counter is to raise (Redis's `lfu-log-factor` default).
const LFU_LOG_FACTOR: u64 = 10;
/// Log entries without a write after which a key's LFU score falls by one point.
pub const LFU_DECAY_WRITES: u64 = 1 << 16;

/// A deterministic 64-bit mix (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The LFU counter after one more write at `seq`: raised with probability
/// 1 / ((counter - LFU_INIT) * LFU_LOG_FACTOR + 1), drawn from `seq`, so it is logarithmic in
/// the number of writes and the same on every replica.
pub(super) fn lfu_bump(counter: u8, seq: u64) -> u8 {
    if counter == u8::MAX {
        return counter;
    }
    let base = u64::from(counter.saturating_sub(LFU_INIT));
    let odds = base * LFU_LOG_FACTOR + 1;
    if mix(seq).is_multiple_of(odds) { counter + 1 } else { counter }
}

/// The eligible keys in the order the policy evicts them (see [`rank`]), each as its shared
/// entry. LRU and random order by one number that the entry itself gives (its recency, or its
/// key's fixed place), so their index holds one pointer per key; LFU orders by two (its
/// decayed counter, then its recency) and keeps them beside the pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Order {
    recency: Chunked<ByRecency>,
    place: Chunked<ByPlace>,
    lfu: Chunked<(u64, u64, Entry)>,
}

impl Order {
    fn insert(&mut self, policy: EvictionPolicy, entry: &Entry) {
        let e = entry.clone();
        if policy.lfu() {
            let (a, b) = rank(policy, entry);
            self.lfu.insert((a, b, e));
        } else if policy.random() {
            self.place.insert(ByPlace::new(e));
        } else {
            self.recency.insert(ByRecency::new(e));
        }
    }

    fn remove(&mut self, policy: EvictionPolicy, entry: &Entry) -> bool {
        let e = entry.clone();
        if policy.lfu() {
            let (a, b) = rank(policy, entry);
            self.lfu.remove(&(a, b, e))
        } else if policy.random() {
            self.place.remove(&ByPlace::new(e))
        } else {
            self.recency.remove(&ByRecency::new(e))
        }
    }

    pub(super) fn clear(&mut self) {
        self.recency.clear();
        self.place.clear();
        self.lfu.clear();
    }

    pub(super) fn check(&self) {
        self.recency.check();
        self.place.check();
        self.lfu.check();
    }
}

/// An entry in the order of a number it gives, then by key: the index holds only the pointer
/// and reads the number from the entry when it compares. `RANDOM`: the key's fixed place;
/// otherwise the recency (LRU).
#[derive(Clone, Debug)]
struct ByRank<const RANDOM: bool>(Entry);

/// LRU order.
type ByRecency = ByRank<false>;
/// Random order.
type ByPlace = ByRank<true>;

impl<const RANDOM: bool> ByRank<RANDOM> {
    fn new(entry: Entry) -> Self {
        ByRank(entry)
    }

    fn rank(&self) -> u64 {
        if RANDOM { place(&self.0) } else { self.0.meta().seq }
    }
}

impl<const RANDOM: bool> PartialEq for ByRank<RANDOM> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl<const RANDOM: bool> Eq for ByRank<RANDOM> {}

impl<const RANDOM: bool> Ord for ByRank<RANDOM> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank()).then_with(|| self.0.cmp(&other.0))
    }
}

impl<const RANDOM: bool> PartialOrd for ByRank<RANDOM> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A key's fixed pseudo-random place: a draw over the whole u64 range then lands uniformly
/// among the keys, whatever their recency.
fn place(entry: &Entry) -> u64 {
    mix(crate::codec::fnv1a(entry.key_bytes(), crate::codec::FNV_OFFSET))
}

/// Where a key stands in the policy's order: the smallest is evicted first.
fn rank(policy: EvictionPolicy, entry: &Entry) -> (u64, u64) {
    if policy.random() {
        (place(entry), 0)
    } else if policy.lfu() {
        // One point per write counter step, one per LFU_DECAY_WRITES of recency: comparing
        // (counter + seq / DECAY) is comparing counters decayed to the same moment.
        let meta = entry.meta();
        (u64::from(meta.freq) + meta.seq / LFU_DECAY_WRITES, meta.seq)
    } else {
        (entry.meta().seq, 0)
    }
}

impl Cache {
    /// The estimated bytes of everything stored (see the module documentation): identical on
    /// every replica at the same applied index.
    pub fn used_bytes(&self) -> u64 {
        self.approx_bytes as u64
    }

    /// The limits in force (replicated; see [`Command::SetLimits`](super::Command::SetLimits)).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keys evicted since the cache began (replicated: the same count on every replica).
    pub fn evicted_total(&self) -> u64 {
        self.evicted_total
    }

    /// Whether the policy's index is kept: the policy has one and a limit is set (without a
    /// limit nothing is ever evicted, so no write pays for the index).
    fn indexed(&self) -> bool {
        self.limits.policy.ordered()
            && (self.limits.max_memory_bytes > 0 || self.limits.max_keys > 0)
    }

    /// Whether `entry` under the current policy may be evicted at all.
    fn eligible(&self, entry: &Entry) -> bool {
        !self.limits.policy.volatile_only() || entry.expires_at().is_some()
    }

    /// Adds `entry` to the policy's index if the policy keeps one and the key is eligible.
    pub(super) fn order_insert(&mut self, entry: &Entry) {
        if self.indexed() && self.eligible(entry) {
            self.order.insert(self.limits.policy, entry);
        }
    }

    /// Removes `entry` (as it was indexed) from the policy's index.
    pub(super) fn order_remove(&mut self, entry: &Entry) {
        if self.indexed() && self.eligible(entry) {
            let removed = self.order.remove(self.limits.policy, entry);
            debug_assert!(removed, "every eligible item is in the eviction index");
        }
    }

    /// Applies new limits: a new policy rebuilds the index with every key starting equal, then
    /// keys are evicted (if the policy allows) until the cache is within the limits.
    pub(super) fn set_limits(&mut self, limits: Limits, out: &mut Vec<String>) -> u64 {
        let policy_changed = limits.policy != self.limits.policy;
        let was_indexed = self.indexed();
        self.limits = limits;
        if policy_changed {
            // Every entry is rebuilt with its new recency and frequency, one at a time, each
            // replacing the old one in the set and in the expiration index, so the two keep
            // sharing it and the old entries are freed as they go. The order index is rebuilt
            // below anyway.
            self.order.clear();
            let entries: Vec<Entry> = self.items.iter().cloned().collect();
            for old in entries {
                let fresh = old.with_meta(Meta { seq: 0, freq: LFU_INIT, ..old.meta() });
                drop(old);
                if let Some(deadline) = fresh.expires_at() {
                    self.expirations.replace((deadline, fresh.clone()));
                }
                self.items.insert(fresh);
            }
        }
        if policy_changed || was_indexed != self.indexed() {
            self.order.clear();
            let entries: Vec<Entry> = self.items.iter().cloned().collect();
            for entry in &entries {
                self.order_insert(entry);
            }
        }
        let over = |c: &Cache| c.limits.exceeded(c.used_bytes(), c.items.len() as u64);
        let mut evicted = 0;
        while over(self) {
            let victims = self.victims(None, 1);
            let Some(victim) = victims.into_iter().next() else { break };
            self.remove_as(&victim, crate::watch::DeleteCause::Evicted);
            out.push(victim);
            evicted += 1;
        }
        self.evicted_total += evicted;
        evicted
    }

    /// Keys to evict so that writing `key` (`bytes_after` and `keys_after` being the totals once
    /// it is written) fits the limits, in eviction order; `None` if evicting every eligible key
    /// but `key` would not be enough, or the policy is `noeviction`.
    pub(super) fn plan_evictions(
        &self,
        key: &str,
        bytes_after: u64,
        keys_after: u64,
    ) -> Option<Vec<String>> {
        if self.limits.policy == EvictionPolicy::NoEviction {
            return None;
        }
        // A write that could not fit even in an otherwise empty cache is refused at once.
        let alone =
            bytes_after - (self.used_bytes() - self.items.get(key).map_or(0, entry_bytes) as u64);
        if self.limits.exceeded(alone, 1) {
            return None;
        }
        let (mut bytes, mut keys) = (bytes_after, keys_after);
        let mut out = Vec::new();
        // The planted bug skips the first candidate when there is another.
        let skip = usize::from(self.diverge && self.candidates(Some(key)).nth(1).is_some());
        for victim in self.candidates(Some(key)).skip(skip).take(EVICT_PER_WRITE_MAX) {
            if !self.limits.exceeded(bytes, keys) {
                break;
            }
            bytes -= entry_bytes(victim) as u64;
            keys -= 1;
            out.push(victim.key().to_owned());
        }
        (!self.limits.exceeded(bytes, keys)).then_some(out)
    }

    /// Up to `n` keys in eviction order (never `except`).
    fn victims(&self, except: Option<&str>, n: usize) -> Vec<String> {
        let skip = usize::from(self.diverge);
        let owned = |e: &Entry| e.key().to_owned();
        let mut v: Vec<String> = self.candidates(except).skip(skip).take(n).map(owned).collect();
        if v.is_empty() && skip > 0 {
            v = self.candidates(except).take(n).map(owned).collect();
        }
        v
    }

    /// The eligible keys in the order the policy evicts them, skipping `except`.
    fn candidates<'a>(
        &'a self,
        except: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Entry> + 'a> {
        let policy = self.limits.policy;
        let keep = move |e: &&'a Entry| except.is_none_or(|k| e.key_bytes() != k.as_bytes());
        match policy {
            EvictionPolicy::NoEviction => Box::new(std::iter::empty()),
            EvictionPolicy::VolatileTtl => {
                Box::new(self.expirations.iter().map(|(_, e)| e).filter(keep))
            }
            _ if policy.random() => {
                // Start at a pseudo-random place drawn from the state (the same on every
                // replica) among the keys' fixed places (see `rank`), and wrap around.
                let draw = mix(self.last_seq ^ self.evicted_total.rotate_left(32));
                let at = self.order.place.position(|p| p.rank() < draw);
                let (head, tail) = self.order.place.split_at(at);
                Box::new(tail.chain(head).map(|p| &p.0).filter(keep))
            }
            _ if policy.lfu() => Box::new(self.order.lfu.iter().map(|(_, _, e)| e).filter(keep)),
            _ => Box::new(self.order.recency.iter().map(|r| &r.0).filter(keep)),
        }
    }

    /// Checks the eviction index against the items (tests and debug builds).
    pub(super) fn check_order(&self) {
        let mut expected = Order::default();
        if self.indexed() {
            for e in self.items.iter().filter(|e| self.eligible(e)) {
                expected.insert(self.limits.policy, e);
            }
        }
        assert_eq!(self.order, expected, "the eviction index lists exactly the eligible keys");
        let o = &self.order;
        let indexed = o.recency.iter().map(|r| &r.0).chain(o.place.iter().map(|p| &p.0));
        for e in indexed.chain(o.lfu.iter().map(|(_, _, e)| e)) {
            let stored = self.items.get(e.key());
            assert!(stored.is_some_and(|s| s.shares(e)), "the eviction index shares the entry");
        }
    }
}
