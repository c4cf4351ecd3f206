//! The TTL checker: what clients saw of keys written with deadlines, judged against simulated
//! time.
//!
//! `CacheModel` has no clock, so keys written with TTLs (`t0`, `t1`, ..) are kept out of the
//! linearizability check and judged here instead. Every operation carries two clocks: the
//! history's logical clock (`call`, `ret`: exact real-time order between operations) and the
//! simulated time in milliseconds (`call_ms`, `ret_ms`) used against deadlines.
//!
//! Every time here is true simulated time; the nodes' own clocks lie (`harness::NodeClock`). The
//! guarantee judged is the one ARCHITECTURE.md states: with `e` the largest error of the cluster
//! time (the lower median of the leader's sampled clocks) against true time, and `eps = 2e`:
//! a set with TTL `t` stamps a deadline `D = stamp + t` where the stamp is the cluster time when
//! a node proposed it, between the set's call and return, so `D` lies in
//! `[call_ms + t - e, ret_ms + t + e]`; a read judges expiry at the cluster time when the leader
//! confirmed it (or the cache clock, if later), within `e` of a true time in `[call_ms, ret_ms]`.
//! Values are unique.
//!
//! Checked, per key:
//! 1. **No early expiry, no lost write**: a read that began after a set `S` (TTL `t` or none)
//!    completed and that ended before `S.call_ms + t - eps` must return `S`'s value, unless some
//!    other write of the key (a set, a del, or one whose outcome is unknown) may have taken
//!    effect in between: it was called before the read returned and did not certainly complete
//!    before `S` was called.
//! 2. **Never visible after its deadline**: no read called at or after `S.ret_ms + t + eps`
//!    returns the value of a set `S` that completed. (A set whose outcome is unknown may have
//!    been proposed by a node after the client gave up, so it has no upper bound here.)
//! 3. **No reappearance**: once a read that began after `S` completed returned something other
//!    than `S`'s value (expired, deleted or overwritten), no later read returns `S`'s value.
//! 4. Every value a read returns was written by some set.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtlKind {
    /// `ttl_ms`: the TTL the client asked for, `None` for none.
    Set {
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    Del,
    Get(Option<Vec<u8>>),
}

#[derive(Clone, Debug)]
pub struct TtlOp {
    pub client: u64,
    pub key: String,
    pub kind: TtlKind,
    pub call: u64,
    /// `None`: the outcome is unknown (it may or may not have taken effect).
    pub ret: Option<u64>,
    pub call_ms: u64,
    pub ret_ms: Option<u64>,
}

