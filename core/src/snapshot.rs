//! The snapshot lifecycle of a node, in one place.
//!
//! A node's own snapshot moves through explicit stages ([`Stage`]):
//!
//! ```text
//!            due by the thresholds, or wanted by Raft for a follower
//!   Idle ─────────────────────────────────────────────────────────▶ Encoding { index }
//!    ▲                                                                   │ snapshot_encoded
//!    │  superseded (a leader's snapshot is newer) or the log's own       │
//!    ├───────────────────────────────────────────────────────────────────┤
//!    │  compacted: the Raft log is cut at `index`, Raft holds the data   ▼
//!    └──────────────────────────────────────────────────────────── Durable { index, data }
//! ```
//!
//! - **Encoding**: one [`SnapshotJob`] is out with the driver, which encodes it (on another
//!   thread if it likes) and, if it is new, writes its file durably, then hands it back with
//!   `CacheNode::snapshot_encoded` — the one input. The job in `Applied` is the one output.
//! - **Durable**: the file exists; a leader waits (for at most `snapshot_threshold` more
//!   entries) until the followers it hears from have replicated up to `index` before it cuts
//!   the log, so a follower a few entries behind gets those entries and not the whole snapshot
//!   (etcd keeps a tail of entries for the same reason). A follower, a node that stopped
//!   leading, or a leader that a follower's need for a snapshot is waiting on compacts at once.
//! - **Compacted** is `Idle` again, with the log's snapshot at `index`.
//! - **Wanted**: Raft dropped the data it held for followers (a cache's snapshot is as large as
//!   the cache) and a follower needs it now ([`RaftNode::wants_snapshot`]): a durable snapshot
//!   is compacted to at once; otherwise a job starts at the applied index, or, if nothing was
//!   applied since, re-encodes the log's current snapshot (`new: false`: its file exists).
//!
//! The index of the latest snapshot is held once: the stage's while one is in progress, else
//! the Raft log's ([`Snapshots::latest_index`]). A snapshot installed from the leader moves
//! the log past any durable one (dropped) and makes the job being encoded, if any, superseded.
//! Raft's side — the data held for followers, sending it in chunks, receiving one — stays in
//! `raft::snapshot`, reached only from here.

use crate::cache::{Cache, SnapshotSource};
use crate::codec::{self, DecodeError};
use crate::message::{Snapshot, SnapshotMeta};
use crate::raft::RaftNode;
use crate::types::{Instant, LogIndex};
use bytes::Bytes;

/// The cache at `meta.last_index`, detached from the node: encoding a large cache takes
/// milliseconds per 100k keys, so the driver does it off its loop. One job is out at a time.
#[derive(Clone, Debug)]
pub struct SnapshotJob {
    pub meta: SnapshotMeta,
    source: SnapshotSource,
    new: bool,
    keep_data: bool,
}

/// A job the driver finished: what it hands back with `CacheNode::snapshot_encoded`.
#[derive(Clone, Debug)]
pub struct EncodedSnapshot {
    pub meta: SnapshotMeta,
    /// The length of the encoded data.
    pub len: u64,
    /// The encoded data, if the job keeps it ([`SnapshotJob::keeps_data`]); the driver may
    /// hand it back in any case.
    pub data: Option<Bytes>,
}

impl EncodedSnapshot {
    /// A snapshot encoded in memory, data included.
    pub fn with_data(snapshot: Snapshot) -> EncodedSnapshot {
        let len = snapshot.data.len() as u64;
        EncodedSnapshot { meta: snapshot.meta, len, data: Some(snapshot.data) }
    }
}

impl SnapshotJob {
    /// A job over a cache's current state, detached from the cache: the stored entries are
    /// shared and their set is copy-on-write in chunks, so detaching costs a pointer per chunk
    /// of keys, not a copy of them, and the driver encodes it off its loop.
    /// `keep_data`: the node needs the encoded data back (a follower is waiting for it), not
    /// only the file.
    pub fn new(meta: SnapshotMeta, cache: &Cache, new: bool, keep_data: bool) -> SnapshotJob {
        SnapshotJob { meta, source: cache.snapshot_source(), new, keep_data: keep_data || !new }
    }

    /// The snapshot, encoded in memory.
    pub fn encode(&self) -> Snapshot {
        Snapshot { meta: self.meta.clone(), data: self.source.encode() }
    }

