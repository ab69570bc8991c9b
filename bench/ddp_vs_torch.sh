#!/usr/bin/env bash
# ddp_vs_torch.sh: data-parallel training steps, cilscale against PyTorch,
# on the same network, batch and cores: one process of 2 threads, and 2
# ranks of 1 thread (cilscale: `mpirun -np 2 cilscale bench`; PyTorch:
# DistributedDataParallel over gloo, bench/torch_ddp.py), PyTorch in both
# memory layouts, glibc's allocator tuned for it; every configuration once
# per round, rounds alternating; medians of the training images/s.
#
#   bench/ddp_vs_torch.sh [CILSCALE_EXE] [MPIRUN]   (REPS=3, ARCHS="resnet18 mobilenetv2 shufflenetv2")
#
# Network: psi at 1M parameters, 10 classes, small stem, 1x28x28 input
# (Fashion-MNIST's shape), batch 64, one fixed random batch (no data
# loading), SGD with momentum. Runs as root with --allow-run-as-root.
set -u
exe=${1:-build/core/cilscale}
mpirun=${2:-mpirun}
reps=${REPS:-3}
py=/usr/bin/python3
here=$(dirname "$0")
net=(--budget 1M --classes 10 --stem small --input 1x28x28 --batch 64 --steps 10 --warmup 3)
tmp=$(mktemp -d /tmp/cs-ddp-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tuned=(env MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=268435456)
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ips() { sed -n 's/.*"train_img_per_s": \([0-9.]*\).*/\1/p' | tail -1; }

echo "| network | cilscale 1 x 2 threads | cilscale 2 ranks x 1 | PyTorch 1 x 2 (best layout) | PyTorch DDP 2 x 1 (best layout) | cilscale / PyTorch, 2 ranks |"
echo "|---|---:|---:|---:|---:|---:|"
for arch in ${ARCHS:-resnet18 mobilenetv2 shufflenetv2}; do
  for f in c1 c2 t1n t1c t2n t2c; do : > "$tmp/$f"; done
  for _ in $(seq "$reps"); do
    OMP_NUM_THREADS=2 "$exe" bench --arch "$arch" "${net[@]}" --device threads=2 --json 2> /dev/null | ips >> "$tmp/c1"
    OMP_NUM_THREADS=1 "$mpirun" --allow-run-as-root -np 2 "$exe" bench --arch "$arch" "${net[@]}" --device threads=1 \
      --json 2> /dev/null | ips >> "$tmp/c2"
    for fmt in contiguous channels_last; do
      k=${fmt:0:1}; [ "$k" = c ] && k=n # n: contiguous (NCHW), c: channels_last
      "${tuned[@]}" "$py" "$here/torch_reference.py" --arch "$arch" "${net[@]}" --threads 2 --memory-format "$fmt" \
        --cilscale "$exe" --json 2> /dev/null | ips >> "$tmp/t1$k"
      "${tuned[@]}" "$py" "$here/torch_ddp.py" --ranks 2 --arch "$arch" "${net[@]}" --threads 1 --memory-format "$fmt" \
        --cilscale "$exe" 2> /dev/null | ips >> "$tmp/t2$k"
    done
  done
  c1=$(median < "$tmp/c1"); c2=$(median < "$tmp/c2")
  t1n=$(median < "$tmp/t1n"); t1c=$(median < "$tmp/t1c"); t2n=$(median < "$tmp/t2n"); t2c=$(median < "$tmp/t2c")
  best() { awk -v a="$1" -v b="$2" 'BEGIN {if (a >= b) printf "%.0f (NCHW)", a; else printf "%.0f (channels_last)", b}'; }
  t2=$(awk -v a="$t2n" -v b="$t2c" 'BEGIN {print (a >= b) ? a : b}')
  printf "| %s | %.0f | %.0f | %s | %s | %.2f |\n" "$arch" "$c1" "$c2" "$(best "$t1n" "$t1c")" "$(best "$t2n" "$t2c")" \
    "$(awk -v a="$c2" -v b="$t2" 'BEGIN {print a / b}')"
done
echo "(training images/s, the whole batch's; medians of $reps rounds)"