/// Checks a TTL history with clock tolerance `eps_ms`; returns one message per violation (at
/// most a few per key).
pub fn check_ttl(history: &[TtlOp], eps_ms: u64) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&TtlOp>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    let mut out = Vec::new();
    for (key, ops) in by_key {
        let sets: Vec<(&TtlOp, &Vec<u8>, Option<u64>)> = ops
            .iter()
            .filter_map(|o| match &o.kind {
                TtlKind::Set { value, ttl_ms } => Some((*o, value, *ttl_ms)),
                _ => None,
            })
            .collect();
        let reads: Vec<(&TtlOp, &Option<Vec<u8>>)> = ops
            .iter()
            .filter_map(|o| match (&o.kind, o.ret) {
                (TtlKind::Get(v), Some(_)) => Some((*o, v)),
                _ => None,
            })
            .collect();
        let writes: Vec<&TtlOp> =
            ops.iter().copied().filter(|o| !matches!(o.kind, TtlKind::Get(_))).collect();
        let mut found = 0;
        let mut report = |msg: String| {
            if found < 3 {
                out.push(format!("ttl: key {key}: {msg}"));
            }
            found += 1;
        };
        for &(r, got) in &reads {
            let r_ret = r.ret.expect("completed");
            let r_ret_ms = r.ret_ms.unwrap_or(u64::MAX);
            // 4 and 2.
            if let Some(v) = got {
                match sets.iter().find(|(_, value, _)| *value == v) {
                    None => report(format!("read {r:?} returned a value nobody wrote")),
                    Some((s, _, Some(t))) => {
                        let latest = s.ret_ms.map(|ret| ret + t + eps_ms);
                        if latest.is_some_and(|latest| r.call_ms >= latest) {
                            report(format!(
                                "read {r:?} called at {} ms returned the value of {s:?} whose \
                                 deadline (at most {latest:?} ms with eps {eps_ms} ms) had passed",
                                r.call_ms
                            ));
                        }
                    }
                    _ => {}
                }
            }
            for &(s, value, ttl_ms) in &sets {
                let Some(s_ret) = s.ret else { continue };
                if s_ret >= r.call {
                    continue;
                }
                // 1: S completed before R began, and R ended before S's earliest deadline.
                let earliest = ttl_ms.map(|t| (s.call_ms + t).saturating_sub(eps_ms));
                if got.as_ref() != Some(value) && earliest.is_none_or(|d| d > r_ret_ms) {
                    let interfered = writes.iter().any(|w| {
                        !std::ptr::eq(*w, s) && w.call < r_ret && w.ret.is_none_or(|x| x > s.call)
                    });
                    if !interfered {
                        report(format!(
                            "read {r:?} (returned at {r_ret_ms} ms) missed {s:?}: it completed \
                             before the read, its earliest deadline {earliest:?} (eps {eps_ms} \
                             ms) had not passed, and no other write could have replaced it"
                        ));
                    }
                }
                // 3: R began after S completed and did not see S; no later read may see S.
                if got.as_ref() != Some(value) {
                    for &(r2, got2) in &reads {
                        if r2.call > r_ret && got2.as_ref() == Some(value) {
                            report(format!(
                                "{s:?} reappeared: {r:?} no longer saw it, then {r2:?} did"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: TtlKind, call: u64, ret: Option<u64>) -> TtlOp {
        // Logical and simulated clocks coincide in these tests.
        TtlOp { client: 1, key: "t0".into(), kind, call, ret, call_ms: call, ret_ms: ret }
    }
    /// A set whose TTL makes its deadline `d` counted from its call.
    fn set(v: &str, d: Option<u64>, call: u64, ret: Option<u64>) -> TtlOp {
        op(TtlKind::Set { value: v.into(), ttl_ms: d.map(|d| d - call) }, call, ret)
    }
    fn get(v: Option<&str>, call: u64, ret: u64) -> TtlOp {
        op(TtlKind::Get(v.map(|s| s.as_bytes().to_vec())), call, Some(ret))
    }

    #[test]
    fn a_value_seen_before_its_deadline_and_gone_after_is_fine() {
        let h = [set("a", Some(100), 1, Some(2)), get(Some("a"), 10, 20), get(None, 100, 110)];
        assert!(check_ttl(&h, 0).is_empty(), "{:?}", check_ttl(&h, 0));
    }

    #[test]
    fn early_expiry_is_caught() {
        let h = [set("a", Some(100), 1, Some(2)), get(None, 10, 20)];
        assert_eq!(check_ttl(&h, 0).len(), 1, "{:?}", check_ttl(&h, 0));
    }

    #[test]
    fn an_overwrite_explains_a_miss() {
        let h = [set("a", Some(100), 1, Some(2)), op(TtlKind::Del, 5, None), get(None, 10, 20)];
        assert!(check_ttl(&h, 0).is_empty(), "{:?}", check_ttl(&h, 0));
    }

    #[test]
    fn a_value_after_its_deadline_is_caught() {
        // The deadline is 100 counted from the call; the set returned at 2, so 101 at the latest.
        let h = [set("a", Some(100), 1, Some(2)), get(Some("a"), 101, 110)];
        assert!(!check_ttl(&h, 0).is_empty());
        let h = [set("a", Some(100), 1, Some(2)), get(Some("a"), 100, 110)];
        assert!(check_ttl(&h, 0).is_empty());
    }

    #[test]
    fn the_tolerance_widens_both_bounds() {
        // Set at [1, 2] with deadline 100 from its call (TTL 99); eps 10: gone from 90 at the
        // earliest, visible until 111 at the latest.
        let seen_late = [set("a", Some(100), 1, Some(2)), get(Some("a"), 105, 106)];
        assert!(check_ttl(&seen_late, 10).is_empty());
        let seen_too_late = [set("a", Some(100), 1, Some(2)), get(Some("a"), 111, 112)];
        assert_eq!(check_ttl(&seen_too_late, 10).len(), 1);
        let gone_early = [set("a", Some(100), 1, Some(2)), get(None, 88, 91)];
        assert!(check_ttl(&gone_early, 10).is_empty());
        let gone_too_early = [set("a", Some(100), 1, Some(2)), get(None, 80, 89)];
        assert_eq!(check_ttl(&gone_too_early, 10).len(), 1);
        // A set of unknown outcome has no upper bound.
        let unknown = [set("a", Some(100), 1, None), get(Some("a"), 500, 501)];
        assert!(check_ttl(&unknown, 10).is_empty());
    }

    #[test]
    fn reappearance_is_caught() {
        // Deleted (outcome unknown), then read absent, then read present again.
        let h = [
            set("a", None, 1, Some(2)),
            op(TtlKind::Del, 3, None),
            get(None, 10, 20),
            get(Some("a"), 30, 40),
        ];
        assert!(
            check_ttl(&h, 0).iter().any(|m| m.contains("reappeared")),
            "{:?}",
            check_ttl(&h, 0)
        );
    }
}
