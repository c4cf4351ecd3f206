#!/usr/bin/env bash
# bench/resp.sh — redis-benchmark against Redis and simple-cache in one run (issue 16's table):
#
#   redis-always    redis-server, appendonly yes, appendfsync always (a durable single node)
#   redis-none      redis-server without persistence
#   ours-leader     our 3-node durable cluster (fsync on every node), through the leader's RESP
#   ours-follower   the same cluster, through a follower (writes forwarded, reads by ReadIndex)
#
# SET, then GET (`redis-benchmark -t set` and `-t get`, random keys out of KEYSPACE) at c=1, at
# c=50, and at c=50 pipelined 16 deep; REPEATS rounds, the targets in a rotating order each round;
# the medians of requests per second, of p50 latency and of the servers' CPU time per operation
# (user + system from /proc/PID/stat, all three nodes for ours, the load generator excluded) are
# printed as markdown tables, every run is kept in $RESULTS_DIR/resp.csv. 127.0.0.1 only; stops its processes and removes its temporary data
# directories on exit.
#
# Usage: BIN_DIR=/path/to/release bench/resp.sh
#   env: REPEATS=3 KEYSPACE=100000 N1=2000 N50=20000 NP=100000 VALUE_BYTES=3
#        TARGETS="redis-always redis-none ours-leader ours-follower"
# Needs: redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools),
# python3. The simple-cache binary is not built here (cargo build --release -p
# simple-cache-server first, or point BIN_DIR at a prebuilt one).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
REPEATS=${REPEATS:-3}
KEYSPACE=${KEYSPACE:-100000}
N1=${N1:-2000}
N50=${N50:-20000}
NP=${NP:-100000}
VALUE_BYTES=${VALUE_BYTES:-3}
TARGETS=${TARGETS:-redis-always redis-none ours-leader ours-follower}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results/$(date +%F)/resp}
mkdir -p "$RESULTS_DIR"
for tool in redis-server redis-benchmark python3; do
  command -v "$tool" >/dev/null || { echo "bench/resp.sh needs $tool" >&2; exit 2; }
done
[ -x "$BIN_DIR/simple-cache" ] || { echo "no $BIN_DIR/simple-cache (build it first)" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
declare -A NODE_PID
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

# Redis, durable and not.
mkdir -p "$WORK/redis-always" "$WORK/redis-none"
redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
  --dir "$WORK/redis-always" >/dev/null 2>&1 &
PIDS+=($!); REDIS_ALWAYS_PID=$!
redis-server --port 16391 --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK/redis-none" >/dev/null 2>&1 &
PIDS+=($!); REDIS_NONE_PID=$!

# Our 3-node cluster, fsync on (the default).
PEERS=""
for i in 1 2 3; do PEERS+="  - { id: $i, addr: \"127.0.0.1:1929$i\", http_addr: \"127.0.0.1:1828$i\" }"$'\n'; done
for i in 1 2 3; do
  mkdir -p "$WORK/n$i"
  cat > "$WORK/n$i/config.yaml" <<EOF
mode: distributed
node_id: $i
http_addr: "127.0.0.1:1828$i"
raft_http_addr: "127.0.0.1:1929$i"
metrics_addr: "127.0.0.1:1228$i"
grpc_addr: ""
redis_addr: "127.0.0.1:1638$i"
data_dir: "$WORK/n$i/data"
peers:
$PEERS
EOF
  (cd "$WORK/n$i" && CONFIG_PATH="$WORK/n$i/config.yaml" exec "$BIN_DIR/simple-cache" >"$WORK/n$i/log" 2>&1) &
  PIDS+=($!); NODE_PID[$i]=$!
done
wait_port 16390; wait_port 16391
for i in 1 2 3; do wait_port "1638$i"; done
LEADER=""
for _ in $(seq 1 200); do
  LEADER=$(python3 - <<'EOF' 2>/dev/null || true
import json, urllib.request
for i in (1, 2, 3):
    try:
        d = json.load(urllib.request.urlopen(f"http://127.0.0.1:1828{i}/readyz", timeout=1))
        if d.get("role") == "leader" and d.get("ready"):
            print(i)
            break
    except Exception:
        pass
EOF
)
  [ -n "$LEADER" ] && break
  sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader elected" >&2; exit 1; }
FOLLOWER=$(( LEADER % 3 + 1 ))
port_of() {
  case $1 in
    redis-always) echo 16390 ;;
    redis-none) echo 16391 ;;
    ours-leader) echo "1638$LEADER" ;;
    ours-follower) echo "1638$FOLLOWER" ;;
  esac
}

