#!/usr/bin/env bash
# Makes sure the services the tests use are up: Redis on 127.0.0.1:6379 and PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust auth). Starts them when installed and down; installs
# them with apt-get when missing (a clean Debian box). Safe to run again.
set -euo pipefail

log() { echo "services: $*" >&2; }

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
