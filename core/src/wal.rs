//! The write-ahead log: its on-disk format and the recovery logic, as pure functions over bytes.
//!
//! The server (real files) and the simulator (a simulated disk) both do the file IO themselves and
//! call this module to frame records and to rebuild state from the bytes of the segment files, so
//! recovery is the same code everywhere and can be fuzzed.
//!
//! # Format
//!
//! A WAL is a directory of *segment* files named by [`segment_file_name`]
//! (`00000000000000000001.wal`, 20 decimal digits). Sequence numbers start at 1 and are
//! consecutive. Every segment starts with a [`SEGMENT_HEADER_BYTES`]-byte header, all integers
//! little-endian:
//!
//! | bytes  | field                                                                       |
//! |--------|-----------------------------------------------------------------------------|
//! | 0..6   | magic `b"SCWAL\0"` ([`SEGMENT_MAGIC`])                                      |
//! | 6..8   | format version, u16 ([`WAL_FORMAT_VERSION`])                                |
//! | 8..16  | the segment's sequence number, u64; must equal the one in the file name     |
//! | 16..24 | prelude length, u64: 0 for an ordinary segment; for a *self-contained*       |
//! |        | segment written by [`compacted_segment`], the length of that complete state |
//! |        | (header included), so recovery can tell a finished compaction from one cut  |
//! |        | short by a crash                                                            |
//! | 24..28 | CRC32C of bytes 0..24, u32                                                  |
//!
//! The header carries its own checksum because the prelude length decides which segments
//! recovery reads: a flipped bit must not be able to make recovery skip segments.
//!
//! After the header come frames, back to back, each holding one [`WalRecord`]:
//!
//! ```text
//! [len: u32][crc32c(payload): u32][payload: len bytes]     payload = codec::encode(&record)
//! ```
//!
//! `len` is between 1 and [`RECORD_BYTES_MAX`]; anything else is damage, and is never used to size
//! an allocation.
//!
//! # What a driver does
//!
//! **Startup.** List the directory, keep the names [`parse_segment_file_name`] accepts (this skips
//! temporary files, such as a `*.tmp` compaction that was never renamed into place: delete them),
//! read each file and call [`recover`] with the segments in ascending order. Then:
//! - delete the segments in [`Recovered::obsolete_seqs`] (leftovers of an interrupted compaction);
//! - if [`Recovered::torn_tail`] is set, truncate that segment to `offset` and fsync it; if
//!   `offset` is less than [`SEGMENT_HEADER_BYTES`] the header itself was torn, so write
//!   [`segment_header`] again (or delete the file and start that segment afresh);
//! - if there are no segments, create segment 1 holding [`segment_header`]`(1)`, fsync it and the
//!   directory;
//! - load the snapshot whose metadata is [`Recovered::snapshot`] and build the node from
//!   [`Recovered::hard_state`] and [`Recovered::entries`].
//!
//! An error means the WAL cannot be trusted: the node must refuse to start. Losing or reordering
//! durable records could make it forget a vote or an acknowledged entry, which breaks Raft's
//! safety for the whole cluster, so recovery never "repairs" anything but a torn tail.
//!
//! **Appending a `Ready`.** Append to the newest segment, in this order, so that any prefix of the
//! bytes that survives a crash is a consistent state: a [`WalRecord::Snapshot`] if a snapshot was
//! installed (after its data file is durable), then [`encode_entries`] of the entries to persist,
//! then a [`WalRecord::HardState`] if it changed (its `commit_index` may refer to those entries).
//! Fsync before sending anything that depends on them. A failed write or fsync is fatal.
//!
//! **Rotation.** When the newest segment has reached [`SEGMENT_BYTES_TARGET`], fsync it, create
//! the next sequence number with [`segment_header`], fsync the new file and the directory, and
//! append there. A non-last segment is therefore always complete, which is why a damaged record
//! in one is corruption and never a torn tail. Never recycle or preallocate segment files with old
//! contents: stale frames after a torn tail would look like corruption.
//!
//! **Compaction.** Once a snapshot covering up to `S` is durable, write
//! [`compacted_segment`]`(last_seq + 1, hard_state, incarnation, meta, entries after S)` as the next segment,
//! fsync it and the directory, then delete every older segment and keep appending to the new one.
//! Its header marks it *self-contained* and records its length. Recovery starts from the newest
//! complete self-contained segment and reports the older ones as obsolete, so a crash part-way
//! through the deletions is harmless. A self-contained segment cut short by a crash (it is the
//! newest segment, torn before the end of its prelude) is ignored and reported as a torn tail at
//! offset 0, and recovery uses the older segments, which still exist because they are deleted
//! only after the fsync. (Writing it under a temporary name and renaming it into place works too.)
//! Keep the previous snapshot's data until the compacted segment is durable, since until then
//! recovery returns the previous snapshot's metadata.
//!
//! # Torn tail or corruption
//!
//! The crash model: a crash may lose any suffix of the bytes appended since the last fsync, and
//! may leave zeros or garbage in their place. Storage never silently changes fsynced bytes; if it
//! does, that is corruption, and the node must stop rather than serve from a shortened log.
//!
//! Scanning a segment stops at the first bad frame (too short for its header, a length of 0 or
//! above [`RECORD_BYTES_MAX`], running past the end of the file, or a checksum mismatch). The bad
//! frame is a **torn tail** when it can be the remains of the last write: the rest of the file is
//! all zeros, or no well-formed frame with a valid checksum and a decodable record starts anywhere
//! after it (found by trying every later byte offset). Otherwise something valid was written after
//! it, so the bad frame was once good: **corruption**. A flipped bit in any record but the last
//! leaves the later records intact, so it is always caught; a flipped bit in the very last record
//! is indistinguishable from a torn write and is truncated, the same as etcd and most WALs do.
//!
//! A frame whose checksum verifies but whose payload does not decode is corruption wherever it is:
//! a torn write cannot produce a matching checksum, so the bytes are what some writer meant to
//! write (a newer format, or a bug), and dropping them could lose durable state.
//!
//! A torn tail is accepted only in the newest segment. Anywhere else, or a bad segment header
//! (other than a header cut short in the newest segment), is corruption.
//!
//! Known limitations: storage that persists unsynced pages out of order, so that a valid record
//! survives after a lost one, is reported as corruption: from the bytes alone that cannot be told
//! from a damaged durable record, and refusing to start is the safe side. The resynchronisation
//! is bounded (about 64 times the rest of the file in
//! checksummed bytes) and reports corruption when it runs out, which only adversarial contents can
//! cause. A torn record whose payload happens to embed a complete valid frame (a client can store
//! one as a value) is reported as corruption, so an operator has to truncate it by hand; binding
//! each checksum to the frame's offset would remove this, at the price of a format change.

