#!/usr/bin/env bash
# deps.sh: install the Debian 12 packages cilscale needs, only those missing.
set -euo pipefail

packages=(
  gcc pkg-config meson ninja-build   # build
  libconfig-dev                      # plugins.conf and experiment configs
  check                              # the test suites
  libopenblas-dev                    # SGEMM for the cpu backend's linear layers (and convolutions without oneDNN)
  libdnnl-dev                        # oneDNN: the cpu backend's convolutions
  zlib1g-dev libpng-dev libjpeg62-turbo-dev  # data sets: gzipped IDX, PNG / JPEG image folders
  libvulkan-dev glslang-tools mesa-vulkan-drivers  # Vulkan backend; lavapipe where there is no GPU
  libopenmpi-dev openmpi-bin         # optional: sweeps over MPI ranks (mpirun -np N cilscale sweep)
  dataset-fashion-mnist              # the data set of the main job
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
