#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan into
# build-fuzz/ and runs each over its seed corpus for a bounded time.
#
#   scripts/fuzz.sh                 every target, 20 s each (what the test command runs)
#   scripts/fuzz.sh 600             every target, 600 s each
#   scripts/fuzz.sh 0 -runs=1000000 every target for a million executions
#
# New inputs found go to build-fuzz/corpus/<target>/ (the repository's seeds
# stay as they are); a crash leaves its input in build-fuzz/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
build_dir="${FTD_FUZZ_BUILD_DIR:-build-fuzz}"
if [ ! -f "$build_dir/build.ninja" ]; then
  mkdir -p "$build_dir"
  CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DFTD_FUZZ=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build_dir/cmake.log" 2>&1 ||
    { cat "$build_dir/cmake.log"; exit 1; }
fi
cmake --build "$build_dir" -j "$(nproc)"
for target in text_dataset activation_codec job_file safetensors model_config shard_index \
    tokenizer http_request; do
  mkdir -p "$build_dir/corpus/$target"
  args=(-print_final_stats=1 "$@")
  [ "$seconds" != 0 ] && args=(-max_total_time="$seconds" "${args[@]}")
  echo "== $target"
  rc=0
  (cd "$build_dir" &&
    "./fuzz/${target}_fuzzer" "${args[@]}" "corpus/$target" "../fuzz/corpus/$target") \
    > "$build_dir/$target.log" 2>&1 || rc=$?
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY" "$build_dir/$target.log" || true
  if [ "$rc" != 0 ]; then
    tail -40 "$build_dir/$target.log"
    echo "fuzz: $target failed (exit $rc); its input is in $build_dir/ (crash-*)" >&2
    exit 1
  fi
done
