#!/usr/bin/env bash
# bench/series.sh — how the cost of a write and of a linearizable read grows with the cluster
# size (1, 3, 5 nodes, 100-byte values) and with the value size (100 B, 1 KiB, 16 KiB, 3 nodes).
# Durable defaults (fsync on); the same wrk scripts as bench/matrix.sh; bounded; 127.0.0.1 only.
#
# Usage: bench/series.sh     (env: SIZES="1 3 5" VALUES="100 1024 16384" CONNS="1 64"
#                                  DURATION=10s REPEATS=3 RESULTS_DIR=...)
# Output: $RESULTS_DIR/series-*.jsonl and two markdown tables on stdout.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/bench/anchors}
export RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-series-$(date +%Y%m%d-%H%M%S)}
export DURATION=${DURATION:-10s} REPEATS=${REPEATS:-3}
# Set but empty skips that series (SIZES="" VALUES=16384 runs only the 16 KiB values).
SIZES=${SIZES-1 3 5}
VALUES=${VALUES-100 1024 16384}
SERIES_CONNS=${CONNS:-1 64}
BASE=$(mktemp -d /tmp/simple-cache-series.XXXXXX)
mkdir -p "$RESULTS_DIR"
PIDS=()

stop_cluster() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$BASE"/n*
}
trap 'stop_cluster; rm -rf "$BASE"' EXIT

# start_cluster N: N members on ports 1808x (client), 1909x (raft), 1211x (metrics).
start_cluster() {
  local n=$1 peers="" i
  for i in $(seq 1 "$n"); do
    peers+="  - { id: $i, addr: \"127.0.0.1:$((19090 + i))\", http_addr: \"127.0.0.1:$((18080 + i))\" }"$'\n'
  done
  for i in $(seq 1 "$n"); do
    cat >"$BASE/n$i.yaml" <<EOF
mode: $([[ $n == 1 ]] && echo single || echo distributed)
node_id: $i
http_addr: "127.0.0.1:$((18080 + i))"
raft_http_addr: "127.0.0.1:$((19090 + i))"
metrics_addr: "127.0.0.1:$((12110 + i))"
grpc_addr: ""
redis_addr: ""
data_dir: "$BASE/n$i"
log_level: warn
EOF
    [[ $n == 1 ]] || printf 'peers:\n%s' "$peers" >>"$BASE/n$i.yaml"
    "$ROOT/target/release/simple-cache" --config "$BASE/n$i.yaml" >"$BASE/n$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 150); do
    LEADER=$(curl -s 127.0.0.1:18081/cluster/peers | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next("http://" + m["http_addr"] for m in d["members"] if m["leader"]))' 2>/dev/null || true)
    if [[ -n "$LEADER" ]] && curl -sf "$LEADER/readyz" >/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "cluster of $n did not become ready" >&2; exit 1
}

run_wrk() { # label
  CONNS="$SERIES_CONNS" OUT="$RESULTS_DIR/series-$1.jsonl" LABEL=$1 \
  KV_PUT_METHOD=PUT KV_PUT_PATH='/v1/{{key_url}}' KV_PUT_BODY='{"value":"{{value}}"}' \
  KV_GET_METHOD=GET KV_GET_PATH='/v1/{{key_url}}' KV_GET_BODY='' \
    "$ANCHORS/bench_http.sh" "$LEADER"
}

cargo build --release -p simple-cache-server --manifest-path "$ROOT/Cargo.toml"

for n in $SIZES; do
  start_cluster "$n"
  echo "== $n node(s), leader $LEADER"
  KV_VALUE_SIZE=100 run_wrk "nodes-$n"
  stop_cluster
done
for v in $VALUES; do
  start_cluster 3
  echo "== 3 nodes, $v-byte values, leader $LEADER"
  # Fewer keys for large values keep the preload (and the cache) to a few hundred MB at most.
  KV_VALUE_SIZE=$v KV_KEYSPACE=$(( v > 1024 ? 20000 : 100000 )) run_wrk "value-$v"
  stop_cluster
done

python3 - "$RESULTS_DIR" <<'PY'
import glob, json, os, statistics, sys
rows = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "series-*.jsonl"))):
    for line in open(f):
        r = json.loads(line)
        rows.setdefault((r["label"], r["op"], r["conns"]), []).append(r)
def cell(label, op, c):
    rs = rows.get((label, op, c))
    if not rs:
        return "-"
    rps = statistics.median(r["rps"] for r in rs)
    p50 = statistics.median(r["lat_ms"]["p50"] for r in rs)
    p99 = statistics.median(r["lat_ms"]["p99"] for r in rs)
    return f"{rps:,.0f} ({p50:.2f} / {p99:.1f})"
labels = sorted({k[0] for k in rows}, key=lambda l: (l.split("-")[0], int(l.split("-")[1])))
conns = sorted({k[2] for k in rows})
head = [f"{op} c={c}" for op in ("put", "get") for c in conns]
print("| run | " + " | ".join(head) + " |")
print("|---|" + "---|" * len(head))
for l in labels:
    print(f"| {l} | " + " | ".join(cell(l, op, c) for op in ("put", "get") for c in conns) + " |")
print("\ncells: requests/s, median of repeats (p50 / p99 ms)")
PY
echo "results in $RESULTS_DIR"
