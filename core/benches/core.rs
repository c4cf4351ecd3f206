//! Microbenchmarks of core: `cargo bench -p simple-cache-core`. They print figures (divan's
//! median/mean per iteration and throughput); nothing here passes or fails.

use bytes::Bytes;
use divan::{Bencher, black_box, counter::ItemsCount};
use simple_cache_core::cache::{Cache, Command, Pattern, Proposal, SearchMode};
use simple_cache_core::codec;
use simple_cache_core::testkit::Cluster;
use simple_cache_core::wal::{self, WalRecord};
use simple_cache_core::*;

fn main() {
    divan::main();
}

fn set(key: String, time: u64) -> Proposal {
    Proposal {
        time: Instant(time),
        command: Command::Set { key, value: Bytes::from(vec![b'v'; 100]), expires_at: None },
    }
}

/// A cache of `n` keys `key:{i:08}` with 100-byte values.
fn filled(n: usize) -> Cache {
    let mut c = Cache::new();
    for i in 0..n {
        c.apply(&set(format!("key:{i:08}"), 1));
    }
    c
}

/// Propose -> commit -> apply through an in-memory 3-node cluster, `batch` proposals at a time
/// (they share appends, as the server's group commit makes them share fsyncs).
#[divan::bench(args = [1, 16, 256])]
fn replicate_3_nodes(bencher: Bencher, batch: usize) {
    let mut c = Cluster::new(3, 1);
    c.delay_ms_min = 0;
    c.delay_ms_max = 0;
    let leader = c.elect(5_000).expect("a leader");
    let data = set("k".into(), 1).encode();
    bencher.counter(ItemsCount::new(batch)).bench_local(|| {
        let mut last = LogIndex(0);
        for _ in 0..batch {
            last = c.propose(leader, &data).expect("leader accepts").0;
        }
        c.run_until(1_000, |c| c.all_applied(last));
    });
}

#[divan::bench]
fn cache_set(bencher: Bencher) {
    let mut cache = filled(100_000);
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 1;
        cache.apply(&set(format!("key:{:08}", i % 200_000), 2))
    });
}

#[divan::bench]
fn cache_get(bencher: Bencher) {
    let cache = filled(100_000);
    let mut i = 0u64;
    bencher.bench_local(|| {
        i += 7919;
        black_box(cache.get(&format!("key:{:08}", i % 100_000), Instant(2)).is_some())
    });
}

/// Detaching the cache's state for a snapshot (the part that runs on the node loop: the map is
/// cloned, values shared), encoding it (on the server's writer thread), and restoring it (a
/// follower installing a leader's snapshot, a restart).
#[divan::bench(args = [100_000])]
fn cache_snapshot_source(bencher: Bencher, keys: usize) {
    let cache = filled(keys);
    bencher.counter(ItemsCount::new(keys)).bench_local(|| black_box(cache.snapshot_source()));
}

#[divan::bench(args = [100_000])]
fn cache_snapshot_encode(bencher: Bencher, keys: usize) {
    let cache = filled(keys);
    bencher.counter(ItemsCount::new(keys)).bench_local(|| black_box(cache.snapshot()));
}

#[divan::bench(args = [100_000])]
fn cache_snapshot_restore(bencher: Bencher, keys: usize) {
    let data = filled(keys).snapshot();
    bencher.counter(ItemsCount::new(keys)).bench_local(|| black_box(Cache::restore(&data)));
}

/// Search over 1M keys: a prefix (range scan) and a regex (scan with matching), limit 100.
#[divan::bench(args = ["key:0000012*", "key:*99"])]
fn search_wildcard_1m(bencher: Bencher, pattern: &str) {
    let cache = filled(1_000_000);
    let p = Pattern::compile(pattern, SearchMode::Wildcard).expect("valid");
    bencher.bench_local(|| black_box(cache.search(&p, Instant(2), 100).len()));
}

#[divan::bench(args = ["^key:0000012", "9{3}$"])]
fn search_regex_1m(bencher: Bencher, pattern: &str) {
    let cache = filled(1_000_000);
    let p = Pattern::compile(pattern, SearchMode::Regex).expect("valid");
    bencher.bench_local(|| black_box(cache.search(&p, Instant(2), 100).len()));
}

fn append_message(entries: usize) -> Message {
    let data = set("k".into(), 1).encode();
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::AppendEntries {
            prev_log_index: LogIndex(100),
            prev_log_term: Term(3),
            entries: (0..entries)
                .map(|i| Entry {
                    term: Term(3),
                    index: LogIndex(101 + i as u64),
                    payload: EntryPayload::Command(data.clone()),
                })
                .collect(),
            leader_commit: LogIndex(100),
        },
    }
}

#[divan::bench(args = [1, 64])]
fn codec_encode_append(bencher: Bencher, entries: usize) {
    let m = append_message(entries);
    bencher.counter(ItemsCount::new(entries)).bench_local(|| black_box(codec::encode(&m)));
}

#[divan::bench(args = [1, 64])]
fn codec_decode_append(bencher: Bencher, entries: usize) {
    let bytes = codec::encode(&append_message(entries));
    bencher
        .counter(ItemsCount::new(entries))
        .bench_local(|| black_box(codec::decode::<Message>(&bytes, usize::MAX).expect("decodes")));
}

/// Framing a group-commit batch of entries into WAL records (the fsync itself is the server's).
#[divan::bench(args = [1, 64])]
fn wal_encode_batch(bencher: Bencher, entries: usize) {
    let MessageBody::AppendEntries { entries: batch, .. } = append_message(entries).body else {
        unreachable!()
    };
    let hs = HardState { current_term: Term(3), voted_for: None, commit_index: LogIndex(100) };
    bencher.counter(ItemsCount::new(entries)).bench_local(|| {
        let mut out = wal::encode_entries(&batch);
        out.extend(wal::encode_record(&WalRecord::HardState(hs.clone())));
        black_box(out)
    });
}
