//! Replays the committed corpus and every past crash input of the `client_request` fuzz target
//! through its body, so CI re-checks them without libFuzzer.

use std::path::Path;

#[test]
fn client_request_corpus_and_regressions_replay() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for dir in ["corpus/client_request", "regressions/client_request"] {
        let Ok(rd) = std::fs::read_dir(fuzz.join(dir)) else { continue };
        let mut files: Vec<_> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            simple_cache_server::fuzz::client_request(&std::fs::read(&f).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "the client_request seed corpus is committed");
}
