#!/usr/bin/env bash
# quickstart.sh: install what is missing, build cilscale (optimised), and run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh
[ -f build/build.ninja ] || meson setup build -Dbuildtype=release -Dtests=false >/dev/null
ninja -C build >/dev/null
cs=build/core/cilscale

echo "== Which network fits 1M parameters? Each policy's pick for ResNet18 (100 classes):"
for p in psi compound width depth; do
  $cs scale --arch resnet18 --budget 1M --policy "$p" --json || true
done
echo
echo "== The grid behind the paper's Figure 1, MobileNetV2 at 1M parameters:"
$cs grid --arch mobilenetv2 --budget 1M
