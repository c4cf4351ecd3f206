//! A simulated disk for one node: WAL segment files and snapshot files as byte vectors.
//!
//! madsim does not model durability, so this is ours. Bytes appended to a file are *volatile*
//! until [`SimDisk::sync`]; [`SimDisk::crash`] keeps every synced byte and, of the unsynced ones,
//! a random prefix (possibly none, possibly all), optionally followed by garbage: a torn write.
//! Storage never changes synced bytes, the crash model of `core::wal`.
//!
//! The disk writes exactly the bytes the server writes (`core::wal` framing, the append order and
//! the compaction scheme documented on that module) and [`SimDisk::recover`] reads them back with
//! `core::wal::recover`, so recovery in the simulation is the code that ships. Snapshot data lives
//! in separate files, keyed by the snapshot's `(last_index, last_term)`, written and synced before
//! the WAL record or compacted segment that refers to them.
//!
//! Directory operations (creating a segment with its header, deleting segments) are durable at
//! once, as if the driver fsynced the directory right after each, which the server does.
//!
//! Failing fsyncs: [`SimDisk::sync_failed`] is what a driver that ignores an fsync error leaves
//! behind (PostgreSQL's "fsyncgate"): the kernel dropped the dirty pages it could not write, so
//! the bytes the driver believes durable are zeros after the next crash. A correct driver crashes
//! instead (the node exits; [`SimDisk::crash`] then loses the unsynced bytes as usual).
//!
//! Not simulated: bit flips in synced data (core's WAL tests flip every bit of a log and require
//! refusal naming file and offset, or truncation of only the last record), reordered persistence
//! of unsynced pages, lost directory entries (see SIMULATION.md).

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use simple_cache_core::exec::Storage;
use simple_cache_core::message::{Entry, HardState, Snapshot, SnapshotMeta};
use simple_cache_core::raft::{Persisted, Ready};
use simple_cache_core::snapshot::SnapshotJob;
use simple_cache_core::types::{LogIndex, Term};
use simple_cache_core::wal::{self, SEGMENT_HEADER_BYTES, WalRecord};
use std::collections::BTreeMap;

/// One file: its bytes and how many of them are durable.
#[derive(Clone, Debug, Default)]
struct File {
    data: Vec<u8>,
    synced_len: usize,
}

impl File {
    fn durable(data: Vec<u8>) -> File {
        let synced_len = data.len();
        File { data, synced_len }
    }
}

/// What the WAL holds, as written so far (synced or not): needed to write a compacted segment.
#[derive(Clone, Debug, Default)]
struct Mirror {
    hard_state: HardState,
    incarnation: u64,
    snapshot: Option<SnapshotMeta>,
    entries: Vec<Entry>,
}

/// What a crash did to the disk, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CrashDamage {
    /// Unsynced bytes that were lost.
    pub bytes_lost: usize,
    /// Garbage bytes left after the surviving prefix (a torn write).
    pub garbage_bytes: usize,
}

#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    /// WAL segments by sequence number.
    segments: BTreeMap<u64, File>,
    /// Snapshot data files by `(last_index, last_term)`; always durable once written.
    snapshots: BTreeMap<(LogIndex, Term), Bytes>,
    mirror: Mirror,
    /// `(segment, start, end)` byte ranges whose fsync failed while the driver went on as if it
    /// had not: zeros after the next crash.
    lost: Vec<(u64, usize, usize)>,
    /// Bytes written and fsyncs done, for statistics.
    pub bytes_written: u64,
    pub syncs: u64,
    /// The snapshot job the executor handed over, until the harness's writer task takes it.
    submitted: Option<SnapshotJob>,
}

impl SimDisk {
    /// An empty disk: a node joining an existing cluster starts from nothing.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// The disk of a founding member: the initial membership as a durable snapshot at index 0
    /// (what [`Persisted::bootstrap`] describes), recorded in segment 1.
    pub fn bootstrap(persisted: &Persisted) -> SimDisk {
        let mut disk = SimDisk::new();
        disk.ensure_segment();
        if let Some(s) = &persisted.snapshot {
            disk.snapshots.insert((s.meta.last_index, s.meta.last_term), s.data.clone());
            disk.append(&wal::encode_record(&WalRecord::Snapshot(s.meta.clone())));
            disk.mirror.snapshot = Some(s.meta.clone());
        }
        disk.sync();
        disk
    }

    /// Whether anything was ever written (a wiped disk is empty).
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Unsynced bytes across all files.
    pub fn unsynced_bytes(&self) -> usize {
        self.segments.values().map(|f| f.data.len() - f.synced_len).sum()
    }

