//! Conditional and atomic writes on one key ([`Command::Key`]), and the revisions that make
//! them useful.
//!
//! **Revisions.** Every applied entry has a revision: its log index. Each key carries
//! [`Revisions`]: `create` (the revision that created it, after it was absent), `modified` (the
//! revision that last wrote its value) and `version` (writes of its value since it was
//! created, 1 at creation). A key that is absent (never written, deleted, expired or evicted)
//! has none; writing it again starts over. Changing only a key's deadline (`persist`,
//! `expire`) changes none of them, as an etcd lease renewal does not: a lock holder that
//! extends its lock keeps its fencing token.
//!
//! **Conditions** ([`Condition`]) are checked at apply time against the replicated state, so
//! every replica decides the same, and against the key as a read at the cache clock sees it
//! (an expired key is absent). A condition that does not hold is not an error: nothing
//! changes and the outcome says `applied: false` with the key's current revisions.
//!
//! **Values** are the stored bytes of the front ends' value forms ([`value_form`]): an integer
//! is JSON integer text or raw ASCII decimal (what Redis calls an integer), `append` works on
//! raw values.
//!
//! TTLs in a [`KeyOp`] are relative to the proposal's time, which the leader stamps: applying
//! `ttl_ms` gives the same deadline on every replica, the one the leader would have computed.

use super::entry::{Entry, Meta};
use super::{ApplyResult, Cache, Command, is_live};
use crate::types::Instant;
use crate::watch::{DeleteCause, EventKind};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// A key's revisions (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revisions {
    pub create: u64,
    pub modified: u64,
    pub version: u64,
}

/// A live key as a read sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub value: Bytes,
    pub expires_at: Option<Instant>,
    pub revisions: Revisions,
}

/// What must hold for a [`KeyWrite`] to apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    #[default]
    Always,
    /// The key is absent (Redis `NX`).
    Absent,
    /// The key is live (Redis `XX`).
    Present,
    /// The key's `modified` revision is exactly this; 0 means the key is absent.
    Revision(u64),
}

impl Condition {
    fn holds(self, current: Option<&Entry>) -> bool {
        match (self, current) {
            (Condition::Always, _) => true,
            (Condition::Absent, c) => c.is_none(),
            (Condition::Present, c) => c.is_some(),
            (Condition::Revision(0), c) => c.is_none(),
            (Condition::Revision(r), Some(entry)) => entry.revisions().modified == r,
            (Condition::Revision(_), None) => false,
        }
    }
}

/// When an [`KeyOp::Expire`] applies, as Redis's `EXPIRE` options (a key without a deadline
/// counts as expiring never, i.e. later than any deadline).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpireWhen {
    #[default]
    Always,
    /// Only if the key has no deadline (`NX`).
    NoDeadline,
    /// Only if the key has a deadline (`XX`).
    HasDeadline,
    /// Only if the new deadline is later than the current one (`GT`).
    Later,
    /// Only if the new deadline is sooner than the current one (`LT`).
    Sooner,
}

/// The deadline a [`KeyOp::Set`] gives the key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ttl {
    /// No deadline.
    #[default]
    Never,
    /// This many milliseconds after the proposal's time.
    Ms(u64),
    /// The deadline the key has now, if it is live (Redis `KEEPTTL`).
    Keep,
    /// This absolute deadline, in milliseconds of cluster time (Redis `EXAT`/`PXAT`); one
    /// already passed removes the key.
    At(u64),
}

