use super::*;
use crate::message::{EntryPayload, Membership};
use crate::types::NodeId;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn entry(index: u64, term: u64) -> Entry {
    entry_tagged(index, term, "")
}

/// An entry whose payload also carries `tag`, so a replaced entry is told from the original.
fn entry_tagged(index: u64, term: u64, tag: &str) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        payload: EntryPayload::Command(Bytes::from(format!("cmd-{index}-{term}{tag}"))),
    }
}

fn entries(first: u64, last: u64, term: u64) -> Vec<Entry> {
    (first..=last).map(|i| entry(i, term)).collect()
}

fn hard(term: u64, voted_for: Option<u64>, commit: u64) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
        commit_index: LogIndex(commit),
    }
}

fn meta(last_index: u64, last_term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index: LogIndex(last_index),
        last_term: Term(last_term),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    }
}

/// A segment holding `records`, with the offset at which each record's frame starts.
fn segment_with_offsets(seq: u64, records: &[WalRecord]) -> (Vec<u8>, Vec<usize>) {
    let mut bytes = segment_header(seq);
    let mut offsets = Vec::new();
    for record in records {
        offsets.push(bytes.len());
        bytes.extend_from_slice(&encode_record(record));
    }
    (bytes, offsets)
}

fn segment(seq: u64, records: &[WalRecord]) -> Vec<u8> {
    segment_with_offsets(seq, records).0
}

/// Recovers segments numbered from `first_seq` upwards.
fn recover_from(first_seq: u64, segments: &[Vec<u8>]) -> Result<Recovered, WalError> {
    let input: Vec<(u64, &[u8])> =
        segments.iter().enumerate().map(|(i, s)| (first_seq + i as u64, s.as_slice())).collect();
    recover(&input)
}

fn recover_all(segments: &[Vec<u8>]) -> Result<Recovered, WalError> {
    recover_from(1, segments)
}

/// Recovers the records as one segment; the state they describe, or the error.
fn replay(records: &[WalRecord]) -> Result<Recovered, WalError> {
    recover_all(&[segment(1, records)])
}

fn expect_corrupt(result: Result<Recovered, WalError>) -> (String, u64, String) {
    match result {
        Err(WalError::Corrupt { file, offset, reason }) => (file, offset, reason),
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

/// Deterministic pseudo-random bytes for garbage tails.
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

/// Four records whose replay is simple to state; used by the damage tests.
fn four_records() -> Vec<WalRecord> {
    vec![
        WalRecord::HardState(hard(1, Some(1), 0)),
        WalRecord::Entries(entries(1, 3, 1)),
        WalRecord::HardState(hard(1, Some(1), 2)),
        WalRecord::Entries(entries(4, 6, 1)),
    ]
}

#[test]
fn segment_file_names_roundtrip_and_sort_by_sequence() {
    // File names are fixed-width so that sorting names sorts sequence numbers.
    assert_eq!(segment_file_name(1), "00000000000000000001.wal");
    assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.wal");
    for seq in [0, 1, 9, 10, 12_345, u64::MAX] {
        assert_eq!(parse_segment_file_name(&segment_file_name(seq)), Some(seq));
    }
    assert!(segment_file_name(9) < segment_file_name(10));
    for bad in [
        "1.wal",
        "0000000000000000001.wal",
        "000000000000000000001.wal",
        "+0000000000000000001.wal",
        "99999999999999999999.wal",
        "00000000000000000001.wal.tmp",
        "00000000000000000001.log",
        "0000000000000000000a.wal",
        "",
    ] {
        assert_eq!(parse_segment_file_name(bad), None, "{bad:?}");
    }
}

#[test]
fn segment_header_layout_is_as_documented() {
    // The header is magic, version, sequence number, prelude length and a checksum of those,
    // little-endian.
    let header = segment_header(0x0102_0304_0506_0708);
    assert_eq!(header.len(), SEGMENT_HEADER_BYTES);
    assert_eq!(&header[0..6], b"SCWAL\0");
    assert_eq!(&header[6..8], &1u16.to_le_bytes());
    assert_eq!(&header[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
    assert_eq!(&header[16..24], &0u64.to_le_bytes());
    assert_eq!(&header[24..28], &crc32c::crc32c(&header[..24]).to_le_bytes());
    let scan = scan_segment(&header);
    assert_eq!(scan.header, Some(SegmentHeader { seq: 0x0102_0304_0506_0708, prelude_len: 0 }));
    assert_eq!(scan.tail, Tail::Clean);
    assert_eq!(scan.valid_len, SEGMENT_HEADER_BYTES as u64);
}

#[test]
fn frame_is_length_checksum_payload() {
    // A frame is [len u32 LE][crc32c(payload) u32 LE][codec::encode(record)].
    let record = WalRecord::HardState(hard(3, Some(2), 1));
    let frame = encode_record(&record);
    let payload = codec::encode(&record);
    assert_eq!(&frame[0..4], &(payload.len() as u32).to_le_bytes());
    assert_eq!(&frame[4..8], &crc32c::crc32c(&payload).to_le_bytes());
    assert_eq!(&frame[8..], payload.as_slice());
}

#[test]
fn record_variant_index_is_the_second_payload_byte() {
    // The resynchronising scan's prefilter relies on postcard writing the variant index there.
    let records = [
        WalRecord::HardState(hard(1, None, 0)),
        WalRecord::Entries(entries(1, 1, 1)),
        WalRecord::Snapshot(meta(1, 1)),
        WalRecord::Incarnation(1),
    ];
    assert_eq!(records.len(), usize::from(WAL_RECORD_VARIANTS));
    for (i, record) in records.iter().enumerate() {
        let payload = codec::encode(record);
        assert_eq!(payload[0], WIRE_VERSION);
        assert_eq!(usize::from(payload[1]), i);
    }
}

#[test]
fn roundtrip_many_records_across_segments() {
    // Records spread over several segments scan back unchanged and replay to the expected state.
    let segments_records = vec![
        vec![WalRecord::HardState(hard(1, Some(1), 0)), WalRecord::Entries(entries(1, 10, 1))],
        vec![WalRecord::HardState(hard(2, Some(2), 5)), WalRecord::Entries(entries(11, 20, 2))],
        vec![WalRecord::Entries(entries(21, 30, 2)), WalRecord::HardState(hard(2, Some(2), 25))],
        vec![WalRecord::Snapshot(meta(20, 2))],
        vec![],
        vec![WalRecord::Entries(entries(31, 35, 3)), WalRecord::HardState(hard(3, None, 30))],
    ];
    let segments: Vec<Vec<u8>> =
        segments_records.iter().enumerate().map(|(i, r)| segment(i as u64 + 1, r)).collect();
    for (bytes, records) in segments.iter().zip(&segments_records) {
        let scan = scan_segment(bytes);
        assert_eq!(scan.tail, Tail::Clean);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        let scanned: Vec<WalRecord> = scan.records.into_iter().map(|r| r.record).collect();
        assert_eq!(&scanned, records);
    }
    let recovered = recover_all(&segments).unwrap();
    let mut expected_entries = entries(21, 30, 2);
    expected_entries.extend(entries(31, 35, 3));
    assert_eq!(
        recovered,
        Recovered {
            hard_state: hard(3, None, 30),
            incarnation: 0,
            snapshot: Some(meta(20, 2)),
            entries: expected_entries,
            torn_tail: None,
            last_seq: 6,
            obsolete_seqs: vec![],
        }
    );
}

#[test]
fn no_segments_recover_the_initial_state() {
    // An empty directory is a fresh node: default hard state, no log, no segment yet.
    assert_eq!(recover(&[]).unwrap(), Recovered::default());
}

#[test]
fn entries_record_truncates_conflicting_suffix() {
    // An Entries record replaces every entry at or after its first index, longer or shorter.
    let replaced = vec![entry_tagged(4, 2, "-new"), entry_tagged(5, 2, "-new")];
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 6, 1)),
        WalRecord::HardState(hard(2, Some(2), 2)),
        WalRecord::Entries(replaced.clone()),
    ])
    .unwrap();
    let mut expected = entries(1, 3, 1);
    expected.extend(replaced);
    assert_eq!(recovered.entries, expected);

    let recovered = replay(&[
        WalRecord::Entries(entries(1, 6, 1)),
        WalRecord::Entries(vec![entry_tagged(3, 2, "-new")]),
        WalRecord::Entries(vec![entry_tagged(4, 2, "-new")]),
    ])
    .unwrap();
    let mut expected = entries(1, 2, 1);
    expected.extend([entry_tagged(3, 2, "-new"), entry_tagged(4, 2, "-new")]);
    assert_eq!(recovered.entries, expected);
}