    fn last_seq(&self) -> u64 {
        self.segments.keys().next_back().copied().unwrap_or(0)
    }

    /// Creates segment 1 if there is none, durably (header, file and directory fsynced).
    fn ensure_segment(&mut self) {
        if self.segments.is_empty() {
            self.segments.insert(1, File::durable(wal::segment_header(1)));
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.ensure_segment();
        let seq = self.last_seq();
        let file = self.segments.get_mut(&seq).expect("the newest segment exists");
        file.data.extend_from_slice(bytes);
        self.bytes_written += bytes.len() as u64;
    }

    /// Step 1 and 2 of a `Ready`, in the order `core::wal` prescribes: the snapshot's data file
    /// (durable before anything refers to it), its `Snapshot` record, the entries, then the hard
    /// state. Nothing here is durable until [`SimDisk::sync`].
    pub fn persist(&mut self, ready: &Ready) {
        if let Some(s) = &ready.snapshot {
            self.snapshots.insert((s.meta.last_index, s.meta.last_term), s.data.clone());
            self.append(&wal::encode_record(&WalRecord::Snapshot(s.meta.clone())));
            // As recovery does (Raft figure 13): keep the entries after the snapshot only if the
            // log holds the snapshot's last entry with its term.
            let keep = self
                .mirror
                .entries
                .iter()
                .any(|e| e.index == s.meta.last_index && e.term == s.meta.last_term);
            if keep {
                self.mirror.entries.retain(|e| e.index > s.meta.last_index);
            } else {
                self.mirror.entries.clear();
            }
            self.mirror.snapshot = Some(s.meta.clone());
        }
        if let Some(first) = ready.entries.first() {
            self.append(&wal::encode_entries(&ready.entries));
            self.mirror.entries.retain(|e| e.index < first.index);
            self.mirror.entries.extend(ready.entries.iter().cloned());
        }
        if let Some(hs) = &ready.hard_state {
            self.append(&wal::encode_record(&WalRecord::HardState(hs.clone())));
            self.mirror.hard_state = hs.clone();
        }
    }

    /// Starts the node's next incarnation as the server does (`WalStore::begin_incarnation`):
    /// the record is written and synced before the node takes a request.
    pub fn begin_incarnation(&mut self) -> u64 {
        let next = self.mirror.incarnation + 1;
        self.append(&wal::encode_record(&WalRecord::Incarnation(next)));
        self.sync();
        self.mirror.incarnation = next;
        next
    }

    /// fsync every file.
    pub fn sync(&mut self) {
        for file in self.segments.values_mut() {
            file.synced_len = file.data.len();
        }
        self.syncs += 1;
    }

    /// An fsync that failed, seen by a driver that goes on (the mutation
    /// `ContinueAfterFailedFsync`): the unsynced bytes look durable to it, but the kernel dropped
    /// them, and the next crash shows zeros in their place.
    pub fn sync_failed(&mut self) {
        for (&seq, file) in self.segments.iter_mut() {
            if file.data.len() > file.synced_len {
                self.lost.push((seq, file.synced_len, file.data.len()));
                file.synced_len = file.data.len();
            }
        }
    }

    /// The writer task wrote a snapshot's data file (durable at once, like the server's
    /// `.tmp`, fsync, rename, directory fsync).
    pub fn write_snapshot_file(&mut self, snapshot: &Snapshot) {
        let meta = &snapshot.meta;
        self.snapshots.insert((meta.last_index, meta.last_term), snapshot.data.clone());
        self.bytes_written += snapshot.data.len() as u64;
        self.syncs += 1;
    }

    /// The job [`Storage::submit_snapshot`] received, for the harness's writer task.
    pub fn take_submitted(&mut self) -> Option<SnapshotJob> {
        self.submitted.take()
    }

    fn snapshot_key(&self) -> Option<(LogIndex, Term)> {
        self.mirror.snapshot.as_ref().map(|m| (m.last_index, m.last_term))
    }

    /// A power failure: every synced byte survives; of the unsynced bytes of each file a random
    /// prefix survives, and if `tear` the prefix may be followed by garbage (random bytes or
    /// zeros), the remains of a write cut short.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng, tear: bool) -> CrashDamage {
        let mut damage = CrashDamage::default();
        for (seq, start, end) in std::mem::take(&mut self.lost) {
            if let Some(file) = self.segments.get_mut(&seq) {
                let end = end.min(file.data.len());
                for b in file.data.get_mut(start..end).into_iter().flatten() {
                    *b = 0;
                }
                damage.bytes_lost += end.saturating_sub(start);
            }
        }
        for file in self.segments.values_mut() {
            let unsynced = file.data.len() - file.synced_len;
            if unsynced == 0 {
                continue;
            }
            // Half of the crashes lose everything unsynced; the others keep a random prefix.
            let keep = if rng.next_u32().is_multiple_of(2) {
                0
            } else {
                (rng.next_u64() % (unsynced as u64 + 1)) as usize
            };
            file.data.truncate(file.synced_len + keep);
            damage.bytes_lost += unsynced - keep;
            if tear && keep < unsynced {
                let garbage = 1 + (rng.next_u32() % 24) as usize;
                let zeros = rng.next_u32().is_multiple_of(3);
                for _ in 0..garbage {
                    file.data.push(if zeros { 0 } else { rng.next_u32() as u8 });
                }
                damage.garbage_bytes += garbage;
            }
            // Whatever survived is now simply what is on the disk.
            file.synced_len = file.data.len();
        }
        self.mirror = Mirror::default();
        self.submitted = None;
        damage
    }

