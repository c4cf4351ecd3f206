#!/usr/bin/env bash
# bench/resp.sh — redis-benchmark against Redis and simple-cache in one run (issue 16's table):
#
#   redis-always    redis-server, appendonly yes, appendfsync always (a durable single node)
#   redis-none      redis-server without persistence
#   ours-leader     our 3-node durable cluster (fsync on every node), through the leader's RESP
#   ours-follower   the same cluster, through a follower (writes forwarded, reads by ReadIndex)
#
# SET and GET (`redis-benchmark -t set,get`, random keys out of KEYSPACE) at c=1, at c=50, and at
# c=50 pipelined 16 deep; REPEATS rounds, the targets in a rotating order each round; the medians
# of requests per second and of p50 latency are printed as a markdown table, every run is kept in
# $RESULTS_DIR/resp.csv. 127.0.0.1 only; stops its processes and removes its temporary data
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
PIDS+=($!)
redis-server --port 16391 --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$WORK/redis-none" >/dev/null 2>&1 &
PIDS+=($!)

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
  (cd "$WORK/n$i" && CONFIG_PATH="$WORK/n$i/config.yaml" "$BIN_DIR/simple-cache" >"$WORK/n$i/log" 2>&1) &
  PIDS+=($!)
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

CSV="$RESULTS_DIR/resp.csv"
echo "round,target,case,test,rps,p50_ms" > "$CSV"
read -r -a T <<< "$TARGETS"
for round in $(seq 1 "$REPEATS"); do
  # Rotate the order so no target always runs first (the machine is shared and noisy).
  order=("${T[@]:$(( (round - 1) % ${#T[@]} ))}" "${T[@]:0:$(( (round - 1) % ${#T[@]} ))}")
  for target in "${order[@]}"; do
    port=$(port_of "$target")
    for case in c1 c50 c50p16; do
      case $case in
        c1) args=(-c 1 -n "$N1") ;;
        c50) args=(-c 50 -n "$N50") ;;
        c50p16) args=(-c 50 -n "$NP" -P 16) ;;
      esac
      redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -r "$KEYSPACE" -d "$VALUE_BYTES" \
        "${args[@]}" -q --csv 2>>"$RESULTS_DIR/redis-benchmark.err" \
        | python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head = rows[0]
for r in rows[1:]:
    d = dict(zip(head, r))
    print(",".join(sys.argv[1:] + [d["test"], "%.0f" % float(d["rps"]), d.get("p50_latency_ms", "")]))
' "$round" "$target" "$case" >> "$CSV"
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