#[test]
fn snapshot_record_drops_covered_entries() {
    // A snapshot that matches the log drops the entries it covers and keeps the ones after it.
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 10, 1)),
        WalRecord::HardState(hard(1, Some(1), 8)),
        WalRecord::Snapshot(meta(6, 1)),
    ])
    .unwrap();
    assert_eq!(recovered.snapshot, Some(meta(6, 1)));
    assert_eq!(recovered.entries, entries(7, 10, 1));

    // Entries after the snapshot continue from it.
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 10, 1)),
        WalRecord::HardState(hard(1, Some(1), 8)),
        WalRecord::Snapshot(meta(6, 1)),
        WalRecord::Entries(entries(11, 12, 1)),
        WalRecord::Snapshot(meta(8, 1)),
    ])
    .unwrap();
    assert_eq!(recovered.snapshot, Some(meta(8, 1)));
    assert_eq!(recovered.entries, entries(9, 12, 1));
}

#[test]
fn snapshot_record_that_conflicts_with_the_log_discards_it() {
    // As in the Raft paper, a snapshot whose last entry is not in the log replaces the whole log.
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 10, 1)),
        WalRecord::HardState(hard(2, None, 3)),
        WalRecord::Snapshot(meta(6, 2)),
    ])
    .unwrap();
    assert_eq!(recovered.snapshot, Some(meta(6, 2)));
    assert_eq!(recovered.entries, vec![]);

    let recovered =
        replay(&[WalRecord::Entries(entries(1, 3, 1)), WalRecord::Snapshot(meta(20, 4))]).unwrap();
    assert_eq!(recovered.snapshot, Some(meta(20, 4)));
    assert_eq!(recovered.entries, vec![]);
    // The next entries start right after the snapshot.
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 3, 1)),
        WalRecord::Snapshot(meta(20, 4)),
        WalRecord::Entries(entries(21, 22, 4)),
    ])
    .unwrap();
    assert_eq!(recovered.entries, entries(21, 22, 4));
}

