//! Unit tests of the cache rules, and property tests of the cache against a `BTreeMap` model.

use super::snapshot::SnapshotOwned;
use super::*;
use crate::codec::WIRE_VERSION;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn set(key: &str, value: &str, expires_at: Option<u64>) -> Command {
    Command::Set {
        key: key.to_owned(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        expires_at: expires_at.map(Instant),
    }
}

fn del(key: &str) -> Command {
    Command::Del { key: key.to_owned() }
}

fn apply(cache: &mut Cache, time: u64, command: Command) -> ApplyResult {
    let result = cache.apply(&Proposal { time: Instant(time), command });
    cache.check_invariants();
    result
}

fn get(cache: &Cache, key: &str, now: u64) -> Option<Vec<u8>> {
    cache.get(key, Instant(now)).map(|v| v.to_vec())
}

fn search(cache: &Cache, pattern: &str, mode: SearchMode, now: u64) -> Vec<String> {
    let pattern = Pattern::compile(pattern, mode).unwrap();
    cache.search(&pattern, Instant(now), usize::MAX)
}

#[test]
fn set_then_get_returns_value() {
    // A key set without a deadline is readable at any later time.
    let mut cache = Cache::new();
    assert_eq!(apply(&mut cache, 10, set("k", "v", None)), ApplyResult::Set);
    assert_eq!(get(&cache, "k", 10), Some(b"v".to_vec()));
    assert_eq!(get(&cache, "k", u64::MAX), Some(b"v".to_vec()));
    assert_eq!(get(&cache, "other", 10), None);
    apply(&mut cache, 11, set("k", "w", None));
    assert_eq!(get(&cache, "k", 11), Some(b"w".to_vec()));
    assert_eq!(cache.len(), 1);
}

#[test]
fn key_expires_at_deadline_not_before() {
    // A key is live strictly before its deadline and hidden from the deadline on.
    let mut cache = Cache::new();
    apply(&mut cache, 100, set("k", "v", Some(150)));
    assert_eq!(get(&cache, "k", 149), Some(b"v".to_vec()));
    assert_eq!(cache.ttl("k", Instant(149)), TtlStatus::Remaining { ms: 1 });
    assert_eq!(get(&cache, "k", 150), None);
    assert_eq!(cache.ttl("k", Instant(150)), TtlStatus::Missing);
    // Reads hide the key but do not remove it; only the log does.
    assert_eq!(cache.len(), 1);
}

#[test]
fn set_with_past_deadline_is_absent() {
    // A Set whose deadline is at or before the clock removes the key instead of storing it.
    let mut cache = Cache::new();
    apply(&mut cache, 100, set("k", "old", None));
    assert_eq!(apply(&mut cache, 200, set("k", "new", Some(200))), ApplyResult::Set);
    assert_eq!(get(&cache, "k", 0), None);
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.expiration_index_len(), 0);
    // Also when the proposal's own time is behind the clock.
    apply(&mut cache, 50, set("j", "v", Some(150)));
    assert_eq!(get(&cache, "j", 0), None);
    assert!(cache.is_empty());
}

#[test]
fn clock_ignores_times_going_backwards() {
    // The clock is the maximum proposal time applied, whatever the order of times.
    let mut cache = Cache::new();
    assert_eq!(cache.clock(), Instant(0));
    apply(&mut cache, 100, del("x"));
    apply(&mut cache, 40, del("x"));
    assert_eq!(cache.clock(), Instant(100));
    apply(&mut cache, 101, Command::Reset);
    assert_eq!(cache.clock(), Instant(101));
}

#[test]
fn reads_use_max_of_now_and_clock() {
    // A read with a lagging `now` still sees the key as expired once the log clock has passed it.
    let mut cache = Cache::new();
    apply(&mut cache, 10, set("k", "v", Some(50)));
    apply(&mut cache, 60, del("unrelated"));
    assert_eq!(get(&cache, "k", 20), None);
    assert_eq!(cache.ttl("k", Instant(20)), TtlStatus::Missing);
    assert!(search(&cache, "*", SearchMode::Wildcard, 20).is_empty());
    assert_eq!(cache.expired_keys(Instant(20), 10), vec!["k".to_owned()]);
    // And the remaining TTL is measured from the later of the two.
    apply(&mut cache, 60, set("j", "v", Some(100)));
    assert_eq!(cache.ttl("j", Instant(30)), TtlStatus::Remaining { ms: 40 });
    assert_eq!(cache.ttl("j", Instant(90)), TtlStatus::Remaining { ms: 10 });
}

#[test]
fn ttl_reports_missing_no_expiry_and_remaining() {
    // ttl distinguishes absent keys, keys without deadline and the time left.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("forever", "v", None));
    apply(&mut cache, 0, set("soon", "v", Some(1_000)));
    assert_eq!(cache.ttl("nope", Instant(0)), TtlStatus::Missing);
    assert_eq!(cache.ttl("forever", Instant(0)), TtlStatus::NoExpiry);
    assert_eq!(cache.ttl("soon", Instant(250)), TtlStatus::Remaining { ms: 750 });
}

#[test]
fn del_reports_existed_only_for_live_keys() {
    // Del removes the stored item either way, but only a live key counts as existing.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("live", "v", None));
    apply(&mut cache, 0, set("stale", "v", Some(10)));
    assert_eq!(apply(&mut cache, 20, del("live")), ApplyResult::Del { existed: true });
    assert_eq!(apply(&mut cache, 20, del("stale")), ApplyResult::Del { existed: false });
    assert_eq!(apply(&mut cache, 20, del("never")), ApplyResult::Del { existed: false });
    assert!(cache.is_empty());
    assert_eq!(cache.expiration_index_len(), 0);
}

#[test]
fn expire_reports_existed_only_for_live_keys() {
    // Expire removes the key now, reporting existence like Del.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("live", "v", Some(100)));
    apply(&mut cache, 0, set("stale", "v", Some(10)));
    let expire = |key: &str| Command::Expire { key: key.to_owned() };
    assert_eq!(apply(&mut cache, 20, expire("live")), ApplyResult::Expire { existed: true });
    assert_eq!(apply(&mut cache, 20, expire("stale")), ApplyResult::Expire { existed: false });
    assert_eq!(apply(&mut cache, 20, expire("live")), ApplyResult::Expire { existed: false });
    assert!(cache.is_empty());
}

#[test]
fn reset_counts_live_keys() {
    // Reset removes every stored key but counts only the live ones.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("a", "v", None));
    apply(&mut cache, 0, set("b", "v", Some(100)));
    apply(&mut cache, 0, set("c", "v", Some(10)));
    apply(&mut cache, 0, set("d", "v", Some(50)));
    assert_eq!(apply(&mut cache, 50, Command::Reset), ApplyResult::Reset { cleared: 2 });
    assert!(cache.is_empty());
    assert_eq!(cache.expiration_index_len(), 0);
    assert_eq!(cache.approx_bytes(), 0);
    assert_eq!(cache.next_deadline(), None);
}

#[test]
fn remove_expired_keeps_key_reset_with_later_deadline() {
    // RemoveExpired removes a listed key only if its current deadline has passed the clock.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("a", "v", Some(10)));
    apply(&mut cache, 0, set("b", "v", Some(10)));
    apply(&mut cache, 0, set("c", "v", None));
    let expired = cache.expired_keys(Instant(20), 100);
    assert_eq!(expired, vec!["a".to_owned(), "b".to_owned()]);
    // Between the leader's scan and the commit of its proposal, "b" is set again.
    apply(&mut cache, 15, set("b", "new", Some(500)));
    let mut keys = expired;
    keys.push("c".to_owned());
    keys.push("missing".to_owned());
    keys.push("a".to_owned());
    let result = apply(&mut cache, 20, Command::RemoveExpired { keys });
    assert_eq!(result, ApplyResult::RemoveExpired { removed: 1 });
    assert_eq!(get(&cache, "a", 20), None);
    assert_eq!(get(&cache, "b", 20), Some(b"new".to_vec()));
    assert_eq!(get(&cache, "c", 20), Some(b"v".to_vec()));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.next_deadline(), Some(Instant(500)));
}

