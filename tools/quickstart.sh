#!/usr/bin/env bash
# quickstart.sh: install what is missing, build cilscale (optimised), and run the
# main job: memoryless LUCIR on Fashion-MNIST in 5 states with ResNet18 scaled by
# psi to 1M parameters (configs/fashion-mnist.cfg; a few minutes on 2 cores).
# Extra arguments go to `cilscale run` (e.g. --set seed=2 --out runs/other).
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/deps.sh
[ -f build/build.ninja ] || meson setup build -Dbuildtype=release -Dtests=false >/dev/null
ninja -C build >/dev/null
exec build/core/cilscale run configs/fashion-mnist.cfg "$@"
