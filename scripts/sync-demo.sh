#!/usr/bin/env bash
# Copies into demo/ the two files the page loads besides its own: the client core
# (clients/js/src/client.js -> demo/mesh-client.js) and fast-json-patch's browser build
# (from clients/js/node_modules, after `npm ci` there). Run it after changing either; the JS
# tests fail while the copies differ. demo/ stays flat so the server can embed it.
set -euo pipefail
cd "$(dirname "$0")/.."
js=clients/js
[ -d "$js/node_modules/fast-json-patch" ] || (cd "$js" && npm ci --no-audit --no-fund)
cp "$js/src/client.js" demo/mesh-client.js
cp "$js/node_modules/fast-json-patch/dist/fast-json-patch.min.js" demo/fast-json-patch.min.js
cp "$js/node_modules/fast-json-patch/LICENSE.txt" demo/fast-json-patch.LICENSE.txt
echo "demo/ synced: mesh-client.js, fast-json-patch.min.js ($(node -p "require('./$js/node_modules/fast-json-patch/package.json').version"))"
