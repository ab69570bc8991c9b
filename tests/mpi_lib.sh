# mpi_lib.sh: what tests/mpi_sweep.sh and tests/mpi_train.sh share (sourced).
#   check STATUS TEXT       counts "ok: TEXT" or "FAIL: TEXT"
#   rank_pid WHAT DIR       the pid of rank 1's `cilscale WHAT` whose command line names DIR
#   await_launcher PID      waits (at most 60 s) for mpirun PID to end on its own: sets
#                           launcher_rc to its status, and launcher_hung=1 when it had to be killed
passed=0 failed=0
check() { if [ "$1" = 0 ]; then echo "ok: $2"; passed=$((passed + 1)); else echo "FAIL: $2"; failed=$((failed + 1)); fi; }

rank_pid() {
  local p
  for p in $(pgrep -f "cilscale $1"); do
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 &&
      grep -q "$2" "/proc/$p/cmdline" 2>/dev/null && { echo "$p"; return 0; }
  done
  return 1
}

await_launcher() {
  launcher_hung=0
  # polling, not a sleeper in the background (which would hold the test's output open)
  for _ in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$1" 2>/dev/null && { launcher_hung=1; kill -9 "$1"; }
  wait "$1"
  launcher_rc=$?
}
