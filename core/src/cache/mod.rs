//! The replicated cache: the state machine every replica applies committed log entries to.
//!
//! Replicas must agree on the state at every log index, so applying an entry is a pure function
//! of the state and the entry. That is easy for values and hard for TTLs, which depend on time.
//! The rule that makes TTLs deterministic:
//!
//! - The leader turns a relative TTL into an absolute deadline (`expires_at`) before proposing,
//!   and stamps its cluster time (the median of the members' clocks, [`crate::clock`]; never one
//!   node's raw wall clock) into every [`Proposal`] as `time`.
//! - Applying never reads a clock. The cache keeps [`Cache::clock`], the largest `time` applied
//!   so far: the log carries time forward, identically on every replica, on replay and after a
//!   snapshot restore.
//! - A key is live iff it has no deadline or its deadline is later than `max(now, clock)`, where
//!   `now` is the time a read is served at. Reads hide expired keys but never remove them.
//! - Expired keys leave the state only through the log: the leader asks
//!   [`Cache::expired_keys`] and proposes [`Command::RemoveExpired`]. Applying that removes only
//!   keys whose deadline is at or before the cache clock, so a key that was set again with a later
//!   deadline in the meantime survives.
//!
//! Because the clock never decreases, a key that was expired at some applied index stays expired
//! (hidden or removed) at every later index.

mod chunked;
mod entry;
mod evict;
mod ops;
mod pattern;
mod snapshot;
#[cfg(test)]
mod tests;

pub use evict::{EvictionPolicy, LFU_DECAY_WRITES, Limits};
pub use ops::{
    BATCH_OPS_MAX, Batch, BatchOutcome, Compare, Condition, ExpireWhen, KeyCompare, KeyOp,
    KeyOutcome, KeyRefusal, KeyWrite, Revisions, Ttl, VALUE_BYTES_MAX, Versioned, value_form,
};
pub use pattern::{
    PATTERN_BYTES_MAX, Pattern, PatternError, REGEX_DFA_SIZE_BYTES_MAX, REGEX_SIZE_BYTES_MAX,
    SEARCH_RESULTS_MAX, SearchMode,
};
pub use snapshot::{SNAPSHOT_BYTES_MAX, SnapshotSource};

use crate::codec::{self, DecodeError};
use crate::types::Instant;
use crate::watch::{DeleteCause, Event, EventKind};
use bytes::Bytes;
use chunked::Chunked;
use entry::{Entry, Items, Meta};
use pattern::Plan;
use serde::{Deserialize, Serialize};
use std::ops::Bound;

/// The largest encoded [`Proposal`] that [`Proposal::decode`] accepts. A leader must not propose
/// anything larger, because every replica would refuse to decode the committed entry; the server
/// keeps its request body limit well below this.
pub const PROPOSAL_BYTES_MAX: usize = 64 << 20;

/// Estimated bytes each stored key costs beyond its key and value bytes: the map node's share,
/// the `String` and `Bytes` headers and the deadline. Only used for [`Cache::approx_bytes`].
const ITEM_OVERHEAD_BYTES: usize = 80;

/// Estimated bytes each expiration index entry costs beyond its copy of the key.
const INDEX_ENTRY_OVERHEAD_BYTES: usize = 48;

/// A client operation on the cache, as carried (inside a [`Proposal`]) by a log entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store `value` under `key`, replacing any previous value and deadline. `expires_at` is the
    /// absolute deadline the leader computed from the client's TTL; `None` means no expiry.
    Set { key: String, value: Bytes, expires_at: Option<Instant> },
    /// Remove `key`; reports whether it existed (was live).
    Del { key: String },
    /// Expire the key now (client request); reports whether it existed (was live).
    Expire { key: String },
    /// Clear all keys; reports how many live keys were cleared.
    Reset,
    /// Leader-proposed removal of keys whose deadline has passed. Applying removes each listed key
    /// only if its deadline <= the cache clock (it may have been Set again with a later deadline
    /// since).
    RemoveExpired { keys: Vec<String> },
    /// Leader-proposed memory limits and eviction policy (see [`Limits`]): every replica
    /// applies the same ones at the same index, evicting down to them if they are lower.
    SetLimits(Limits),
    /// A conditional or atomic write of one key (see `ops`). Plain sets and deletes stay
    /// [`Command::Set`] and [`Command::Del`], which every earlier version decodes.
    Key(KeyWrite),
    /// An atomic batch of compares and writes (see `ops`).
    Batch(Batch),
    /// A Redis transaction (`MULTI`/`EXEC`): a [`Command::Batch`] whose refused operations
    /// (an `incr` of text, a rename from nothing) are reported in their place
    /// ([`KeyOutcome::refusal`]) while the others apply, as Redis runs `EXEC`. A write the
    /// memory limits refuse still undoes the whole transaction.
    Exec(Batch),
}