use crate::codec::{self, WIRE_VERSION};
use crate::message::{Entry, HardState, SnapshotMeta};
use crate::types::{LogIndex, Term};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 6] = *b"SCWAL\0";
/// The version of the segment and frame layout. Bumped on any incompatible change.
pub const WAL_FORMAT_VERSION: u16 = 1;
/// The length of the header at the start of every segment.
pub const SEGMENT_HEADER_BYTES: usize = 28;
/// The length of a frame's `[len][crc32c]` prefix.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The largest payload a frame may carry. A larger length prefix is damage, never an allocation.
pub const RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A driver starts a new segment once the current one has reached this size.
pub const SEGMENT_BYTES_TARGET: u64 = 64 * 1024 * 1024;
/// [`encode_entries`] splits a batch into records of about this many bytes (by
/// [`Entry::size_bytes`]), far below [`RECORD_BYTES_MAX`] so an estimate that runs a little
/// short still fits.
pub const ENTRIES_RECORD_BYTES_TARGET: usize = 4 * 1024 * 1024;

/// The number of [`WalRecord`] variants. Postcard writes the variant index as the payload's
/// second byte, which lets the resynchronising scan skip most garbage without checksumming it.
const WAL_RECORD_VARIANTS: u8 = 4;

/// One durable change to a node's persistent state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum WalRecord {
    /// The node's term, vote and commit index from now on.
    HardState(HardState),
    /// Contiguous entries. The first entry's index truncates every entry at or after it before
    /// the entries are appended, so a driver persists exactly the entries a `Ready` hands it: a
    /// conflicting tail is replaced, and entries the node still holds are never re-persisted.
    Entries(Vec<Entry>),
    /// A snapshot covering up to `last_index` was durably installed. As in the Raft paper
    /// (figure 13): if the log holds the entry at `last_index` with term `last_term`, the entries
    /// after it are kept; otherwise the whole log is discarded.
    Snapshot(SnapshotMeta),
    /// The node started again: its incarnation from now on, one more than the last. Request ids
    /// carry it (see `node::RequestIds`), so no id repeats across restarts. Written and synced
    /// at start, before any request is taken.
    Incarnation(u64),
}

