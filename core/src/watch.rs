//! The change feed: every change the state machine applies, as [`Event`]s in revision order,
//! kept in a bounded history ([`History`]) that watchers read from a revision on.
//!
//! Events come from applying committed entries (the cache records them while
//! [`crate::cache::Cache::record_events`] is on), so every node produces the same events for
//! the same log. A node's history starts where it started applying (after a restart, the
//! snapshot it recovered and the entries it replays), and a snapshot installed from the leader
//! leaves a gap: the history is complete only from [`History::first`]. A watcher that asks
//! for an older revision gets [`WatchError::Compacted`] with the oldest one available, never
//! a silent gap.

use crate::cache::Revisions;
use crate::types::Instant;
use bytes::Bytes;
use std::collections::VecDeque;

/// One change of one key (or of every key: [`EventKind::Reset`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The revision (log index) of the entry that made the change.
    pub revision: u64,
    /// The key; empty for [`EventKind::Reset`].
    pub key: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key now holds `value` (stored bytes) with these revisions and deadline.
    Put { value: Bytes, revisions: Revisions, expires_at: Option<Instant> },
    /// The key is gone.
    Delete { cause: DeleteCause },
    /// Every key is gone (`reset`).
    Reset,
}

/// Why a key went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteCause {
    /// A delete (or a `getdel`, or a delete in a batch).
    Deleted,
    /// Its deadline passed (removed through the log), or an expire removed it.
    Expired,
    /// The memory bound evicted it.
    Evicted,
}

impl DeleteCause {
    pub fn name(self) -> &'static str {
        match self {
            DeleteCause::Deleted => "deleted",
            DeleteCause::Expired => "expired",
            DeleteCause::Evicted => "evicted",
        }
    }
}

/// Which keys a watcher follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Key(String),
    Prefix(String),
}

impl Filter {
    /// Whether `event` concerns a watcher of this filter (a reset concerns everyone).
    pub fn matches(&self, event: &Event) -> bool {
        match (&event.kind, self) {
            (EventKind::Reset, _) => true,
            (_, Filter::Key(k)) => event.key == *k,
            (_, Filter::Prefix(p)) => event.key.starts_with(p.as_str()),
        }
    }
}

/// Why a watch cannot start where it asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The history no longer holds `asked` (or never did on this node): it starts at `oldest`.
    #[error("revision {asked} is compacted; the oldest this node can replay from is {oldest}")]
    Compacted { asked: u64, oldest: u64 },
}

/// The most value bytes a [`History`] holds, whatever its event bound: old events go first.
pub const HISTORY_BYTES_MAX: usize = 64 << 20;

/// The value bytes an event holds.
fn event_bytes(e: &Event) -> usize {
    match &e.kind {
        EventKind::Put { value, .. } => value.len() + e.key.len(),
        _ => e.key.len(),
    }
}

/// The bounded history of one node's events: at most `max_events` of them and
/// [`HISTORY_BYTES_MAX`] bytes of keys and values.
#[derive(Debug)]
pub struct History {
    events: VecDeque<Event>,
    max_events: usize,
    /// Bytes of keys and values the events hold.
    bytes: usize,
    /// The history holds every event with a revision >= `first`.
    first: u64,
    /// The last revision applied (with or without events).
    last: u64,
}

impl History {
    /// An empty history of a node that has applied up to `applied`: complete from the next
    /// revision on. Keeps at most `max_events` events (at least 1).
    pub fn new(applied: u64, max_events: usize) -> History {
        History {
            events: VecDeque::new(),
            max_events: max_events.max(1),
            bytes: 0,
            first: applied + 1,
            last: applied,
        }
    }

