// demo/ holds copies of the client core and of fast-json-patch's browser build (the server
// embeds demo/ as it is); these must match their sources. Fix with scripts/sync-demo.sh.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { DEMO_DIR, DEMO_FILES, PACKAGE_DIR } from './helpers.js';

const read = (...parts) => readFileSync(path.join(...parts), 'utf8');

test('demo/mesh-client.js is clients/js/src/client.js', () => {
  assert.ok(read(DEMO_DIR, 'mesh-client.js') === read(PACKAGE_DIR, 'src', 'client.js'), 'run scripts/sync-demo.sh');
});

test('demo/fast-json-patch.min.js is the installed fast-json-patch browser build', () => {
  const installed = read(PACKAGE_DIR, 'node_modules', 'fast-json-patch', 'dist', 'fast-json-patch.min.js');
  assert.ok(read(DEMO_DIR, 'fast-json-patch.min.js') === installed, 'run scripts/sync-demo.sh');
});

test('demo/ is flat and holds the served files plus the vendored license', () => {
  const expected = [...Object.keys(DEMO_FILES), 'fast-json-patch.LICENSE.txt'].sort();
  assert.deepEqual(readdirSync(DEMO_DIR).sort(), expected);
});
