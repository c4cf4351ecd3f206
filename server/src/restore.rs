//! `snapshot restore`: builds the data directory of one member of a **new** cluster from a
//! backup file (`GET /admin/snapshot`, `core::backup`), like etcd's `snapshot restore`.
//!
//! Run it once per member with the same file and the same `--peers`: every member then starts
//! from the same snapshot (at the backup's index and term) with the given membership, elects a
//! leader and serves every key the backup held. The cluster id is new (derived from the
//! membership and the backup's checksum, so the members agree without talking), so nodes of the
//! old cluster are refused by the new one and the other way round.
//!
//! The file is checked whole before anything is written (magic, format, checksum, and the
//! cache decoded); the data directory must not exist or be empty, and is written under its lock
//! through the WAL code a node uses when it installs a leader's snapshot.

use crate::config::{PeerEntry, PeerSpec, check_host_port, parse_peers};
use crate::peer_auth::{self, ClusterId};
use crate::transport::MemberAddr;
use crate::wal_store::{DataDirLock, WalStore, describe_io};
use bytes::Bytes;
use simple_cache_core::raft::Ready;
use simple_cache_core::{HardState, Membership, NodeId, Snapshot, SnapshotMeta, backup};
use std::path::Path;

/// What to restore, where.
#[derive(Clone, Debug)]
pub struct RestoreSpec<'a> {
    pub file: &'a Path,
    pub data_dir: &'a Path,
    pub node_id: u64,
    /// `id=raft_addr@http_addr,...`, as the server's `--peers`.
    pub peers: &'a str,
}

