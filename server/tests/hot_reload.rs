//! `hot_reload: true`: editing the config file changes the reloadable limits of a running node,
//! a broken file is refused without losing the running values, and data is untouched.

mod common;

use common::{Node, call, eventually};
use std::time::Duration;

fn write_config(path: &std::path::Path, max_value_bytes: usize) {
    std::fs::write(path, format!("hot_reload: true\nmax_value_bytes: {max_value_bytes}\n"))
        .unwrap();
}

fn value_of(len: usize) -> String {
    // A JSON string whose encoding is `len` bytes (quotes included).
    format!("{{\"value\": \"{}\"}}", "x".repeat(len - 2))
}

#[tokio::test]
async fn reloadable_limit_changes_without_restart_and_bad_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    write_config(&cfg, 100);
    let cfg_arg = cfg.display().to_string();
    let mut n = Node::new(1, dir.path(), &["--config", &cfg_arg]);
    n.wait_ready().await;
    let pid = n.pid();

    // 200 bytes is over the limit of 100.
    let (s, b) = call("PUT", &n.url("/v1/big"), Some(&value_of(200))).await;
    assert_eq!(s, 413, "{b}");
    let (s, _) = call("PUT", &n.url("/v1/small"), Some(&value_of(50))).await;
    assert_eq!(s, 200);

    // Raise the limit in the file: the same write succeeds once the node has reloaded.
    write_config(&cfg, 1000);
    eventually("the raised limit to take effect", Duration::from_secs(20), || async {
        let (s, _) = call("PUT", &n.url("/v1/big"), Some(&value_of(200))).await;
        (s == 200).then_some(())
    })
    .await;
    assert!(n.logs().contains("hot reload: max_value_bytes: 100 -> 1000"), "the change is logged");

    // A broken file is refused: the running limit stays and the node keeps serving.
    std::fs::write(&cfg, "hot_reload: true\nmax_value_bytes: [oops\n").unwrap();
    eventually("the broken file to be refused", Duration::from_secs(20), || async {
        n.logs().contains("hot reload: the new configuration is refused").then_some(())
    })
    .await;
    let (s, _) = call("PUT", &n.url("/v1/big2"), Some(&value_of(200))).await;
    assert_eq!(s, 200, "the running limit survives a broken file");

    // Lower it again: now the 200-byte write is refused, and nothing stored was lost.
    write_config(&cfg, 100);
    eventually("the lowered limit to take effect", Duration::from_secs(20), || async {
        let (s, _) = call("PUT", &n.url("/v1/big3"), Some(&value_of(200))).await;
        (s == 413).then_some(())
    })
    .await;
    for key in ["small", "big", "big2"] {
        let (s, b) = call("GET", &n.url(&format!("/v1/{key}")), None).await;
        assert_eq!((s, &b["found"]), (200, &serde_json::json!(true)), "{key}: {b}");
    }
    assert_eq!(n.pid(), pid, "no restart happened");
}

// The memory bound reloads too, through the log: lowering max_keys in the file makes the leader
// propose it, and the cache evicts down to it at once (allkeys-lru: the oldest writes go).
#[tokio::test]
async fn memory_limits_reload_through_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yaml");
    let write = |max_keys: u64| {
        let text =
            format!("hot_reload: true\nmax_keys: {max_keys}\neviction_policy: allkeys-lru\n");
        std::fs::write(&cfg, text).unwrap();
    };
    write(0);
    let cfg_arg = cfg.display().to_string();
    let mut n = Node::new(1, dir.path(), &["--config", &cfg_arg]);
    n.wait_ready().await;
    for i in 0..5 {
        let (s, _) = call("PUT", &n.url(&format!("/v1/k{i}")), Some(r#"{"value": 1}"#)).await;
        assert_eq!(s, 200);
    }
    write(2);
    let keys = eventually("the lowered max_keys in force", Duration::from_secs(20), || async {
        let (_, r) = call("GET", &n.url("/v1/search?pattern=k*"), None).await;
        (r["keys"].as_array().map(Vec::len) == Some(2)).then_some(r["keys"].clone())
    })
    .await;
    assert_eq!(keys, serde_json::json!(["k3", "k4"]), "the two most recently written stay");
    assert!(n.logs().contains("hot reload: max_keys: 0 -> 2"), "the change is logged");
    assert_eq!(n.readyz().await["memory"]["max_keys"], 2);
}
