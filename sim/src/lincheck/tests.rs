//! Hand-made histories with known verdicts, and the parsers on small inputs.

use super::*;

use RegisterInput::{Cas, Read, Write};
use RegisterOutput::Failed;

/// A test operation: input, call time, and `Some((ret, output))` unless the outcome is unknown.
type RegisterOp = (RegisterInput, u64, Option<(u64, RegisterOutput)>);

/// A register history from `(input, call, Some((ret, output)))` or `(input, call, None)`.
fn register(ops: &[RegisterOp]) -> History<RegisterInput, RegisterOutput> {
    let mut history = History::new();
    for (client, &(input, call, outcome)) in ops.iter().enumerate() {
        let op = match outcome {
            Some((ret, output)) => Operation::completed(client as u64, input, call, ret, output),
            None => Operation::unknown(client as u64, input, call),
        };
        history.push(op).expect("well-formed test operation");
    }
    history
}

fn verdict(history: &History<RegisterInput, RegisterOutput>) -> Verdict {
    check(&RegisterModel, history, Budget::UNLIMITED).verdict
}

fn read(value: Option<i64>) -> RegisterOutput {
    RegisterOutput::Read(value)
}

const OK: RegisterOutput = RegisterOutput::Ok;

#[test]
fn empty_history_is_linearizable() {
    // Nothing happened, so nothing can be out of order.
    assert_eq!(verdict(&History::new()), Verdict::Linearizable);
}

#[test]
fn stale_read_after_completed_write_is_not_linearizable() {
    // A read that starts after a write completed must see it.
    let stale = register(&[(Write(1), 0, Some((1, OK))), (Read, 2, Some((3, read(None))))]);
    assert_eq!(verdict(&stale), Verdict::NotLinearizable);
    let fresh = register(&[(Write(1), 0, Some((1, OK))), (Read, 2, Some((3, read(Some(1)))))]);
    assert_eq!(verdict(&fresh), Verdict::Linearizable);
}

#[test]
fn stale_read_is_reported_as_stuck_op() {
    // The diagnostic names the read that no order explains.
    let history = register(&[
        (Write(1), 0, Some((1, OK))),
        (Write(2), 2, Some((3, OK))),
        (Read, 4, Some((5, read(Some(1))))),
    ]);
    let result = check(&RegisterModel, &history, Budget::UNLIMITED);
    assert_eq!(result.verdict, Verdict::NotLinearizable);
    assert!(!result.is_linearizable());
    assert_eq!(result.partition, Some(0));
    assert_eq!(result.stuck_op, Some(2));
}