/// What goes into a Raft log entry: the leader's cluster time at proposal plus the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The leader's cluster time when it proposed the command. Applying advances
    /// [`Cache::clock`] to it.
    pub time: Instant,
    /// The operation to apply.
    pub command: Command,
}

impl Proposal {
    /// Encodes the proposal for a log entry, in the versioned format of [`crate::codec`].
    pub fn encode(&self) -> Bytes {
        Bytes::from(codec::encode(self))
    }

    /// Decodes a proposal from a log entry, refusing inputs over [`PROPOSAL_BYTES_MAX`]. Malformed
    /// input returns an error and never panics.
    pub fn decode(bytes: &[u8]) -> Result<Proposal, DecodeError> {
        codec::decode(bytes, PROPOSAL_BYTES_MAX)
    }
}

/// The outcome of applying one [`Command`], reported to the client that proposed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyResult {
    /// The value was stored (or, if its deadline had already passed, the key was removed).
    Set,
    /// The key was removed; `existed` says whether it was live before.
    Del { existed: bool },
    /// The key was expired; `existed` says whether it was live before.
    Expire { existed: bool },
    /// Every key was removed; `cleared` counts those that were live.
    Reset { cleared: u64 },
    /// `removed` keys listed in the command were expired and are now gone.
    RemoveExpired { removed: u64 },
    /// New limits are in force; `evicted` keys were evicted to meet them.
    Limits { evicted: u64 },
    /// The write would pass the limits and the policy could not make room (`noeviction`, or
    /// not enough eligible keys): nothing changed.
    OutOfMemory { used_bytes: u64, keys: u64, limits: Limits },
    /// A [`Command::Key`] ran (or its condition did not hold).
    Key(KeyOutcome),
    /// A [`Command::Key`] was refused: nothing changed.
    KeyRefused(KeyRefusal),
    /// A [`Command::Batch`] ran one of its branches.
    Batch(BatchOutcome),
    /// An operation of a [`Command::Batch`] was refused (`refusal` is its own result): nothing
    /// of the batch changed.
    BatchRefused { position: u64, refusal: Box<ApplyResult> },
}

/// The remaining lifetime of a key, as seen by a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlStatus {
    /// The key is absent or expired.
    Missing,
    /// The key is live and never expires.
    NoExpiry,
    /// The key is live and expires in `ms` milliseconds (always at least 1).
    Remaining { ms: u64 },
}

/// One page of a search ([`Cache::search_page`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchPage {
    pub keys: Vec<String>,
    /// The search stopped at its examination budget: continue after this key.
    pub resume_after: Option<String>,
}

/// The cache state machine. See the module documentation for how TTLs stay deterministic.
///
/// Invariant: `expirations` holds exactly one `(deadline, key)` entry for every item that has a
/// deadline, and nothing else; `approx_bytes` equals the sum of [`item_bytes`] over all items.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct Cache {
    /// The largest proposal time applied so far.
    clock: Instant,
    /// Every stored key, expired or not, each in one allocation (`entry`). Sorted, so a
    /// prefix search is a range scan.
    items: Items,
    /// Items with a deadline, earliest first, so finding expired keys does not scan every key.
    /// Shares the entries of `items`: no second copy of the key.
    expirations: Chunked<(Instant, Entry)>,
    /// Estimated memory of `items` and `expirations`, maintained on every change: what
    /// [`Cache::used_bytes`] reports.
    approx_bytes: usize,
    /// The limits and eviction policy in force (replicated, see `evict`).
    limits: Limits,
    /// The largest write sequence (log index) applied.
    last_seq: u64,
    /// Keys evicted so far.
    evicted_total: u64,
    /// The eligible keys in eviction order, for the policies that keep one (see `evict`).
    order: evict::Order,
    /// A rolling digest of every applied command, its outcome and its evictions: equal on every
    /// replica at the same applied index (the simulator compares it).
    digest: u64,
    /// A planted bug (simulator mutation tests): evict the second candidate, not the first.
    pub(crate) diverge: bool,
    /// While a batch applies: every key it touched or evicted, as it was just before, in
    /// order, to put back if an operation of the batch is refused (see `apply_batch`). `None`
    /// otherwise.
    undo: Option<Vec<(String, Option<Entry>)>>,
    /// The change events of what was applied, while recording (see [`Cache::record_events`]).
    events: Recorder,
}

