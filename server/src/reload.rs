//! `hot_reload: true`: the config file is watched and the reloadable keys take effect without a
//! restart; every change is logged.
//!
//! Reloadable: `log_level`, `max_key_bytes`, `max_value_bytes`, `request_timeout_ms`,
//! `max_memory_bytes`, `max_keys`, `eviction_policy` (the last three through the log: the leader
//! proposes them, see `CacheNode::set_desired_limits`). Everything
//! else (addresses, data dir, Raft timing, body limit, concurrency, admin token, ...) is read once:
//! a change to it is logged as needing a restart and otherwise ignored. Membership is never
//! changed by editing a file, only through the cluster endpoints. The file is re-read with the
//! same precedence as at startup, so a key also set by a flag or an environment variable keeps
//! that value. A file that does not parse or validate is refused with a logged error, and the
//! running values stay.

use crate::config::{Cli, Config};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The limits requests read on every call; hot reload swaps them in place.
#[derive(Debug)]
pub struct Limits {
    max_key_bytes: AtomicUsize,
    max_value_bytes: AtomicUsize,
    request_timeout_ms: AtomicU64,
    /// The three memory settings change together (one lock), so the leader never proposes a
    /// mix of old and new values.
    memory: std::sync::Mutex<simple_cache_core::cache::Limits>,
}

fn memory_of(cfg: &Config) -> simple_cache_core::cache::Limits {
    simple_cache_core::cache::Limits {
        max_memory_bytes: cfg.max_memory_bytes,
        max_keys: cfg.max_keys,
        policy: cfg.eviction_policy,
    }
}