#[test]
fn expired_keys_earliest_deadline_first_and_bounded() {
    // expired_keys lists only due keys, earliest deadline first, at most `max`.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("z", "v", Some(5)));
    apply(&mut cache, 0, set("y", "v", Some(7)));
    apply(&mut cache, 0, set("x", "v", Some(9)));
    apply(&mut cache, 0, set("w", "v", Some(100)));
    assert_eq!(cache.next_deadline(), Some(Instant(5)));
    assert_eq!(cache.expired_keys(Instant(8), 10), vec!["z".to_owned(), "y".to_owned()]);
    assert_eq!(cache.expired_keys(Instant(9), 2), vec!["z".to_owned(), "y".to_owned()]);
    assert_eq!(cache.expired_keys(Instant(4), 10), Vec::<String>::new());
    assert_eq!(cache.expired_keys(Instant(1_000), 0), Vec::<String>::new());
}

#[test]
fn set_moves_key_in_expiration_index() {
    // Changing or dropping a key's deadline updates its single index entry.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("k", "v", Some(10)));
    apply(&mut cache, 0, set("k", "v", Some(20)));
    assert_eq!(cache.expiration_index_len(), 1);
    assert_eq!(cache.next_deadline(), Some(Instant(20)));
    apply(&mut cache, 0, set("k", "v", None));
    assert_eq!(cache.expiration_index_len(), 0);
    assert_eq!(cache.next_deadline(), None);
    apply(&mut cache, 0, set("k", "v", Some(30)));
    assert_eq!(cache.expiration_index_len(), 1);
}

#[test]
fn approx_bytes_tracks_inserts_and_removals() {
    // The byte estimate grows with keys and values and returns to zero when they are removed.
    let mut cache = Cache::new();
    apply(&mut cache, 0, set("key", "value", None));
    let one = cache.approx_bytes();
    assert!(one >= "key".len() + "value".len());
    apply(&mut cache, 0, set("key", "a much longer value", Some(100)));
    assert!(cache.approx_bytes() > one);
    apply(&mut cache, 0, del("key"));
    assert_eq!(cache.approx_bytes(), 0);
}

#[test]
fn search_prefix_fast_path_matches_glob_semantics() {
    // The `prefix*` range scan returns exactly what globset matching every key would.
    let keys =
        ["", "us", "user", "user:", "user:1", "user:1/x", "user:\n", "user:é", "users", "usf"];
    let mut cache = Cache::new();
    for key in keys {
        apply(&mut cache, 0, set(key, "v", None));
    }
    for glob in ["*", "us*", "user*", "user:*", "user:1/*", "usf*", "zzz*", "user", "", r"user\:*"]
    {
        let pattern = Pattern::compile(glob, SearchMode::Wildcard).unwrap();
        assert!(
            matches!(pattern.plan(), Plan::Exact(_) | Plan::Scan { filter: None, .. }),
            "{glob:?} takes the fast path"
        );
        let matcher = globset::GlobBuilder::new(glob)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .unwrap()
            .compile_matcher();
        let expected: Vec<String> =
            keys.iter().filter(|k| matcher.is_match(k)).map(|k| k.to_string()).collect();
        let mut expected_sorted = expected.clone();
        expected_sorted.sort();
        assert_eq!(cache.search(&pattern, Instant(0), 100), expected_sorted, "glob {glob:?}");
    }
}

#[test]
fn search_slow_path_matches_glob_semantics() {
    // Globs that need the regex return exactly what globset matching every key would.
    let keys = ["a/b", "a\nb", "ab", "abc", "a1", "a9", "b1", "x/y/z", "a*b", "{ab}"];
    let mut cache = Cache::new();
    for key in keys {
        apply(&mut cache, 0, set(key, "v", None));
    }
    for glob in ["a?b", "a?", "a[0-5]", "a[!0-5]", "*/*", "**/z", "a*b", r"a\*b", "{ab,a1}", "*c"] {
        let pattern = Pattern::compile(glob, SearchMode::Wildcard).unwrap();
        let matcher = globset::GlobBuilder::new(glob)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .unwrap()
            .compile_matcher();
        let mut expected: Vec<String> =
            keys.iter().filter(|k| matcher.is_match(k)).map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(cache.search(&pattern, Instant(0), 100), expected, "glob {glob:?}");
    }
}

// A search page by page (a budget of keys examined each, resuming after the last one examined)
// finds exactly what one unbounded search finds, for every budget, pattern and limit; no page
// examines more keys than its budget.
#[test]
fn paged_search_finds_what_one_search_finds() {
    let mut cache = Cache::new();
    for i in 0..60 {
        let deadline = if i % 5 == 0 { Some(5) } else { None };
        let key = if i % 2 == 0 { format!("a{i:02}") } else { format!("b{i:02}") };
        cache.apply(&Proposal { time: Instant(0), command: set(&key, "v", deadline) });
    }
    let patterns = [
        ("*", SearchMode::Wildcard),
        ("a*", SearchMode::Wildcard),
        ("*7", SearchMode::Wildcard),
        ("b1[0-9]", SearchMode::Wildcard),
        ("a14", SearchMode::Wildcard),
        ("a10", SearchMode::Wildcard),
        ("^b.*[13]$", SearchMode::Regex),
    ];
    for (text, mode) in patterns {
        let pattern = Pattern::compile(text, mode).unwrap();
        for limit in [1, 3, 7, 100] {
            let whole = cache.search(&pattern, Instant(10), limit);
            for budget in [1, 2, 5, 13, 1000] {
                let (mut keys, mut after, mut pages) = (Vec::new(), None::<String>, 0);
                loop {
                    let left = limit - keys.len();
                    let page =
                        cache.search_page(&pattern, Instant(10), left, after.as_deref(), budget);
                    assert!(page.keys.len() <= budget.min(left));
                    keys.extend(page.keys);
                    pages += 1;
                    assert!(pages <= 61, "a paged search ends");
                    match page.resume_after {
                        Some(k) if keys.len() < limit => {
                            assert!(after.as_ref().is_none_or(|a| k > *a), "the cursor advances");
                            after = Some(k);
                        }
                        _ => break,
                    }
                }
                assert_eq!(keys, whole, "{text} limit {limit} budget {budget}");
            }
        }
    }
}

#[test]
fn search_is_sorted_and_limited() {
    // Results are ascending, skip expired keys and stop at min(limit, SEARCH_RESULTS_MAX).
    let mut cache = Cache::new();
    // Every seventh key is expired, so there are still more live keys than the hard cap.
    for i in (0..SEARCH_RESULTS_MAX * 5 / 4).rev() {
        let deadline = if i % 7 == 0 { Some(5) } else { None };
        let command = set(&format!("k{i:05}"), "v", deadline);
        cache.apply(&Proposal { time: Instant(0), command });
    }
    cache.check_invariants();
    let all = Pattern::compile("k*", SearchMode::Wildcard).unwrap();
    let found = cache.search(&all, Instant(10), 5);
    assert_eq!(found, vec!["k00001", "k00002", "k00003", "k00004", "k00005"]);
    let found = cache.search(&all, Instant(10), usize::MAX);
    assert_eq!(found.len(), SEARCH_RESULTS_MAX);
    assert!(found.windows(2).all(|w| w[0] < w[1]), "results are strictly ascending");
    assert!(found.iter().all(|k| k[1..].parse::<usize>().unwrap() % 7 != 0));
    assert!(cache.search(&all, Instant(10), 0).is_empty());
    let regex = Pattern::compile("1$", SearchMode::Regex).unwrap();
    let found = cache.search(&regex, Instant(0), 3);
    assert_eq!(found, vec!["k00001", "k00011", "k00021"]);
}

#[test]
fn glob_question_mark_and_class() {
    // `?` matches exactly one byte and `[...]` one byte of the class, negated with `!`.
    let mut cache = Cache::new();
    for key in ["a", "ab", "ac", "ad", "abc", "bb", "é"] {
        apply(&mut cache, 0, set(key, "v", None));
    }
    let wildcard = |p| search(&cache, p, SearchMode::Wildcard, 0);
    assert_eq!(wildcard("a?"), vec!["ab", "ac", "ad"]);
    assert_eq!(wildcard("?b"), vec!["ab", "bb"]);
    assert_eq!(wildcard("a[bc]"), vec!["ab", "ac"]);
    assert_eq!(wildcard("a[!bc]"), vec!["ad"]);
    assert_eq!(wildcard("[a-b]b*"), vec!["ab", "abc", "bb"]);
    assert_eq!(wildcard("??"), vec!["ab", "ac", "ad", "bb", "é"]);
    assert_eq!(wildcard("abc"), vec!["abc"]);
    assert_eq!(wildcard("abcd"), Vec::<String>::new());
}

