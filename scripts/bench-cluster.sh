#!/usr/bin/env bash
# The fan-out over several nodes (docs/PERFORMANCE.md, "Several nodes (Redis)"). Starts its own
# redis-server on a free loopback port, then for each of RUNS runs (3 by default) measures the
# same fan-out (200 receivers, 10 senders, 5000 messages/s, 5 s; FANOUT_ARGS to change it)
# against:
#   1. one plain node (no --redis);
#   2. one node with --redis: every message makes the round trip through Redis;
#   3. two nodes a and b of one cluster, the room's clients spread evenly over both;
# each on fresh nodes (own temp --data-dir, --bind 127.0.0.1:0) and an emptied Redis, then the
# same three with --find-max (FIND_MAX=0 skips it), then redis-benchmark on the publish script
# and XADD/XREAD (REDIS_BENCH=0 skips it). Prints medians (min-max) as Markdown, also written
# to target/bench-cluster.md; the JSON of every run goes to target/bench-cluster.jsonl.
# Loopback only; every step is bounded by `timeout`; everything started is stopped on exit.
# About 6 minutes with FIND_MAX=1 (about 2 without).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-3}"
find_max="${FIND_MAX:-1}"
redis_bench="${REDIS_BENCH:-1}"
read -r -a fanout_args <<< "${FANOUT_ARGS:-}"
for tool in redis-server redis-cli redis-benchmark jq; do
  command -v "$tool" > /dev/null || { echo "bench-cluster.sh: $tool is needed" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"

cargo build --release --bins --features bench --quiet
work=$(mktemp -d)
redis_pid=
node_pids=()
node_addrs=()
stop_nodes() {
  local p
  for p in "${node_pids[@]}"; do kill "$p" 2> /dev/null || true; done
  for p in "${node_pids[@]}"; do wait "$p" 2> /dev/null || true; done
  node_pids=()
  node_addrs=()
}
cleanup() {
  stop_nodes
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2> /dev/null || true
    wait "$redis_pid" 2> /dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody listens on.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then
      echo "$p"
      return
    fi
  done
  echo "bench-cluster.sh: no free port" >&2
  exit 1
}

port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning \
  > "$work/redis.log" 2>&1 &
redis_pid=$!
rcli() { timeout 10 redis-cli -p "$port" "$@"; }
for _ in $(seq 50); do
  [ "$(rcli ping 2> /dev/null)" = PONG ] && break
  sleep 0.1
done
[ "$(rcli ping)" = PONG ] || { echo "bench-cluster.sh: redis-server did not start" >&2; exit 1; }

# start_node NAME [cluster]: a fresh chat-server, in the cluster when asked.
start_node() {
  local name=$1 dir="$work/data-$1-$RANDOM$RANDOM" out="$work/$1.out" args=()
  mkdir -p "$dir"
  if [ "${2:-}" = cluster ]; then
    args=(--redis "redis://127.0.0.1:$port" --node-id "$name")
  fi
  target/release/chat-server --bind 127.0.0.1:0 --msg-rate 0 --data-dir "$dir" "${args[@]}" \
    > "$out" 2> "$work/$name.err" &
  node_pids+=($!)
  local first=
  for _ in $(seq 100); do
    first=$(head -n1 "$out" 2> /dev/null || true)
    [[ $first == "listening on "* ]] && break
    sleep 0.1
  done
  [[ $first == "listening on "* ]] || { echo "bench-cluster.sh: node $name did not start" >&2; cat "$work/$name.err" >&2; exit 1; }
  node_addrs+=("${first#listening on }")
}

# setup CONFIG: plain (one node), redis1 (one node through Redis), redis2 (two nodes).
setup() {
  stop_nodes
  rcli flushall > /dev/null
  case $1 in
    plain) start_node a ;;
    redis1) start_node a cluster ;;
    redis2) start_node a cluster; start_node b cluster ;;
  esac
  # Let the cluster-in threads reach Redis before the clients come.
  sleep 0.5
}

