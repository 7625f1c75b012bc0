#!/usr/bin/env bash
# Measures what one client that never reads costs everybody else (issue: hardening): runs the
# fan-out scenario (100 patch subscribers) twice on a fresh server, without and with a stuck
# client subscribed to the same record, and prints the healthy subscribers' latency, the
# server's peak RSS, and when the stuck client was cut off. Loopback only, about a minute.
#   bench/slow-consumer.sh [in-flight] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
in_flight=${1:-4}
seconds=${2:-20}
port=3190
bin=target/release/mesh-records
bench=target/release/mesh-bench
[ -x "$bin" ] && [ -x "$bench" ] || cargo build --release -p mesh-records -p mesh-bench

peak_rss() { # pid, seconds → prints the peak VmRSS in KiB seen while sampling
  local peak=0 rss
  for _ in $(seq 1 $(( $2 * 4 ))); do
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss
    sleep 0.25
  done
  echo "$peak"
}

run() { # label, with-stuck-client (0/1)
  MESH_PORT=$port RUST_LOG=warn "$bin" --config bench/config.toml & local server=$!
  sleep 1
  local record="bench:slow:$RANDOM$RANDOM"
  if [ "$2" = 1 ]; then
    python3 bench/stuck-client.py 127.0.0.1 $port "$record" $(( seconds + 20 )) & local stuck=$!
    sleep 0.5
  fi
  peak_rss $server $(( seconds + 2 )) > /tmp/mesh-slow-rss & local sampler=$!
  "$bench" fanout --url ws://127.0.0.1:$port/ws --record "$record" --subscribers 100 \
    --mode patch --in-flight "$in_flight" --pad 100 --duration "$seconds" --server-pid $server \
    | tail -n 1 > /tmp/mesh-slow-$1.json
  wait $sampler
  [ "$2" = 1 ] && { wait $stuck || true; }
  kill $server; wait $server 2>/dev/null || true
  echo "$1: peak server RSS $(cat /tmp/mesh-slow-rss) KiB; $(python3 -c "
import json, sys
r = json.load(open(sys.argv[1]))
lat = r.get('latency_us', {})
print('writes/s', r.get('writes_per_s'), 'deliveries/s', r.get('deliveries_per_s'),
      'latency p50 %.1f ms p99 %.1f ms max %.1f ms' % (lat.get('p50', 0) / 1e3,
      lat.get('p99', 0) / 1e3, lat.get('max', 0) / 1e3))" /tmp/mesh-slow-$1.json)"
}

run baseline 0
run with-stuck-client 1
