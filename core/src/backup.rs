//! The backup file: a snapshot of the whole cache at one applied index, as `GET /admin/snapshot`
//! streams it and `snapshot restore` reads it.
//!
//! ```text
//! "SCBACKUP"  8 bytes, the magic
//! format      1 byte, BACKUP_FORMAT
//! snapshot    what `snapshot::write_encoded` writes: the codec's version byte, the
//!             SnapshotMeta (index, term, membership), the data's length, the data
//! crc32c      4 bytes, little-endian, over everything before it
//! ```
//!
//! The checksum comes last so the file can be written as it is produced (a cache's snapshot is
//! as large as the cache, and neither the node nor the client holds a second copy of it);
//! a truncated download therefore never passes [`read`]. The data is the same encoding the
//! WAL's snapshot files and `InstallSnapshot` carry, so [`read`] checks it with the decoder a
//! follower uses ([`Cache::restore`]) before anything is written from it.

use crate::cache::Cache;
use crate::codec::DecodeError;
use crate::message::{Snapshot, SnapshotMeta};
use crate::snapshot::{self, SnapshotJob};
use bytes::Bytes;
use std::io::Write;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 8] = b"SCBACKUP";
/// The layout version of this module's file.
pub const BACKUP_FORMAT: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 1;
const TRAILER_LEN: usize = 4;

/// Why a file is not a usable backup. Every case names what was found, for the operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    #[error("not a simple-cache backup (it does not start with {:?})", std::str::from_utf8(MAGIC).unwrap_or_default())]
    NotABackup,
    #[error("backup format {found} is not known to this version (it reads format {BACKUP_FORMAT})")]
    Format { found: u8 },
    #[error("the file is truncated ({len} bytes)")]
    Truncated { len: usize },
    #[error(
        "the checksum does not match (file says {expected:08x}, content gives {found:08x}): the \
         file is damaged or incomplete"
    )]
    Checksum { expected: u32, found: u32 },
    #[error("the snapshot in it does not decode: {0}")]
    Snapshot(DecodeError),
    #[error("the cache in it does not decode: {0}")]
    Cache(DecodeError),
    #[error(
        "it claims index {index} and term {term}: a backup is taken at an applied index of a term"
    )]
    Position { index: u64, term: u64 },
}

/// What a backup holds, as [`read`] found it.
#[derive(Debug)]
pub struct Backup {
    pub snapshot: Snapshot,
    /// The number of keys in it.
    pub keys: usize,
    /// The file's checksum.
    pub crc32c: u32,
}

/// How long a backup of a job is: its snapshot data, and the whole file. Measuring costs a
/// pass over the cache (no copy), so a driver does it off its async threads, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lengths {
    pub data: u64,
    pub file: u64,
}

/// Measures what [`write`] will produce for `job`.
pub fn lengths(job: &SnapshotJob) -> Lengths {
    let data = job.encoded_len();
    // The metadata as `write_encoded` writes it with an empty data (whose length is one byte),
    // then the real length's varint (`codec::encode` puts a version byte before it).
    let mut counted = Counter(0);
    snapshot::write_encoded(&job.meta, 0, &mut counted, |_| Ok(()))
        .expect("counting bytes does not fail");
    let len_varint = crate::codec::encode(&data).len() as u64 - 1;
    let file = (HEADER_LEN + TRAILER_LEN) as u64 + counted.0 - 1 + len_varint + data;
    Lengths { data, file }
}

/// Writes the backup file of `job` (measured by [`lengths`]) to `out` as it is produced;
/// returns its checksum.
pub fn write(job: &SnapshotJob, lengths: Lengths, out: &mut impl Write) -> std::io::Result<u32> {
    let mut out = Crc { inner: out, crc: 0 };
    out.write_all(MAGIC)?;
    out.write_all(&[BACKUP_FORMAT])?;
    snapshot::write_encoded(&job.meta, lengths.data, &mut out, |w| job.write_data(w))?;
    let crc = out.crc;
    out.inner.write_all(&crc.to_le_bytes())?;
    Ok(crc)
}

/// Checks and decodes a whole backup file: magic, format, checksum, the snapshot, and the
/// cache it encodes (decoded and dropped, so a file that passes restores on every node).
pub fn read(bytes: Bytes) -> Result<Backup, BackupError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err(BackupError::Truncated { len: bytes.len() });
    }
    if bytes[MAGIC.len()] != BACKUP_FORMAT {
        return Err(BackupError::Format { found: bytes[MAGIC.len()] });
    }
    let body_end = bytes.len() - TRAILER_LEN;
    let expected = u32::from_le_bytes(bytes[body_end..].try_into().expect("4 bytes"));
    let found = crc32c::crc32c(&bytes[..body_end]);
    if expected != found {
        return Err(BackupError::Checksum { expected, found });
    }
    let snapshot = snapshot::decode_encoded(bytes.slice(HEADER_LEN..body_end))
        .map_err(BackupError::Snapshot)?;
    // A node's applied state is past index 0 and term 0 (its bootstrap): a file that says
    // otherwise was not written by a node.
    if snapshot.meta.last_index.0 == 0 || snapshot.meta.last_term.0 == 0 {
        return Err(BackupError::Position {
            index: snapshot.meta.last_index.0,
            term: snapshot.meta.last_term.0,
        });
    }
    let cache = Cache::restore(&snapshot.data).map_err(BackupError::Cache)?;
    Ok(Backup { keys: cache.len(), snapshot, crc32c: found })
}