# bench CONFIG ARGS...: chat-bench fanout against the nodes of CONFIG.
bench() {
  local config=$1 nodes pids redis=()
  shift
  nodes=$(IFS=,; echo "${node_addrs[*]}")
  pids=$(IFS=,; echo "${node_pids[*]}")
  [ "$config" = plain ] || redis=(--redis-pid "$redis_pid")
  timeout 300 target/release/chat-bench fanout --nodes "$nodes" --node-pids "$pids" "${redis[@]}" \
    "${fanout_args[@]}" "$@"
}

configs=(plain redis1 redis2)
: > target/bench-cluster.jsonl
for run in $(seq "$runs"); do
  for c in "${configs[@]}"; do
    echo "bench-cluster.sh: run $run, $c" >&2
    setup "$c"
    # A run that lost messages or broke the order still counts: the table shows it.
    bench "$c" > "$work/run.log" || echo "bench-cluster.sh: that run was not clean" >&2
    grep '^{' "$work/run.log" | jq -c --arg c "$c" '. + {config: $c}' \
      | tee -a "$work/$c.jsonl" >> target/bench-cluster.jsonl
    tail -n1 "$work/run.log" >&2
  done
done
if [ "$find_max" = 1 ]; then
  for run in $(seq "$runs"); do
    for c in "${configs[@]}"; do
      echo "bench-cluster.sh: find-max, run $run, $c" >&2
      setup "$c"
      bench "$c" --find-max > "$work/$c.max.log" || true
      grep '^{' "$work/$c.max.log" | jq -c --arg c "$c" '. + {config: $c, find_max: true}' \
        >> target/bench-cluster.jsonl
      best=$(sed -n 's/^highest rate .*: \([0-9]*\) messages\/s$/\1/p' "$work/$c.max.log")
      deliveries=$(sed -n 's/^  \([0-9]*\) deliveries\/s.*/\1/p' "$work/$c.max.log")
      echo "${best:-0} ${deliveries:-0}" >> "$work/$c.max"
      echo "  highest rate ${best:-0} messages/s" >&2
    done
  done
fi
stop_nodes

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
row() {
  local name=$1 expr=$2 line="| $1 |" c
  for c in "${configs[@]}"; do
    if [ "$(values "$c" "$expr" | sort -u)" = null ]; then
      line+=" – |"
    else
      # shellcheck disable=SC2046
      line+=" $(cell $(values "$c" "$expr")) |"
    fi
  done
  echo "$line"
}
{
  spec=$(head -n1 "$work/plain.jsonl" | jq -r '.spec | "\(.receivers) receivers and \(.senders) senders in one room, \(.size)-byte messages, \(.rate) messages/s in total (open loop), \(.duration_s) s per run"')
  echo "Measured $(date -u +%Y-%m-%d) by \`scripts/bench-cluster.sh\` (RUNS=$runs): $spec; messages.csv logging on. Each cell is the median of $runs runs (min–max). Machine: $(nproc) cores, shared by Redis, the nodes and the load generator."
  echo
  echo "| figure | one node | one node through Redis | two nodes through Redis |"
  echo "| --- | ---: | ---: | ---: |"
  row "deliveries/s" '.deliveries_per_s'
  row "lost" '.lost'
  row "duplicated" '.duplicated'
  row "out of id order" '.order_violations'
  row "latency p50 (ms)" '.p50_ms'
  row "latency p90 (ms)" '.p90_ms'
  row "latency p99 (ms)" '.p99_ms'
  row "latency p99.9 (ms)" '.p999_ms'
  row "latency max (ms)" '.max_ms'
  row "nodes' CPU, together (cores)" '.server_cpu_per_s'
  row "Redis CPU (cores)" '.redis_cpu_per_s'
  row "load generator CPU (cores)" '.bench_cpu_per_s'
  row "all three together (cores, of $(nproc))" '.server_cpu_per_s + (.redis_cpu_per_s // 0) + .bench_cpu_per_s'
  row "nodes' RSS, together (MiB)" '.server.rss_kib / 1024'
  if [ "$find_max" = 1 ]; then
    line="| find-max: highest rate with 0 lost, one order, p99 < 50 ms (messages/s) |"
    line2="| deliveries/s at that rate |"
    for c in "${configs[@]}"; do
      # shellcheck disable=SC2046
      line+=" $(cell $(cut -d' ' -f1 "$work/$c.max")) |"
      # shellcheck disable=SC2046
      line2+=" $(cell $(cut -d' ' -f2 "$work/$c.max")) |"
    done
    echo "$line"
    echo "$line2"
    echo
    m() { median $(cut -d' ' -f1 "$work/$1.max"); }
    awk -v p="$(m plain)" -v r1="$(m redis1)" -v r2="$(m redis2)" 'BEGIN {
      if (p > 0 && r1 > 0) printf "Ratios of the find-max medians: one node through Redis / one plain node %.2f; two nodes / one node through Redis %.2f; two nodes / one plain node %.2f.\n", r1 / p, r2 / r1, r2 / p }'
  fi
  # shellcheck disable=SC2046
  awk -v p="$(median $(values plain .p50_ms))" -v r1="$(median $(values redis1 .p50_ms))" \
    -v r2="$(median $(values redis2 .p50_ms))" 'BEGIN {
    printf "Ratios of the p50 medians at the fixed rate: through Redis / plain %.1f; two nodes / one node through Redis %.2f.\n", r1 / p, r2 / r1 }'
} > "$work/table.md"