#[test]
fn regex_search_unanchored() {
    // A regex matches anywhere in the key unless the pattern anchors it.
    let mut cache = Cache::new();
    for key in ["foo", "xfoo", "foox", "bar", "fo"] {
        apply(&mut cache, 0, set(key, "v", None));
    }
    let regex = |p| search(&cache, p, SearchMode::Regex, 0);
    assert_eq!(regex("foo"), vec!["foo", "foox", "xfoo"]);
    assert_eq!(regex("^foo"), vec!["foo", "foox"]);
    assert_eq!(regex("foo$"), vec!["foo", "xfoo"]);
    assert_eq!(regex("^foo$"), vec!["foo"]);
    assert_eq!(regex("^fo+"), vec!["fo", "foo", "foox"]);
    assert_eq!(regex("^fo?"), vec!["fo", "foo", "foox"]);
    assert_eq!(regex("^x|bar"), vec!["bar", "xfoo"]);
    assert_eq!(regex(""), vec!["bar", "fo", "foo", "foox", "xfoo"]);
}

#[test]
fn hostile_regex_search_finishes() {
    // A backtracking-prone regex over long keys completes, because matching is linear-time.
    let mut cache = Cache::new();
    for i in 0..20 {
        apply(&mut cache, 0, set(&format!("{}{i}", "a".repeat(10_000)), "v", None));
    }
    assert!(search(&cache, "^(a|aa)+$", SearchMode::Regex, 0).is_empty());
    assert!(search(&cache, "(a*)*b", SearchMode::Regex, 0).is_empty());
    assert!(search(&cache, "*a*a*a*a*a*a*b", SearchMode::Wildcard, 0).is_empty());
}

#[test]
fn snapshot_restore_roundtrip_preserves_deadlines() {
    // Restoring a snapshot gives back the same keys, values, deadlines, clock and index.
    let mut cache = Cache::new();
    apply(&mut cache, 5, set("a", "1", None));
    apply(&mut cache, 5, set("b", "2", Some(100)));
    apply(&mut cache, 5, set("c", "3", Some(20)));
    apply(&mut cache, 30, set("d", "4", Some(50)));
    let restored = Cache::restore(&cache.snapshot()).unwrap();
    restored.check_invariants();
    assert_eq!(restored, cache);
    assert_eq!(restored.clock(), Instant(30));
    assert_eq!(restored.ttl("b", Instant(0)), TtlStatus::Remaining { ms: 70 });
    assert_eq!(restored.get("c", Instant(0)), None, "the restored clock keeps c expired");
    assert_eq!(restored.len(), 4, "expired keys awaiting removal survive the snapshot");
    assert_eq!(restored.expired_keys(Instant(60), 10), vec!["c".to_owned(), "d".to_owned()]);
    assert_eq!(restored.approx_bytes(), cache.approx_bytes());
    assert_eq!(restored.snapshot(), cache.snapshot());
}

#[test]
fn snapshot_is_deterministic() {
    // Two replicas that apply the same log produce identical bytes, one of them having restored
    // a snapshot midway (recency and frequency are part of the state, so the same log is what
    // makes the same state).
    let log = [
        set("y", "old", Some(3)),
        set("x", "1", Some(90)),
        set("y", "2", None),
        set("x", "3", Some(95)),
    ];
    let mut one = Cache::new();
    for (i, c) in log.iter().enumerate() {
        one.apply_at(i as u64 + 1, &Proposal { time: Instant(i as u64), command: c.clone() });
    }
    let mut two = Cache::new();
    for (i, c) in log.iter().enumerate().take(2) {
        two.apply_at(i as u64 + 1, &Proposal { time: Instant(i as u64), command: c.clone() });
    }
    let mut two = Cache::restore(&two.snapshot()).unwrap();
    for (i, c) in log.iter().enumerate().skip(2) {
        two.apply_at(i as u64 + 1, &Proposal { time: Instant(i as u64), command: c.clone() });
    }
    assert_eq!(one.snapshot(), two.snapshot());
    assert_eq!(
        Cache::new().snapshot(),
        Cache::restore(&Cache::new().snapshot()).unwrap().snapshot()
    );
}

#[test]
fn snapshot_encoding_matches_owned_shape() {
    // The borrowing encoder writes exactly the shape that restore decodes.
    let mut cache = Cache::new();
    apply(&mut cache, 7, set("a", "1", Some(9)));
    apply(&mut cache, 7, set("b", "2", None));
    let once = |seq| Revisions { create: seq, modified: seq, version: 1 };
    let owned = super::snapshot::SnapshotOwnedV3 {
        clock: Instant(7),
        limits: Limits::default(),
        last_seq: 2,
        evicted_total: 0,
        digest: cache.digest(),
        items: vec![
            ("a".to_owned(), Bytes::from_static(b"1"), Some(Instant(9)), 1, 5, once(1)),
            ("b".to_owned(), Bytes::from_static(b"2"), None, 2, 5, once(2)),
        ],
    };
    let expected = crate::codec::encode_as(super::snapshot::SNAPSHOT_FORMAT, &owned);
    assert_eq!(cache.snapshot().to_vec(), expected);
}

#[test]
fn format_2_snapshots_still_restore() {
    // Data written before revisions existed restores with each item written once at its seq.
    let owned = super::snapshot::SnapshotOwnedV2 {
        clock: Instant(7),
        limits: Limits::default(),
        last_seq: 4,
        evicted_total: 0,
        digest: 0,
        items: vec![("a".to_owned(), Bytes::from_static(b"1"), None, 3, 5)],
    };
    let cache = Cache::restore(&crate::codec::encode_as(2, &owned)).unwrap();
    let a = cache.get_versioned("a", Instant(7)).unwrap();
    assert_eq!(a.revisions, Revisions { create: 3, modified: 3, version: 1 });
    assert_eq!(cache.snapshot()[0], super::snapshot::SNAPSHOT_FORMAT, "written as format 3");
}

#[test]
fn format_1_snapshots_still_restore() {
    // Data written before limits existed restores with no limits and every item at recency 0.
    let owned = SnapshotOwned {
        clock: Instant(7),
        items: vec![
            ("a".to_owned(), Bytes::from_static(b"1"), Some(Instant(9))),
            ("b".to_owned(), Bytes::from_static(b"2"), None),
        ],
    };
    let cache = Cache::restore(&crate::codec::encode(&owned)).unwrap();
    assert_eq!(cache.limits(), Limits::default());
    assert_eq!(cache.get("b", Instant(8)).unwrap().as_ref(), b"2");
    assert_eq!(
        cache.snapshot()[0],
        super::snapshot::SNAPSHOT_FORMAT,
        "written in the current format"
    );
    assert_eq!(Cache::restore(&cache.snapshot()).unwrap(), cache);
}

#[test]
fn restore_rejects_duplicate_and_unsorted_keys() {
    // Keys that are repeated or out of order are a decode error, not a panic or a merge.
    let item = |k: &str| (k.to_owned(), Bytes::from_static(b"v"), Some(Instant(1)));
    for items in [vec![item("a"), item("a")], vec![item("b"), item("a")]] {
        let bytes = crate::codec::encode(&SnapshotOwned { clock: Instant(0), items });
        assert!(matches!(Cache::restore(&bytes), Err(DecodeError::Malformed(_))));
    }
}

