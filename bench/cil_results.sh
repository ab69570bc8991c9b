#!/usr/bin/env bash
# cil_results.sh: the runs behind docs/results.md: memoryless LUCIR and
# fine-tuning, each with psi and compound scaling at the same budget, three
# seeds each, on Fashion-MNIST in 5 states (configs/fashion-mnist.cfg), then
# one table and one plot of them all.
#   bash bench/cil_results.sh [OUT] [extra --set options...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/results}
shift || true
cs=build/core/cilscale
[ -x "$cs" ] || { echo "cil_results.sh: build first (meson setup build && ninja -C build)" >&2; exit 1; }
mkdir -p "$out"
for cil in lucir finetune; do
  for policy in psi compound; do
    for seed in 1 2 3; do
      dir="$out/$cil-$policy-seed$seed"
      if [ -f "$dir/results.csv" ] && [ "$(grep -c '^[0-9]' "$dir/results.csv")" -ge 5 ]; then
        echo "== $dir: done already"; continue
      fi
      echo "== $dir"
      "$cs" run configs/fashion-mnist.cfg --set cil.algorithm=$cil --set model.policy=$policy \
        --set seed=$seed --out "$dir" "$@" | tail -n 2
    done
  done
done
"$cs" report "$out" --out "$out" --title "Fashion-MNIST, 5 states, 1M parameters"
