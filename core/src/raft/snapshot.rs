//! Raft's side of snapshots: compaction at the snapshot lifecycle's request (`crate::snapshot`), the data held for followers and asked for
//! again when released, sending a snapshot in chunks, and receiving and installing one.

use super::*;

impl RaftNode {
    /// The metadata a snapshot of the state machine at `index` carries: `None` unless `index`
    /// is applied and still in the log.
    pub(crate) fn snapshot_meta_at(&self, index: LogIndex) -> Option<SnapshotMeta> {
        if index > self.last_applied || index <= self.log.snapshot_meta().last_index {
            return None;
        }
        let last_term = self.log.term_at(index)?;
        let (_, membership) = self.log.membership_at(index);
        Some(SnapshotMeta { last_index: index, last_term, membership })
    }

    /// The node's snapshot lifecycle (`crate::snapshot`) has a durable snapshot of the state
    /// machine at `index` (which must be applied):
    /// the log up to it is dropped and the snapshot's data, if given, is kept to send to
    /// lagging followers (until [`RaftNode::release_snapshot_data`]). Without it, a follower
    /// that needs the snapshot makes [`RaftNode::wants_snapshot`] ask for it.
    pub(crate) fn compact(
        &mut self,
        index: LogIndex,
        data: Option<Bytes>,
    ) -> Result<(), CompactError> {
        if index > self.last_applied {
            return Err(CompactError::NotApplied { index, applied: self.last_applied });
        }
        let snapshot_index = self.log.snapshot_meta().last_index;
        if index <= snapshot_index {
            return Err(CompactError::AlreadyCompacted { index, snapshot_index });
        }
        let meta = self.snapshot_meta_at(index).expect("an applied, uncompacted index");
        self.log.install_snapshot(meta.clone());
        tracing::info!(node = %self.id, index = %index, "log compacted into snapshot");
        self.snapshot = data.map(|data| Snapshot { meta, data });
        self.snapshot_wanted = self.snapshot.is_none() && self.snapshot_needed();
        Ok(())
    }

    /// Whether a follower is receiving a snapshot or needs one (its next entry is compacted).
    fn snapshot_needed(&self) -> bool {
        let compacted = self.log.snapshot_meta().last_index;
        self.leader.as_ref().is_some_and(|l| {
            l.progress.values().any(|p| {
                matches!(p.state(), ReplicationState::Snapshot { .. })
                    || p.next_index() <= compacted
            })
        })
    }

    /// Drops the snapshot data held for sending to followers, unless one is receiving it or
    /// needs it (its next entry is compacted away). A cache's snapshot is as large as the cache,
    /// so holding it doubles the memory of a node; when a follower needs one later,
    /// [`RaftNode::wants_snapshot`] asks the snapshot lifecycle for it.
    pub(crate) fn release_snapshot_data(&mut self) {
        if self.snapshot.is_some() && !self.snapshot_needed() {
            self.snapshot = None;
        }
    }