#[test]
fn restore_rejects_garbage_without_panic() {
    // Empty, wrongly versioned, truncated and trailing input all fail cleanly.
    let mut cache = Cache::new();
    apply(&mut cache, 3, set("a", "1", Some(9)));
    let good = cache.snapshot();
    assert_eq!(Cache::restore(&[]), Err(DecodeError::Empty));
    assert!(matches!(Cache::restore(&[9, 0, 0]), Err(DecodeError::Version { .. })));
    for len in 1..good.len() {
        assert!(Cache::restore(&good[..len]).is_err(), "truncated to {len} bytes");
    }
    let mut trailing = good.to_vec();
    trailing.push(0);
    assert!(matches!(Cache::restore(&trailing), Err(DecodeError::Trailing { .. })));
    // A length prefix claiming far more items than present must not allocate them.
    assert!(Cache::restore(&[WIRE_VERSION, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
}

#[test]
fn proposal_codec_roundtrip() {
    // Every command survives encode then decode, and oversized input is refused up front.
    let commands = [
        set("k", "v", Some(12)),
        set("", "", None),
        del("k"),
        Command::Expire { key: "k".to_owned() },
        Command::Reset,
        Command::RemoveExpired { keys: vec!["a".to_owned(), "b".to_owned()] },
    ];
    for command in commands {
        let proposal = Proposal { time: Instant(u64::MAX), command };
        assert_eq!(Proposal::decode(&proposal.encode()), Ok(proposal));
    }
    let huge = vec![WIRE_VERSION; PROPOSAL_BYTES_MAX + 1];
    assert!(matches!(Proposal::decode(&huge), Err(DecodeError::TooLarge { .. })));
}

// ---------------------------------------------------------------------------------------------
// Property tests against a model.

/// The naive specification: a map from key to value, optional deadline and revisions, a clock
/// and the sequence of the last write.
#[derive(Clone, Debug, Default)]
struct Model {
    clock: u64,
    seq: u64,
    items: BTreeMap<String, MItem>,
}

#[derive(Clone, Debug)]
struct MItem {
    value: Vec<u8>,
    deadline: Option<u64>,
    revs: Revisions,
}

/// The model's reading of an integer value: the text (after a raw tag) parses as an i64 and
/// prints back the same.
fn model_integer(stored: &[u8]) -> Option<i64> {
    let text = match stored.first() {
        Some(0) => &stored[1..],
        Some(1) | None => return None,
        Some(_) => stored,
    };
    let text = std::str::from_utf8(text).ok()?;
    let n: i64 = text.parse().ok()?;
    (n.to_string() == text).then_some(n)
}

impl Model {
    fn is_live(&self, key: &str, now: u64) -> bool {
        let now = now.max(self.clock);
        self.items.get(key).is_some_and(|i| i.deadline.is_none_or(|d| d > now))
    }

    fn live(&self, key: &str) -> Option<MItem> {
        self.is_live(key, self.clock).then(|| self.items[key].clone())
    }

    /// Writes a value: revisions continue if the key was live, else start over.
    fn write(&mut self, key: &str, value: Vec<u8>, deadline: Option<u64>) {
        if deadline.is_some_and(|d| d <= self.clock) {
            self.items.remove(key);
            return;
        }
        let seq = self.seq;
        let revs = match self.live(key) {
            Some(old) => {
                Revisions { create: old.revs.create, modified: seq, version: old.revs.version + 1 }
            }
            None => Revisions { create: seq, modified: seq, version: 1 },
        };
        self.items.insert(key.to_owned(), MItem { value, deadline, revs });
    }

    fn apply(&mut self, time: u64, command: &Command) -> ApplyResult {
        self.clock = self.clock.max(time);
        self.seq += 1;
        let clock = self.clock;
        match command {
            Command::Set { key, value, expires_at } => {
                self.write(key, value.to_vec(), expires_at.map(Instant::as_millis));
                ApplyResult::Set
            }
            Command::Del { key } => {
                let existed = self.is_live(key, clock);
                self.items.remove(key);
                ApplyResult::Del { existed }
            }
            Command::Expire { key } => {
                let existed = self.is_live(key, clock);
                self.items.remove(key);
                ApplyResult::Expire { existed }
            }
            Command::Reset => {
                let cleared = self.items.keys().filter(|k| self.is_live(k, clock)).count();
                self.items.clear();
                ApplyResult::Reset { cleared: cleared as u64 }
            }
            Command::RemoveExpired { keys } => {
                let mut removed = 0;
                for key in keys {
                    if self.items.get(key).is_some_and(|i| i.deadline.is_some_and(|d| d <= clock)) {
                        self.items.remove(key);
                        removed += 1;
                    }
                }
                ApplyResult::RemoveExpired { removed }
            }
            Command::SetLimits(_) => unreachable!("eviction has its own model (evict_model)"),
            Command::Key(w) => self.apply_key(time, w),
            Command::Batch(b) | Command::Exec(b) => {
                let partial = matches!(command, Command::Exec(_));
                let holds = b.compares.iter().all(|c| {
                    let live = self.live(&c.key);
                    match &c.compare {
                        Compare::Revision(0) | Compare::Absent => live.is_none(),
                        Compare::Present => live.is_some(),
                        Compare::Revision(r) => live.is_some_and(|i| i.revs.modified == *r),
                        Compare::Value(v) => live.is_some_and(|i| i.value == v.as_ref()),
                    }
                });
                let mut trial = self.clone();
                let mut results = Vec::new();
                for (position, w) in if holds { &b.then } else { &b.otherwise }.iter().enumerate() {
                    match trial.apply_key(time, w) {
                        ApplyResult::Key(o) => results.push(o),
                        ApplyResult::KeyRefused(r) if partial => {
                            let live = trial.live(&w.key);
                            results.push(KeyOutcome {
                                applied: false,
                                revision: trial.seq,
                                existed: live.is_some(),
                                current: live.map(|i| i.revs),
                                previous: None,
                                number: None,
                                text: None,
                                refusal: Some(r),
                            });
                        }
                        refusal => {
                            let position = position as u64;
                            return ApplyResult::BatchRefused {
                                position,
                                refusal: Box::new(refusal),
                            };
                        }
                    }
                }
                *self = trial;
                ApplyResult::Batch(BatchOutcome { succeeded: holds, revision: self.seq, results })
            }
        }
    }

    fn apply_key(&mut self, time: u64, w: &KeyWrite) -> ApplyResult {
        let key = w.key.as_str();
        let cur = self.live(key);
        let mut out = KeyOutcome {
            applied: false,
            revision: self.seq,
            existed: cur.is_some(),
            current: cur.as_ref().map(|i| i.revs),
            previous: cur.as_ref().filter(|_| w.return_previous).map(|i| Versioned {
                value: Bytes::from(i.value.clone()),
                expires_at: i.deadline.map(Instant),
                revisions: i.revs,
            }),
            number: None,
            text: None,
            refusal: None,
        };
        if let KeyOp::Rename { from } = &w.op
            && self.live(from).is_none()
        {
            return ApplyResult::KeyRefused(KeyRefusal::NoSuchKey);
        }
        let holds = match w.condition {
            Condition::Always => true,
            Condition::Absent | Condition::Revision(0) => cur.is_none(),
            Condition::Present => cur.is_some(),
            Condition::Revision(r) => cur.as_ref().is_some_and(|i| i.revs.modified == r),
        };
        if !holds {
            return ApplyResult::Key(out);
        }
        let deadline = cur.as_ref().and_then(|i| i.deadline);
        let after = |ms: u64| time.saturating_add(ms);
        match &w.op {
            KeyOp::Set { value, ttl } => {
                let d = match ttl {
                    Ttl::Never => None,
                    Ttl::Ms(ms) => Some(after(*ms)),
                    Ttl::Keep => deadline,
                    Ttl::At(ms) => Some(*ms),
                };
                self.write(key, value.to_vec(), d);
            }
            KeyOp::Del => {
                self.items.remove(key);
            }
            KeyOp::Incr { delta } => {
                let old = cur.as_ref().map(|i| i.value.clone());
                let n = match &old {
                    None => 0,
                    Some(v) => match model_integer(v) {
                        Some(n) => n,
                        None => return ApplyResult::KeyRefused(KeyRefusal::NotAnInteger),
                    },
                };
                let Some(n) = n.checked_add(*delta) else {
                    return ApplyResult::KeyRefused(KeyRefusal::Overflow);
                };
                let mut value = n.to_string().into_bytes();
                if old.as_ref().is_some_and(|v| v.first() == Some(&0)) {
                    value.insert(0, 0);
                }
                self.write(key, value, deadline);
                out.number = Some(n);
            }
            KeyOp::Append { bytes } => {
                let mut value = match cur.as_ref().map(|i| i.value.clone()) {
                    None => vec![0],
                    Some(v) if v.first() == Some(&0) => v,
                    Some(_) => return ApplyResult::KeyRefused(KeyRefusal::NotRaw),
                };
                value.extend_from_slice(bytes);
                out.number = Some(value.len() as i64 - 1);
                self.write(key, value, deadline);
            }
            KeyOp::Persist => {
                if cur.is_none() || deadline.is_none() {
                    return ApplyResult::Key(out);
                }
                self.items.get_mut(key).unwrap().deadline = None;
            }
            KeyOp::Splice { offset, bytes } => {
                // The text: raw bytes, or JSON text; an Any is refused.
                let text = match cur.as_ref().map(|i| i.value.clone()) {
                    None => Vec::new(),
                    Some(v) if v.first() == Some(&1) => {
                        return ApplyResult::KeyRefused(KeyRefusal::WrongType);
                    }
                    Some(v) if v.first() == Some(&0) => v[1..].to_vec(),
                    Some(v) => v,
                };
                if offset.is_some() && bytes.is_empty() {
                    out.number = Some(text.len() as i64);
                    return ApplyResult::Key(out);
                }
                let at = offset.map_or(text.len(), |o| o as usize);
                let mut new = text;
                while new.len() < at + bytes.len() {
                    new.push(0);
                }
                new[at..at + bytes.len()].copy_from_slice(bytes);
                out.number = Some(new.len() as i64);
                new.insert(0, 0);
                self.write(key, new, deadline);
            }
            KeyOp::IncrFloat { delta_bits } => {
                let old = cur.as_ref().map(|i| i.value.clone());
                let n = match &old {
                    None => 0.0,
                    Some(v) if v.first() == Some(&1) => {
                        return ApplyResult::KeyRefused(KeyRefusal::WrongType);
                    }
                    Some(v) => {
                        let text = if v.first() == Some(&0) { &v[1..] } else { &v[..] };
                        match std::str::from_utf8(text).ok().and_then(|t| {
                            let plain = !t.is_empty()
                                && t.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
                            t.parse::<f64>().ok().filter(|f| plain && f.is_finite())
                        }) {
                            Some(n) => n,
                            None => return ApplyResult::KeyRefused(KeyRefusal::NotAFloat),
                        }
                    }
                };
                let delta = f64::from_bits(*delta_bits);
                if !delta.is_finite() {
                    return ApplyResult::KeyRefused(KeyRefusal::NotAFloat);
                }
                let n = n + delta;
                if !n.is_finite() {
                    return ApplyResult::KeyRefused(KeyRefusal::NotFinite);
                }
                let text = if n == 0.0 { "0".to_string() } else { n.to_string() };
                let mut value = text.clone().into_bytes();
                if old.as_ref().is_some_and(|v| v.first() == Some(&0)) {
                    value.insert(0, 0);
                }
                self.write(key, value, deadline);
                out.text = Some(Bytes::from(text));
            }
            KeyOp::Read => {}
            KeyOp::Rename { from } => {
                if from != key {
                    let source = self.items.remove(from).unwrap();
                    self.write(key, source.value, source.deadline);
                }
            }
            KeyOp::Expire { when, .. } | KeyOp::ExpireAt { when, .. } => {
                let new = match &w.op {
                    KeyOp::ExpireAt { at_ms, .. } => *at_ms,
                    KeyOp::Expire { ttl_ms, .. } => after(*ttl_ms),
                    _ => unreachable!(),
                };
                let ok = cur.is_some()
                    && match when {
                        ExpireWhen::Always => true,
                        ExpireWhen::NoDeadline => deadline.is_none(),
                        ExpireWhen::HasDeadline => deadline.is_some(),
                        ExpireWhen::Later => deadline.is_some_and(|d| new > d),
                        ExpireWhen::Sooner => deadline.is_none_or(|d| new < d),
                    };
                if !ok {
                    return ApplyResult::Key(out);
                }
                if new <= self.clock {
                    self.items.remove(key);
                } else {
                    self.items.get_mut(key).unwrap().deadline = Some(new);
                }
            }
        }
        out.applied = true;
        out.current = self.live(key).map(|i| i.revs);
        ApplyResult::Key(out)
    }

    fn ttl(&self, key: &str, now: u64) -> TtlStatus {
        if !self.is_live(key, now) {
            return TtlStatus::Missing;
        }
        match self.items[key].deadline {
            None => TtlStatus::NoExpiry,
            Some(d) => TtlStatus::Remaining { ms: d - now.max(self.clock) },
        }
    }

    fn expired_keys(&self, now: u64, max: usize) -> Vec<String> {
        let now = now.max(self.clock);
        let mut due: Vec<(u64, String)> = self
            .items
            .iter()
            .filter_map(|(k, i)| i.deadline.filter(|d| *d <= now).map(|d| (d, k.clone())))
            .collect();
        due.sort();
        due.into_iter().take(max).map(|(_, k)| k).collect()
    }
}

/// A search pattern and the predicate on keys that defines it for the model.
type PatternCase = (&'static str, SearchMode, fn(&str) -> bool);

/// Search patterns the model understands.
const PATTERNS: &[PatternCase] = &[
    ("*", SearchMode::Wildcard, |_| true),
    ("a*", SearchMode::Wildcard, |k| k.starts_with('a')),
    ("ab*", SearchMode::Wildcard, |k| k.starts_with("ab")),
    ("abc*", SearchMode::Wildcard, |k| k.starts_with("abc")),
    ("ab", SearchMode::Wildcard, |k| k == "ab"),
    ("?", SearchMode::Wildcard, |k| k.len() == 1),
    ("a?*", SearchMode::Wildcard, |k| k.starts_with('a') && k.len() >= 2),
    ("[b-d]", SearchMode::Wildcard, |k| ["b", "c", "d"].contains(&k)),
    ("*c", SearchMode::Wildcard, |k| k.ends_with('c')),
    ("^ab", SearchMode::Regex, |k| k.starts_with("ab")),
    ("b", SearchMode::Regex, |k| k.contains('b')),
    ("c$", SearchMode::Regex, |k| k.ends_with('c')),
    ("^a$", SearchMode::Regex, |k| k == "a"),
    ("^a.", SearchMode::Regex, |k| k.starts_with('a') && k.len() >= 2),
];

const KEYS: &[&str] = &["a", "b", "c", "d", "e", "ab", "abc"];

#[derive(Clone, Debug)]
enum Op {
    Apply {
        time: u64,
        command: Command,
    },
    Get {
        key: String,
        now: u64,
    },
    Ttl {
        key: String,
        now: u64,
    },
    Search {
        pattern: usize,
        now: u64,
        limit: usize,
    },
    /// The leader's expiry sweep: list expired keys and apply a RemoveExpired of them.
    Sweep {
        now: u64,
        max: usize,
    },
    SnapshotRestore,
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop::sample::select(KEYS).prop_map(str::to_owned)
}

fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        6 => (key_strategy(), prop::collection::vec(any::<u8>(), 0..4), prop::option::weighted(0.7, 0u64..400))
            .prop_map(|(key, value, deadline)| Command::Set {
                key,
                value: Bytes::from(value),
                expires_at: deadline.map(Instant),
            }),
        2 => key_strategy().prop_map(|key| Command::Del { key }),
        2 => key_strategy().prop_map(|key| Command::Expire { key }),
        1 => Just(Command::Reset),
        2 => prop::collection::vec(key_strategy(), 0..5).prop_map(|keys| Command::RemoveExpired { keys }),
        8 => key_write_strategy().prop_map(Command::Key),
        3 => batch_strategy().prop_map(Command::Batch),
        2 => batch_strategy().prop_map(Command::Exec),
    ]
}

/// Whether a write stores a value (sets the key again, if its condition holds).
fn writes_value(w: &KeyWrite) -> bool {
    matches!(
        w.op,
        KeyOp::Set { .. }
            | KeyOp::Incr { .. }
            | KeyOp::Append { .. }
            | KeyOp::Splice { .. }
            | KeyOp::IncrFloat { .. }
            | KeyOp::Rename { .. }
    )
}

fn batch_strategy() -> impl Strategy<Value = Batch> {
    let compare = prop_oneof![
        (0u64..40).prop_map(Compare::Revision),
        Just(Compare::Absent),
        Just(Compare::Present),
        prop::sample::select(KEY_VALUES).prop_map(|v| Compare::Value(Bytes::from_static(v))),
    ];
    let compares = prop::collection::vec(
        (key_strategy(), compare).prop_map(|(key, compare)| KeyCompare { key, compare }),
        0..3,
    );
    let ops = || prop::collection::vec(key_write_strategy(), 0..4);
    (compares, ops(), ops()).prop_map(|(compares, then, otherwise)| Batch {
        compares,
        then,
        otherwise,
    })
}

/// Values that exercise the integer and raw forms: JSON integers (canonical or not, at the
/// edges of i64), raw decimal, raw non-numbers, JSON text that is not an integer.
const KEY_VALUES: &[&[u8]] = &[
    b"5",
    b"-3",
    b"0",
    b"-0",
    b"007",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"\x0012",
    b"\x00ab",
    b"\x00",
    b"\"s\"",
    b"1.5",
    b"\x00-2.5e1",
    b"\x01\x0a\x00",
];

fn key_write_strategy() -> impl Strategy<Value = KeyWrite> {
    let value = prop::sample::select(KEY_VALUES).prop_map(Bytes::from_static);
    let ttl = prop_oneof![
        Just(Ttl::Never),
        Just(Ttl::Keep),
        (0u64..200).prop_map(Ttl::Ms),
        (0u64..400).prop_map(Ttl::At),
    ];
    let when = prop::sample::select(
        &[
            ExpireWhen::Always,
            ExpireWhen::NoDeadline,
            ExpireWhen::HasDeadline,
            ExpireWhen::Later,
            ExpireWhen::Sooner,
        ][..],
    );
    let delta = prop::sample::select(&[1i64, -1, 7, i64::MAX, i64::MIN][..]);
    let op = prop_oneof![
        3 => (value.clone(), ttl).prop_map(|(value, ttl)| KeyOp::Set { value, ttl }),
        1 => Just(KeyOp::Del),
        3 => delta.prop_map(|delta| KeyOp::Incr { delta }),
        2 => value.clone().prop_map(|bytes| KeyOp::Append { bytes }),
        1 => Just(KeyOp::Persist),
        2 => (0u64..200, when.clone()).prop_map(|(ttl_ms, when)| KeyOp::Expire { ttl_ms, when }),
        1 => (0u64..400, when).prop_map(|(at_ms, when)| KeyOp::ExpireAt { at_ms, when }),
        2 => (prop::option::of(0u64..12), value)
            .prop_map(|(offset, bytes)| KeyOp::Splice { offset, bytes }),
        2 => prop::sample::select(&[0.5f64, -1.25, 1e308, f64::INFINITY, 3.0][..])
            .prop_map(|d| KeyOp::IncrFloat { delta_bits: d.to_bits() }),
        2 => key_strategy().prop_map(|from| KeyOp::Rename { from }),
        1 => Just(KeyOp::Read),
    ];
    let condition = prop_oneof![
        3 => Just(Condition::Always),
        1 => Just(Condition::Absent),
        1 => Just(Condition::Present),
        2 => (0u64..40).prop_map(Condition::Revision),
    ];
    (key_strategy(), op, condition, any::<bool>()).prop_map(
        |(key, op, condition, return_previous)| KeyWrite { key, op, condition, return_previous },
    )
}

fn op_strategy() -> impl Strategy<Value = Op> {
    // Times are drawn independently, so they often go backwards; the clock must ignore that.
    prop_oneof![
        8 => (0u64..300, command_strategy()).prop_map(|(time, command)| Op::Apply { time, command }),
        3 => (key_strategy(), 0u64..400).prop_map(|(key, now)| Op::Get { key, now }),
        2 => (key_strategy(), 0u64..400).prop_map(|(key, now)| Op::Ttl { key, now }),
        2 => (0..PATTERNS.len(), 0u64..400, 0usize..8)
            .prop_map(|(pattern, now, limit)| Op::Search { pattern, now, limit }),
        2 => (0u64..400, 0usize..5).prop_map(|(now, max)| Op::Sweep { now, max }),
        1 => Just(Op::SnapshotRestore),
    ]
}

/// Runs `op` on both the cache and the model and requires identical observations.
fn run_op(cache: &mut Cache, model: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match op {
        Op::Apply { time, command } => {
            let expected = model.apply(*time, command);
            let actual = cache.apply(&Proposal { time: Instant(*time), command: command.clone() });
            prop_assert_eq!(actual, expected);
        }
        Op::Get { key, now } => {
            let expected = model.is_live(key, *now).then(|| model.items[key.as_str()].clone());
            prop_assert_eq!(
                cache.get(key, Instant(*now)).map(|v| v.to_vec()),
                expected.as_ref().map(|i| i.value.clone())
            );
            let versioned = cache.get_versioned(key, Instant(*now));
            prop_assert_eq!(versioned.map(|v| v.revisions), expected.map(|i| i.revs));
        }
        Op::Ttl { key, now } => {
            prop_assert_eq!(cache.ttl(key, Instant(*now)), model.ttl(key, *now));
        }
        Op::Search { pattern, now, limit } => {
            let (source, mode, predicate) = PATTERNS[*pattern];
            let compiled = Pattern::compile(source, mode).unwrap();
            let expected: Vec<String> = model
                .items
                .keys()
                .filter(|k| model.is_live(k, *now) && predicate(k))
                .take(*limit)
                .cloned()
                .collect();
            prop_assert_eq!(cache.search(&compiled, Instant(*now), *limit), expected);
        }
        Op::Sweep { now, max } => {
            let keys = cache.expired_keys(Instant(*now), *max);
            prop_assert_eq!(&keys, &model.expired_keys(*now, *max));
            let command = Command::RemoveExpired { keys };
            let expected = model.apply(*now, &command);
            let actual = cache.apply(&Proposal { time: Instant(*now), command });
            prop_assert_eq!(&actual, &expected);
        }
        Op::SnapshotRestore => {
            let bytes = cache.snapshot();
            let restored = Cache::restore(&bytes).unwrap();
            prop_assert_eq!(&restored, &*cache);
            prop_assert_eq!(restored.snapshot(), bytes);
            *cache = restored;
        }
    }
    cache.check_invariants();
    prop_assert_eq!(cache.clock(), Instant(model.clock));
    prop_assert_eq!(cache.len(), model.items.len());
    let model_deadline = model.items.values().filter_map(|i| i.deadline).min().map(Instant);
    prop_assert_eq!(cache.next_deadline(), model_deadline);
    prop_assert_eq!(
        cache.expiration_index_len(),
        model.items.values().filter(|i| i.deadline.is_some()).count()
    );
    Ok(())
}

fn proposal_strategy() -> impl Strategy<Value = Proposal> {
    let command = prop_oneof![
        (".{0,12}", prop::collection::vec(any::<u8>(), 0..32), any::<Option<u64>>()).prop_map(
            |(key, value, deadline)| Command::Set {
                key,
                value: Bytes::from(value),
                expires_at: deadline.map(Instant),
            }
        ),
        ".{0,12}".prop_map(|key| Command::Del { key }),
        ".{0,12}".prop_map(|key| Command::Expire { key }),
        Just(Command::Reset),
        prop::collection::vec(".{0,6}", 0..6).prop_map(|keys| Command::RemoveExpired { keys }),
    ];
    (any::<u64>(), command).prop_map(|(time, command)| Proposal { time: Instant(time), command })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn cache_matches_model(ops in prop::collection::vec(op_strategy(), 0..80)) {
        // Every observation of the cache equals the model's, after every operation.
        let mut cache = Cache::new();
        let mut model = Model::default();
        for op in &ops {
            run_op(&mut cache, &mut model, op)?;
        }
    }

    #[test]
    fn expired_key_never_reappears(ops in prop::collection::vec(op_strategy(), 0..60)) {
        // Once a read at the clock sees a key as expired, it stays hidden until it is set again.
        let mut cache = Cache::new();
        let mut model = Model::default();
        let mut hidden: BTreeSet<String> = BTreeSet::new();
        for op in &ops {
            run_op(&mut cache, &mut model, op)?;
            match op {
                Op::Apply { command: Command::Set { key, .. }, .. } => {
                    hidden.remove(key);
                }
                // Writes of a value set the key again (if their condition held).
                Op::Apply { command: Command::Key(w), .. } if writes_value(w) => {
                    hidden.remove(&w.key);
                }
                Op::Apply { command: Command::Batch(b) | Command::Exec(b), .. } => {
                    for w in b.then.iter().chain(&b.otherwise).filter(|w| writes_value(w)) {
                        hidden.remove(&w.key);
                    }
                }
                _ => {}
            }
            for key in KEYS {
                let key = key.to_string();
                let live = cache.get(&key, cache.clock()).is_some();
                prop_assert!(!(live && hidden.contains(&key)), "{} reappeared", key);
                if !live {
                    hidden.insert(key);
                }
            }
        }
    }

    #[test]
    fn snapshot_restore_at_any_point_behaves_identically(
        before in prop::collection::vec(op_strategy(), 0..40),
        after in prop::collection::vec(op_strategy(), 0..40),
    ) {
        // A replica restored from a snapshot answers every later input exactly like the original.
        let mut original = Cache::new();
        let mut model = Model::default();
        for op in &before {
            run_op(&mut original, &mut model, op)?;
        }
        let mut restored = Cache::restore(&original.snapshot()).unwrap();
        let mut restored_model = model.clone();
        for op in &after {
            run_op(&mut original, &mut model, op)?;
            run_op(&mut restored, &mut restored_model, op)?;
            prop_assert_eq!(&restored, &original);
        }
        prop_assert_eq!(restored.snapshot(), original.snapshot());
    }

    #[test]
    fn proposal_encode_decode_roundtrip(proposal in proposal_strategy()) {
        // Any proposal decodes back to itself.
        prop_assert_eq!(Proposal::decode(&proposal.encode()), Ok(proposal));
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..64),
        versioned in any::<bool>(),
    ) {
        // Arbitrary input to either decoder returns a value or an error, never a panic.
        let mut bytes = if versioned { vec![WIRE_VERSION] } else { Vec::new() };
        bytes.extend_from_slice(&body);
        let _ = Proposal::decode(&bytes);
        if let Ok(cache) = Cache::restore(&bytes) {
            cache.check_invariants();
        }
    }

    #[test]
    fn corrupted_snapshot_never_panics(
        ops in prop::collection::vec(op_strategy(), 0..20),
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        // Flipping any byte of a real snapshot yields an error or a consistent cache.
        let mut cache = Cache::new();
        let mut model = Model::default();
        for op in &ops {
            run_op(&mut cache, &mut model, op)?;
        }
        let mut bytes = cache.snapshot().to_vec();
        let i = position.index(bytes.len());
        bytes[i] = byte;
        if let Ok(restored) = Cache::restore(&bytes) {
            restored.check_invariants();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Eviction against a model.

#[derive(Clone, Debug)]
enum EvictOp {
    Set { key: usize, len: usize, ttl: Option<u64> },
    Del { key: usize },
    Limits { max_keys: u64, max_bytes: u64, policy: usize },
}

fn evict_op() -> impl Strategy<Value = EvictOp> {
    prop_oneof![
        6 => (0..KEYS.len(), 0usize..300, prop::option::of(1u64..50))
            .prop_map(|(key, len, ttl)| EvictOp::Set { key, len, ttl }),
        1 => (0..KEYS.len()).prop_map(|key| EvictOp::Del { key }),
        1 => (0u64..6, prop_oneof![Just(0u64), 200u64..1500], 0usize..8)
            .prop_map(|(max_keys, max_bytes, policy)| EvictOp::Limits { max_keys, max_bytes, policy }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // After every write the cache is within its limits or the write was refused with nothing
    // changed; only eligible keys are evicted, never the key written; `noeviction` never evicts;
    // LRU and TTL evict exactly in the model's order; `used_bytes` always equals a recount; and
    // a replica that restored a snapshot midway ends byte-identical.
    #[test]
    fn eviction_keeps_the_limits_in_the_policy_order(ops in prop::collection::vec(evict_op(), 0..80), cut in 0usize..80) {
        let mut cache = Cache::new();
        let mut replica: Option<Cache> = None;
        // Model: key -> (seq of last write, deadline).
        let mut seqs: BTreeMap<String, (u64, Option<u64>)> = BTreeMap::new();
        let mut time = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let index = i as u64 + 1;
            time += 1;
            let command = match op {
                EvictOp::Set { key, len, ttl } => Command::Set {
                    key: KEYS[*key].to_owned(),
                    value: Bytes::from(vec![b'v'; *len]),
                    expires_at: ttl.map(|t| Instant(time + t)),
                },
                EvictOp::Del { key } => Command::Del { key: KEYS[*key].to_owned() },
                EvictOp::Limits { max_keys, max_bytes, policy } => Command::SetLimits(Limits {
                    max_memory_bytes: *max_bytes,
                    max_keys: *max_keys,
                    policy: EvictionPolicy::ALL[*policy],
                }),
            };
            let before: BTreeMap<String, Bytes> =
                cache.items.iter().map(|e| (e.key().to_owned(), e.value_bytes())).collect();
            let policy = cache.limits().policy;
            let p = Proposal { time: Instant(time), command: command.clone() };
            let result = cache.apply_at(index, &p);
            if let Some(r) = replica.as_mut() {
                prop_assert_eq!(&r.apply_at(index, &p), &result);
            }
            if i == cut {
                replica = Some(Cache::restore(&cache.snapshot()).unwrap());
            }
            cache.check_invariants();
            let after: BTreeSet<String> = cache.items.iter().map(|e| e.key().to_owned()).collect();
            let evicted: Vec<String> =
                before.keys().filter(|k| !after.contains(*k)).cloned().collect();
            match (&command, &result) {
                (Command::Set { .. }, ApplyResult::OutOfMemory { .. }) => {
                    let now: BTreeMap<String, Bytes> =
                        cache.items.iter().map(|e| (e.key().to_owned(), e.value_bytes())).collect();
                    prop_assert_eq!(now, before, "a refused write changes nothing");
                }
                (Command::Set { key, value, expires_at }, ApplyResult::Set) => {
                    if expires_at.is_none_or(|d| d > cache.clock()) {
                        prop_assert_eq!(cache.items.get(key).map(Entry::value_bytes), Some(value.clone()));
                        seqs.insert(key.clone(), (index, expires_at.map(|d| d.as_millis())));
                    }
                    prop_assert!(!evicted.contains(key), "the written key is never a victim");
                    prop_assert!(
                        evicted.is_empty() || !cache.limits().exceeded(cache.used_bytes(), cache.len() as u64),
                        "evicting makes the write fit"
                    );
                    if policy == EvictionPolicy::NoEviction {
                        prop_assert!(evicted.is_empty(), "noeviction never evicts");
                    }
                    if !evicted.is_empty() {
                        // The victims are the first eligible keys in the policy's order.
                        let mut eligible: Vec<(u64, String)> = seqs
                            .iter()
                            .filter(|(k, _)| *k != key && before.contains_key(*k))
                            .filter(|(_, (_, d))| !matches!(policy,
                                EvictionPolicy::VolatileLru | EvictionPolicy::VolatileLfu
                                | EvictionPolicy::VolatileRandom | EvictionPolicy::VolatileTtl) || d.is_some())
                            .map(|(k, (seq, d))| match policy {
                                EvictionPolicy::VolatileTtl => (d.unwrap(), k.clone()),
                                _ => (*seq, k.clone()),
                            })
                            .collect();
                        eligible.sort();
                        let allowed: BTreeSet<&String> = eligible.iter().map(|(_, k)| k).collect();
                        for v in &evicted {
                            prop_assert!(allowed.contains(v), "{} was not eligible under {:?}", v, policy);
                        }
                        if matches!(policy, EvictionPolicy::AllKeysLru | EvictionPolicy::VolatileLru | EvictionPolicy::VolatileTtl) {
                            let mut first: Vec<String> =
                                eligible.iter().take(evicted.len()).map(|(_, k)| k.clone()).collect();
                            first.sort();
                            prop_assert_eq!(&first, &evicted, "{:?} evicts in order", policy);
                        }
                    }
                }
                (Command::SetLimits(l), ApplyResult::Limits { evicted: n }) => {
                    prop_assert_eq!(*n as usize, evicted.len());
                    if l.policy != policy {
                        // Every key starts equal after a policy change.
                        for (seq, _) in seqs.values_mut() {
                            *seq = 0;
                        }
                    }
                }
                _ => {}
            }
            for k in &evicted {
                seqs.remove(k);
            }
            if let Command::Del { key } = &command {
                seqs.remove(key);
            }
        }
        if let Some(r) = replica {
            prop_assert_eq!(r.snapshot(), cache.snapshot(), "a restored replica ends identical");
        }
    }
}

fn limits(max_keys: u64, max_memory_bytes: u64, policy: EvictionPolicy) -> Command {
    Command::SetLimits(Limits { max_memory_bytes, max_keys, policy })
}

// Review findings: an overwrite that keeps the key count applies under noeviction even when a
// lowered max_keys left the cache over it; a value larger than the limit is refused at once
// with nothing evicted; allkeys-random after a policy change reaches the keys written before.
#[test]
fn eviction_edges() {
    let mut c = Cache::new();
    for k in ["a", "b", "c"] {
        c.apply(&Proposal { time: Instant(1), command: set(k, "v", None) });
    }
    c.apply(&Proposal { time: Instant(1), command: limits(2, 0, EvictionPolicy::NoEviction) });
    assert_eq!(c.len(), 3, "noeviction does not evict down to a lowered limit");
    let r = c.apply(&Proposal { time: Instant(1), command: set("a", "longer value", None) });
    assert_eq!(r, ApplyResult::Set, "an overwrite keeps the count: it applies");
    let r = c.apply(&Proposal { time: Instant(1), command: set("d", "v", None) });
    assert!(matches!(r, ApplyResult::OutOfMemory { keys: 3, .. }), "{r:?}");

    let mut c = Cache::new();
    for i in 0..50 {
        c.apply(&Proposal { time: Instant(1), command: set(&format!("k{i:02}"), "v", None) });
    }
    c.apply(&Proposal {
        time: Instant(1),
        command: limits(0, 100_000, EvictionPolicy::AllKeysLru),
    });
    let huge = "x".repeat(200_000);
    let r = c.apply(&Proposal { time: Instant(1), command: set("huge", &huge, None) });
    assert!(matches!(r, ApplyResult::OutOfMemory { .. }), "{r:?}");
    assert_eq!((c.len(), c.evicted_total()), (50, 0), "nothing was evicted for it");

    let mut c = Cache::new();
    for i in 0..100 {
        c.apply(&Proposal { time: Instant(1), command: set(&format!("old{i:03}"), "v", None) });
    }
    c.apply(&Proposal { time: Instant(1), command: limits(100, 0, EvictionPolicy::AllKeysRandom) });
    for i in 0..50 {
        c.apply(&Proposal { time: Instant(1), command: set(&format!("new{i:03}"), "v", None) });
    }
    let old_left = c.items.iter().filter(|e| e.key().starts_with("old")).count();
    assert_eq!(c.len(), 100);
    assert!(old_left < 90, "random eviction reaches the keys from before the change: {old_left}");
    c.check_invariants();
}

// A batch whose later operation is refused changes nothing, not even the keys an earlier
// operation evicted to make room: everything is put back as it was, revisions and recency
// included, and the refusal names the operation.
// A key evicted by one operation and written again by a later one is put back as it was
// before the batch when the batch is refused, and so are the others: the undo log is one list
// in the order things happened, not evictions first and writes after.
#[test]
fn a_refused_batch_puts_back_a_key_evicted_then_written_again() {
    let mut cache = Cache::new();
    let limits = Limits { max_memory_bytes: 0, max_keys: 2, policy: EvictionPolicy::AllKeysLru };
    apply(&mut cache, 1, Command::SetLimits(limits));
    apply(&mut cache, 1, set("old", "1", None));
    apply(&mut cache, 1, set("text", "2", None));
    let before = cache.clone();
    let write = |key: &str| {
        Command::key_write(key, KeyOp::Set { value: Bytes::from_static(b"3"), ttl: Ttl::Never })
    };
    let batch = Batch {
        compares: vec![],
        // "new" evicts "old"; writing "old" again evicts "text"; the rename from a key that
        // does not exist is refused.
        then: vec![
            write("new"),
            write("old"),
            Command::key_write("renamed", KeyOp::Rename { from: "missing".into() }),
        ],
        otherwise: vec![],
    };
    let r = cache.apply(&Proposal { time: Instant(1), command: Command::Batch(batch) });
    assert!(matches!(r, ApplyResult::BatchRefused { position: 2, .. }), "{r:?}");
    cache.check_invariants();
    assert_eq!(cache.items, before.items, "old and text as they were, new absent");
    assert_eq!(cache.get("old", Instant(1)), Some(Bytes::from_static(b"1")));
    assert_eq!(
        (cache.approx_bytes, cache.evicted_total),
        (before.approx_bytes, before.evicted_total)
    );
}

#[test]
fn a_refused_batch_puts_back_what_it_evicted() {
    let mut cache = Cache::new();
    let limits = Limits { max_memory_bytes: 0, max_keys: 2, policy: EvictionPolicy::AllKeysLru };
    apply(&mut cache, 1, Command::SetLimits(limits));
    apply(&mut cache, 1, set("old", "1", None));
    apply(&mut cache, 1, set("text", "\"s\"", None));
    let before = cache.clone();
    let batch = Batch {
        compares: vec![],
        then: vec![
            // Evicts "old" (the least recently written) to make room.
            Command::key_write(
                "new",
                KeyOp::Set { value: Bytes::from_static(b"2"), ttl: Ttl::Never },
            ),
            // Refused: "text" is not an integer.
            Command::key_write("text", KeyOp::Incr { delta: 1 }),
        ],
        otherwise: vec![],
    };
    let mut evicted = Vec::new();
    let r = cache.apply_reporting(
        4,
        &Proposal { time: Instant(1), command: Command::Batch(batch) },
        &mut evicted,
    );
    assert_eq!(
        r,
        ApplyResult::BatchRefused {
            position: 1,
            refusal: Box::new(ApplyResult::KeyRefused(KeyRefusal::NotAnInteger))
        }
    );
    assert!(evicted.is_empty(), "no eviction is reported for a batch that did not apply");
    cache.check_invariants();
    let same = |c: &Cache| (c.items.clone(), c.approx_bytes, c.evicted_total, c.order.clone());
    assert_eq!(same(&cache), same(&before), "everything put back");
    // Without the refused operation, the batch applies at one revision and evicts "old".
    let ok = Batch {
        compares: vec![KeyCompare { key: "text".into(), compare: Compare::Present }],
        then: vec![Command::key_write(
            "new",
            KeyOp::Set { value: Bytes::from_static(b"2"), ttl: Ttl::Never },
        )],
        otherwise: vec![],
    };
    let r = cache.apply_reporting(
        5,
        &Proposal { time: Instant(1), command: Command::Batch(ok) },
        &mut evicted,
    );
    let ApplyResult::Batch(outcome) = r else { panic!("{r:?}") };
    assert!(outcome.succeeded && outcome.revision == 5 && outcome.results[0].applied);
    assert_eq!(evicted, vec!["old".to_string()]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // The change events are the whole story: applying them, in order, to an empty map gives
    // exactly the stored keys, values and deadlines after every operation (an event skipped,
    // duplicated or out of order breaks it), and each event carries the revision it applied at.
    #[test]
    fn events_replay_to_the_cache(ops in prop::collection::vec(op_strategy(), 0..80)) {
        use crate::watch::EventKind;
        let mut cache = Cache::new();
        cache.record_events(true);
        let mut model = Model::default();
        let mut mirror: BTreeMap<String, (Bytes, Option<Instant>)> = BTreeMap::new();
        for op in &ops {
            let seq_before = cache.last_seq;
            run_op(&mut cache, &mut model, op)?;
            if let Op::SnapshotRestore = op {
                // A restored cache records nothing; a node starts its history over.
                cache.record_events(true);
                mirror = cache.items.iter().map(|e| (e.key().to_owned(), (e.value_bytes(), e.expires_at()))).collect();
                continue;
            }
            for e in cache.take_events() {
                prop_assert!(e.revision > seq_before && e.revision <= cache.last_seq, "{:?}", e);
                match e.kind {
                    EventKind::Put { value, expires_at, revisions } => {
                        prop_assert!(revisions.modified <= e.revision, "{:?}", revisions);
                        mirror.insert(e.key, (value, expires_at));
                    }
                    EventKind::Delete { .. } => {
                        prop_assert!(mirror.remove(&e.key).is_some(), "a delete of a stored key");
                    }
                    EventKind::Reset => mirror.clear(),
                }
            }
            let stored: BTreeMap<String, (Bytes, Option<Instant>)> =
                cache.items.iter().map(|e| (e.key().to_owned(), (e.value_bytes(), e.expires_at()))).collect();
            prop_assert_eq!(&mirror, &stored);
        }
    }
}
