#!/usr/bin/env bash
# Installs what ftd builds, runs and tests with: Debian 12 packages only.
# Idempotent: does nothing when everything is installed.
#
#   scripts/install-deps.sh               everything (what CI and the README use)
#   scripts/install-deps.sh --build-only  what the build needs, without the test tools
#                                         (the container images' build stage)
#   scripts/install-deps.sh --no-torch    leave out Debian's LibTorch (a CUDA LibTorch
#                                         2.x is used instead; see docs/deploy.md)
#   scripts/install-deps.sh --dry-run     print the packages and install nothing
set -euo pipefail

build_only=0
torch=1
dry_run=0
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    --no-torch) torch=0 ;;
    --dry-run) dry_run=1 ;;
    *) echo "install-deps: unknown option $arg (--build-only, --no-torch, --dry-run)" >&2; exit 2 ;;
  esac
done

packages=(
  # toolchain
  g++ cmake ninja-build pkg-config
  # libraries
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  librocksdb-dev zlib1g-dev prometheus-cpp-dev libabsl-dev libyaml-cpp-dev libgtest-dev libgmock-dev
  # OpenSSL for the metrics endpoint's HTTPS
  libssl-dev
  # LibTorch's CPU kernels without it fall back to reference BLAS, about 20x slower.
  libopenblas0-pthread
)
if [ "$torch" -eq 1 ]; then
  # c10d's Gloo process group (jobs on several devices): Debian's LibTorch
  # links libgloo; its headers are here.
  packages+=(libgloo-dev)
fi
if [ "$torch" -eq 1 ]; then
  packages+=(libtorch-dev)
fi
if [ "$build_only" -eq 0 ]; then
  packages+=(
    # tests: a real Prometheus and promtool for the metrics test, run by python3;
    # the benchmark's PyTorch reference and its report's plots
    prometheus python3 python3-torch python3-yaml python3-matplotlib
    # the TLS tests make their certificates with openssl
    openssl
    # the fuzz targets (scripts/fuzz.sh): clang and its libFuzzer and sanitizer runtimes
    clang libclang-rt-14-dev
  )
  # The deploy test renders manifests with `kubectl kustomize` and validates
  # them with npm packages: Debian's kubectl and Node.js unless the machine
  # has its own.
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

if [ "$dry_run" -eq 1 ]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

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
