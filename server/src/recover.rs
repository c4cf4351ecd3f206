//! `simple-cache recover --force-new-cluster`: brings back a node whose cluster lost its quorum
//! for good (two of three machines gone), keeping its data. Modelled on etcd's
//! `--force-new-cluster`: the membership is rewritten to this node alone, and when it starts it
//! elects itself and commits everything its log holds, so every write it had acknowledged or
//! replicated is kept. Writes that only the lost members held are lost; that is the price of
//! overriding Raft, which is why the command needs the flag spelled out.
//!
//! It appends one membership entry to the log (at the end, in the current term) through the
//! same WAL code as the node, under the data directory's lock, so it cannot run beside a live
//! node and leaves a log that recovery accepts.

use crate::config::Config;
use crate::transport::MemberAddr;
use crate::wal_store::{DataDirLock, WalStore, describe_io};
use simple_cache_core::raft::{Persisted, Ready};
use simple_cache_core::{Entry, EntryPayload, LogIndex, Membership, NodeId, Term};

/// The membership in force at the end of a recovered log: the last membership entry, else the
/// snapshot's.
pub fn latest_membership(p: &Persisted) -> Membership {
    p.entries
        .iter()
        .rev()
        .find_map(|e| match &e.payload {
            EntryPayload::Membership(m) => Some(Membership::clone(m)),
            _ => None,
        })
        .or_else(|| p.snapshot.as_ref().map(|s| s.meta.membership.clone()))
        .unwrap_or_default()
}

/// Whether `me` was removed from the cluster recorded in `p`: a committed membership without it
/// follows one with it. Uncommitted memberships do not count (a removal may still be cut from
/// the log), nor does a membership that never included it (a joining node still catching up).
/// Returns the committed membership if so.
pub fn removed_from(p: &Persisted, me: NodeId) -> Option<Membership> {
    let commit = p.hard_state.commit_index;
    let mut seen = false;
    let mut committed = None;
    let snapshot = p.snapshot.as_ref().map(|s| s.meta.membership.clone());
    let entries = p.entries.iter().filter(|e| e.index <= commit).filter_map(|e| match &e.payload {
        EntryPayload::Membership(m) => Some(Membership::clone(m)),
        _ => None,
    });
    for m in snapshot.into_iter().chain(entries) {
        seen |= m.contains(me);
        committed = Some(m);
    }
    committed.filter(|m| seen && !m.contains(me))
}

/// Whether any membership recorded in `p` (the snapshot's or an entry's, committed or not)
/// includes `me`. A node that was never in one is still joining; one that was and is not now
/// was removed (or is being removed) and must not add itself back by joining again.
pub fn ever_member(p: &Persisted, me: NodeId) -> bool {
    let snapshot = p.snapshot.iter().map(|s| &s.meta.membership);
    let entries = p.entries.iter().filter_map(|e| match &e.payload {
        EntryPayload::Membership(m) => Some(&**m),
        _ => None,
    });
    snapshot.chain(entries).any(|m| m.contains(me))
}

