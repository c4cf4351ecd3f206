//! The cache service: the request logic both client front ends share, so HTTP/JSON
//! (`http_api`) and gRPC (`grpc`) have one behaviour. Front ends only translate their wire shapes
//! into these calls and the results (or an [`ApiError`]) back.
//!
//! What lives here: validation and limits (key and value size, durations, patterns, search
//! limits), the admin token check, proposing writes locally or forwarding them to the leader,
//! linearizable (ReadIndex) vs stale reads, the bounded wait for a leader, and request metrics.
//!
//! **Forwarding.** A write that reaches a follower is validated there and, when the follower
//! knows the leader, forwarded at once (no local proposal first), whichever front end it came
//! in on: the `WriteOp` itself goes in a `peer_wire::Frame::Forward` on the follower's peer
//! connection to the leader (`transport::Links::forward`). The leader checks it again against
//! its own limits (and the admin token, for a reset), proposes it once ([`Service::serve_forward`])
//! and sends back a `ForwardAnswer` on its own connection to the follower: the `Written`, the
//! proposal's `WriteError`, or a refusal with the status, code and message its own client would
//! get, so a gRPC or RESP client of a follower is told what a client of the leader would be. The
//! follower decides with `core::exec::ForwardFailure` (the simulator's service calls it too): a
//! write that was never sent, or that the receiver refused as not (or no longer) the leader, did
//! not take effect, so it waits for another leader and retries within the request's deadline; a
//! broken connection after sending, or an unknown outcome, is reported as such. A forwarded
//! write is never forwarded again. A leader of the previous version, which answers the peer
//! protocol with HTTP, gets the write as in 0.1: `POST /internal/v1/write` on its client port,
//! JSON with the stored value in base64 ([`ForwardedWrite`]); that route, kept on every node for
//! the same rolling upgrade, goes in the next release.

use crate::config::Config;
use crate::duration::parse_go_duration;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::node_loop::{Input, Query, QueryResult, Status, WriteOp};
use crate::transport::ForwardReply;
use crate::value::StoredValue;
use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use simple_cache_core::NodeId;
use simple_cache_core::cache::{
    ApplyResult, BATCH_OPS_MAX, Batch, BatchOutcome, Command, Condition, ExpireWhen, KeyOp,
    KeyOutcome, KeyRefusal, KeyWrite, Pattern, Revisions, SEARCH_RESULTS_MAX, SearchMode, Ttl,
    TtlStatus, Versioned,
};
use simple_cache_core::codec;
use simple_cache_core::exec::AfterWriteError;
use simple_cache_core::node::{WriteError, Written};
use simple_cache_core::peer_wire::ForwardAnswer;
use simple_cache_core::raft::{ProposeError, ReadError};
use simple_cache_core::watch::Filter;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;

/// Marks a request forwarded by a follower, so the leader never forwards it again.
pub const FORWARDED_HEADER: &str = "x-simple-cache-forwarded";
/// The leader's route for writes forwarded by followers (on the client HTTP listener).
pub const FORWARD_PATH: &str = "/internal/v1/write";
/// Results of a search when the client gives no limit.
pub const SEARCH_LIMIT_DEFAULT: usize = 1000;

/// The keys a search found, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchResult {
    pub keys: Vec<String>,
    /// More keys matched than the limit let through.
    pub truncated: bool,
}

/// Everything a request needs: the node loop's input queue and status, the configuration, the
/// metrics and an HTTP client for forwarding. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    pub tx: mpsc::Sender<Input>,
    pub status: watch::Receiver<Status>,
    pub cfg: Arc<Config>,
    /// The limits `hot_reload` may change while running; read them here, not from `cfg`.
    pub limits: Arc<crate::reload::Limits>,
    pub metrics: Arc<Metrics>,
    pub client: reqwest::Client,
    /// This node's cluster id (see `peer_auth`).
    pub cluster_id: crate::peer_auth::ClusterId,
    /// The connections to the peers, for forwarding writes (see `transport`).
    pub links: Arc<crate::transport::Links>,
    /// TLS for the listeners and for calls to other members (see `tls`).
    pub tls: Arc<crate::tls::Tls>,
    /// For calls to other members' Raft ports: trusts the peer CA only.
    pub peer_client: reqwest::Client,
}

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex: sees every write acknowledged before the read started.
    Linearizable,
    /// The local state: fast, possibly behind.
    Stale,
}

/// Who sent a write.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The `Authorization` header (HTTP) or `authorization` metadata (gRPC), if any.
    pub authorization: Option<String>,
    /// A follower forwarded the request here; never forward it again.
    pub forwarded: bool,
}

/// A write as a follower forwards it to the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ForwardedWrite {
    /// `value` is the stored form (see `value`), in standard base64.
    Set {
        key: String,
        value: String,
        ttl_ms: Option<u64>,
    },
    Del {
        key: String,
    },
    Expire {
        key: String,
    },
    Reset,
    /// A conditional or atomic write: `core::cache::KeyWrite` in the codec's encoding, base64.
    Key {
        write: String,
    },
    /// An atomic batch: `core::cache::Batch` in the codec's encoding, base64.
    Batch {
        batch: String,
    },
    /// A Redis transaction (`core::cache::Command::Exec`): a `Batch` as above.
    Exec {
        batch: String,
    },
}

/// The leader's answer to a forwarded write that succeeded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ForwardedResult {
    /// `revision` is 0 from a leader older than revisions.
    Set {
        #[serde(default)]
        revision: u64,
    },
    Del {
        existed: bool,
        #[serde(default)]
        revision: u64,
    },
    Expire {
        existed: bool,
    },
    Reset {
        keys_cleared: u64,
    },
    /// `core::cache::KeyOutcome` in the codec's encoding, base64.
    Key {
        outcome: String,
    },
    /// `core::cache::BatchOutcome` in the codec's encoding, base64.
    Batch {
        outcome: String,
    },
}

/// A stored value with its revisions and deadline, as reads and `return_previous` give it.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub value: StoredValue,
    pub revisions: Revisions,
    /// The absolute deadline, in milliseconds of cluster time.
    pub expires_at_ms: Option<u64>,
}