/// The events being recorded: not part of the state, so two caches with the same state are
/// equal whether or not either records.
#[derive(Default, Clone, Debug)]
struct Recorder(Option<Vec<Event>>);

impl PartialEq for Recorder {
    fn eq(&self, _: &Recorder) -> bool {
        true
    }
}

impl Eq for Recorder {}

impl Cache {
    /// An empty cache whose clock is at the origin.
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Applies one proposal as the next write after the last one (tests and tools; a node
    /// applies committed entries with [`Cache::apply_at`]).
    pub fn apply(&mut self, proposal: &Proposal) -> ApplyResult {
        self.apply_at(self.last_seq + 1, proposal)
    }

    /// Applies the committed proposal at log index `seq`. The clock first advances to
    /// `proposal.time` (it ignores times that go backwards, e.g. from a new leader whose clock
    /// is behind), then the command runs against the advanced clock. Costs O(log n) per key
    /// touched or evicted, except `Reset` and a `SetLimits` that changes the policy.
    pub fn apply_at(&mut self, seq: u64, proposal: &Proposal) -> ApplyResult {
        self.apply_reporting(seq, proposal, &mut Vec::new())
    }

    /// [`Cache::apply_at`], appending the keys it evicted (in eviction order) to `evicted`.
    pub fn apply_reporting(
        &mut self,
        seq: u64,
        proposal: &Proposal,
        evicted: &mut Vec<String>,
    ) -> ApplyResult {
        let first_evicted = evicted.len();
        let result = self.apply_inner(seq, proposal, evicted);
        self.digest =
            digest_step(self.digest, seq, &proposal.command, &result, &evicted[first_evicted..]);
        result
    }

    /// The rolling digest of everything applied (see the field).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Starts (or stops) recording the change events of what is applied (`crate::watch`); a
    /// node records them while it serves watches. Not part of the state.
    pub fn record_events(&mut self, on: bool) {
        self.events = Recorder(on.then(Vec::new));
    }

    /// The events recorded since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.0.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn emit(&mut self, key: &str, kind: EventKind) {
        if let Some(events) = self.events.0.as_mut() {
            events.push(Event { revision: self.last_seq, key: key.to_owned(), kind });
        }
    }

    /// Emits the key's current value as a put.
    fn emit_put(&mut self, key: &str) {
        if self.events.0.is_some()
            && let Some(entry) = self.items.get(key)
        {
            let meta = entry.meta();
            let kind = EventKind::Put {
                value: entry.value_bytes(),
                revisions: meta.revisions,
                expires_at: meta.expires_at,
            };
            self.emit(key, kind);
        }
    }

    /// [`Cache::remove`], emitting a delete for a stored key.
    fn remove_as(&mut self, key: &str, cause: DeleteCause) -> Option<Entry> {
        let item = self.remove(key);
        if item.is_some() {
            self.emit(key, EventKind::Delete { cause });
        }
        item
    }

