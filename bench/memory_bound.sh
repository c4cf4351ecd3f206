#!/usr/bin/env bash
# bench/memory_bound.sh — the memory bound (README "Memory") on our 3-node durable cluster from
# configs/ (fsync on), in two parts. Bounded; 127.0.0.1 only; stops its processes and removes
# its temporary data directories on exit.
#
# 1. rss: max_memory_bytes=MAX_MEMORY with allkeys-lru; `simple-cache-bench --op fill` passes of
#    FILL_VALUE_BYTES values through the leader until the values written reach FILL_FACTOR times
#    the limit (a pass rewrites key:000000000000.., long evicted by then, so every write is a new
#    key). Meanwhile a sampler writes every node's RSS (/proc/PID/status VmRSS), used_bytes, keys,
#    evictions, last_applied and WAL/snapshot bytes on disk to rss.csv once per second, and a
#    "hot" key is written once per second (recency means written). After the writes stop: poll
#    until every node reports the same last_applied (at most 60 s), compare keys and used_bytes,
#    read the hot key on every node, sample SETTLE more seconds. One cluster per entry of
#    RSS_VARIANTS: `default`, or SETTING=value pairs joined by `+` exported to the servers
#    (e.g. SIMPLE_CACHE_SNAPSHOT_THRESHOLD=1000, GLIBC_TUNABLES=glibc.malloc.arena_max=2).
# 2. eviction: PUT (`--op put`, new keys) at CONNS connections for DURATION s on a cluster
#    prefilled to PREFILL_FACTOR times EVICT_MEMORY (allkeys-lru: the cache is full, nearly every
#    write evicts a key) against the same on a cluster with max_memory_bytes=0 (no limit, same
#    prefill). REPEATS rounds, the order of the two alternating (AB BA AB ...); a fresh cluster
#    and fresh data directories for every measurement.
#
# Usage: BIN_DIR=/path/to/release bench/memory_bound.sh
#   env: PARTS="rss eviction" BIN_DIR=$ROOT/target/release RESULTS_DIR=...
#        rss:      MAX_MEMORY=268435456 FILL_FACTOR=10 FILL_VALUE_BYTES=1024 FILL_CONNS=64
#                  PASS_KEYS=1000000 FILL_DEADLINE=1800 SETTLE=10
#                  RSS_VARIANTS="default SIMPLE_CACHE_SNAPSHOT_THRESHOLD=1000"
#        eviction: EVICT_MEMORY=67108864 EVICT_VALUE_BYTES=100 PREFILL_FACTOR=1.25 CONNS=64
#                  DURATION=10 REPEATS=3
# Output: $RESULTS_DIR/{rss.csv,rss_summary.jsonl,eviction.jsonl} and markdown tables on stdout.
# The binaries are not built here (cargo build --release -p simple-cache-server -p
# simple-cache-bench first, or point BIN_DIR at prebuilt ones).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-$ROOT/target/release}
PARTS=${PARTS:-rss eviction}
MAX_MEMORY=${MAX_MEMORY:-268435456}
FILL_FACTOR=${FILL_FACTOR:-10}
FILL_VALUE_BYTES=${FILL_VALUE_BYTES:-1024}
FILL_CONNS=${FILL_CONNS:-64}
PASS_KEYS=${PASS_KEYS:-1000000}
FILL_DEADLINE=${FILL_DEADLINE:-1800}
SETTLE=${SETTLE:-10}
RSS_VARIANTS=${RSS_VARIANTS:-default SIMPLE_CACHE_SNAPSHOT_THRESHOLD=1000}
EVICT_MEMORY=${EVICT_MEMORY:-67108864}
EVICT_VALUE_BYTES=${EVICT_VALUE_BYTES:-100}
PREFILL_FACTOR=${PREFILL_FACTOR:-1.25}
CONNS=${CONNS:-64}
DURATION=${DURATION:-10}
REPEATS=${REPEATS:-3}
RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-memory-bound-$(date +%Y%m%d-%H%M%S)}
SERVER="$BIN_DIR/simple-cache"
BENCH="$BIN_DIR/simple-cache-bench"
BASE=$(mktemp -d /tmp/simple-cache-memory-bound.XXXXXX)
mkdir -p "$RESULTS_DIR"
NODE_PIDS=()
BG_PIDS=()

