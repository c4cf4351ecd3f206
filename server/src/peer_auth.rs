//! Who may talk on the Raft port: the cluster id and the optional `peer_token`.
//!
//! **Cluster id.** Fixed when a cluster is bootstrapped and recorded in `data_dir/cluster_id`
//! (hex, written durably). Every peer batch carries it in the [`CLUSTER_HEADER`] header, and a
//! node refuses a batch that names another cluster (403 `wrong_cluster`): a node of one cluster
//! pointed at another's address by a configuration mistake is refused instead of mixing two logs.
//! Members bootstrapped together from `peers` derive the same id from the sorted member list (so
//! two clusters bootstrapped from the same list share an id; the `peer_token` tells them apart);
//! a single node draws a random one; a joining node learns it from the join answer. A batch
//! without the header (a node of an older version) is accepted.
//!
//! **Peer token.** With `peer_token` set, every request to the Raft port must carry
//! `Authorization: Bearer <peer_token>` (401 otherwise): only nodes that know the secret can send
//! Raft messages or be probed. Like `admin_token`, it is compared in constant time.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header carrying the sender's cluster id (16 hex digits).
pub const CLUSTER_HEADER: &str = "x-simple-cache-cluster";
/// The header carrying the sender's own Raft address, so a leader can answer a node it has no
/// address for (a member removed before this leader started, which must be told).
pub const SENDER_HEADER: &str = "x-simple-cache-raft-addr";
/// The client (HTTP) address of the sender of a Raft batch, so members learn where to forward
/// writes when their membership lists only Raft addresses (the seed's `peers` URLs).
pub const CLIENT_HEADER: &str = "x-simple-cache-client-addr";
const FILE: &str = "cluster_id";

/// This node's cluster id, shared by the transport and the Raft listener; 0 while unknown (a
/// joining node before its join was answered, or a data directory from an older version).
#[derive(Clone, Debug, Default)]
pub struct ClusterId(Arc<AtomicU64>);

impl ClusterId {
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&id| id != 0)
    }

    pub fn set(&self, id: u64) {
        self.0.store(id, Ordering::Relaxed);
    }

    /// Reads `data_dir/cluster_id`, if present.
    pub fn load(data_dir: &Path) -> Result<ClusterId, String> {
        let path = data_dir.join(FILE);
        let id = ClusterId::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let n = u64::from_str_radix(text.trim(), 16).ok().filter(|&n| n != 0).ok_or_else(
                    || format!("{}: not a cluster id: {:?}", path.display(), text.trim()),
                )?;
                id.set(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(id)
    }

    /// Records `id` durably in `data_dir/cluster_id` (temporary file, fsync, rename, directory
    /// fsync) and makes it this node's.
    pub fn store(&self, data_dir: &Path, id: u64) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = data_dir.join(format!("{FILE}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(format!("{}\n", hex(id)).as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, data_dir.join(FILE))?;
        std::fs::File::open(data_dir)?.sync_all()?;
        self.set(id);
        Ok(())
    }

    /// Whether a batch whose header says `sent` may be taken: the same cluster, or either side
    /// does not know its id.
    pub fn accepts(&self, sent: Option<&str>) -> Result<(), String> {
        let (Some(mine), Some(sent)) = (self.get(), sent) else { return Ok(()) };
        match u64::from_str_radix(sent, 16) {
            Ok(theirs) if theirs == mine => Ok(()),
            _ => Err(format!(
                "the sender belongs to cluster {sent}, this node to cluster {}",
                hex(mine)
            )),
        }
    }
}

pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

/// The id members bootstrapped together compute alike: FNV-1a over the sorted `id=addr` list
/// (a fixed function, so every version of the binary derives the same id).
pub fn derive(members: &[(u64, String)]) -> u64 {
    let mut sorted: Vec<&(u64, String)> = members.iter().collect();
    sorted.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (id, addr) in sorted {
        for b in format!("{id}={addr};").bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h.max(1)
}

/// Constant-time check of `Authorization: Bearer <token>` against `expected`.
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    token_matches(authorization.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or(""), expected)
}

/// Constant-time comparison of a token a peer or client gave with `expected`.
pub fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Members listing the same peers in any order derive the same id; another list another.
    #[test]
    fn derived_id_depends_on_the_member_list_only() {
        let a = derive(&[(1, "h:1".into()), (2, "h:2".into())]);
        assert_eq!(a, derive(&[(2, "h:2".into()), (1, "h:1".into())]));
        assert_ne!(a, derive(&[(1, "h:1".into()), (2, "h:3".into())]));
    }

    // Another cluster's batch is refused; an unknown id on either side is accepted.
    #[test]
    fn batches_of_another_cluster_are_refused() {
        let id = ClusterId::default();
        assert!(id.accepts(Some("00000000000000aa")).is_ok(), "this node does not know yet");
        id.set(0xaa);
        assert!(id.accepts(Some("00000000000000aa")).is_ok());
        assert!(id.accepts(None).is_ok(), "an older peer sends no header");
        assert!(id.accepts(Some("00000000000000ab")).is_err());
        assert!(id.accepts(Some("garbage")).is_err());
    }

    // The token must match exactly.
    #[test]
    fn bearer_tokens_match_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