    /// The length of the encoded data, counted without producing it.
    pub fn encoded_len(&self) -> u64 {
        self.source.encoded_len()
    }

    /// Writes the encoded data ([`SnapshotJob::encode`]'s `data`) to `out` as it is produced,
    /// without a copy of it in memory.
    pub fn write_data(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.source.write_to(out)
    }

    /// Whether the node needs the encoded data back in [`EncodedSnapshot::data`]: a follower is
    /// waiting for this snapshot, or the job re-encodes the current snapshot for one. Otherwise
    /// the driver may write the data straight to the file and hand back only its length: a
    /// cache's snapshot is as large as the cache, and holding it would double the node's memory
    /// for as long as the encoding takes.
    pub fn keeps_data(&self) -> bool {
        self.keep_data
    }
    /// A snapshot past the log's current one, which the driver persists if
    /// `CacheNode::snapshot_encoded` says so. `false`: the current snapshot encoded again for a
    /// follower (its file already exists; never write it again).
    pub fn is_new(&self) -> bool {
        self.new
    }
}

/// Writes what `codec::encode(&Snapshot { meta, data })` returns, the data coming from
/// `write_data`, which must write exactly `len` bytes: a snapshot goes to its file without a
/// copy of it in memory.
pub fn write_encoded(
    meta: &SnapshotMeta,
    len: u64,
    out: &mut impl std::io::Write,
    write_data: impl FnOnce(&mut Counted<&mut dyn std::io::Write>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // `Snapshot` encodes as the version byte, the metadata, then the data as a length-prefixed
    // byte string (the length as postcard's varint, the same as a `u64`'s).
    codec::write_as(codec::WIRE_VERSION, meta, out)?;
    let prefix = codec::encode(&len);
    out.write_all(&prefix[1..])?;
    let mut counted = Counted { inner: out as &mut dyn std::io::Write, count: 0 };
    write_data(&mut counted)?;
    if counted.count != len {
        return Err(std::io::Error::other(format!(
            "snapshot data was {} bytes, announced {len}",
            counted.count
        )));
    }
    Ok(())
}

/// Decodes what [`write_encoded`] (or `codec::encode` of a [`Snapshot`]) wrote, without
/// copying the data: it is a slice of `bytes`.
pub fn decode_encoded(bytes: Bytes) -> Result<Snapshot, DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != codec::WIRE_VERSION {
        return Err(DecodeError::Version { found: version });
    }
    let malformed = |e: postcard::Error| DecodeError::Malformed(e.to_string());
    let (meta, rest) = postcard::take_from_bytes::<SnapshotMeta>(body).map_err(malformed)?;
    let (len, rest) = postcard::take_from_bytes::<u64>(rest).map_err(malformed)?;
    if rest.len() as u64 != len {
        return Err(DecodeError::Malformed(format!(
            "snapshot data announced as {len} bytes, {} present",
            rest.len()
        )));
    }
    let start = bytes.len() - rest.len();
    Ok(Snapshot { meta, data: bytes.slice(start..) })
}

/// A writer that counts what goes through it.
pub struct Counted<W> {
    inner: W,
    count: u64,
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the node's own snapshot is (see the module documentation).
#[derive(Debug)]
enum Stage {
    Idle,
    /// A job is out with the driver.
    Encoding {
        index: LogIndex,
    },
    /// Its file is durable; the Raft log is not cut yet at `index`. `data` if the driver
    /// handed it back.
    Durable {
        index: LogIndex,
        data: Option<Bytes>,
    },
}

/// When to take a snapshot (`NodeConfig::snapshot_threshold` and `snapshot_log_percent`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Thresholds {
    pub entries: u64,
    pub log_percent: u64,
}

/// The snapshot lifecycle of one node (see the module documentation).
#[derive(Debug)]
pub(crate) struct Snapshots {
    stage: Stage,
    thresholds: Thresholds,
    /// Size of the data of the latest snapshot.
    bytes: u64,
    /// Payload bytes of the entries applied after the latest snapshot.
    log_bytes: u64,
}

impl Snapshots {
    /// After a restart, with the snapshot the log was recovered from.
    pub(crate) fn new(thresholds: Thresholds, persisted: Option<&Snapshot>) -> Snapshots {
        let bytes = persisted.map_or(0, |s| s.data.len() as u64);
        Snapshots { stage: Stage::Idle, thresholds, bytes, log_bytes: 0 }
    }