stop_nodes() {
  for p in "${NODE_PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
}
stop_bg() {
  touch "$BASE/stop"
  for p in "${BG_PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${BG_PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  BG_PIDS=()
  rm -f "$BASE/stop"
}
trap 'stop_bg; stop_nodes; rm -rf "$BASE"' EXIT

for port in 8081 8082 8083 9091 9092 9093 2113 2114 2115 5051 5052 5053; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use: another cluster is running" >&2; exit 1
  fi
done

# start_nodes MAX_MEMORY [SETTING=value ...]: the three nodes of configs/ with fresh data
# directories, allkeys-lru, the given limit and extra environment; waits (at most 60 s) until
# every node is ready and has applied the limit.
start_nodes() {
  local mem=$1 i; shift
  rm -rf "$BASE"/node*
  for i in 1 2 3; do
    env SIMPLE_CACHE_DATA_DIR="$BASE/node$i" SIMPLE_CACHE_LOG_LEVEL=warn \
      SIMPLE_CACHE_MAX_MEMORY_BYTES="$mem" SIMPLE_CACHE_EVICTION_POLICY=allkeys-lru "$@" \
      "$SERVER" --config "$ROOT/configs/node$i.yaml" >>"$BASE/node$i.log" 2>&1 &
    NODE_PIDS+=($!)
  done
  for _ in $(seq 1 600); do
    local ok=0
    for port in 8081 8082 8083; do
      curl -sf -m 1 "127.0.0.1:$port/readyz" 2>/dev/null | python3 -c "
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d['ready'] and d['memory']['max_memory_bytes'] == $mem else 1)" 2>/dev/null \
        && ok=$((ok + 1))
    done
    [[ $ok == 3 ]] && return 0
    sleep 0.1
  done
  echo "cluster did not become ready with max_memory_bytes=$mem" >&2; exit 1
}

leader_url() {
  curl -s 127.0.0.1:8081/cluster/peers | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next("http://" + m["http_addr"] for m in d["members"] if m["leader"]))'
}

metric() { # metric PORT NAME_REGEX: the value of the first matching sample, 0 if none
  curl -s -m 2 "127.0.0.1:$1/metrics" | awk -v re="^$2 " '$0 ~ re {print $2; f=1; exit} END {if (!f) print 0}'
}
leader_changes() {
  local total=0 port
  for port in 2113 2114 2115; do total=$((total + $(metric "$port" raft_leader_changes_total))); done
  echo "$total"
}

# Once per second until $BASE/stop exists: one CSV row per node.
sampler() {
  exec python3 - "$RESULTS_DIR/rss.csv" "$1" "$BASE" "${NODE_PIDS[@]}" <<'PY'
import json, os, sys, time, urllib.request
path, variant, base, pids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
new = not os.path.exists(path)
out = open(path, "a", buffering=1)
if new:
    out.write("t_s,variant,node,rss_bytes,used_bytes,keys,evicted,last_applied,"
              "rss_anon_bytes,wal_bytes,snap_bytes\n")
def status(pid, field):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return ""
def du(p):
    total = 0
    for d, _, files in os.walk(p):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=2).read().decode()
    except Exception:
        return None
t0 = time.time()
while os.path.isdir(base) and not os.path.exists(os.path.join(base, "stop")):
    tick = time.time()
    for i, pid in enumerate(pids, start=1):
        r = get(f"http://127.0.0.1:{8080 + i}/readyz")
        m = get(f"http://127.0.0.1:{2112 + i}/metrics")
        used = keys = applied = evicted = ""
        if r:
            d = json.loads(r)
            used, keys, applied = d["memory"]["used_bytes"], d["keys"], d["last_applied"]
        if m:
            evicted = 0
            for line in m.splitlines():
                if line.startswith("simple_cache_evicted_keys_total{"):
                    evicted += int(float(line.split()[-1]))
        out.write(f"{tick - t0:.1f},{variant},{i},{status(pid, 'VmRSS')},{used},{keys},{evicted},"
                  f"{applied},{status(pid, 'RssAnon')},{du(f'{base}/node{i}/wal')},"
                  f"{du(f'{base}/node{i}/snap')}\n")
    time.sleep(max(0.0, 1.0 - (time.time() - tick)))
PY
}

