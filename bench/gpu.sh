#!/usr/bin/env bash
# gpu.sh: cilscale's vulkan backend against PyTorch with CUDA (eager, then
# CUDA graphs) on the same NVIDIA GPU, one after the other, alternating over
# rounds so that clock and thermal drift hit all three alike; then the vulkan
# backend's per-op profile of each network. Writes, under OUT:
#   gpu.md        the table for docs/benchmarks.md (GPU, driver, command, date)
#   gpu.jsonl     every raw measurement, one JSON object per line
#   profile.txt   `cilscale bench --backend vulkan --profile` for each network
#
#   bash bench/gpu.sh [OUT] [extra options for cilscale bench and torch_reference.py]
#
# Defaults: batch 128, 3x32x32, 100 classes, small stem, psi at 1M (issue 5's
# setting), 3 rounds (ROUNDS=n), 30 timed steps after 5 warm-up steps.
# PYTHON names the interpreter whose torch has CUDA (default: python3, else
# /usr/bin/python3). CILSCALE names the binary (default build/core/cilscale,
# built with `meson setup build -Dbuildtype=release && ninja -C build`).
# VULKAN_DEVICE picks the Vulkan device (index or name; default: the first
# discrete GPU). TORCH_OPTS adds options for torch_reference.py alone (for
# example --tf32: by default both sides compute in plain fp32). Without torch+CUDA the PyTorch columns say "n/a" and the
# script still measures the vulkan backend.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu}
shift || true
cs=${CILSCALE:-build/core/cilscale}
rounds=${ROUNDS:-3}
[ -x "$cs" ] || { echo "gpu.sh: $cs not found: build first (meson setup build -Dbuildtype=release && ninja -C build)" >&2; exit 1; }
if [ -z "${PYTHON:-}" ]; then
  PYTHON=/usr/bin/python3
  command -v python3 >/dev/null && python3 -c "import torch" 2>/dev/null && PYTHON=$(command -v python3)
fi
mkdir -p "$out"
common=(--budget 1M --policy psi --classes 100 --stem small --batch 128 --input 3x32x32 --warmup 5 --steps 30 "$@")
vk_dev=()
[ -n "${VULKAN_DEVICE:-}" ] && vk_dev=(--device "$VULKAN_DEVICE")
read -r -a torch_opts <<<"${TORCH_OPTS:-}"

# ---- what the figures were measured on ----
gpu="(nvidia-smi not found)"
command -v nvidia-smi >/dev/null && gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -n 1)
vk_line=$("$cs" plugins | awk '$1 == "backend" && $2 == "vulkan" { v = 1; next } v && /default device:/ { sub(/^ *default device: /, ""); print; exit }')
[ -n "$vk_line" ] || vk_line="(the vulkan backend cannot run here: see cilscale plugins)"
have_cuda=0
torch_ver="(no torch with CUDA: $PYTHON)"
if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  have_cuda=1
  torch_ver=$("$PYTHON" -c "import torch; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}')")
fi
echo "gpu.sh: GPU: $gpu" >&2
echo "gpu.sh: vulkan: $vk_line" >&2
echo "gpu.sh: $torch_ver" >&2

field() { "$PYTHON" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$out/gpu.jsonl.tmp"
rows=()
for arch in resnet18 mobilenetv2 shufflenetv2; do
  vt=(); vi=(); et=(); ei=(); gt=(); gi=()
  for ((r = 0; r < rounds; r++)); do
    echo "gpu.sh: $arch round $((r + 1))/$rounds" >&2
    j=$("$cs" bench --backend vulkan "${vk_dev[@]}" --arch "$arch" "${common[@]}" --json)
    echo "$j" >>"$out/gpu.jsonl.tmp"
    vt+=("$(field train_img_per_s <<<"$j")"); vi+=("$(field infer_img_per_s <<<"$j")")
    if [ $have_cuda = 1 ]; then
      j=$("$PYTHON" bench/torch_reference.py --device cuda "${torch_opts[@]}" --arch "$arch" "${common[@]}" --cilscale "$cs" --json)
      echo "$j" >>"$out/gpu.jsonl.tmp"
      et+=("$(field train_img_per_s <<<"$j")"); ei+=("$(field infer_img_per_s <<<"$j")")
      j=$("$PYTHON" bench/torch_reference.py --device cuda --cuda-graphs "${torch_opts[@]}" --arch "$arch" "${common[@]}" --cilscale "$cs" --json)
      echo "$j" >>"$out/gpu.jsonl.tmp"
      gt+=("$(field train_img_per_s <<<"$j")"); gi+=("$(field infer_img_per_s <<<"$j")")
    fi
  done
  a=$(median "${vt[@]}"); c=$(median "${vi[@]}")
  if [ $have_cuda = 1 ]; then
    rows+=("$(awk -v n="$arch" -v a="$a" -v c="$c" -v e="$(median "${et[@]}")" -v g="$(median "${gt[@]}")" \
      -v ei="$(median "${ei[@]}")" -v gi="$(median "${gi[@]}")" 'BEGIN {
        printf "| %s | %.0f | %.0f | %.2f | %.0f | %.2f | %.0f | %.0f | %.2f | %.0f | %.2f |", n, a, e, a / e, g, a / g, c, ei, c / ei, gi, c / gi }')")
  else
    rows+=("$(awk -v n="$arch" -v a="$a" -v c="$c" 'BEGIN {
        printf "| %s | %.0f | n/a | n/a | n/a | n/a | %.0f | n/a | n/a | n/a | n/a |", n, a, c }')")
  fi
done
mv "$out/gpu.jsonl.tmp" "$out/gpu.jsonl"

: >"$out/profile.txt.tmp"
for arch in resnet18 mobilenetv2 shufflenetv2; do
  echo "== $arch" >>"$out/profile.txt.tmp"
  "$cs" bench --backend vulkan "${vk_dev[@]}" --arch "$arch" "${common[@]}" --profile >>"$out/profile.txt.tmp"
done
mv "$out/profile.txt.tmp" "$out/profile.txt"

{
  echo "Measured $(date -u +%Y-%m-%d) by \`bash bench/gpu.sh $out $*\` (ROUNDS=$rounds; median of the rounds; images/s)."
  echo
  echo "- GPU: $gpu"
  echo "- cilscale vulkan device: $vk_line"
  echo "- PyTorch: $torch_ver"
  echo "- setting: ${common[*]}${TORCH_OPTS:+ (torch: $TORCH_OPTS)}"
  echo
  echo "| arch | vulkan train | torch eager train | ratio | torch graphs train | ratio | vulkan infer | torch eager infer | ratio | torch graphs infer | ratio |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${rows[@]}"
} >"$out/gpu.md.tmp"
mv "$out/gpu.md.tmp" "$out/gpu.md"
cat "$out/gpu.md"
