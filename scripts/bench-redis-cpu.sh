#!/usr/bin/env bash
# Redis CPU per write: runs the debug/release server on the given backend and Redis, drives it with
# `mesh-bench records` (200 connections, 20 s), and prints CPU ticks (1/100 s) of the given
# redis-server pids and per-node script/publish counts. Used for BENCHMARKS.md (issue 14).
# usage: PORTS="<redis ports>" T=<target dir>/debug scripts/bench-redis-cpu.sh <backend> <redis_url> <redis pids...>
set -e
backend=$1 url=$2; shift 2
T=${T:-target/release}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s#^backend = .*#backend = \"$backend\"#" -e "s#^redis_url = .*#redis_url = \"$url\"#" -e "s#^port = .*#port = $port#" \
  bench/config-redis.toml > ${TMPDIR:-/tmp}/config-$backend.toml
$T/mesh-records --config ${TMPDIR:-/tmp}/config-$backend.toml > ${TMPDIR:-/tmp}/server-$backend.log 2>&1 &
srv=$!
sleep 3
cpu() { for p in "$@"; do awk '{print $14+$15}' /proc/$p/stat; done | paste -sd' '; }
calls() { for p in $PORTS; do redis-cli -p $p info commandstats | tr -d '\r' | grep -E "^cmdstat_$1:" | sed 's/^[^=]*=\([0-9]*\).*/\1/'; done | paste -sd' '; }
for p in $PORTS; do redis-cli -p $p config resetstat >/dev/null; done
before=$(cpu "$@")
$T/mesh-bench records --url ws://127.0.0.1:$port/ws --connections 200 --duration 20 --server-pid $srv > ${TMPDIR:-/tmp}/bench-$backend.out 2>&1 || true
after=$(cpu "$@")
echo "evalsha per node: $(calls evalsha)"; echo "publish per node: $(calls publish) spublish: $(calls spublish)"
kill $srv; wait $srv 2>/dev/null || true
echo "ticks before: $before"
echo "ticks after:  $after"
tail -1 ${TMPDIR:-/tmp}/bench-$backend.out