    fn apply_inner(
        &mut self,
        seq: u64,
        proposal: &Proposal,
        evicted: &mut Vec<String>,
    ) -> ApplyResult {
        self.last_seq = self.last_seq.max(seq);
        let clock_before = self.clock;
        self.clock = self.clock.max(proposal.time);
        debug_assert!(self.clock >= clock_before, "the cache clock never decreases");
        let result = match &proposal.command {
            Command::Set { key, value, expires_at } => {
                if expires_at.is_some_and(|deadline| deadline <= self.clock) {
                    // A write that is already expired must not make a key visible, even to a
                    // read whose `now` lags behind the clock; it just ends the old value.
                    self.remove_as(key, DeleteCause::Expired);
                } else if let Some(refused) = self.make_room(key, value.len(), *expires_at, evicted)
                {
                    return refused;
                } else {
                    self.insert(key, value, *expires_at, seq);
                }
                self.debug_check_key(key);
                ApplyResult::Set
            }
            Command::Del { key } => {
                let existed = self
                    .remove_as(key, DeleteCause::Deleted)
                    .is_some_and(|entry| is_live(&entry, self.clock));
                self.debug_check_key(key);
                ApplyResult::Del { existed }
            }
            Command::Expire { key } => {
                let existed = self
                    .remove_as(key, DeleteCause::Expired)
                    .is_some_and(|entry| is_live(&entry, self.clock));
                self.debug_check_key(key);
                ApplyResult::Expire { existed }
            }
            Command::Reset => {
                let cleared = (self.items.len() - self.expired_count()) as u64;
                self.items.clear();
                self.expirations.clear();
                self.order.clear();
                self.approx_bytes = 0;
                self.emit("", EventKind::Reset);
                ApplyResult::Reset { cleared }
            }
            Command::RemoveExpired { keys } => {
                let mut removed = 0;
                for key in keys {
                    let expired = self.items.get(key).is_some_and(|entry| {
                        entry.expires_at().is_some_and(|deadline| deadline <= self.clock)
                    });
                    if expired {
                        self.remove_as(key, DeleteCause::Expired);
                        removed += 1;
                    }
                    self.debug_check_key(key);
                }
                ApplyResult::RemoveExpired { removed }
            }
            Command::SetLimits(limits) => {
                ApplyResult::Limits { evicted: self.set_limits(*limits, evicted) }
            }
            Command::Key(w) => self.apply_key(seq, proposal.time, w, evicted),
            Command::Batch(b) => self.apply_batch(seq, proposal.time, b, false, evicted),
            Command::Exec(b) => self.apply_batch(seq, proposal.time, b, true, evicted),
        };
        debug_assert!(
            self.expirations.len() <= self.items.len(),
            "the expiration index never holds more entries than there are items"
        );
        result
    }

    /// The value of `key` if it is live at `now` (or at the cache clock, if that is later).
    /// The `Bytes` share the stored entry: no copy, however large the value.
    pub fn get(&self, key: &str, now: Instant) -> Option<Bytes> {
        let now = self.read_time(now);
        self.items.get(key).filter(|entry| is_live(entry, now)).map(Entry::value_bytes)
    }

    /// The remaining lifetime of `key` at `now` (or at the cache clock, if that is later).
    pub fn ttl(&self, key: &str, now: Instant) -> TtlStatus {
        let now = self.read_time(now);
        match self.items.get(key).map(Entry::expires_at) {
            None => TtlStatus::Missing,
            Some(None) => TtlStatus::NoExpiry,
            Some(Some(deadline)) if deadline > now => {
                TtlStatus::Remaining { ms: deadline.saturating_since(now) }
            }
            Some(Some(_)) => TtlStatus::Missing,
        }
    }

    /// The live keys matching `pattern` at `now`, in ascending order, at most
    /// `min(limit, SEARCH_RESULTS_MAX)` of them, examining as many keys as it takes (tests and
    /// tools; a node serves searches page by page with [`Cache::search_page`]).
    pub fn search(&self, pattern: &Pattern, now: Instant, limit: usize) -> Vec<String> {
        self.search_page(pattern, now, limit, None, usize::MAX).keys
    }

