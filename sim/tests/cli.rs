//! The `lincheck` command's output and exit codes.

use std::process::{Command, Output};

const KNOWN_ANSWERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn lincheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lincheck")).args(args).output().expect("lincheck runs")
}

fn stdout(output: &Output) -> &str {
    std::str::from_utf8(&output.stdout).expect("utf-8 stdout").trim_end()
}

fn history(relative: &str) -> String {
    let path = format!("{KNOWN_ANSWERS}/{relative}");
    assert!(std::path::Path::new(&path).is_file(), "known-answer history missing: {path}");
    path
}

#[test]
fn linearizable_history_exits_0() {
    // A linearizable history prints `linearizable` and exits 0.
    let output = lincheck(&["jepsen-kv", &history("jepsen-kv/c10-ok.txt")]);
    assert_eq!(stdout(&output), "linearizable");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn non_linearizable_history_exits_1() {
    // A violation prints `not linearizable`, explains itself on stderr and exits 1.
    let output = lincheck(&["etcd-register", &history("jepsen-etcd/etcd_000.log")]);
    assert_eq!(stdout(&output), "not linearizable");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("invoked on line"));
}

#[test]
fn exhausted_budget_exits_3() {
    // A search that runs out of steps prints `unknown` and exits 3.
    let file = history("jepsen-etcd/etcd_002.log");
    let output = lincheck(&["--steps-max", "10", "etcd-register", &file]);
    assert_eq!(stdout(&output), "unknown");
    assert_eq!(output.status.code(), Some(3));
}

#[test]
fn missing_file_exits_2() {
    // An unreadable file is an input error: a message on stderr and exit 2.
    let output = lincheck(&["etcd-register", "/nonexistent/history.log"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read"));
}

#[test]
fn unparseable_file_exits_2() {
    // A file in the wrong format is an input error too, never a verdict.
    let output = lincheck(&["jepsen-kv", &history("jepsen-etcd/etcd_000.log")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"));
}

#[test]
fn bad_arguments_exit_2_and_help_exits_0() {
    // Usage errors exit 2 with the usage on stderr; --help prints it on stdout and exits 0.
    for args in [&[][..], &["etcd-register"], &["xml", "file"], &["--frobnicate"]] {
        let output = lincheck(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"), "{args:?}");
    }
    let help = lincheck(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).starts_with("usage:"));
}