/// Rewrites the membership in `cfg.data_dir` to `cfg.node_id` alone. Returns what it did, for
/// the operator.
pub fn force_new_cluster(cfg: &Config, confirmed: bool) -> Result<String, String> {
    if !confirmed {
        return Err("recover rewrites the cluster's membership to this node alone and may lose \
                    writes only the other members hold; pass --force-new-cluster to confirm"
            .to_string());
    }
    let dir = cfg.data_dir.display();
    let _lock = DataDirLock::acquire(&cfg.data_dir).map_err(|e| e.to_string())?;
    let opened = WalStore::open(&cfg.data_dir, simple_cache_core::wal::SEGMENT_BYTES_TARGET)
        .map_err(|e| format!("data_dir {dir}: {e}"))?;
    if opened.fresh {
        return Err(format!("data_dir {dir} holds no state: there is nothing to recover"));
    }
    let me = NodeId(cfg.node_id);
    let p = &opened.persisted;
    let old = latest_membership(p);
    if !old.contains(me) {
        return Err(format!(
            "node {me} (node_id) is not a member of the cluster recorded in data_dir {dir} \
             (members: {:?}); give the node_id this data directory belongs to",
            old.members().map(|m| m.0).collect::<Vec<_>>()
        ));
    }
    let (last_index, last_term) = match (p.entries.last(), &p.snapshot) {
        (Some(e), _) => (e.index, e.term),
        (None, Some(s)) => (s.meta.last_index, s.meta.last_term),
        (None, None) => (LogIndex(0), Term(0)),
    };
    // A term of its own, past every term this node has seen: the entry cannot be confused with
    // one another leader wrote at the same index in an earlier term.
    let term = Term(p.hard_state.current_term.max(last_term).0 + 1);
    let hard_state = simple_cache_core::HardState {
        current_term: term,
        voted_for: None,
        commit_index: p.hard_state.commit_index,
    };
    // The node's own addresses from its configuration: it restarts with them.
    let address =
        MemberAddr { raft: cfg.raft_http_addr.to_string(), http: Some(cfg.http_addr.to_string()) };
    let new = Membership {
        voters: [me].into(),
        learners: Default::default(),
        addresses: [(me, address.encode())].into(),
    };
    let entry = Entry {
        term,
        index: last_index.next(),
        payload: EntryPayload::Membership(Box::new(new.clone())),
    };
    let mut wal = opened.store;
    let ready = Ready {
        entries: vec![entry],
        hard_state: Some(hard_state),
        must_sync: true,
        ..Ready::default()
    };
    wal.persist_ready(&ready).map_err(|e| format!("writing the WAL: {}", describe_io(&e)))?;
    let commit = p.hard_state.commit_index;
    let uncommitted = last_index.0.saturating_sub(commit.0);
    Ok(format!(
        "recovered data_dir {dir}: node {me} is now the only voter\n  \
         before: voters {:?}, learners {:?}\n  \
         log: last index {last_index} (term {last_term}), commit index {commit}; the membership \
         entry is index {}\n  \
         {uncommitted} entries after the commit index will be committed when the node starts\n\
         next: start the node as usual; it elects itself. Add members with /cluster/join (new \
         nodes with empty data dirs). Old members must not come back with their data: wipe them \
         first.",
        old.voters.iter().map(|m| m.0).collect::<Vec<_>>(),
        old.learners.iter().map(|m| m.0).collect::<Vec<_>>(),
        last_index.next(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_cache_core::{HardState, Snapshot, SnapshotMeta};

    fn members(ids: &[u64]) -> Membership {
        Membership::with_voters(ids.iter().map(|&i| NodeId(i)))
    }

    fn membership_entry(index: u64, m: Membership) -> simple_cache_core::Entry {
        Entry {
            term: Term(1),
            index: LogIndex(index),
            payload: EntryPayload::Membership(Box::new(m)),
        }
    }

    /// A log whose snapshot (at 0) has `snapshot`, then the given membership entries at 1, 2,
    /// ..., committed up to `commit`.
    fn log(snapshot: &[u64], entries: &[&[u64]], commit: u64) -> Persisted {
        Persisted {
            hard_state: HardState {
                current_term: Term(1),
                voted_for: None,
                commit_index: LogIndex(commit),
            },
            snapshot: Some(Snapshot {
                meta: SnapshotMeta { membership: members(snapshot), ..SnapshotMeta::default() },
                data: Default::default(),
            }),
            entries: entries
                .iter()
                .enumerate()
                .map(|(i, ids)| membership_entry(i as u64 + 1, members(ids)))
                .collect(),
        }
    }

    // Only a committed removal after a committed membership with the node is a removal; a node
    // still catching up on its join (no membership with it yet) and a node whose removal is not
    // committed are not removed, and only the first of them may join again.
    #[test]
    fn removal_is_judged_on_committed_memberships_only() {
        let me = NodeId(4);
        let joining = log(&[1, 2, 3], &[&[1, 2]], 1);
        assert_eq!(removed_from(&joining, me), None);
        assert!(!ever_member(&joining, me));
        let removed = log(&[1, 2, 3, 4], &[&[1, 2, 3]], 1);
        assert_eq!(removed_from(&removed, me), Some(members(&[1, 2, 3])));
        let being_removed = log(&[1, 2, 3, 4], &[&[1, 2, 3]], 0);
        assert_eq!(removed_from(&being_removed, me), None);
        assert!(ever_member(&being_removed, me), "must not join again");
        let added_then_removed = log(&[1, 2, 3], &[&[1, 2, 3, 4], &[1, 2, 3]], 2);
        assert!(removed_from(&added_then_removed, me).is_some());
    }
}
