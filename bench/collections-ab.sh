#!/usr/bin/env bash
# The collections issue's comparison: server CPU per write to records in no collection, with
# 10,000 subscribed collections (10 subscribers each) and without any (--no-collections),
# interleaved so drift in what else runs hits both alike, a fresh server per run
# (bench/config-collections.toml). Prints one line per run, then the medians and their ratio
# (the goal: within 10 %, a ratio of at most 1.10).
#   bench/collections-ab.sh [ROUNDS] [DURATION]      # defaults 5 and 60
# More mesh-bench options go in EXTRA, e.g. EXTRA="--rate 2000". The loader is $MESH_BENCH
# (default target/release/mesh-bench), the server $MESH_RECORDS_BIN (target/release/
# mesh-records); build them with `cargo build --release -p mesh-records -p mesh-bench`.
# Loopback only; the machine should be otherwise idle (other_processes_cpu_s tells).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} duration=${2:-60}
bench=${MESH_BENCH:-target/release/mesh-bench}
server=${MESH_RECORDS_BIN:-target/release/mesh-records}
port=${MESH_PORT:-3190}

run() { # label mesh-bench-args...
  local label=$1; shift
  MESH_PORT=$port RUST_LOG=warn "$server" --config bench/config-collections.toml & local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  local json
  # shellcheck disable=SC2086 # EXTRA is a list of options
  json=$("$bench" collection --shape unrelated-writes "$@" --duration "$duration" $EXTRA \
    --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" 2>/dev/null | tail -n 1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  echo "$label $(jq -c '{server_cpu_us_per_write, writes_per_s, server_cpu_s,
    other_processes_cpu_s, p99_us: .latency_us.p99, unexpected_pushes, settled}' <<<"$json")"
}

EXTRA=${EXTRA:-}
results=$(for _ in $(seq "$rounds"); do
  run collections
  run baseline --no-collections
done | tee /dev/stderr)
median() { # label
  grep "^$1 " <<<"$results" | sed "s/^$1 //" | jq -s 'map(.server_cpu_us_per_write) | sort |
    .[length / 2 | floor]'
}
with=$(median collections) without=$(median baseline)
echo "median server CPU per write: collections $with µs, baseline $without µs, ratio" \
  "$(jq -n "$with / $without * 1000 | round / 1000")"