/// Restores; returns a report for the operator, or why nothing was written.
pub fn restore(spec: &RestoreSpec) -> Result<String, String> {
    let peers = members(spec.peers)?;
    if !peers.iter().any(|p| p.id == spec.node_id) {
        return Err(format!(
            "--node-id {} is not in --peers ({}): give this member's id",
            spec.node_id,
            peers.iter().map(|p| p.id.to_string()).collect::<Vec<_>>().join(",")
        ));
    }
    let file = spec.file.display();
    let bytes = std::fs::read(spec.file).map_err(|e| format!("{file}: {e}"))?;
    let b = backup::read(Bytes::from(bytes)).map_err(|e| format!("{file}: {e}"))?;
    let dir = spec.data_dir;
    // A volume's root may hold `lost+found`; anything else means a member lives here.
    if let Ok(entries) = std::fs::read_dir(dir)
        && let Some(other) = entries.filter_map(Result::ok).find(|e| e.file_name() != "lost+found")
    {
        return Err(format!(
            "data_dir {} is not empty (it holds {:?}): restore builds a new member's directory; \
             move the old one away first",
            dir.display(),
            other.file_name()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("data_dir {}: {e}", dir.display()))?;
    let _lock = DataDirLock::acquire(dir).map_err(|e| e.to_string())?;
    // Until the last step, the directory says it is unfinished: a node refuses to start on it
    // (`refuse_unfinished`), rather than taking a half-written one for a fresh directory and
    // bootstrapping an empty cluster.
    let marker = dir.join(UNFINISHED);
    write_durably(&marker, format!("a restore from {file} did not finish\n").as_bytes())
        .map_err(|e| format!("{}: {}", marker.display(), describe_io(&e)))?;
    let opened = WalStore::open(dir, simple_cache_core::wal::SEGMENT_BYTES_TARGET)
        .map_err(|e| format!("data_dir {}: {e}", dir.display()))?;
    let old = b.snapshot.meta.clone();
    let membership = Membership {
        voters: peers.iter().map(|p| NodeId(p.id)).collect(),
        learners: Default::default(),
        addresses: peers
            .iter()
            .map(|p| {
                let a = MemberAddr { raft: p.addr.clone(), http: p.http_addr.clone() };
                (NodeId(p.id), a.encode())
            })
            .collect(),
    };
    let meta = SnapshotMeta {
        last_index: old.last_index,
        last_term: old.last_term,
        membership: membership.clone(),
    };
    // As a follower installing the leader's snapshot: the snapshot file, then its WAL record
    // and a hard state at the snapshot's term, durable.
    let ready = Ready {
        snapshot: Some(Snapshot { meta, data: b.snapshot.data.clone() }),
        hard_state: Some(HardState {
            current_term: old.last_term,
            voted_for: None,
            commit_index: old.last_index,
        }),
        must_sync: true,
        ..Ready::default()
    };
    let mut wal = opened.store;
    wal.persist_ready(&ready).map_err(|e| format!("writing the WAL: {}", describe_io(&e)))?;
    let cluster_id = new_cluster_id(&peers, b.crc32c, old.last_index.0);
    ClusterId::default()
        .store(dir, cluster_id)
        .map_err(|e| format!("writing the cluster id: {}", describe_io(&e)))?;
    std::fs::remove_file(&marker)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| format!("{}: {}", marker.display(), describe_io(&e)))?;
    Ok(format!(
        "restored {file} into data_dir {}: {} keys at index {} (term {}), backup crc32c {:08x}\n  \
         new cluster {}: voters [{}], this is node {}\n  \
         next: restore every member the same way, then start each with its configuration \
         (the same node id and addresses; its peers and join settings are not used, the data \
         directory holds the membership)",
        dir.display(),
        b.keys,
        old.last_index.0,
        old.last_term.0,
        b.crc32c,
        peer_auth::hex(cluster_id),
        peers.iter().map(|p| p.id.to_string()).collect::<Vec<_>>().join(","),
        spec.node_id,
    ))
}

/// The file that marks a data directory a restore is still writing.
pub const UNFINISHED: &str = "RESTORE_UNFINISHED";

/// Refuses a data directory whose restore did not finish (see [`restore`]).
pub fn refuse_unfinished(data_dir: &Path) -> Result<(), String> {
    let marker = data_dir.join(UNFINISHED);
    if marker.exists() {
        return Err(format!(
            "data_dir {}: a snapshot restore into it did not finish ({} exists); empty the \
             directory and run the restore again",
            data_dir.display(),
            marker.display()
        ));
    }
    Ok(())
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

/// The new cluster's members, every one with its id and Raft address.
fn members(s: &str) -> Result<Vec<PeerSpec>, String> {
    let entries = parse_peers(s).map_err(|e| format!("--peers: {}", e.problem))?;
    let mut out: Vec<PeerSpec> = Vec::new();
    for e in entries {
        let PeerEntry::Spec(p) = e else {
            return Err("--peers: give every member as id=raft_addr[@http_addr]".to_string());
        };
        if p.id == 0 {
            return Err("--peers: a member id must be at least 1".to_string());
        }
        if out.iter().any(|q| q.id == p.id) {
            return Err(format!("--peers: member id {} is listed twice", p.id));
        }
        check_host_port("peers", &p.addr).map_err(|e| format!("--peers: {}", e.problem))?;
        if let Some(h) = &p.http_addr {
            check_host_port("peers", h).map_err(|e| format!("--peers: {}", e.problem))?;
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err("--peers: at least one member is needed".to_string());
    }
    Ok(out)
}

/// The same on every member restored from the same file with the same membership, and not the
/// old cluster's (the backup's checksum and index go into it).
fn new_cluster_id(peers: &[PeerSpec], crc: u32, index: u64) -> u64 {
    let mut list: Vec<(u64, String)> = peers.iter().map(|p| (p.id, p.addr.clone())).collect();
    list.push((0, format!("restored from {crc:08x} at {index}")));
    peer_auth::derive(&list)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A directory whose restore stopped half-way is refused by a starting node, not taken for
    // an empty one.
    #[test]
    fn an_unfinished_restore_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert!(refuse_unfinished(d.path()).is_ok());
        std::fs::write(d.path().join(UNFINISHED), b"x").unwrap();
        let e = refuse_unfinished(d.path()).unwrap_err();
        assert!(e.contains("did not finish"), "{e}");
    }

    #[test]
    fn peers_must_be_complete_and_distinct() {
        assert!(members("1=127.0.0.1:9091@127.0.0.1:8081,2=127.0.0.1:9092").is_ok());
        for bad in [
            "",
            "1=127.0.0.1:9091,1=127.0.0.1:9092",
            "0=127.0.0.1:9091",
            "http://127.0.0.1:9091",
            "1=nowhere",
        ] {
            assert!(members(bad).is_err(), "{bad:?} was accepted");
        }
    }

    // Members restored from one file agree on the id; another file or membership gives another.
    #[test]
    fn the_cluster_id_is_shared_and_new() {
        let p = members("1=127.0.0.1:9091,2=127.0.0.1:9092").unwrap();
        let q = members("2=127.0.0.1:9092,1=127.0.0.1:9091").unwrap();
        assert_eq!(new_cluster_id(&p, 7, 10), new_cluster_id(&q, 7, 10));
        assert_ne!(new_cluster_id(&p, 7, 10), new_cluster_id(&p, 8, 10));
        assert_ne!(
            new_cluster_id(&p, 7, 10),
            peer_auth::derive(&[(1, "127.0.0.1:9091".into()), (2, "127.0.0.1:9092".into())])
        );
    }
}