#[test]
fn impossible_histories_are_corrupt_at_the_offending_record() {
    // Each history breaks one invariant of Raft's persistent state in its last record.
    let cases: Vec<(&str, Vec<WalRecord>, &str)> = vec![
        (
            "a hole in the log",
            vec![WalRecord::Entries(entries(1, 3, 1)), WalRecord::Entries(entries(5, 6, 1))],
            "hole",
        ),
        ("a log that does not start at 1", vec![WalRecord::Entries(entries(2, 3, 1))], "hole"),
        ("entry index 0", vec![WalRecord::Entries(vec![entry(0, 1)])], "inside the snapshot"),
        (
            "entries inside the snapshot",
            vec![
                WalRecord::Entries(entries(1, 5, 1)),
                WalRecord::HardState(hard(1, None, 5)),
                WalRecord::Snapshot(meta(4, 1)),
                WalRecord::Entries(entries(4, 6, 1)),
            ],
            "inside the snapshot",
        ),
        (
            "non-contiguous entries in one record",
            vec![WalRecord::Entries(vec![entry(1, 1), entry(3, 1)])],
            "contiguous",
        ),
        (
            "terms decreasing within a record",
            vec![WalRecord::Entries(vec![entry(1, 2), entry(2, 1)])],
            "term decreases",
        ),
        (
            "terms decreasing across records",
            vec![WalRecord::Entries(entries(1, 2, 3)), WalRecord::Entries(entries(3, 3, 2))],
            "term decreases",
        ),
        (
            "current_term decreasing",
            vec![WalRecord::HardState(hard(3, None, 0)), WalRecord::HardState(hard(2, None, 0))],
            "current_term decreases",
        ),
        (
            "a second vote in one term",
            vec![
                WalRecord::HardState(hard(3, Some(1), 0)),
                WalRecord::HardState(hard(3, Some(2), 0)),
            ],
            "at most once per term",
        ),
        (
            "a withdrawn vote",
            vec![WalRecord::HardState(hard(3, Some(1), 0)), WalRecord::HardState(hard(3, None, 0))],
            "at most once per term",
        ),
        (
            "commit_index decreasing",
            vec![
                WalRecord::Entries(entries(1, 3, 1)),
                WalRecord::HardState(hard(1, None, 3)),
                WalRecord::HardState(hard(1, None, 2)),
            ],
            "commit_index decreases",
        ),
        (
            "a committed entry replaced",
            vec![
                WalRecord::Entries(entries(1, 5, 1)),
                WalRecord::HardState(hard(2, None, 4)),
                WalRecord::Entries(entries(4, 6, 2)),
            ],
            "replace committed entry 4",
        ),
        (
            "a committed entry truncated away",
            vec![
                WalRecord::Entries(entries(1, 5, 1)),
                WalRecord::HardState(hard(1, None, 4)),
                WalRecord::Entries(entries(3, 3, 1)),
            ],
            "replace committed entry 4",
        ),
        (
            "a snapshot moving backwards",
            vec![
                WalRecord::Entries(entries(1, 5, 1)),
                WalRecord::HardState(hard(1, None, 5)),
                WalRecord::Snapshot(meta(4, 1)),
                WalRecord::Snapshot(meta(3, 1)),
            ],
            "follows one ending at 4",
        ),
        (
            "a snapshot conflicting with a committed entry",
            vec![
                WalRecord::Entries(entries(1, 5, 1)),
                WalRecord::HardState(hard(2, None, 5)),
                WalRecord::Snapshot(meta(4, 2)),
            ],
            "conflicts with committed entry 4",
        ),
    ];
    for (name, records, reason_part) in cases {
        let (bytes, offsets) = segment_with_offsets(1, &records);
        let (file, offset, reason) = expect_corrupt(recover_all(&[bytes]));
        assert_eq!(file, segment_file_name(1), "{name}");
        assert_eq!(offset, *offsets.last().unwrap() as u64, "{name}: {reason}");
        assert!(reason.contains(reason_part), "{name}: {reason:?} lacks {reason_part:?}");
    }
}

#[test]
fn re_persisting_committed_entries_unchanged_is_accepted() {
    // Entries equal to committed ones are not a replacement, so a record may repeat them.
    let recovered = replay(&[
        WalRecord::Entries(entries(1, 5, 1)),
        WalRecord::HardState(hard(2, None, 4)),
        WalRecord::Entries(entries(3, 7, 1)),
    ])
    .unwrap();
    assert_eq!(recovered.entries, entries(1, 7, 1));
}

#[test]
fn torn_final_record_is_truncated() {
    // Cutting the segment at every byte offset recovers exactly the records that are complete.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let mut ends: Vec<usize> = offsets[1..].to_vec();
    ends.push(bytes.len());
    for cut in 0..=bytes.len() {
        let recovered = recover_all(&[bytes[..cut].to_vec()]).unwrap();
        let complete = ends.iter().filter(|&&end| end <= cut).count();
        let expected = replay(&records[..complete]).unwrap();
        assert_eq!(recovered.hard_state, expected.hard_state, "cut at {cut}");
        assert_eq!(recovered.entries, expected.entries, "cut at {cut}");
        let valid_len = if cut < SEGMENT_HEADER_BYTES {
            0
        } else {
            complete.checked_sub(1).map_or(SEGMENT_HEADER_BYTES, |i| ends[i])
        };
        let torn_offset = recovered.torn_tail.as_ref().map(|t| (t.seq, t.offset));
        // A file shorter than its header, even an empty one, lacks a header: always torn.
        if cut == valid_len && cut >= SEGMENT_HEADER_BYTES {
            assert_eq!(torn_offset, None, "cut at {cut}");
            assert_eq!(scan_segment(&bytes[..cut]).tail, Tail::Clean, "cut at {cut}");
        } else {
            assert_eq!(torn_offset, Some((1, valid_len as u64)), "cut at {cut}");
            let scan = scan_segment(&bytes[..cut]);
            assert_eq!(scan.valid_len, valid_len as u64, "cut at {cut}");
            assert!(matches!(scan.tail, Tail::Torn { offset, .. } if offset == valid_len as u64));
        }
    }
}

#[test]
fn garbage_after_last_record_is_torn() {
    // Random bytes after the last complete record, or after a partial one, are a torn tail.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let last = *offsets.last().unwrap();
    for (seed, len) in [(1, 1), (2, 7), (3, 8), (4, 100), (5, 5000), (6, 70_000)] {
        for prefix in [bytes.len(), last + 3, last + 9] {
            let mut damaged = bytes[..prefix].to_vec();
            damaged.extend(garbage(len, seed));
            let expected_offset = if prefix == bytes.len() { bytes.len() } else { last };
            let recovered = recover_all(&[damaged]).unwrap();
            assert_eq!(
                recovered.torn_tail.map(|t| t.offset),
                Some(expected_offset as u64),
                "garbage of {len} bytes after {prefix} bytes"
            );
        }
    }
}

#[test]
fn zero_filled_tail_is_torn() {
    // Zeros after the last record (a preallocated or unwritten extent) are a torn tail.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let last = *offsets.last().unwrap();
    for prefix in [bytes.len(), last + 1, last + 8, last + 20] {
        let mut damaged = bytes[..prefix].to_vec();
        damaged.resize(prefix + 4096, 0);
        let recovered = recover_all(&[damaged.clone()]).unwrap();
        let expected_offset = if prefix == bytes.len() { bytes.len() } else { last };
        assert_eq!(recovered.torn_tail.map(|t| t.offset), Some(expected_offset as u64));
        let scan = scan_segment(&damaged);
        assert!(matches!(scan.tail, Tail::Torn { offset, .. } if offset == expected_offset as u64));
    }
}

