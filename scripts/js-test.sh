#!/usr/bin/env bash
# Every test of the JavaScript client and the demo:
#   1. node and npm (Debian's nodejs/npm if missing; Node 20 or later is expected),
#   2. npm ci in clients/js (package-lock.json is committed),
#   3. the server binary: $MESH_RECORDS_BIN, else the newest of target/{release,debug}/
#      mesh-records (honours CARGO_TARGET_DIR), else `cargo build` (debug),
#   4. node --test: client tests against the real binary, version logic against a fake
#      server, demo file checks,
#   5. scripts/browser-test.sh: two headless Chromium pages on the demo.
# Exits non-zero if anything fails (both test runs go ahead either way).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "js-test: installing nodejs and npm"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "js-test: warning: node $(node --version); the client and its tests expect Node 20 or later" >&2
fi

(cd clients/js && npm ci --no-audit --no-fund --loglevel=error)

if [ -z "${MESH_RECORDS_BIN:-}" ]; then
  target="${CARGO_TARGET_DIR:-$root/target}"
  bin=$(ls -t "$target/release/mesh-records" "$target/debug/mesh-records" 2>/dev/null | head -n1 || true)
  if [ -z "$bin" ]; then
    echo "js-test: building the server (cargo build)"
    cargo build --quiet
    bin="$target/debug/mesh-records"
  fi
  export MESH_RECORDS_BIN="$bin"
fi
echo "js-test: server binary $MESH_RECORDS_BIN"

status=0
(cd clients/js && timeout 300 node --test test/client.test.js test/extensions.test.js test/version-logic.test.js test/session-logic.test.js test/demo-files.test.js) || status=1
bash scripts/browser-test.sh || status=1

if [ "$status" -ne 0 ]; then
  echo "js-test: FAILED" >&2
fi
exit "$status"