impl Item {
    pub fn of(v: Versioned) -> Result<Item, ApiError> {
        let value = StoredValue::decode(v.value)
            .map_err(|e| ApiError::internal(format!("the stored value is unreadable: {e}")))?;
        let expires_at_ms = v.expires_at.map(simple_cache_core::Instant::as_millis);
        Ok(Item { value, revisions: v.revisions, expires_at_ms })
    }
}

/// The conditions and options of a set or delete, as the front ends take them: at most one of
/// `if_absent`, `if_present` and `if_revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    pub if_absent: bool,
    pub if_present: bool,
    /// Compare-and-set on the key's `mod_revision`; 0 means "absent".
    pub if_revision: Option<u64>,
    pub return_previous: bool,
    /// Keep the key's current deadline (sets only; Redis `KEEPTTL`).
    pub keep_ttl: bool,
}

impl WriteOptions {
    /// Whether any option is set (else the write is a plain set or delete).
    pub fn any(&self) -> bool {
        *self != WriteOptions::default()
    }

    fn condition(&self) -> Result<Condition, ApiError> {
        match (self.if_absent, self.if_present, self.if_revision) {
            (false, false, None) => Ok(Condition::Always),
            (true, false, None) => Ok(Condition::Absent),
            (false, true, None) => Ok(Condition::Present),
            (false, false, Some(r)) => Ok(Condition::Revision(r)),
            _ => Err(ApiError::bad_request(
                "bad_options",
                "give at most one of `if_absent`, `if_present` and `if_revision`",
            )),
        }
    }

    fn write(&self, key: String, op: KeyOp) -> Result<KeyWrite, ApiError> {
        Ok(KeyWrite {
            key,
            op,
            condition: self.condition()?,
            return_previous: self.return_previous,
        })
    }
}

fn encode_base64<T: Serialize>(value: &T) -> String {
    BASE64.encode(codec::encode(value))
}

fn decode_base64<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, ApiError> {
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|e| ApiError::bad_request("bad_body", format!("`{what}` is not base64: {e}")))?;
    codec::decode(&bytes, simple_cache_core::cache::PROPOSAL_BYTES_MAX)
        .map_err(|e| ApiError::bad_request("bad_body", format!("`{what}` does not decode: {e}")))
}

