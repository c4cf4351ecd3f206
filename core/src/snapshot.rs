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
use crate::message::{Snapshot, SnapshotMeta};
use crate::raft::RaftNode;
use crate::types::{Instant, LogIndex};
use bytes::Bytes;

/// The cache at `meta.last_index`, detached from the node: encoding a large cache takes
/// milliseconds per 100k keys, so the driver does it off its loop. One job is out at a time.
#[derive(Clone, Debug)]
pub struct SnapshotJob {
    pub meta: SnapshotMeta,
    source: JobSource,
    new: bool,
}

/// What a job encodes from. Detaching the map costs an allocation per key and fragments the
/// heap (measured: resident memory per key 385 -> 552 bytes with 100-byte values), encoding
/// costs a copy per byte; so a cache of small items is encoded at once, on the caller's thread
/// (6-12 ms per 100k keys of 100 bytes, less than detaching them: 14 ms), and only a cache of
/// large items, where copying the bytes is what takes long, is detached and encoded later.
#[derive(Clone, Debug)]
enum JobSource {
    Encoded(Bytes),
    Detached(SnapshotSource),
}

/// The average item size (key, value and overhead, in [`Cache::approx_bytes`]) from which a
/// snapshot is detached rather than encoded at once.
const DETACH_ITEM_BYTES_MIN: usize = 1024;

impl SnapshotJob {
    /// A job over a cache's current state: encoded at once if its items are small on average,
    /// else detached (see [`JobSource`]).
    pub fn new(meta: SnapshotMeta, cache: &Cache, new: bool) -> SnapshotJob {
        let large = cache.approx_bytes() >= cache.len().saturating_mul(DETACH_ITEM_BYTES_MIN);
        let source = if large && !cache.is_empty() {
            JobSource::Detached(cache.snapshot_source())
        } else {
            JobSource::Encoded(cache.snapshot())
        };
        SnapshotJob { meta, source, new }
    }
    pub fn encode(&self) -> Snapshot {
        let data = match &self.source {
            JobSource::Encoded(data) => data.clone(),
            JobSource::Detached(source) => source.encode(),
        };
        Snapshot { meta: self.meta.clone(), data }
    }
    /// A snapshot past the log's current one, which the driver persists if
    /// `CacheNode::snapshot_encoded` says so. `false`: the current snapshot encoded again for a
    /// follower (its file already exists; never write it again).
    pub fn is_new(&self) -> bool {
        self.new
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
    /// Its file is durable; the Raft log is not cut at `index` yet.
    Durable {
        index: LogIndex,
        data: Bytes,
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
        Some(SnapshotJob::new(meta, cache, new))
    }

    /// The driver encoded the job (and made its file durable if it was new). Returns the
    /// snapshot if the driver must compact the WAL to it; `None` if it only gave Raft back the
    /// data of its current snapshot, or a snapshot from the leader superseded it.
    pub(crate) fn encoded(
        &mut self,
        raft: &mut RaftNode,
        snapshot: Snapshot,
        now: Instant,
    ) -> Option<Snapshot> {
        let stage = std::mem::replace(&mut self.stage, Stage::Idle);
        assert!(
            matches!(stage, Stage::Encoding { index } if index == snapshot.meta.last_index),
            "an encoded snapshot is the job that is out ({stage:?}, got {})",
            snapshot.meta.last_index
        );
        let index = snapshot.meta.last_index;
        let log_snapshot = raft.log().snapshot_meta().last_index;
        if index <= log_snapshot {
            if index == log_snapshot && raft.wants_snapshot() {
                let _ = raft.provide_snapshot_data(snapshot);
            }
            return None;
        }
        self.bytes = snapshot.data.len() as u64;
        self.stage = Stage::Durable { index, data: snapshot.data.clone() };
        self.compact_when_caught_up(raft, now);
        raft.release_snapshot_data();
        Some(snapshot)
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

    // Small items are encoded at once; large ones are detached and encoded later; both give
    // the cache's snapshot bytes as of the moment the job was made.
    #[test]
    fn snapshot_jobs_detach_only_large_items() {
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
            let job = SnapshotJob::new(SnapshotMeta::default(), &cache, true);
            let expected = cache.snapshot();
            cache.apply(&Proposal { time: Instant(2), command: Command::Reset });
            assert_eq!(job.encode().data, expected, "the state when the job was made");
            job
        };
        assert!(matches!(job_for(100).source, JobSource::Encoded(_)));
        assert!(matches!(job_for(4096).source, JobSource::Detached(_)));
    }
}
