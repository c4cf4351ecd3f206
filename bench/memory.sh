#!/usr/bin/env bash
# bench/memory.sh — resident memory per key: 1M keys of 16 bytes (`key:000000000000`) with
# 100-byte values, in a single simple-cache node and in redis-server (no persistence), measured
# on the same machine in the same run. Bounded; 127.0.0.1 only.
#
# Usage: bench/memory.sh     (env: KEYS=1000000 RESULTS_DIR=... BIN_DIR=prebuilt binaries)
# ours:  RSS (/proc/PID/status VmRSS) after start, and after `simple-cache-bench --op fill`
#        (the JSON string of 98 characters is stored as 100 bytes: the quotes are part of it).
# redis: RSS and used_memory from INFO after loading the same keys through `redis-cli --pipe`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${KEYS:-1000000}
RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-memory-$(date +%Y%m%d-%H%M%S)}
BASE=$(mktemp -d /tmp/simple-cache-memory.XXXXXX)
mkdir -p "$RESULTS_DIR"
PID=""
trap '[[ -n "$PID" ]] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$BASE"' EXIT

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

if [[ -z "${BIN_DIR:-}" ]]; then
  cargo build --release -p simple-cache-server -p simple-cache-bench --manifest-path "$ROOT/Cargo.toml"
fi
BIN_DIR=${BIN_DIR:-$ROOT/target/release}

# --- ours ---
"$BIN_DIR/simple-cache" --mode single --http-addr 127.0.0.1:18180 \
  --raft-http-addr 127.0.0.1:19180 --metrics-addr 127.0.0.1:12180 --grpc-addr "" --redis-addr "" \
  --data-dir "$BASE/data" --log-level warn >"$BASE/ours.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do curl -sf 127.0.0.1:18180/readyz >/dev/null && break; sleep 0.1; done
before=$(rss_kib "$PID")
"$BIN_DIR/simple-cache-bench" --url http://127.0.0.1:18180 --op fill --keys "$KEYS" \
  --value-bytes 98 --connections 32 --duration 600
# A snapshot started by the last writes may still be encoding (a transient copy of the map):
# let it finish so the figure is the steady state.
sleep 3
keys=$(curl -s 127.0.0.1:12180/metrics | awk '/^simple_cache_keys_total / {print $2}')
snap_bytes=$(du -sb "$BASE/data/snap" | cut -f1)
wal_bytes=$(du -sb "$BASE/data/wal" | cut -f1)
after=$(rss_kib "$PID")
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
ours_per_key=$(( (after - before) * 1024 / KEYS ))
echo "simple-cache: keys=$keys rss_before=${before}KiB rss_after=${after}KiB => $ours_per_key bytes/key (snapshot files ${snap_bytes} B, WAL ${wal_bytes} B)"

# --- redis ---
redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  >"$BASE/redis.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do redis-cli -p 16390 ping >/dev/null 2>&1 && break; sleep 0.1; done
rbefore=$(rss_kib "$PID")
python3 - "$KEYS" <<'PY' | timeout 300 redis-cli -p 16390 --pipe >/dev/null
import sys
n = int(sys.argv[1]); v = b"x" * 100; out = sys.stdout.buffer
for i in range(n):
    k = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$16\r\n" + k + b"\r\n$100\r\n" + v + b"\r\n")
PY
rkeys=$(redis-cli -p 16390 dbsize)
rused=$(redis-cli -p 16390 info memory | awk -F: '/^used_memory:/ {print $2}' | tr -d '\r')
rafter=$(rss_kib "$PID")
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
redis_per_key=$(( (rafter - rbefore) * 1024 / KEYS ))
echo "redis: keys=$rkeys used_memory=$rused rss_before=${rbefore}KiB rss_after=${rafter}KiB => $redis_per_key bytes/key"

cat >>"$RESULTS_DIR/memory.jsonl" <<EOF
{"system":"simple-cache","keys":$keys,"rss_before_kib":$before,"rss_after_kib":$after,"bytes_per_key":$ours_per_key,"snapshot_file_bytes":$snap_bytes,"wal_bytes":$wal_bytes}
{"system":"redis","keys":$rkeys,"used_memory":$rused,"rss_before_kib":$rbefore,"rss_after_kib":$rafter,"bytes_per_key":$redis_per_key}
EOF
echo "| system | keys | RSS growth | bytes per key |"
echo "|---|---|---|---|"
echo "| simple-cache (1 node) | $keys | $(( (after - before) / 1024 )) MiB | $ours_per_key |"
echo "| Redis 7 | $rkeys | $(( (rafter - rbefore) / 1024 )) MiB | $redis_per_key |"