/// An operation on one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    /// Store `value` (stored bytes, see [`value_form`]).
    Set { value: Bytes, ttl: Ttl },
    /// Remove the key.
    Del,
    /// Add `delta` to an integer value (absent counts as 0, stored as JSON); keeps the deadline.
    Incr { delta: i64 },
    /// Append bytes to a raw value (absent counts as empty); keeps the deadline.
    Append { bytes: Bytes },
    /// Drop the key's deadline.
    Persist,
    /// Give the key a deadline `ttl_ms` after the proposal's time, if `when` allows; a
    /// deadline already passed removes the key.
    Expire { ttl_ms: u64, when: ExpireWhen },
    /// Give the key the absolute deadline `at_ms` (cluster time, Redis `EXPIREAT`) if `when`
    /// allows; a deadline already passed removes the key.
    ExpireAt { at_ms: u64, when: ExpireWhen },
    /// Redis string editing (`APPEND`, `SETRANGE`) on the value's text ([`value_form::text`]:
    /// raw bytes, or a JSON value's text): write `bytes` at `offset` (past the end pads with
    /// zero bytes), or after the end if `offset` is `None`. The result is raw; absent counts as
    /// empty; keeps the deadline. A `SETRANGE` of nothing changes nothing (and creates nothing).
    Splice { offset: Option<u64>, bytes: Bytes },
    /// Add a float (Redis `INCRBYFLOAT`; `f64::to_bits` of the increment) to a number value
    /// (absent counts as 0); the result is stored as its shortest decimal text, in the form of
    /// the value it replaces (raw if raw, else JSON); keeps the deadline.
    IncrFloat { delta_bits: u64 },
    /// Change nothing: with `return_previous`, a read of the key at the write's point (a `GET`
    /// inside a Redis transaction). Always applies.
    Read,
    /// Move the value, deadline and all, of the live key `from` to this key (Redis `RENAME`);
    /// `from` is then absent. Refused if `from` is absent. Renaming a key to itself changes
    /// nothing.
    Rename { from: String },
}

/// A conditional, atomic write of one key: [`Command::Key`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrite {
    pub key: String,
    pub op: KeyOp,
    pub condition: Condition,
    /// Report the key as it was before ([`KeyOutcome::previous`]).
    pub return_previous: bool,
}

/// The outcome of a [`KeyWrite`] that was not refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOutcome {
    /// The condition held and the operation ran. `false` also for a `persist` or `expire`
    /// that had nothing to change (the key absent, no deadline, or `when` not met).
    pub applied: bool,
    /// The revision this write applied at (its log index), whether or not it changed anything.
    pub revision: u64,
    /// The key was live before.
    pub existed: bool,
    /// The key's revisions afterwards (`None`: absent).
    pub current: Option<Revisions>,
    /// The key before, if asked for and it was live.
    pub previous: Option<Versioned>,
    /// `incr`: the new value; `append` and `splice`: the new length in bytes.
    pub number: Option<i64>,
    /// `incr_float`: the new value's text.
    pub text: Option<Bytes>,
    /// In a [`Command::Exec`](super::Command::Exec): why this operation was refused (it
    /// changed nothing; the others ran).
    pub refusal: Option<KeyRefusal>,
}

/// Why a [`KeyWrite`] was refused (nothing changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyRefusal {
    /// `incr` on a value that is not an integer.
    NotAnInteger,
    /// `incr` would leave the range of a signed 64-bit integer.
    Overflow,
    /// `append` on a value that is not raw bytes.
    NotRaw,
    /// `splice` or `incr_float` on a value that is not text (a protobuf `Any`).
    WrongType,
    /// `incr_float` on a value that is not a number, or by a delta that is not finite.
    NotAFloat,
    /// `incr_float` would make the value infinite or NaN.
    NotFinite,
    /// `append` or `splice` would make the value longer than [`VALUE_BYTES_MAX`].
    TooLarge,
    /// `rename` from a key that is absent.
    NoSuchKey,
}

impl KeyRefusal {
    /// A number for the digest.
    pub fn code(self) -> u8 {
        match self {
            KeyRefusal::NotAnInteger => 0,
            KeyRefusal::Overflow => 1,
            KeyRefusal::NotRaw => 2,
            KeyRefusal::WrongType => 3,
            KeyRefusal::NotAFloat => 4,
            KeyRefusal::NotFinite => 5,
            KeyRefusal::TooLarge => 6,
            KeyRefusal::NoSuchKey => 7,
        }
    }
}

