//! The in-memory Raft log: a snapshot boundary followed by the entries after it, plus the marks
//! that tell which entries the driver has made durable.

use crate::message::{Entry, EntryPayload, Membership, SnapshotMeta};
use crate::types::{LogIndex, Term};
use std::collections::VecDeque;

#[derive(Clone, Debug, Default)]
pub struct RaftLog {
    /// Everything up to `snapshot.last_index` is compacted into the snapshot.
    snapshot: SnapshotMeta,
    /// `entries[i].index == snapshot.last_index + 1 + i`.
    entries: VecDeque<Entry>,
    /// The highest index known durable on this node's disk and still part of this log.
    persisted: LogIndex,
    /// The first index not yet handed to the driver for persistence.
    unstable_from: LogIndex,
}

impl RaftLog {
    /// A log recovered from disk: the snapshot boundary and the entries after it, all durable.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>) -> RaftLog {
        let mut expected = snapshot.last_index.next();
        for e in &entries {
            assert_eq!(
                e.index, expected,
                "recovered log entries are contiguous after the snapshot"
            );
            expected = expected.next();
        }
        let last = expected.prev();
        RaftLog { snapshot, entries: entries.into(), persisted: last, unstable_from: last.next() }
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }
    pub fn first_index(&self) -> LogIndex {
        self.snapshot.last_index.next()
    }
    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.snapshot.last_index.0 + self.entries.len() as u64)
    }
    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot.last_term, |e| e.term)
    }
    pub fn persisted_index(&self) -> LogIndex {
        self.persisted
    }

    /// The term of the entry at `index`; `None` if it is compacted away or beyond the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.snapshot.last_index {
            return Some(self.snapshot.last_term);
        }
        self.get(index).map(|e| e.term)
    }

    pub fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.snapshot.last_index {
            return None;
        }
        self.entries.get((index.0 - self.snapshot.last_index.0 - 1) as usize)
    }

    /// Whether the log holds an entry at `index` with `term` (the log matching check).
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// Entries from `lo` on, at most `count_max` of them and, beyond the first, at most
    /// `bytes_max` bytes. `lo` must not be compacted.
    pub fn slice(&self, lo: LogIndex, count_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut index = lo;
        while let Some(e) = self.get(index) {
            bytes += e.size_bytes();
            if out.len() >= count_max || (!out.is_empty() && bytes > bytes_max) {
                break;
            }
            out.push(e.clone());
            index = index.next();
        }
        out
    }

    /// Appends entries that directly follow the last one (the leader's own proposals).
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index().next(), "log entries are appended contiguously");
        assert!(entry.term >= self.last_term(), "entry terms never decrease along the log");
        self.entries.push_back(entry);
    }

    /// Follower append after the previous index matched: skips entries already present, truncates
    /// at the first conflicting entry and appends the rest. Returns the truncation point if any.
    pub fn append_after_match(&mut self, entries: Vec<Entry>) -> Option<LogIndex> {
        let mut truncated = None;
        for e in entries {
            if e.index <= self.snapshot.last_index {
                continue; // covered by our snapshot, so committed and therefore equal
            }
            match self.term_at(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    self.truncate_from(e.index);
                    truncated = Some(e.index);
                    self.entries.push_back(e);
                }
                None => self.append(e),
            }
        }
        truncated
    }

    /// Removes every entry at `index` and after.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(index > self.snapshot.last_index, "never truncate into the snapshot");
        let keep = (index.0 - self.snapshot.last_index.0 - 1) as usize;
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(index.prev());
        self.unstable_from = self.unstable_from.min(index);
    }

    /// Entries the driver has not yet been asked to persist; marks them handed out.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let last = self.last_index();
        if self.unstable_from > last {
            return Vec::new();
        }
        let from = self.unstable_from.max(self.first_index());
        let out = self.slice(from, usize::MAX, usize::MAX);
        self.unstable_from = last.next();
        out
    }

    /// The driver made everything up to `index` (with `term`) durable.
    pub fn persisted_to(&mut self, index: LogIndex, term: Term) {
        // A later truncation may have replaced the entry; then the ack is about a stale entry.
        if self.term_at(index) == Some(term) && index < self.unstable_from {
            self.persisted = self.persisted.max(index);
        }
    }

    /// Drops entries up to `meta.last_index`, which a snapshot now covers. Entries after it
    /// stay when the log agrees with the snapshot at its boundary; otherwise the whole log goes.
    pub fn install_snapshot(&mut self, meta: SnapshotMeta) {
        if self.matches(meta.last_index, meta.last_term) && meta.last_index <= self.last_index() {
            let drop = (meta.last_index.0 - self.snapshot.last_index.0) as usize;
            self.entries.drain(..drop);
            self.persisted = self.persisted.max(meta.last_index);
        } else {
            // The log disagrees with the snapshot: every entry goes, durable or not.
            self.entries.clear();
            self.unstable_from = meta.last_index.next();
            self.persisted = meta.last_index;
        }
        self.unstable_from = self.unstable_from.max(meta.last_index.next());
        self.snapshot = meta;
        // The log grew to what one snapshot interval holds (hundreds of thousands of entries
        // for a large cache) and a deque never gives that back by itself: keep at most twice
        // what is left, so the next interval regrows it once instead of it staying at the peak.
        if self.entries.capacity() > 2 * self.entries.len().max(1024) {
            self.entries.shrink_to(2 * self.entries.len().max(1024));
        }
    }

    /// The membership in force after the entry at `index`: the latest membership entry at or
    /// before it, else the snapshot's.
    pub fn membership_at(&self, index: LogIndex) -> (LogIndex, Membership) {
        let mut i = index.min(self.last_index());
        while i > self.snapshot.last_index {
            if let Some(Entry { payload: EntryPayload::Membership(m), .. }) = self.get(i) {
                return (i, Membership::clone(m));
            }
            i = i.prev();
        }
        (self.snapshot.last_index, self.snapshot.membership.clone())
    }

    /// The first index of the run of entries with `term` that contains `index`.
    pub fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else { return index };
        let mut i = index;
        while i > self.first_index() && self.term_at(i.prev()) == Some(term) {
            i = i.prev();
        }
        i
    }

    /// The last index holding an entry of `term`, if the log has any.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let mut i = self.last_index();
        while i >= self.first_index() {
            match self.term_at(i) {
                Some(t) if t == term => return Some(i),
                Some(t) if t < term => return None,
                _ => {}
            }
            i = i.prev();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A compaction gives back what the deque grew to: a large cache's log reaches hundreds of
    // thousands of entries between snapshots, and that peak must not stay allocated.
    #[test]
    fn compaction_gives_back_the_deque_s_peak() {
        let entries: Vec<Entry> = (1..=100_000)
            .map(|i| Entry { term: Term(1), index: LogIndex(i), payload: EntryPayload::Noop })
            .collect();
        let mut log = RaftLog::restore(SnapshotMeta::default(), entries);
        let meta = |i| SnapshotMeta {
            last_index: LogIndex(i),
            last_term: Term(1),
            ..SnapshotMeta::default()
        };
        log.install_snapshot(meta(99_990));
        assert_eq!(log.first_index(), LogIndex(99_991));
        assert!(log.entries.capacity() <= 2048, "capacity {}", log.entries.capacity());
        // Entries after the snapshot stay.
        assert_eq!(log.entries.len(), 10);
        assert_eq!(log.entries[0].index, LogIndex(99_991));
    }
}
