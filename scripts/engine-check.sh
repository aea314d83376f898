#!/usr/bin/env bash
# Builds the training engine and its tests alone (no gRPC or daemon; RocksDB
# for the activation cache) against another LibTorch, such as a CUDA LibTorch 2.x, and runs them. The
# CUDA tests run where LibTorch sees a GPU and are skipped elsewhere.
#
#   TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') \
#     scripts/engine-check.sh
#
# DEPS_PREFIX names a prefix holding Protobuf, Abseil, GoogleTest and RocksDB
# (with gflags, snappy, lz4, zstd, bzip2, zlib) when they are not installed
# system-wide (Debian's packages unpacked with `dpkg -x PKG.deb DIR`, say:
# DEPS_PREFIX=DIR/usr).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FTD_BUILD_DIR:-build-engine}"
prefix="${TORCH_PREFIX:-}"
extra=()
if [ -n "${DEPS_PREFIX:-}" ]; then
  prefix="${DEPS_PREFIX}${prefix:+;$prefix}"
  export LD_LIBRARY_PATH="${DEPS_PREFIX}/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  extra+=("-DProtobuf_PROTOC_EXECUTABLE=${DEPS_PREFIX}/bin/protoc"
          "-DGTest_DIR=${DEPS_PREFIX}/lib/x86_64-linux-gnu/cmake/GTest"
          "-DRocksDB_DIR=${DEPS_PREFIX}/lib/x86_64-linux-gnu/cmake/rocksdb")
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFTD_ENGINE_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$prefix" "${extra[@]}"
cmake --build "$build_dir" -j "$(nproc)"
cd "$build_dir"
ctest -j "$(nproc)" --output-on-failure
