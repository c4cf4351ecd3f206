//! Watches on one node: the watchers the node loop feeds from the change feed
//! (`core::watch`), each through a bounded queue.
//!
//! A watch opens on the node loop's thread, so the history it replays and the events it is
//! then fed leave nothing out and repeat nothing. A watcher whose queue fills up (it reads
//! slower than the cluster writes) is cut off with a last message saying why and where to
//! resume; so is every watcher when a snapshot from the leader replaces the state (the changes
//! it covers are not known here). Nothing is ever buffered without bound.

use simple_cache_core::watch::{Event, Filter, History, WatchError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Events a watcher may have queued before it is cut off as too slow.
pub const QUEUE_EVENTS: usize = 1024;

/// Bytes of keys and values a watcher may have queued before it is cut off as too slow.
pub const QUEUE_BYTES: usize = 16 << 20;

/// What a watcher receives.
#[derive(Debug)]
pub enum WatchMsg {
    /// An event, and its share of the watcher's queued bytes (given back when dropped).
    Event(Event, Charge),
    /// The last message: the watch ends; resume with `start_revision` = `resume_from`.
    Cancelled { reason: String, resume_from: u64 },
}

/// An open watch, as the front end gets it.
pub struct Opened {
    /// The first revision the watch can deliver (events before it are not part of it).
    pub start_revision: u64,
    pub rx: mpsc::Receiver<WatchMsg>,
}

/// Why a watch did not open.
#[derive(Debug)]
pub enum OpenError {
    Compacted {
        asked: u64,
        oldest: u64,
    },
    TooMany {
        max: usize,
    },
    /// This node does not serve watches.
    Disabled,
}

/// Bytes an event holds in a watcher's queue, counted until the front end drops it.
#[derive(Debug)]
pub struct Charge {
    bytes: usize,
    queued: Arc<AtomicUsize>,
}

impl Charge {
    fn new(e: &Event, queued: &Arc<AtomicUsize>) -> Charge {
        let bytes = match &e.kind {
            simple_cache_core::watch::EventKind::Put { value, .. } => value.len() + e.key.len(),
            _ => e.key.len(),
        };
        queued.fetch_add(bytes, Ordering::Relaxed);
        Charge { bytes, queued: queued.clone() }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.queued.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

struct Watcher {
    filter: Filter,
    tx: mpsc::Sender<WatchMsg>,
    /// Bytes of the events queued for it and not yet dropped by its front end.
    queued: Arc<AtomicUsize>,
    /// The next revision it has not been sent.
    next: u64,
}

/// The open watches of a node.
pub struct Watchers {
    list: Vec<Watcher>,
    max: usize,
}

impl Watchers {
    pub fn new(max: usize) -> Watchers {
        Watchers { list: Vec::new(), max }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Opens a watch from revision `start` (`None`: from the next one applied), replaying what
    /// the history holds from there.
    pub fn open(
        &mut self,
        history: Option<&History>,
        filter: Filter,
        start: Option<u64>,
    ) -> Result<Opened, OpenError> {
        self.list.retain(|w| !w.tx.is_closed());
        if self.list.len() >= self.max {
            return Err(OpenError::TooMany { max: self.max });
        }
        let history = history.ok_or(OpenError::Disabled)?;
        let (backlog, next) = history.replay(&filter, start).map_err(|e| match e {
            WatchError::Compacted { asked, oldest } => OpenError::Compacted { asked, oldest },
        })?;
        let start_revision = start.unwrap_or(next);
        // Room for the backlog, a full queue, and the last message.
        let (tx, rx) = mpsc::channel(backlog.len() + QUEUE_EVENTS + 1);
        let queued = Arc::new(AtomicUsize::new(0));
        for e in backlog {
            let charge = Charge::new(&e, &queued);
            tx.try_send(WatchMsg::Event(e, charge)).expect("the channel has room for the backlog");
        }
        self.list.push(Watcher { filter, tx, queued, next });
        Ok(Opened { start_revision, rx })
    }

    /// Feeds the events applied since the last call (see `CacheNode::take_watch_events`); a
    /// snapshot installed at `gap` ends every watch that has not seen everything before it.
    pub fn deliver(&mut self, events: &[Event], gap: Option<u64>) {
        self.list.retain_mut(|w| {
            if w.tx.is_closed() {
                return false;
            }
            if let Some(index) = gap
                && w.next <= index
            {
                let reason = format!(
                    "this node installed a snapshot from the leader at revision {index}; the \
                     changes it covers cannot be replayed here (resume on another node, or read \
                     the keys again)"
                );
                let _ = w.tx.try_send(WatchMsg::Cancelled { reason, resume_from: w.next });
                return false;
            }
            // Whole revisions at a time, so a watcher cut off resumes at a revision boundary
            // and never gets an event twice.
            let from = w.next;
            let mut rest = events.iter().filter(|e| e.revision >= from).peekable();
            while let Some(first) = rest.peek() {
                let revision = first.revision;
                let mut batch = Vec::new();
                while let Some(e) = rest.next_if(|e| e.revision == revision) {
                    if w.filter.matches(e) {
                        batch.push(e.clone());
                    }
                }
                if w.tx.capacity() <= batch.len() || w.queued.load(Ordering::Relaxed) > QUEUE_BYTES
                {
                    let reason = format!(
                        "the watcher fell too far behind ({QUEUE_EVENTS} events or {QUEUE_BYTES} \
                         bytes queued); resume from revision {revision}"
                    );
                    let _ = w.tx.try_send(WatchMsg::Cancelled { reason, resume_from: revision });
                    return false;
                }
                for e in batch {
                    let charge = Charge::new(&e, &w.queued);
                    let _ = w.tx.try_send(WatchMsg::Event(e, charge));
                }
                w.next = revision + 1;
            }
            true
        });
    }

    /// The node stops: every watch ends.
    pub fn close_all(&mut self, resume_hint: &str) {
        for w in self.list.drain(..) {
            let reason = format!("the node is shutting down; {resume_hint}");
            let _ = w.tx.try_send(WatchMsg::Cancelled { reason, resume_from: w.next });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_cache_core::watch::{DeleteCause, EventKind};

    fn del(revision: u64, key: &str) -> Event {
        Event { revision, key: key.into(), kind: EventKind::Delete { cause: DeleteCause::Deleted } }
    }

    // A watcher that does not read is cut off once QUEUE_EVENTS events wait, with a last message
    // naming the revision to resume from, which starts a whole revision; a watcher that reads
    // gets every matching event once; a snapshot gap ends a watch that had not seen its index.
    #[test]
    fn slow_watchers_are_cut_off_at_a_revision_boundary() {
        let mut history = History::new(0, 100);
        let mut watchers = Watchers::new(10);
        let mut slow = watchers.open(Some(&history), Filter::Prefix(String::new()), None).unwrap();
        let mut other = watchers.open(Some(&history), Filter::Key("x".into()), None).unwrap();
        assert_eq!(slow.start_revision, 1);
        let mut events = Vec::new();
        for r in 1..=(QUEUE_EVENTS as u64 / 2 + 1) {
            events.push(del(r, "a"));
            events.push(del(r, "b"));
        }
        history.applied(events.last().unwrap().revision, events.clone());
        watchers.deliver(&events, None);
        let mut got = Vec::new();
        while let Ok(m) = slow.rx.try_recv() {
            got.push(m);
        }
        let Some(WatchMsg::Cancelled { resume_from, .. }) = got.pop() else { panic!("cut off") };
        assert_eq!(got.len(), QUEUE_EVENTS, "a full queue, then the last message");
        let WatchMsg::Event(last, _) = got.last().unwrap() else { panic!() };
        assert_eq!(resume_from, last.revision + 1, "resumes after the last whole revision sent");
        assert!(other.rx.try_recv().is_err(), "no event for x");
        assert_eq!(watchers.len(), 1);
        // A snapshot installed past what `other` saw ends it.
        watchers.deliver(&[], Some(5000));
        let after = events.last().unwrap().revision + 1;
        assert!(
            matches!(other.rx.try_recv(), Ok(WatchMsg::Cancelled { resume_from, .. }) if resume_from == after),
            "it had seen everything before the gap"
        );
        assert!(watchers.is_empty());
        // Large values: the byte bound cuts a watcher that does not read, long before the count.
        let mut big = Watchers::new(10);
        let mut reader = big.open(Some(&history), Filter::Key("v".into()), None).unwrap();
        let value = bytes::Bytes::from(vec![0u8; QUEUE_BYTES / 4]);
        let kind = EventKind::Put { value, revisions: Default::default(), expires_at: None };
        let start = history.last() + 1;
        let puts: Vec<Event> = (start..start + 8)
            .map(|revision| Event { revision, key: "v".into(), kind: kind.clone() })
            .collect();
        big.deliver(&puts, None);
        let mut n = 0;
        while let Ok(WatchMsg::Event(..)) = reader.rx.try_recv() {
            n += 1;
        }
        assert_eq!(n, 4, "four quarters fit; the fifth finds the queue over its bytes");
        assert!(big.is_empty());
        // A full node refuses more watches.
        let mut one = Watchers::new(1);
        let _kept = one.open(Some(&history), Filter::Key("a".into()), None).unwrap();
        assert!(matches!(
            one.open(Some(&history), Filter::Key("a".into()), None),
            Err(OpenError::TooMany { max: 1 })
        ));
    }
}
