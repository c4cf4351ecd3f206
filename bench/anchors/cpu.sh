# cpu.sh — sourced by the anchor scripts: CPU time the server processes use, for the
# "CPU µs per operation" figure (issue 17). cpu_ticks PID... prints the user + system clock
# ticks those processes have used so far (fields 14 and 15 of /proc/PID/stat, counted after
# the command name's closing parenthesis); a PID that is gone counts 0. cpu_us_per_op TICKS OPS
# prints the microseconds of CPU per operation.
cpu_ticks() {
  local total=0 p t
  for p in "$@"; do
    t=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
    total=$(( total + ${t:-0} ))
  done
  echo "$total"
}
cpu_us_per_op() {
  python3 -c 'import os, sys; t, n = int(sys.argv[1]), int(sys.argv[2]); print("%.1f" % (t / os.sysconf("SC_CLK_TCK") * 1e6 / max(n, 1)))' "$1" "$2"
}

# fsync_slow URL... prints how many WAL fsyncs so far took longer than 51.2 ms on the nodes whose
# /metrics are at URL... (the count of raft_wal_fsync_duration_seconds minus its le="0.0512"
# bucket, summed): a run whose count grew had a disk stall, and its p99 says more about the disk
# than about the server (issue 17's p99 target is for runs without one). A node that does not
# answer counts 0.
fsync_slow() {
  local total=0 u n
  for u in "$@"; do
    n=$(curl -s --max-time 2 "$u/metrics" 2>/dev/null | awk '
      /^raft_wal_fsync_duration_seconds_count / { c = $2 }
      /^raft_wal_fsync_duration_seconds_bucket\{le="0.0512"\} / { b = $2 }
      END { printf "%d", c - b }')
    total=$(( total + ${n:-0} ))
  done
  echo "$total"
}
