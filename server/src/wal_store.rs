//! Durable storage on real files: the write-ahead log of `simple_cache_core::wal` (segments in
//! `data_dir/wal/`) and snapshot files (`data_dir/snap/`).
//!
//! The record format, the order of records within a `Ready` and the compaction scheme are
//! `core::wal`'s; this module only does the file IO, so recovery is the same code the simulator
//! and the fuzzer exercise. Every IO error is returned to the node loop, which treats it as fatal:
//! a node must never acknowledge what it could not persist.
//!
//! Snapshot file: `snap/<last_index, 20 digits>.snap` =
//! `b"SCSNAP\0\x01"` + crc32c(payload) (u32 LE) + payload length (u64 LE) + payload, where the
//! payload is `codec::encode(&Snapshot)`. It is written to a `.tmp` file, fsynced, renamed into
//! place and the directory fsynced, before the WAL record that refers to it is written.
//!
//! A snapshot this node takes is encoded and written by a background thread
//! ([`WalStore::start_writer`]): encoding, writing and fsyncing a file the size of the cache
//! takes tens of milliseconds per 100k keys, and on the node loop it stalled every write of the
//! cluster (all replicas snapshot at about the same index). The loop keeps appending meanwhile;
//! when the file is durable it calls [`WalStore::snapshot_file_written`] and then
//! [`WalStore::compact`], which writes the small compacted segment. Until then recovery simply
//! uses the previous snapshot and segments.

use bytes::Bytes;
use simple_cache_core::raft::{Persisted, Ready};
use simple_cache_core::snapshot::{self, EncodedSnapshot, SnapshotJob};
use simple_cache_core::wal::{self, Recovered, WalRecord};
use simple_cache_core::{Entry, HardState, Snapshot, SnapshotMeta};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

const SNAPSHOT_MAGIC: [u8; 8] = *b"SCSNAP\0\x01";
const SNAPSHOT_HEADER_BYTES: usize = 8 + 4 + 8;

/// Why the store could not be opened. The node must not start. Each message names the file and
/// says what is wrong in words, once (the OS error is part of the text, not a separate cause).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {}", describe_io(error))]
    Io { path: PathBuf, error: io::Error },
    #[error("the write-ahead log in {dir} is damaged: {error}; refusing to start")]
    Wal { dir: PathBuf, error: wal::WalError },
    #[error("snapshot file {path} is unusable: {reason}")]
    Snapshot { path: PathBuf, reason: String },
}

/// An IO error in words an operator can act on.
pub fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            format!("permission denied: the user running simple-cache cannot use it ({e})")
        }
        io::ErrorKind::NotADirectory => format!("a path component is not a directory ({e})"),
        io::ErrorKind::ReadOnlyFilesystem => format!("the file system is read-only ({e})"),
        io::ErrorKind::StorageFull => format!("the disk is full ({e})"),
        _ => e.to_string(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |error| StorageError::Io { path: path.to_path_buf(), error }
}

/// The open WAL and snapshot directory of one node.
pub struct WalStore {
    wal_dir: PathBuf,
    snap_dir: PathBuf,
    file: File,
    seq: u64,
    size: u64,
    segment_bytes_target: u64,
    /// The latest hard state written (compaction copies it into the new segment).
    hard_state: HardState,
    /// The latest incarnation written (compaction copies it too).
    incarnation: u64,
    /// The snapshot whose file must be kept (the one recovery would use).
    snapshot_index: u64,
    /// Bytes were written since the last fsync.
    unsynced: bool,
    /// Jobs for the background snapshot writer, once started.
    writer: Option<std::sync::mpsc::Sender<SnapshotJob>>,
    /// The snapshot the writer is writing now (its files must not be removed meanwhile).
    snapshot_in_flight: Option<u64>,
    /// How long the last fsync took, until the node loop takes it.
    last_fsync: Option<Duration>,
}

/// The background writer encoded a snapshot job and, if the job is new, made its file durable
/// (or failed to).
#[derive(Debug)]
pub struct SnapshotWritten {
    pub snapshot: EncodedSnapshot,
    /// A file was written (the job was new).
    pub written: bool,
    pub result: io::Result<()>,
    pub duration: Duration,
}

/// The store and what recovery found.
pub struct Opened {
    pub store: WalStore,
    pub persisted: Persisted,
    /// Nothing was ever persisted: the node must be bootstrapped (or join).
    pub fresh: bool,
}

