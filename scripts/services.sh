#!/usr/bin/env bash
# Makes sure the services the tests use are up: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust auth). Starts them when installed and down; installs
# them with apt-get when missing (a clean Debian box). Safe to run again.
#
# `services.sh cluster-start [dir]` starts a local Redis Cluster (3 masters + 3 replicas on
# free ports, files in dir, default /tmp/mesh-records-cluster) and prints the URL of one node;
# `services.sh cluster-stop [dir]` stops it and removes dir. The tests do not need it: each
# test binary starts a private cluster of its own (tests/common/own_cluster.rs). It is for
# trying the redis-cluster backend by hand, or running the tests against one cluster:
#   MESH_TEST_REDIS_CLUSTER_URL=$(scripts/services.sh cluster-start) cargo test
set -euo pipefail

log() { echo "services: $*" >&2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ "${1:-}" = cluster-start ]; then
  dir=${2:-/tmp/mesh-records-cluster}
  mkdir -p "$dir"
  nodes=()
  for _ in 1 2 3 4 5 6; do
    port=$(free_port); bus=$(free_port)
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --cluster-enabled yes \
      --cluster-port "$bus" --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 2000 \
      --save "" --appendonly no --dir "$dir" --pidfile "$dir/redis-$port.pid" \
      --logfile "$dir/redis-$port.log"
    nodes+=("127.0.0.1:$port")
  done
  for node in "${nodes[@]}"; do
    for _ in $(seq 1 50); do redis-cli -p "${node#*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  for _ in $(seq 1 100); do
    redis-cli -p "${nodes[0]#*:}" cluster info | grep -q cluster_state:ok && break
    sleep 0.2
  done
  log "Redis Cluster up in $dir: ${nodes[*]}"
  echo "redis://${nodes[0]}"
  exit 0
fi
if [ "${1:-}" = cluster-stop ]; then
  dir=${2:-/tmp/mesh-records-cluster}
  for pidfile in "$dir"/redis-*.pid; do
    [ -e "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf "$dir"
  log "Redis Cluster in $dir stopped"
  exit 0
fi

port_open() { timeout 1 bash -c "</dev/tcp/127.0.0.1/$1" 2>/dev/null; }

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  log "$name did not come up"; return 1
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Redis: the tests also start their own redis-server on other ports, so the binary must exist.
command -v redis-server >/dev/null || apt_install redis-server
# The sign-in tests make their RSA, EC and Ed25519 keys with the openssl tool.
command -v openssl >/dev/null || apt_install openssl
if ! port_open 6379; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/mesh-records-redis.log
  wait_for Redis port_open 6379
fi

# PostgreSQL.
if ! command -v pg_ctlcluster >/dev/null && ! port_open 5432; then
  apt_install postgresql
fi
if ! port_open 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster "$version" main start
  wait_for PostgreSQL port_open 5432
fi
command -v psql >/dev/null || apt_install postgresql-client
if ! PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  # A fresh Debian install asks for passwords on TCP; the tests use a throwaway local server
  # with trust auth for user postgres on loopback, as on the CI machines.
  hba=$(su postgres -c "psql -Atc 'show hba_file'")
  log "enabling trust auth on loopback in $hba"
  sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  su postgres -c "psql -Atc 'select pg_reload_conf()'" >/dev/null
  wait_for "PostgreSQL login" psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1'
fi
log "Redis and PostgreSQL are up"