/// What a segment's header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub seq: u64,
    /// 0 for an ordinary segment. For a segment written by [`compacted_segment`], the length of
    /// the complete state it starts with, header included.
    pub prelude_len: u64,
}

impl SegmentHeader {
    /// Whether the segment starts with the complete state, making older segments obsolete.
    pub fn is_self_contained(&self) -> bool {
        self.prelude_len > 0
    }
}

/// How a segment ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a valid header or record.
    Clean,
    /// The end of the last write was lost in a crash; truncating the file to `offset` repairs it.
    /// Only acceptable in the newest segment.
    Torn { offset: u64, reason: String },
    /// Damage at `offset` with valid data after it, or a bad header: the WAL cannot be trusted.
    Corrupt { offset: u64, reason: String },
}

/// A record and the offset of its frame in the segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedRecord {
    pub offset: u64,
    pub record: WalRecord,
}

/// The result of [`scan_segment`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// `None` when the header is missing or invalid; then `tail` says why.
    pub header: Option<SegmentHeader>,
    /// The valid records, in order.
    pub records: Vec<ScannedRecord>,
    /// The length of the valid prefix: the end of the last valid record (or of the header).
    pub valid_len: u64,
    pub tail: Tail,
}

/// A segment was torn by a crash; the driver truncates it to `offset` before appending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub seq: u64,
    /// Truncate the segment to this length. Below [`SEGMENT_HEADER_BYTES`] (a torn header, or an
    /// unfinished compaction, which is reported at 0), write [`segment_header`]`(seq)` again.
    pub offset: u64,
    pub reason: String,
}

/// The persistent state rebuilt from the segments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The latest [`WalRecord::Incarnation`]; 0 if none was written.
    pub incarnation: u64,
    pub snapshot: Option<SnapshotMeta>,
    /// The log after the snapshot: contiguous, starting at the snapshot's `last_index + 1` (or at
    /// 1 without a snapshot).
    pub entries: Vec<Entry>,
    pub torn_tail: Option<TornTail>,
    /// The newest segment's sequence number, to keep appending to; 0 when there are none.
    pub last_seq: u64,
    /// Segments older than the newest self-contained one, left behind by an interrupted
    /// compaction. Their records were not read; the driver deletes them.
    pub obsolete_seqs: Vec<u64>,
}

/// Why the WAL cannot be recovered. The node must not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    #[error("WAL segment {file} is corrupt at offset {offset}: {reason}")]
    Corrupt { file: String, offset: u64, reason: String },
    #[error("WAL segment {next} comes after {previous}: segments must be in ascending order")]
    OutOfOrder { previous: String, next: String },
    #[error("WAL segment {next} does not directly follow {previous}: a segment is missing")]
    Gap { previous: String, next: String },
    #[error(
        "the oldest WAL segment {file} is neither segment 1 nor self-contained: older segments \
         are missing"
    )]
    MissingStart { file: String },
}

/// The file name of segment `seq`: 20 zero-padded decimal digits and `.wal`, so that names sort
/// in sequence order.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The sequence number in a name produced by [`segment_file_name`]; `None` for anything else.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header that starts segment `seq`.
pub fn segment_header(seq: u64) -> Vec<u8> {
    header_bytes(seq, 0)
}

fn header_bytes(seq: u64, prelude_len: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES);
    header.extend_from_slice(&SEGMENT_MAGIC);
    header.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    header.extend_from_slice(&seq.to_le_bytes());
    header.extend_from_slice(&prelude_len.to_le_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(header.len(), SEGMENT_HEADER_BYTES, "the header has a fixed length");
    header
}

