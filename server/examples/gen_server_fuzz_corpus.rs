//! Writes the seed corpus of the `client_request` fuzz target (see `simple_cache_server::fuzz`):
//! `cargo run -p simple-cache-server --example gen_server_fuzz_corpus` rewrites
//! `fuzz/corpus/client_request/`.

use simple_cache_server::value::StoredValue;
use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/client_request");
    std::fs::create_dir_all(&dir).expect("create the corpus dir");
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    let bodies = [
        r#"{"value": {"name": "ada"}, "expire": "1m30s"}"#,
        r#"{"value": "hello"}"#,
        r#"{"value": [1, 2.5, null, true], "expire": "500ms"}"#,
        r#"{"value": 1, "expire": 90}"#,
        r#"{"value": 1, "extra": 2}"#,
        r#"not json"#,
    ];
    for (i, b) in bodies.iter().enumerate() {
        inputs.push((format!("set-body-{i}"), [&[0u8][..], b.as_bytes()].concat()));
    }
    for (i, d) in
        ["1m30s", "1.5h", "0", "300ms", "-1s", "2h45m10.5s", "99999999999h"].iter().enumerate()
    {
        inputs.push((format!("duration-{i}"), [&[1u8][..], d.as_bytes()].concat()));
    }
    for (i, p) in
        ["wildcard\nuser:*", "regex\n^user:\\d+$", "glob\n[a-z]?", "regex\n(a{1000}){1000}"]
            .iter()
            .enumerate()
    {
        inputs.push((format!("pattern-{i}"), [&[2u8][..], p.as_bytes()].concat()));
    }
    let stored = StoredValue::json(&serde_json::json!({"k": "v"})).encode();
    inputs.push(("stored-json".into(), [&[3u8][..], &stored[..]].concat()));
    for (name, bytes) in inputs {
        std::fs::write(dir.join(name), bytes).expect("write a corpus file");
    }
    println!("corpus written to {}", dir.display());
}
