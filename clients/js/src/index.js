// @mesh-records/client — package entry: the core client with fast-json-patch as its JSON
// Patch implementation. Works in Node 20 (pass `WebSocket` from the `ws` package), with
// bundlers, and in browsers given an import map for "fast-json-patch".

import jsonpatch from 'fast-json-patch';
import { connect as connectCore, MeshClient, MeshError } from './client.js';

/** Applies RFC 6902 `ops` to `value` with fast-json-patch and returns the new value; `value`
 * is left untouched. Throws when an operation does not fit the value. */
export function applyPatch(value, ops) {
  return jsonpatch.applyPatch(value, ops, true, false).newDocument;
}

/** `connect` from `./client.js`, with `applyPatch` defaulting to fast-json-patch. */
export function connect(url, options = {}) {
  return connectCore(url, { ...options, applyPatch: options.applyPatch ?? applyPatch });
}

export { MeshClient, MeshError };
