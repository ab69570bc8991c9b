#!/usr/bin/env bash
# mpi_sweep.sh: `mpirun -np 2 cilscale sweep` (issue 15 item 2) on loopback.
#   1. a 2-rank sweep (2 widths x 2 seeds) writes the same runs as a serial
#      sweep with the same thread count: results.csv and every checkpoint's
#      tensors byte for byte, and the report;
#   2. the Figure 1 preset (ResNet18 at 100k, the authors' depth grid) over 2
#      ranks equals the serial one the same way;
#   3. the same 2-rank command again skips every finished run;
#   4. a rank killed (SIGKILL) in the middle of a run: mpirun ends, nothing
#      goes on unwatched, and the same command again completes the sweep
#      with the serial sweep's runs.
# Runs as root with --allow-run-as-root (CI runs as root) and --oversubscribe.
# Usage: mpi_sweep.sh CILSCALE_EXE MPIRUN. Ends with "N passed, N failed".
set -u
exe=$1 mpirun=$2
. "$(dirname "$0")/mpi_lib.sh"
tmp=$(mktemp -d /tmp/cs-mpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Under the sanitizers (tools/test.sh), LeakSanitizer reports Open MPI's own
# allocations at exit (MPI_Init's, in MCA components already unloaded, so no
# suppression can name them): leak checking is off for the 2-rank sweeps and
# their runs; the serial sweeps below keep it.
mpi=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" "$mpirun" --allow-run-as-root --oversubscribe -np 2)
if ! out=$("${mpi[@]}" true 2>&1); then
  echo "FAIL: mpirun cannot start 2 ranks here: $out"
  echo "0 passed, 1 failed"; exit 1
fi
python3 - "$tmp/data" <<'PY'
import gzip, struct, sys, os
d = sys.argv[1]; os.makedirs(d)
for split, per in (("train", 6), ("t10k", 3)):
    n = 10 * per
    with gzip.open(f"{d}/{split}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes((i * 7 + j) % 256 for i in range(n) for j in range(784)))
    with gzip.open(f"{d}/{split}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
PY
common=(--set "data.path=$tmp/data" --set scenario.states=2 --set train.epochs=1 --set train.first_epochs=1
        --set train.batch=16 --set backend.device=threads=1)

same_runs() { # serial-dir parallel-dir: every run's results and tensors equal
  local n=0 bad=0
  for d in "$1"/*-s*/; do
    b=$(basename "$d"); n=$((n + 1))
    cmp -s <(grep -v '^#' "$d/results.csv" | cut -d, -f1-6,9) <(grep -v '^#' "$2/$b/results.csv" | cut -d, -f1-6,9) ||
      { echo "  $b: results.csv differs"; bad=1; }
    for f in "$d"/state-*.safetensors; do
      python3 - "$f" "$2/$b/$(basename "$f")" <<'PY' || { echo "  $b/$(basename "$f"): tensors differ"; bad=1; }
import struct, sys
def tensors(p):
    d = open(p, "rb").read(); n = struct.unpack("<Q", d[:8])[0]; return d[8 + n:]
sys.exit(0 if tensors(sys.argv[1]) == tensors(sys.argv[2]) else 1)
PY
    done
  done
  [ "$n" -gt 0 ] && [ "$bad" = 0 ]
}

grid=(--set model.width=0.1,0.2 --set model.depth=0.5 --seeds 1,2)
"$exe" sweep "${common[@]}" "${grid[@]}" --out "$tmp/serial" > "$tmp/serial.log" 2>&1
check $? "serial sweep of 4 runs"
"${mpi[@]}" "$exe" sweep "${common[@]}" "${grid[@]}" --out "$tmp/par" > "$tmp/par.log" 2>&1
check $? "2-rank sweep of 4 runs: $(tail -1 "$tmp/par.log")"
grep -q "over 2 MPI ranks" "$tmp/par.log"; check $? "the 2-rank sweep says it runs over 2 ranks"
grep -q "(rank 1)" "$tmp/par.log"; check $? "rank 1 ran some of the runs"
same_runs "$tmp/serial" "$tmp/par"; check $? "every run equals the serial sweep's (results.csv, checkpoint tensors)"
cmp -s "$tmp/serial/report/report.csv" "$tmp/par/report/report.csv"
check $? "the reports agree (report.csv byte for byte)"
"${mpi[@]}" "$exe" sweep "${common[@]}" "${grid[@]}" --out "$tmp/par" > "$tmp/again.log" 2>&1
check $? "the same 2-rank command again"
grep -q "4 done already, 0 to go" "$tmp/again.log"; check $? "... skips all 4 finished runs"

# a rank killed outright (SIGKILL) while it runs an experiment: the launcher
# ends the sweep, the finished runs stay whole, the killed rank's run (told
# by SIGTERM as its parent died) saves and stops, and the same command
# again finishes the sweep with the serial sweep's runs
slow=(--set train.epochs=2 --set train.first_epochs=2 --set data.train_per_class=60)
"$exe" sweep "${common[@]}" "${slow[@]}" "${grid[@]}" --out "$tmp/kser" > "$tmp/kser.log" 2>&1
check $? "serial sweep of 4 slower runs"
"${mpi[@]}" "$exe" sweep "${common[@]}" "${slow[@]}" "${grid[@]}" --out "$tmp/kpar" > "$tmp/kpar.log" 2>&1 &
launcher=$!
victim=""
for _ in $(seq 600); do # until rank 1 runs an experiment (at most 60 s)
  victim=$(rank_pid sweep "$tmp/kpar") && pgrep -P "$victim" > /dev/null && break
  victim=""
  sleep 0.1
done
[ -n "$victim" ] && kill -9 "$victim"
check $? "rank 1 killed while it runs an experiment (pid ${victim:-none})"
await_launcher $launcher
[ $launcher_rc != 0 ] && [ $launcher_hung = 0 ]
check $? "mpirun ends on its own (within 60 s), status $launcher_rc"
for _ in $(seq 100); do pgrep -f "run.*$tmp/kpar" > /dev/null || break; sleep 0.1; done
! pgrep -f "run.*$tmp/kpar" > /dev/null
check $? "no run of the sweep goes on unwatched"
"${mpi[@]}" "$exe" sweep "${common[@]}" "${slow[@]}" "${grid[@]}" --out "$tmp/kpar" > "$tmp/kagain.log" 2>&1
check $? "the same command again: $(grep -o '[0-9]* done already, [0-9]* to go' "$tmp/kagain.log")"
same_runs "$tmp/kser" "$tmp/kpar"; check $? "... and every run equals the serial sweep's"

fig=(--set model.budget=100k --figure1)
"$exe" sweep "${common[@]}" "${fig[@]}" --out "$tmp/fs" > "$tmp/fs.log" 2>&1
check $? "serial Figure 1 preset: $(grep -c ' done ' "$tmp/fs.log") runs"
"${mpi[@]}" "$exe" sweep "${common[@]}" "${fig[@]}" --out "$tmp/fp" > "$tmp/fp.log" 2>&1
check $? "2-rank Figure 1 preset"
same_runs "$tmp/fs" "$tmp/fp"; check $? "the 2-rank Figure 1 preset equals the serial one"
[ -f "$tmp/fp/report/figure1-resnet18.svg" ]; check $? "rank 0 wrote report/figure1-resnet18.svg"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
