#!/usr/bin/env bash
# Writes to one hot record and to many records on the Redis store, with write batching on
# (max_write_batch = 64, the default) and off (1). Loopback only, about a minute.
#   bench/batching.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/mesh-records
bench=target/release/mesh-bench
[ -x "$bin" ] && [ -x "$bench" ] || cargo build --release -p mesh-records -p mesh-bench
port=3195
for batch in 64 1; do
  config=$(mktemp --suffix=.toml)
  sed "s/^\[server\]$/[server]\nmax_write_batch = $batch/" bench/config-redis.toml > "$config"
  MESH_PORT=$port RUST_LOG=warn "$bin" --config "$config" & server=$!
  sleep 1
  hot=$("$bench" race --url ws://127.0.0.1:$port/ws --writers 8 --writes 5000 --server-pid $server | tail -n 1)
  many=$("$bench" records --url ws://127.0.0.1:$port/ws --connections 100 --duration 10 --server-pid $server | tail -n 1)
  kill $server; wait $server 2>/dev/null || true
  rm -f "$config"
  python3 - "$batch" "$hot" "$many" <<'PY'
import json, sys
batch, hot, many = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
def cpu(r, key):
    return r.get(key) or 0
print(f"max_write_batch={batch}: hot record (8 writers x 16 in flight): "
      f"{hot.get('writes_per_s', 0):,.0f} writes/s, lost {hot.get('lost_updates')}, "
      f"{cpu(hot, 'writes_per_server_cpu_s'):,.0f} per server CPU-s | "
      f"100 records (closed loop): {many.get('writes_per_s', 0):,.0f} writes/s, "
      f"{cpu(many, 'writes_per_server_cpu_s'):,.0f} per server CPU-s")
PY
done
