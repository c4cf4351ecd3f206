//! The checker against Jepsen histories whose verdicts an independent checker established
//! (`sim/tests/data/README.md`). They are part of the repository, so a missing file fails these
//! tests rather than skipping them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use simple_cache_sim::lincheck::{
    Budget, KvModel, RegisterModel, Verdict, check, check_partitions, parse_etcd_log,
    parse_jepsen_kv, partition,
};

/// `sim/tests/data`.
fn known_answers_dir() -> PathBuf {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"));
    assert!(
        dir.is_dir(),
        "the known-answer histories are missing: expected them in {}",
        dir.display()
    );
    dir.to_path_buf()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_str().is_some_and(|name| name.ends_with(suffix)))
        .collect();
    files.sort();
    files
}

#[test]
fn jepsen_etcd_verdicts_match() {
    // Every etcd log gets the verdict listed in VERDICTS, and every log is listed.
    let dir = known_answers_dir().join("jepsen-etcd");
    let verdicts = read(&dir.join("VERDICTS"));
    let expected: Vec<(&str, Verdict)> = verdicts
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [file, "linearizable"] => (file, Verdict::Linearizable),
            [file, "not-linearizable"] => (file, Verdict::NotLinearizable),
            _ => panic!("unexpected VERDICTS line {line:?}"),
        })
        .collect();
    let logs = files(&dir, ".log");
    assert!(!expected.is_empty(), "VERDICTS lists no histories");
    assert_eq!(logs.len(), expected.len(), "every log has exactly one verdict");

    let suite = Instant::now();
    let mut wrong = Vec::new();
    for (file, verdict) in &expected {
        let path = dir.join(file);
        let history = parse_etcd_log(&read(&path))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let started = Instant::now();
        let result = check(&RegisterModel, &history, Budget::default());
        println!("{file}: {:?} in {} steps, {:?}", result.verdict, result.steps, started.elapsed());
        if result.verdict != *verdict {
            wrong.push(format!("{file}: expected {verdict:?}, got {:?}", result.verdict));
        }
    }
    println!("{} etcd histories in {:?}", expected.len(), suite.elapsed());
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}

#[test]
fn jepsen_kv_verdicts_match() {
    // `-ok` histories are linearizable and `-bad` ones are not, checked key by key.
    let dir = known_answers_dir().join("jepsen-kv");
    let histories = files(&dir, ".txt");
    assert!(!histories.is_empty(), "no jepsen-kv histories in {}", dir.display());

    let suite = Instant::now();
    let mut checked = 0;
    for path in &histories {
        let name = path.file_name().and_then(|name| name.to_str()).expect("utf-8 name");
        let expected = if name.ends_with("-ok.txt") {
            Verdict::Linearizable
        } else if name.ends_with("-bad.txt") {
            Verdict::NotLinearizable
        } else {
            panic!("{name} is neither -ok nor -bad");
        };
        let history = parse_jepsen_kv(&read(path))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let partitions = partition(history, |input| input.key.clone());
        let started = Instant::now();
        let result = check_partitions(&KvModel, &partitions, Budget::default());
        println!(
            "{name}: {:?} in {} steps over {} keys, {:?}",
            result.verdict,
            result.steps,
            partitions.len(),
            started.elapsed()
        );
        assert_eq!(result.verdict, expected, "{name}");
        checked += 1;
    }
    assert_eq!(checked, histories.len());
    println!("{checked} kv histories in {:?}", suite.elapsed());
}
