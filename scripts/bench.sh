#!/usr/bin/env bash
# Runs every benchmark workload (3 runs each; RUNS=1 for a quick look) against a release
# build and writes the figures into docs/PERFORMANCE.md, between its "figures" markers.
# Loopback only; each workload is bounded in time; the whole suite takes about 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"

# 10,000 clients are 10,000 server threads (20,000 if all fall behind): each needs ~4 memory
# mappings and a pid.
if [ "$(id -u)" = 0 ]; then
  [ "$(cat /proc/sys/vm/max_map_count)" -ge 262144 ] || sysctl -qw vm.max_map_count=262144
  [ "$(cat /proc/sys/kernel/pid_max)" -ge 65536 ] || sysctl -qw kernel.pid_max=65536
else
  echo "bench.sh: not root; the kernel limits stay as they are (see docs/PERFORMANCE.md)" >&2
fi
ulimit -n "$(ulimit -Hn)"

cargo build --release --bins --features bench --quiet
figures=$(mktemp)
trap 'rm -f "$figures"' EXIT
mkdir -p target
target/release/chat-bench suite --runs "$runs" --markdown "$figures" | tee target/bench-runs.jsonl

{
  echo "### chat-log against pandas"
  echo
  scripts/bench-chat-log.sh
  echo
} >> "$figures"

{
  echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench.sh\` (\`chat-bench suite --runs $runs\`), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r); the load generator runs on the same machine."
  echo "Each figure is the median of $runs runs, with the min and max."
  echo
  cat "$figures"
} > "$figures.section"

doc=docs/PERFORMANCE.md
awk -v section="$figures.section" '
  /<!-- figures:begin -->/ { print; while ((getline line < section) > 0) print line; skip = 1; next }
  /<!-- figures:end -->/ { skip = 0 }
  !skip { print }
' "$doc" > "$doc.new"
mv "$doc.new" "$doc"
rm -f "$figures.section"
echo "bench.sh: figures written to $doc"