/// The longest value `append` and `splice` may build (the front ends limit what a client sends
/// in one request; these operations grow a value over many). A log entry must hold it.
pub const VALUE_BYTES_MAX: usize = super::PROPOSAL_BYTES_MAX - (1 << 20);

/// The forms of stored values (the front ends' encoding, see the server's `value` module):
/// JSON text (never starts with 0x00 or 0x01), [`value_form::RAW`] then bytes, or
/// [`value_form::ANY`] then a protobuf `Any`.
pub mod value_form {
    pub const RAW: u8 = 0x00;
    pub const ANY: u8 = 0x01;

    /// The integer a stored value holds: JSON integer text, or raw ASCII decimal; in both the
    /// canonical form (no sign `+`, no leading zeros, no `-0`), within `i64`.
    pub fn integer(stored: &[u8]) -> Option<i64> {
        let text = match stored.first() {
            Some(&RAW) => &stored[1..],
            Some(&ANY) | None => return None,
            Some(_) => stored,
        };
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let canonical = match digits {
            [] => false,
            [b'0'] => text.len() == 1,
            [first, rest @ ..] => {
                (b'1'..=b'9').contains(first) && rest.iter().all(u8::is_ascii_digit)
            }
        };
        if !canonical {
            return None;
        }
        std::str::from_utf8(text).ok()?.parse().ok()
    }

    /// The text of a stored value as Redis sees a string: raw bytes, or a JSON value's text;
    /// `None` for a protobuf `Any`.
    pub fn text(stored: &[u8]) -> Option<&[u8]> {
        match stored.first() {
            Some(&RAW) => Some(&stored[1..]),
            Some(&ANY) => None,
            _ => Some(stored),
        }
    }

    /// The number a stored value holds for `incr_float`: its text ([`text`]) parsed as a
    /// decimal float (`1`, `-2.5`, `1e3`), finite. Redis's words for infinity and NaN, spaces
    /// and an empty text are not numbers.
    pub fn float(stored: &[u8]) -> Option<f64> {
        parse_float(text(stored)?)
    }

    /// A decimal float as `incr_float` reads it (see [`float`]).
    pub fn parse_float(text: &[u8]) -> Option<f64> {
        let text = std::str::from_utf8(text).ok()?;
        let plain = text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
        if !plain || text.is_empty() {
            return None;
        }
        text.parse::<f64>().ok().filter(|f| f.is_finite())
    }

    /// The shortest decimal text that reads back as `f` (no exponent, as Redis writes floats).
    pub fn float_text(f: f64) -> String {
        if f == 0.0 { "0".to_owned() } else { format!("{f}") }
    }

    /// `n` stored in the form of `like` (raw if it was raw, else JSON).
    pub fn integer_like(like: Option<&[u8]>, n: i64) -> bytes::Bytes {
        text_like(like, &n.to_string())
    }

    /// Number text stored in the form of `like` (raw if it was raw, else JSON: a number's
    /// text is JSON).
    pub fn text_like(like: Option<&[u8]>, text: &str) -> bytes::Bytes {
        match like.and_then(|b| b.first()) {
            Some(&RAW) => {
                let mut out = Vec::with_capacity(1 + text.len());
                out.push(RAW);
                out.extend_from_slice(text.as_bytes());
                out.into()
            }
            _ => bytes::Bytes::copy_from_slice(text.as_bytes()),
        }
    }
}

/// The most compares, and the most operations in each branch, of one [`Batch`].
pub const BATCH_OPS_MAX: usize = 128;

/// What a [`Batch`] compares a key against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compare {
    /// The key's `modified` revision is exactly this; 0 means absent.
    Revision(u64),
    Absent,
    Present,
    /// The key is live and holds exactly these stored bytes.
    Value(Bytes),
}

/// One compare of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCompare {
    pub key: String,
    pub compare: Compare,
}

/// An atomic batch (etcd's `Txn`): if every compare holds, all of `then` applies, else all of
/// `otherwise`, at one revision; or, if any operation is refused, none. Operations run in
/// order, each seeing the ones before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub compares: Vec<KeyCompare>,
    pub then: Vec<KeyWrite>,
    pub otherwise: Vec<KeyWrite>,
}