/// Checks a backup file as it streams past, in constant memory: magic, format, metadata and
/// checksum (so a download is known complete and intact without holding it). [`read`] does
/// the full check, the cache decoded too, before anything is restored.
#[derive(Debug, Default)]
pub struct StreamCheck {
    /// The first bytes, until the metadata decodes.
    head: Vec<u8>,
    meta: Option<SnapshotMeta>,
    /// The crc32c of everything but the last four bytes seen.
    crc: u32,
    /// The last (at most) four bytes seen: the trailer, if the file ends here.
    tail: Vec<u8>,
    len: u64,
}

/// The most the metadata may take (a membership of many members with long addresses).
const HEAD_MAX: usize = 1 << 20;

impl StreamCheck {
    pub fn new() -> StreamCheck {
        StreamCheck::default()
    }

    /// The next bytes of the file.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), BackupError> {
        self.len += data.len() as u64;
        if self.meta.is_none() {
            let take = data.len().min(HEAD_MAX.saturating_sub(self.head.len()));
            self.head.extend_from_slice(&data[..take]);
            self.try_meta()?;
        }
        // Everything but the last four bytes goes into the checksum.
        self.tail.extend_from_slice(data);
        if self.tail.len() > TRAILER_LEN {
            let done = self.tail.len() - TRAILER_LEN;
            self.crc = crc32c::crc32c_append(self.crc, &self.tail[..done]);
            self.tail.drain(..done);
        }
        Ok(())
    }

    fn try_meta(&mut self) -> Result<(), BackupError> {
        let h = &self.head;
        if h.len() < MAGIC.len() {
            return if MAGIC.starts_with(h) { Ok(()) } else { Err(BackupError::NotABackup) };
        }
        if &h[..MAGIC.len()] != MAGIC {
            return Err(BackupError::NotABackup);
        }
        if h.len() <= HEADER_LEN {
            return Ok(());
        }
        if h[MAGIC.len()] != BACKUP_FORMAT {
            return Err(BackupError::Format { found: h[MAGIC.len()] });
        }
        let body = &h[HEADER_LEN..];
        if body[0] != crate::codec::WIRE_VERSION {
            return Err(BackupError::Snapshot(DecodeError::Version { found: body[0] }));
        }
        match postcard::take_from_bytes::<SnapshotMeta>(&body[1..]) {
            Ok((meta, _)) => {
                self.meta = Some(meta);
                self.head = Vec::new();
                Ok(())
            }
            Err(_) if h.len() < HEAD_MAX => Ok(()),
            Err(e) => Err(BackupError::Snapshot(DecodeError::Malformed(e.to_string()))),
        }
    }

    /// The file ended: its metadata, length and checksum, if all is well.
    pub fn finish(self) -> Result<(SnapshotMeta, u64, u32), BackupError> {
        let len = self.len as usize;
        let Some(meta) = self.meta else {
            return Err(if self.head.starts_with(MAGIC) || MAGIC.starts_with(&self.head) {
                BackupError::Truncated { len }
            } else {
                BackupError::NotABackup
            });
        };
        if self.tail.len() < TRAILER_LEN {
            return Err(BackupError::Truncated { len });
        }
        let expected = u32::from_le_bytes(self.tail[..].try_into().expect("4 bytes"));
        if expected != self.crc {
            return Err(BackupError::Checksum { expected, found: self.crc });
        }
        Ok((meta, self.len, self.crc))
    }
}

/// The metadata of a backup, for a listing: what [`read`] would restore.
pub fn describe(meta: &SnapshotMeta) -> String {
    let ids = |s: &std::collections::BTreeSet<crate::NodeId>| {
        s.iter().map(|n| n.0.to_string()).collect::<Vec<_>>().join(",")
    };
    format!(
        "index {} term {}, taken from a cluster of voters [{}] learners [{}]",
        meta.last_index.0,
        meta.last_term.0,
        ids(&meta.membership.voters),
        ids(&meta.membership.learners)
    )
}

struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer that keeps the crc32c of what goes through it.
struct Crc<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Command, Proposal};
    use crate::types::{Instant, LogIndex, Term};
    use crate::{Membership, NodeId};

    fn job(keys: usize) -> SnapshotJob {
        let mut cache = Cache::default();
        for i in 0..keys {
            let key = format!("key-{i:04}");
            let expires_at = (i % 2 == 0).then_some(Instant(1_000_000 + i as u64));
            let command = Command::Set { key, value: Bytes::from(vec![i as u8; 10]), expires_at };
            cache.apply(&Proposal { time: Instant(1), command });
        }
        let meta = SnapshotMeta {
            last_index: LogIndex(keys as u64),
            last_term: Term(3),
            membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
        };
        SnapshotJob::new(meta, &cache, false, false)
    }

    fn file(keys: usize) -> (SnapshotJob, Vec<u8>) {
        let job = job(keys);
        let mut out = Vec::new();
        write(&job, lengths(&job), &mut out).unwrap();
        (job, out)
    }

    #[test]
    fn a_written_backup_reads_back_as_the_same_snapshot() {
        let (job, bytes) = file(50);
        assert_eq!(bytes.len() as u64, lengths(&job).file);
        let b = read(Bytes::from(bytes)).unwrap();
        assert_eq!(b.keys, 50);
        assert_eq!(b.snapshot, job.encode());
        let restored = Cache::restore(&b.snapshot.data).unwrap();
        let original = Cache::restore(&job.encode().data).unwrap();
        assert_eq!(restored, original);
    }

    // Any flipped byte and any truncation is refused: the checksum covers everything but
    // itself, and the trailer's own bytes are the checksum.
    #[test]
    fn damage_anywhere_is_refused() {
        let (_, bytes) = file(20);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x20;
            assert!(read(Bytes::from(bad)).is_err(), "byte {at} flipped was accepted");
        }
        for len in 0..bytes.len() {
            let cut = Bytes::copy_from_slice(&bytes[..len]);
            assert!(read(cut).is_err(), "a file cut at {len} bytes was accepted");
        }
    }

    // Lengths are exact whatever the varints' sizes: an empty cache, and one whose data length
    // takes three bytes.
    #[test]
    fn lengths_are_exact() {
        for keys in [0, 1, 10_000] {
            let (job, bytes) = file(keys);
            assert_eq!(bytes.len() as u64, lengths(&job).file, "{keys} keys");
        }
    }

    #[test]
    fn a_file_at_index_or_term_zero_is_refused() {
        let mut cache = Cache::default();
        cache.apply(&Proposal {
            time: Instant(1),
            command: Command::Set { key: "k".into(), value: Bytes::new(), expires_at: None },
        });
        for (index, term) in [(0, 1), (1, 0)] {
            let meta = SnapshotMeta {
                last_index: LogIndex(index),
                last_term: Term(term),
                ..SnapshotMeta::default()
            };
            let job = SnapshotJob::new(meta, &cache, false, false);
            let mut out = Vec::new();
            write(&job, lengths(&job), &mut out).unwrap();
            assert_eq!(read(Bytes::from(out)).unwrap_err(), BackupError::Position { index, term });
        }
    }

    // The streaming check agrees with `read` on every intact file, fed in any chunking, and
    // refuses every truncation and every change to the checksummed bytes or the trailer.
    #[test]
    fn the_streaming_check_agrees_with_read() {
        let (job, bytes) = file(30);
        for chunk in [1, 7, 4096] {
            let mut c = StreamCheck::new();
            for part in bytes.chunks(chunk) {
                c.feed(part).unwrap();
            }
            let (meta, len, crc) = c.finish().unwrap();
            assert_eq!((meta, len), (job.meta.clone(), bytes.len() as u64));
            assert_eq!(crc, read(Bytes::from(bytes.clone())).unwrap().crc32c);
        }
        let check = |data: &[u8]| {
            let mut c = StreamCheck::new();
            c.feed(data).and_then(|()| c.finish()).is_ok()
        };
        for len in 0..bytes.len() {
            assert!(!check(&bytes[..len]), "cut at {len}");
        }
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x04;
            assert!(!check(&bad), "byte {at} changed");
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let (_, bytes) = file(3);
        assert_eq!(read(Bytes::from_static(b"{\"key\": 1}")).unwrap_err(), BackupError::NotABackup);
        let mut v2 = bytes.clone();
        v2[8] = 9;
        assert_eq!(read(Bytes::from(v2)).unwrap_err(), BackupError::Format { found: 9 });
        let cut = Bytes::copy_from_slice(&bytes[..bytes.len() - 1]);
        assert!(matches!(read(cut).unwrap_err(), BackupError::Checksum { .. }));
    }

    // A file whose checksum is right but whose cache does not decode (written by a buggy or
    // hostile tool) is refused too, before anything is restored from it.
    #[test]
    fn a_well_framed_file_with_a_bad_cache_is_refused() {
        let meta =
            SnapshotMeta { last_index: LogIndex(1), last_term: Term(1), ..SnapshotMeta::default() };
        let mut body = vec![];
        body.extend_from_slice(MAGIC);
        body.push(BACKUP_FORMAT);
        let data = b"\x03not a cache";
        snapshot::write_encoded(&meta, data.len() as u64, &mut body, |w| w.write_all(data))
            .unwrap();
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        assert!(matches!(read(Bytes::from(body)).unwrap_err(), BackupError::Cache(_)));
    }
}
