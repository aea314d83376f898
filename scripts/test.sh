#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every test, then
# the fuzz targets for a bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
(cd "${FTD_BUILD_DIR:-build}" && ctest -j "$(nproc)" --output-on-failure --timeout 300)
# The parsers' fuzz targets, 20 s each (scripts/fuzz.sh; longer runs: docs/reliability.md).
./scripts/fuzz.sh 20