#[test]
fn concurrent_write_and_read_linearize_either_way() {
    // A read overlapping a write may see the old or the new value, but nothing else.
    for seen in [None, Some(1)] {
        let history = register(&[(Write(1), 0, Some((10, OK))), (Read, 2, Some((3, read(seen))))]);
        assert_eq!(verdict(&history), Verdict::Linearizable, "read saw {seen:?}");
    }
    let history = register(&[(Write(1), 0, Some((10, OK))), (Read, 2, Some((3, read(Some(2)))))]);
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn reads_cannot_see_a_value_go_back() {
    // Once one read saw a concurrent write, a later read cannot see the old value.
    let history = register(&[
        (Write(1), 0, Some((10, OK))),
        (Read, 1, Some((2, read(Some(1))))),
        (Read, 3, Some((4, read(None)))),
    ]);
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn unknown_write_may_or_may_not_take_effect() {
    // A write whose outcome is unknown may be seen at any point after its call, or never.
    for seen in [None, Some(1)] {
        let history = register(&[(Write(1), 0, None), (Read, 5, Some((6, read(seen))))]);
        assert_eq!(verdict(&history), Verdict::Linearizable, "read saw {seen:?}");
    }
    let after_effect = register(&[
        (Write(1), 0, None),
        (Read, 5, Some((6, read(Some(1))))),
        (Read, 7, Some((8, read(None)))),
    ]);
    assert_eq!(verdict(&after_effect), Verdict::NotLinearizable, "an effect is never undone");
    let before_call = register(&[(Read, 0, Some((1, read(Some(1))))), (Write(1), 2, None)]);
    assert_eq!(verdict(&before_call), Verdict::NotLinearizable, "no effect before the call");
}

#[test]
fn unknown_read_matches_anything() {
    // A read whose answer was lost constrains nothing.
    let history = register(&[
        (Write(1), 0, Some((1, OK))),
        (Read, 2, None),
        (Read, 3, Some((4, read(Some(1))))),
    ]);
    assert_eq!(verdict(&history), Verdict::Linearizable);
}

#[test]
fn cas_succeeds_only_from_the_expected_value() {
    // A successful compare-and-set needs the register to hold `from`, then holds `to`.
    let ok = register(&[
        (Write(1), 0, Some((1, OK))),
        (Cas { from: 1, to: 2 }, 2, Some((3, OK))),
        (Read, 4, Some((5, read(Some(2))))),
    ]);
    assert_eq!(verdict(&ok), Verdict::Linearizable);
    let wrong_from =
        register(&[(Write(1), 0, Some((1, OK))), (Cas { from: 3, to: 2 }, 2, Some((3, OK)))]);
    assert_eq!(verdict(&wrong_from), Verdict::NotLinearizable);
    let from_empty = register(&[(Cas { from: 0, to: 2 }, 0, Some((1, OK)))]);
    assert_eq!(verdict(&from_empty), Verdict::NotLinearizable, "an empty register holds no 0");
}

#[test]
fn failed_cas_has_no_effect_and_needs_a_mismatch() {
    // A failed compare-and-set leaves the register alone and is only possible when it did not
    // hold `from`.
    let mismatch = register(&[
        (Write(1), 0, Some((1, OK))),
        (Cas { from: 3, to: 2 }, 2, Some((3, Failed))),
        (Read, 4, Some((5, read(Some(1))))),
    ]);
    assert_eq!(verdict(&mismatch), Verdict::Linearizable);
    let should_have_swapped =
        register(&[(Write(1), 0, Some((1, OK))), (Cas { from: 1, to: 2 }, 2, Some((3, Failed)))]);
    assert_eq!(verdict(&should_have_swapped), Verdict::NotLinearizable);
}

#[test]
fn unknown_cas_applies_only_if_it_can() {
    // An unknown compare-and-set may take effect, but only from `from`.
    let took_effect = register(&[
        (Write(1), 0, Some((1, OK))),
        (Cas { from: 1, to: 2 }, 2, None),
        (Read, 4, Some((5, read(Some(2))))),
    ]);
    assert_eq!(verdict(&took_effect), Verdict::Linearizable);
    let impossible = register(&[
        (Write(1), 0, Some((1, OK))),
        (Cas { from: 3, to: 2 }, 2, None),
        (Read, 4, Some((5, read(Some(2))))),
    ]);
    assert_eq!(verdict(&impossible), Verdict::NotLinearizable);
}

#[test]
fn return_at_a_call_time_precedes_the_call() {
    // An operation that returns at `t` precedes one called at `t`: the strict reading.
    let history = register(&[(Write(1), 0, Some((5, OK))), (Read, 5, Some((6, read(None))))]);
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn zero_length_operations_at_one_instant_are_concurrent() {
    // Operations called and returned at the same instant overlap each other.
    let history = register(&[(Read, 5, Some((5, read(Some(1))))), (Write(1), 5, Some((5, OK)))]);
    assert_eq!(verdict(&history), Verdict::Linearizable);
    let after = register(&[(Write(1), 5, Some((5, OK))), (Read, 6, Some((6, read(None))))]);
    assert_eq!(verdict(&after), Verdict::NotLinearizable);
}

#[test]
fn budget_exhaustion_gives_unknown() {
    // A search that runs out of steps says so instead of guessing.
    let history = register(&[(Write(1), 0, Some((10, OK))), (Read, 2, Some((3, read(Some(1)))))]);
    let result = check(&RegisterModel, &history, Budget::steps(1));
    assert_eq!(result.verdict, Verdict::Unknown);
    assert_eq!(result.steps, 1);
    assert_eq!(result.partition, Some(0));
    assert_eq!(
        check(&RegisterModel, &History::new(), Budget::steps(0)).verdict,
        Verdict::Linearizable
    );
}

#[test]
fn history_rejects_malformed_operations() {
    // A return before its call, or half an outcome, never enters a history.
    let mut history = History::<RegisterInput, RegisterOutput>::new();
    let early = Operation::completed(0, Read, 5, 4, read(None));
    assert_eq!(history.push(early), Err(HistoryError::ReturnBeforeCall { call: 5, ret: 4 }));
    let half = Operation { client: 0, input: Read, call: 1, ret: Some(2), output: None };
    assert_eq!(history.push(half), Err(HistoryError::OutcomeHalfKnown));
    assert!(history.is_empty());
}

fn kv(ops: &[(&str, KvOp, u64, u64, KvOutput)]) -> History<KvInput, KvOutput> {
    let mut history = History::new();
    for (client, (key, op, call, ret, output)) in ops.iter().enumerate() {
        let input = KvInput { key: (*key).to_owned(), op: op.clone() };
        history
            .push(Operation::completed(client as u64, input, *call, *ret, output.clone()))
            .expect("well-formed test operation");
    }
    history
}

fn value(text: &str) -> KvOutput {
    KvOutput::Value(text.to_owned())
}

#[test]
fn kv_append_concatenates_and_put_replaces() {
    // get returns the whole value, append adds to it, put replaces it.
    let history = kv(&[
        ("k", KvOp::Get, 0, 1, value("")),
        ("k", KvOp::Append("a".into()), 2, 3, KvOutput::Ok),
        ("k", KvOp::Append("b".into()), 4, 5, KvOutput::Ok),
        ("k", KvOp::Get, 6, 7, value("ab")),
        ("k", KvOp::Put("c".into()), 8, 9, KvOutput::Ok),
        ("k", KvOp::Get, 10, 11, value("c")),
    ]);
    assert_eq!(check(&KvModel, &history, Budget::UNLIMITED).verdict, Verdict::Linearizable);
}

#[test]
fn partition_checks_each_key_independently() {
    // Keys are independent: each key's sub-history is judged on its own.
    let history = kv(&[
        ("a", KvOp::Put("x".into()), 0, 1, KvOutput::Ok),
        ("b", KvOp::Get, 2, 3, value("")),
        ("b", KvOp::Put("y".into()), 4, 5, KvOutput::Ok),
        ("a", KvOp::Get, 6, 7, value("x")),
    ]);
    // One model state for both keys would make the read of "b" wrong.
    assert_eq!(check(&KvModel, &history, Budget::UNLIMITED).verdict, Verdict::NotLinearizable);
    let parts = partition(history, |input| input.key.clone());
    assert_eq!(parts.len(), 2);
    assert!(parts[0].ops().iter().all(|op| op.input.key == "a"));
    assert_eq!(
        check_partitions(&KvModel, &parts, Budget::UNLIMITED).verdict,
        Verdict::Linearizable
    );

    let bad = kv(&[
        ("a", KvOp::Put("x".into()), 0, 1, KvOutput::Ok),
        ("b", KvOp::Put("y".into()), 2, 3, KvOutput::Ok),
        ("b", KvOp::Get, 4, 5, value("")),
    ]);
    let result =
        check_partitions(&KvModel, &partition(bad, |input| input.key.clone()), Budget::UNLIMITED);
    assert_eq!(result.verdict, Verdict::NotLinearizable);
    assert_eq!(result.partition, Some(1), "the violation is on key b");
    assert_eq!(result.stuck_op, Some(1));
}

#[test]
fn cache_model_get_set_del_expire() {
    // Del and expire report whether the key existed and remove it; get sees the latest set.
    let key = b"k".to_vec();
    let op = |op: CacheOp| CacheInput { key: key.clone(), op };
    let mut history = History::new();
    let steps = [
        (op(CacheOp::Get), CacheOutput::Value(None)),
        (op(CacheOp::Del), CacheOutput::Existed(false)),
        (op(CacheOp::Set(b"v".to_vec())), CacheOutput::Ok),
        (op(CacheOp::Get), CacheOutput::Value(Some(b"v".to_vec()))),
        (op(CacheOp::Expire), CacheOutput::Existed(true)),
        (op(CacheOp::Expire), CacheOutput::Existed(false)),
        (op(CacheOp::Set(b"w".to_vec())), CacheOutput::Ok),
        (op(CacheOp::Del), CacheOutput::Existed(true)),
    ];
    for (time, (input, output)) in steps.into_iter().enumerate() {
        let time = 2 * time as u64;
        history.push(Operation::completed(0, input, time, time + 1, output)).unwrap();
    }
    assert_eq!(check(&CacheModel, &history, Budget::UNLIMITED).verdict, Verdict::Linearizable);

    let mut lying = History::new();
    lying
        .push(Operation::completed(0, op(CacheOp::Set(b"v".to_vec())), 0, 1, CacheOutput::Ok))
        .unwrap();
    lying
        .push(Operation::completed(0, op(CacheOp::Del), 2, 3, CacheOutput::Existed(false)))
        .unwrap();
    assert_eq!(check(&CacheModel, &lying, Budget::UNLIMITED).verdict, Verdict::NotLinearizable);
}

#[test]
fn cache_model_unknown_set_may_or_may_not_take_effect() {
    // A set whose reply was lost may show up in a later get, or never.
    let key = b"k".to_vec();
    for seen in [None, Some(b"v".to_vec())] {
        let mut history = History::new();
        let set = CacheInput { key: key.clone(), op: CacheOp::Set(b"v".to_vec()) };
        history.push(Operation::unknown(0, set, 0)).unwrap();
        let get = CacheInput { key: key.clone(), op: CacheOp::Get };
        history.push(Operation::completed(1, get, 5, 6, CacheOutput::Value(seen.clone()))).unwrap();
        assert_eq!(
            check(&CacheModel, &history, Budget::UNLIMITED).verdict,
            Verdict::Linearizable,
            "get saw {seen:?}"
        );
    }
}

/// A history of `(client, input, call, return, output)` on one key.
fn cache_history(
    ops: Vec<(u64, CacheOp, u64, u64, CacheOutput)>,
) -> History<CacheInput, CacheOutput> {
    let mut history = History::new();
    for (client, op, call, ret, output) in ops {
        let input = CacheInput { key: b"k".to_vec(), op };
        history.push(Operation::completed(client, input, call, ret, output)).unwrap();
    }
    history
}

#[test]
fn cache_model_counters_lose_no_increment() {
    use CacheOp::{Get, Incr};
    use CacheOutput::{Number, Value};
    // Two concurrent increments, then a read: both must be counted.
    let good = cache_history(vec![
        (0, Incr(1), 0, 10, Number(2)),
        (1, Incr(1), 1, 9, Number(1)),
        (2, Get, 11, 12, Value(Some(b"2".to_vec()))),
    ]);
    assert_eq!(check(&CacheModel, &good, Budget::UNLIMITED).verdict, Verdict::Linearizable);
    // Both answered 1: one increment was lost.
    let lost = cache_history(vec![(0, Incr(1), 0, 10, Number(1)), (1, Incr(1), 1, 9, Number(1))]);
    assert_eq!(check(&CacheModel, &lost, Budget::UNLIMITED).verdict, Verdict::NotLinearizable);
    // An increment of a non-integer is refused and changes nothing; one that was refused
    // while the value was an integer is a violation.
    let refused = cache_history(vec![
        (0, CacheOp::Set(b"x".to_vec()), 0, 1, CacheOutput::Ok),
        (0, Incr(1), 2, 3, CacheOutput::Refused),
        (0, Get, 4, 5, Value(Some(b"x".to_vec()))),
    ]);
    assert_eq!(check(&CacheModel, &refused, Budget::UNLIMITED).verdict, Verdict::Linearizable);
    let wrongly = cache_history(vec![(0, Incr(1), 0, 1, CacheOutput::Refused)]);
    assert_eq!(check(&CacheModel, &wrongly, Budget::UNLIMITED).verdict, Verdict::NotLinearizable);
}

#[test]
fn cache_model_compare_and_set_sees_the_latest_write() {
    use CacheOutput::Applied;
    let cas = |expect: &[u8], value: &[u8]| CacheOp::Cas {
        expect: Some(expect.to_vec()),
        value: value.to_vec(),
    };
    // A CAS after another write replaced the expected value must fail.
    let stale = cache_history(vec![
        (0, CacheOp::Set(b"a".to_vec()), 0, 1, CacheOutput::Ok),
        (1, CacheOp::Set(b"b".to_vec()), 2, 3, CacheOutput::Ok),
        (0, cas(b"a", b"c"), 4, 5, Applied(true)),
    ]);
    assert_eq!(check(&CacheModel, &stale, Budget::UNLIMITED).verdict, Verdict::NotLinearizable);
    // Overlapping the other write, it may have come first, but then a later read sees "b".
    let overlapping = |seen: &[u8]| {
        cache_history(vec![
            (0, CacheOp::Set(b"a".to_vec()), 0, 1, CacheOutput::Ok),
            (1, CacheOp::Set(b"b".to_vec()), 2, 6, CacheOutput::Ok),
            (0, cas(b"a", b"c"), 3, 5, Applied(true)),
            (2, CacheOp::Get, 7, 8, CacheOutput::Value(Some(seen.to_vec()))),
        ])
    };
    let verdict = |h| check(&CacheModel, &h, Budget::UNLIMITED).verdict;
    assert_eq!(verdict(overlapping(b"b")), Verdict::Linearizable);
    assert_eq!(verdict(overlapping(b"c")), Verdict::NotLinearizable, "CAS won after b");
    // If-absent: holds only on an absent key.
    let absent = CacheOp::Cas { expect: None, value: b"x".to_vec() };
    let h = cache_history(vec![
        (0, absent.clone(), 0, 1, Applied(true)),
        (1, absent, 2, 3, Applied(true)),
    ]);
    assert_eq!(verdict(h), Verdict::NotLinearizable, "two set-if-absent both won");
    // A batch: the compare failed, so its else branch deleted the key.
    let txn = CacheOp::Txn { expect: Some(b"a".to_vec()), value: b"t".to_vec() };
    let h = |seen: Option<&[u8]>| {
        cache_history(vec![
            (0, CacheOp::Set(b"b".to_vec()), 0, 1, CacheOutput::Ok),
            (0, txn.clone(), 2, 3, Applied(false)),
            (1, CacheOp::Get, 4, 5, CacheOutput::Value(seen.map(<[u8]>::to_vec))),
        ])
    };
    assert_eq!(verdict(h(None)), Verdict::Linearizable);
    assert_eq!(verdict(h(Some(b"b"))), Verdict::NotLinearizable, "the else branch did not run");
}

const ETCD_SAMPLE: &str = "\
2016-01-01 noise that is not an event
INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - :nemesis\t:info\t:start\tnil
INFO  jepsen.util - 1\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:fail\t:cas\t[1 2]
INFO  jepsen.util - 2\t:fail\t:read\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:write\t4
INFO  jepsen.util - 3\t:info\t:write\t:timed-out
INFO  jepsen.util - 4\t:invoke\t:read\tnil
INFO  jepsen.util - 4\t:ok\t:read\tnil
INFO  jepsen.util - 5\t:invoke\t:cas\t[0 3]
";

#[test]
fn etcd_log_parses_every_completion_type() {
    // ok, fail and info completions and an open operation each map to their meaning.
    let history = parse_etcd_log(ETCD_SAMPLE).expect("sample parses");
    let ops = history.ops();
    assert_eq!(ops.len(), 6);
    assert_eq!(ops[0], Operation::completed(0, Write(1), 2, 3, OK));
    assert_eq!(ops[1], Operation::completed(1, Cas { from: 1, to: 2 }, 5, 7, Failed));
    assert_eq!(ops[2], Operation::unknown(2, Read, 6));
    assert_eq!(ops[3], Operation::unknown(3, Write(4), 9));
    assert_eq!(ops[4], Operation::completed(4, Read, 11, 12, read(None)));
    assert_eq!(ops[5], Operation::unknown(5, Cas { from: 0, to: 3 }, 13));
    // The failed cas needs the register not to hold 1, yet the write of 1 completed before.
    assert_eq!(verdict(&history), Verdict::NotLinearizable);
}

#[test]
fn etcd_log_errors_name_the_line() {
    // Malformed or unpaired events are errors that carry their line number.
    let cases = [
        ("INFO  jepsen.util - 0\t:ok\t:read\t3\n", 1, "never invoked"),
        (
            "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:invoke\t:read\tnil\n",
            2,
            "invokes again",
        ),
        (
            "INFO  jepsen.util - 0\t:invoke\t:write\t1\nINFO  jepsen.util - 0\t:ok\t:write\t2\n",
            2,
            "differs",
        ),
        ("INFO  jepsen.util - 0\t:invoke\t:write\tx\n", 1, "integer"),
        ("INFO  jepsen.util - 0\t:invoke\t:cas\t[1]\n", 1, "[A B]"),
        (
            "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:write\t2\n",
            2,
            "invoked :read",
        ),
        ("INFO  jepsen.util - 0\t:begin\t:read\tnil\n", 1, "unknown type"),
        ("INFO  jepsen.util - 0\n", 1, "expected a type"),
    ];
    for (text, line, fragment) in cases {
        let error = parse_etcd_log(text).expect_err(text);
        assert_eq!(error.line, Some(line), "{text:?}: {error}");
        assert!(error.message.contains(fragment), "{text:?}: {error}");
    }
    let empty = parse_etcd_log("just noise\n").expect_err("no operations");
    assert_eq!(empty.line, None);
}

#[test]
fn jepsen_kv_parses_edn_lines() {
    // Strings with escapes, nil values, fail and info completions and nemesis events.
    let text = r#"{:process 0, :type :invoke, :f :append, :key "k", :value "x \"0\" y"}
{:process 0, :type :ok, :f :append, :key "k", :value "x \"0\" y"}

{:process :nemesis, :type :info, :f :start, :value nil}
{:process 1, :type :invoke, :f :get, :key "k", :value nil}
{:process 1 :type :ok :f :get :key "k" :value nil :time 12}
{:process 2, :type :invoke, :f :put, :key "j", :value "v"}
{:process 2, :type :fail, :f :put, :key "j", :value "v"}
{:process 3, :type :invoke, :f :put, :key "j", :value "w"}
{:process 3, :type :info, :f :put, :key "j", :value "w"}
"#;
    let history = parse_jepsen_kv(text).expect("sample parses");
    let ops = history.ops();
    assert_eq!(ops.len(), 3, "the failed put is dropped");
    let k = |op| KvInput { key: "k".into(), op };
    assert_eq!(
        ops[0],
        Operation::completed(0, k(KvOp::Append("x \"0\" y".into())), 1, 2, KvOutput::Ok)
    );
    assert_eq!(ops[1], Operation::completed(1, k(KvOp::Get), 5, 6, value("")));
    assert_eq!(
        ops[2],
        Operation::unknown(3, KvInput { key: "j".into(), op: KvOp::Put("w".into()) }, 9)
    );
    // The get overlaps nothing and follows the append, so it must not read "".
    let parts = partition(history, |input| input.key.clone());
    assert_eq!(
        check_partitions(&KvModel, &parts, Budget::UNLIMITED).verdict,
        Verdict::NotLinearizable
    );
}

#[test]
fn jepsen_kv_errors_name_the_line() {
    // Broken EDN and unpaired events are errors that carry their line number.
    let invoke = r#"{:process 0, :type :invoke, :f :get, :key "k", :value nil}"#;
    let cases = [
        (
            r#"{:process 0, :type :invoke, :f :get, :key "k, :value nil}"#.to_owned(),
            1,
            "unterminated",
        ),
        (
            r#"{:process 0, :type :invoke, :f :get, :key "k", :value nil"#.to_owned(),
            1,
            "not closed",
        ),
        (r#"[:process 0]"#.to_owned(), 1, "EDN map"),
        (r#"{:process 0, :type :invoke, :f :get}"#.to_owned(), 1, "missing :key"),
        (r#"{:process 0, :type :invoke, :f :get, :key "k", :value}"#.to_owned(), 1, "no value"),
        (
            r#"{:process 0, :type :invoke, :f :get, :key "k", :value nil} x"#.to_owned(),
            1,
            "after the map",
        ),
        (
            r#"{:process 0, :type :invoke, :f :get, :key "k", :value @}"#.to_owned(),
            1,
            "unsupported",
        ),
        (r#"{:process 0, :type :ok, :f :get, :key "k", :value ""}"#.to_owned(), 1, "never invoked"),
        (
            format!("{invoke}\n{}", r#"{:process 0, :type :ok, :f :get, :key "j", :value ""}"#),
            2,
            "invoked :get of \"k\"",
        ),
        (
            format!("{invoke}\n{}", r#"{:process 0, :type :ok, :f :get, :key "k", :value 3}"#),
            2,
            "not a string",
        ),
        (
            r#"{:process 0, :type :invoke, :f :put, :key "k", :value nil}"#.to_owned(),
            1,
            "not a string",
        ),
        (
            r#"{:process -1, :type :invoke, :f :get, :key "k", :value nil}"#.to_owned(),
            1,
            "negative",
        ),
    ];
    for (text, line, fragment) in cases {
        let error = parse_jepsen_kv(&text).expect_err(&text);
        assert_eq!(error.line, Some(line), "{text:?}: {error}");
        assert!(error.message.contains(fragment), "{text:?}: {error}");
    }
}