#[test]
fn flipped_bit_in_middle_record_is_corrupt_with_file_and_offset() {
    // Every single-bit flip in a record that has a valid record after it is corruption, reported
    // with the segment's file name and the damaged record's offset.
    let first = segment(1, &[WalRecord::HardState(hard(1, Some(1), 0))]);
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(2, &records);
    for victim in 0..records.len() - 1 {
        for bit in offsets[victim] * 8..offsets[victim + 1] * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let error = recover_all(&[first.clone(), damaged]).unwrap_err();
            let WalError::Corrupt { file, offset, .. } = &error else {
                panic!("bit {bit}: expected Corrupt, got {error:?}");
            };
            assert_eq!(file, &segment_file_name(2), "bit {bit}");
            assert_eq!(*offset, offsets[victim] as u64, "bit {bit}");
            let message = error.to_string();
            assert!(message.contains("00000000000000000002.wal"), "{message}");
            assert!(message.contains(&format!("offset {}", offsets[victim])), "{message}");
        }
    }
}

#[test]
fn flipped_bit_in_last_record_is_torn() {
    // A flipped bit in the very last record cannot be told from a torn write: it is truncated.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let last = *offsets.last().unwrap();
    let expected = replay(&records[..records.len() - 1]).unwrap();
    for bit in last * 8..bytes.len() * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let recovered = recover_all(&[damaged]).unwrap();
        assert_eq!(recovered.torn_tail.map(|t| t.offset), Some(last as u64), "bit {bit}");
        assert_eq!(recovered.entries, expected.entries);
        assert_eq!(recovered.hard_state, expected.hard_state);
    }
}

#[test]
fn every_single_bit_flip_is_detected_or_truncates_only_the_last_record() {
    // No single flipped bit anywhere in a WAL goes unnoticed: recovery fails, or the bit is in
    // the newest segment's last record and only that record is dropped.
    let (first, _) = segment_with_offsets(
        1,
        &[WalRecord::HardState(hard(1, Some(1), 0)), WalRecord::Entries(entries(1, 2, 1))],
    );
    let records = vec![
        WalRecord::Entries(entries(3, 4, 1)),
        WalRecord::HardState(hard(1, Some(1), 3)),
        WalRecord::Snapshot(meta(2, 1)),
    ];
    let (second, offsets) = segment_with_offsets(2, &records);
    let last = *offsets.last().unwrap();
    let without_last = recover_all(&[first.clone(), segment(2, &records[..2])]).unwrap();
    for (victim, bits) in [(0, first.len() * 8), (1, second.len() * 8)] {
        for bit in 0..bits {
            let mut segments = vec![first.clone(), second.clone()];
            segments[victim][bit / 8] ^= 1 << (bit % 8);
            match recover_all(&segments) {
                Err(_) => {}
                Ok(recovered) => {
                    assert!(victim == 1 && bit / 8 >= last, "segment {victim} bit {bit} unnoticed");
                    assert_eq!(recovered.torn_tail.as_ref().map(|t| t.offset), Some(last as u64));
                    assert_eq!(recovered.entries, without_last.entries);
                    assert_eq!(recovered.hard_state, without_last.hard_state);
                    assert_eq!(recovered.snapshot, without_last.snapshot);
                }
            }
        }
    }
}

#[test]
fn valid_record_after_zeros_is_corrupt() {
    // Zeros with a valid record after them are lost data, not an unwritten tail.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let mut damaged = bytes.clone();
    damaged[offsets[1]..offsets[2]].fill(0);
    let (_, offset, reason) = expect_corrupt(recover_all(&[damaged]));
    assert_eq!(offset, offsets[1] as u64);
    assert!(reason.contains(&format!("valid record follows at offset {}", offsets[2])), "{reason}");
}

#[test]
fn torn_tail_in_non_last_segment_is_corrupt() {
    // Only the newest segment may end in a torn write; older ones were fsynced before rotation.
    let records = four_records();
    let (bytes, offsets) = segment_with_offsets(1, &records);
    let last = *offsets.last().unwrap() as u64;
    let next = segment(2, &[WalRecord::HardState(hard(2, None, 0))]);
    for (damaged, torn_at) in [
        (bytes[..bytes.len() - 1].to_vec(), last),
        ([bytes.as_slice(), &[0; 16]].concat(), bytes.len() as u64),
    ] {
        let (file, offset, reason) = expect_corrupt(recover_all(&[damaged.clone(), next.clone()]));
        assert_eq!(file, segment_file_name(1));
        assert_eq!(offset, torn_at);
        assert!(reason.contains("not the newest"), "{reason}");
        // The same damage in the newest segment is an ordinary torn tail.
        assert!(recover_all(&[damaged]).unwrap().torn_tail.is_some());
    }
    // A segment cut inside its header is as bad when a newer segment exists.
    let (file, offset, _) = expect_corrupt(recover_all(&[bytes[..10].to_vec(), next]));
    assert_eq!((file.as_str(), offset), ("00000000000000000001.wal", 0));
}

#[test]
fn bad_header_is_corrupt() {
    // A damaged or foreign header is corruption even in the newest segment.
    let records = four_records();
    let bytes = segment(1, &records);
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut magic = bytes.clone();
    magic[0] = b'X';
    cases.push(("bad magic", magic));
    let mut version = bytes.clone();
    version[6] = 2;
    cases.push(("unsupported WAL format version 2", version));
    let mut checksum = bytes.clone();
    checksum[25] ^= 0x10;
    cases.push(("header checksum mismatch", checksum));
    let mut prelude = bytes.clone();
    prelude[16] = 200;
    cases.push(("header checksum mismatch", prelude));
    let mut short_prelude = header_bytes(2, 5);
    short_prelude.extend_from_slice(&bytes[SEGMENT_HEADER_BYTES..]);
    cases.push(("prelude length of 5 is shorter than the header", short_prelude));
    cases.push(("shorter than its 28-byte header", b"not a wal".to_vec()));
    for (reason_part, damaged) in cases {
        let (file, offset, reason) =
            expect_corrupt(recover_all(&[segment(1, &[]), damaged.clone()]));
        assert_eq!((file.as_str(), offset), ("00000000000000000002.wal", 0), "{reason_part}");
        assert!(reason.contains(reason_part), "{reason:?} lacks {reason_part:?}");
        assert!(matches!(scan_segment(&damaged).tail, Tail::Corrupt { offset: 0, .. }));
    }
    // A header naming another segment means the file was renamed or misplaced.
    let (_, offset, reason) = expect_corrupt(recover_all(&[segment(2, &records)]));
    assert_eq!(offset, 0);
    assert!(reason.contains("names segment 2"), "{reason}");
}