/// The outcome of a [`Batch`] that was not refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// Every compare held: `then` ran (else `otherwise`).
    pub succeeded: bool,
    /// The revision the batch applied at.
    pub revision: u64,
    /// One outcome per operation of the branch that ran.
    pub results: Vec<KeyOutcome>,
}

impl Cache {
    /// Applies a [`Command::Batch`] at `seq`: all of one branch, or nothing if an operation
    /// is refused (its refusal, with the operation's position, is the result). With `partial`
    /// ([`Command::Exec`]), a [`KeyRefusal`] is reported in the operation's place instead and
    /// the others apply; out of memory still undoes everything.
    pub(super) fn apply_batch(
        &mut self,
        seq: u64,
        time: Instant,
        b: &Batch,
        partial: bool,
        evicted: &mut Vec<String>,
    ) -> ApplyResult {
        let succeeded = b.compares.iter().all(|c| {
            let live = self.live(&c.key);
            match &c.compare {
                Compare::Revision(0) | Compare::Absent => live.is_none(),
                Compare::Present => live.is_some(),
                Compare::Revision(r) => live.is_some_and(|e| e.revisions().modified == *r),
                Compare::Value(v) => live.is_some_and(|e| e.value() == &v[..]),
            }
        });
        let ops = if succeeded { &b.then } else { &b.otherwise };
        // What to put back if an operation is refused: one log, in the order things happened,
        // of every key an operation touches (as it was before) and every key evicted on the
        // way (as it was when evicted). Undoing it backwards restores each key to what it was
        // before the batch, however the batch wrote, evicted and wrote it again.
        let (evicted_before, evicted_total_before) = (evicted.len(), self.evicted_total);
        let events_before = self.events.0.as_ref().map_or(0, Vec::len);
        self.undo = Some(Vec::with_capacity(ops.len()));
        let mut results = Vec::with_capacity(ops.len());
        let mut refused = None;
        for (position, w) in ops.iter().enumerate() {
            self.note_undo(&w.key);
            if let KeyOp::Rename { from } = &w.op {
                self.note_undo(from);
            }
            match self.apply_key(seq, time, w, evicted) {
                ApplyResult::Key(outcome) => results.push(outcome),
                ApplyResult::KeyRefused(r) if partial => {
                    let live = self.live(&w.key);
                    results.push(KeyOutcome {
                        applied: false,
                        revision: seq,
                        existed: live.is_some(),
                        current: live.map(Entry::revisions),
                        previous: None,
                        number: None,
                        text: None,
                        refusal: Some(r),
                    });
                }
                other => {
                    refused = Some((position, other));
                    break;
                }
            }
        }
        let undo = self.undo.take().unwrap_or_default();
        let Some((position, refusal)) = refused else {
            return ApplyResult::Batch(BatchOutcome { succeeded, revision: seq, results });
        };
        for (key, before) in undo.into_iter().rev() {
            self.remove(&key);
            if let Some(entry) = before {
                self.put_back(entry);
            }
        }
        evicted.truncate(evicted_before);
        self.evicted_total = evicted_total_before;
        if let Some(events) = self.events.0.as_mut() {
            events.truncate(events_before);
        }
        ApplyResult::BatchRefused { position: position as u64, refusal: Box::new(refusal) }
    }

    /// While a batch applies: records `key` as it is now, to put back if the batch is refused.
    pub(super) fn note_undo(&mut self, key: &str) {
        let before = self.items.get(key).cloned();
        if let Some(undo) = self.undo.as_mut() {
            undo.push((key.to_owned(), before));
        }
    }

    /// The live entry under `key` at the cache clock.
    fn live(&self, key: &str) -> Option<&Entry> {
        self.items.get(key).filter(|entry| is_live(entry, self.clock))
    }

    /// `key` with its revisions, if it is live at `now` (or at the cache clock, if later).
    pub fn get_versioned(&self, key: &str, now: Instant) -> Option<Versioned> {
        let now = self.read_time(now);
        self.items.get(key).filter(|entry| is_live(entry, now)).map(versioned)
    }