impl WalStore {
    /// Opens (or creates) the store under `data_dir` and recovers the persistent state. Refuses
    /// corruption with an error naming the file and offset; truncates a torn tail (logged).
    pub fn open(data_dir: &Path, segment_bytes_target: u64) -> Result<Opened, StorageError> {
        let wal_dir = data_dir.join("wal");
        let snap_dir = data_dir.join("snap");
        create_dir_durably(data_dir)?;
        for d in [&wal_dir, &snap_dir] {
            create_dir_durably(d)?;
        }
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&wal_dir).map_err(io_err(&wal_dir))? {
            let entry = entry.map_err(io_err(&wal_dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            match wal::parse_segment_file_name(&name) {
                Some(seq) => seqs.push(seq),
                None if name.ends_with(".tmp") => {
                    // An unfinished compaction that was never renamed into place.
                    let p = entry.path();
                    tracing::warn!(file = %p.display(), "removing unfinished temporary WAL file");
                    fs::remove_file(&p).map_err(io_err(&p))?;
                }
                None => {}
            }
        }
        seqs.sort_unstable();
        let mut contents = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            let p = wal_dir.join(wal::segment_file_name(seq));
            contents.push((seq, fs::read(&p).map_err(io_err(&p))?));
        }
        let refs: Vec<(u64, &[u8])> = contents.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        let recovered = wal::recover(&refs)
            .map_err(|error| StorageError::Wal { dir: wal_dir.clone(), error })?;
        drop(refs);
        drop(contents);
        let Recovered {
            hard_state,
            incarnation,
            snapshot,
            entries,
            torn_tail,
            last_seq,
            obsolete_seqs,
        } = recovered;
        for seq in obsolete_seqs {
            let p = wal_dir.join(wal::segment_file_name(seq));
            tracing::info!(file = %p.display(), "removing WAL segment made obsolete by compaction");
            fs::remove_file(&p).map_err(io_err(&p))?;
        }
        if let Some(t) = &torn_tail {
            let p = wal_dir.join(wal::segment_file_name(t.seq));
            tracing::warn!(
                file = %p.display(), offset = t.offset, reason = %t.reason,
                "WAL has a torn tail (a write cut short by a crash); truncating it"
            );
            let f = OpenOptions::new().write(true).open(&p).map_err(io_err(&p))?;
            if t.offset < wal::SEGMENT_HEADER_BYTES as u64 {
                f.set_len(0).map_err(io_err(&p))?;
                (&f).write_all(&wal::segment_header(t.seq)).map_err(io_err(&p))?;
            } else {
                f.set_len(t.offset).map_err(io_err(&p))?;
            }
            f.sync_all().map_err(io_err(&p))?;
        }
        let seq = if last_seq == 0 {
            let p = wal_dir.join(wal::segment_file_name(1));
            let mut f = File::create(&p).map_err(io_err(&p))?;
            f.write_all(&wal::segment_header(1)).map_err(io_err(&p))?;
            f.sync_all().map_err(io_err(&p))?;
            sync_dir(&wal_dir).map_err(io_err(&wal_dir))?;
            1
        } else {
            last_seq
        };
        let path = wal_dir.join(wal::segment_file_name(seq));
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();

        let snapshot = match snapshot {
            Some(meta) if meta.last_index.0 > 0 => {
                let p = snap_dir.join(snapshot_file_name(meta.last_index.0));
                let s = read_snapshot_file(&p)?;
                if s.meta != meta {
                    return Err(StorageError::Snapshot {
                        path: p,
                        reason: format!(
                            "it holds index {} term {}, the WAL expects index {} term {}",
                            s.meta.last_index, s.meta.last_term, meta.last_index, meta.last_term
                        ),
                    });
                }
                Some(s)
            }
            Some(meta) => Some(Snapshot { meta, data: Bytes::new() }),
            None => None,
        };
        let snapshot_index = snapshot.as_ref().map_or(0, |s| s.meta.last_index.0);
        remove_other_snapshots(&snap_dir, &[snapshot_index]).map_err(io_err(&snap_dir))?;
        let fresh = snapshot.is_none() && entries.is_empty() && hard_state == HardState::default();
        tracing::info!(
            dir = %wal_dir.display(), segment = seq, snapshot_index,
            entries = entries.len(), term = %hard_state.current_term,
            commit_index = %hard_state.commit_index, fresh, "WAL recovered"
        );
        let store = WalStore {
            wal_dir,
            snap_dir,
            file,
            seq,
            size,
            segment_bytes_target,
            hard_state: hard_state.clone(),
            incarnation,
            snapshot_index,
            unsynced: false,
            writer: None,
            snapshot_in_flight: None,
            last_fsync: None,
        };
        Ok(Opened { store, persisted: Persisted { hard_state, snapshot, entries }, fresh })
    }

