//! A seam through which a driver measures the cache operations a [`CacheNode`] performs: each
//! committed command applied, each read executed, each snapshot from the leader restored.
//!
//! Core reads no clock, so it cannot time anything itself. It hands each operation to the
//! driver's [`OpMeter`], which runs it and may read its own clock around it (the server does, for
//! its metrics). Without a meter ([`NoMeter`], the default, which the simulator keeps) the
//! operations run exactly as before, so nothing about a node's behaviour depends on the meter.
//!
//! [`CacheNode`]: crate::node::CacheNode

use crate::cache::Command;

/// A cache operation, named as the server's metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CacheOp {
    /// Applying a committed `Set`.
    Set,
    /// Applying a committed `Del`.
    Delete,
    /// Applying a committed `Expire`.
    Expire,
    /// Applying a committed `Reset`.
    Reset,
    /// Applying a committed `RemoveExpired` (the leader's removal of expired keys).
    RemoveExpired,
    /// Applying a committed `SetLimits` (new memory limits, evicting down to them).
    SetLimits,
    /// Applying a committed conditional or atomic write of one key (`Key`).
    Key,
    /// Reading a key.
    Get,
    /// Reading a key's remaining time to live.
    Ttl,
    /// Examining one page of keys for a search.
    Search,
    /// Replacing the cache with a snapshot from the leader.
    RestoreSnapshot,
    /// A committed command that does not decode (a bug or a foreign log, never client input):
    /// it is reported through [`OpMeter::failed`], never run.
    Undecodable,
}

impl CacheOp {
    /// Every operation, in declaration order (for a driver that prepares one series each).
    pub const ALL: [CacheOp; 12] = [
        CacheOp::Set,
        CacheOp::Delete,
        CacheOp::Expire,
        CacheOp::Reset,
        CacheOp::RemoveExpired,
        CacheOp::SetLimits,
        CacheOp::Key,
        CacheOp::Get,
        CacheOp::Ttl,
        CacheOp::Search,
        CacheOp::RestoreSnapshot,
        CacheOp::Undecodable,
    ];

    /// The operation that applies `command`.
    pub fn of(command: &Command) -> CacheOp {
        match command {
            Command::Set { .. } => CacheOp::Set,
            Command::Del { .. } => CacheOp::Delete,
            Command::Expire { .. } => CacheOp::Expire,
            Command::Reset => CacheOp::Reset,
            Command::RemoveExpired { .. } => CacheOp::RemoveExpired,
            Command::SetLimits(_) => CacheOp::SetLimits,
            Command::Key(_) | Command::Batch(_) | Command::Exec(_) => CacheOp::Key,
        }
    }

    /// The label value: the same words as the server's request `op` label where both exist.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheOp::Set => "set",
            CacheOp::Delete => "delete",
            CacheOp::Expire => "expire",
            CacheOp::Reset => "reset",
            CacheOp::RemoveExpired => "remove_expired",
            CacheOp::SetLimits => "set_limits",
            CacheOp::Key => "key_write",
            CacheOp::Get => "get",
            CacheOp::Ttl => "ttl",
            CacheOp::Search => "search",
            CacheOp::RestoreSnapshot => "restore_snapshot",
            CacheOp::Undecodable => "undecodable",
        }
    }
}

/// Measures cache operations for a driver. `Send` because a node moves to its driver's thread.
pub trait OpMeter: Send {
    /// Runs `op` by calling `run` exactly once, measuring it however the driver likes.
    fn measure(&self, op: CacheOp, run: &mut dyn FnMut());
    /// `op` could not run at all (see [`CacheOp::Undecodable`]).
    fn failed(&self, op: CacheOp);
}

/// Measures nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMeter;

impl OpMeter for NoMeter {
    fn measure(&self, _op: CacheOp, run: &mut dyn FnMut()) {
        run();
    }
    fn failed(&self, _op: CacheOp) {}
}

/// Runs `f` as `op` through `meter` and returns its result.
pub(crate) fn metered<T>(meter: &dyn OpMeter, op: CacheOp, f: impl FnOnce() -> T) -> T {
    let mut f = Some(f);
    let mut out = None;
    meter.measure(op, &mut || {
        let f = f.take().expect("a meter runs an operation once");
        out = Some(f());
    });
    out.expect("a meter runs the operation it measures")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<CacheOp>>);

    impl OpMeter for Recorder {
        fn measure(&self, op: CacheOp, run: &mut dyn FnMut()) {
            run();
            self.0.lock().unwrap().push(op);
        }
        fn failed(&self, _op: CacheOp) {}
    }

    // `metered` returns what the operation returned and reports it once, under its name.
    #[test]
    fn metered_runs_the_operation_once_and_returns_its_result() {
        let r = Recorder(Mutex::new(Vec::new()));
        let mut calls = 0;
        let v = metered(&r, CacheOp::Get, || {
            calls += 1;
            7
        });
        assert_eq!((v, calls), (7, 1));
        assert_eq!(*r.0.lock().unwrap(), vec![CacheOp::Get]);
    }

    struct Skipper;

    impl OpMeter for Skipper {
        fn measure(&self, _op: CacheOp, _run: &mut dyn FnMut()) {}
        fn failed(&self, _op: CacheOp) {}
    }

    // A meter that does not run the operation is a bug that must not go unnoticed.
    #[test]
    #[should_panic(expected = "a meter runs the operation it measures")]
    fn a_meter_that_skips_the_operation_panics() {
        metered(&Skipper, CacheOp::Set, || ());
    }
}