    /// Applies a [`Command::Key`] at `seq` (the clock already advanced to `time`).
    pub(super) fn apply_key(
        &mut self,
        seq: u64,
        time: Instant,
        w: &KeyWrite,
        evicted: &mut Vec<String>,
    ) -> ApplyResult {
        let key = w.key.as_str();
        // Owned (a count bump), so the writes below can change the cache while it is read.
        let before = self.live(key).cloned();
        let before = before.as_ref();
        let existed = before.is_some();
        let previous = if w.return_previous { before.map(versioned) } else { None };
        let mut outcome = KeyOutcome {
            applied: false,
            revision: seq,
            existed,
            current: before.map(Entry::revisions),
            previous,
            number: None,
            text: None,
            refusal: None,
        };
        // A rename from nothing is refused whatever the condition (Redis checks the source
        // first).
        if let KeyOp::Rename { from } = &w.op
            && self.live(from).is_none()
        {
            return ApplyResult::KeyRefused(KeyRefusal::NoSuchKey);
        }
        if !w.condition.holds(before) {
            return ApplyResult::Key(outcome);
        }
        let deadline = before.and_then(Entry::expires_at);
        let old_value = before.map(Entry::value);
        match &w.op {
            KeyOp::Set { value, ttl } => {
                let expires_at = match ttl {
                    Ttl::Never => None,
                    Ttl::Ms(ms) => Some(time.saturating_add_ms(*ms)),
                    Ttl::Keep => deadline,
                    Ttl::At(ms) => Some(Instant(*ms)),
                };
                if expires_at.is_some_and(|d| d <= self.clock) {
                    self.remove_as(key, DeleteCause::Expired);
                } else if let Some(refused) = self.make_room(key, value.len(), expires_at, evicted)
                {
                    return refused;
                } else {
                    self.insert(key, value, expires_at, seq);
                }
            }
            KeyOp::Del => {
                self.remove_as(key, DeleteCause::Deleted);
            }
            KeyOp::Incr { delta } => {
                let stored = old_value;
                let n = match stored {
                    None => 0,
                    Some(b) => match value_form::integer(b) {
                        Some(n) => n,
                        None => return ApplyResult::KeyRefused(KeyRefusal::NotAnInteger),
                    },
                };
                let Some(n) = n.checked_add(*delta) else {
                    return ApplyResult::KeyRefused(KeyRefusal::Overflow);
                };
                let value = value_form::integer_like(stored, n);
                if let Some(refused) = self.make_room(key, value.len(), deadline, evicted) {
                    return refused;
                }
                self.insert(key, &value, deadline, seq);
                outcome.number = Some(n);
            }
            KeyOp::Append { bytes } => {
                let mut value = match old_value {
                    None => BytesMut::from(&[value_form::RAW][..]),
                    Some(v) if v.first() == Some(&value_form::RAW) => BytesMut::from(v),
                    Some(_) => return ApplyResult::KeyRefused(KeyRefusal::NotRaw),
                };
                if value.len() - 1 + bytes.len() > VALUE_BYTES_MAX {
                    return ApplyResult::KeyRefused(KeyRefusal::TooLarge);
                }
                value.put_slice(bytes);
                if let Some(refused) = self.make_room(key, value.len(), deadline, evicted) {
                    return refused;
                }
                outcome.number = Some((value.len() - 1) as i64);
                self.insert(key, &value, deadline, seq);
            }
            KeyOp::Persist => {
                if !existed || deadline.is_none() {
                    return ApplyResult::Key(outcome);
                }
                self.retime(key, None);
            }
            KeyOp::Splice { offset, bytes } => {
                let text = match old_value {
                    None => &[][..],
                    Some(v) => match value_form::text(v) {
                        Some(t) => t,
                        None => return ApplyResult::KeyRefused(KeyRefusal::WrongType),
                    },
                };
                let at = offset.unwrap_or(text.len() as u64);
                if offset.is_some() && bytes.is_empty() {
                    outcome.number = Some(text.len() as i64);
                    return ApplyResult::Key(outcome);
                }
                let end = at.saturating_add(bytes.len() as u64);
                if end > VALUE_BYTES_MAX as u64 {
                    return ApplyResult::KeyRefused(KeyRefusal::TooLarge);
                }
                let (at, end) = (at as usize, end as usize);
                let mut value = BytesMut::with_capacity(1 + end.max(text.len()));
                value.put_u8(value_form::RAW);
                value.put_slice(text);
                if value.len() < 1 + end {
                    value.resize(1 + end, 0);
                }
                value[1 + at..1 + end].copy_from_slice(bytes);
                if let Some(refused) = self.make_room(key, value.len(), deadline, evicted) {
                    return refused;
                }
                outcome.number = Some((value.len() - 1) as i64);
                self.insert(key, &value, deadline, seq);
            }
            KeyOp::IncrFloat { delta_bits } => {
                let delta = f64::from_bits(*delta_bits);
                let stored = old_value;
                let n = match stored {
                    None => 0.0,
                    Some(b) if value_form::text(b).is_none() => {
                        return ApplyResult::KeyRefused(KeyRefusal::WrongType);
                    }
                    Some(b) => match value_form::float(b) {
                        Some(n) => n,
                        None => return ApplyResult::KeyRefused(KeyRefusal::NotAFloat),
                    },
                };
                if !delta.is_finite() {
                    return ApplyResult::KeyRefused(KeyRefusal::NotAFloat);
                }
                let n = n + delta;
                if !n.is_finite() {
                    return ApplyResult::KeyRefused(KeyRefusal::NotFinite);
                }
                let text = value_form::float_text(n);
                let value = value_form::text_like(stored, &text);
                if let Some(refused) = self.make_room(key, value.len(), deadline, evicted) {
                    return refused;
                }
                self.insert(key, &value, deadline, seq);
                outcome.text = Some(Bytes::from(text));
            }
            KeyOp::Read => {}
            KeyOp::Rename { from } => {
                if from != key {
                    let source =
                        self.remove_entry(from).expect("the source was checked to be live");
                    let expires_at = source.expires_at();
                    if let Some(refused) =
                        self.make_room(key, source.value_len(), expires_at, evicted)
                    {
                        self.put_back(source);
                        return refused;
                    }
                    self.emit(from, EventKind::Delete { cause: DeleteCause::Deleted });
                    self.insert(key, source.value(), expires_at, seq);
                }
            }
            KeyOp::Expire { when, .. } | KeyOp::ExpireAt { when, .. } => {
                let new = match &w.op {
                    KeyOp::ExpireAt { at_ms, .. } => Instant(*at_ms),
                    KeyOp::Expire { ttl_ms, .. } => time.saturating_add_ms(*ttl_ms),
                    _ => unreachable!("matched above"),
                };
                let allowed = existed
                    && match when {
                        ExpireWhen::Always => true,
                        ExpireWhen::NoDeadline => deadline.is_none(),
                        ExpireWhen::HasDeadline => deadline.is_some(),
                        ExpireWhen::Later => deadline.is_some_and(|d| new > d),
                        ExpireWhen::Sooner => deadline.is_none_or(|d| new < d),
                    };
                if !allowed {
                    return ApplyResult::Key(outcome);
                }
                if new <= self.clock {
                    self.remove_as(key, DeleteCause::Expired);
                } else {
                    self.retime(key, Some(new));
                }
            }
        }
        self.debug_check_key(key);
        outcome.applied = true;
        outcome.current = self.live(key).map(Entry::revisions);
        ApplyResult::Key(outcome)
    }