    /// One bounded step of a search: the live keys matching `pattern` at `now` that sort after
    /// `after` (all, if `None`), in ascending order, at most `min(limit, SEARCH_RESULTS_MAX)` of
    /// them, examining at most `examine_max` keys. A pattern with a literal prefix examines only
    /// the keys with that prefix. If the budget ran out first, `resume_after` names the last key
    /// examined: the next page starts after it (Redis `SCAN`'s cursor). Keys present and live
    /// throughout a paged search are returned exactly once; keys written or removed meanwhile may
    /// or may not be.
    pub fn search_page(
        &self,
        pattern: &Pattern,
        now: Instant,
        limit: usize,
        after: Option<&str>,
        examine_max: usize,
    ) -> SearchPage {
        let now = self.read_time(now);
        let limit = limit.min(SEARCH_RESULTS_MAX);
        let mut page = SearchPage::default();
        if limit == 0 || examine_max == 0 {
            return page;
        }
        match pattern.plan() {
            Plan::Exact(key) => {
                let past = after.is_some_and(|a| key.as_str() <= a);
                if let Some(entry) = self.items.get(key)
                    && is_live(entry, now)
                    && !past
                {
                    page.keys.push(entry.key().to_owned());
                }
            }
            Plan::Scan { prefix, filter } => {
                let start = match after {
                    Some(a) if a >= prefix.as_str() => Bound::Excluded(a),
                    _ => Bound::Included(prefix.as_str()),
                };
                let mut last: Option<&str> = None;
                let entries = self
                    .items
                    .range_from(start)
                    .take_while(|entry| entry.key_bytes().starts_with(prefix.as_bytes()));
                for (examined, entry) in entries.enumerate() {
                    if examined == examine_max {
                        // More keys to look at: resume after the last one examined.
                        page.resume_after = last.map(str::to_owned);
                        break;
                    }
                    let key = entry.key();
                    last = Some(key);
                    if is_live(entry, now) && filter.as_ref().is_none_or(|f| f.is_match(key)) {
                        page.keys.push(key.to_owned());
                        if page.keys.len() == limit {
                            break;
                        }
                    }
                }
            }
        }
        page
    }

    /// Keys whose deadline is at or before `max(now, clock)`, earliest deadline first, at most
    /// `max` of them. The leader proposes them in a [`Command::RemoveExpired`] with `time = now`,
    /// which guarantees that applying it removes every one that was not set again meanwhile.
    pub fn expired_keys(&self, now: Instant, max: usize) -> Vec<String> {
        let now = self.read_time(now);
        self.expirations
            .iter()
            .take_while(|(deadline, _)| *deadline <= now)
            .take(max)
            .map(|(_, entry)| entry.key().to_owned())
            .collect()
    }