    /// Starts the next incarnation of this node (see `core::node::RequestIds`): writes and syncs
    /// it, and returns it. Called at every start, before any request is taken, and when an
    /// incarnation's request ids run out.
    pub fn begin_incarnation(&mut self) -> io::Result<u64> {
        let next = self.incarnation + 1;
        self.append(&wal::encode_record(&WalRecord::Incarnation(next)))?;
        self.sync()?;
        self.incarnation = next;
        Ok(next)
    }

    /// Records the initial membership of a brand-new node (the snapshot at index 0 of
    /// [`Persisted::bootstrap`]) durably, so a restart does not depend on the config file.
    pub fn bootstrap(&mut self, meta: &SnapshotMeta) -> io::Result<()> {
        self.append(&wal::encode_record(&WalRecord::Snapshot(meta.clone())))?;
        self.sync()?;
        Ok(())
    }

    /// Persists steps 1 and 2 of a `Ready` and fsyncs if it needs it: what the node loop does
    /// through `core::exec`, at once (for recovery tools and tests).
    pub fn persist_ready(&mut self, ready: &Ready) -> io::Result<()> {
        use simple_cache_core::exec::Storage;
        self.write_ready(ready)?;
        if ready.must_sync || ready.snapshot.is_some() {
            self.sync()?;
        }
        self.ready_persisted(ready)
    }

    /// How long the last fsync took, once (for the `wal_fsync_duration` metric).
    pub fn take_fsync_duration(&mut self) -> Option<Duration> {
        self.last_fsync.take()
    }