    /// Gives a stored key a new deadline, keeping its value, revisions and eviction state.
    fn retime(&mut self, key: &str, expires_at: Option<Instant>) {
        let Some(entry) = self.remove_entry(key) else { return };
        self.put_back(entry.with_meta(Meta { expires_at, ..entry.meta() }));
        self.emit_put(key);
    }
}

fn versioned(entry: &Entry) -> Versioned {
    let meta = entry.meta();
    Versioned { value: entry.value_bytes(), expires_at: meta.expires_at, revisions: meta.revisions }
}

/// Folds a [`Command::Key`] into the rolling digest.
pub(super) fn digest_key(d: u64, w: &KeyWrite) -> u64 {
    use crate::codec::fnv1a;
    let d = fnv1a(&[7], d);
    let d = fnv1a(w.key.as_bytes(), d);
    let (tag, a, b): (u8, u64, u64) = match &w.op {
        KeyOp::Set { value, ttl } => {
            let t = match ttl {
                Ttl::Never => 0,
                Ttl::Ms(ms) => ms.saturating_add(2),
                Ttl::Keep => 1,
                Ttl::At(ms) => fnv1a(&ms.to_le_bytes(), 0x5eed),
            };
            (1, value.len() as u64, t)
        }
        KeyOp::Del => (2, 0, 0),
        KeyOp::Incr { delta } => (3, *delta as u64, 0),
        KeyOp::Append { bytes } => (4, bytes.len() as u64, 0),
        KeyOp::Persist => (5, 0, 0),
        KeyOp::Expire { ttl_ms, when } => (6, *ttl_ms, *when as u64),
        KeyOp::Splice { offset, bytes } => {
            (7, offset.unwrap_or(u64::MAX), fnv1a(bytes, bytes.len() as u64))
        }
        KeyOp::IncrFloat { delta_bits } => (8, *delta_bits, 0),
        KeyOp::Rename { from } => (9, fnv1a(from.as_bytes(), 0), 0),
        KeyOp::Read => (10, 0, 0),
        KeyOp::ExpireAt { at_ms, when } => (11, *at_ms, *when as u64),
    };
    let cond = match w.condition {
        Condition::Always => 0,
        Condition::Absent => 1,
        Condition::Present => 2,
        Condition::Revision(r) => r.saturating_add(3),
    };
    let d = fnv1a(&[tag, u8::from(w.return_previous)], d);
    let d = fnv1a(&a.to_le_bytes(), d);
    let d = fnv1a(&b.to_le_bytes(), d);
    fnv1a(&cond.to_le_bytes(), d)
}

