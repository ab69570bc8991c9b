#!/usr/bin/env bash
# mpi.sh: data-parallel training over MPI ranks on one machine: time per
# training step and bytes allreduced per step, for each network, 1 rank
# against 2 ranks on the same cores and the same global batches.
#
#   bench/mpi.sh [CILSCALE_EXE] [MPIRUN]      (REPS=5 rounds, ARCHS="resnet18 mobilenetv2 shufflenetv2" by default)
#
# Each round runs, one after the other (so drift hits all alike):
#   1 rank  x 2 threads           (the machine's 2 cores in one process)
#   2 ranks x 1 thread            (batch norm per rank)
#   2 ranks x 1 thread --sync-bn  (batch norm over the global batch)
# each `cilscale train --arch A --budget 1M --batch 64 --limit-train 1280`
# (20 steps of 64 images, Fashion-MNIST at 28x28, the main job's budget),
# and reads the epoch's wall time from epochs.csv (every step of the epoch,
# loading, exchange and update included) and, for 2 ranks, the data-parallel
# line (gradient and batch-norm bytes allreduced per step per rank, and the
# time spent waiting for the gradient sums). Prints a markdown table of the
# medians. Runs as root with --allow-run-as-root.
set -u
exe=${1:-build/core/cilscale}
mpirun=${2:-mpirun}
reps=${REPS:-5}
tmp=$(mktemp -d /tmp/cs-benchmpi-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mpi=("$mpirun" --allow-run-as-root --oversubscribe --bind-to none -np 2)
steps=20
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
epoch_s() { awk -F, 'NR == 2 {print $7}' "$1/epochs.csv"; }

echo "| network | parameters | 1 rank x 2 threads, ms/step | 2 ranks x 1 thread, ms/step (ratio) | 2 ranks --sync-bn, ms/step (ratio) | allreduced per step per rank: gradients | batch-norm statistics (--sync-bn) | waiting for the sums |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for arch in ${ARCHS:-resnet18 mobilenetv2 shufflenetv2}; do
  args=(train --arch "$arch" --budget 1M --batch 64 --limit-train $((64 * steps)) --limit-test 64 --epochs 1)
  : > "$tmp/one"; : > "$tmp/two"; : > "$tmp/sync"; : > "$tmp/wait"
  for r in $(seq "$reps"); do
    rm -rf "$tmp/o1" "$tmp/o2" "$tmp/o3"
    OMP_NUM_THREADS=2 "$exe" "${args[@]}" --device threads=2 --out "$tmp/o1" > "$tmp/l1" 2>&1 || { cat "$tmp/l1"; exit 1; }
    OMP_NUM_THREADS=1 "${mpi[@]}" "$exe" "${args[@]}" --device threads=1 --out "$tmp/o2" > "$tmp/l2" 2>&1 ||
      { cat "$tmp/l2"; exit 1; }
    OMP_NUM_THREADS=1 "${mpi[@]}" "$exe" "${args[@]}" --device threads=1 --sync-bn --out "$tmp/o3" > "$tmp/l3" 2>&1 ||
      { cat "$tmp/l3"; exit 1; }
    awk -v s="$(epoch_s "$tmp/o1")" -v n=$steps 'BEGIN {print 1000 * s / n}' >> "$tmp/one"
    awk -v s="$(epoch_s "$tmp/o2")" -v n=$steps 'BEGIN {print 1000 * s / n}' >> "$tmp/two"
    awk -v s="$(epoch_s "$tmp/o3")" -v n=$steps 'BEGIN {print 1000 * s / n}' >> "$tmp/sync"
    sed -n 's/.* (\([0-9.]*\) ms of it waiting.*/\1/p' "$tmp/l2" >> "$tmp/wait"
  done
  params=$(sed -n 's/.*, \([0-9,]*\) parameters, .*/\1/p' "$tmp/l1" | head -1)
  gb=$(sed -n 's/.*, \([0-9.]*\) MB of gradients.*/\1/p' "$tmp/l2")
  bn=$(sed -n 's/.*MB of gradients and \([0-9.]*\) MB of batch-norm.*/\1/p' "$tmp/l3")
  m1=$(median < "$tmp/one"); m2=$(median < "$tmp/two"); m3=$(median < "$tmp/sync"); w=$(median < "$tmp/wait")
  printf "| %s | %s | %.1f | %.1f (%.2f) | %.1f (%.2f) | %s MB | %s MB | %.1f ms |\n" "$arch" "$params" "$m1" "$m2" \
    "$(awk -v a="$m2" -v b="$m1" 'BEGIN {print a / b}')" "$m3" "$(awk -v a="$m3" -v b="$m1" 'BEGIN {print a / b}')" \
    "$gb" "$bn" "$w"
done