#[test]
fn torn_header_in_last_segment_is_torn() {
    // A crash right after creating the newest segment leaves a header prefix, zeros or nothing.
    let older = segment(1, &four_records());
    let expected = recover_all(std::slice::from_ref(&older)).unwrap();
    let header = segment_header(2);
    let mut torn_files = vec![vec![], vec![0; 4096], header[..SEGMENT_HEADER_BYTES - 1].to_vec()];
    for cut in [1, 5, 8, 12, 20] {
        let mut file = header[..cut].to_vec();
        file.resize(100, 0);
        torn_files.push(file);
    }
    for torn in torn_files {
        let recovered = recover_all(&[older.clone(), torn.clone()]).unwrap();
        assert_eq!(recovered.torn_tail.as_ref().map(|t| (t.seq, t.offset)), Some((2, 0)));
        assert_eq!(recovered.entries, expected.entries);
        assert_eq!(recovered.last_seq, 2);
        assert_eq!(scan_segment(&torn).header, None);
    }
}

#[test]
fn segment_gap_is_an_error() {
    // Segments must be ascending and consecutive, starting at 1 or at a self-contained segment.
    let one = segment(1, &[]);
    let two = segment(2, &[]);
    let three = segment(3, &[]);
    assert_eq!(
        recover(&[(1, &one), (3, &three)]),
        Err(WalError::Gap { previous: segment_file_name(1), next: segment_file_name(3) })
    );
    assert_eq!(
        recover(&[(2, &two), (1, &one)]),
        Err(WalError::OutOfOrder { previous: segment_file_name(2), next: segment_file_name(1) })
    );
    assert!(matches!(recover(&[(1, &one), (1, &one)]), Err(WalError::OutOfOrder { .. })));
    assert_eq!(
        recover(&[(2, &two), (3, &three)]),
        Err(WalError::MissingStart { file: segment_file_name(2) })
    );
    let message = recover(&[(1, &one), (3, &three)]).unwrap_err().to_string();
    assert!(message.contains("00000000000000000003.wal"), "{message}");
}

#[test]
fn oversize_length_prefix_is_torn_without_allocating() {
    // A length prefix above RECORD_BYTES_MAX is damage; scanning slices and never allocates it.
    let records = four_records();
    let bytes = segment(1, &records);
    for len in [u32::MAX, RECORD_BYTES_MAX as u32 + 1] {
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&len.to_le_bytes());
        damaged.extend_from_slice(&[0xAB; 40]);
        let recovered = recover_all(&[damaged.clone()]).unwrap();
        let torn = recovered.torn_tail.unwrap();
        assert_eq!(torn.offset, bytes.len() as u64);
        assert!(torn.reason.contains("RECORD_BYTES_MAX"), "{}", torn.reason);
        // With a valid record after it, the same frame is corruption.
        damaged.extend_from_slice(&encode_record(&WalRecord::HardState(hard(1, Some(1), 6))));
        let (_, offset, _) = expect_corrupt(recover_all(&[damaged]));
        assert_eq!(offset, bytes.len() as u64);
    }
}

#[test]
fn checksum_valid_but_undecodable_record_is_corrupt() {
    // A complete frame whose checksum verifies was written on purpose, so it is never dropped as
    // a torn tail, even at the end of the newest segment.
    let bytes = segment(1, &four_records());
    for payload in [vec![WIRE_VERSION, 7, 1, 2], vec![WIRE_VERSION + 1, 0, 1, 0, 0], vec![0]] {
        let mut damaged = bytes.clone();
        damaged.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        damaged.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        damaged.extend_from_slice(&payload);
        let (_, offset, reason) = expect_corrupt(recover_all(&[damaged]));
        assert_eq!(offset, bytes.len() as u64);
        assert!(reason.contains("does not decode"), "{reason}");
    }
}

#[test]
fn encode_entries_splits_large_batches_into_records() {
    // A batch larger than ENTRIES_RECORD_BYTES_TARGET becomes several records that replay to it.
    let big = Bytes::from(vec![7u8; 1024 * 1024]);
    let batch: Vec<Entry> = (1..=10)
        .map(|i| Entry {
            term: Term(1),
            index: LogIndex(i),
            payload: EntryPayload::Command(big.clone()),
        })
        .collect();
    let mut bytes = segment_header(1);
    bytes.extend(encode_entries(&batch));
    let scan = scan_segment(&bytes);
    assert_eq!(scan.tail, Tail::Clean);
    assert!(scan.records.len() > 1, "{} records", scan.records.len());
    assert_eq!(recover_all(&[bytes]).unwrap().entries, batch);
    assert!(encode_entries(&[]).is_empty());
}

/// Segments 1..=3 of a history with a snapshot at 6 and entries up to 12 after it.
fn history() -> Vec<Vec<u8>> {
    vec![
        segment(
            1,
            &[WalRecord::HardState(hard(1, Some(1), 0)), WalRecord::Entries(entries(1, 8, 1))],
        ),
        segment(
            2,
            &[WalRecord::HardState(hard(2, Some(3), 7)), WalRecord::Entries(entries(9, 10, 2))],
        ),
        segment(3, &[WalRecord::Snapshot(meta(6, 1)), WalRecord::Entries(entries(11, 12, 2))]),
    ]
}