    /// The index of the latest snapshot: in progress, or else the log's.
    pub(crate) fn latest_index(&self, raft: &RaftNode) -> LogIndex {
        let log = raft.log().snapshot_meta().last_index;
        match &self.stage {
            Stage::Idle => log,
            Stage::Encoding { index, .. } | Stage::Durable { index, .. } => (*index).max(log),
        }
    }

    /// A snapshot from the leader was installed into the cache (the log is already past it).
    pub(crate) fn installed(&mut self, snapshot: &Snapshot) {
        self.bytes = snapshot.data.len() as u64;
        self.log_bytes = 0;
        if let Stage::Durable { .. } = self.stage {
            self.stage = Stage::Idle;
        }
    }

    /// An entry with `bytes` of payload was applied.
    pub(crate) fn applied(&mut self, bytes: usize) {
        self.log_bytes += bytes as u64;
    }

    /// After a `Ready` was applied: compacts to a durable snapshot when it may, hands out a job
    /// when one is due or wanted and none is out, and lets Raft drop data no follower needs.
    pub(crate) fn after_apply(
        &mut self,
        raft: &mut RaftNode,
        cache: &Cache,
        now: Instant,
    ) -> Option<SnapshotJob> {
        self.compact_when_caught_up(raft, now);
        let job = self.start_job(raft, cache);
        raft.release_snapshot_data();
        job
    }

    fn start_job(&mut self, raft: &mut RaftNode, cache: &Cache) -> Option<SnapshotJob> {
        if !matches!(self.stage, Stage::Idle) {
            return None;
        }
        let applied = raft.last_applied();
        let wanted = raft.wants_snapshot();
        if !wanted && !self.due(raft, applied) {
            return None;
        }
        let log_snapshot = raft.log().snapshot_meta();
        let (meta, new) = match raft.snapshot_meta_at(applied) {
            Some(meta) => {
                self.log_bytes = 0;
                (meta, true)
            }
            None if wanted && applied == log_snapshot.last_index => (log_snapshot.clone(), false),
            None => return None,
        };
        self.stage = Stage::Encoding { index: meta.last_index };
        Some(SnapshotJob::new(meta, cache, new, wanted))
    }

    /// The driver encoded the job (and made its file durable if it was new). Returns whether
    /// the driver must compact the WAL to it: not if it only gave Raft back the data of its
    /// current snapshot, or if a snapshot from the leader superseded it.
    pub(crate) fn encoded(
        &mut self,
        raft: &mut RaftNode,
        snapshot: EncodedSnapshot,
        now: Instant,
    ) -> bool {
        let stage = std::mem::replace(&mut self.stage, Stage::Idle);
        assert!(
            matches!(stage, Stage::Encoding { index } if index == snapshot.meta.last_index),
            "an encoded snapshot is the job that is out ({stage:?}, got {})",
            snapshot.meta.last_index
        );
        let index = snapshot.meta.last_index;
        let log_snapshot = raft.log().snapshot_meta().last_index;
        if index <= log_snapshot {
            if let Some(data) = snapshot.data
                && index == log_snapshot
                && raft.wants_snapshot()
            {
                let _ = raft.provide_snapshot_data(Snapshot { meta: snapshot.meta, data });
            }
            return false;
        }
        self.bytes = snapshot.len;
        self.stage = Stage::Durable { index, data: snapshot.data };
        self.compact_when_caught_up(raft, now);
        raft.release_snapshot_data();
        true
    }

    /// Cuts the Raft log at a durable snapshot, unless a leader still has followers to bring
    /// up to it (see the module documentation).
    pub(crate) fn compact_when_caught_up(&mut self, raft: &mut RaftNode, now: Instant) {
        let Stage::Durable { index, .. } = self.stage else { return };
        if raft.is_leader()
            && !raft.wants_snapshot()
            && raft.last_applied().0 < index.0.saturating_add(self.thresholds.entries)
        {
            let recent_ms = raft.config().election_timeout_ms;
            let lagging = raft.peers().into_iter().any(|p| {
                p.id != raft.id()
                    && p.match_index < index
                    && p.last_contact.is_some_and(|t| now.saturating_since(t) < recent_ms)
            });
            if lagging {
                return;
            }
        }
        let Stage::Durable { index, data } = std::mem::replace(&mut self.stage, Stage::Idle) else {
            unreachable!("matched above")
        };
        // Already compacted further (a snapshot from a leader): nothing to do.
        let _ = raft.compact(index, data);
    }

