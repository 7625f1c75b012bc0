export * from './client.js';
import type { JsonValue, PatchOperation } from './client.js';

/** fast-json-patch's applyPatch, returning the new value without mutating `value`. */
export function applyPatch(value: JsonValue, ops: PatchOperation[]): JsonValue;