#[test]
fn compacted_segment_recovers_to_the_same_state() {
    // A compacted segment alone, or after any leftover older segments, recovers the same state.
    let segments = history();
    let before = recover_all(&segments).unwrap();
    let snapshot = before.snapshot.clone().unwrap();
    let compacted = compacted_segment(4, &before.hard_state, 0, &snapshot, &before.entries);
    assert_eq!(
        scan_segment(&compacted).header,
        Some(SegmentHeader { seq: 4, prelude_len: compacted.len() as u64 })
    );
    let alone = recover(&[(4, &compacted)]).unwrap();
    assert_eq!(alone, Recovered { last_seq: 4, ..before.clone() });
    // A crash part-way through deleting the older segments leaves some of them; they are not
    // read, even when damaged, and are reported for deletion.
    for leftovers in 0..=3 {
        let mut all: Vec<(u64, &[u8])> = Vec::new();
        let damaged = b"garbage".to_vec();
        for (i, bytes) in segments.iter().enumerate().skip(3 - leftovers) {
            all.push((i as u64 + 1, if i == 1 { damaged.as_slice() } else { bytes }));
        }
        all.push((4, &compacted));
        let recovered = recover(&all).unwrap();
        assert_eq!(recovered.entries, before.entries);
        assert_eq!(recovered.hard_state, before.hard_state);
        assert_eq!(recovered.snapshot, before.snapshot);
        let expected_obsolete: Vec<u64> = ((4 - leftovers as u64)..4).collect();
        assert_eq!(recovered.obsolete_seqs, expected_obsolete);
    }
    // Appending after the compacted segment and rotating continue from its state.
    let mut appended = compacted.clone();
    appended.extend(encode_entries(&entries(13, 13, 2)));
    let next = segment(5, &[WalRecord::HardState(hard(2, Some(3), 13))]);
    let recovered = recover(&[(3, &segments[2]), (4, &appended), (5, &next)]).unwrap();
    let mut expected = before.entries.clone();
    expected.push(entry(13, 2));
    assert_eq!(recovered.entries, expected);
    assert_eq!(recovered.hard_state, hard(2, Some(3), 13));
    assert_eq!(recovered.obsolete_seqs, vec![3]);
    assert_eq!(recovered.last_seq, 5);
}

#[test]
#[should_panic(expected = "contiguous")]
fn compacted_segment_refuses_a_log_with_a_hole() {
    // The compacted segment becomes the only copy of the log, so a hole is a bug caught early.
    compacted_segment(2, &hard(1, None, 5), 0, &meta(5, 1), &[entry(6, 1), entry(8, 1)]);
}

#[test]
fn compaction_cut_short_by_a_crash_is_ignored() {
    // A self-contained segment torn inside its prelude never became durable, so the older
    // segments, which are deleted only after it is, still hold the state; it is a torn tail at 0.
    let segments = history();
    let before = recover_all(&segments).unwrap();
    let snapshot = before.snapshot.clone().unwrap();
    // Entries large enough to be split over several records, so a cut can fall between records
    // that each truncate nothing on their own.
    let big = Bytes::from(vec![1u8; 3 * 1024 * 1024]);
    let mut log = before.entries.clone();
    log.extend((13..=15).map(|i| Entry {
        term: Term(2),
        index: LogIndex(i),
        payload: EntryPayload::Command(big.clone()),
    }));
    let mut segments = segments;
    segments.push(segment(4, &[WalRecord::Entries(log[before.entries.len()..].to_vec())]));
    let full = recover_all(&segments).unwrap();
    assert_eq!(full.entries, log);
    let compacted = compacted_segment(5, &full.hard_state, 0, &snapshot, &log);
    let offsets: Vec<u64> = scan_segment(&compacted).records.iter().map(|r| r.offset).collect();
    assert!(offsets.len() >= 4, "{offsets:?}");
    let mut cuts: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
    cuts.extend([0, 3, SEGMENT_HEADER_BYTES, compacted.len() - 1]);
    for cut in cuts {
        let mut all = segments.clone();
        all.push(compacted[..cut].to_vec());
        let recovered = recover_all(&all).unwrap();
        assert_eq!(recovered.entries, log, "cut at {cut}");
        assert_eq!(recovered.hard_state, full.hard_state, "cut at {cut}");
        assert_eq!(recovered.torn_tail.as_ref().map(|t| (t.seq, t.offset)), Some((5, 0)));
        assert_eq!(recovered.obsolete_seqs, Vec::<u64>::new());
    }
    // Once complete, it supersedes everything before it.
    let mut all = segments.clone();
    all.push(compacted.clone());
    let recovered = recover_all(&all).unwrap();
    assert_eq!((recovered.entries, recovered.torn_tail), (log, None));
    assert_eq!(recovered.obsolete_seqs, vec![1, 2, 3, 4]);
}

#[test]
fn damaged_compaction_with_nothing_to_fall_back_on_is_corrupt() {
    // A self-contained segment cut short is corruption when no older segment remains, when a
    // newer segment follows it, or when valid records follow the damage.
    let compacted = compacted_segment(7, &hard(3, Some(1), 9), 0, &meta(9, 3), &entries(10, 20, 3));
    let cut = compacted.len() - 5;
    let (file, offset, reason) = expect_corrupt(recover(&[(7, &compacted[..cut])]));
    assert_eq!(file, segment_file_name(7));
    assert!(offset < cut as u64);
    assert!(reason.contains("no older segment remains"), "{reason}");

    let older = compacted_segment(6, &hard(3, Some(1), 9), 0, &meta(9, 3), &entries(10, 20, 3));
    let newer = segment(8, &[]);
    let (file, _, reason) =
        expect_corrupt(recover(&[(6, &older), (7, &compacted[..cut]), (8, &newer)]));
    assert_eq!(file, segment_file_name(7));
    assert!(reason.contains("not the newest"), "{reason}");

    let records = scan_segment(&compacted).records;
    let mut flipped = compacted.clone();
    flipped[records[1].offset as usize + 9] ^= 1;
    let (file, offset, _) = expect_corrupt(recover(&[(6, &older), (7, &flipped)]));
    assert_eq!((file, offset), (segment_file_name(7), records[1].offset));
}

// ---- property tests ----

fn arb_entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Noop),
        proptest::collection::vec(any::<u8>(), 0..48)
            .prop_map(|b| EntryPayload::Command(Bytes::from(b))),
        (proptest::collection::btree_set(1..9u64, 0..4), ".{0,12}").prop_map(|(ids, address)| {
            let mut m = Membership::with_voters(ids.iter().copied().map(NodeId));
            m.addresses.insert(NodeId(1), address);
            EntryPayload::Membership(Box::new(m))
        }),
    ];
    (any::<u64>(), any::<u64>(), payload).prop_map(|(term, index, payload)| Entry {
        term: Term(term),
        index: LogIndex(index),
        payload,
    })
}

