#!/usr/bin/env bash
# A/B throughput of two server binaries on the same machine, interleaved so drift in what else
# runs hits both alike. Runs the records (C=100) and fan-out (S=1000 patch) scenarios ROUNDS
# times per binary on the memory store and prints one line per run:
#   bench/ab.sh BASE_BINARY NEW_BINARY [ROUNDS]
# The loader is $MESH_BENCH, default target/release/mesh-bench (build it with `cargo build --release -p
# mesh-bench`). CONFIG_BASE / CONFIG_NEW choose each side's config (default
# bench/config.toml), e.g. to compare one binary with history on and off.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 new=$2 rounds=${3:-2}
bench=${MESH_BENCH:-target/release/mesh-bench}
port=${MESH_PORT:-3190}

run() { # label binary config scenario args...
  local label=$1 bin=$2 config=$3; shift 3
  MESH_PORT=$port RUST_LOG=warn "$bin" --config "$config" & local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  local json
  json=$("$bench" "$@" --url "ws://127.0.0.1:$port/ws" --server-pid "$pid" 2>/dev/null | tail -n 1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$label $1 $json"
}

for round in $(seq "$rounds"); do
  for side in "base $base ${CONFIG_BASE:-bench/config.toml}" "new $new ${CONFIG_NEW:-bench/config.toml}"; do
    set -- $side
    run "$1" "$2" "$3" records --connections 100 --duration 8
    run "$1" "$2" "$3" fanout --subscribers 1000 --mode patch --in-flight 16 --pad 100 --duration 8
  done
done
