#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md's opening table against a fresh release server (memory
# store, bench/config.toml; the Redis row uses bench/config-redis.toml and the Redis at
# 127.0.0.1:6379, counting its CPU too), prints a progress line per run, and writes the table
# (Markdown, with the machine and the commands) to the file named by OUT (default
# target/bench-table.md). Each scenario runs ROUNDS times (default 3) and the median is shown.
#
#   scripts/bench.sh                      # builds release binaries first
#   MESH_RECORDS_BIN=... MESH_BENCH=... DURATION=5 ROUNDS=1 scripts/bench.sh
#
# Loopback only; the machine should be otherwise idle.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3} duration=${DURATION:-10} out=${OUT:-target/bench-table.md}
port=${MESH_PORT:-3190}
server_bin=${MESH_RECORDS_BIN:-target/release/mesh-records}
bench_bin=${MESH_BENCH:-target/release/mesh-bench}
if [ -z "${MESH_RECORDS_BIN:-}${MESH_BENCH:-}" ]; then
  cargo build --release -p mesh-records -p mesh-bench
fi
url="ws://127.0.0.1:$port/ws"

# One run: starts a server on a config, runs mesh-bench with the given arguments (and more
# --server-pid options, such as Redis's), prints its JSON line.
run_once() { # config args...
  local config=$1; shift
  MESH_PORT=$port RUST_LOG=warn "$server_bin" --config "$config" & local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  "$bench_bin" "$@" --url "$url" --server-pid "$pid" 2>/dev/null | tail -n 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # The next run needs the port.
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
}

# The median over the rounds of one JSON field (a dotted path such as latency_us.p99).
median_of() { # field json-lines...
  python3 - "$@" <<'EOF'
import json, statistics, sys
field, lines = sys.argv[1], sys.argv[2:]
values = []
for line in lines:
    value = json.loads(line)
    for part in field.split("."):
        value = value[part]
    values.append(value)
if not values:
    print("n/a")
else:
    median = statistics.median(values)
    print(f"{median:,.0f}" if median >= 100 else f"{median:,.1f}")
EOF
}

rows=()
# A row: ROUNDS runs; the median of each field (a field "a.b" is a nested JSON figure).
scenario() { # label goal config "field unit[;field unit...]" args...
  local label=$1 goal=$2 config=$3 fields=$4; shift 4
  local results=()
  for round in $(seq "$rounds"); do
    echo "bench: $label, round $round/$rounds" >&2
    results+=("$(run_once "$config" "$@" --duration "$duration")")
  done
  local figures=() field unit median
  IFS=';' read -ra specs <<< "$fields"
  for spec in "${specs[@]}"; do
    read -r field unit <<< "$spec"
    median=$(median_of "$field" "${results[@]}")
    figures+=("$median $unit")
  done
  local shown
  shown=$(IFS='/'; echo "${figures[*]}" | sed 's|/| / |g')
  echo "bench: $label: $shown (median of $rounds)" >&2
  local extra=""
  [ "$config" != bench/config.toml ] && extra=" (server: \`--config $config\`)"
  rows+=("| $label | $shown | $goal | \`mesh-bench $* --duration $duration\`$extra |")
}

redis_pid=$(pgrep -x redis-server | head -n 1 || true)
memory=bench/config.toml
scenario "idle connections, RSS per connection at 10,000" "≤ 4 KB" $memory \
  "server_bytes_per_connection bytes" idle --connections 10000 --hold 5
scenario "idle connections, RSS per connection at 19,000" "≤ 4 KB" $memory \
  "server_bytes_per_connection bytes" idle --connections 19000 --hold 5
scenario "fan-out, 1,000 patch subscribers, 16 writes in flight" "≥ 1.2 M" $memory \
  "deliveries_per_server_cpu_s deliveries per server CPU-s" \
  fanout --subscribers 1000 --mode patch --in-flight 16
scenario "open loop, 100 writes/s to 1,000 subscribers: p50 / p99" "p99 ≤ 5 ms" $memory \
  "latency_us.p50 µs;latency_us.p99 µs" fanout --subscribers 1000 --mode patch --rate 100
scenario "open loop, 1,000 writes/s to 100 subscribers: p50 / p99" "p99 ≤ 1 ms" $memory \
  "latency_us.p50 µs;latency_us.p99 µs" fanout --subscribers 100 --mode patch --rate 1000
scenario "records, 100 connections each writing its own record (memory)" "≥ 80k" $memory \
  "writes_per_server_cpu_s writes per server CPU-s" records --connections 100
if [ -n "$redis_pid" ]; then
  scenario "records, 100 connections each writing its own record (Redis; server + Redis CPU)" \
    "≥ 50k" bench/config-redis.toml "writes_per_server_cpu_s writes per CPU-s" \
    records --connections 100 --server-pid "$redis_pid"
  # The command shown should not carry this machine's pid.
  rows[-1]=${rows[-1]//--server-pid $redis_pid/--server-pid \$(pgrep -x redis-server)}
else
  echo "bench: no redis-server running: the Redis row is skipped" >&2
fi

mkdir -p "$(dirname "$out")"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo),"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); release build, memory store unless noted,"
  echo "medians of $rounds runs of $duration s (\`scripts/bench.sh\`)."
  echo
  echo "| scenario | result | goal | command |"
  echo "| --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} > "$out"
cat "$out"
