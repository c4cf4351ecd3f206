//! The bodies of the fuzz targets in `fuzz/`, as plain functions over bytes.
//!
//! Each function panics only when it finds a bug (a decoder that panics, a round trip that does
//! not hold, a broken Raft invariant). The libFuzzer targets call them, and
//! `core/tests/fuzz_corpus.rs` replays every committed corpus file and every past crash input
//! (`fuzz/regressions/`) through them under an ordinary `cargo test` on stable.

use crate::cache::{Cache, Pattern, Proposal, SearchMode};
use crate::codec;
use crate::message::Message;
use crate::types::Instant;
use crate::wal;

/// A xorshift64 stream from `seed` (not zero): the replay tests' generated inputs, the same on
/// every run.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// A limit in the spirit of the server's peer message limit, small enough to fuzz quickly.
const MESSAGE_BYTES_MAX: usize = 16 << 20;

/// Raft peer messages: every message type goes through the one codec. What decodes must
/// re-encode to the same value.
pub fn raft_message(data: &[u8]) {
    if let Ok(msg) = codec::decode::<Message>(data, MESSAGE_BYTES_MAX) {
        let again = codec::encode(&msg);
        let back: Message = codec::decode(&again, MESSAGE_BYTES_MAX).expect("re-encoding decodes");
        assert_eq!(back, msg, "a decoded message round-trips");
    }
}

/// A WAL segment as the server reads it on recovery: scanning never panics, the valid prefix
/// is within the input, and recovery of that one segment is consistent with the scan.
pub fn wal_segment(data: &[u8]) {
    let scan = wal::scan_segment(data);
    assert!(scan.valid_len as usize <= data.len(), "the valid prefix is within the segment");
    for r in &scan.records {
        assert!((r.offset as usize) < data.len(), "records start inside the segment");
    }
    let seq = scan.header.as_ref().map_or(1, |h| h.seq);
    if let Ok(rec) = wal::recover(&[(seq, data)]) {
        if let Some(t) = &rec.torn_tail {
            assert!(t.offset as usize <= data.len(), "a torn tail is cut inside the segment");
        }
        let first = rec.snapshot.as_ref().map_or(1, |s| s.last_index.0 + 1);
        for (expected, e) in (first..).zip(&rec.entries) {
            assert_eq!(e.index.0, expected, "recovered entries are contiguous");
        }
    }
}

/// A cache snapshot as a follower receives it: what restores re-encodes to the same bytes.
pub fn cache_snapshot(data: &[u8]) {
    if let Ok(cache) = Cache::restore(data) {
        let bytes = cache.snapshot();
        let again = Cache::restore(&bytes).expect("a snapshot we wrote restores");
        assert_eq!(again.snapshot(), bytes, "snapshot encoding is canonical");
    }
}

/// A backup file as `snapshot restore` reads it (and `snapshot save` checks it as it streams):
/// what is accepted decodes to a cache whose backup, written again, reads back the same. The input is tried as it is, and again with a
/// valid checksum appended, so the fuzzer gets past the trailer to the snapshot inside.
pub fn backup_file(data: &[u8]) {
    use crate::backup;
    use bytes::Bytes;
    let sealed = {
        let mut v = data.to_vec();
        v.extend_from_slice(&crc32c::crc32c(data).to_le_bytes());
        v
    };
    for input in [data.to_vec(), sealed] {
        // The streaming check never panics, and accepts whatever `read` accepts, with the
        // same metadata (it may accept more: it does not decode the cache).
        let mut stream = backup::StreamCheck::new();
        let streamed = stream.feed(&input).and_then(|()| stream.finish());
        let Ok(b) = backup::read(Bytes::from(input)) else { continue };
        let (meta, _, crc) = streamed.expect("the streaming check accepts what read accepts");
        assert_eq!((meta, crc), (b.snapshot.meta.clone(), b.crc32c));
        let cache = Cache::restore(&b.snapshot.data).expect("read checked the cache");
        assert_eq!(cache.len(), b.keys);
        let job = crate::snapshot::SnapshotJob::new(b.snapshot.meta.clone(), &cache, false, false);
        let mut again = Vec::new();
        let lengths = backup::lengths(&job);
        backup::write(&job, lengths, &mut again).expect("writing to memory");
        assert_eq!(again.len() as u64, lengths.file, "announced length");
        let b2 = backup::read(Bytes::from(again)).expect("a backup we wrote reads back");
        assert_eq!(b2.snapshot.meta, b.snapshot.meta);
        assert_eq!(Cache::restore(&b2.snapshot.data).expect("restores"), cache);
    }
}

/// A committed log entry's payload, as every replica decodes it before applying.
pub fn proposal(data: &[u8]) {
    if let Ok(p) = Proposal::decode(data) {
        assert_eq!(Proposal::decode(&p.encode()).expect("re-encodes"), p);
        let mut cache = Cache::new();
        cache.apply(&p);
    }
}