    /// Starts the background snapshot writer; the node loop receives its results.
    pub fn start_writer(&mut self) -> tokio::sync::mpsc::UnboundedReceiver<SnapshotWritten> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<SnapshotJob>();
        let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
        let dir = self.snap_dir.clone();
        std::thread::Builder::new()
            .name("snapshot-writer".to_string())
            .spawn(move || {
                // Ends when the store (the job sender) is dropped.
                while let Ok(job) = job_rx.recv() {
                    let started = StdInstant::now();
                    let written = job.is_new();
                    let (snapshot, result) = if job.keeps_data() {
                        // A follower waits for this data: encode it once, in memory, and
                        // write the file from that.
                        let snapshot = EncodedSnapshot::with_data(job.encode());
                        let data = snapshot.data.as_ref().expect("encoded with its data");
                        let result = match written {
                            true => write_snapshot_file(&dir, &snapshot.meta, snapshot.len, |w| {
                                w.write_all(data)
                            }),
                            false => Ok(()),
                        };
                        (snapshot, result)
                    } else {
                        // Nobody needs the data now: stream it to the file, never holding a
                        // copy as large as the cache.
                        let len = job.encoded_len();
                        let result =
                            write_snapshot_file(&dir, &job.meta, len, |w| job.write_data(w));
                        (EncodedSnapshot { meta: job.meta.clone(), len, data: None }, result)
                    };
                    let duration = started.elapsed();
                    let done = SnapshotWritten { snapshot, written, result, duration };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                    release_freed_memory();
                }
            })
            .expect("the snapshot writer thread starts");
        self.writer = Some(jobs);
        done_rx
    }

    /// Hands a snapshot job to the background writer (the node gives out one at a time).
    /// Needs [`WalStore::start_writer`].
    pub fn submit_snapshot(&mut self, job: SnapshotJob) {
        let writer = self.writer.as_ref().expect("start_writer was called");
        if job.is_new() {
            self.snapshot_in_flight = Some(job.meta.last_index.0);
        }
        writer.send(job).expect("the snapshot writer runs while the store exists");
    }

    /// The writer finished the file of `meta`; `keep` is whether the node still wants it
    /// (see `CacheNode::snapshot_encoded`). Returns whether to compact to it; if so the caller
    /// calls [`WalStore::compact`] next. Otherwise (a snapshot from the leader replaced it) its
    /// file is removed.
    pub fn snapshot_file_written(&mut self, meta: &SnapshotMeta, keep: bool) -> io::Result<bool> {
        self.snapshot_in_flight = None;
        let current = keep && meta.last_index.0 > self.snapshot_index;
        if !current {
            tracing::info!(index = %meta.last_index, "a newer snapshot replaced the one just written");
            self.remove_unused_snapshots()?;
        }
        Ok(current)
    }

    /// Makes a snapshot durable and compacts the WAL to it, on the calling thread: what the
    /// background writer and [`WalStore::compact`] do together, for tests.
    #[cfg(test)]
    pub fn save_snapshot(&mut self, snapshot: &Snapshot, entries: &[Entry]) -> io::Result<()> {
        write_whole_snapshot_file(&self.snap_dir, snapshot)?;
        self.compact(&snapshot.meta, entries)
    }

    /// Compacts the WAL to a snapshot whose file is already durable: a self-contained segment
    /// holding the hard state, the snapshot's metadata and the `entries` after it (those
    /// persisted), then the removal of older segments and snapshot files.
    pub fn compact(&mut self, meta: &SnapshotMeta, entries: &[Entry]) -> io::Result<()> {
        let next = self.seq + 1;
        let bytes = wal::compacted_segment(next, &self.hard_state, self.incarnation, meta, entries);
        let name = wal::segment_file_name(next);
        let tmp = self.wal_dir.join(format!("{name}.tmp"));
        let path = self.wal_dir.join(&name);
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        sync_dir(&self.wal_dir)?;
        // The compacted segment is durable: everything before it is obsolete.
        let old_seq = self.seq;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.seq = next;
        self.size = bytes.len() as u64;
        self.unsynced = false;
        for seq in 1..=old_seq {
            let p = self.wal_dir.join(wal::segment_file_name(seq));
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.snapshot_index = meta.last_index.0;
        self.remove_unused_snapshots()?;
        tracing::info!(index = %meta.last_index, segment = next, "snapshot saved and WAL compacted");
        Ok(())
    }

    /// Removes snapshot files other than the one recovery would use and the one being written.
    fn remove_unused_snapshots(&self) -> io::Result<()> {
        let keep: Vec<u64> =
            [Some(self.snapshot_index), self.snapshot_in_flight].into_iter().flatten().collect();
        remove_other_snapshots(&self.snap_dir, &keep)
    }

    /// Fsyncs unsynced bytes (also used at shutdown).
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            let t = StdInstant::now();
            self.file.sync_data()?;
            self.unsynced = false;
            self.last_fsync = Some(t.elapsed());
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Starts the next segment. The current one is fsynced first, so a non-last segment is always
    /// complete (a damaged record in it is corruption, never a torn tail).
    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let next = self.seq + 1;
        let path = self.wal_dir.join(wal::segment_file_name(next));
        let mut f = OpenOptions::new().create_new(true).append(true).open(&path)?;
        f.write_all(&wal::segment_header(next))?;
        f.sync_all()?;
        sync_dir(&self.wal_dir)?;
        self.file = f;
        self.seq = next;
        self.size = wal::SEGMENT_HEADER_BYTES as u64;
        self.unsynced = false;
        tracing::info!(segment = next, "WAL segment rotated");
        Ok(())
    }
}

/// The server's storage for `core::exec`: the inherent methods do the IO.
impl simple_cache_core::exec::Storage for WalStore {
    type Error = io::Error;

