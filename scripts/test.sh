#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
cd "${FTD_BUILD_DIR:-build}"
ctest -j "$(nproc)" --output-on-failure --timeout 300