/// User search patterns in both modes: compiling never panics, and searching a small cache
/// returns sorted, bounded results.
pub fn search_pattern(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let mode = if mode & 1 == 0 { SearchMode::Wildcard } else { SearchMode::Regex };
    let Ok(pattern) = Pattern::compile(text, mode) else { return };
    let mut cache = Cache::new();
    for key in ["", "a", "ab", "abc", "b/c", "user:1", "user:2", "ü", "[x]"] {
        cache.apply(&Proposal {
            time: Instant(0),
            command: crate::cache::Command::Set {
                key: key.into(),
                value: bytes::Bytes::new(),
                expires_at: None,
            },
        });
    }
    let found = cache.search(&pattern, Instant(0), 5);
    assert!(found.len() <= 5, "search respects its limit");
    assert!(found.windows(2).all(|w| w[0] < w[1]), "search results are sorted and unique");
}

/// A small cluster of real Raft nodes driven by an arbitrary input sequence (message delivery,
/// time, proposals, reads, membership changes, partitions, crashes). The harness checks
/// election safety and state machine safety after every step; the node checks its own
/// invariants with debug assertions.
#[cfg(feature = "testkit")]
pub fn cluster_steps(data: &[u8]) {
    use crate::message::{MembershipChange, ReadId};
    use crate::testkit::Cluster;
    use crate::types::NodeId;

    let Some((&first, ops)) = data.split_first() else { return };
    let mut c = Cluster::new(if first & 1 == 0 { 3 } else { 5 }, first as u64);
    let n = c.nodes.len() as u64;
    let mut next_id = n + 1;
    let mut read_id = 0;
    for pair in ops.chunks(2).take(200) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let node = NodeId(1 + arg as u64 % n);
        match op % 11 {
            0..=2 => c.run_for(1 + arg as u64 * 2),
            3 => {
                if c.node(node).up {
                    let _ = c.propose(node, &[arg]);
                }
            }
            4 => {
                read_id += 1;
                if c.node(node).up {
                    let _ = c.read(node, ReadId(read_id));
                }
            }
            5 => c.crash(node),
            6 => {
                if !c.node(node).up {
                    c.restart(node);
                }
            }
            7 => c.isolate(node),
            8 => c.heal(),
            9 => c.drop_per_mille = (arg as u32 * 4).min(500),
            _ => {
                let Some(leader) = c.leader() else { continue };
                let m = c.node(leader).raft.membership().clone();
                let members: Vec<NodeId> = m.members().collect();
                let change = match arg % 4 {
                    0 if next_id <= 8 => {
                        let id = NodeId(next_id);
                        next_id += 1;
                        c.add_empty_node(id);
                        MembershipChange::AddLearner { id, address: String::new() }
                    }
                    1 if !m.learners.is_empty() => {
                        let id = *m.learners.iter().next().expect("non-empty");
                        MembershipChange::PromoteLearner { id }
                    }
                    2 => {
                        let now = c.now;
                        let _ = c.raft(leader).transfer_leadership(now, node);
                        c.process(leader);
                        continue;
                    }
                    _ => MembershipChange::Remove { id: members[arg as usize % members.len()] },
                };
                let now = c.now;
                let _ = c.raft(leader).propose_membership(now, change);
                c.process(leader);
            }
        }
    }
}

/// A peer connection's bytes after the preamble, as the Raft listener reads them: fed in pieces
/// (cut where the input's first byte says), the decoder returns the same frames as fed whole,
/// never a frame over its limit, and every frame that decodes re-encodes to the same bytes.
pub fn peer_frames(data: &[u8]) {
    use crate::peer_wire::{Frame, FrameDecoder, Hello, decode_frame, encode_frame};
    const LIMIT: usize = 1 << 20;
    let Some((&step, stream)) = data.split_first() else { return };
    let frames = |pieces: &mut dyn Iterator<Item = &[u8]>| {
        let mut d = FrameDecoder::new(LIMIT);
        let mut out = Vec::new();
        for piece in pieces {
            d.push(piece);
            loop {
                match d.next_frame() {
                    Ok(Some(p)) => {
                        assert!(p.len() <= LIMIT, "a frame within the limit");
                        out.push(Ok(p));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return out;
                    }
                }
            }
        }
        out
    };
    let whole = frames(&mut std::iter::once(stream));
    let pieces = frames(&mut stream.chunks(usize::from(step).max(1)));
    assert_eq!(whole, pieces, "frames do not depend on how the bytes arrive");
    for payload in whole.into_iter().flatten() {
        if let Ok(f) = decode_frame::<Frame>(&payload) {
            let mut again = Vec::new();
            encode_frame(&f, &mut again);
            assert_eq!(decode_frame::<Frame>(&again[4..]).expect("re-encoding decodes"), f);
        }
        if let Ok(h) = decode_frame::<Hello>(&payload) {
            let mut again = Vec::new();
            encode_frame(&h, &mut again);
            assert_eq!(decode_frame::<Hello>(&again[4..]).expect("re-encoding decodes"), h);
        }
    }
}