/// Frames one record: length, checksum, payload.
///
/// # Panics
///
/// If the encoded record exceeds [`RECORD_BYTES_MAX`]: recovery would reject it, so writing it
/// would make the WAL unrecoverable. [`encode_entries`] keeps batches far below the limit; a
/// single entry that large is a bug in the limits of the Raft configuration.
pub fn encode_record(record: &WalRecord) -> Vec<u8> {
    let payload = codec::encode(record);
    assert!(
        !payload.is_empty() && payload.len() <= RECORD_BYTES_MAX,
        "a WAL record is between 1 and RECORD_BYTES_MAX bytes (this one is {})",
        payload.len()
    );
    let crc = crc32c::crc32c(&payload);
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&payload);
    // Check both sides: verify the checksum on the bytes that will be written, not only on the
    // payload it was computed from.
    assert_eq!(
        crc32c::crc32c(&frame[FRAME_HEADER_BYTES..]),
        u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]),
        "a WAL frame's checksum verifies before it is written"
    );
    debug_assert!(
        matches!(read_frame(&frame, 0), FrameRead::Valid { record: ref read, .. } if read == record),
        "a WAL frame reads back as the record it was built from"
    );
    frame
}

/// Frames `entries` as one or more [`WalRecord::Entries`] records of about
/// [`ENTRIES_RECORD_BYTES_TARGET`] bytes each. Only the first record truncates anything: each
/// later one starts right after the previous one's last entry. Empty input gives no bytes.
pub fn encode_entries(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start + 1;
        let mut bytes = entries[start].size_bytes();
        while end < entries.len()
            && bytes + entries[end].size_bytes() <= ENTRIES_RECORD_BYTES_TARGET
        {
            bytes += entries[end].size_bytes();
            end += 1;
        }
        out.extend_from_slice(&encode_record(&WalRecord::Entries(entries[start..end].to_vec())));
        start = end;
    }
    out
}

/// The complete bytes of a self-contained segment `seq`: its header (which records the length of
/// these bytes), the hard state, the snapshot's metadata and every entry after the snapshot. See
/// the module documentation for how a driver installs it and then deletes the older segments.
///
/// # Panics
///
/// If `entries` are not contiguous starting at `snapshot.last_index + 1`: this segment becomes the
/// only copy of the log, so a hole in it must never reach the disk.
pub fn compacted_segment(
    seq: u64,
    hard_state: &HardState,
    incarnation: u64,
    snapshot: &SnapshotMeta,
    entries: &[Entry],
) -> Vec<u8> {
    let mut expected = snapshot.last_index.next();
    for entry in entries {
        assert_eq!(
            entry.index, expected,
            "a compacted segment's entries are contiguous and start right after the snapshot"
        );
        expected = expected.next();
    }
    let mut records = encode_record(&WalRecord::HardState(hard_state.clone()));
    if incarnation > 0 {
        records.extend_from_slice(&encode_record(&WalRecord::Incarnation(incarnation)));
    }
    records.extend_from_slice(&encode_record(&WalRecord::Snapshot(snapshot.clone())));
    records.extend_from_slice(&encode_entries(entries));
    let mut out = header_bytes(seq, (SEGMENT_HEADER_BYTES + records.len()) as u64);
    out.extend_from_slice(&records);
    debug_assert!(
        matches!(
            recover(&[(seq, &out)]),
            Ok(ref r) if r.hard_state == *hard_state
                && r.incarnation == incarnation
                && r.snapshot.as_ref() == Some(snapshot)
                && r.entries == entries
        ),
        "a compacted segment recovers to the state it was built from"
    );
    out
}

