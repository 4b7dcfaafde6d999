#!/usr/bin/env bash
# The fan-out over IRC against the same fan-out in JSON (docs/PERFORMANCE.md, "IRC"). Starts
# one chat-server with --irc (loopback, --msg-rate 0, its own temp --data-dir) and measures,
# against that same server, RUNS times (3 by default) alternately:
#   json: chat-bench fanout            (200 receivers, 10 senders, 5000 messages/s, 5 s)
#   irc:  chat-bench fanout --proto irc (the same, every client on the IRC port)
# then --find-max of each, alternately, FIND_MAX_RUNS times (RUNS by default; 0 skips it).
# FANOUT_ARGS changes the workload for both. The server's threads are sampled every 0.2 s
# while a run lasts (the peak is reported). Prints medians (min-max) and the ratios IRC/JSON
# as Markdown, also written to target/bench-irc.md; the JSON of every run goes to
# target/bench-irc.jsonl. Every step is bounded by `timeout`; the server is stopped on exit.
# About 2 minutes without the find-max, 6 to 8 with it.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
find_max_runs="${FIND_MAX_RUNS:-$runs}"
read -r -a fanout_args <<< "${FANOUT_ARGS:-}"
command -v jq > /dev/null || { echo "bench-irc.sh: jq is needed" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

cargo build --release --features bench --bin chat-server --bin chat-bench --quiet
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/data" target
RUST_LOG=warn target/release/chat-server --bind 127.0.0.1:0 --irc 127.0.0.1:0 --msg-rate 0 \
  --data-dir "$work/data" > "$work/server.out" 2> "$work/server.err" &
server_pid=$!
json_addr=
irc_addr=
for _ in $(seq 100); do
  json_addr=$(sed -n 's/^listening on //p' "$work/server.out")
  irc_addr=$(sed -n 's/^irc on //p' "$work/server.out")
  [ -n "$json_addr" ] && [ -n "$irc_addr" ] && break
  sleep 0.1
done
if [ -z "$json_addr" ] || [ -z "$irc_addr" ]; then
  echo "bench-irc.sh: the server did not print both of its ports" >&2
  cat "$work/server.out" "$work/server.err" >&2
  exit 1
fi
echo "bench-irc.sh: server $server_pid, JSON on $json_addr, IRC on $irc_addr" >&2

# bench PROTO OUT ARGS...: chat-bench fanout in PROTO against the server, its output to OUT;
# prints the server's peak thread count while it ran.
bench() {
  local proto=$1 out=$2 addr=$json_addr peak=0 t bench_pid
  shift 2
  [ "$proto" = irc ] && addr=$irc_addr
  timeout 600 target/release/chat-bench --addr "$addr" --pid "$server_pid" fanout \
    --proto "$proto" "${fanout_args[@]}" "$@" > "$out" 2> "$out.err" &
  bench_pid=$!
  while kill -0 "$bench_pid" 2> /dev/null; do
    t=$(awk '/^Threads:/ { print $2 }' "/proc/$server_pid/status" 2> /dev/null || echo 0)
    [ "${t:-0}" -gt "$peak" ] && peak=$t
    sleep 0.2
  done
  # A run that lost messages still counts: the table shows it.
  wait "$bench_pid" || echo "bench-irc.sh: that $proto run was not clean" >&2
  echo "$peak"
}

protos=(json irc)
: > target/bench-irc.jsonl
for run in $(seq "$runs"); do
  for p in "${protos[@]}"; do
    echo "bench-irc.sh: run $run, $p" >&2
    peak=$(bench "$p" "$work/run.log")
    grep '^{' "$work/run.log" | jq -c --arg p "$p" --argjson peak "$peak" \
      '. + {proto: $p, server_threads_peak: $peak}' \
      | tee -a "$work/$p.jsonl" >> target/bench-irc.jsonl
    tail -n1 "$work/run.log" >&2
    # Let the server's writer threads of the last run wind down.
    sleep 3
  done
done
for run in $(seq "$find_max_runs"); do
  for p in "${protos[@]}"; do
    echo "bench-irc.sh: find-max, run $run, $p" >&2
    bench "$p" "$work/$p.max.log" --find-max > /dev/null
    grep '^{' "$work/$p.max.log" | jq -c --arg p "$p" '. + {proto: $p, find_max: true}' \
      >> target/bench-irc.jsonl
    best=$(sed -n 's/^highest rate .*: \([0-9]*\) messages\/s$/\1/p' "$work/$p.max.log")
    deliveries=$(sed -n 's/^  \([0-9]*\) deliveries\/s.*/\1/p' "$work/$p.max.log")
    echo "${best:-0} ${deliveries:-0}" >> "$work/$p.max"
    echo "  highest rate ${best:-0} messages/s" >&2
    sleep 3
  done
done

# cell VALUES...: "median (min–max)", or the median alone when they are all equal.
cell() {
  printf '%s\n' "$@" | sort -g | awk '
    function th(s) { while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); return s }
    function f(v) { return v == int(v) || v >= 1000 ? th(sprintf("%.0f", v)) : (v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v)) }
    { a[NR] = $1 }
    END { m = f(a[int((NR + 1) / 2)]); lo = f(a[1]); hi = f(a[NR]);
          print (lo == hi ? m : m " (" lo "–" hi ")") }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