fn arb_record() -> impl Strategy<Value = WalRecord> {
    prop_oneof![
        (any::<u64>(), proptest::option::of(any::<u64>()), any::<u64>())
            .prop_map(|(t, v, c)| WalRecord::HardState(hard(t, v, c))),
        proptest::collection::vec(arb_entry(), 0..6).prop_map(WalRecord::Entries),
        (any::<u64>(), any::<u64>()).prop_map(|(i, t)| WalRecord::Snapshot(meta(i, t))),
    ]
}

/// A step of a valid history; the model makes each one valid in whatever state it meets.
#[derive(Clone, Debug)]
enum Op {
    Append { back: u64, count: u64, new_term: bool },
    Vote { new_term: bool, candidate: u64 },
    Commit,
    Snapshot { back: u64 },
    Rotate,
    Compact,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0..4u64, 1..5u64, any::<bool>())
            .prop_map(|(back, count, new_term)| Op::Append { back, count, new_term }),
        2 => (any::<bool>(), 1..4u64).prop_map(|(new_term, candidate)| Op::Vote { new_term, candidate }),
        2 => Just(Op::Commit),
        1 => (0..4u64).prop_map(|back| Op::Snapshot { back }),
        1 => Just(Op::Rotate),
        1 => Just(Op::Compact),
    ]
}

/// The naive model: the persistent state as a map from index to entry.
#[derive(Clone, Debug, Default)]
struct Model {
    hard_state: HardState,
    snapshot: Option<SnapshotMeta>,
    log: BTreeMap<u64, Entry>,
}

impl Model {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |m| m.last_index.0)
    }
    fn last_index(&self) -> u64 {
        self.log.keys().next_back().copied().unwrap_or(self.snapshot_index())
    }
    fn term_at(&self, index: u64) -> u64 {
        match self.log.get(&index) {
            Some(e) => e.term.0,
            None => self.snapshot.as_ref().map_or(0, |m| m.last_term.0),
        }
    }
    fn entries(&self) -> Vec<Entry> {
        self.log.values().cloned().collect()
    }
}

/// A segment being built, with the model state after each of its records.
struct BuiltSegment {
    seq: u64,
    bytes: Vec<u8>,
    /// Bytes a crash cannot tear: the header, or a whole compacted segment.
    durable_len: usize,
    /// `(end offset, state)`: the state once the bytes up to `end` are recovered.
    states: Vec<(usize, Model)>,
}

fn build_history(ops: &[Op]) -> Vec<BuiltSegment> {
    let mut model = Model::default();
    let mut serial = 0u64;
    let mut segments = vec![BuiltSegment {
        seq: 1,
        bytes: segment_header(1),
        durable_len: SEGMENT_HEADER_BYTES,
        states: vec![(SEGMENT_HEADER_BYTES, Model::default())],
    }];
    for op in ops {
        let mut records = Vec::new();
        match *op {
            Op::Append { back, count, new_term } => {
                if new_term {
                    model.hard_state.current_term = model.hard_state.current_term.next();
                    model.hard_state.voted_for = None;
                    records.push((WalRecord::HardState(model.hard_state.clone()), model.clone()));
                }
                let floor = model.hard_state.commit_index.0.max(model.snapshot_index()) + 1;
                let first = (model.last_index() + 1).saturating_sub(back).max(floor);
                let term = model.hard_state.current_term.0.max(1);
                if term > model.hard_state.current_term.0 {
                    model.hard_state.current_term = Term(term);
                    records.push((WalRecord::HardState(model.hard_state.clone()), model.clone()));
                }
                serial += 1;
                let batch: Vec<Entry> = (first..first + count)
                    .map(|i| entry_tagged(i, term, &format!("-{serial}")))
                    .collect();
                model.log.retain(|&i, _| i < first);
                model.log.extend(batch.iter().map(|e| (e.index.0, e.clone())));
                records.push((WalRecord::Entries(batch), model.clone()));
            }
            Op::Vote { new_term, candidate } => {
                if new_term {
                    model.hard_state.current_term = model.hard_state.current_term.next();
                    model.hard_state.voted_for = Some(NodeId(candidate));
                } else if model.hard_state.voted_for.is_none() {
                    model.hard_state.voted_for = Some(NodeId(candidate));
                }
                records.push((WalRecord::HardState(model.hard_state.clone()), model.clone()));
            }
            Op::Commit => {
                model.hard_state.commit_index = LogIndex(model.last_index());
                records.push((WalRecord::HardState(model.hard_state.clone()), model.clone()));
            }
            Op::Snapshot { back } => {
                let commit = model.hard_state.commit_index.0;
                if commit > model.snapshot_index() {
                    let last_index = commit.saturating_sub(back).max(model.snapshot_index() + 1);
                    let snapshot = meta(last_index, model.term_at(last_index));
                    model.log.retain(|&i, _| i > last_index);
                    model.snapshot = Some(snapshot.clone());
                    records.push((WalRecord::Snapshot(snapshot), model.clone()));
                }
            }
            Op::Rotate => {
                let seq = segments.last().unwrap().seq + 1;
                segments.push(BuiltSegment {
                    seq,
                    bytes: segment_header(seq),
                    durable_len: SEGMENT_HEADER_BYTES,
                    states: vec![(SEGMENT_HEADER_BYTES, model.clone())],
                });
            }
            Op::Compact => {
                if let Some(snapshot) = &model.snapshot {
                    let seq = segments.last().unwrap().seq + 1;
                    let bytes =
                        compacted_segment(seq, &model.hard_state, 0, snapshot, &model.entries());
                    segments.push(BuiltSegment {
                        seq,
                        durable_len: bytes.len(),
                        states: vec![(bytes.len(), model.clone())],
                        bytes,
                    });
                }
            }
        }
        let current = segments.last_mut().unwrap();
        for (record, state) in records {
            current.bytes.extend(encode_record(&record));
            current.states.push((current.bytes.len(), state));
        }
    }
    segments
}