/// Reads one segment: its header, its valid records and how it ends. Never panics; see the
/// module documentation for the rule that tells a torn tail from corruption.
pub fn scan_segment(bytes: &[u8]) -> SegmentScan {
    let header = match parse_header(bytes) {
        Ok(header) => header,
        Err(reason) => {
            let tail = if header_is_torn(bytes) {
                Tail::Torn { offset: 0, reason }
            } else {
                Tail::Corrupt { offset: 0, reason }
            };
            return SegmentScan { header: None, records: Vec::new(), valid_len: 0, tail };
        }
    };
    let mut records = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    let tail = loop {
        if pos == bytes.len() {
            break Tail::Clean;
        }
        match read_frame(bytes, pos) {
            FrameRead::Valid { record, end } => {
                records.push(ScannedRecord { offset: pos as u64, record });
                pos = end;
            }
            FrameRead::Bad { reason, checksum_ok } => {
                break classify_bad_frame(bytes, pos, reason, checksum_ok);
            }
        }
    };
    SegmentScan { header: Some(header), records, valid_len: pos as u64, tail }
}

/// Rebuilds the persistent state from every segment, given in ascending sequence order.
///
/// Recovery starts at the newest complete self-contained segment (or at segment 1), requires
/// consecutive sequence numbers from there on, and accepts a torn tail only in the newest segment
/// (where a self-contained segment torn inside its prelude is ignored as a whole). Records
/// that break an invariant of Raft's persistent state (a decreasing term, a second vote in a term,
/// a decreasing commit index, a hole in the log, a replaced committed entry, ...) are reported as
/// corruption at their offset. Never panics.
pub fn recover(segments: &[(u64, &[u8])]) -> Result<Recovered, WalError> {
    for pair in segments.windows(2) {
        if pair[1].0 <= pair[0].0 {
            return Err(WalError::OutOfOrder {
                previous: segment_file_name(pair[0].0),
                next: segment_file_name(pair[1].0),
            });
        }
    }
    let Some(&(last_seq, _)) = segments.last() else {
        return Ok(Recovered::default());
    };
    let last = segments.len() - 1;
    let corrupt = |seq: u64, offset: u64, reason: String| WalError::Corrupt {
        file: segment_file_name(seq),
        offset,
        reason,
    };

    // Recovery starts at the newest complete self-contained segment. Older segments are
    // leftovers of a compaction whose deletions were interrupted, and are not read at all.
    let mut base = None;
    let mut incomplete_compaction = None;
    for (i, &(seq, bytes)) in segments.iter().enumerate().rev() {
        let prelude_len = match parse_header(bytes) {
            Ok(header) if header.seq == seq && header.is_self_contained() => header.prelude_len,
            _ => continue,
        };
        let scan = scan_segment(bytes);
        if scan.valid_len >= prelude_len {
            base = Some((i, scan));
            break;
        }
        // A compaction cut short by a crash. The older segments are deleted only after it is
        // durable, so it can only be the newest segment, torn (not corrupt) before its end.
        let short = format!(
            "the segment ends at offset {} inside its self-contained prelude of {prelude_len} \
             bytes",
            scan.valid_len
        );
        match scan.tail {
            Tail::Corrupt { offset, reason } => return Err(corrupt(seq, offset, reason)),
            _ if i == last && i > 0 => incomplete_compaction = Some(short),
            _ if i == last => {
                return Err(corrupt(
                    seq,
                    scan.valid_len,
                    format!("{short}, and no older segment remains"),
                ));
            }
            _ => {
                return Err(corrupt(
                    seq,
                    scan.valid_len,
                    format!("{short}, in a segment that is not the newest"),
                ));
            }
        }
    }
    let (base, mut base_scan) = match base {
        Some((i, scan)) => (i, Some(scan)),
        None if segments[0].0 == 1 => (0, None),
        None => return Err(WalError::MissingStart { file: segment_file_name(segments[0].0) }),
    };

    let mut replay = Replay::default();
    let mut torn_tail = None;
    for (i, &(seq, bytes)) in segments.iter().enumerate().skip(base) {
        if i > base && seq != segments[i - 1].0 + 1 {
            return Err(WalError::Gap {
                previous: segment_file_name(segments[i - 1].0),
                next: segment_file_name(seq),
            });
        }
        if i == last
            && let Some(reason) = incomplete_compaction.take()
        {
            // None of its records are applied: the older segments hold the same state.
            torn_tail = Some(TornTail { seq, offset: 0, reason });
            break;
        }
        let scan = base_scan.take().unwrap_or_else(|| scan_segment(bytes));
        if let Some(header) = scan.header
            && header.seq != seq
        {
            return Err(corrupt(seq, 0, format!("the header names segment {}", header.seq)));
        }
        for scanned in scan.records {
            replay.apply(scanned.record).map_err(|reason| corrupt(seq, scanned.offset, reason))?;
        }
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { offset, reason } if i == last => {
                torn_tail = Some(TornTail { seq, offset, reason });
            }
            Tail::Torn { offset, reason } => {
                return Err(corrupt(
                    seq,
                    offset,
                    format!("{reason}, in a segment that is not the newest"),
                ));
            }
            Tail::Corrupt { offset, reason } => return Err(corrupt(seq, offset, reason)),
        }
    }
    debug_assert!(
        replay.entries.first().is_none_or(|e| e.index == replay.snapshot_last().0.next()),
        "the recovered log starts right after the snapshot"
    );
    Ok(Recovered {
        hard_state: replay.hard_state,
        incarnation: replay.incarnation,
        snapshot: replay.snapshot,
        entries: replay.entries,
        torn_tail,
        last_seq,
        obsolete_seqs: segments[..base].iter().map(|&(seq, _)| seq).collect(),
    })
}

