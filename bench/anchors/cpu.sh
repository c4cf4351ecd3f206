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
