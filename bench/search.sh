#!/usr/bin/env bash
# bench/search.sh — what a regex search over a large cache costs the writes running beside it.
# Our 3-node durable cluster (configs/), KEYS keys preloaded; then, for each setting of
# `search_page_keys` in PAGES, REPEATS rounds of: a PUT load alone, and the same PUT load while
# SEARCHERS clients run regex searches that match nothing (so each examines every key).
# Reported: PUT throughput and p99 with and without the searches, searches completed, and leader
# changes during the loads (raft_leader_changes_total on every node). Bounded; 127.0.0.1 only.
#
# Usage: bench/search.sh   (env: KEYS=1000000 PAGES="10000 100000000" DURATION=10 REPEATS=3
#                           CONNS=16 SEARCHERS=2)
# PAGES=100000000 is one page per search (the behaviour before paging).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${KEYS:-1000000}
PAGES=${PAGES:-10000 100000000}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
CONNS=${CONNS:-16}
SEARCHERS=${SEARCHERS:-2}
RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-search-$(date +%Y%m%d-%H%M%S)}
BASE=$(mktemp -d /tmp/simple-cache-search.XXXXXX)
mkdir -p "$RESULTS_DIR"
BENCH="$ROOT/target/release/simple-cache-bench"

# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap 'stop_ours; rm -rf "$BASE"' EXIT

leader_changes() {
  local total=0
  for port in 2113 2114 2115; do
    local n
    n=$(curl -s "127.0.0.1:$port/metrics" | awk '/^raft_leader_changes_total / {print $2}')
    total=$((total + ${n:-0}))
  done
  echo "$total"
}

# Searches that match nothing, one after another until the deadline; prints how many finished.
# The regex has no literal prefix, so every key is examined (an anchored prefix would be a range
# scan of no keys).
search_loop() {
  local url=$1 until=$2 n=0
  while (( $(date +%s) < until )); do
    if curl -sf -m 30 "$url/v1/search?pattern=no-such-key-anywhere%24&mode=regex&limit=10" \
      >/dev/null; then n=$((n + 1)); fi
  done
  echo "$n"
}

cargo build --release -p simple-cache-server -p simple-cache-bench --manifest-path "$ROOT/Cargo.toml"

for page in $PAGES; do
  rm -rf "$BASE"/node*
  SIMPLE_CACHE_SEARCH_PAGE_KEYS="$page" start_ours
  URL=$(leader_url)
  echo "== search_page_keys=$page: preloading $KEYS keys through $URL"
  "$BENCH" --url "$URL" --op fill --keys "$KEYS" --value-bytes 100 --connections 32 --duration 600 \
    >/dev/null
  for r in $(seq 1 "$REPEATS"); do
    for mode in alone with-search; do
      before=$(leader_changes)
      searches=0
      searchers=()
      if [[ $mode == with-search ]]; then
        until=$(( $(date +%s) + DURATION ))
        for s in $(seq 1 "$SEARCHERS"); do
          search_loop "$URL" "$until" >"$BASE/searches.$s" &
          searchers+=($!)
        done
      fi
      line=$("$BENCH" --url "$URL" --op put --keys "$KEYS" --connections "$CONNS" \
        --duration "$DURATION" --json --label "page=$page $mode")
      for p in "${searchers[@]:-}"; do [[ -n "$p" ]] && wait "$p" || true; done
      if [[ $mode == with-search ]]; then
        searches=$(awk '{s += $1} END {print s + 0}' "$BASE"/searches.*)
        rm -f "$BASE"/searches.*
      fi
      after=$(leader_changes)
      echo "$line" | python3 -c "
import json, sys
d = json.load(sys.stdin)
d.update(round=$r, searches=$searches, leader_changes=$after - $before, page=$page, mode='$mode')
print(json.dumps(d))" | tee -a "$RESULTS_DIR/search.jsonl"
    done
  done
  URL=""
  stop_ours
done

python3 - "$RESULTS_DIR/search.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| search_page_keys | load | PUT/s (median) | PUT p99 ms (median) | searches/run | leader changes |")
print("|---|---|---|---|---|---|")
for page in sorted({r["page"] for r in rows}):
    for mode in ["alone", "with-search"]:
        rs = [r for r in rows if r["page"] == page and r["mode"] == mode]
        if not rs:
            continue
        rps = statistics.median(r["rps"] for r in rs)
        p99 = statistics.median(r["p99_ms"] for r in rs)
        s = statistics.median(r["searches"] for r in rs)
        lc = sum(r["leader_changes"] for r in rs)
        print(f"| {page} | {mode} | {rps:.0f} | {p99:.1f} | {s:.0f} | {lc} |")
PY
echo "raw: $RESULTS_DIR/search.jsonl"
