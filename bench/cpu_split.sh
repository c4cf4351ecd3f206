#!/usr/bin/env bash
# bench/cpu_split.sh — where a write's CPU goes: starts our 3-node cluster from configs/, runs one
# wrk load against the leader, and prints the CPU time per request of every node's threads
# (node-loop, tokio workers, snapshot writer; user and system from /proc/PID/task/*/stat), their
# total, the whole machine's busy time per request (the load generator and interrupts included),
# and each node's WAL fsync count.
#
# Usage: BIN_DIR=target/release OP=put CONNS=64 DURATION=10s bench/cpu_split.sh
# Needs: wrk (apt-get install wrk), a release build (cargo build --release -p simple-cache-server).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BASE=$(mktemp -d /tmp/simple-cache-split.XXXXXX)
# shellcheck source=bench/cluster.sh
source "$ROOT/bench/cluster.sh"
trap 'stop_ours; rm -rf "$BASE"' EXIT
OP=${OP:-put} CONNS=${CONNS:-64} DURATION=${DURATION:-10s}
start_ours
URL=$(leader_url)
echo "leader $URL, $OP c=$CONNS for $DURATION"

# One line per node and thread name: "nodeN thread utime stime" in clock ticks, threads of the
# same name summed.
threads() {
  for i in 0 1 2; do
    for t in /proc/"${PIDS[$i]}"/task/*; do
      local stat comm
      stat=$(cat "$t/stat" 2>/dev/null) || continue
      comm=$(cat "$t/comm" 2>/dev/null) || continue
      # Fields after "pid (comm) ": state is 1, utime 12, stime 13.
      read -r -a f <<< "${stat##*) }"
      echo "node$((i + 1)) $comm ${f[11]} ${f[12]}"
    done
  done | awk '{k = $1 " " $2; u[k] += $3; s[k] += $4} END {for (k in u) print k, u[k], s[k]}' | sort
}
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $5}' /proc/stat; }

method=PUT body='{"value":"{{value}}"}'
if [[ $OP == get ]]; then method=GET body=''; fi
# A short warm-up so the keys exist and the connections are open.
KV_METHOD=PUT KV_PATH='/v1/{{key_url}}' KV_BODY='{"value":"{{value}}"}' \
  bash "$ROOT/bench/anchors/wrkrun.sh" put.lua "$URL" "$CONNS" 3s >/dev/null
threads >"$BASE/before"; read -r busy0 idle0 < <(machine)
KV_METHOD=$method KV_PATH='/v1/{{key_url}}' KV_BODY=$body \
  bash "$ROOT/bench/anchors/wrkrun.sh" "$OP.lua" "$URL" "$CONNS" "$DURATION" >"$BASE/wrk"
threads >"$BASE/after"; read -r busy1 idle1 < <(machine)
read -r requests rps p50 p99 < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["requests"], d["rps"], d["lat_ms"]["p50"], d["lat_ms"]["p99"])' "$BASE/wrk")
echo "requests $requests, $rps req/s, p50 $p50 ms, p99 $p99 ms"
hz=$(getconf CLK_TCK)
join -j1 <(awk '{print $1 "/" $2, $3, $4}' "$BASE/before") <(awk '{print $1 "/" $2, $3, $4}' "$BASE/after") |
  awk -v n="$requests" -v hz="$hz" '{
    u = ($4 - $2) * 1e6 / hz / n; s = ($5 - $3) * 1e6 / hz / n; tu += u; ts += s
    if (u + s >= 0.5) printf "%-28s user %6.1f  sys %6.1f  µs/request\n", $1, u, s
  } END { printf "%-28s user %6.1f  sys %6.1f  = %.1f µs/request\n", "all nodes", tu, ts, tu + ts }'
awk -v b="$((busy1 - busy0))" -v i="$((idle1 - idle0))" -v n="$requests" -v hz="$hz" 'BEGIN {
  printf "%-28s busy %.1f  idle %.1f  µs/request\n", "machine (wrk, irqs included)", b * 1e6 / hz / n, i * 1e6 / hz / n }'
for port in 2113 2114 2115; do
  echo "node metrics :$port $(curl -s "127.0.0.1:$port/metrics" |
    grep -E '^raft_wal_fsync_duration_seconds_(sum|count)' | tr '\n' ' ')"
done
