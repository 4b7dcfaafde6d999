#!/usr/bin/env bash
# Runs the whole test suite N times in a row (default 20) while every core is kept busy by a
# CPU hog, to shake out ordering races and timing assumptions; prints one line per run and a
# total. The hogs are bounded in time and killed at the end.
#
#   scripts/soak.sh          20 runs
#   scripts/soak.sh 5        5 runs
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo test --features bench --no-run --quiet 2>/dev/null
hogs=()
for _ in $(seq "$(nproc)"); do
  timeout 3600 sh -c 'while :; do :; done' &
  hogs+=($!)
done
trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
failed=0
for i in $(seq "$runs"); do
  log=$(mktemp)
  start=$(date +%s)
  if cargo test --features bench --quiet >"$log" 2>&1; then
    echo "run $i: green ($(( $(date +%s) - start )) s)"
  else
    failed=$((failed + 1))
    echo "run $i: FAILED ($(( $(date +%s) - start )) s)"
    grep -E "^test .* FAILED|panicked at" "$log" | head -20
  fi
  rm -f "$log"
done
echo "soak: $((runs - failed)) of $runs runs green under $(nproc) CPU hogs"
[ "$failed" -eq 0 ]