    /// Whether to snapshot at `applied` (see `NodeConfig::snapshot_threshold`). Both limits are
    /// stretched by 0 to 3/8 depending on the node id, so replicas, which apply the same log,
    /// do not all pause to snapshot at the same index: a commit needs only a majority.
    fn due(&self, raft: &RaftNode, applied: LogIndex) -> bool {
        let stretch = 8 + raft.id().0 % 4;
        let entries = self.thresholds.entries.saturating_mul(stretch) / 8;
        let percent = self.thresholds.log_percent.saturating_mul(stretch) / 8;
        applied.0 >= self.latest_index(raft).0.saturating_add(entries)
            && self.log_bytes.saturating_mul(100) >= self.bytes.saturating_mul(percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Command, Proposal};

    // A job gives the cache's snapshot bytes as of the moment it was made, whatever was
    // applied after.
    #[test]
    fn a_job_is_the_state_when_it_was_made() {
        let job_for = |value_bytes: usize| {
            let mut cache = Cache::new();
            for i in 0..10 {
                let p = Proposal {
                    time: Instant(1),
                    command: Command::Set {
                        key: format!("k{i}"),
                        value: Bytes::from("v".repeat(value_bytes)),
                        expires_at: None,
                    },
                };
                cache.apply(&p);
            }
            let job = SnapshotJob::new(SnapshotMeta::default(), &cache, true, false);
            let expected = cache.snapshot();
            cache.apply(&Proposal { time: Instant(2), command: Command::Reset });
            assert_eq!(job.encode().data, expected, "the state when the job was made");
            job
        };
        job_for(100);
        job_for(4096);
    }

    // Streaming a job's snapshot writes exactly the bytes of encoding it in memory, whatever
    // the values' sizes, and decoding them back does not copy the data.
    #[test]
    fn a_streamed_snapshot_is_the_encoded_one() {
        for value_bytes in [0, 100, 4096] {
            let mut cache = Cache::new();
            for i in 0..50 {
                let value = Bytes::from("v".repeat(value_bytes));
                let key = format!("k{i}");
                let command = Command::Set { key, value, expires_at: Some(Instant(9)) };
                cache.apply(&Proposal { time: Instant(1), command });
            }
            let meta = SnapshotMeta { last_index: LogIndex(77), ..SnapshotMeta::default() };
            let job = SnapshotJob::new(meta, &cache, true, false);
            let in_memory = job.encode();
            assert_eq!(job.encoded_len(), in_memory.data.len() as u64);
            let mut streamed = Vec::new();
            write_encoded(&job.meta, job.encoded_len(), &mut streamed, |w| job.write_data(w))
                .unwrap();
            assert_eq!(streamed, codec::encode(&in_memory), "values of {value_bytes} bytes");
            let bytes = Bytes::from(streamed);
            let decoded = decode_encoded(bytes.clone()).unwrap();
            assert_eq!(decoded, in_memory);
            assert_eq!(decoded.data.as_ptr(), bytes[bytes.len() - decoded.data.len()..].as_ptr());
            // A wrong announced length is an error, not a file that does not decode later.
            let short = write_encoded(&job.meta, job.encoded_len() + 1, &mut Vec::new(), |w| {
                job.write_data(w)
            });
            assert!(short.is_err());
            // Truncated or extended input is refused.
            assert!(decode_encoded(bytes.slice(..bytes.len() - 1)).is_err());
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert!(decode_encoded(Bytes::from(longer)).is_err());
        }
    }

    // A job keeps its data for the node only when asked or when it re-encodes the current
    // snapshot (a follower waits for it); a new snapshot that nobody waits for goes to its file.
    #[test]
    fn only_wanted_jobs_keep_their_data() {
        let cache = Cache::new();
        let keeps = |new, wanted| SnapshotJob::new(SnapshotMeta::default(), &cache, new, wanted);
        assert!(!keeps(true, false).keeps_data());
        assert!(keeps(true, true).keeps_data());
        assert!(keeps(false, false).keeps_data());
    }
}