values() { jq -r "$2" "$work/$1.jsonl"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "–" }'; }
# row NAME EXPR: the cells of both protocols and the ratio of the medians, IRC/JSON.
row() {
  local name=$1 expr=$2 j i
  # shellcheck disable=SC2046
  j=$(median $(values json "$expr"))
  # shellcheck disable=SC2046
  i=$(median $(values irc "$expr"))
  # shellcheck disable=SC2046
  echo "| $name | $(cell $(values json "$expr")) | $(cell $(values irc "$expr")) | $(ratio "$i" "$j") |"
}
{
  spec=$(head -n1 "$work/json.jsonl" | jq -r '.spec | "\(.receivers) receivers and \(.senders) senders in one room (`#lobby`), \(.size)-byte messages, \(.rate) messages/s in total (open loop), \(.duration_s) s per run"')
  echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-irc.sh\` (RUNS=$runs, FIND_MAX_RUNS=$find_max_runs): $spec; messages.csv logging on; one server for every run, JSON and IRC runs alternating. Each cell is the median of the runs (min–max). Machine: $(nproc) cores, shared by the server and the load generator."
  echo
  echo "| figure | JSON | IRC | IRC / JSON |"
  echo "| --- | ---: | ---: | ---: |"
  row "deliveries/s" '.deliveries_per_s'
  row "lost" '.lost'
  row "duplicated" '.duplicated'
  row "latency p50 (ms)" '.p50_ms'
  row "latency p90 (ms)" '.p90_ms'
  row "latency p99 (ms)" '.p99_ms'
  row "latency p99.9 (ms)" '.p999_ms'
  row "latency max (ms)" '.max_ms'
  row "server CPU (cores)" '.server_cpu_per_s'
  row "server threads (peak)" '.server_threads_peak'
  row "server RSS after the run (MiB)" '.server.rss_kib / 1024'
  if [ "$find_max_runs" -gt 0 ]; then
    jm=$(median $(cut -d' ' -f1 "$work/json.max"))
    im=$(median $(cut -d' ' -f1 "$work/irc.max"))
    # shellcheck disable=SC2046
    echo "| find-max: highest rate with 0 lost and p99 < 50 ms (messages/s) | $(cell $(cut -d' ' -f1 "$work/json.max")) | $(cell $(cut -d' ' -f1 "$work/irc.max")) | $(ratio "$im" "$jm") |"
    # shellcheck disable=SC2046
    echo "| deliveries/s at that rate | $(cell $(cut -d' ' -f2 "$work/json.max")) | $(cell $(cut -d' ' -f2 "$work/irc.max")) | $(ratio "$(median $(cut -d' ' -f2 "$work/irc.max"))" "$(median $(cut -d' ' -f2 "$work/json.max"))") |"
    echo
    awk -v j="$jm" -v i="$im" 'BEGIN {
      r = j > 0 ? i / j : 0
      printf "IRC carries %.0f%% of the JSON throughput (find-max medians, %d against %d messages/s): ", 100 * r, i, j
      if (r >= 0.8) print "the bound \"IRC costs no more than 20% of the native throughput\" **holds**."
      else printf "the bound \"IRC costs no more than 20%% of the native throughput\" **does not hold** (it costs %.0f%%).\n", 100 * (1 - r) }'
  fi
} > "$work/table.md"
cp "$work/table.md" target/bench-irc.md
cat "$work/table.md"