/// `cases` unless `PROPTEST_CASES` asks for a longer (or shorter) run.
fn proptest_config(cases: u32) -> ProptestConfig {
    let default = ProptestConfig::default();
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() { default.cases } else { cases };
    ProptestConfig { cases, failure_persistence: None, ..default }
}

proptest! {
    #![proptest_config(proptest_config(128))]

    #[test]
    fn random_records_roundtrip_through_scan(
        records in proptest::collection::vec(arb_record(), 0..12),
    ) {
        // Any records, valid history or not, scan back unchanged from their frames.
        let (bytes, offsets) = segment_with_offsets(9, &records);
        let scan = scan_segment(&bytes);
        prop_assert_eq!(scan.tail, Tail::Clean);
        prop_assert_eq!(scan.header, Some(SegmentHeader { seq: 9, prelude_len: 0 }));
        prop_assert_eq!(scan.valid_len, bytes.len() as u64);
        let scanned: Vec<(u64, WalRecord)> =
            scan.records.into_iter().map(|r| (r.offset, r.record)).collect();
        let expected: Vec<(u64, WalRecord)> =
            offsets.iter().map(|&o| o as u64).zip(records).collect();
        prop_assert_eq!(scanned, expected);
    }

    #[test]
    fn recovery_matches_a_naive_model(
        ops in proptest::collection::vec(arb_op(), 0..40),
        deleted_percent in 0..=100usize,
        cut_percent in prop_oneof![Just(100usize), 0..=100usize],
    ) {
        // Valid histories over rotations and compactions, with the newest segment cut anywhere
        // and some of the segments a finished compaction made obsolete deleted, recover to the
        // model's state.
        let segments = build_history(&ops);
        let last = segments.last().unwrap();
        let cut = last.bytes.len() * cut_percent / 100;
        // A compacted segment cut inside its prelude is ignored, so it is not a base.
        let newest_base = segments
            .iter()
            .rposition(|s| {
                s.durable_len > SEGMENT_HEADER_BYTES && (s.seq != last.seq || cut >= s.durable_len)
            })
            .unwrap_or(0);
        let deleted = newest_base * deleted_percent / 100;
        let input: Vec<(u64, &[u8])> = segments[deleted..]
            .iter()
            .map(|s| (s.seq, if s.seq == last.seq { &s.bytes[..cut] } else { &s.bytes[..] }))
            .collect();
        let recovered = recover(&input).unwrap();
        // The state after the last record that survived the cut; a cut inside the header or a
        // compacted segment's prelude leaves the state the segment started from.
        let survivor = last.states.iter().rev().find(|(end, _)| *end <= cut);
        let expected = survivor.map_or(&last.states[0].1, |(_, state)| state);
        prop_assert_eq!(&recovered.hard_state, &expected.hard_state);
        prop_assert_eq!(&recovered.snapshot, &expected.snapshot);
        prop_assert_eq!(&recovered.entries, &expected.entries());
        prop_assert_eq!(recovered.last_seq, last.seq);
        let expected_torn = match survivor {
            Some((end, _)) => (cut != *end).then_some((last.seq, *end as u64)),
            None => Some((last.seq, 0)),
        };
        prop_assert_eq!(recovered.torn_tail.map(|t| (t.seq, t.offset)), expected_torn);
        let obsolete: Vec<u64> = segments[deleted..newest_base].iter().map(|s| s.seq).collect();
        prop_assert_eq!(recovered.obsolete_seqs, obsolete);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        with_header in any::<bool>(),
    ) {
        // Arbitrary bytes, with or without a valid header in front, scan and recover without panic.
        let mut file = if with_header { segment_header(1) } else { Vec::new() };
        file.extend(bytes);
        let scan = scan_segment(&file);
        prop_assert!(scan.valid_len <= file.len() as u64);
        let _ = recover(&[(1, &file)]);
        let older = segment(1, &four_records());
        let _ = recover(&[(1, &older), (2, &file)]);
    }

    #[test]
    fn mutated_segments_never_panic(
        mutations in proptest::collection::vec((0..4u8, 0..2usize, any::<usize>(), any::<u8>()), 1..6),
    ) {
        // Random flips, overwrites, insertions and truncations of a valid WAL never panic, and a
        // clean result accounts for every byte.
        let mut segments = vec![
            segment(1, &four_records()),
            segment(2, &[WalRecord::Snapshot(meta(5, 1)), WalRecord::Entries(entries(7, 9, 1))]),
        ];
        for (kind, victim, at, value) in mutations {
            let bytes = &mut segments[victim];
            let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
            match kind {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << (value % 8),
                1 if !bytes.is_empty() => bytes[at] = value,
                2 => bytes.insert(at, value),
                _ => bytes.truncate(at),
            }
        }
        for bytes in &segments {
            let scan = scan_segment(bytes);
            if scan.tail == Tail::Clean {
                prop_assert_eq!(scan.valid_len, bytes.len() as u64);
            }
        }
        let _ = recover_all(&segments);
    }
}

#[test]
fn incarnation_is_recovered_only_grows_and_survives_compaction() {
    // Request ids are unique across restarts only if the incarnation recovered is the latest one
    // written, never an older one: a compacted segment carries it, and a decrease is corruption.
    let records = [
        WalRecord::Incarnation(1),
        WalRecord::HardState(hard(1, None, 0)),
        WalRecord::Incarnation(2),
    ];
    assert_eq!(replay(&records).unwrap().incarnation, 2);
    assert_eq!(replay(&[WalRecord::HardState(hard(1, None, 0))]).unwrap().incarnation, 0);
    let (_, offset, reason) =
        expect_corrupt(replay(&[WalRecord::Incarnation(3), WalRecord::Incarnation(3)]));
    assert!(reason.contains("only grows"), "{reason}");
    assert!(offset > SEGMENT_HEADER_BYTES as u64);
    let compacted = compacted_segment(2, &hard(1, None, 5), 7, &meta(5, 1), &entries(6, 8, 1));
    let r = recover_from(2, &[compacted]).unwrap();
    assert_eq!((r.incarnation, r.entries.len()), (7, 3));
}