impl Limits {
    pub fn new(cfg: &Config) -> Arc<Limits> {
        Arc::new(Limits {
            max_key_bytes: AtomicUsize::new(cfg.max_key_bytes),
            max_value_bytes: AtomicUsize::new(cfg.max_value_bytes),
            request_timeout_ms: AtomicU64::new(cfg.request_timeout_ms),
            memory: std::sync::Mutex::new(memory_of(cfg)),
        })
    }
    /// The memory limits the configuration asks for (the cluster applies its leader's).
    pub fn memory(&self) -> simple_cache_core::cache::Limits {
        *self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn max_key_bytes(&self) -> usize {
        self.max_key_bytes.load(Ordering::Relaxed)
    }
    pub fn max_value_bytes(&self) -> usize {
        self.max_value_bytes.load(Ordering::Relaxed)
    }
    pub fn request_timeout_ms(&self) -> u64 {
        self.request_timeout_ms.load(Ordering::Relaxed)
    }
    fn store(&self, cfg: &Config) {
        self.max_key_bytes.store(cfg.max_key_bytes, Ordering::Relaxed);
        self.max_value_bytes.store(cfg.max_value_bytes, Ordering::Relaxed);
        self.request_timeout_ms.store(cfg.request_timeout_ms, Ordering::Relaxed);
        *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = memory_of(cfg);
    }
}

/// Applies a new `log_level` filter; `Err` carries why it was refused.
pub type SetLogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What changed between two configurations: reloadable changes as "key: old -> new", and the
/// names of changed keys that need a restart.
pub fn diff(old: &Config, new: &Config) -> (Vec<String>, Vec<&'static str>) {
    let mut reloadable = Vec::new();
    let mut restart = Vec::new();
    macro_rules! reloadable {
        ($($field:ident),*) => {$(
            if old.$field != new.$field {
                reloadable.push(format!(
                    concat!(stringify!($field), ": {:?} -> {:?}"), old.$field, new.$field
                ));
            }
        )*};
    }
    macro_rules! restart {
        ($($field:ident),*) => {$(
            if old.$field != new.$field {
                restart.push(stringify!($field));
            }
        )*};
    }
    reloadable!(
        log_level,
        max_key_bytes,
        max_value_bytes,
        request_timeout_ms,
        max_memory_bytes,
        max_keys,
        eviction_policy
    );
    restart!(
        mode,
        node_id,
        http_addr,
        raft_http_addr,
        metrics_addr,
        grpc_addr,
        join,
        heartbeat_ms,
        election_ms,
        data_dir,
        max_body_bytes,
        max_concurrent_requests,
        admin_token,
        peer_token,
        snapshot_threshold,
        snapshot_log_percent,
        clock_skew_max_ms,
        search_page_keys,
        tls_cert_file,
        tls_key_file,
        tls_ca_file,
        client_cert_auth,
        peer_tls_cert_file,
        peer_tls_key_file,
        peer_tls_ca_file
    );
    if old.peers.len() != new.peers.len()
        || old.peers.iter().zip(&new.peers).any(|(a, b)| a.id != b.id || a.addr != b.addr)
    {
        restart.push("peers");
    }
    (reloadable, restart)
}

/// Watches `path` (polling its contents every `period`) and applies reloadable changes.
pub async fn watch(
    path: PathBuf,
    mut current: Config,
    limits: Arc<Limits>,
    set_log_level: SetLogLevel,
    period: Duration,
) {
    let mut last = std::fs::read(&path).ok();
    tracing::info!(file = %path.display(), "hot reload: watching the config file");
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = std::fs::read(&path).ok();
        if now == last {
            continue;
        }
        last = now;
        // The same layers as at startup: flags and environment still win over the file.
        let cli = match <Cli as clap::Parser>::try_parse() {
            Ok(cli) => cli,
            Err(e) => {
                tracing::error!("hot reload: re-reading the command line failed: {e}");
                continue;
            }
        };
        let new = match Config::load(cli) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(file = %path.display(), "hot reload: the new configuration is refused, keeping the running one: {e}");
                continue;
            }
        };
        let (changes, restart) = diff(&current, &new);
        if new.log_level != current.log_level
            && let Err(e) = set_log_level(&new.log_level)
        {
            tracing::error!("hot reload: log_level {:?} refused: {e}", new.log_level);
            continue;
        }
        limits.store(&new);
        for change in &changes {
            tracing::info!("hot reload: {change}");
        }
        for key in &restart {
            tracing::warn!(
                "hot reload: `{key}` changed in the file; it takes effect only after a restart"
            );
        }
        if changes.is_empty() && restart.is_empty() {
            tracing::info!("hot reload: the file changed but no setting did");
        }
        // Keep the keys that need a restart at their running values, so the warning is given
        // once per change and not on every later reload.
        let mut applied = current.clone();
        applied.log_level = new.log_level;
        applied.max_key_bytes = new.max_key_bytes;
        applied.max_value_bytes = new.max_value_bytes;
        applied.request_timeout_ms = new.request_timeout_ms;
        applied.max_memory_bytes = new.max_memory_bytes;
        applied.max_keys = new.max_keys;
        applied.eviction_policy = new.eviction_policy;
        current = applied;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reloadable keys are reported as changes with old and new values; others as needing a
    // restart; nothing when nothing changed.
    #[test]
    fn diff_separates_reloadable_from_restart_keys() {
        let old = Config::load(Cli::default()).unwrap();
        assert_eq!(diff(&old, &old), (Vec::<String>::new(), Vec::<&str>::new()));
        let mut new = old.clone();
        new.max_value_bytes = 7;
        new.log_level = "debug".into();
        new.http_addr = "127.0.0.1:1".parse().unwrap();
        new.election_ms += 1;
        let (changes, restart) = diff(&old, &new);
        assert_eq!(
            changes,
            vec![
                "log_level: \"info\" -> \"debug\"".to_string(),
                format!("max_value_bytes: {} -> 7", old.max_value_bytes)
            ]
        );
        assert_eq!(restart, vec!["http_addr", "election_ms"]);
    }

    // Stored limits are what requests read.
    #[test]
    fn limits_follow_the_applied_config() {
        let mut cfg = Config::load(Cli::default()).unwrap();
        let limits = Limits::new(&cfg);
        cfg.max_key_bytes = 3;
        cfg.request_timeout_ms = 9;
        limits.store(&cfg);
        assert_eq!((limits.max_key_bytes(), limits.request_timeout_ms()), (3, 9));
    }
}
