// Types for @mesh-records/client (core entry `@mesh-records/client/core`; the package entry
// re-exports all of it).

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** One RFC 6902 operation. */
export interface PatchOperation {
  op: 'add' | 'remove' | 'replace' | 'move' | 'copy' | 'test';
  path: string;
  from?: string;
  value?: JsonValue;
}

export type ApplyPatch = (value: JsonValue, ops: PatchOperation[]) => JsonValue;

export interface ReconnectOptions {
  /** First delay after an unexpected close (default 500). Each failed attempt doubles it. */
  minDelayMs?: number;
  /** Longest delay between attempts (default 10000). */
  maxDelayMs?: number;
  /** Give up (state `closed`) after this many failed attempts in a row (default: never). */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** JWT sent as the `token` query parameter. */
  token?: string;
  /** Returns a fresh JWT. Called for the first connection when `token` is not given, before
   * the current token's `exp` (sent with `mesh/refresh-token`; 30 s or 10 % of its lifetime
   * ahead, whichever is earlier, but not in its first half) and before every reconnect.
   * Failures reach the `error` event as `EAUTH`. */
  getToken?: () => string | Promise<string>;
  /** WebSocket class; default `globalThis.WebSocket` (Node 20 has none: pass `ws`'s). */
  WebSocket?: unknown;
  /** JSON Patch apply function: returns the new value and leaves `value` alone. */
  applyPatch?: ApplyPatch;
  /** `false` turns reconnecting off. */
  reconnect?: ReconnectOptions | false;
  /** Timeout of each request, and of waiting for `mesh/assign-id` (default 10000). */
  requestTimeoutMs?: number;
  onOpen?: (event: OpenEvent) => void;
  onClose?: (event: CloseEvent) => void;
  onReconnecting?: (event: ReconnectingEvent) => void;
  onReconnect?: (event: ReconnectEvent) => void;
  onError?: (error: Error) => void;
}

export interface OpenEvent { connectionId: string; reconnected: boolean }
export interface CloseEvent { code: number; reason: string; willReconnect: boolean }
export interface ReconnectingEvent { attempt: number; delayMs: number }
export interface ReconnectEvent {
  connectionId: string;
  attempts: number;
  /** Subscriptions that resumed from the version they held (the missed changes follow as
   * ordinary pushes). */
  resumed: string[];
  /** Subscriptions that got a whole new snapshot (reported with `full: true, reconnect: true`). */
  full: string[];
}

export interface EventMap {
  open: OpenEvent;
  close: CloseEvent;
  reconnecting: ReconnectingEvent;
  reconnect: ReconnectEvent;
  error: Error;
}

export interface RecordUpdate<T = JsonValue> {
  recordId: string;
  /** The value at `version` (null after a deletion, or for a record that does not exist). */
  value: T | null;
  version: number;
  /** Present when the update came as a patch push. */
  patch?: PatchOperation[];
  /** True when the value came whole: a full-mode push, a resync or a reconnect. */
  full?: true;
  /** True when the client subscribed again after a version gap. */
  resync?: true;
  /** True when the client subscribed again after reconnecting and the server could not resume
   * from the version it held. */
  reconnect?: true;
  /** True when the record was deleted; the subscription has ended. */
  deleted?: true;
}

export interface Snapshot<T = JsonValue> {
  record: T | null;
  version: number;
}

/** One collection member: the record's value with `id` set (`{id, value}` for a value that is
 * not an object), wrapped with its id. */
export interface CollectionEntry<T = JsonValue> {
  id: string;
  record: T;
}

export interface CollectionDiff<T = JsonValue> {
  /** Members that entered (all of them for a snapshot; after a resume, those that came). */
  added: CollectionEntry<T>[];
  /** Members that left (`record` is `{id}` when the record is gone). */
  removed: CollectionEntry<T>[];
  /** Members whose value changed (`record` is the raw value; after a resume, the member). */
  changed: CollectionEntry<T>[];
  /** The collection's diff count for added/removed; the record's version for `changed`. */
  version: number;
  /** True when the reply came after a version gap. */
  resync?: true;
  /** True when the reply came after a reconnect. */
  reconnect?: true;
  /** True when the server resumed: the diff holds only what changed while away. */
  resumed?: true;
}

export interface CollectionReply<T = JsonValue> {
  success: boolean;
  ids: string[];
  records: CollectionEntry<T>[];
  version: number;
}

export type Strategy = 'replace' | 'merge' | 'deepMerge';

export interface WriteOptions {
  strategy?: Strategy;
  /** Write only if the record is at this version (0: only if it does not exist); otherwise
   * reject with `EVERSION` and the current `version`. */
  expectedVersion?: number;
}

export class MeshError extends Error {
  /** Server codes: EINVALID, EFORBIDDEN, ENOTFOUND, ELIMIT, ERATELIMIT, EUNAVAILABLE, EUNKNOWN,
   * ECONFLICT, EVERSION, ESCHEMA, EAUTH, ESERVER, or a custom command's; local: ETIMEOUT,
   * ECLOSED, EAUTH (getToken failed). */
  code: string;
  /** The error name the server sent (e.g. `ForbiddenError`), if any. */
  serverName?: string;
  /** On `EVERSION`: the record's current version (0 when it does not exist). */
  version?: number;
  /** On `ESCHEMA`: where the value that would have been stored breaks the record's schema
   * (`path` a JSON Pointer, `""` the whole value), at most a few. */
  violations?: { path: string; message: string }[];
  /** Set on errors about one subscription (reported through the `error` event). */
  recordId?: string;
  /** Set on errors about one collection subscription. */
  collectionId?: string;
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export class MeshClient {
  constructor(url: string, options?: ConnectOptions);
  /** The id the server assigned to the current connection; changes after a reconnect. */
  readonly connectionId: string | null;
  /** Last latency the server reported (ms), or null. */
  readonly latencyMs: number | null;
  readonly state: ClientState;
  readonly connected: boolean;
  on<K extends keyof EventMap>(type: K, listener: (event: EventMap[K]) => void): () => void;
  subscribeRecord<T = JsonValue>(
    recordId: string,
    onUpdate: (update: RecordUpdate<T>) => void,
    options?: { mode?: 'full' | 'patch' },
  ): Promise<Snapshot<T>>;
  unsubscribeRecord(recordId: string): Promise<boolean>;
  writeRecord(recordId: string, value: JsonValue, options?: WriteOptions): Promise<{ success: true }>;
  /** Same as `writeRecord`. */
  publish(recordId: string, value: JsonValue, options?: WriteOptions): Promise<{ success: true }>;
  /** Skips the backoff wait and tries to reconnect now; false when not waiting to reconnect. */
  reconnectNow(): boolean;
  command<R = unknown>(name: string, payload?: unknown, options?: { timeoutMs?: number }): Promise<R>;
  getRecord<T = JsonValue>(recordId: string): { value: T | null; version: number } | undefined;
  /** Subscribes to a collection (Mesh's `subscribeCollection`); `success: false` when refused. */
  subscribeCollection<T = JsonValue>(
    collectionId: string,
    options?: { onDiff?: (diff: CollectionDiff<T>) => void },
  ): Promise<CollectionReply<T>>;
  unsubscribeCollection(collectionId: string): Promise<boolean>;
  getCollection(collectionId: string): { ids: string[]; version: number } | undefined;
  close(): Promise<void>;
}

export function connect(url: string, options?: ConnectOptions): Promise<MeshClient>;