# Writes hot-key once per second until $BASE/hot.stop exists; records the last value written.
hot_writer() {
  local url=$1 n=0 ok=0 fail=0
  while [[ ! -e $BASE/hot.stop && ! -e $BASE/stop ]]; do
    n=$((n + 1))
    if curl -sf -m 5 -X PUT "$url/v1/hot-key" -H 'content-type: application/json' \
      -d "{\"value\":\"hot-$n\"}" >/dev/null; then
      ok=$((ok + 1)); echo "hot-$n" >"$BASE/hot.last"
    else
      fail=$((fail + 1))
    fi
    echo "$ok $fail" >"$BASE/hot.counts"
    sleep 1
  done
}

# ---------------------------------------------------------------- part 1: RSS bound
rss_variant() {
  local variant=$1 envs=() url
  [[ $variant != default ]] && IFS='+' read -r -a envs <<<"$variant"
  start_nodes "$MAX_MEMORY" "${envs[@]}"
  url=$(leader_url)
  echo "== rss [$variant]: limit $MAX_MEMORY, leader $url"
  rm -f "$BASE/hot.last" "$BASE/hot.counts" "$BASE/hot.stop" "$BASE/stop"
  sampler "$variant" & BG_PIDS+=($!)
  hot_writer "$url" & BG_PIDS+=($!)
  local target=$(( FILL_FACTOR * MAX_MEMORY )) written=0 requests=0 errors=0 passes=0
  local started=$SECONDS lc0 line keys left
  lc0=$(leader_changes)
  while (( written < target && SECONDS - started < FILL_DEADLINE && passes < 20 )); do
    keys=$(( (target - written) / (FILL_VALUE_BYTES + 2) + 1 ))
    (( keys > PASS_KEYS )) && keys=$PASS_KEYS
    left=$(( FILL_DEADLINE - (SECONDS - started) )); (( left > 600 )) && left=600
    line=$("$BENCH" --url "$url" --op fill --keys "$keys" --value-bytes "$FILL_VALUE_BYTES" \
      --connections "$FILL_CONNS" --duration "$left" --json --label "rss $variant pass") || true
    passes=$((passes + 1))
    echo "   pass $passes: $line"
    [[ -z $line ]] && break
    read -r n e < <(echo "$line" | python3 -c '
import json, sys; d = json.load(sys.stdin); print(int(d["requests"]), int(d["errors"]))')
    requests=$((requests + n)); errors=$((errors + e))
    written=$(( requests * (FILL_VALUE_BYTES + 2) ))
  done
  local fill_s=$(( SECONDS - started ))
  # Stop the hot writer (the sampler goes on), then wait until the replicas agree on the index.
  touch "$BASE/hot.stop"
  wait "${BG_PIDS[1]}" 2>/dev/null || true
  local samples
  for _ in $(seq 1 120); do
    samples=$(for p in 8081 8082 8083; do curl -s -m 2 "127.0.0.1:$p/readyz"; echo; done)
    if echo "$samples" | python3 -c '
import json, sys
d = [json.loads(l) for l in sys.stdin if l.strip()]
sys.exit(0 if len(d) == 3 and len({x["last_applied"] for x in d}) == 1 else 1)'; then break; fi
    sleep 0.5
  done
  local hot_reads cold_read
  hot_reads=$(for p in 8081 8082 8083; do curl -s -m 2 "127.0.0.1:$p/v1/hot-key?consistency=stale"; echo; done)
  cold_read=$(curl -s -m 5 "$url/v1/key:000000000000" | python3 -c '
import json, sys
try: print(json.dumps(json.load(sys.stdin).get("found")))
except Exception: print("null")')
  sleep "$SETTLE"
  touch "$BASE/stop"
  wait "${BG_PIDS[0]}" 2>/dev/null || true
  BG_PIDS=(); rm -f "$BASE/stop" "$BASE/hot.stop"
  local hwm="" i
  for i in 0 1 2; do
    hwm+="$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/${NODE_PIDS[$i]}/status") "
  done
  local lc1; lc1=$(leader_changes)
  python3 - "$RESULTS_DIR/rss.csv" <<PY | tee -a "$RESULTS_DIR/rss_summary.jsonl"
import csv, json, sys
variant = "$variant"
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["variant"] == variant]
readyz = [json.loads(l) for l in """$samples""".splitlines() if l.strip()]
hot = [json.loads(l) for l in """$hot_reads""".splitlines() if l.strip()]
last_hot = open("$BASE/hot.last").read().strip() if __import__("os").path.exists("$BASE/hot.last") else None
ok, fail = open("$BASE/hot.counts").read().split()
hwm = [int(float(x)) for x in "$hwm".split()]
nodes = []
for i in (1, 2, 3):
    rs = [r for r in rows if r["node"] == str(i) and r["rss_bytes"]]
    z = next(x for x in readyz if x["node_id"] == i)
    nodes.append({
        "node": i, "role": z["role"], "max_rss_sampled": max(int(r["rss_bytes"]) for r in rs),
        "peak_rss_vmhwm": hwm[i - 1], "rss_end": int(rs[-1]["rss_bytes"]),
        "rss_anon_end": int(rs[-1]["rss_anon_bytes"] or 0),
        "used_bytes_end": z["memory"]["used_bytes"], "keys_end": z["keys"],
        "last_applied_end": z["last_applied"],
        "evicted": int(rs[-1]["evicted"] or 0),
        "max_wal_bytes": max(int(r["wal_bytes"]) for r in rs),
        "max_snap_bytes": max(int(r["snap_bytes"]) for r in rs),
        "hot_key": hot[i - 1] if i - 1 < len(hot) else None,
    })
same = (len({n["last_applied_end"] for n in nodes}) == 1
        and len({(n["keys_end"], n["used_bytes_end"]) for n in nodes}) == 1)
limit = $MAX_MEMORY
print(json.dumps({
    "variant": variant, "max_memory_bytes": limit, "bound_bytes": int(1.5 * limit) + 64 * 2**20,
    "value_bytes": $FILL_VALUE_BYTES, "fill_requests": $requests, "fill_errors": $errors,
    "fill_passes": $passes, "fill_seconds": $fill_s,
    "values_written_bytes": $written, "leader_changes": $lc1 - $lc0,
    "hot_writes_ok": int(ok), "hot_writes_failed": int(fail), "hot_last_written": last_hot,
    "hot_key_survived": all(n["hot_key"] and n["hot_key"].get("found") for n in nodes),
    "first_key_found": json.loads("$cold_read"),
    "replicas_equal": same, "nodes": nodes,
}))
PY
  stop_nodes
}