if [ "$redis_bench" = 1 ]; then
  # The publish script of src/server/cluster.rs and a message as a node publishes it (a 100-byte
  # text in its JSON wire form, about 210 bytes).
  script="local id = redis.call('INCR', KEYS[1]) redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'id', id, 'm', ARGV[1]) return id"
  payload="{\"node\":\"a\",\"conn\":12,\"ts\":\"2026-11-26T16:32:10.703Z\",\"room\":\"lobby\",\"from\":\"s12345n0-3\",\"kind\":\"message\",\"text\":\"B 3 1234 123456789 $(printf 'x%.0s' $(seq 80))\"}"
  rcli flushall > /dev/null
  # rb LABEL ARGS...: redis-benchmark three times; the median requests per second (min–max)
  # and the median p50 (ms).
  rb() {
    local label=$1 rps=() p50=() line
    shift
    for _ in 1 2 3; do
      line=$(timeout 120 redis-benchmark -p "$port" --csv "$@" | tail -n1)
      # The command's text may hold commas and quotes: count the fields from the end.
      rps+=("$(awk -F, '{ v = $(NF - 6); gsub(/"/, "", v); print v }' <<< "$line")")
      p50+=("$(awk -F, '{ v = $(NF - 3); gsub(/"/, "", v); print v }' <<< "$line")")
    done
    echo "| $label | $(cell "${rps[@]}") | $(median "${p50[@]}") |"
  }
  {
    echo
    echo "redis-benchmark on the same machine (Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'); a ${#payload}-byte entry, a node's wire form of a 100-byte message; each the median of 3 runs):"
    echo
    echo "| command | requests/s | p50 (ms) |"
    echo "| --- | ---: | ---: |"
    rb "publish script (INCR + XADD), 1 connection, one call at a time: one node's cluster-out" \
      -c 1 -n 50000 EVAL "$script" 2 chatroom:id chatroom:log "$payload" 100000
    rb "publish script, 50 connections" -c 50 -n 100000 \
      EVAL "$script" 2 chatroom:id chatroom:log "$payload" 100000
    rb "XADD, 50 connections" -c 50 -n 100000 XADD bench:s MAXLEN '~' 100000 '*' m "$payload"
    rb "XADD, 50 connections, pipelined 16" -c 50 -P 16 -n 200000 \
      XADD bench:s MAXLEN '~' 100000 '*' m "$payload"
    rb "XREAD COUNT 512 (a reply of 512 entries), 10 connections" -c 10 -n 10000 \
      XREAD COUNT 512 STREAMS bench:s 0-0
  } >> "$work/table.md"
fi
cp "$work/table.md" target/bench-cluster.md
cat "$work/table.md"
