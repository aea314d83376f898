#!/usr/bin/env bash
# The README's first command: installs, builds, starts the daemon with its
# defaults, submits the demo job (examples/demo-job.yaml) and watches it to
# its end with ftctl, then stops the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh

bin="${FTD_BUILD_DIR:-build}"
data_dir="ftd-data"
mkdir -p "$data_dir"
rm -f "$data_dir/ftd.address"
echo "demo: starting ftd (log: $data_dir/ftd.log)"
"$bin/server/ftd" --data_dir="$data_dir" --address_file="$data_dir/ftd.address" \
  >"$data_dir/ftd.log" 2>&1 &
ftd_pid=$!
trap 'kill -TERM "$ftd_pid" 2>/dev/null; wait "$ftd_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 300); do
  [ -s "$data_dir/ftd.address" ] && break
  if ! kill -0 "$ftd_pid" 2>/dev/null; then
    echo "demo: ftd did not start:" >&2
    cat "$data_dir/ftd.log" >&2
    exit 1
  fi
  sleep 0.1
done
export FTD_ADDRESS="$(cat "$data_dir/ftd.address")"
ftctl="$bin/client/ftctl"

"$ftctl" info
submitted="$("$ftctl" submit examples/demo-job.yaml)"
echo "$submitted"
job="$(echo "$submitted" | awk '{print $2}')"
"$ftctl" list
status=0
"$ftctl" watch "$job" || status=$?
"$ftctl" get "$job"
echo "demo: $job ended with exit code $status"
exit "$status"
