//! Replays the committed fuzz corpus and every crash input ever found (`fuzz/regressions/`)
//! through the fuzz target bodies, so CI re-checks them on stable without libFuzzer.

use std::path::Path;

type Body = fn(&[u8]);

const TARGETS: &[(&str, Body)] = &[
    ("raft_message", simple_cache_core::fuzz::raft_message),
    ("wal_segment", simple_cache_core::fuzz::wal_segment),
    ("cache_snapshot", simple_cache_core::fuzz::cache_snapshot),
    ("proposal", simple_cache_core::fuzz::proposal),
    ("search_pattern", simple_cache_core::fuzz::search_pattern),
    ("cluster_steps", simple_cache_core::fuzz::cluster_steps),
];

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<_> = rd
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_and_regressions_replay_without_failure() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (target, body) in TARGETS {
        let corpus = files(&fuzz.join("corpus").join(target));
        assert!(!corpus.is_empty(), "the seed corpus of {target} is committed");
        for file in corpus.iter().chain(files(&fuzz.join("regressions").join(target)).iter()) {
            let data = std::fs::read(file).expect("readable corpus file");
            body(&data);
        }
    }
}
