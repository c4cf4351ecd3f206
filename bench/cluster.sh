# bench/cluster.sh — sourced by the benchmark scripts: start, find the leader of, and stop our
# 3-node cluster from configs/ (release build, data under $BASE/node1..3, logs beside them).
# The caller sets ROOT and BASE, and may set BIN_DIR (default $ROOT/target/release) and export
# SIMPLE_CACHE_* settings before start_ours.
PIDS=()

stop_ours() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  PIDS=()
}

# Starts the three nodes and waits (at most 60 s) until every one is ready.
start_ours() {
  for i in 1 2 3; do
    SIMPLE_CACHE_DATA_DIR="$BASE/node$i" SIMPLE_CACHE_LOG_LEVEL=warn \
      "${BIN_DIR:-$ROOT/target/release}/simple-cache" --config "$ROOT/configs/node$i.yaml" \
      >>"$BASE/node$i.log" 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 600); do
    if curl -sf 127.0.0.1:8081/readyz >/dev/null && curl -sf 127.0.0.1:8082/readyz >/dev/null \
      && curl -sf 127.0.0.1:8083/readyz >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "cluster did not become ready" >&2; exit 1
}

leader_url() {
  curl -s 127.0.0.1:8081/cluster/peers | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next("http://" + m["http_addr"] for m in d["members"] if m["leader"]))'
}