    /// The earliest deadline of any stored key, expired or not, so the leader's driver knows when
    /// to look for expired keys next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.expirations.first().map(|(deadline, _)| *deadline)
    }

    /// The largest proposal time applied so far.
    pub fn clock(&self) -> Instant {
        self.clock
    }

    /// The number of stored keys, including expired keys not yet removed through the log.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether no key is stored at all.
    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    /// The number of entries in the expiration index, i.e. of stored keys with a deadline.
    pub fn expiration_index_len(&self) -> usize {
        self.expirations.len()
    }

    /// An estimate of the memory the cache holds: key and value bytes plus a fixed overhead per
    /// item and per index entry. Maintained incrementally, so it is cheap to export as a metric.
    pub fn approx_bytes(&self) -> usize {
        self.approx_bytes
    }

    /// The time a read observes: the reader's `now`, but never earlier than what the log has
    /// already established, so a lagging reader cannot see a key the log has expired.
    fn read_time(&self, now: Instant) -> Instant {
        now.max(self.clock)
    }

    /// How many stored keys are expired at the clock. Walks only the expired prefix of the index.
    fn expired_count(&self) -> usize {
        self.expirations.iter().take_while(|(deadline, _)| *deadline <= self.clock).count()
    }

    /// Before storing `value_len` bytes under `key`: evicts what the policy must so that the
    /// write fits the limits, or returns the refusal (and changes nothing) if it cannot.
    fn make_room(
        &mut self,
        key: &str,
        value_len: usize,
        expires_at: Option<Instant>,
        evicted: &mut Vec<String>,
    ) -> Option<ApplyResult> {
        let old = self.items.get(key).map(entry_bytes);
        let used = self.used_bytes();
        let keys = self.items.len() as u64;
        let bytes_after = used - old.unwrap_or(0) as u64
            + item_bytes(key, value_len, expires_at.is_some()) as u64;
        let keys_after = keys + u64::from(old.is_none());
        // Only a write that grows past a limit needs room: an overwrite that keeps the key count
        // and does not grow the bytes applies even when a lowered limit left the cache over.
        let l = self.limits;
        let over_keys = l.max_keys > 0 && keys_after > l.max_keys && keys_after > keys;
        let over_bytes =
            l.max_memory_bytes > 0 && bytes_after > l.max_memory_bytes && bytes_after > used;
        if !over_keys && !over_bytes {
            return None;
        }
        match self.plan_evictions(key, bytes_after, keys_after) {
            Some(victims) => {
                self.evicted_total += victims.len() as u64;
                for victim in victims {
                    self.note_undo(&victim);
                    self.remove_as(&victim, DeleteCause::Evicted);
                    evicted.push(victim);
                }
                None
            }
            None => Some(ApplyResult::OutOfMemory { used_bytes: used, keys, limits: self.limits }),
        }
    }

    /// Stores `value` under `key` as written at `seq`, keeping the indexes and the byte
    /// estimate in step.
    fn insert(&mut self, key: &str, value: &[u8], expires_at: Option<Instant>, seq: u64) {
        let clock = self.clock;
        let (freq, revisions) = match self.remove_entry(key) {
            Some(old) => {
                let meta = old.meta();
                let revisions = if is_live(&old, clock) {
                    let version = meta.revisions.version + 1;
                    Revisions { modified: seq, version, ..meta.revisions }
                } else {
                    Revisions { create: seq, modified: seq, version: 1 }
                };
                (evict::lfu_bump(meta.freq, seq), revisions)
            }
            None => (evict::LFU_INIT, Revisions { create: seq, modified: seq, version: 1 }),
        };
        self.put_back(Entry::new(key, value, Meta { expires_at, seq, freq, revisions }));
        self.emit_put(key);
    }

    /// Stores an entry exactly as it is (revisions, recency and all), keeping the indexes and
    /// the byte estimate in step. The key must not be stored.
    fn put_back(&mut self, entry: Entry) {
        if let Some(deadline) = entry.expires_at() {
            self.expirations.insert((deadline, entry.clone()));
        }
        self.approx_bytes += entry_bytes(&entry);
        self.order_insert(&entry);
        let replaced = self.items.insert(entry);
        debug_assert!(replaced.is_none(), "put_back is only called for a key that is not stored");
    }

    /// Removes `key` and its index entries, returning its entry if it was stored.
    fn remove(&mut self, key: &str) -> Option<Entry> {
        self.remove_entry(key)
    }

    /// [`Cache::remove`].
    fn remove_entry(&mut self, key: &str) -> Option<Entry> {
        let entry = self.items.remove(key)?;
        self.order_remove(&entry);
        self.approx_bytes -= entry_bytes(&entry);
        if let Some(deadline) = entry.expires_at() {
            let removed = self.expirations.remove(&(deadline, entry.clone()));
            debug_assert!(removed, "every item with a deadline is in the index");
        }
        Some(entry)
    }

    /// Checks, in debug builds, that the key just touched is indexed under its deadline. O(log n),
    /// so it runs after every apply; the full O(n) check is [`Cache::check_invariants`].
    fn debug_check_key(&self, key: &str) {
        if cfg!(debug_assertions)
            && let Some(entry) = self.items.get(key)
            && let Some(deadline) = entry.expires_at()
        {
            debug_assert!(
                self.expirations.contains(&(deadline, entry.clone())),
                "every item with a deadline is in the index"
            );
        }
    }

    /// Checks every invariant in O(n): the index has exactly one entry per item with a deadline
    /// and no other, and the byte estimate matches a recount. Panics on a violation, which is a
    /// bug. Run after restoring a snapshot and by the tests after every operation.
    pub(crate) fn check_invariants(&self) {
        self.items.check();
        self.expirations.check();
        self.order.check();
        let with_deadline = self.items.iter().filter(|e| e.expires_at().is_some()).count();
        assert_eq!(
            self.expirations.len(),
            with_deadline,
            "the expiration index has one entry per item with a deadline"
        );
        for (deadline, entry) in self.expirations.iter() {
            let stored = self.items.get(entry.key());
            assert_eq!(
                stored.and_then(Entry::expires_at),
                Some(*deadline),
                "every index entry names a stored item with that deadline"
            );
            assert!(stored.is_some_and(|s| s.shares(entry)), "the index shares the stored entry");
        }
        let recount: usize = self.items.iter().map(entry_bytes).sum();
        assert_eq!(self.approx_bytes, recount, "approx_bytes matches a recount");
        self.check_order();
    }
}

