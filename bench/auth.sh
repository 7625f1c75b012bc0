#!/usr/bin/env bash
# What sign-in costs at the door: upgrades per second and per server CPU-second with a valid
# token of each kind (and with none), a fresh server per run on bench/config.toml plus an
# [auth] section, keys made here with openssl, tokens minted by examples/mint_token.
#   bench/auth.sh [DURATION] [KINDS]        # defaults 10 and "none hs256 rs256 es256 eddsa"
# The server is $MESH_RECORDS_BIN (target/release/mesh-records), the loader $MESH_BENCH
# (target/release/mesh-bench), the minter $MINT (target/release/examples/mint_token); build
# them with `cargo build --release -p mesh-records -p mesh-bench` and then
# `cargo build --release --example mint_token` (with --example, cargo builds no binaries).
# LOOPS sets the concurrent connection loops (50). Loopback only; run on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
kinds=${2:-none hs256 rs256 es256 eddsa}
server=${MESH_RECORDS_BIN:-target/release/mesh-records}
bench=${MESH_BENCH:-target/release/mesh-bench}
mint=${MINT:-target/release/examples/mint_token}
port=${MESH_PORT:-3191}
loops=${LOOPS:-50}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/rs256.pem" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/es256.pem" 2>/dev/null
openssl genpkey -algorithm ED25519 -out "$dir/eddsa.pem" 2>/dev/null

run() { # kind
  local kind=$1 auth="" token=""
  case $kind in
    none) ;;
    hs256) auth=$'jwt_secret = "bench-secret"'
      token=$("$mint" --secret bench-secret --sub bench) ;;
    rs256|es256|eddsa)
      local alg=${kind^^}; [ "$kind" = eddsa ] && alg=EdDSA
      openssl pkey -pubout -in "$dir/$kind.pem" -out "$dir/$kind.pub" 2>/dev/null
      auth="jwt_public_key_file = \"$dir/$kind.pub\""$'\n'"algorithms = [\"$alg\"]"
      token=$("$mint" --key "$dir/$kind.pem" --alg "$alg" --sub bench) ;;
  esac
  { cat bench/config.toml; [ -n "$auth" ] && printf '\n[auth]\nrequired = true\n%s\n' "$auth"; } \
    > "$dir/config.toml"
  MESH_PORT=$port RUST_LOG=warn "$server" --config "$dir/config.toml" & local pid=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
  local args=(upgrades --connections "$loops" --duration "$duration"
    --url "ws://127.0.0.1:$port/ws" --server-pid "$pid")
  [ -n "$token" ] && args+=(--token "$token")
  local json
  json=$("$bench" "${args[@]}" 2>/dev/null | tail -n 1)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
  echo "$kind $(jq -c '{upgrades_per_s, upgrades_per_server_cpu_s, failed, server_cpu_s,
    other_processes_cpu_s}' <<<"$json")"
}

for kind in $kinds; do run "$kind"; done
