//! Writes the fuzz seed corpus: real encoded messages, WAL segments, snapshots, proposals,
//! patterns and cluster input sequences, produced by the same code that ships.
//!
//! `cargo run -p simple-cache-core --example gen_fuzz_corpus --features testkit` (from the
//! workspace root) rewrites `fuzz/corpus/<target>/`.

use bytes::Bytes;
use simple_cache_core::cache::{Cache, Command, Proposal};
use simple_cache_core::codec::encode;
use simple_cache_core::wal::{self, WalRecord};
use simple_cache_core::*;
use std::path::{Path, PathBuf};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create corpus dir");
    std::fs::write(d.join(name), bytes).expect("write corpus file");
}

fn entry(term: u64, index: u64, payload: EntryPayload) -> Entry {
    Entry { term: Term(term), index: LogIndex(index), payload }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let membership = Membership {
        voters: [NodeId(1), NodeId(2), NodeId(3)].into(),
        learners: [NodeId(4)].into(),
        addresses: [(NodeId(4), "127.0.0.1:9094".to_string())].into(),
    };
    let set = Proposal {
        time: Instant(1_000),
        command: Command::Set {
            key: "user:1".into(),
            value: Bytes::from_static(b"{\"name\":\"ada\"}"),
            expires_at: Some(Instant(61_000)),
        },
    };
    let entries = vec![
        entry(1, 1, EntryPayload::Noop),
        entry(1, 2, EntryPayload::Command(set.encode())),
        entry(2, 3, EntryPayload::Membership(Box::new(membership.clone()))),
    ];
    let meta = SnapshotMeta {
        last_index: LogIndex(7),
        last_term: Term(2),
        membership: membership.clone(),
    };

    // Every message type.
    let bodies = vec![
        MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(3),
            last_log_term: Term(2),
            leadership_transfer: false,
        },
        MessageBody::RequestVoteResponse { pre_vote: false, granted: true, clock: Instant(5) },
        MessageBody::AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            entries: entries.clone(),
            leader_commit: LogIndex(2),
        },
        MessageBody::AppendEntriesResponse {
            index: LogIndex(3),
            success: false,
            conflict_term: Some(Term(1)),
            conflict_index: LogIndex(1),
        },
        MessageBody::Heartbeat {
            commit_index: LogIndex(3),
            read_seq: 9,
            clock: Instant(5),
            cluster_time: Instant(6),
        },
        MessageBody::HeartbeatResponse { read_seq: 9, last_index: LogIndex(3), clock: Instant(5) },
        MessageBody::InstallSnapshot {
            meta: meta.clone(),
            offset: 0,
            data: Bytes::from_static(b"chunk"),
            done: false,
        },
        MessageBody::InstallSnapshotResponse {
            last_index: LogIndex(7),
            next_offset: 5,
            done: false,
            rejected: false,
        },
        MessageBody::ReadIndex { id: ReadId(5) },
        MessageBody::ReadIndexResponse {
            id: ReadId(5),
            index: Some(LogIndex(3)),
            leader_time: Instant(1_500),
        },
        MessageBody::TimeoutNow,
    ];
    let mut batch = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        let m = Message { from: NodeId(1), to: NodeId(2), term: Term(2), body };
        write(&root, "raft_message", &format!("msg-{i:02}"), &encode(&m));
        batch.push(m);
    }

    // Peer connection streams after the preamble: the first byte says where to cut the rest.
    {
        use simple_cache_core::peer_wire::{
            Answer, Forward, ForwardAnswer, Frame, Hello, Refusal, encode_frame,
        };
        let hello = Hello {
            from: NodeId(2),
            cluster_id: 0xabcdef,
            token: Some("s3cret".into()),
            raft_addr: "127.0.0.1:9002".into(),
            client_addr: "127.0.0.1:8082".into(),
        };
        let stream = |cut: u8, frames: &dyn Fn(&mut Vec<u8>)| {
            let mut v = vec![cut];
            frames(&mut v);
            v
        };
        let refused = Answer::Refused { reason: Refusal::WrongCluster, message: "other".into() };
        let forward = Frame::Forward(Forward {
            id: 7,
            op: simple_cache_core::exec::WriteOp::Set {
                key: "user:1".into(),
                value: Bytes::from_static(b"{\"name\":\"ada\"}"),
                ttl_ms: Some(60_000),
            },
            authorization: Some("Bearer adm".into()),
            timeout_ms: 5_000,
        });
        let answers = [
            ForwardAnswer::Written(simple_cache_core::node::Written {
                revision: 9,
                result: simple_cache_core::cache::ApplyResult::Set,
            }),
            ForwardAnswer::Failed(simple_cache_core::node::WriteError::Propose(
                simple_cache_core::raft::ProposeError::NotLeader { leader_hint: Some(NodeId(3)) },
            )),
            ForwardAnswer::Refused {
                status: 413,
                code: "value_too_large".into(),
                message: "big".into(),
            },
        ];
        let mut truncated = stream(5, &|v| encode_frame(&Frame::Raft(batch[..1].to_vec()), v));
        truncated.truncate(truncated.len() - 3);
        let forwarding = stream(11, &|v| {
            encode_frame(&forward, v);
            for (i, answer) in answers.iter().enumerate() {
                encode_frame(&Frame::ForwardAnswer { id: i as u64, answer: answer.clone() }, v);
            }
        });
        let streams: [(&str, Vec<u8>); 7] = [
            ("forward_and_answers", forwarding),
            ("hello", stream(1, &|v| encode_frame(&hello, v))),
            ("every_message", stream(7, &|v| encode_frame(&Frame::Raft(batch.clone()), v))),
            (
                "hello_then_frames",
                stream(3, &|v| {
                    encode_frame(&hello, v);
                    encode_frame(&Frame::Raft(batch[2..4].to_vec()), v);
                    encode_frame(&Frame::Raft(vec![]), v);
                }),
            ),
            ("answer_refused", stream(2, &|v| encode_frame(&refused, v))),
            ("oversized_length", [&[1u8][..], &u32::MAX.to_le_bytes(), b"xxxx"].concat()),
            ("truncated", truncated),
        ];
        for (name, bytes) in streams {
            write(&root, "peer_frames", name, &bytes);
        }
        write(&root, "peer_frames", "zero_length", &[1, 0, 0, 0, 0]);
    }

    // WAL segments: a plain one, one with a torn tail, and a compacted one.
    let hs =
        HardState { current_term: Term(2), voted_for: Some(NodeId(1)), commit_index: LogIndex(2) };
    let mut seg = wal::segment_header(1);
    seg.extend(wal::encode_record(&WalRecord::HardState(hs.clone())));
    seg.extend(wal::encode_record(&WalRecord::Entries(entries.clone())));
    write(&root, "wal_segment", "segment-plain", &seg);
    let mut torn = seg.clone();
    let last = wal::encode_record(&WalRecord::Entries(vec![entry(2, 4, EntryPayload::Noop)]));
    torn.extend(&last[..last.len() / 2]);
    write(&root, "wal_segment", "segment-torn", &torn);
    let after = vec![entry(2, 8, EntryPayload::Command(set.encode()))];
    write(
        &root,
        "wal_segment",
        "segment-compacted",
        &wal::compacted_segment(2, &hs, 0, &meta, &after),
    );

    // Snapshots and proposals.
    let mut cache = Cache::new();
    cache.apply(&set);
    cache.apply(&Proposal {
        time: Instant(1_001),
        command: Command::Set {
            key: "k".into(),
            value: Bytes::from_static(b"1"),
            expires_at: None,
        },
    });
    write(&root, "cache_snapshot", "two-keys", &cache.snapshot());
    write(&root, "cache_snapshot", "empty", &Cache::new().snapshot());
    let meta = SnapshotMeta {
        last_index: LogIndex(2),
        last_term: Term(1),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    let mut file = Vec::new();
    let job = simple_cache_core::snapshot::SnapshotJob::new(meta, &cache, false, false);
    let lengths = simple_cache_core::backup::lengths(&job);
    simple_cache_core::backup::write(&job, lengths, &mut file).expect("writing to memory");
    write(&root, "backup_file", "two-keys", &file);
    // Without its checksum: the target appends a valid one and reaches the snapshot.
    write(&root, "backup_file", "two-keys-unsealed", &file[..file.len() - 4]);
    let commands = [
        set.command.clone(),
        Command::Del { key: "user:1".into() },
        Command::Expire { key: "k".into() },
        Command::Reset,
        Command::RemoveExpired { keys: vec!["a".into(), "b".into()] },
    ];
    for (i, command) in commands.into_iter().enumerate() {
        let p = Proposal { time: Instant(2_000), command };
        write(&root, "proposal", &format!("proposal-{i}"), &p.encode());
    }

    // Search patterns: first byte selects the mode (even: wildcard, odd: regex).
    for (i, (mode, p)) in
        [(0u8, "user:*"), (0, "u?er:[0-9]"), (0, "*"), (1, "^user:\\d+$"), (1, "a|b")]
            .into_iter()
            .enumerate()
    {
        let mut bytes = vec![mode];
        bytes.extend(p.as_bytes());
        write(&root, "search_pattern", &format!("pattern-{i}"), &bytes);
    }

    // Cluster input sequences: (op, arg) pairs; see `fuzz::cluster_steps`.
    let sequences: [&[u8]; 3] = [
        &[0, 0, 200, 3, 1, 3, 2, 0, 100, 4, 0, 0, 100],
        &[1, 0, 150, 7, 0, 3, 0, 0, 200, 8, 0, 0, 200, 3, 1],
        &[0, 0, 200, 10, 0, 0, 100, 10, 1, 0, 100, 5, 1, 0, 50, 6, 1, 0, 200],
    ];
    for (i, s) in sequences.iter().enumerate() {
        write(&root, "cluster_steps", &format!("steps-{i}"), s);
    }
    println!("corpus written to {}", root.display());
}