    /// An installed snapshot (file first, then its WAL record), the entries, then the hard
    /// state, in that order so any prefix that survives a crash is consistent.
    fn write_ready(&mut self, ready: &Ready) -> io::Result<()> {
        let mut bytes = Vec::new();
        if let Some(s) = &ready.snapshot {
            write_whole_snapshot_file(&self.snap_dir, s)?;
            bytes.extend_from_slice(&wal::encode_record(&WalRecord::Snapshot(s.meta.clone())));
        }
        bytes.extend_from_slice(&wal::encode_entries(&ready.entries));
        if let Some(hs) = &ready.hard_state {
            bytes.extend_from_slice(&wal::encode_record(&WalRecord::HardState(hs.clone())));
            self.hard_state = hs.clone();
        }
        if !bytes.is_empty() {
            self.append(&bytes)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        WalStore::sync(self)
    }

    fn ready_persisted(&mut self, ready: &Ready) -> io::Result<()> {
        if let Some(s) = &ready.snapshot {
            // The record naming the new snapshot is durable: older snapshot files are unused.
            self.snapshot_index = s.meta.last_index.0;
            self.remove_unused_snapshots()?;
        }
        if self.size >= self.segment_bytes_target {
            self.rotate()?;
        }
        Ok(())
    }

    fn begin_incarnation(&mut self) -> io::Result<u64> {
        WalStore::begin_incarnation(self)
    }

    fn submit_snapshot(&mut self, job: SnapshotJob) {
        WalStore::submit_snapshot(self, job)
    }

    fn snapshot_file_written(&mut self, meta: &SnapshotMeta, keep: bool) -> io::Result<bool> {
        WalStore::snapshot_file_written(self, meta, keep)
    }

    fn compact(&mut self, meta: &SnapshotMeta, entries: &[Entry]) -> io::Result<()> {
        WalStore::compact(self, meta, entries)
    }
}

/// Hands memory freed after a snapshot (the encoded bytes, as large as the cache, and for large
/// items the detached map) back to the operating system: glibc keeps what a thread frees in its
/// arena until trimmed. Measured with `bench/memory.sh` (1M keys of 100 bytes): 402-424 bytes
/// per key resident without it, 390-393 with it.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's arenas to the kernel; it
    // takes no pointers and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Writes a snapshot file durably: `.tmp`, fsync, rename, fsync of the directory. The file is
/// a header (magic, CRC-32C and length of the payload) and the payload, `codec::encode` of the
/// [`Snapshot`]; its data, `len` bytes, comes from `write_data` as it is produced, so no copy of
/// a snapshot as large as the cache is made in memory.
fn write_snapshot_file(
    dir: &Path,
    meta: &SnapshotMeta,
    len: u64,
    write_data: impl FnOnce(&mut snapshot::Counted<&mut dyn Write>) -> io::Result<()>,
) -> io::Result<()> {
    let name = snapshot_file_name(meta.last_index.0);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&[0; SNAPSHOT_HEADER_BYTES])?;
        let mut payload = Crc { inner: &mut f, crc: 0, len: 0 };
        {
            let mut out = io::BufWriter::with_capacity(1 << 20, &mut payload);
            snapshot::write_encoded(meta, len, &mut out, write_data)?;
            out.flush()?;
        }
        let (crc, payload_len) = (payload.crc, payload.len);
        let mut header = Vec::with_capacity(SNAPSHOT_HEADER_BYTES);
        header.extend_from_slice(&SNAPSHOT_MAGIC);
        header.extend_from_slice(&crc.to_le_bytes());
        header.extend_from_slice(&payload_len.to_le_bytes());
        f.seek(io::SeekFrom::Start(0))?;
        f.write_all(&header)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(&name))?;
    sync_dir(dir)
}

/// [`write_snapshot_file`] for a snapshot already in memory.
fn write_whole_snapshot_file(dir: &Path, s: &Snapshot) -> io::Result<()> {
    write_snapshot_file(dir, &s.meta, s.data.len() as u64, |w| w.write_all(&s.data))
}

