#!/usr/bin/env bash
# bench/matrix.sh — our 3-node durable cluster beside etcd (3 members) and Redis, same machine,
# same run, same client (wrk via bench/anchors/bench_http.sh) plus our own
# simple-cache-bench for the stale and mixed loads. Every run is bounded and targets 127.0.0.1.
#
# Usage: bench/matrix.sh            (env: CONNS="1 16 64" DURATION=10s REPEATS=3 SYSTEMS="ours etcd redis")
#   BIN_DIR=/path  run prebuilt simple-cache and simple-cache-bench binaries instead of building
#   LABEL_OURS=simple-cache  the label of our results (to compare two builds in one run)
#   OWN_OPS="get-stale mixed"  the loads run with simple-cache-bench ("" skips them)
# Needs: wrk, etcd-server, etcd-client, redis-server, redis-tools (apt-get install ...).
# Output: $RESULTS_DIR/*.jsonl and a markdown table on stdout (summarize.py).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/bench/anchors}
export RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-bench-$(date +%Y%m%d-%H%M%S)}
export CONNS=${CONNS:-1 16 64} DURATION=${DURATION:-10s} REPEATS=${REPEATS:-3}
SYSTEMS=${SYSTEMS:-ours etcd redis}
BASE=$(mktemp -d /tmp/simple-cache-matrix.XXXXXX)
mkdir -p "$RESULTS_DIR"

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap 'stop_ours; "$ANCHORS/etcd3.sh" stop >/dev/null 2>&1 || true; rm -rf "$BASE"' EXIT

if [[ -z "${BIN_DIR:-}" ]]; then
  cargo build --release -p simple-cache-server -p simple-cache-bench --manifest-path "$ROOT/Cargo.toml"
fi
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
LABEL_OURS=${LABEL_OURS:-simple-cache}
OWN_OPS=${OWN_OPS-get-stale mixed}

if [[ " $SYSTEMS " == *" ours "* ]]; then
  start_ours
  # The three nodes' CPU per request (a write costs CPU on every replica).
  export CPU_PIDS="${PIDS[*]}"
  # ... and their WAL fsyncs over 50 ms, to tell runs with a disk stall (configs/node*.yaml).
  export FSYNC_METRICS="http://127.0.0.1:2113 http://127.0.0.1:2114 http://127.0.0.1:2115"
  URL=$(leader_url)
  echo "== simple-cache 3 nodes, leader $URL"
  KV_PUT_METHOD=PUT KV_PUT_PATH='/v1/{{key_url}}' KV_PUT_BODY='{"value":"{{value}}"}' \
  KV_GET_METHOD=GET KV_GET_PATH='/v1/{{key_url}}' KV_GET_BODY='' \
  LABEL=$LABEL_OURS "$ANCHORS/bench_http.sh" "$URL"
  secs=${DURATION%s}
  for op in $OWN_OPS; do
    for c in $CONNS; do
      "$BIN_DIR/simple-cache-bench" --url "$URL" --op "$op" --connections "$c" \
        --duration "$secs" --json --label "$LABEL_OURS" >>"$RESULTS_DIR/$LABEL_OURS-own-client.jsonl"
      tail -1 "$RESULTS_DIR/$LABEL_OURS-own-client.jsonl"
    done
  done
  stop_ours
  unset FSYNC_METRICS
fi

if [[ " $SYSTEMS " == *" etcd "* ]]; then
  "$ANCHORS/etcd3.sh" start
  CPU_PIDS=$(cat "${ETCD_BASE:-/tmp/anchors-etcd}"/m*.pid | tr '\n' ' ')
  export CPU_PIDS
  URL=$("$ANCHORS/etcd3.sh" leader)
  echo "== etcd 3 members, leader $URL"
  LABEL=etcd3 "$ANCHORS/bench_http.sh" "$URL"
  "$ANCHORS/etcd3.sh" stop
  unset CPU_PIDS
fi

if [[ " $SYSTEMS " == *" redis "* ]]; then
  echo "== redis"
  PIPELINES=1 "$ANCHORS/redis_bench.sh"
fi

shopt -s nullglob
wrk_results=()
for f in "$RESULTS_DIR/$LABEL_OURS.jsonl" "$RESULTS_DIR"/etcd3.jsonl "$RESULTS_DIR"/redis.jsonl; do
  [[ -f "$f" ]] && wrk_results+=("$f")
done
python3 "$ANCHORS/summarize.py" "${wrk_results[@]}" --md
echo "results in $RESULTS_DIR"
