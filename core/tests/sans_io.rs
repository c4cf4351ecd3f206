//! Guards the crate's defining absence: core performs no IO, reads no clock, draws no OS entropy
//! and spawns no thread. A source line that reaches for any of these fails this test.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::fs",
    "std::net",
    "std::thread",
    "std::time",
    "std::process",
    "std::env",
    "SystemTime",
    "Instant::now",
    "thread::spawn",
    "OsRng",
    "getrandom",
    "thread_rng",
    "from_entropy",
    "tokio",
    "madsim",
];

fn scan(dir: &Path, hits: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            scan(&path, hits);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        // Test-only files may use the environment (e.g. PROPTEST_CASES); they do not ship.
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with("tests.rs") || name == "testkit.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source is UTF-8");
        let mut in_test_module = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                // Everything after a test module marker is test code in this crate's layout.
                in_test_module = true;
            }
            let code = line.split("//").next().unwrap_or_default();
            for f in FORBIDDEN {
                if !in_test_module && code.contains(f) {
                    hits.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
}

#[test]
fn core_sources_use_no_io_clock_entropy_or_threads() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut hits = Vec::new();
    scan(&src, &mut hits);
    assert!(hits.is_empty(), "core must stay sans-IO:\n{}", hits.join("\n"));
}

#[test]
fn the_scan_finds_a_planted_violation() {
    // The guard itself must be able to fail: a temporary file with a clock read is reported.
    let dir = std::env::temp_dir().join(format!("sans-io-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("probe.rs"), "fn f() { let _ = std::time::SystemTime::now(); }\n")
        .unwrap();
    let mut hits = Vec::new();
    scan(&dir, &mut hits);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
}