    /// Erases everything (a node replaced by one with a new, empty disk).
    pub fn wipe(&mut self) {
        *self = SimDisk::new();
    }

    /// Startup, as the server does it: `core::wal::recover` over the segments, delete obsolete
    /// segments, truncate a torn tail (rewriting the header if it was torn itself), then load the
    /// snapshot data the recovered metadata names. An error means the node must not start.
    pub fn recover(&mut self) -> Result<Persisted, String> {
        let segments: Vec<(u64, &[u8])> =
            self.segments.iter().map(|(&seq, f)| (seq, f.data.as_slice())).collect();
        let recovered = wal::recover(&segments).map_err(|e| format!("WAL recovery failed: {e}"))?;
        for seq in &recovered.obsolete_seqs {
            self.segments.remove(seq);
        }
        if let Some(torn) = &recovered.torn_tail {
            let file = self.segments.get_mut(&torn.seq).expect("the torn segment exists");
            if (torn.offset as usize) < SEGMENT_HEADER_BYTES {
                *file = File::durable(wal::segment_header(torn.seq));
            } else {
                file.data.truncate(torn.offset as usize);
                file.synced_len = file.data.len();
            }
        }
        self.ensure_segment();
        let snapshot = match &recovered.snapshot {
            None => None,
            Some(meta) => {
                let data = self
                    .snapshots
                    .get(&(meta.last_index, meta.last_term))
                    .ok_or_else(|| {
                        format!(
                            "the WAL names snapshot ({}, {}) whose data file is missing",
                            meta.last_index, meta.last_term
                        )
                    })?
                    .clone();
                Some(Snapshot { meta: meta.clone(), data })
            }
        };
        self.mirror = Mirror {
            hard_state: recovered.hard_state.clone(),
            incarnation: recovered.incarnation,
            snapshot: recovered.snapshot.clone(),
            entries: recovered.entries.clone(),
        };
        Ok(Persisted { hard_state: recovered.hard_state, snapshot, entries: recovered.entries })
    }
}

/// The simulator's storage for `core::exec`: the executor the server runs drives this disk.
/// Nothing fails here; failing fsyncs are the harness's (it decides, after the simulated fsync
/// time, whether the sync happened, failed, or the node crashed first).
impl Storage for SimDisk {
    type Error = std::convert::Infallible;

