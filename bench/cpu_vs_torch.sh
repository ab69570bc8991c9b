#!/usr/bin/env bash
# cpu_vs_torch.sh: cilscale's cpu backend against PyTorch (Debian's python3-torch)
# on the same networks, in one run, alternating the two so that load on the
# machine hits both alike. Prints a markdown table with the ratio.
#   bash bench/cpu_vs_torch.sh [ROUNDS] [extra options for both, e.g. --batch 64]
# Defaults: batch 128, 3x32x32, 100 classes, small stem, psi at 1M, 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
cs=build/core/cilscale
common=(--budget 1M --policy psi --classes 100 --stem small --batch 128 --input 3x32x32 --warmup 2 --steps 8 "$@")
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| arch | cilscale train img/s | PyTorch train img/s | ratio | cilscale infer img/s | PyTorch infer img/s | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for arch in resnet18 mobilenetv2 shufflenetv2; do
  ct=(); ci=(); tt=(); ti=()
  for ((r = 0; r < rounds; r++)); do
    j=$("$cs" bench --arch "$arch" "${common[@]}" --json)
    ct+=("$(field train_img_per_s <<<"$j")"); ci+=("$(field infer_img_per_s <<<"$j")")
    j=$(/usr/bin/python3 bench/torch_reference.py --arch "$arch" "${common[@]}" --cilscale "$cs" --json)
    tt+=("$(field train_img_per_s <<<"$j")"); ti+=("$(field infer_img_per_s <<<"$j")")
  done
  a=$(median "${ct[@]}"); b=$(median "${tt[@]}"); c=$(median "${ci[@]}"); d=$(median "${ti[@]}")
  awk -v n="$arch" -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n", n, a, b, a / b, c, d, c / d }'
done
