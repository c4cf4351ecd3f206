//! Tunables of a Raft node, each with a limit, and their validation.

use crate::types::NodeId;

/// Room left in a WAL record for everything around one entry's payload (record framing, the
/// codec's version byte, the entry's term and index, length prefixes).
pub const ENTRY_FRAMING_BYTES_MAX: usize = 64 * 1024;
/// The largest payload one log entry can carry: a larger entry could not be written to the WAL
/// as one record (see [`crate::wal::RECORD_BYTES_MAX`]).
pub const ENTRY_BYTES_LIMIT: usize = crate::wal::RECORD_BYTES_MAX - ENTRY_FRAMING_BYTES_MAX;

/// Configuration of one [`RaftNode`](crate::raft::RaftNode). Times are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id (never 0).
    pub id: NodeId,
    /// Leader heartbeat period.
    pub heartbeat_interval_ms: u64,
    /// Base election timeout; each wait is drawn from `[election_timeout_ms, 2 * election_timeout_ms)`.
    pub election_timeout_ms: u64,
    /// Ask peers for a pre-vote before disturbing the cluster with a new term.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down; a
    /// follower that heard from a leader within an election timeout refuses to vote.
    pub check_quorum: bool,
    /// Entries in one AppendEntries message.
    pub append_entries_max: usize,
    /// Bytes of entry payload in one AppendEntries message (at least one entry is always sent).
    pub append_bytes_max: usize,
    /// AppendEntries messages in flight to one follower before waiting for acknowledgements.
    pub inflight_appends_max: usize,
    /// Entries the leader accepts beyond its commit index before refusing proposals.
    pub pending_proposals_max: usize,
    /// Bytes of uncommitted entries the leader accepts before refusing proposals.
    pub pending_proposal_bytes_max: usize,
    /// Read requests waiting for a read index on this node.
    pub pending_reads_max: usize,
    /// Bytes of snapshot data in one InstallSnapshot message.
    pub snapshot_chunk_bytes_max: usize,
    /// Size of a snapshot a follower accepts (guards memory against a hostile sender).
    pub snapshot_bytes_max: u64,
    /// A learner is caught up (and may be promoted) when it was heard from within an election
    /// timeout, holds every committed entry, and its match index is within this many entries of
    /// the leader's last index.
    pub promotion_lag_max: u64,
    /// Payload bytes of one proposed command; larger proposals are refused with
    /// `ProposeError::TooLarge`. At most [`ENTRY_BYTES_LIMIT`].
    pub entry_bytes_max: usize,
}

impl Config {
    /// Defaults suited to a LAN deployment, for the given node id.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            pre_vote: true,
            check_quorum: true,
            append_entries_max: 1024,
            append_bytes_max: 1 << 20,
            inflight_appends_max: 64,
            pending_proposals_max: 65_536,
            pending_proposal_bytes_max: 256 << 20,
            pending_reads_max: 65_536,
            snapshot_chunk_bytes_max: 1 << 20,
            snapshot_bytes_max: 16 << 30,
            promotion_lag_max: 1024,
            entry_bytes_max: ENTRY_BYTES_LIMIT,
        }
    }

    /// Rejects configurations that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NodeId(0) {
            return Err(ConfigError::ZeroNodeId);
        }
        if self.heartbeat_interval_ms == 0 {
            return Err(ConfigError::Zero { field: "heartbeat_interval_ms" });
        }
        if self.election_timeout_ms <= self.heartbeat_interval_ms {
            return Err(ConfigError::ElectionTimeoutTooShort {
                election_timeout_ms: self.election_timeout_ms,
                heartbeat_interval_ms: self.heartbeat_interval_ms,
            });
        }
        let limits = [
            ("append_entries_max", self.append_entries_max as u64),
            ("append_bytes_max", self.append_bytes_max as u64),
            ("inflight_appends_max", self.inflight_appends_max as u64),
            ("pending_proposals_max", self.pending_proposals_max as u64),
            ("pending_proposal_bytes_max", self.pending_proposal_bytes_max as u64),
            ("pending_reads_max", self.pending_reads_max as u64),
            ("snapshot_chunk_bytes_max", self.snapshot_chunk_bytes_max as u64),
            ("snapshot_bytes_max", self.snapshot_bytes_max),
        ];
        for (field, value) in limits {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if self.entry_bytes_max == 0 || self.entry_bytes_max > ENTRY_BYTES_LIMIT {
            return Err(ConfigError::EntryBytes { value: self.entry_bytes_max });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id must not be 0")]
    ZeroNodeId,
    #[error("{field} must be greater than 0")]
    Zero { field: &'static str },
    #[error(
        "election timeout ({election_timeout_ms} ms) must be greater than the heartbeat interval ({heartbeat_interval_ms} ms)"
    )]
    ElectionTimeoutTooShort { election_timeout_ms: u64, heartbeat_interval_ms: u64 },
    #[error("entry_bytes_max ({value}) must be between 1 and {ENTRY_BYTES_LIMIT} (a WAL record)")]
    EntryBytes { value: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    // The defaults are valid: a node built from Config::new must start.
    #[test]
    fn default_config_is_valid() {
        assert_eq!(Config::new(NodeId(1)).validate(), Ok(()));
    }

    // An election timeout not above the heartbeat interval would make followers campaign
    // against a healthy leader.
    #[test]
    fn validate_rejects_election_timeout_not_above_heartbeat() {
        let mut c = Config::new(NodeId(1));
        c.election_timeout_ms = c.heartbeat_interval_ms;
        assert!(matches!(c.validate(), Err(ConfigError::ElectionTimeoutTooShort { .. })));
    }

    // Every limit must be positive; zero would stall replication or refuse every request.
    #[test]
    fn validate_rejects_zero_limits() {
        let mut c = Config::new(NodeId(1));
        c.inflight_appends_max = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero { field: "inflight_appends_max" }));
        let mut c = Config::new(NodeId(1));
        c.snapshot_chunk_bytes_max = 0;
        assert_eq!(c.validate(), Err(ConfigError::Zero { field: "snapshot_chunk_bytes_max" }));
        assert_eq!(Config::new(NodeId(0)).validate(), Err(ConfigError::ZeroNodeId));
    }
}
