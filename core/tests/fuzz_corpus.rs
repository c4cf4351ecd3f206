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
    ("peer_frames", simple_cache_core::fuzz::peer_frames),
    ("backup_file", simple_cache_core::fuzz::backup_file),
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

// Generated peer streams: the `peer_frames` seeds with bytes flipped, lengths rewritten, cut
// short and glued to one another, so the frame decoder sees lengths that lie.
#[test]
fn peer_frames_mutations_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/peer_frames");
    let seeds: Vec<Vec<u8>> =
        files(&fuzz).iter().map(|f| std::fs::read(f).expect("readable corpus file")).collect();
    assert!(seeds.len() >= 5, "the peer_frames seed corpus is committed");
    let mut next = simple_cache_core::fuzz::xorshift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut data = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..next() % 4 {
            let i = (next() % data.len() as u64) as usize;
            data[i] = match next() % 3 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        if next().is_multiple_of(4) && data.len() > 1 {
            let keep = 1 + (next() % (data.len() as u64 - 1)) as usize;
            data.truncate(keep);
        }
        if next().is_multiple_of(3) {
            let other = &seeds[(next() % seeds.len() as u64) as usize];
            data.extend_from_slice(&other[1..]);
        }
        simple_cache_core::fuzz::peer_frames(&data);
    }
}

// Generated backup files: the unsealed seed with bytes changed and cut, each sealed with a valid
// checksum by the target, so the snapshot and cache decoders behind the trailer see lies too.
#[test]
fn backup_file_mutations_replay() {
    let seed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/backup_file/two-keys-unsealed");
    let seed = std::fs::read(seed).expect("the backup_file seed corpus is committed");
    let mut next = simple_cache_core::fuzz::xorshift(0x2545_F491_4F6C_DD1D);
    for _ in 0..5_000 {
        let mut data = seed.clone();
        for _ in 0..1 + next() % 3 {
            let i = (next() % data.len() as u64) as usize;
            data[i] = match next() % 3 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        if next().is_multiple_of(5) {
            data.truncate((next() % data.len() as u64) as usize);
        }
        simple_cache_core::fuzz::backup_file(&data);
    }
}
