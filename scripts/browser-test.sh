#!/usr/bin/env bash
# The demo's tests in headless Chromium (clients/js/test/browser.test.js).
# Installs what it needs: Debian's chromium when /usr/bin/chromium is missing, and the npm
# packages of clients/js (playwright-core drives the installed Chromium; it downloads no
# browser of its own). Uses the server binary from $MESH_RECORDS_BIN, else the newest of
# target/{release,debug}/mesh-records (honours CARGO_TARGET_DIR), building a debug one if
# there is none. Screenshot: target/demo-screenshot.png.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  echo "browser-test: installing Debian's chromium"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

if [ ! -d clients/js/node_modules/playwright-core ] || [ ! -d clients/js/node_modules/ws ]; then
  (cd clients/js && npm ci --no-audit --no-fund)
fi

if [ -z "${MESH_RECORDS_BIN:-}" ]; then
  target="${CARGO_TARGET_DIR:-$root/target}"
  bin=$(ls -t "$target/release/mesh-records" "$target/debug/mesh-records" 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    echo "browser-test: building the server (cargo build)"
    cargo build --quiet
    bin="$target/debug/mesh-records"
  fi
  export MESH_RECORDS_BIN="$bin"
fi
echo "browser-test: server binary $MESH_RECORDS_BIN"

cd clients/js
MESH_REQUIRE_BROWSER=1 timeout 300 node --test test/browser.test.js