fn parse_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!(
            "the segment is {} bytes long, shorter than its {SEGMENT_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    };
    if header[..6] != SEGMENT_MAGIC {
        return Err("bad magic: not a WAL segment".to_string());
    }
    let version = u16::from_le_bytes([header[6], header[7]]);
    if version != WAL_FORMAT_VERSION {
        return Err(format!(
            "unsupported WAL format version {version} (this build reads version \
             {WAL_FORMAT_VERSION})"
        ));
    }
    if crc32c::crc32c(&header[..24]) != read_u32(header, 24) {
        return Err("header checksum mismatch".to_string());
    }
    let seq = read_u64(header, 8);
    let prelude_len = read_u64(header, 16);
    if prelude_len != 0 && prelude_len < SEGMENT_HEADER_BYTES as u64 {
        return Err(format!("a prelude length of {prelude_len} is shorter than the header"));
    }
    Ok(SegmentHeader { seq, prelude_len })
}

/// Whether an invalid header looks like a crash right after the segment was created: every
/// non-zero byte lies within the header, and the magic and version bytes present are right.
fn header_is_torn(bytes: &[u8]) -> bool {
    let nonzero_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if nonzero_end > SEGMENT_HEADER_BYTES {
        return false;
    }
    let mut expected = SEGMENT_MAGIC.to_vec();
    expected.extend_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    let checked = nonzero_end.min(expected.len());
    bytes[..checked] == expected[..checked]
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a 4-byte slice"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("an 8-byte slice"))
}

enum FrameRead {
    Valid {
        record: WalRecord,
        end: usize,
    },
    /// `checksum_ok`: the frame is complete and its checksum verifies, only the payload is bad.
    Bad {
        reason: String,
        checksum_ok: bool,
    },
}

fn read_frame(bytes: &[u8], pos: usize) -> FrameRead {
    let bad = |reason: String| FrameRead::Bad { reason, checksum_ok: false };
    let rest = bytes.get(pos..).unwrap_or_default();
    if rest.len() < FRAME_HEADER_BYTES {
        return bad(format!(
            "a frame header runs past the end of the segment ({} of {FRAME_HEADER_BYTES} bytes)",
            rest.len()
        ));
    }
    let len = read_u32(rest, 0) as usize;
    if len == 0 {
        return bad("a record of length 0".to_string());
    }
    if len > RECORD_BYTES_MAX {
        return bad(format!("a record length of {len} bytes exceeds RECORD_BYTES_MAX"));
    }
    let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
        return bad(format!(
            "a record of {len} bytes runs past the end of the segment ({} bytes present)",
            rest.len() - FRAME_HEADER_BYTES
        ));
    };
    if crc32c::crc32c(payload) != read_u32(rest, 4) {
        return bad(format!("checksum mismatch in a record of {len} bytes"));
    }
    match codec::decode::<WalRecord>(payload, RECORD_BYTES_MAX) {
        Ok(record) => FrameRead::Valid { record, end: pos + FRAME_HEADER_BYTES + len },
        Err(e) => FrameRead::Bad {
            reason: format!("the checksum verifies but the record does not decode: {e}"),
            checksum_ok: true,
        },
    }
}