    /// A follower needs a snapshot and the data was released: `crate::snapshot` provides the state
    /// machine at an applied index, with [`RaftNode::compact`] if that is past the log's
    /// snapshot index, else with [`RaftNode::provide_snapshot_data`]. Replication to that
    /// follower resumes with its next probe.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.snapshot_wanted
    }

    /// Gives back the data of the log's current snapshot (after a release): `snapshot` must be
    /// the state machine at exactly that snapshot's index, else it is refused.
    pub(crate) fn provide_snapshot_data(&mut self, snapshot: Snapshot) -> Result<(), CompactError> {
        let current = self.log.snapshot_meta();
        if snapshot.meta != *current {
            return Err(CompactError::NotCurrentSnapshot {
                index: snapshot.meta.last_index,
                snapshot_index: current.last_index,
            });
        }
        self.snapshot = Some(snapshot);
        self.snapshot_wanted = false;
        Ok(())
    }

    /// Sets the check a snapshot received from a leader must pass before it is installed: the
    /// state machine's own decoder, so bytes it cannot restore are refused on receipt (and never
    /// persisted or applied) instead of failing later in the driver.
    pub fn set_snapshot_check(&mut self, check: SnapshotCheck) {
        self.snapshot_check = Some(check);
    }

    pub(super) fn start_snapshot(&mut self, to: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            // The data was released: ask the snapshot lifecycle for it; the next probe sends it.
            self.snapshot_wanted = true;
            return;
        };
        let last_index = snapshot.meta.last_index;
        tracing::info!(node = %self.id, follower = %to, index = %last_index, "sending snapshot");
        if let Some(p) = lead!(self).progress.get_mut(&to) {
            p.start_snapshot(last_index);
        }
        self.send_snapshot_chunk(to);
    }

    pub(super) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snapshot) = &self.snapshot else {
            // Compacted to a snapshot whose data was not kept: ask for it; the next probe of
            // this follower sends it.
            self.snapshot_wanted = true;
            return;
        };
        let Some(p) = self.leader.as_deref_mut().and_then(|l| l.progress.get_mut(&to)) else {
            return;
        };
        let ReplicationState::Snapshot { last_index, offset } = *p.state() else { return };
        let offset = if last_index == snapshot.meta.last_index {
            offset
        } else {
            // A newer snapshot replaced the one being sent: start over with it.
            let last_index = snapshot.meta.last_index;
            tracing::info!(node = %self.id, follower = %to, index = %last_index, "sending snapshot");
            p.start_snapshot(last_index);
            0
        };
        let total = snapshot.data.len() as u64;
        let start = offset.min(total) as usize;
        let end = (start + self.cfg.snapshot_chunk_bytes_max).min(snapshot.data.len());
        let data = snapshot.data.slice(start..end);
        let done = end == snapshot.data.len();
        let meta = snapshot.meta.clone();
        self.send(to, MessageBody::InstallSnapshot { meta, offset: start as u64, data, done });
    }

    /// Tells the sender to start the snapshot at `last_index` over from offset 0.
    pub(super) fn refuse_snapshot(&mut self, to: NodeId, last_index: LogIndex) {
        let body = MessageBody::InstallSnapshotResponse {
            last_index,
            next_offset: 0,
            done: false,
            rejected: true,
        };
        self.send(to, body);
    }

    /// A chunk of a snapshot from the leader: collected in order (a chunk at another offset is
    /// answered with the offset expected), bounded by `snapshot_bytes_max`, and installed when
    /// the last chunk arrives and the data passes the snapshot check.
    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let last_index = meta.last_index;
        if last_index <= self.commit_index {
            // We already have everything it contains.
            self.incoming_snapshot = None;
            return self.answer_snapshot(from, self.commit_index, 0, true, false);
        }
        if offset == 0 {
            self.incoming_snapshot =
                Some(IncomingSnapshot { meta: meta.clone(), data: Vec::new() });
        }
        let expected = match &self.incoming_snapshot {
            Some(s) if s.meta == meta => s.data.len() as u64,
            _ => 0,
        };
        if offset != expected || (offset != 0 && self.incoming_snapshot.is_none()) {
            return self.answer_snapshot(from, last_index, expected, false, true);
        }
        let incoming = self.incoming_snapshot.as_mut().expect("set above");
        if incoming.data.len() as u64 + data.len() as u64 > self.cfg.snapshot_bytes_max {
            tracing::warn!(node = %self.id, limit = self.cfg.snapshot_bytes_max, "incoming snapshot exceeds the size limit");
            self.incoming_snapshot = None;
            return self.refuse_snapshot(from, last_index);
        }
        incoming.data.extend_from_slice(&data);
        let next_offset = incoming.data.len() as u64;
        if !done {
            return self.answer_snapshot(from, last_index, next_offset, false, false);
        }
        let incoming = self.incoming_snapshot.take().expect("set above");
        self.install_received_snapshot(from, incoming);
    }

    /// The whole snapshot arrived: check it, then install it (log, commit index, membership, and
    /// the `Ready` that hands it to the driver), and tell the leader.
    fn install_received_snapshot(&mut self, from: NodeId, incoming: IncomingSnapshot) {
        let last_index = incoming.meta.last_index;
        let next_offset = incoming.data.len() as u64;
        if let Some(Err(reason)) = self.snapshot_check.map(|check| check(&incoming.data)) {
            // Nothing was installed: the log, commit index and state machine are untouched, and
            // the sender starts over from offset 0 if it insists.
            tracing::warn!(node = %self.id, %from, index = %last_index, %reason, "refusing a snapshot that does not decode");
            return self.refuse_snapshot(from, last_index);
        }
        tracing::info!(node = %self.id, index = %last_index, bytes = incoming.data.len(), "installing snapshot from leader");
        let snapshot = Snapshot { meta: incoming.meta, data: Bytes::from(incoming.data) };
        self.log.install_snapshot(snapshot.meta.clone());
        self.set_commit(last_index);
        // Entries before the snapshot that were committed but not yet applied are superseded.
        self.refresh_membership();
        self.snapshot_to_install = Some(snapshot.clone());
        self.snapshot = Some(snapshot);
        self.answer_snapshot(from, last_index, next_offset, true, false);
    }

    fn answer_snapshot(
        &mut self,
        to: NodeId,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        rejected: bool,
    ) {
        let body = MessageBody::InstallSnapshotResponse { last_index, next_offset, done, rejected };
        self.send(to, body);
    }

    pub(super) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        last_index: LogIndex,
        next_offset: u64,
        done: bool,
        _rejected: bool,
    ) {
        if self.role != Role::Leader {
            return;
        }
        let now = self.now;
        let Some(p) = lead!(self).progress.get_mut(&from) else { return };
        p.heard_from(now);
        let ReplicationState::Snapshot { last_index: sending, .. } = *p.state() else {
            if done {
                p.update_match(last_index.min(self.log.last_index()));
            }
            return;
        };
        if done {
            p.snapshot_installed(last_index);
            tracing::info!(node = %self.id, follower = %from, index = %last_index, "follower installed snapshot");
            self.maybe_commit();
            self.send_append(from, true);
            return;
        }
        if last_index != sending {
            return; // about an older snapshot
        }
        // Accepted: continue where the follower is; rejected: resend from where it asks.
        p.snapshot_sent_to(sending, next_offset);
        self.send_snapshot_chunk(from);
    }
}
