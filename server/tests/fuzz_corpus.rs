//! Replays the committed corpus and every past crash input of the `client_request` fuzz target
//! through its body, so CI re-checks them without libFuzzer.

use std::path::Path;

/// The committed corpus and regressions of fuzz target `target`, in file name order.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(dir).join(target)) else { continue };
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            if !f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                inputs.push(std::fs::read(&f).unwrap());
            }
        }
    }
    inputs
}

#[test]
fn client_request_corpus_and_regressions_replay() {
    let inputs = corpus("client_request");
    assert!(!inputs.is_empty(), "the client_request seed corpus is committed");
    for data in inputs {
        simple_cache_server::fuzz::client_request(&data);
    }
}

// The `resp_request` target's corpus and regressions, then generated inputs: pipelines of
// valid frames and inline commands cut at random places and with random bytes flipped.
#[test]
fn resp_request_corpus_regressions_and_mutations_replay() {
    let seeds = corpus("resp_request");
    for data in &seeds {
        simple_cache_server::fuzz::resp_request(data);
    }
    assert!(seeds.len() >= 5, "the resp_request seed corpus is committed");
    let mut next = simple_cache_core::fuzz::xorshift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let mut data = seeds[(next() % seeds.len() as u64) as usize].clone();
        for _ in 0..next() % 4 {
            let i = (next() % data.len() as u64) as usize;
            data[i] = match next() % 4 {
                0 => b'\r',
                1 => b'\n',
                2 => b'*',
                _ => next() as u8,
            };
        }
        if next().is_multiple_of(3) {
            let other = &seeds[(next() % seeds.len() as u64) as usize];
            data.extend_from_slice(&other[1..]);
        }
        simple_cache_server::fuzz::resp_request(&data);
    }
}
