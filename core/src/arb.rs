//! proptest strategies for the wire types, shared by the codec's round-trip tests and the Raft
//! node's hostile-message tests. `max` bounds indexes, terms and ids: `u64::MAX` for the codec,
//! small values where the messages must hit a node's actual log.

use crate::message::*;
use crate::types::{Instant, LogIndex, NodeId, Term};
use bytes::Bytes;
use proptest::prelude::*;

pub fn membership() -> impl Strategy<Value = Membership> {
    (
        proptest::collection::btree_set(1u64..9, 0..4),
        proptest::collection::btree_set(10u64..14, 0..3),
        proptest::collection::btree_map(1u64..14, "[a-z0-9.:]{0,12}", 0..4),
    )
        .prop_map(|(v, l, a)| Membership {
            voters: v.into_iter().map(NodeId).collect(),
            learners: l.into_iter().map(NodeId).collect(),
            addresses: a.into_iter().map(|(k, v)| (NodeId(k), v)).collect(),
        })
}

pub fn entry(max: u64) -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        Just(EntryPayload::Noop),
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|d| EntryPayload::Command(Bytes::from(d))),
        membership().prop_map(|m| EntryPayload::Membership(Box::new(m))),
    ];
    (0..=max, 0..=max, payload).prop_map(|(t, i, payload)| Entry {
        term: Term(t),
        index: LogIndex(i),
        payload,
    })
}

pub fn meta(max: u64) -> impl Strategy<Value = SnapshotMeta> {
    (0..=max, 0..=max, membership()).prop_map(|(i, t, membership)| SnapshotMeta {
        last_index: LogIndex(i),
        last_term: Term(t),
        membership,
    })
}

pub fn body(max: u64) -> impl Strategy<Value = MessageBody> {
    let idx = (0..=max).prop_map(LogIndex);
    let term = (0..=max).prop_map(Term);
    prop_oneof![
        (any::<bool>(), idx.clone(), term.clone(), any::<bool>()).prop_map(|(p, i, t, l)| {
            MessageBody::RequestVote {
                pre_vote: p,
                last_log_index: i,
                last_log_term: t,
                leadership_transfer: l,
            }
        }),
        (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(p, g, c)| {
            MessageBody::RequestVoteResponse { pre_vote: p, granted: g, clock: Instant(c) }
        }),
        (idx.clone(), term.clone(), proptest::collection::vec(entry(max), 0..4), idx.clone())
            .prop_map(|(pi, pt, entries, c)| MessageBody::AppendEntries {
                prev_log_index: pi,
                prev_log_term: pt,
                entries,
                leader_commit: c,
            }),
        (idx.clone(), any::<bool>(), proptest::option::of(term), idx.clone()).prop_map(
            |(index, success, conflict_term, conflict_index)| MessageBody::AppendEntriesResponse {
                index,
                success,
                conflict_term,
                conflict_index,
            }
        ),
        (idx.clone(), 0..=max, any::<u64>()).prop_map(|(c, s, t)| MessageBody::Heartbeat {
            commit_index: c,
            read_seq: s,
            clock: Instant(t),
            cluster_time: Instant(t / 2)
        }),
        (0..=max, idx.clone(), any::<u64>()).prop_map(|(s, l, t)| {
            MessageBody::HeartbeatResponse { read_seq: s, last_index: l, clock: Instant(t) }
        }),
        (meta(max), 0..=max, proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(meta, offset, d, done)| MessageBody::InstallSnapshot {
                meta,
                offset,
                data: Bytes::from(d),
                done,
            }),
        (idx.clone(), 0..=max, any::<bool>(), any::<bool>()).prop_map(
            |(last_index, next_offset, done, rejected)| MessageBody::InstallSnapshotResponse {
                last_index,
                next_offset,
                done,
                rejected,
            }
        ),
        (0..=max).prop_map(|id| MessageBody::ReadIndex { id: ReadId(id) }),
        (0..=max, proptest::option::of(idx), 0..=max).prop_map(|(id, index, t)| {
            MessageBody::ReadIndexResponse { id: ReadId(id), index, leader_time: Instant(t) }
        }),
        Just(MessageBody::TimeoutNow),
        (0..=max).prop_map(|i| MessageBody::Removed { membership_index: LogIndex(i) }),
    ]
}