# ---------------------------------------------------------------- part 2: eviction throughput
evict_round() {
  local round=$1 config=$2 mem url prefill line e0 e1 lc0 lc1 readyz
  if [[ $config == evict ]]; then mem=$EVICT_MEMORY; else mem=0; fi
  start_nodes "$mem"
  url=$(leader_url)
  prefill=$(python3 -c "print(int($PREFILL_FACTOR * $EVICT_MEMORY / (16 + $EVICT_VALUE_BYTES + 2 + 80)) + 1)")
  "$BENCH" --url "$url" --op fill --keys "$prefill" --value-bytes "$EVICT_VALUE_BYTES" \
    --connections 32 --duration 600 --json --label "prefill" >"$BASE/prefill.json"
  sleep 2
  local lport=$(( ${url##*:} - 8081 + 2113 ))
  e0=$(curl -s "127.0.0.1:$lport/metrics" | awk '/^simple_cache_evicted_keys_total\{/ {s += $2} END {print s + 0}')
  lc0=$(leader_changes)
  line=$("$BENCH" --url "$url" --op put --value-bytes "$EVICT_VALUE_BYTES" --connections "$CONNS" \
    --duration "$DURATION" --json --label "$config")
  e1=$(curl -s "127.0.0.1:$lport/metrics" | awk '/^simple_cache_evicted_keys_total\{/ {s += $2} END {print s + 0}')
  lc1=$(leader_changes)
  readyz=$(curl -s "$url/readyz")
  python3 - <<PY | tee -a "$RESULTS_DIR/eviction.jsonl"
import json
d = json.loads('''$line''')
z = json.loads('''$readyz''')
p = json.loads(open("$BASE/prefill.json").read())
d.update(round=$round, config="$config", max_memory_bytes=$mem, prefill_keys=$prefill,
         prefill_rps=round(p["rps"]), evicted_during=int($e1 - $e0), leader_changes=$lc1 - $lc0,
         keys_after=z["keys"], used_bytes_after=z["memory"]["used_bytes"])
print(json.dumps(d))
PY
  stop_nodes
}

for part in $PARTS; do
  case $part in
    rss) for v in $RSS_VARIANTS; do rss_variant "$v"; done ;;
    eviction)
      for r in $(seq 1 "$REPEATS"); do
        if (( r % 2 )); then order="evict nolimit"; else order="nolimit evict"; fi
        for c in $order; do echo "== eviction round $r: $c"; evict_round "$r" "$c"; done
      done ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done

# ---------------------------------------------------------------- tables
python3 - "$RESULTS_DIR" "$PARTS" <<'PY'
import json, os, statistics, sys
d, parts = sys.argv[1], sys.argv[2].split()
MiB = 2**20
if "rss" in parts and os.path.exists(f"{d}/rss_summary.jsonl"):
    print("\n| variant | node | role | max RSS (sampled) | peak RSS (VmHWM) | RSS at end | used_bytes at end | keys | evicted | max WAL on disk |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for l in open(f"{d}/rss_summary.jsonl"):
        s = json.loads(l)
        for n in s["nodes"]:
            print(f"| {s['variant']} | {n['node']} | {n['role']} | {n['max_rss_sampled']/MiB:.0f} MiB"
                  f" | {n['peak_rss_vmhwm']/MiB:.0f} MiB | {n['rss_end']/MiB:.0f} MiB"
                  f" | {n['used_bytes_end']/MiB:.1f} MiB ({n['used_bytes_end']/s['max_memory_bytes']:.3f} of limit)"
                  f" | {n['keys_end']:,} | {n['evicted']:,} | {n['max_wal_bytes']/MiB:.0f} MiB |")
    print()
    for l in open(f"{d}/rss_summary.jsonl"):
        s = json.loads(l)
        peak = max(n["peak_rss_vmhwm"] for n in s["nodes"])
        print(f"- {s['variant']}: {s['values_written_bytes']/2**30:.2f} GiB of values written in "
              f"{s['fill_seconds']} s ({s['fill_requests']:,} writes, {s['fill_errors']} errors, "
              f"{s['leader_changes']} leader changes); bound {s['bound_bytes']/MiB:.0f} MiB: "
              f"{'held' if peak <= s['bound_bytes'] else 'NOT held'} (highest peak {peak/MiB:.0f} MiB); "
              f"hot key survived: {'yes' if s['hot_key_survived'] else 'NO'} "
              f"({s['hot_writes_ok']} writes ok, {s['hot_writes_failed']} failed); "
              f"keys equal on every replica: {'yes' if s['replicas_equal'] else 'NO'}")
if "eviction" in parts and os.path.exists(f"{d}/eviction.jsonl"):
    rows = [json.loads(l) for l in open(f"{d}/eviction.jsonl")]
    print("\n| config | PUT/s (median) | range | p99 ms (median) | p50 ms | evicted per write | errors | leader changes |")
    print("|---|---|---|---|---|---|---|---|")
    med = {}
    for c in ["evict", "nolimit"]:
        rs = [r for r in rows if r["config"] == c]
        if not rs:
            continue
        med[c] = statistics.median(r["rps"] for r in rs)
        ev = sum(r["evicted_during"] for r in rs) / max(1, sum(r["requests"] for r in rs))
        print(f"| {c} | {med[c]:,.0f} | {min(r['rps'] for r in rs):,.0f}-{max(r['rps'] for r in rs):,.0f}"
              f" | {statistics.median(r['p99_ms'] for r in rs):.1f} | {statistics.median(r['p50_ms'] for r in rs):.2f}"
              f" | {ev:.2f} | {sum(r['errors'] for r in rs)} | {sum(r['leader_changes'] for r in rs)} |")
    if len(med) == 2:
        print(f"\nratio evict / nolimit (medians): {med['evict'] / med['nolimit']:.2f}")
        by_round = {}
        for r in rows:
            by_round.setdefault(r["round"], {})[r["config"]] = r["rps"]
        print("per round:", ", ".join(f"{k}: {v['evict'] / v['nolimit']:.2f}"
                                      for k, v in sorted(by_round.items()) if len(v) == 2))
PY
echo "raw: $RESULTS_DIR"
