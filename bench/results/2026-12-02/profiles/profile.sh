#!/usr/bin/env bash
# usage: BIN_DIR=... OP=put CONNS=64 /tmp/profile.sh OUTPREFIX
set -euo pipefail
ROOT=/work/main
BASE=$(mktemp -d /tmp/prof.XXXXXX)
source $ROOT/bench/cluster.sh
trap 'stop_ours; rm -rf "$BASE"' EXIT
start_ours
URL=$(leader_url)
port=${URL##*:}
LPID=""
for i in 1 2 3; do if [[ "$port" == "808$i" ]]; then LPID=${PIDS[$((i-1))]}; fi; done
echo "leader $URL pid $LPID"
KV_METHOD=PUT KV_PATH='/v1/{{key_url}}' KV_BODY='{"value":"{{value}}"}' bash $ROOT/bench/anchors/wrkrun.sh put.lua "$URL" ${CONNS:-64} 5s >/dev/null
( KV_METHOD=${METHOD:-PUT} KV_PATH='/v1/{{key_url}}' KV_BODY=${BODY-'{"value":"{{value}}"}'} CPU_PIDS="${PIDS[*]}" bash $ROOT/bench/anchors/wrkrun.sh ${OP:-put}.lua "$URL" ${CONNS:-64} 20s > $1.wrk ) &
WRKPID=$!; sleep 4
perf record -F 499 -g -p $LPID -o $1.data -- sleep 10 2>/dev/null >/dev/null
wait $WRKPID
cat $1.wrk
curl -s ${URL}/metrics 2>/dev/null | grep -E "^raft_wal_fsync_duration_seconds_(sum|count)" || true
curl -s 127.0.0.1:2112/metrics 2>/dev/null | grep -E "^raft_wal_fsync_duration_seconds_(sum|count)" || true
