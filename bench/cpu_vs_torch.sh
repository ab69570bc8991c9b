#!/usr/bin/env bash
# cpu_vs_torch.sh: cilscale's cpu backend against PyTorch at its best
# (Debian's python3-torch; both memory layouts tried each round and the faster
# kept; glibc's allocator tuned as PyTorch's docs advise; the same threads), in
# one run that alternates the two so that load on the machine hits both alike.
# Prints a markdown table of medians over the rounds, with the ratio.
#   bash bench/cpu_vs_torch.sh [ROUNDS] [extra options for both, e.g. --batch 64]
# Environment: THREADS (default 2), CS_DEVICE (cilscale --device, default
# threads=$THREADS), ARCHS (default "resnet18 mobilenetv2 shufflenetv2").
# Defaults: batch 128, 3x32x32, 100 classes, small stem, psi at 1M.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
threads=${THREADS:-2}
device=${CS_DEVICE:-threads=$threads}
archs=${ARCHS:-resnet18 mobilenetv2 shufflenetv2}
cs=build/core/cilscale
[ -x "$cs" ] || { echo "cpu_vs_torch.sh: build first (ninja -C build)" >&2; exit 1; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "cpu_vs_torch.sh: needs python3-torch (apt-get install python3-torch)" >&2; exit 1; }
common=(--budget 1M --policy psi --classes 100 --stem small --batch 128 --input 3x32x32 --warmup 2 --steps 8 "$@")
field() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
torch_env=(env MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=268435456)
echo "cilscale: $("$cs" bench --arch resnet18 "${common[@]}" --steps 1 --warmup 0 --device "$device" | head -1)"
echo "PyTorch: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), $threads threads, best of contiguous / channels_last"
echo
echo "| arch | cilscale train img/s | PyTorch train img/s | ratio | cilscale infer img/s | PyTorch infer img/s | ratio | PyTorch's faster layout (train) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for arch in $archs; do
  ct=(); ci=(); tt=(); ti=(); best_fmt=()
  for ((r = 0; r < rounds; r++)); do
    j=$("$cs" bench --arch "$arch" "${common[@]}" --device "$device" --json)
    ct+=("$(field train_img_per_s <<<"$j")"); ci+=("$(field infer_img_per_s <<<"$j")")
    rt=(); ri=(); fmts=()
    for fmt in contiguous channels_last; do
      j=$("${torch_env[@]}" /usr/bin/python3 bench/torch_reference.py --arch "$arch" "${common[@]}" --threads "$threads" \
            --memory-format "$fmt" --cilscale "$cs" --json)
      rt+=("$(field train_img_per_s <<<"$j")"); ri+=("$(field infer_img_per_s <<<"$j")"); fmts+=("$fmt")
    done
    tt+=("$(max "${rt[@]}")"); ti+=("$(max "${ri[@]}")")
    best_fmt+=("$(awk -v a="${rt[0]}" -v b="${rt[1]}" 'BEGIN { print (a >= b ? "contiguous" : "channels_last") }')")
  done
  a=$(median "${ct[@]}"); b=$(median "${tt[@]}"); c=$(median "${ci[@]}"); d=$(median "${ti[@]}")
  f=$(printf '%s\n' "${best_fmt[@]}" | sort | uniq -c | sort -rn | head -1 | awk '{print $2}')
  awk -v n="$arch" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v f="$f" \
    'BEGIN { printf "| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %s |\n", n, a, b, a / b, c, d, c / d, f }'
done