/// Folds a [`Command::Batch`] into the rolling digest.
pub(super) fn digest_batch(d: u64, b: &Batch) -> u64 {
    use crate::codec::fnv1a;
    let mut d = fnv1a(&[8], d);
    for c in &b.compares {
        d = fnv1a(c.key.as_bytes(), d);
        d = match &c.compare {
            Compare::Revision(r) => fnv1a(&r.to_le_bytes(), fnv1a(&[1], d)),
            Compare::Absent => fnv1a(&[2], d),
            Compare::Present => fnv1a(&[3], d),
            Compare::Value(v) => fnv1a(v, fnv1a(&[4], d)),
        };
    }
    for (branch, ops) in [(5u8, &b.then), (6, &b.otherwise)] {
        d = fnv1a(&[branch], d);
        d = ops.iter().fold(d, digest_key);
    }
    d
}

/// The outcome's share of the digest.
pub(super) fn outcome_code(o: &KeyOutcome) -> u64 {
    let revs =
        o.current.map_or(0, |r| r.create ^ r.modified.rotate_left(21) ^ r.version.rotate_left(42));
    let flags = 8 | (u64::from(o.applied) << 8) | (u64::from(o.existed) << 9);
    flags ^ revs.rotate_left(10) ^ (o.number.unwrap_or(0) as u64).wrapping_mul(31)
}

impl Command {
    /// A [`Command::Key`] with no condition and nothing returned.
    pub fn key(key: impl Into<String>, op: KeyOp) -> Command {
        Command::Key(Command::key_write(key, op))
    }

    /// The [`KeyWrite`] of [`Command::key`].
    pub fn key_write(key: impl Into<String>, op: KeyOp) -> KeyWrite {
        KeyWrite { key: key.into(), op, condition: Condition::Always, return_previous: false }
    }
}