/// Decides whether the bad frame at `pos` is a torn tail or corruption (see the module docs).
fn classify_bad_frame(bytes: &[u8], pos: usize, reason: String, checksum_ok: bool) -> Tail {
    let offset = pos as u64;
    if checksum_ok {
        return Tail::Corrupt { offset, reason };
    }
    let rest = &bytes[pos..];
    if rest.iter().all(|&b| b == 0) {
        return Tail::Torn {
            offset,
            reason: format!("a zero-filled tail of {} bytes", rest.len()),
        };
    }
    match find_valid_frame_after(bytes, pos) {
        Resync::NotFound => Tail::Torn { offset, reason },
        Resync::Found(at) => Tail::Corrupt {
            offset,
            reason: format!("{reason}, yet a valid record follows at offset {at}"),
        },
        Resync::BudgetExhausted => Tail::Corrupt {
            offset,
            reason: format!("{reason}, and the scan for valid records after it gave up"),
        },
    }
}

enum Resync {
    NotFound,
    Found(u64),
    BudgetExhausted,
}

/// Looks for a complete frame with a valid checksum and a decodable record at any offset after
/// `pos`. Cheap tests (length, version byte, variant byte) reject almost every offset of random
/// or zeroed bytes before any checksum is computed; the checksummed bytes are capped so that
/// hostile contents cannot make this quadratic.
fn find_valid_frame_after(bytes: &[u8], pos: usize) -> Resync {
    let rest_len = (bytes.len() - pos) as u64;
    let mut budget = rest_len.saturating_mul(64).saturating_add(64 * 1024 * 1024);
    let mut at = pos + 1;
    while at + FRAME_HEADER_BYTES + 2 <= bytes.len() {
        let frame = &bytes[at..];
        let len = read_u32(frame, 0) as usize;
        let plausible = (2..=RECORD_BYTES_MAX).contains(&len)
            && FRAME_HEADER_BYTES + len <= frame.len()
            && frame[FRAME_HEADER_BYTES] == WIRE_VERSION
            && frame[FRAME_HEADER_BYTES + 1] < WAL_RECORD_VARIANTS;
        if plausible {
            if budget < len as u64 {
                return Resync::BudgetExhausted;
            }
            budget -= len as u64;
            if let FrameRead::Valid { .. } = read_frame(bytes, at) {
                return Resync::Found(at as u64);
            }
        }
        at += 1;
    }
    Resync::NotFound
}

/// The state being rebuilt, with the checks that make a damaged or impossible history an error.
#[derive(Default)]
struct Replay {
    hard_state: HardState,
    incarnation: u64,
    snapshot: Option<SnapshotMeta>,
    /// Contiguous, starting at `snapshot_last().0 + 1`.
    entries: Vec<Entry>,
}

impl Replay {
    fn snapshot_last(&self) -> (LogIndex, Term) {
        self.snapshot.as_ref().map_or((LogIndex::ZERO, Term::ZERO), |m| (m.last_index, m.last_term))
    }

    fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(self.snapshot_last().0, |e| e.index)
    }

    /// The position of `index` in `entries`, if it is there.
    fn position(&self, index: LogIndex) -> Option<usize> {
        let first = self.snapshot_last().0.next();
        if index < first || index > self.last_index() {
            return None;
        }
        usize::try_from(index.0 - first.0).ok()
    }

    /// The term of the entry at `index`, including the snapshot's last entry (and index 0).
    fn term_at(&self, index: LogIndex) -> Option<Term> {
        let (snapshot_index, snapshot_term) = self.snapshot_last();
        if index == snapshot_index {
            return Some(snapshot_term);
        }
        self.position(index).map(|p| self.entries[p].term)
    }

    fn apply(&mut self, record: WalRecord) -> Result<(), String> {
        match record {
            WalRecord::HardState(hard_state) => self.apply_hard_state(hard_state),
            WalRecord::Entries(entries) => self.apply_entries(entries),
            WalRecord::Snapshot(meta) => self.apply_snapshot(meta),
            WalRecord::Incarnation(n) if n <= self.incarnation => Err(format!(
                "incarnation {n} follows incarnation {}: it only grows",
                self.incarnation
            )),
            WalRecord::Incarnation(n) => {
                self.incarnation = n;
                Ok(())
            }
        }
    }

    fn apply_hard_state(&mut self, new: HardState) -> Result<(), String> {
        let old = &self.hard_state;
        if new.current_term < old.current_term {
            return Err(format!(
                "current_term decreases from {} to {}",
                old.current_term, new.current_term
            ));
        }
        if new.current_term == old.current_term
            && old.voted_for.is_some()
            && new.voted_for != old.voted_for
        {
            return Err(format!(
                "the vote in term {} changes from {:?} to {:?}: a node votes at most once per term",
                new.current_term, old.voted_for, new.voted_for
            ));
        }
        if new.commit_index < old.commit_index {
            return Err(format!(
                "commit_index decreases from {} to {}",
                old.commit_index, new.commit_index
            ));
        }
        self.hard_state = new;
        Ok(())
    }

    fn apply_entries(&mut self, new: Vec<Entry>) -> Result<(), String> {
        let Some(first) = new.first() else {
            return Ok(());
        };
        for pair in new.windows(2) {
            if pair[1].index != pair[0].index.next() {
                return Err(format!(
                    "entry {} follows entry {} in one record: entries are contiguous",
                    pair[1].index, pair[0].index
                ));
            }
            if pair[1].term < pair[0].term {
                return Err(format!(
                    "the term decreases from {} to {} at entry {}",
                    pair[0].term, pair[1].term, pair[1].index
                ));
            }
        }
        let (snapshot_index, _) = self.snapshot_last();
        if first.index <= snapshot_index {
            return Err(format!(
                "entries start at {}, inside the snapshot that ends at {snapshot_index}",
                first.index
            ));
        }
        let last = self.last_index();
        if first.index > last.next() {
            return Err(format!(
                "entries start at {} but the log ends at {last}: a hole in the log",
                first.index
            ));
        }
        let previous_term = self.term_at(first.index.prev()).unwrap_or(Term::ZERO);
        if first.term < previous_term {
            return Err(format!(
                "the term decreases from {previous_term} to {} at entry {}",
                first.term, first.index
            ));
        }
        // A committed entry is never removed or replaced; checking it here is the last defence
        // against a log that lost a committed entry.
        let commit_index = self.hard_state.commit_index;
        let mut index = first.index;
        while index <= last && index <= commit_index {
            let kept = usize::try_from(index.0 - first.index.0)
                .ok()
                .and_then(|i| new.get(i))
                .is_some_and(|e| Some(e.term) == self.term_at(index));
            if !kept {
                return Err(format!(
                    "entries starting at {} replace committed entry {index} (commit_index \
                     {commit_index})",
                    first.index
                ));
            }
            index = index.next();
        }
        let keep = self.position(first.index).unwrap_or(self.entries.len());
        self.entries.truncate(keep);
        self.entries.extend(new);
        Ok(())
    }

    fn apply_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), String> {
        let (snapshot_index, snapshot_term) = self.snapshot_last();
        if meta.last_index < snapshot_index {
            return Err(format!(
                "a snapshot ending at {} follows one ending at {snapshot_index}",
                meta.last_index
            ));
        }
        if self.snapshot.is_some()
            && meta.last_index == snapshot_index
            && meta.last_term != snapshot_term
        {
            return Err(format!(
                "a snapshot ending at {} with term {} follows one with term {snapshot_term}",
                meta.last_index, meta.last_term
            ));
        }
        match self.position(meta.last_index) {
            Some(p) if self.entries[p].term == meta.last_term => {
                self.entries.drain(..=p);
            }
            _ if meta.last_index == snapshot_index => {}
            _ => {
                if meta.last_index <= self.hard_state.commit_index
                    && self.term_at(meta.last_index).is_some_and(|t| t != meta.last_term)
                {
                    return Err(format!(
                        "a snapshot ending at {} with term {} conflicts with committed entry {}",
                        meta.last_index, meta.last_term, meta.last_index
                    ));
                }
                self.entries.clear();
            }
        }
        self.snapshot = Some(meta);
        Ok(())
    }
}