    fn write_ready(&mut self, ready: &Ready) -> Result<(), Self::Error> {
        self.persist(ready);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Self::Error> {
        SimDisk::sync(self);
        Ok(())
    }

    fn ready_persisted(&mut self, ready: &Ready) -> Result<(), Self::Error> {
        if ready.snapshot.is_some() {
            // As the server does once the record naming the new snapshot is durable: older
            // snapshot files are unused (a newer one being written stays).
            let current = self.snapshot_key();
            self.snapshots.retain(|&k, _| Some(k) == current || Some(k.0) > current.map(|c| c.0));
        }
        Ok(())
    }

    fn begin_incarnation(&mut self) -> Result<u64, Self::Error> {
        Ok(SimDisk::begin_incarnation(self))
    }

    fn submit_snapshot(&mut self, job: SnapshotJob) {
        self.submitted = Some(job);
    }

    fn snapshot_file_written(
        &mut self,
        meta: &SnapshotMeta,
        keep: bool,
    ) -> Result<bool, Self::Error> {
        let current = self.snapshot_key();
        let newer = current.is_none_or(|(index, _)| meta.last_index > index);
        if keep && newer {
            return Ok(true);
        }
        // A snapshot from the leader replaced it: its file is unused.
        let key = (meta.last_index, meta.last_term);
        if Some(key) != current {
            self.snapshots.remove(&key);
        }
        Ok(false)
    }

    /// A self-contained segment holding the hard state, the snapshot's metadata and `entries`,
    /// durable at once, and only then are the older segments deleted (the compaction scheme of
    /// `core::wal`, as the server writes it).
    fn compact(&mut self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<(), Self::Error> {
        // What the new segment holds is what the WAL holds from now on.
        self.mirror.entries = entries.to_vec();
        self.mirror.snapshot = Some(meta.clone());
        let seq = self.last_seq() + 1;
        let bytes = wal::compacted_segment(
            seq,
            &self.mirror.hard_state,
            self.mirror.incarnation,
            meta,
            entries,
        );
        self.bytes_written += bytes.len() as u64;
        self.segments.insert(seq, File::durable(bytes));
        self.syncs += 1;
        self.segments.retain(|&s, _| s >= seq);
        // Snapshot files older than the one the durable WAL now starts from can never be
        // referenced again.
        self.snapshots.retain(|&(index, _), _| index >= meta.last_index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use simple_cache_core::message::{EntryPayload, Membership};
    use simple_cache_core::types::NodeId;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Command(Bytes::from(vec![index as u8; 20])),
        }
    }

    fn ready(entries: Vec<Entry>, hs: Option<HardState>) -> Ready {
        Ready { entries, hard_state: hs, ..Ready::default() }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            current_term: Term(term),
            voted_for: Some(NodeId(1)),
            commit_index: LogIndex(commit),
        }
    }

    fn founded() -> SimDisk {
        SimDisk::bootstrap(&Persisted::bootstrap(Membership::with_voters([NodeId(1), NodeId(2)])))
    }

    // Synced state survives any crash; recovery yields exactly it.
    #[test]
    fn synced_state_survives_every_crash() {
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut disk = founded();
            disk.persist(&ready(vec![entry(1, 1), entry(2, 1)], Some(hs(1, 1))));
            disk.sync();
            disk.persist(&ready(vec![entry(3, 1)], Some(hs(1, 2))));
            disk.crash(&mut rng, true);
            let p = disk.recover().unwrap();
            assert!(p.entries.len() == 2 || p.entries.len() == 3, "seed {seed}: {p:?}");
            assert!(p.hard_state.commit_index >= LogIndex(1));
            assert_eq!(p.snapshot.unwrap().meta.membership.voters.len(), 2);
            // After recovery the disk accepts appends and recovers them again.
            let next = p.entries.last().unwrap().index.0 + 1;
            disk.persist(&ready(vec![entry(next, 2)], Some(hs(2, 2))));
            disk.sync();
            let p = disk.recover().unwrap();
            assert_eq!(p.entries.last().unwrap().index, LogIndex(next));
        }
    }

    // A compaction replaces the older segments; recovery starts from the snapshot.
    #[test]
    fn compaction_recovers_from_the_snapshot() {
        let mut disk = founded();
        disk.persist(&ready((1..=5).map(|i| entry(i, 1)).collect(), Some(hs(1, 5))));
        disk.sync();
        let meta =
            SnapshotMeta { last_index: LogIndex(3), last_term: Term(1), ..SnapshotMeta::default() };
        disk.write_snapshot_file(&Snapshot {
            meta: meta.clone(),
            data: Bytes::from_static(b"state"),
        });
        let after: Vec<Entry> = (4..=5).map(|i| entry(i, 1)).collect();
        Storage::compact(&mut disk, &meta, &after).unwrap();
        assert_eq!(disk.segments.len(), 1);
        let p = disk.recover().unwrap();
        assert_eq!(p.snapshot.unwrap().data, Bytes::from_static(b"state"));
        assert_eq!(p.entries.iter().map(|e| e.index.0).collect::<Vec<_>>(), vec![4, 5]);
    }

    // Unsynced writes may be lost: a crash right after an unsynced append can lose it.
    #[test]
    fn unsynced_writes_can_be_lost() {
        let lost = (0..50).any(|seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut disk = founded();
            disk.persist(&ready(vec![entry(1, 1)], Some(hs(1, 0))));
            disk.crash(&mut rng, true);
            disk.recover().unwrap().entries.is_empty()
        });
        assert!(lost);
    }
}
