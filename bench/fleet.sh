#!/usr/bin/env bash
# A fleet on one Redis or one Redis Cluster: N instances, W writers per instance (each writing
# its own record in a closed loop, `mesh-bench records` with one --url per instance), and what
# it costs Redis. Prints total writes/s, Redis CPU per write (all masters, from /proc), the
# instances' CPU per write (both over the measured window), and writes per EVALSHA.
#   bench/fleet.sh node    [INSTANCES] [WRITERS_PER_INSTANCE] [SECONDS]   # Redis at $REDIS_URL
#   bench/fleet.sh cluster [INSTANCES] [WRITERS_PER_INSTANCE] [SECONDS]   # starts its own 3-shard cluster
# Binaries: $SERVER (default target/release/mesh-records), $MESH_BENCH (target/release/mesh-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-node} instances=${2:-4} writers=${3:-250} seconds=${4:-10}
server=${SERVER:-target/release/mesh-records}
bench=${MESH_BENCH:-target/release/mesh-bench}
work=$(mktemp -d "${TMPDIR:-/tmp}/fleet.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ $mode == cluster ]]; then scripts/services.sh cluster-stop "$work/cluster" >/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ $mode == cluster ]]; then
  url=$(scripts/services.sh cluster-start "$work/cluster")
  backend=redis-cluster
  masters=$(redis-cli -u "$url" cluster nodes | awk '/master/ {split($2, a, "[:@]"); print a[2]}')
else
  url=${REDIS_URL:-redis://127.0.0.1:6379}
  backend=redis
  masters=$(redis-cli -u "$url" info server | tr -d '\r' | awk -F: '/^tcp_port/ {print $2}')
fi
redis_pids=()
for port in $masters; do
  redis_pids+=("$(redis-cli -p "$port" info server | tr -d '\r' | awk -F: '/^process_id/ {print $2}')")
  redis-cli -p "$port" config resetstat >/dev/null
done
prefix="fleet$$:"
urls=() server_pids=()
for n in $(seq "$instances"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  sed -e "s#^backend = .*#backend = \"$backend\"#" -e "s#^redis_url = .*#redis_url = \"$url\"#" \
      -e "s#^key_prefix = .*#key_prefix = \"$prefix\"#" -e "s#^port = .*#port = $port#" \
      bench/config-redis.toml >"$work/config-$n.toml"
  RUST_LOG=warn "$server" --config "$work/config-$n.toml" >"$work/server-$n.log" 2>&1 &
  pids+=($!) server_pids+=(--server-pid $!)
  urls+=(--url "ws://127.0.0.1:$port/ws")
done
for u in "${urls[@]}"; do
  [[ $u == --url ]] && continue
  port=${u#ws://127.0.0.1:}; port=${port%/ws}
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
# The masters come last among the --server-pid list: the tool reports each one's CPU over the
# measured window.
for pid in "${redis_pids[@]}"; do server_pids+=(--server-pid "$pid"); done
json=$("$bench" records --connections $((instances * writers)) --duration "$seconds" \
  "${urls[@]}" "${server_pids[@]}" 2>/dev/null | tail -n 1)
calls=0
for port in $masters; do
  c=$(redis-cli -p "$port" info commandstats | tr -d '\r' | awk -F'[=,]' '/^cmdstat_evalsha:/ {print $2}')
  calls=$((calls + ${c:-0}))
done
python3 - "$json" "$calls" "$mode" "$instances" "$writers" <<'PY'
import json, sys
d = json.loads(sys.argv[1]); calls = int(sys.argv[2]); n = int(sys.argv[4])
each = d["server_cpu_s_each"]; servers_s = sum(each[:n]); redis_s = sum(each[n:])
w = d["counts"]["writes_acked"]; s = d["window_s"]; lat = d["latency_us"]
print(f"{sys.argv[3]}: {n} instances x {sys.argv[5]} writers: {w / s:,.0f} writes/s, "
      f"Redis {redis_s * 1e6 / w:.1f} us CPU per write ({redis_s / s:.2f} cores), "
      f"instances {servers_s * 1e6 / w:.1f} us per write, "
      f"{w / max(calls, 1):.1f} writes per EVALSHA (warmup calls included), p50 {lat['p50'] / 1e3:.1f} ms p99 {lat['p99'] / 1e3:.1f} ms, "
      f"gaps {d['counts']['gaps']} errors {d['counts']['write_errors']}, other CPU {d['other_processes_cpu_s']} s")
PY
