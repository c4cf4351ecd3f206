#!/usr/bin/env bash
# bench/tls.sh — what TLS costs: the same 3-node durable cluster with plain TCP and with TLS
# everywhere (client listeners with client certificates, mutual TLS between members), PUT and
# linearizable GET through the leader with simple-cache-bench, rounds alternating plain / TLS so
# both see the same machine. Certificates are made with openssl in a temporary directory;
# everything listens on 127.0.0.1 and every run is bounded.
#
# Usage: bench/tls.sh     (env: CONNS=64 DURATION=10 ROUNDS=3 OPS="put get" RESULTS_DIR=...)
# Needs: target/release/simple-cache and simple-cache-bench (cargo build --release), openssl.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN_DIR:-$ROOT/target/release}
CONNS=${CONNS:-64} DURATION=${DURATION:-10} ROUNDS=${ROUNDS:-3} OPS=${OPS:-put get}
RESULTS_DIR=${RESULTS_DIR:-/tmp/simple-cache-tls-$(date +%Y%m%d-%H%M%S)}
BASE=$(mktemp -d /tmp/simple-cache-tls.XXXXXX)
mkdir -p "$RESULTS_DIR"
PIDS=()

stop_cluster() {
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do [[ -n "$p" ]] && wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$BASE"/n*
}
trap 'stop_cluster; rm -rf "$BASE"' EXIT

# One CA; one certificate for 127.0.0.1 used by every member (server and peer) and one for
# the load generator (client).
tls=$BASE/tls
mkdir -p "$tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$tls/ca.key" -out "$tls/ca.pem" -subj /CN=bench-ca 2>/dev/null
for who in node client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$tls/$who.key" -out "$tls/$who.csr" -subj "/CN=$who" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/ext"
  openssl x509 -req -in "$tls/$who.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -out "$tls/$who.pem" -days 2 -extfile "$tls/ext" 2>/dev/null
done

# start_cluster plain|tls
start_cluster() {
  local mode=$1 peers="" i scheme=http
  for i in 1 2 3; do
    peers+="  - { id: $i, addr: \"127.0.0.1:$((19090 + i))\", http_addr: \"127.0.0.1:$((18080 + i))\" }"$'\n'
  done
  for i in 1 2 3; do
    cat >"$BASE/n$i.yaml" <<EOF
mode: distributed
node_id: $i
http_addr: "127.0.0.1:$((18080 + i))"
raft_http_addr: "127.0.0.1:$((19090 + i))"
metrics_addr: "127.0.0.1:$((12110 + i))"
grpc_addr: ""
redis_addr: ""
data_dir: "$BASE/n$i"
log_level: warn
EOF
    printf 'peers:\n%s' "$peers" >>"$BASE/n$i.yaml"
    if [[ $mode == tls ]]; then
      cat >>"$BASE/n$i.yaml" <<EOF
tls_cert_file: "$tls/node.pem"
tls_key_file: "$tls/node.key"
tls_ca_file: "$tls/ca.pem"
client_cert_auth: true
peer_tls_cert_file: "$tls/node.pem"
peer_tls_key_file: "$tls/node.key"
peer_tls_ca_file: "$tls/ca.pem"
EOF
      scheme=https
    fi
    "$BIN/simple-cache" --config "$BASE/n$i.yaml" >"$BASE/n$i.log" 2>&1 &
    PIDS+=($!)
  done
  CURL=(curl -s --cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key")
  for _ in $(seq 1 150); do
    LEADER=$("${CURL[@]}" "$scheme://127.0.0.1:18081/cluster/peers" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(next(m["http_addr"] for m in d["members"] if m["leader"]))' 2>/dev/null || true)
    if [[ -n "$LEADER" ]] && "${CURL[@]}" -f "$scheme://$LEADER/readyz" >/dev/null; then
      LEADER_URL=$scheme://$LEADER
      return 0
    fi
    sleep 0.2
  done
  echo "the $mode cluster did not become ready" >&2
  exit 1
}

for round in $(seq 1 "$ROUNDS"); do
  for mode in plain tls; do
    start_cluster "$mode"
    for op in $OPS; do
      flags=()
      [[ $mode == tls ]] && flags=(--cacert "$tls/ca.pem" --cert "$tls/client.pem" --key "$tls/client.key")
      "$BIN/simple-cache-bench" --url "$LEADER_URL" --op "$op" --connections "$CONNS" \
        --duration "$DURATION" --json --label "$mode" "${flags[@]}" \
        | sed "s/^{/{\"round\":$round,/" \
        | tee -a "$RESULTS_DIR/tls.jsonl"
    done
    stop_cluster
  done
done

python3 - "$RESULTS_DIR/tls.jsonl" "$CONNS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n| op (c={sys.argv[2]}) | plain req/s | TLS req/s | TLS / plain | plain p50 ms | TLS p50 ms |")
print("|---|---|---|---|---|---|")
for op in dict.fromkeys(r["op"] for r in rows):
    med = lambda mode, k: statistics.median(r[k] for r in rows if r["op"] == op and r["label"] == mode)
    p, t = med("plain", "rps"), med("tls", "rps")
    print(f"| {op} | {p:,.0f} | {t:,.0f} | {t / p:.2f} | {med('plain', 'p50_ms'):.2f} | {med('tls', 'p50_ms'):.2f} |")
EOF