    /// The oldest revision a watch can start from.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The last revision applied.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Entries up to `revision` were applied, with these events (of revisions in
    /// `(last, revision]`, in order). The oldest events beyond the bound are dropped.
    pub fn applied(&mut self, revision: u64, events: impl IntoIterator<Item = Event>) {
        for e in events {
            debug_assert!(e.revision > self.last && e.revision <= revision, "events in order");
            self.bytes += event_bytes(&e);
            self.events.push_back(e);
        }
        self.last = self.last.max(revision);
        while self.events.len() > self.max_events || self.bytes > HISTORY_BYTES_MAX {
            let dropped = self.pop();
            // Events of one revision go together: a watcher resumes after a whole revision.
            self.first = dropped.revision + 1;
        }
        while self.events.front().is_some_and(|e| e.revision < self.first) {
            self.pop();
        }
    }

    fn pop(&mut self) -> Event {
        let e = self.events.pop_front().expect("not empty");
        self.bytes -= event_bytes(&e);
        e
    }

    /// A snapshot from the leader replaced the state at `index`: the changes before it are not
    /// known here, so the history starts over after it.
    pub fn snapshot_installed(&mut self, index: u64) {
        if index >= self.last {
            self.events.clear();
            self.bytes = 0;
            self.first = index + 1;
            self.last = index;
        }
    }

    /// The events a watch from revision `from` (`None`: from the next one) gets from the
    /// history, and the revision it goes on from.
    pub fn replay(
        &self,
        filter: &Filter,
        from: Option<u64>,
    ) -> Result<(Vec<Event>, u64), WatchError> {
        let from = from.unwrap_or(self.last + 1);
        if from < self.first {
            return Err(WatchError::Compacted { asked: from, oldest: self.first });
        }
        let events = self
            .events
            .iter()
            .filter(|e| e.revision >= from && filter.matches(e))
            .cloned()
            .collect();
        Ok((events, from.max(self.last + 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(revision: u64, key: &str) -> Event {
        let kind = EventKind::Put {
            value: Bytes::from_static(b"v"),
            revisions: Revisions::default(),
            expires_at: None,
        };
        Event { revision, key: key.into(), kind }
    }

    // Replays from a revision on, filtered; older than the bound or across a snapshot install is
    // a `Compacted` error naming the oldest revision; whole revisions are dropped together.
    #[test]
    fn history_replays_and_says_when_compacted() {
        let mut h = History::new(10, 3);
        assert_eq!(h.first(), 11);
        h.applied(11, [put(11, "a")]);
        h.applied(12, [put(12, "b"), put(12, "ab")]);
        h.applied(13, []);
        let a = Filter::Prefix("a".into());
        let (events, next) = h.replay(&a, Some(11)).unwrap();
        assert_eq!(events, vec![put(11, "a"), put(12, "ab")]);
        assert_eq!(next, 14);
        assert_eq!(h.replay(&a, None).unwrap(), (vec![], 14), "from now on");
        h.applied(14, [put(14, "a")]);
        assert_eq!(h.first(), 12, "the bound dropped revision 11");
        assert_eq!(h.replay(&a, Some(11)), Err(WatchError::Compacted { asked: 11, oldest: 12 }));
        let (events, _) = h.replay(&Filter::Key("a".into()), Some(12)).unwrap();
        assert_eq!(events, vec![put(14, "a")]);
        h.snapshot_installed(40);
        assert_eq!(h.replay(&a, Some(14)), Err(WatchError::Compacted { asked: 14, oldest: 41 }));
        assert_eq!(h.replay(&a, None).unwrap(), (vec![], 41));
        // Large values: the byte bound drops old events before the count bound does.
        let mut big = History::new(0, 1000);
        let value = Bytes::from(vec![0u8; HISTORY_BYTES_MAX / 3]);
        let kind = EventKind::Put { value, revisions: Revisions::default(), expires_at: None };
        for r in 1..=4 {
            big.applied(r, [Event { revision: r, key: "v".into(), kind: kind.clone() }]);
        }
        assert_eq!(big.first(), 3, "two values of a third of the bound fit with the next");
        let reset = Event { revision: 41, key: String::new(), kind: EventKind::Reset };
        assert!(Filter::Key("zz".into()).matches(&reset), "a reset concerns every watcher");
    }
}