# CPU time (user + system, in clock ticks) the server processes of a target have used: Redis's
# one process; all three of our nodes (a write costs CPU on every replica).
pids_of() {
  case $1 in
    redis-always) echo "$REDIS_ALWAYS_PID" ;;
    redis-none) echo "$REDIS_NONE_PID" ;;
    ours-*) echo "${NODE_PID[1]} ${NODE_PID[2]} ${NODE_PID[3]}" ;;
  esac
}
cpu_ticks() {
  local total=0 p
  for p in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name's closing parenthesis.
    total=$(( total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
  done
  echo "$total"
}
TICK=$(getconf CLK_TCK)

CSV="$RESULTS_DIR/resp.csv"
echo "round,target,case,test,rps,p50_ms,cpu_us_per_op" > "$CSV"
read -r -a T <<< "$TARGETS"
for round in $(seq 1 "$REPEATS"); do
  # Rotate the order so no target always runs first (the machine is shared and noisy).
  order=("${T[@]:$(( (round - 1) % ${#T[@]} ))}" "${T[@]:0:$(( (round - 1) % ${#T[@]} ))}")
  for target in "${order[@]}"; do
    port=$(port_of "$target")
    read -r -a pids <<< "$(pids_of "$target")"
    for case in c1 c50 c50p16; do
      case $case in
        c1) n=$N1; args=(-c 1) ;;
        c50) n=$N50; args=(-c 50) ;;
        c50p16) n=$NP; args=(-c 50 -P 16) ;;
      esac
      # SET, then GET of the same key space, each with its own CPU count.
      for test in set get; do
        before=$(cpu_ticks "${pids[@]}")
        line=$(redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" -r "$KEYSPACE" -d "$VALUE_BYTES" \
          -n "$n" "${args[@]}" -q --csv 2>>"$RESULTS_DIR/redis-benchmark.err" | tail -1)
        after=$(cpu_ticks "${pids[@]}")
        python3 -c '
import csv, sys
round_, target, case, line, ticks, tick, n = sys.argv[1:]
head = ["test", "rps", "avg", "min", "p50", "p95", "p99", "max"]
d = dict(zip(head, next(csv.reader([line]))))
cpu = int(ticks) / int(tick) * 1e6 / int(n)
print(",".join([round_, target, case, d["test"], "%.0f" % float(d["rps"]), d["p50"], "%.1f" % cpu]))
' "$round" "$target" "$case" "$line" "$(( after - before ))" "$TICK" "$n" >> "$CSV"
      done
      echo "round $round $target $case done" >&2
    done
  done
done

python3 - "$CSV" "$TARGETS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
targets = sys.argv[2].split()
cases = [("c1", "c=1"), ("c50", "c=50"), ("c50p16", "c=50 -P 16")]
def med(target, case, test, field):
    vals = [float(r[field]) for r in rows
            if r["target"] == target and r["case"] == case and r["test"] == test and r[field]]
    return statistics.median(vals) if vals else float("nan")
print("| target | " + " | ".join(f"{t} {c}" for t in ("SET", "GET") for _, c in cases) + " |")
print("|---|" + "---|" * 6)
for target in targets:
    cells = []
    for test in ("SET", "GET"):
        for case, _ in cases:
            cells.append(f"{med(target, case, test, 'rps'):,.0f} ({med(target, case, test, 'p50_ms'):.2f} ms)")
    print(f"| {target} | " + " | ".join(cells) + " |")
print()
print("CPU µs per operation, the target's server processes together (all three nodes for ours):")
print()
print("| target | " + " | ".join(f"{t} {c}" for t in ("SET", "GET") for _, c in cases) + " |")
print("|---|" + "---|" * 6)
for target in targets:
    cells = [f"{med(target, case, test, 'cpu_us_per_op'):.1f}" for test in ("SET", "GET") for case, _ in cases]
    print(f"| {target} | " + " | ".join(cells) + " |")
print()
print("Ratios of medians, ours to Redis:")
for ours in ("ours-leader", "ours-follower"):
    if ours not in targets:
        continue
    for test, base in (("SET", "redis-always"), ("GET", "redis-none")):
        if base not in targets:
            continue
        r = [f"{c}: {med(ours, case, test, 'rps') / med(base, case, test, 'rps'):.2f}" for case, c in cases]
        print(f"- {ours} {test} / {base} {test}: " + ", ".join(r))
EOF
