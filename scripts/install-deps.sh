#!/usr/bin/env bash
# Installs what ftd builds and runs with: Debian 12 packages only.
# Idempotent: does nothing when everything is installed.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # libraries
  libtorch-dev libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev zlib1g-dev prometheus-cpp-dev libabsl-dev libyaml-cpp-dev libgtest-dev libgmock-dev
  # LibTorch's CPU kernels without it fall back to reference BLAS, about 20x slower.
  libopenblas0-pthread
  # tests: a real Prometheus and promtool for the metrics test, run by python3
  prometheus python3
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
