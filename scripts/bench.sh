#!/usr/bin/env bash
# Runs every scenario of BENCHMARKS.md's opening table against a fresh release server on the
# memory store (bench/config.toml), prints a progress line per scenario, and writes the table
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

# One run: starts a server, runs mesh-bench with the given arguments, prints its JSON line.
run_once() {
  MESH_PORT=$port RUST_LOG=warn "$server_bin" --config bench/config.toml & local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  "$bench_bin" "$@" --url "$url" --server-pid "$pid" 2>/dev/null | tail -n 1
  kill "$pid"; wait "$pid" 2>/dev/null || true
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
print(f"{statistics.median(values):,.1f}" if values else "n/a")
EOF
}

rows=()
scenario() { # label field unit args...
  local label=$1 field=$2 unit=$3; shift 3
  local results=()
  for round in $(seq "$rounds"); do
    echo "bench: $label, round $round/$rounds" >&2
    results+=("$(run_once "$@" --duration "$duration")")
  done
  local median
  median=$(median_of "$field" "${results[@]}")
  echo "bench: $label: $median $unit (median of $rounds)" >&2
  rows+=("| $label | $median $unit | \`mesh-bench $* --duration $duration\` |")
}

scenario "idle connections, RSS per connection at 10,000" server_bytes_per_connection bytes \
  idle --connections 10000 --hold 5
scenario "fan-out, 1,000 patch subscribers, 16 in flight" deliveries_per_server_cpu_s \
  "deliveries per server CPU-s" fanout --subscribers 1000 --mode patch --in-flight 16
scenario "open loop, 100 writes/s to 1,000 subscribers, p99" latency_us.p99 µs \
  fanout --subscribers 1000 --mode patch --rate 100
scenario "open loop, 1,000 writes/s to 100 subscribers, p99" latency_us.p99 µs \
  fanout --subscribers 100 --mode patch --rate 1000
scenario "records, 100 connections each writing its own record" writes_per_server_cpu_s \
  "writes per server CPU-s" records --connections 100

mkdir -p "$(dirname "$out")"
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo),"
  echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); memory store, release build,"
  echo "medians of $rounds runs of $duration s (\`scripts/bench.sh\`)."
  echo
  echo "| scenario | result | command |"
  echo "| --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
} > "$out"
cat "$out"