/// A writer that keeps the CRC-32C and length of what goes through it.
struct Crc<W> {
    inner: W,
    crc: u32,
    len: u64,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn snapshot_file_name(index: u64) -> String {
    format!("{index:020}.snap")
}

fn read_snapshot_file(path: &Path) -> Result<Snapshot, StorageError> {
    let bad = |reason: String| StorageError::Snapshot { path: path.to_path_buf(), reason };
    let bytes = Bytes::from(fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?);
    if bytes.len() < SNAPSHOT_HEADER_BYTES || bytes[..8] != SNAPSHOT_MAGIC {
        return Err(bad("bad header".to_string()));
    }
    let crc = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if payload.len() as u64 != len {
        return Err(bad(format!("length {} but {} bytes present", len, payload.len())));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch".to_string()));
    }
    snapshot::decode_encoded(bytes.slice(SNAPSHOT_HEADER_BYTES..)).map_err(|e| bad(e.to_string()))
}

/// Removes snapshot files (and temporary files) other than those of the indexes in `keep`.
fn remove_other_snapshots(dir: &Path, keep: &[u64]) -> io::Result<()> {
    let kept = |name: &str| {
        keep.iter().any(|&i| {
            let n = snapshot_file_name(i);
            name == n || name.strip_suffix(".tmp") == Some(n.as_str())
        })
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.ends_with(".snap") || name.ends_with(".snap.tmp");
        if ours && !kept(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Fsyncs a directory so that a file created or renamed in it survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents) so that its entry survives a crash: each directory
/// created is made durable by fsyncing the directory that holds it. Without that, a crash soon
/// after the first start could lose `wal/` with the bootstrap record in it.
fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        let error = io::Error::other("it exists and is not a directory");
        return Err(StorageError::Io { path: dir.to_path_buf(), error });
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(io_err(dir)(e)),
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    sync_dir(parent).map_err(io_err(parent))
}

/// An exclusive lock on a data directory, held for the life of the process: two processes on
/// one data directory would interleave WAL writes and corrupt it. `flock` locks are released by
/// the kernel when the process dies, so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data_dir {dir} is in use by another simple-cache process ({holder}); stop it, or give \
         this node its own data_dir"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("data_dir {dir}: {error}")]
    Storage { dir: PathBuf, error: StorageError },
}

impl DataDirLock {
    /// Creates `data_dir` if needed and locks `data_dir/LOCK`, writing this process's pid into
    /// it for the next one to name.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        use std::io::{Read, Seek};
        use std::os::fd::AsRawFd;
        let storage = |error| LockError::Storage { dir: data_dir.to_path_buf(), error };
        create_dir_durably(data_dir).map_err(storage)?;
        let path = data_dir.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| storage(io_err(&path)(e)))?;
        // SAFETY: flock takes a file descriptor we own for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
                };
                return Err(LockError::InUse { dir: data_dir.to_path_buf(), holder });
            }
            return Err(storage(io_err(&path)(e)));
        }
        let pid = format!("{}\n", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        written.map_err(|e| storage(io_err(&path)(e)))?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_cache_core::{EntryPayload, LogIndex, Membership, NodeId, Term};

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            payload: EntryPayload::Command(Bytes::from(data.to_owned())),
        }
    }

    fn ready(entries: Vec<Entry>, hs: Option<HardState>) -> Ready {
        Ready { entries, hard_state: hs, must_sync: true, ..Ready::default() }
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            current_term: Term(term),
            voted_for: Some(NodeId(1)),
            commit_index: LogIndex(commit),
        }
    }

    fn boot_meta() -> SnapshotMeta {
        SnapshotMeta { membership: Membership::with_voters([NodeId(1)]), ..SnapshotMeta::default() }
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        v.sort();
        v
    }

    // A restart recovers exactly the hard state, membership and entries that were persisted.
    #[test]
    fn restart_recovers_the_same_state() {
        let dir = tempfile::tempdir().unwrap();
        let o = WalStore::open(dir.path(), 1 << 20).unwrap();
        assert!(o.fresh);
        let mut s = o.store;
        s.bootstrap(&boot_meta()).unwrap();
        s.persist_ready(&ready(vec![entry(1, 1, "a"), entry(2, 1, "b")], Some(hs(1, 1)))).unwrap();
        // A conflicting tail is replaced from its first index.
        s.persist_ready(&ready(vec![entry(2, 2, "c"), entry(3, 2, "d")], Some(hs(2, 3)))).unwrap();
        drop(s);
        let o = WalStore::open(dir.path(), 1 << 20).unwrap();
        assert!(!o.fresh);
        assert_eq!(o.persisted.hard_state, hs(2, 3));
        assert_eq!(o.persisted.entries, vec![entry(1, 1, "a"), entry(2, 2, "c"), entry(3, 2, "d")]);
        assert_eq!(o.persisted.snapshot.unwrap().meta, boot_meta());
    }

    // Rotation starts new segments and recovery reads across all of them.
    #[test]
    fn rotation_keeps_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 200).unwrap().store;
        s.bootstrap(&boot_meta()).unwrap();
        for i in 1..=20 {
            s.persist_ready(&ready(vec![entry(i, 1, "0123456789")], Some(hs(1, i)))).unwrap();
        }
        drop(s);
        assert!(segments(dir.path()).len() > 3, "small segments were rotated");
        let o = WalStore::open(dir.path(), 200).unwrap();
        assert_eq!(o.persisted.entries.len(), 20);
        assert_eq!(o.persisted.hard_state, hs(1, 20));
    }

    // A snapshot compacts the WAL: older segments are deleted and recovery returns the
    // snapshot with its data plus the entries after it.
    #[test]
    fn snapshot_compacts_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 200).unwrap().store;
        s.bootstrap(&boot_meta()).unwrap();
        for i in 1..=10 {
            s.persist_ready(&ready(vec![entry(i, 1, "0123456789")], Some(hs(1, i)))).unwrap();
        }
        let meta = SnapshotMeta { last_index: LogIndex(8), last_term: Term(1), ..boot_meta() };
        let snap = Snapshot { meta: meta.clone(), data: Bytes::from_static(b"cache-state") };
        s.save_snapshot(&snap, &[entry(9, 1, "0123456789"), entry(10, 1, "0123456789")]).unwrap();
        s.persist_ready(&ready(vec![entry(11, 1, "x")], Some(hs(1, 11)))).unwrap();
        drop(s);
        assert_eq!(segments(dir.path()).len(), 1, "older segments removed");
        let o = WalStore::open(dir.path(), 200).unwrap();
        assert_eq!(o.persisted.snapshot, Some(snap));
        let idx: Vec<u64> = o.persisted.entries.iter().map(|e| e.index.0).collect();
        assert_eq!(idx, vec![9, 10, 11]);
        assert_eq!(o.persisted.hard_state, hs(1, 11));
    }

    fn snap(index: u64, data: &'static [u8]) -> Snapshot {
        let meta = SnapshotMeta { last_index: LogIndex(index), last_term: Term(1), ..boot_meta() };
        Snapshot { meta, data: Bytes::from_static(data) }
    }

    /// A job for a cache holding one key, `k` = `value`.
    fn job(index: u64, value: &str) -> SnapshotJob {
        let meta = SnapshotMeta { last_index: LogIndex(index), last_term: Term(1), ..boot_meta() };
        let mut cache = simple_cache_core::cache::Cache::new();
        let command = simple_cache_core::cache::Command::Set {
            key: "k".into(),
            value: Bytes::from(value.to_owned()),
            expires_at: None,
        };
        cache.apply(&simple_cache_core::cache::Proposal {
            time: simple_cache_core::Instant(1),
            command,
        });
        SnapshotJob::new(meta, &cache, true, false)
    }

    fn snap_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir.join("snap"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    // The background writer's snapshot is used once its file is durable and the WAL compacted:
    // entries appended while it was written survive, older segments are gone. A job nobody
    // waits for streams its data to the file (small items encoded at once, large ones
    // detached) and hands back only its length; the file reads back as the encoded snapshot.
    #[test]
    fn background_snapshot_compacts_after_the_file_is_written() {
        background_snapshot_compacts("cache-state");
        background_snapshot_compacts(&"large-item".repeat(500));
    }

    fn background_snapshot_compacts(value: &str) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 200).unwrap().store;
        let mut done = s.start_writer();
        s.bootstrap(&boot_meta()).unwrap();
        for i in 1..=10 {
            s.persist_ready(&ready(vec![entry(i, 1, "0123456789")], Some(hs(1, i)))).unwrap();
        }
        let j = job(8, value);
        let expected = j.encode();
        s.submit_snapshot(j);
        // The loop keeps appending while the file is written.
        s.persist_ready(&ready(vec![entry(11, 1, "x")], Some(hs(1, 11)))).unwrap();
        let w = done.blocking_recv().unwrap();
        w.result.unwrap();
        assert!(w.written);
        assert_eq!(w.snapshot.meta, expected.meta);
        assert_eq!(w.snapshot.len, expected.data.len() as u64);
        assert_eq!(w.snapshot.data, None, "nobody waits for the data");
        assert!(s.snapshot_file_written(&w.snapshot.meta, true).unwrap());
        let after: Vec<Entry> =
            (9..=10).map(|i| entry(i, 1, "0123456789")).chain([entry(11, 1, "x")]).collect();
        s.compact(&w.snapshot.meta, &after).unwrap();
        drop(s);
        assert_eq!(segments(dir.path()).len(), 1, "older segments removed");
        let o = WalStore::open(dir.path(), 200).unwrap();
        assert_eq!(o.persisted.snapshot, Some(expected));
        let idx: Vec<u64> = o.persisted.entries.iter().map(|e| e.index.0).collect();
        assert_eq!(idx, vec![9, 10, 11]);
    }

    // A snapshot installed from the leader while ours is being written wins: ours is not
    // compacted to and its file is removed. A job that only re-encodes the current snapshot
    // writes no file.
    #[test]
    fn leader_snapshot_replaces_the_one_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 1 << 20).unwrap().store;
        let mut done = s.start_writer();
        s.bootstrap(&boot_meta()).unwrap();
        for i in 1..=5 {
            s.persist_ready(&ready(vec![entry(i, 1, "e")], Some(hs(1, i)))).unwrap();
        }
        s.submit_snapshot(job(3, "ours-at-3"));
        let leaders =
            Ready { snapshot: Some(snap(20, b"leader-at-20")), ..ready(vec![], Some(hs(1, 20))) };
        s.persist_ready(&leaders).unwrap();
        let w = done.blocking_recv().unwrap();
        w.result.unwrap();
        assert!(!s.snapshot_file_written(&w.snapshot.meta, true).unwrap(), "the leader's is newer");
        assert_eq!(snap_files(dir.path()), vec![snapshot_file_name(20)]);

        let meta = snap(20, b"").meta;
        let mut cache = simple_cache_core::cache::Cache::new();
        cache.apply(&simple_cache_core::cache::Proposal {
            time: simple_cache_core::Instant(1),
            command: simple_cache_core::cache::Command::Reset,
        });
        s.submit_snapshot(SnapshotJob::new(meta, &cache, false, false));
        let w = done.blocking_recv().unwrap();
        assert!(!w.written);
        assert!(w.snapshot.data.is_some(), "a re-encoded snapshot is for a follower");
        let kept = fs::read(dir.path().join("snap").join(snapshot_file_name(20))).unwrap();
        assert!(kept.ends_with(b"leader-at-20"), "the current snapshot file is untouched");
        drop(s);
        let o = WalStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.persisted.snapshot, Some(snap(20, b"leader-at-20")));
    }

    // A write cut short by a crash is truncated on restart; what was complete survives, and the
    // log can be appended to again.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 1 << 20).unwrap().store;
        s.bootstrap(&boot_meta()).unwrap();
        s.persist_ready(&ready(vec![entry(1, 1, "a")], Some(hs(1, 1)))).unwrap();
        s.persist_ready(&ready(vec![entry(2, 1, "bbbbbbbbbbbbbbbbbbbb")], None)).unwrap();
        drop(s);
        let seg = segments(dir.path()).pop().unwrap();
        let len = fs::metadata(&seg).unwrap().len();
        OpenOptions::new().write(true).open(&seg).unwrap().set_len(len - 7).unwrap();
        let o = WalStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.persisted.entries, vec![entry(1, 1, "a")]);
        let mut s = o.store;
        s.persist_ready(&ready(vec![entry(2, 1, "c")], None)).unwrap();
        drop(s);
        let o = WalStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(o.persisted.entries, vec![entry(1, 1, "a"), entry(2, 1, "c")]);
    }

    // A flipped bit in the middle of the log (valid records follow it) refuses to start, naming
    // the file and offset.
    #[test]
    fn mid_file_bit_flip_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 1 << 20).unwrap().store;
        s.bootstrap(&boot_meta()).unwrap();
        for i in 1..=5 {
            s.persist_ready(&ready(vec![entry(i, 1, "payload-payload")], Some(hs(1, i)))).unwrap();
        }
        drop(s);
        let seg = segments(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&seg).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        fs::write(&seg, &bytes).unwrap();
        let e = WalStore::open(dir.path(), 1 << 20).err().expect("corruption refuses to start");
        let msg = e.to_string();
        assert!(msg.contains("00000000000000000001.wal"), "{msg}");
        assert!(msg.contains("offset"), "{msg}");
    }

    // A damaged snapshot file refuses to start rather than serving an empty cache.
    #[test]
    fn damaged_snapshot_file_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = WalStore::open(dir.path(), 1 << 20).unwrap().store;
        s.bootstrap(&boot_meta()).unwrap();
        s.persist_ready(&ready(vec![entry(1, 1, "a")], Some(hs(1, 1)))).unwrap();
        let meta = SnapshotMeta { last_index: LogIndex(1), last_term: Term(1), ..boot_meta() };
        s.save_snapshot(&Snapshot { meta, data: Bytes::from_static(b"state") }, &[]).unwrap();
        drop(s);
        let p = dir.path().join("snap").join(snapshot_file_name(1));
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        let e = WalStore::open(dir.path(), 1 << 20).err().expect("refuses to start");
        assert!(e.to_string().contains("checksum"), "{e}");
    }
}