/// The rolling digest after one applied command: its index, what it did to which key, its
/// outcome and the keys it evicted. Cheap (a few bytes per key touched), so it runs on every
/// apply; equal on every replica at the same applied index.
fn digest_step(
    d: u64,
    seq: u64,
    command: &Command,
    result: &ApplyResult,
    evicted: &[String],
) -> u64 {
    use crate::codec::fnv1a;
    let d = if d == 0 { crate::codec::FNV_OFFSET } else { d };
    let mut d = fnv1a(&seq.to_le_bytes(), d);
    d = match command {
        Command::Set { key, value, expires_at } => {
            let d = fnv1a(&[1], d);
            let d = fnv1a(key.as_bytes(), d);
            let d = fnv1a(&(value.len() as u64).to_le_bytes(), d);
            fnv1a(&expires_at.map_or(0, |e| e.as_millis()).to_le_bytes(), d)
        }
        Command::Del { key } => fnv1a(key.as_bytes(), fnv1a(&[2], d)),
        Command::Expire { key } => fnv1a(key.as_bytes(), fnv1a(&[3], d)),
        Command::Reset => fnv1a(&[4], d),
        Command::RemoveExpired { keys } => {
            keys.iter().fold(fnv1a(&[5], d), |d, k| fnv1a(k.as_bytes(), d))
        }
        Command::SetLimits(l) => {
            let d = fnv1a(&[6], d);
            let d = fnv1a(&l.max_memory_bytes.to_le_bytes(), d);
            let d = fnv1a(&l.max_keys.to_le_bytes(), d);
            fnv1a(l.policy.name().as_bytes(), d)
        }
        Command::Key(w) => ops::digest_key(d, w),
        Command::Batch(b) => ops::digest_batch(d, b),
        Command::Exec(b) => ops::digest_batch(fnv1a(&[9], d), b),
    };
    let outcome: u64 = match result {
        ApplyResult::Set => 1,
        ApplyResult::Del { existed } | ApplyResult::Expire { existed } => 2 + u64::from(*existed),
        ApplyResult::Reset { cleared } => 4 + (cleared << 8),
        ApplyResult::RemoveExpired { removed } => 5 + (removed << 8),
        ApplyResult::Limits { evicted } => 6 + (evicted << 8),
        ApplyResult::OutOfMemory { .. } => 7,
        ApplyResult::Key(o) => ops::outcome_code(o),
        ApplyResult::KeyRefused(r) => 9 + ((r.code() as u64) << 8),
        ApplyResult::Batch(b) => {
            b.results.iter().fold(10 + (u64::from(b.succeeded) << 8), |d, o| {
                d.rotate_left(7) ^ ops::outcome_code(o)
            })
        }
        ApplyResult::BatchRefused { position, .. } => 11 + (position << 8),
    };
    d = fnv1a(&outcome.to_le_bytes(), d);
    evicted.iter().fold(d, |d, k| fnv1a(k.as_bytes(), fnv1a(&[0xff], d)))
}

/// Whether `entry` is visible to a read at `now`: it has no deadline or the deadline is later.
fn is_live(entry: &Entry, now: Instant) -> bool {
    entry.expires_at().is_none_or(|deadline| deadline > now)
}

/// [`item_bytes`] of a stored entry.
fn entry_bytes(entry: &Entry) -> usize {
    item_bytes(entry.key(), entry.value_len(), entry.expires_at().is_some())
}

/// The estimated memory one item costs, including its index entry if it has a deadline.
fn item_bytes(key: &str, value_len: usize, has_deadline: bool) -> usize {
    let index_bytes = if has_deadline { key.len() + INDEX_ENTRY_OVERHEAD_BYTES } else { 0 };
    key.len() + value_len + ITEM_OVERHEAD_BYTES + index_bytes
}