/// A conditional or atomic write refused for the kind of value the key holds: 409, nothing
/// changed.
pub fn refused(r: KeyRefusal) -> ApiError {
    let (code, message) = match r {
        KeyRefusal::NotAnInteger => {
            ("not_an_integer", "the value is not an integer (JSON integer text or raw decimal)")
        }
        KeyRefusal::Overflow => {
            ("integer_overflow", "the result would leave the range of a signed 64-bit integer")
        }
        KeyRefusal::NotRaw => ("not_raw", "append works on raw byte values only"),
        KeyRefusal::WrongType => {
            ("wrong_type", "the value is a protobuf Any, not text (raw bytes or JSON)")
        }
        KeyRefusal::NotAFloat => ("not_a_float", "the value or the increment is not a valid float"),
        KeyRefusal::NotFinite => ("not_finite", "the increment would produce NaN or Infinity"),
        KeyRefusal::TooLarge => (
            "value_too_large",
            "the value would pass the longest a value may grow to (VALUE_BYTES_MAX, 63 MiB)",
        ),
        KeyRefusal::NoSuchKey => ("no_such_key", "the key to rename from does not exist"),
    };
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// A write that failed for good, as the client sees it.
fn failed_write(caller: &Caller, e: WriteError) -> ApiError {
    match e {
        // The sender thought we lead; we do not: it retries, we do not bounce.
        WriteError::Propose(ProposeError::NotLeader { .. }) if caller.forwarded => {
            ApiError::unavailable("not_leader", "forwarded to a node that is not the leader")
        }
        e => e.into(),
    }
}

/// Why forwarding a write did not produce an answer.
enum ForwardFailure {
    /// The write did not take effect (not delivered, or the receiver was not the leader): wait
    /// for another leader and retry.
    Retry(ApiError),
    /// Give up with this error (the outcome may be unknown, or the leader refused the write).
    Fail(ApiError),
}

impl Service {
    pub fn deadline(&self) -> TokioInstant {
        TokioInstant::now() + Duration::from_millis(self.limits.request_timeout_ms())
    }

    pub fn me(&self) -> NodeId {
        self.status.borrow().id
    }

    /// Records one client request (see `metrics`: the seed's `simple_cache_requests_total` and
    /// `simple_cache_request_duration_seconds`, and the API families). `status` is the HTTP
    /// status of the outcome, for gRPC too.
    pub fn observe(&self, api: &'static str, op: &'static str, status: u16, started: TokioInstant) {
        self.metrics.observe_request(api, op, status, started.elapsed());
    }

    // ----- validation -----

    pub fn check_key(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() {
            return Err(ApiError::bad_request("bad_key", "the key must not be empty"));
        }
        if key.len() > self.limits.max_key_bytes() {
            return Err(ApiError::new(
                StatusCode::URI_TOO_LONG,
                "key_too_large",
                format!(
                    "the key is {} bytes; the limit is {}",
                    key.len(),
                    self.limits.max_key_bytes()
                ),
            ));
        }
        Ok(())
    }

    pub fn check_value(&self, value: &StoredValue) -> Result<(), ApiError> {
        self.check_value_len(value.payload_len())
    }

    /// A value of `len` bytes (the JSON text, raw bytes or encoded `Any`) is within
    /// `max_value_bytes`.
    fn check_value_len(&self, len: usize) -> Result<(), ApiError> {
        if len > self.limits.max_value_bytes() {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "value_too_large",
                format!("the value is {len} bytes; the limit is {}", self.limits.max_value_bytes()),
            ));
        }
        Ok(())
    }

    /// With an `admin_token` configured, `authorization` must be `Bearer <admin_token>`.
    pub fn check_admin(&self, authorization: Option<&str>) -> Result<(), ApiError> {
        let Some(token) = &self.cfg.admin_token else { return Ok(()) };
        let given = authorization.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
        // Compare without an early exit so the time taken does not reveal a matching prefix.
        let ok = given.len() == token.len()
            && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this operation requires `Authorization: Bearer <admin_token>`",
            ))
        }
    }

    /// The `expire` of a set request: empty means no expiry (proto3 cannot tell an unset string
    /// from an empty one, so HTTP reads it the same way), else [`Service::ttl_ms_from_duration`].
    pub fn ttl_ms_from_expire(s: &str) -> Result<Option<u64>, ApiError> {
        if s.is_empty() { Ok(None) } else { Service::ttl_ms_from_duration(s) }
    }

    /// The deadline a set gives its key: a TTL, or (`keep_ttl`) the one it has, or none.
    pub fn set_ttl(ttl_ms: Option<u64>, keep_ttl: bool) -> Result<Ttl, ApiError> {
        match (ttl_ms, keep_ttl) {
            (Some(_), true) => Err(ApiError::bad_request(
                "bad_options",
                "`keep_ttl` and an expiry exclude each other",
            )),
            (_, true) => Ok(Ttl::Keep),
            (Some(ms), false) => Ok(Ttl::Ms(ms)),
            (None, false) => Ok(Ttl::Never),
        }
    }

    /// The duration of an `expire` with options: milliseconds from now, rounded up; zero (or
    /// empty) removes the key, as Redis's `EXPIRE key 0` does.
    pub fn expire_ms(s: &str) -> Result<u64, ApiError> {
        if s.is_empty() {
            return Ok(0);
        }
        Ok(Service::ttl_ms_from_duration(s)?.unwrap_or(0))
    }

    /// A Go-style duration (`1m30s`) as a TTL in milliseconds. Zero means no expiry, as in the
    /// seed; a positive duration below a millisecond is rounded up so it still expires.
    pub fn ttl_ms_from_duration(s: &str) -> Result<Option<u64>, ApiError> {
        let d = parse_go_duration(s).map_err(|e| {
            ApiError::bad_request("bad_duration", format!("`expire` is not a valid duration: {e}"))
        })?;
        Ok(match d.as_nanos() {
            0 => None,
            n => Some(u64::try_from(n.div_ceil(1_000_000)).unwrap_or(u64::MAX)),
        })
    }

    // ----- client operations -----

    pub async fn get(&self, key: &str, c: Consistency) -> Result<Option<StoredValue>, ApiError> {
        self.check_key(key)?;
        match self.read(Query::Get(key.to_string()), c).await? {
            QueryResult::Value(Some(bytes)) => StoredValue::decode(bytes)
                .map(Some)
                .map_err(|e| ApiError::internal(format!("the stored value is unreadable: {e}"))),
            _ => Ok(None),
        }
    }

    /// A key's value with its revisions.
    pub async fn get_item(&self, key: &str, c: Consistency) -> Result<Option<Item>, ApiError> {
        self.check_key(key)?;
        match self.read(Query::Item(key.to_string()), c).await? {
            QueryResult::Item(Some(v)) => Item::of(v).map(Some),
            _ => Ok(None),
        }
    }

    pub async fn ttl(&self, key: &str, c: Consistency) -> Result<TtlStatus, ApiError> {
        self.check_key(key)?;
        match self.read(Query::Ttl(key.to_string()), c).await? {
            QueryResult::Ttl(t) => Ok(t),
            _ => Ok(TtlStatus::Missing),
        }
    }

    /// Keys matching `pattern`, at most `limit` (default [`SEARCH_LIMIT_DEFAULT`], capped by
    /// core's `SEARCH_RESULTS_MAX`), and whether more matched.
    pub async fn search(
        &self,
        pattern: &str,
        mode: SearchMode,
        limit: Option<usize>,
        c: Consistency,
    ) -> Result<SearchResult, ApiError> {
        let wanted = limit.unwrap_or(SEARCH_LIMIT_DEFAULT).min(SEARCH_RESULTS_MAX);
        // One key more than asked for tells whether the limit cut the result.
        let limit = wanted + 1;
        let pattern = Pattern::compile(pattern, mode)
            .map_err(|e| ApiError::bad_request("bad_pattern", e.to_string()))?;
        // Page by page, each a read of its own, so a search over many keys never holds the node
        // loop for long (`search_page_keys`).
        // One deadline for the whole search, however many pages it takes.
        let deadline = self.deadline();
        let mut keys = Vec::new();
        let mut after = None;
        let mut pages = 0u64;
        while keys.len() < limit {
            if pages > 0 && TokioInstant::now() >= deadline {
                return Err(ApiError::unavailable(
                    "timeout",
                    format!(
                        "the search did not finish within request_timeout_ms ({} ms); narrow the \
                         pattern or lower the limit",
                        self.limits.request_timeout_ms()
                    ),
                ));
            }
            let query = Query::Search {
                pattern: pattern.clone(),
                limit: limit - keys.len(),
                after: after.take(),
                examine_max: self.cfg.search_page_keys,
            };
            pages += 1;
            match self.read(query, c).await? {
                QueryResult::Keys(page) => {
                    keys.extend(page.keys);
                    match page.resume_after {
                        Some(k) => after = Some(k),
                        None => break,
                    }
                }
                _ => break,
            }
        }
        let truncated = keys.len() > wanted;
        keys.truncate(wanted);
        Ok(SearchResult { keys, truncated })
    }

    pub async fn set(
        &self,
        caller: &Caller,
        key: String,
        value: &StoredValue,
        ttl_ms: Option<u64>,
    ) -> Result<u64, ApiError> {
        self.check_key(&key)?;
        self.check_value(value)?;
        let w = self.write(caller, WriteOp::Set { key, value: value.encode(), ttl_ms }).await?;
        self.set_result(w)
    }

    /// The revision of a plain set, or why it was refused.
    pub fn set_result(&self, w: Written) -> Result<u64, ApiError> {
        match w.result {
            ApplyResult::Set => Ok(w.revision),
            ApplyResult::OutOfMemory { used_bytes, keys, limits } => {
                Err(self.out_of_memory(used_bytes, keys, limits))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Removes a key; whether it was live, and the revision the delete applied at.
    pub async fn del(&self, caller: &Caller, key: String) -> Result<(bool, u64), ApiError> {
        self.check_key(&key)?;
        let w = self.write(caller, WriteOp::Del { key }).await?;
        Service::del_result(w)
    }

    /// Whether a plain delete found the key, and its revision.
    pub fn del_result(w: Written) -> Result<(bool, u64), ApiError> {
        match w.result {
            ApplyResult::Del { existed } => Ok((existed, w.revision)),
            other => Err(unexpected(other)),
        }
    }

    /// A conditional or atomic write of one key (see `core::cache::ops`). The front end built
    /// `w` from its request; its value (for `set`) is already checked with
    /// [`Service::check_value`]. A condition that does not hold is an outcome
    /// (`applied: false`), not an error; a value of the wrong kind is a 409.
    pub async fn key_write(&self, caller: &Caller, w: KeyWrite) -> Result<KeyOutcome, ApiError> {
        self.check_key_write(&w)?;
        let written = self.write(caller, WriteOp::Key(w)).await?;
        self.key_result(written)
    }

    /// The outcome of a [`WriteOp::Key`], or why it was refused.
    pub fn key_result(&self, written: Written) -> Result<KeyOutcome, ApiError> {
        match written.result {
            ApplyResult::Key(outcome) => Ok(outcome),
            ApplyResult::KeyRefused(r) => Err(refused(r)),
            ApplyResult::OutOfMemory { used_bytes, keys, limits } => {
                Err(self.out_of_memory(used_bytes, keys, limits))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A set with conditions (or with `keep_ttl`, or returning the previous value); a plain
    /// one is [`Service::set`].
    pub async fn set_with(
        &self,
        caller: &Caller,
        key: String,
        value: &StoredValue,
        ttl_ms: Option<u64>,
        opts: &WriteOptions,
    ) -> Result<KeyOutcome, ApiError> {
        self.check_value(value)?;
        let op =
            KeyOp::Set { value: value.encode(), ttl: Service::set_ttl(ttl_ms, opts.keep_ttl)? };
        self.key_write(caller, opts.write(key, op)?).await
    }

    /// A delete with a condition, or returning the deleted value (`getdel`).
    pub async fn del_with(
        &self,
        caller: &Caller,
        key: String,
        opts: &WriteOptions,
    ) -> Result<KeyOutcome, ApiError> {
        if opts.keep_ttl {
            return Err(ApiError::bad_request("bad_options", "`keep_ttl` is for sets"));
        }
        self.key_write(caller, opts.write(key, KeyOp::Del)?).await
    }

    /// Adds `delta` to an integer value (absent counts as 0); the new value is in
    /// [`KeyOutcome::number`].
    pub async fn incr(
        &self,
        caller: &Caller,
        key: String,
        delta: i64,
    ) -> Result<KeyOutcome, ApiError> {
        self.key_write(caller, Command::key_write(key, KeyOp::Incr { delta })).await
    }

    /// Appends bytes to a raw value (absent counts as empty); the new length is in
    /// [`KeyOutcome::number`].
    pub async fn append(
        &self,
        caller: &Caller,
        key: String,
        bytes: bytes::Bytes,
    ) -> Result<KeyOutcome, ApiError> {
        self.key_write(caller, Command::key_write(key, KeyOp::Append { bytes })).await
    }

    /// Drops a key's deadline; `applied` if it had one.
    pub async fn persist(&self, caller: &Caller, key: String) -> Result<KeyOutcome, ApiError> {
        self.key_write(caller, Command::key_write(key, KeyOp::Persist)).await
    }

    /// Gives a key a deadline `ttl_ms` from now if `when` allows (Redis `EXPIRE` with
    /// `NX`/`XX`/`GT`/`LT`); 0 removes it.
    pub async fn expire_in(
        &self,
        caller: &Caller,
        key: String,
        ttl_ms: u64,
        when: ExpireWhen,
    ) -> Result<KeyOutcome, ApiError> {
        self.key_write(caller, Command::key_write(key, KeyOp::Expire { ttl_ms, when })).await
    }

    /// An atomic batch (see `core::cache::ops::Batch`): at most `BATCH_OPS_MAX` compares and
    /// operations per branch, every key and value checked as for single writes. If an
    /// operation is refused, nothing of the batch applies and the error names its position.
    pub async fn batch(&self, caller: &Caller, b: Batch) -> Result<BatchOutcome, ApiError> {
        self.check_batch(&b)?;
        let written = self.write(caller, WriteOp::Batch(b)).await?;
        self.batch_result(written)
    }

    /// A Redis transaction (`core::cache::Command::Exec`): as [`Service::batch`], but an
    /// operation refused for its value is reported in its outcome and the others apply.
    pub async fn exec(&self, caller: &Caller, b: Batch) -> Result<BatchOutcome, ApiError> {
        self.check_batch(&b)?;
        let written = self.write(caller, WriteOp::Exec(b)).await?;
        self.batch_result(written)
    }

    /// The checks of a batch that do not depend on the cache: sizes, keys, values.
    pub fn check_batch(&self, b: &Batch) -> Result<(), ApiError> {
        for (what, n) in
            [("compares", b.compares.len()), ("then", b.then.len()), ("else", b.otherwise.len())]
        {
            if n > BATCH_OPS_MAX {
                return Err(ApiError::bad_request(
                    "batch_too_large",
                    format!("the batch has {n} {what}; the limit is {BATCH_OPS_MAX}"),
                ));
            }
        }
        for c in &b.compares {
            self.check_key(&c.key)?;
        }
        for w in b.then.iter().chain(&b.otherwise) {
            self.check_key_write(w)?;
        }
        Ok(())
    }

    /// The outcome of a batch, or why it was refused (naming the operation).
    pub fn batch_result(&self, written: Written) -> Result<BatchOutcome, ApiError> {
        match written.result {
            ApplyResult::Batch(outcome) => Ok(outcome),
            ApplyResult::BatchRefused { position, refusal } => {
                let e = match *refusal {
                    ApplyResult::KeyRefused(r) => refused(r),
                    ApplyResult::OutOfMemory { used_bytes, keys, limits } => {
                        self.out_of_memory(used_bytes, keys, limits)
                    }
                    other => unexpected(other),
                };
                Err(ApiError {
                    message: format!(
                        "operation {position} of the batch was refused, so none applied: {}",
                        e.message
                    ),
                    ..e
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// The checks of a write of one key that do not depend on the cache: key, value size.
    pub fn check_key_write(&self, w: &KeyWrite) -> Result<(), ApiError> {
        self.check_key(&w.key)?;
        let len = match &w.op {
            KeyOp::Append { bytes } | KeyOp::Splice { offset: None, bytes } => bytes.len(),
            KeyOp::Splice { offset: Some(o), bytes } => {
                usize::try_from(*o).unwrap_or(usize::MAX).saturating_add(bytes.len())
            }
            KeyOp::Rename { from } => {
                self.check_key(from)?;
                0
            }
            KeyOp::Set { value, .. } => StoredValue::decode(value.clone())
                .map_err(|e| ApiError::bad_request("bad_value", e.to_string()))?
                .payload_len(),
            _ => 0,
        };
        self.check_value_len(len)
    }

    /// Opens a watch of `filter` from revision `start`, or, without one, from after a
    /// linearizable read point: every write acknowledged before the call is older than what the
    /// watch delivers, so it misses nothing committed before it opened.
    pub async fn watch(
        &self,
        filter: Filter,
        start: Option<u64>,
    ) -> Result<crate::watch::Opened, ApiError> {
        match &filter {
            Filter::Key(k) => self.check_key(k)?,
            Filter::Prefix(p) if p.len() > self.limits.max_key_bytes() => self.check_key(p)?,
            Filter::Prefix(_) => {}
        }
        // Revision 0 means "from now", as in etcd.
        let start = start.filter(|&r| r > 0);
        if start.is_none() {
            // The ReadIndex barrier: once it returns, this node applied every write
            // acknowledged before the watch was asked for.
            self.read(Query::Get(String::new()), Consistency::Linearizable).await?;
        }
        let deadline = self.deadline();
        let (reply, rx) = oneshot::channel();
        self.send_input(Input::Watch { filter, start, reply }, deadline).await?;
        use crate::watch::OpenError;
        match self.await_reply(rx, deadline).await? {
            Ok(opened) => Ok(opened),
            Err(OpenError::Compacted { asked, oldest }) => Err(ApiError::new(
                StatusCode::GONE,
                "compacted",
                format!(
                    "revision {asked} is no longer in this node's history; the oldest revision \
                     it can replay from is {oldest} (read the keys again, then watch from there)"
                ),
            )),
            Err(OpenError::TooMany { max }) => Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_watchers",
                format!("this node has {max} watches open, its limit (max_watchers)"),
            )),
            Err(OpenError::Disabled) => {
                Err(ApiError::unavailable("watch_disabled", "this node does not serve watches"))
            }
        }
    }

    /// Counts a write the limits refused and describes it.
    fn out_of_memory(
        &self,
        used_bytes: u64,
        keys: u64,
        limits: simple_cache_core::cache::Limits,
    ) -> ApiError {
        self.metrics
            .writes_refused
            .get_or_create(&crate::metrics::Reason { reason: "out_of_memory" })
            .inc();
        out_of_memory(used_bytes, keys, limits)
    }

    /// Expires a key now; true if it was live.
    pub async fn expire(&self, caller: &Caller, key: String) -> Result<bool, ApiError> {
        self.check_key(&key)?;
        match self.write(caller, WriteOp::Expire { key }).await?.result {
            ApplyResult::Expire { existed } => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Removes every key (admin); returns how many were live.
    pub async fn reset(&self, caller: &Caller) -> Result<u64, ApiError> {
        self.check_admin(caller.authorization.as_deref())?;
        match self.write(caller, WriteOp::Reset).await?.result {
            ApplyResult::Reset { cleared } => Ok(cleared),
            other => Err(unexpected(other)),
        }
    }

    /// The checks of a write that do not depend on the cache, as a front end makes them before
    /// building `op`: a leader runs them again on a write a follower forwarded, against its own
    /// limits.
    pub fn check_write(&self, caller: &Caller, op: &WriteOp) -> Result<(), ApiError> {
        let stored = |value: &bytes::Bytes| {
            StoredValue::decode(value.clone())
                .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))
        };
        match op {
            WriteOp::Set { key, value, .. } => {
                self.check_key(key)?;
                self.check_value(&stored(value)?)
            }
            WriteOp::Del { key } | WriteOp::Expire { key } => self.check_key(key),
            WriteOp::Reset => self.check_admin(caller.authorization.as_deref()),
            WriteOp::Key(w) => self.check_key_write(w),
            WriteOp::Batch(b) | WriteOp::Exec(b) => self.check_batch(b),
        }
    }

    /// Runs a write a follower forwarded over the peer connection (see `transport::Links`):
    /// the checks a client's write gets here, then one proposal. The follower decides from the
    /// answer whether to retry elsewhere (`core::exec::ForwardFailure`); this node never
    /// forwards it again.
    pub async fn serve_forward(&self, f: simple_cache_core::peer_wire::Forward) -> ForwardAnswer {
        let started = TokioInstant::now();
        let caller = Caller { authorization: f.authorization, forwarded: true };
        let deadline = self.deadline().min(started + Duration::from_millis(f.timeout_ms));
        let refused = |e: ApiError| ForwardAnswer::Refused {
            status: e.status.as_u16(),
            code: e.code.into_owned(),
            message: e.message,
        };
        let answer = match self.check_write(&caller, &f.op) {
            Err(e) => refused(e),
            Ok(()) => match self.propose(f.op, deadline).await {
                Ok(Ok(w)) => ForwardAnswer::Written(w),
                Ok(Err(e)) => ForwardAnswer::Failed(e),
                Err(e) => refused(e),
            },
        };
        let status = match &answer {
            ForwardAnswer::Written(_) => 200,
            ForwardAnswer::Failed(e) => ApiError::from(e.clone()).status.as_u16(),
            ForwardAnswer::Refused { status, .. } => *status,
        };
        self.observe("peer", "forward", status, started);
        answer
    }

    /// Proposes `op` on this node once. The outer error: it could not be queued, or no answer
    /// came by the deadline (which leaves its outcome unknown).
    async fn propose(
        &self,
        op: WriteOp,
        deadline: TokioInstant,
    ) -> Result<Result<Written, WriteError>, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send_input(Input::Write { op, reply }, deadline).await?;
        self.await_reply(rx, deadline).await
    }

    /// Runs a forwarded write on this node (the leader, as the follower believed): the same
    /// checks as a write from a client, and never forwarded again.
    pub async fn handle_forwarded(
        &self,
        authorization: Option<String>,
        w: ForwardedWrite,
    ) -> Result<ForwardedResult, ApiError> {
        let caller = Caller { authorization, forwarded: true };
        let exec = matches!(w, ForwardedWrite::Exec { .. });
        Ok(match w {
            ForwardedWrite::Set { key, value, ttl_ms } => {
                let bytes = BASE64.decode(value.as_bytes()).map_err(|e| {
                    ApiError::bad_request("bad_body", format!("`value` is not base64: {e}"))
                })?;
                let value = StoredValue::decode(bytes.into())
                    .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
                ForwardedResult::Set { revision: self.set(&caller, key, &value, ttl_ms).await? }
            }
            ForwardedWrite::Del { key } => {
                let (existed, revision) = self.del(&caller, key).await?;
                ForwardedResult::Del { existed, revision }
            }
            ForwardedWrite::Batch { batch } | ForwardedWrite::Exec { batch } => {
                let b: Batch = decode_base64(&batch, "batch")?;
                for w in b.then.iter().chain(&b.otherwise) {
                    if let KeyOp::Set { value, .. } = &w.op {
                        StoredValue::decode(value.clone())
                            .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
                    }
                }
                let outcome = if exec {
                    self.exec(&caller, b).await?
                } else {
                    self.batch(&caller, b).await?
                };
                ForwardedResult::Batch { outcome: encode_base64(&outcome) }
            }
            ForwardedWrite::Key { write } => {
                let w: KeyWrite = decode_base64(&write, "write")?;
                if let KeyOp::Set { value, .. } = &w.op {
                    let value = StoredValue::decode(value.clone())
                        .map_err(|e| ApiError::bad_request("bad_body", e.to_string()))?;
                    self.check_value(&value)?;
                }
                let outcome = self.key_write(&caller, w).await?;
                ForwardedResult::Key { outcome: encode_base64(&outcome) }
            }
            ForwardedWrite::Expire { key } => {
                ForwardedResult::Expire { existed: self.expire(&caller, key).await? }
            }
            ForwardedWrite::Reset => {
                ForwardedResult::Reset { keys_cleared: self.reset(&caller).await? }
            }
        })
    }

    // ----- talking to the node loop -----

    pub async fn send_input(&self, input: Input, deadline: TokioInstant) -> Result<(), ApiError> {
        match tokio::time::timeout_at(deadline, self.tx.send(input)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(ApiError::stopping()),
            Err(_) => {
                Err(ApiError::unavailable("overloaded", "the node's input queue stayed full"))
            }
        }
    }

    pub async fn await_reply<T>(
        &self,
        rx: oneshot::Receiver<T>,
        deadline: TokioInstant,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(ApiError::stopping()),
            Err(_) => Err(ApiError::unavailable(
                "timeout",
                "the request was accepted but did not complete in time; a write may still take \
                 effect",
            )),
        }
    }

    /// Waits until a leader is known (and not handing over) or the deadline passes. The first
    /// few checks use the current status, since the answer that sent us here may predate it.
    pub async fn wait_for_leader(
        &self,
        deadline: TokioInstant,
        attempt: &mut u32,
    ) -> Result<(), ApiError> {
        let usable = |s: &Status| s.leader.is_some() && s.transfer_target.is_none();
        *attempt += 1;
        let mut rx = self.status.clone();
        if *attempt <= 3 && usable(&rx.borrow_and_update()) {
            return Ok(());
        }
        self.wait_status(&mut rx, deadline, usable)
            .await
            .map_err(|e| e.unwrap_or_else(|| self.no_leader()))
    }

    /// Waits for a usable leader other than `old`, after a forward to `old` failed in a way
    /// that shows the write did not take effect. On timeout, returns `why`.
    async fn wait_for_other_leader(
        &self,
        old: NodeId,
        deadline: TokioInstant,
        why: ApiError,
    ) -> Result<(), ApiError> {
        let usable = |s: &Status| s.leader.is_some_and(|l| l != old) && s.transfer_target.is_none();
        let mut rx = self.status.clone();
        if usable(&rx.borrow_and_update()) {
            return Ok(());
        }
        self.wait_status(&mut rx, deadline, usable).await.map_err(|e| e.unwrap_or(why))
    }

    /// Waits for a status that satisfies `ok`. Errors: `Some` if the node stopped, `None` on
    /// timeout.
    async fn wait_status(
        &self,
        rx: &mut watch::Receiver<Status>,
        deadline: TokioInstant,
        ok: impl Fn(&Status) -> bool,
    ) -> Result<(), Option<ApiError>> {
        loop {
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {
                    let s = rx.borrow_and_update();
                    if s.stopped {
                        return Err(Some(ApiError::stopping()));
                    }
                    if ok(&s) {
                        return Ok(());
                    }
                }
                Ok(Err(_)) => return Err(Some(ApiError::stopping())),
                Err(_) => return Err(None),
            }
        }
    }

    fn no_leader(&self) -> ApiError {
        let s = self.status.borrow();
        ApiError::unavailable(
            "no_leader",
            format!(
                "no leader was elected within {} ms (node {} is {:?} in term {}); the cluster \
                 may have lost its quorum",
                self.limits.request_timeout_ms(),
                s.id,
                s.role,
                s.term
            ),
        )
    }

    /// Proposes a write, forwarding it to the leader or waiting for one as needed.
    pub async fn write(&self, caller: &Caller, op: WriteOp) -> Result<Written, ApiError> {
        let deadline = self.deadline();
        let mut attempt = 0;
        loop {
            // A follower that knows the leader forwards at once, rather than propose here to
            // learn that it does not lead.
            // One borrow: a second one while the first is held deadlocks as soon as the node
            // loop waits to publish in between (the lock prefers writers). The benchmark's
            // preload hit that within 40,000 PUTs.
            let leader = {
                let s = self.status.borrow();
                s.leader.filter(|&l| l != s.id)
            };
            let (decision, e) = match leader {
                Some(l) if !caller.forwarded => (AfterWriteError::Forward(l), None),
                _ => match self.propose(op.clone(), deadline).await? {
                    Ok(r) => return Ok(r),
                    // The same decision the simulator's service makes (`core::exec`).
                    Err(e) => (AfterWriteError::of(&e, self.me(), caller.forwarded), Some(e)),
                },
            };
            match decision {
                AfterWriteError::Forward(l) => {
                    match self.forward_write(caller, &op, l, deadline).await {
                        Ok(r) => return Ok(r),
                        Err(ForwardFailure::Retry(why)) => {
                            self.wait_for_other_leader(l, deadline, why).await?
                        }
                        Err(ForwardFailure::Fail(e)) => return Err(e),
                    }
                }
                AfterWriteError::WaitForLeader => {
                    self.wait_for_leader(deadline, &mut attempt).await?
                }
                AfterWriteError::Fail => {
                    let e = e.expect("only a proposal's error fails a write");
                    return Err(failed_write(caller, e));
                }
            }
        }
    }

    /// Sends a write to `leader` over the peer connection, or, if the leader runs a version
    /// without the peer protocol, to its client listener.
    async fn forward_write(
        &self,
        caller: &Caller,
        op: &WriteOp,
        leader: NodeId,
        deadline: TokioInstant,
    ) -> Result<Written, ForwardFailure> {
        let timeout = deadline.saturating_duration_since(TokioInstant::now());
        let mut wait =
            self.links.forward(leader, op.clone(), caller.authorization.clone(), timeout);
        let reply = match tokio::time::timeout_at(deadline, wait.reply()).await {
            Ok(Some(r)) => r,
            Ok(None) => return Err(ForwardFailure::Fail(ApiError::stopping())),
            Err(_) => {
                return Err(ForwardFailure::Fail(ApiError::unavailable(
                    "timeout",
                    format!(
                        "the leader (node {leader}) did not answer in time; the write may still \
                         take effect"
                    ),
                )));
            }
        };
        let failed = |what: String| {
            ApiError::unavailable(
                "forward_failed",
                format!("forwarding the write to the leader (node {leader}) {what}"),
            )
        };
        match reply {
            ForwardReply::Answer(ForwardAnswer::Written(w)) => Ok(w),
            ForwardReply::Answer(ForwardAnswer::Failed(e)) => {
                let why = ApiError::from(e.clone());
                let why = ApiError {
                    message: format!("the leader (node {leader}) answered: {}", why.message),
                    ..why
                };
                match simple_cache_core::exec::ForwardFailure::of(&e) {
                    simple_cache_core::exec::ForwardFailure::Retry => {
                        Err(ForwardFailure::Retry(why))
                    }
                    _ => Err(ForwardFailure::Fail(why)),
                }
            }
            ForwardReply::Answer(ForwardAnswer::Refused { status, code, message }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                let message = format!("the leader (node {leader}) answered: {message}");
                Err(ForwardFailure::Fail(ApiError { status, code: Cow::Owned(code), message }))
            }
            // Never sent: it took no effect.
            ForwardReply::NotSent(why) => {
                Err(ForwardFailure::Retry(failed(format!("failed: {why}"))))
            }
            ForwardReply::MaybeSent(why) => Err(ForwardFailure::Fail(failed(format!(
                "failed, and the write may or may not have taken effect: {why}"
            )))),
            ForwardReply::Http => self.forward_write_http(caller, op, leader, deadline).await,
        }
    }

    /// Sends a write to `leader`'s client listener (`POST /internal/v1/write`, the way of 0.1,
    /// for a leader of that version) and maps its answer back.
    async fn forward_write_http(
        &self,
        caller: &Caller,
        op: &WriteOp,
        leader: NodeId,
        deadline: TokioInstant,
    ) -> Result<Written, ForwardFailure> {
        let addr = self.status.borrow().client_addr(leader);
        let Some(addr) = addr else {
            return Err(ForwardFailure::Fail(ApiError::unavailable(
                "leader_address_unknown",
                format!(
                    "this node is not the leader (node {leader} is) and does not know the \
                     leader's client address (list `http_addr` for every peer)"
                ),
            )));
        };
        let body = match op.clone() {
            WriteOp::Set { key, value, ttl_ms } => {
                ForwardedWrite::Set { key, value: BASE64.encode(&value), ttl_ms }
            }
            WriteOp::Del { key } => ForwardedWrite::Del { key },
            WriteOp::Expire { key } => ForwardedWrite::Expire { key },
            WriteOp::Reset => ForwardedWrite::Reset,
            WriteOp::Key(w) => ForwardedWrite::Key { write: encode_base64(&w) },
            WriteOp::Batch(b) => ForwardedWrite::Batch { batch: encode_base64(&b) },
            WriteOp::Exec(b) => ForwardedWrite::Exec { batch: encode_base64(&b) },
        };
        let mut req = self
            .client
            .post(format!("{}://{addr}{FORWARD_PATH}", self.tls.client_scheme()))
            .header(FORWARDED_HEADER, "1")
            .timeout(deadline.saturating_duration_since(TokioInstant::now()))
            .json(&body);
        if let Some(a) = &caller.authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let failed = |what: String| {
            ApiError::unavailable(
                "forward_failed",
                format!("forwarding the write to the leader (node {leader} at {addr}) {what}"),
            )
        };
        let resp = match req.send().await {
            Ok(r) => r,
            // Not connected: the request never reached the leader, so it took no effect.
            Err(e) if e.is_connect() => {
                let e = crate::tls::error_chain(&e);
                return Err(ForwardFailure::Retry(failed(format!("failed: {e}"))));
            }
            Err(e) if e.is_timeout() => {
                return Err(ForwardFailure::Fail(ApiError::unavailable(
                    "timeout",
                    format!(
                        "the leader (node {leader}) did not answer in time; the write may still \
                         take effect"
                    ),
                )));
            }
            Err(e) => {
                return Err(ForwardFailure::Fail(failed(format!(
                    "failed, and the write may or may not have taken effect: {}",
                    crate::tls::error_chain(&e)
                ))));
            }
        };
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ForwardFailure::Fail(failed(format!("got no complete answer: {e}"))))?;
        if status.is_success() {
            let r: ForwardedResult = serde_json::from_slice(&bytes).map_err(|e| {
                ForwardFailure::Fail(failed(format!("got an answer that does not parse: {e}")))
            })?;
            let (revision, result) = match r {
                ForwardedResult::Set { revision } => (revision, ApplyResult::Set),
                ForwardedResult::Del { existed, revision } => {
                    (revision, ApplyResult::Del { existed })
                }
                ForwardedResult::Expire { existed } => (0, ApplyResult::Expire { existed }),
                ForwardedResult::Reset { keys_cleared } => {
                    (0, ApplyResult::Reset { cleared: keys_cleared })
                }
                ForwardedResult::Key { outcome } => {
                    let outcome: KeyOutcome = decode_base64(&outcome, "outcome")
                        .map_err(|e| ForwardFailure::Fail(failed(e.message)))?;
                    (outcome.revision, ApplyResult::Key(outcome))
                }
                ForwardedResult::Batch { outcome } => {
                    let outcome: BatchOutcome = decode_base64(&outcome, "outcome")
                        .map_err(|e| ForwardFailure::Fail(failed(e.message)))?;
                    (outcome.revision, ApplyResult::Batch(outcome))
                }
            };
            return Ok(Written { revision, result });
        }
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = v["code"].as_str().unwrap_or("forward_failed").to_string();
        let message = v["error"].as_str().map_or_else(
            || format!("the leader answered {status}"),
            |m| format!("the leader (node {leader}) answered: {m}"),
        );
        let e = ApiError { status, code: Cow::Owned(code), message };
        // Answers that prove nothing took effect: the receiver was not (or no longer) the
        // leader, found none, could not queue the write, or its entry lost to a new leader's.
        // Anything else (a timeout, a node shutting down with the write in flight, an unknown
        // outcome) may still take effect and is not retried.
        if matches!(
            e.code.as_ref(),
            "not_leader" | "transfer_in_progress" | "no_leader" | "overloaded" | "superseded"
        ) {
            Err(ForwardFailure::Retry(e))
        } else {
            Err(ForwardFailure::Fail(e))
        }
    }

    /// Runs queries a client pipelined, all at one point: one message to the node loop and
    /// one ReadIndex round for all of them.
    pub async fn read_many(
        &self,
        queries: Vec<Query>,
        c: Consistency,
    ) -> Result<Vec<QueryResult>, ApiError> {
        let n = queries.len();
        match self.read(Query::Batch(queries), c).await? {
            QueryResult::Batch(answers) if answers.len() == n => Ok(answers),
            other => Err(ApiError::internal(format!("unexpected answer to a batch: {other:?}"))),
        }
    }

    /// Runs a query: linearizable through ReadIndex (waiting for a leader if needed), or stale.
    pub async fn read(&self, query: Query, c: Consistency) -> Result<QueryResult, ApiError> {
        let deadline = self.deadline();
        let stale = c == Consistency::Stale;
        let mut attempt = 0;
        loop {
            let (reply, rx) = oneshot::channel();
            self.send_input(Input::Read { query: query.clone(), stale, reply }, deadline).await?;
            match self.await_reply(rx, deadline).await? {
                Ok(r) => return Ok(r),
                // Nothing was read: wait for a leader and read again.
                Err(ReadError::NoLeader | ReadError::Aborted) => {
                    self.wait_for_leader(deadline, &mut attempt).await?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A write the cache's limits refused (`noeviction`, or nothing eligible to evict): 507, and
/// RESOURCE_EXHAUSTED over gRPC. Deletes, expiry and reset always work.
fn out_of_memory(used_bytes: u64, keys: u64, limits: simple_cache_core::cache::Limits) -> ApiError {
    let bound = match (limits.max_memory_bytes, limits.max_keys) {
        (0, k) => format!("max_keys {k}"),
        (m, 0) => format!("max_memory_bytes {m}"),
        (m, k) => format!("max_memory_bytes {m}, max_keys {k}"),
    };
    ApiError::new(
        StatusCode::INSUFFICIENT_STORAGE,
        "out_of_memory",
        format!(
            "the write would pass the cache's limits ({bound}; {used_bytes} bytes and {keys} keys \
             used) and eviction_policy {} cannot make room; delete keys or raise the limits",
            limits.policy.name()
        ),
    )
}

fn unexpected(r: ApplyResult) -> ApiError {
    ApiError::internal(format!("unexpected apply result {r:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The forwarded-write wire format is tagged JSON and round-trips.
    #[test]
    fn forwarded_write_wire_format() {
        let w = ForwardedWrite::Set { key: "k".into(), value: "AAE=".into(), ttl_ms: Some(5) };
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(text, r#"{"op":"set","key":"k","value":"AAE=","ttl_ms":5}"#);
        assert_eq!(serde_json::from_str::<ForwardedWrite>(&text).unwrap(), w);
        assert_eq!(serde_json::to_string(&ForwardedWrite::Reset).unwrap(), r#"{"op":"reset"}"#);
        let r = ForwardedResult::Reset { keys_cleared: 3 };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"result":"reset","keys_cleared":3}"#);
        assert_eq!(serde_json::from_str::<ForwardedResult>(&text).unwrap(), r);
    }

    // Durations: zero means no expiry, sub-millisecond rounds up, garbage is bad_duration.
    #[test]
    fn durations_become_ttls() {
        assert_eq!(Service::ttl_ms_from_duration("1m30s").unwrap(), Some(90_000));
        assert_eq!(Service::ttl_ms_from_duration("0").unwrap(), None);
        assert_eq!(Service::ttl_ms_from_duration("1ns").unwrap(), Some(1));
        for bad in ["", "5", "-1s", "1d", "soon"] {
            assert_eq!(Service::ttl_ms_from_duration(bad).unwrap_err().code, "bad_duration");
        }
    }
}
