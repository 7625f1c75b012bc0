// @mesh-records/client — core. No imports: this file runs as-is in browsers (as an ES module)
// and in Node 20. The JSON Patch function and the WebSocket class are injected (see
// `connect` below); `index.js` is the package entry that injects fast-json-patch.

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_MIN_DELAY_MS = 500;
const DEFAULT_MAX_DELAY_MS = 10_000;
// Token refresh: never sooner than this after the last one (guards against tokens that are
// already expired or live for a moment), and setTimeout's own upper limit.
const MIN_REFRESH_DELAY_MS = 1000;
const MAX_TIMER_MS = 2 ** 31 - 1;
// The close code the server uses when a connection's token expired.
const TOKEN_EXPIRED_CODE = 4001;
const EVENT_TYPES = ['open', 'close', 'reconnecting', 'reconnect', 'error'];

/** An error answered by the server (`code` is its code, e.g. `EFORBIDDEN`) or raised locally
 * (`ETIMEOUT`, `ECLOSED`, `EAUTH` when `getToken` fails). `serverName` is the server's error
 * name when it sent one; `version` the record's current version on `EVERSION`; `violations`
 * (`[{path, message}]`, JSON Pointer paths) what the record's schema refused on `ESCHEMA`. */
export class MeshError extends Error {
  constructor(message, code, serverName) {
    super(message);
    this.name = 'MeshError';
    this.code = code;
    if (serverName !== undefined) this.serverName = serverName;
  }
}

/** Turns the UMD build of fast-json-patch (global `jsonpatch`, as loaded by a classic
 * `<script>`) into the `(value, ops) => newValue` shape this client expects. */
function patchFromGlobal() {
  const lib = globalThis.jsonpatch;
  if (!lib || typeof lib.applyPatch !== 'function') return null;
  return (value, ops) => lib.applyPatch(value, ops, true, false).newDocument;
}

function isErrorPayload(payload) {
  return payload !== null && typeof payload === 'object' && typeof payload.error === 'string';
}

function decodeFrame(data) {
  let text = data;
  if (typeof text !== 'string') {
    try {
      text = new TextDecoder().decode(data);
    } catch {
      return null;
    }
  }
  try {
    const frame = JSON.parse(text);
    return frame !== null && typeof frame === 'object' && typeof frame.command === 'string'
      ? frame
      : null;
  } catch {
    return null;
  }
}

/** The claims of a JWT, decoded without verifying it (the server verifies; the client only
 * needs `exp` and `iat` to know when to refresh). Null when it is not a readable JWT. */
function jwtClaims(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** `exp` of a JWT in ms, or null when it has none (or is not a JWT). */
function expiryMs(token) {
  const exp = jwtClaims(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
}

/**
 * How long to wait before refreshing `token` (obtained at `obtainedAtMs`), or null when it has
 * no `exp`. The refresh is due 30 s or 10 % of the lifetime before `exp`, whichever comes first,
 * but never in the first half of the lifetime, so that short-lived tokens do not refresh in a
 * loop.
 */
function refreshDelayMs(token, obtainedAtMs, nowMs) {
  const expMs = expiryMs(token);
  if (expMs === null) return null;
  const iat = jwtClaims(token).iat;
  const issuedMs = typeof iat === 'number' && Number.isFinite(iat) ? iat * 1000 : obtainedAtMs;
  const lifetimeMs = Math.max(0, expMs - issuedMs);
  const leadMs = Math.min(Math.max(30_000, lifetimeMs * 0.1), lifetimeMs / 2);
  return Math.min(MAX_TIMER_MS, Math.max(MIN_REFRESH_DELAY_MS, expMs - leadMs - nowMs));
}

function withToken(url, token) {
  if (token === undefined || token === null || token === '') return String(url);
  const parsed = new URL(String(url));
  parsed.searchParams.set('token', token);
  return parsed.toString();
}

/**
 * Opens a connection and resolves once the server has assigned a connection id.
 *
 * @param {string} url  e.g. `ws://127.0.0.1:3000/ws`
 * @param {object} [options]
 * @param {string} [options.token]  JWT, sent as the `token` query parameter
 * @param {() => Promise<string> | string} [options.getToken]  returns a fresh JWT: called
 *   before the current one expires (sent with `mesh/refresh-token`) and before each reconnect
 * @param {Function} [options.WebSocket]  WebSocket class (default: `globalThis.WebSocket`)
 * @param {(value: any, ops: object[]) => any} [options.applyPatch]  RFC 6902 apply function
 *   returning the new value without mutating `value` (default: global `jsonpatch` if loaded)
 * @param {false | {minDelayMs?: number, maxDelayMs?: number, maxAttempts?: number}} [options.reconnect]
 * @param {number} [options.requestTimeoutMs]  default 10000
 * @returns {Promise<MeshClient>}
 */
export function connect(url, options = {}) {
  const client = new MeshClient(url, options);
  return client._start().then(() => client);
}

export class MeshClient {
  constructor(url, options = {}) {
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError(
        'No WebSocket implementation: pass one as options.WebSocket (in Node 20: the `ws` package)',
      );
    }
    if (options.getToken !== undefined && typeof options.getToken !== 'function') {
      throw new TypeError('options.getToken must be a function returning a JWT');
    }
    this._WebSocket = WebSocketImpl;
    this._baseUrl = String(url);
    this._token = options.token ? options.token : null; // the token the server holds now
    this._tokenAt = Date.now(); // when `_token` was obtained (its lifetime when it has no iat)
    this._getToken = options.getToken ?? null;
    this._refreshTimer = null;
    this._applyPatch = options.applyPatch ?? patchFromGlobal();
    this._timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (options.reconnect === false) {
      this._reconnect = null;
    } else {
      const r = options.reconnect ?? {};
      this._reconnect = {
        minDelayMs: r.minDelayMs ?? DEFAULT_MIN_DELAY_MS,
        maxDelayMs: Math.max(r.maxDelayMs ?? DEFAULT_MAX_DELAY_MS, r.minDelayMs ?? 0),
        maxAttempts: r.maxAttempts ?? Infinity,
      };
    }

    /** The id the server assigned to the current connection (changes on reconnect). */
    this.connectionId = null;
    /** Last round trip the server reported through `latency` pushes, in ms (or null). */
    this.latencyMs = null;

    this._state = 'idle'; // idle | connecting | open | reconnecting | closed
    this._socket = null;
    this._attempt = null; // the connection attempt in progress: { ws, abort }
    this._reconnectTimer = null;
    this._failedAttempts = 0;
    this._nextId = 1;
    this._pending = new Map(); // request id -> request, sent on the current socket
    this._queue = []; // requests waiting for a connection
    this._subs = new Map(); // record id -> subscription
    this._collections = new Map(); // collection id -> collection subscription
    this._listeners = new Map(EVENT_TYPES.map((type) => [type, new Set()]));
    const callbacks = {
      open: options.onOpen,
      close: options.onClose,
      reconnecting: options.onReconnecting,
      reconnect: options.onReconnect,
      error: options.onError,
    };
    for (const [type, fn] of Object.entries(callbacks)) if (fn) this.on(type, fn);
  }

  /** `idle`, `connecting`, `open`, `reconnecting` or `closed`. */
  get state() {
    return this._state;
  }

  /** True while a connection is up and requests go out at once. */
  get connected() {
    return this._state === 'open';
  }

  /**
   * Listens to `open` ({connectionId, reconnected}), `close` ({code, reason, willReconnect}),
   * `reconnecting` ({attempt, delayMs}), `reconnect` ({connectionId, attempts}) or
   * `error` (an Error: a failed resubscription, or an exception thrown by a callback).
   * Returns a function that removes the listener.
   */
  on(type, fn) {
    const set = this._listeners.get(type);
    if (!set) throw new TypeError(`unknown event "${type}" (one of ${EVENT_TYPES.join(', ')})`);
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(type, detail) {
    const listeners = this._listeners.get(type);
    if (type === 'error' && listeners.size === 0) {
      console.error('@mesh-records/client:', detail);
      return;
    }
    for (const fn of [...listeners]) {
      try {
        fn(detail);
      } catch (err) {
        if (type !== 'error') this._emit('error', err);
        else queueMicrotask(() => { throw err; });
      }
    }
  }

  // ---- connection lifecycle ------------------------------------------------------------

  async _start() {
    this._state = 'connecting';
    try {
      const token = this._token ?? (this._getToken ? await this._callGetToken() : null);
      if (this._state !== 'connecting') throw new MeshError('client closed while connecting', 'ECLOSED');
      await this._openSocket(withToken(this._baseUrl, token));
      this._useToken(token);
    } catch (err) {
      this._state = 'closed';
      throw err;
    }
    this._state = 'open';
    this._scheduleRefresh();
    this._emit('open', { connectionId: this.connectionId, reconnected: false });
  }

  /** Resolves when a new socket is open and `mesh/assign-id` has arrived; rejects (and drops
   * the socket) when it closes or times out before that. */
  _openSocket(url) {
    return new Promise((resolve, reject) => {
      let ws = null;
      let settled = false;
      let timer = null;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this._attempt = null;
        if (ws) {
          ws.onopen = ws.onmessage = ws.onclose = null;
          // Keep a listener: closing a socket that is still connecting makes the `ws` package
          // emit an error, which would be thrown without one.
          ws.onerror = () => {};
          try {
            ws.close();
          } catch {
            // a socket that never opened may refuse to close; it is dropped either way
          }
        }
        reject(err);
      };
      try {
        ws = new this._WebSocket(url);
      } catch (err) {
        ws = null;
        fail(err);
        return;
      }
      this._attempt = { ws, abort: fail };
      ws.binaryType = 'arraybuffer';
      timer = setTimeout(
        () => fail(new MeshError(`no mesh/assign-id within ${this._timeoutMs} ms`, 'ETIMEOUT')),
        this._timeoutMs,
      );
      ws.onerror = () => {
        // always followed by a close event, which decides
      };
      ws.onclose = (event) => {
        if (!settled) {
          fail(new MeshError(`connection closed before mesh/assign-id (code ${event.code})`, 'ECLOSED'));
        } else {
          this._onSocketClosed(ws, event);
        }
      };
      ws.onmessage = (event) => {
        const frame = decodeFrame(event.data);
        if (!frame) return;
        if (settled) {
          if (this._socket === ws) this._receive(frame);
          return;
        }
        if (frame.command === 'mesh/assign-id' && frame.id === undefined) {
          settled = true;
          clearTimeout(timer);
          this._attempt = null;
          this._socket = ws;
          this.connectionId = String(frame.payload);
          resolve();
        }
      };
    });
  }

  _onSocketClosed(ws, event) {
    if (this._socket !== ws) return;
    this._socket = null;
    this._cancelRefresh();
    this._failAll(this._pending, () => new MeshError(`connection closed (code ${event.code}) before the reply`, 'ECLOSED'));
    // Without getToken, a connection closed for an expired token cannot come back.
    const tokenLost = event.code === TOKEN_EXPIRED_CODE && !this._getToken;
    const willReconnect = this._state !== 'closed' && this._reconnect !== null && !tokenLost;
    this._emit('close', { code: event.code, reason: event.reason ?? '', willReconnect });
    if (willReconnect) {
      this._state = 'reconnecting';
      this._failedAttempts = 0;
      this._scheduleReconnect();
    } else {
      this._shutDown('connection closed');
    }
  }

  _scheduleReconnect() {
    const { minDelayMs, maxDelayMs, maxAttempts } = this._reconnect;
    if (this._failedAttempts >= maxAttempts) {
      this._shutDown(`gave up reconnecting after ${maxAttempts} attempts`);
      return;
    }
    // Exponential backoff with jitter: a random delay in [base/2, base].
    const base = Math.min(maxDelayMs, minDelayMs * 2 ** this._failedAttempts);
    const delayMs = Math.round(base / 2 + (Math.random() * base) / 2);
    this._failedAttempts += 1;
    this._emit('reconnecting', { attempt: this._failedAttempts, delayMs });
    this._reconnectTimer = setTimeout(() => this._tryReconnect(), delayMs);
  }

  async _tryReconnect() {
    this._reconnectTimer = null;
    if (this._state !== 'reconnecting') return;
    let token;
    try {
      token = await this._tokenForReconnect();
      if (this._state !== 'reconnecting') return;
      await this._openSocket(withToken(this._baseUrl, token));
    } catch {
      if (this._state === 'reconnecting') this._scheduleReconnect();
      return;
    }
    if (this._state !== 'reconnecting') return;
    if (token !== this._token) this._useToken(token);
    const attempts = this._failedAttempts;
    this._failedAttempts = 0;
    this._state = 'open';
    this._scheduleRefresh();
    // Subscriptions first, so that requests queued meanwhile run after them.
    const subs = [...this._subs.values()];
    const resubscribed = subs.map((sub) => this._subscribeAgain(sub, 'reconnect', false));
    this._flushQueue();
    this._emit('open', { connectionId: this.connectionId, reconnected: true });
    for (const col of this._collections.values()) this._collectionAgain(col, 'reconnect');
    const outcomes = await Promise.all(resubscribed);
    const resumed = subs.filter((_, i) => outcomes[i] === 'resumed').map((sub) => sub.recordId);
    const full = subs.filter((_, i) => outcomes[i] === 'full').map((sub) => sub.recordId);
    if (this._state === 'open') this._emit('reconnect', { connectionId: this.connectionId, attempts, resumed, full });
  }

  /**
   * Skips the wait before the next reconnect attempt, for example on the browser's `online`
   * event. Returns true if an attempt started; false when the client is not waiting to
   * reconnect (connected, closed, or an attempt is already under way).
   */
  reconnectNow() {
    if (this._state !== 'reconnecting' || this._reconnectTimer === null) return false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._tryReconnect();
    return true;
  }

  // ---- tokens ----------------------------------------------------------------------------

  /** Calls `getToken`, within the request timeout. Rejects with `EAUTH` (the cause attached)
   * when it throws or returns something other than a non-empty string. */
  async _callGetToken() {
    let timer = null;
    try {
      const token = await Promise.race([
        Promise.resolve().then(() => this._getToken()),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new MeshError(`getToken did not answer within ${this._timeoutMs} ms`, 'EAUTH')),
            this._timeoutMs,
          );
        }),
      ]);
      if (typeof token !== 'string' || token === '') throw new MeshError('getToken returned no token', 'EAUTH');
      return token;
    } catch (err) {
      if (err instanceof MeshError) throw err;
      const wrapped = new MeshError(`getToken failed: ${err?.message ?? err}`, 'EAUTH');
      wrapped.cause = err;
      throw wrapped;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The token to reconnect with: a fresh one from `getToken`; if that fails (reported as an
   * error), the current one while it has not expired. */
  async _tokenForReconnect() {
    if (!this._getToken) return this._token;
    try {
      return await this._callGetToken();
    } catch (err) {
      this._emit('error', err);
      const expMs = expiryMs(this._token);
      if (this._token && (expMs === null || expMs > Date.now())) return this._token;
      throw err;
    }
  }

  _useToken(token) {
    this._token = token;
    this._tokenAt = Date.now();
  }

  _cancelRefresh() {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = null;
  }

  /** Arms the refresh of the current token (only with `getToken`, and a token with `exp`). */
  _scheduleRefresh(delayMs = refreshDelayMs(this._token, this._tokenAt, Date.now())) {
    this._cancelRefresh();
    if (!this._getToken || this._state !== 'open' || delayMs === null) return;
    this._refreshTimer = setTimeout(() => this._refreshToken(), delayMs);
  }

  /** Sends a fresh token with `mesh/refresh-token`. A failure is reported as an error and
   * retried while the current token lasts; the server closes the connection (4001) when it
   * expires, and the reconnect then fetches a fresh token. */
  async _refreshToken() {
    this._refreshTimer = null;
    const socket = this._socket;
    if (this._state !== 'open' || !socket) return;
    let token;
    try {
      token = await this._callGetToken();
      if (this._socket !== socket) return; // reconnected meanwhile, with a fresh token
      await this._request('mesh/refresh-token', { token }, this._timeoutMs);
    } catch (err) {
      if (this._socket !== socket || this._state !== 'open') return;
      this._emit('error', err);
      if (err.code === 'ENOTFOUND') return; // this server cannot refresh: nothing to retry
      const expMs = expiryMs(this._token);
      if (expMs === null) return;
      this._scheduleRefresh(Math.min(30_000, Math.max(MIN_REFRESH_DELAY_MS, (expMs - Date.now()) / 2)));
      return;
    }
    if (this._socket !== socket) return;
    this._useToken(token);
    this._scheduleRefresh();
  }

  _shutDown(reason) {
    this._state = 'closed';
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._cancelRefresh();
    this._attempt?.abort(new MeshError(`client closed: ${reason}`, 'ECLOSED'));
    const error = () => new MeshError(`client closed: ${reason}`, 'ECLOSED');
    this._failAll(this._pending, error);
    for (const request of this._queue.splice(0)) request.fail(error());
  }

  _failAll(requests, makeError) {
    for (const request of [...requests.values()]) request.fail(makeError());
  }

  /** Closes the connection for good (no reconnect). Pending requests reject with `ECLOSED`.
   * Subscriptions end silently. Resolves once the socket is closed. */
  close() {
    const ws = this._socket;
    this._subs.clear();
    this._shutDown('close() was called');
    this._socket = null;
    if (!ws || ws.readyState === 3) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, 2000);
      ws.onclose = (event) => {
        this._emit('close', { code: event.code, reason: event.reason ?? '', willReconnect: false });
        done();
      };
      ws.onmessage = null;
      try {
        ws.close(1000, 'client closed');
      } catch {
        done();
      }
    });
  }

  // ---- requests --------------------------------------------------------------------------

  /**
   * Sends any command and resolves with the reply's payload; rejects with a `MeshError`
   * carrying the server's `code` when the reply is an error payload, `ETIMEOUT` after
   * `timeoutMs` (default: the client's `requestTimeoutMs`), `ECLOSED` if the connection
   * closes before the reply. While reconnecting, requests wait for the new connection.
   */
  command(name, payload = {}, { timeoutMs } = {}) {
    if (typeof name !== 'string' || name === '') {
      return Promise.reject(new TypeError('command name must be a non-empty string'));
    }
    return this._request(name, payload, timeoutMs ?? this._timeoutMs);
  }

  /** Sends a request. `onReply`, if given, runs synchronously when the reply arrives (before
   * any later frame is handled) and its result resolves the promise; if it throws, the
   * promise rejects. Frames of one chunk can be handled back to back without microtasks in
   * between (the `ws` package does that), so state that the next push depends on must be set
   * there, not after an `await`. */
  _request(command, payload, timeoutMs, onReply) {
    if (this._state === 'closed' || this._state === 'idle') {
      return Promise.reject(new MeshError('client is closed', 'ECLOSED'));
    }
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      const request = {
        id,
        command,
        payload,
        timer: null,
        settle: () => {
          clearTimeout(request.timer);
          this._pending.delete(id);
          const queued = this._queue.indexOf(request);
          if (queued >= 0) this._queue.splice(queued, 1);
        },
        fail: (err) => {
          request.settle();
          reject(err);
        },
        succeed: (value) => {
          request.settle();
          if (!onReply) {
            resolve(value);
            return;
          }
          try {
            resolve(onReply(value));
          } catch (err) {
            reject(err);
          }
        },
      };
      request.timer = setTimeout(
        () => request.fail(new MeshError(`"${command}" got no reply within ${timeoutMs} ms`, 'ETIMEOUT')),
        timeoutMs,
      );
      if (this._state === 'open') this._send(request);
      else this._queue.push(request);
    });
  }

  _send(request) {
    if (this._socket?.readyState !== 1) {
      // The socket is closing (its close event is still to come): the request was not sent,
      // so it waits for the next connection instead of failing as if it might have happened.
      this._queue.push(request);
      return;
    }
    this._pending.set(request.id, request);
    try {
      this._socket.send(JSON.stringify({ id: request.id, command: request.command, payload: request.payload }));
    } catch (err) {
      request.fail(new MeshError(`could not send "${request.command}": ${err.message}`, 'ECLOSED'));
    }
  }

  _flushQueue() {
    for (const request of this._queue.splice(0)) this._send(request);
  }

  _sendPush(command, payload) {
    if (this._socket?.readyState !== 1) return; // closing: nothing to answer any more
    try {
      this._socket.send(JSON.stringify({ command, payload }));
    } catch {
      // the close event handles a broken socket
    }
  }

  // ---- incoming frames -------------------------------------------------------------------

  /** Handles one decoded frame from the server. Tests call it to feed crafted pushes. */
  _receive(frame) {
    if (typeof frame.id === 'number') {
      const request = this._pending.get(frame.id);
      if (!request) return;
      if (isErrorPayload(frame.payload)) {
        const p = frame.payload;
        const err = new MeshError(p.error, typeof p.code === 'string' ? p.code : 'ESERVER', p.name);
        if (Number.isInteger(p.version)) err.version = p.version; // EVERSION: the current version
        // ESCHEMA: where the value breaks the record's schema ({path, message}), for forms.
        if (Array.isArray(p.violations)) err.violations = p.violations;
        request.fail(err);
      } else {
        request.succeed(frame.payload);
      }
      return;
    }
    switch (frame.command) {
      case 'ping':
        this._sendPush('pong', {});
        break;
      case 'latency:request':
        this._sendPush('latency:response', {});
        break;
      case 'latency':
        if (typeof frame.payload === 'number') this.latencyMs = frame.payload;
        break;
      case 'mesh/record-update':
        this._onMemberUpdate(frame.payload);
        this._onRecordUpdate(frame.payload);
        break;
      case 'mesh/collection-diff':
        this._onCollectionDiff(frame.payload);
        break;
      case 'mesh/record-deleted':
        this._onRecordDeleted(frame.payload);
        break;
      default:
        break; // pushes this client does not know are ignored
    }
  }

  _onRecordUpdate(payload) {
    if (!payload || typeof payload.recordId !== 'string' || !Number.isInteger(payload.version)) return;
    const sub = this._subs.get(payload.recordId);
    if (!sub || !sub.live) return;
    const version = payload.version;
    if (version <= sub.version) return; // already seen (or older than the snapshot)
    if ('full' in payload) {
      // A full value is always taken when it is newer, even across a gap: it is the server's
      // resync.
      sub.value = payload.full;
      sub.version = version;
      this._report(sub, { recordId: sub.recordId, value: sub.value, version, full: true });
      return;
    }
    if (!Array.isArray(payload.patch)) return;
    if (version !== sub.version + 1) {
      this._resync(sub);
      return;
    }
    if (!this._applyPatch) {
      this._emit('error', new MeshError('a patch arrived but no applyPatch function is set', 'EINVALID'));
      return;
    }
    let next;
    try {
      // A record that did not exist counts as {} for the first patch.
      next = this._applyPatch(sub.value ?? {}, payload.patch);
    } catch {
      this._resync(sub);
      return;
    }
    sub.value = next;
    sub.version = version;
    this._report(sub, { recordId: sub.recordId, value: next, version, patch: payload.patch });
  }

  _onRecordDeleted(payload) {
    if (!payload || typeof payload.recordId !== 'string') return;
    const sub = this._subs.get(payload.recordId);
    if (!sub || !sub.live) return;
    this._subs.delete(sub.recordId);
    sub.live = false;
    this._report(sub, { recordId: sub.recordId, deleted: true, value: null, version: payload.version });
  }

  _report(sub, update) {
    try {
      sub.onUpdate(update);
    } catch (err) {
      this._emit('error', err);
    }
  }

  // ---- records ---------------------------------------------------------------------------

  /**
   * Subscribes to a record. Resolves with the snapshot `{record, version}` (`record` is null
   * when it does not exist, with the version it was deleted at, or 0 if it never existed; a
   * record written again continues after that version); `onUpdate` then gets every later value:
   * `{recordId, value, version, patch}` after a patch, `{recordId, value, version, full: true}`
   * after a full value, a resync or a reconnect, and `{recordId, deleted: true, value: null,
   * version}` when the record is deleted (which ends the subscription). Subscribing again to
   * the same id replaces the callback and mode. Rejects with code `EFORBIDDEN` when the server
   * refuses.
   */
  async subscribeRecord(recordId, onUpdate, { mode = 'full' } = {}) {
    if (typeof recordId !== 'string' || recordId === '') throw new TypeError('recordId must be a non-empty string');
    if (typeof onUpdate !== 'function') throw new TypeError('onUpdate must be a function');
    if (mode !== 'full' && mode !== 'patch') throw new TypeError('mode must be "full" or "patch"');
    if (mode === 'patch' && !this._applyPatch) {
      throw new TypeError('patch mode needs options.applyPatch (or fast-json-patch loaded as the global `jsonpatch`)');
    }
    const previous = this._subs.get(recordId);
    if (previous) previous.live = false;
    // live: pushes are applied. synced: `value` is the record's value at `version`, so a
    // reconnect can resume from there instead of fetching the whole value again.
    const sub = { recordId, mode, onUpdate, value: null, version: 0, live: false, synced: false };
    this._subs.set(recordId, sub);
    try {
      return await this._request('mesh/subscribe-record', { recordId, mode }, this._timeoutMs, (reply) => {
        if (this._subs.get(recordId) !== sub) {
          // unsubscribed or replaced while the request was in flight
          return { record: reply?.record ?? null, version: reply?.version ?? 0 };
        }
        if (!reply || reply.success !== true) {
          throw new MeshError(`subscription to "${recordId}" refused`, 'EFORBIDDEN');
        }
        sub.value = reply.record ?? null;
        sub.version = reply.version ?? 0;
        sub.live = true;
        sub.synced = true;
        return { record: sub.value, version: sub.version };
      });
    } catch (err) {
      if (this._subs.get(recordId) === sub) this._subs.delete(recordId);
      throw err;
    }
  }

  /** Subscribes again after a gap: unsubscribe, subscribe, report the new snapshot. */
  _resync(sub) {
    sub.live = false; // pushes for it are dropped until the new snapshot arrives
    sub.synced = false;
    this._request('mesh/unsubscribe-record', { recordId: sub.recordId }, this._timeoutMs).catch(() => {});
    return this._subscribeAgain(sub, 'resync', true);
  }

  /**
   * Re-subscribes `sub`. After a reconnect, a subscription whose value is in sync asks to
   * resume from its version (`sinceVersion`): when the server agrees, the value is kept and the
   * missed changes arrive as ordinary pushes; otherwise the snapshot is reported with
   * `full: true, [reason]: true`. Resolves with `'resumed'`, `'full'`, or null when the
   * subscription ended or failed (failures go to the `error` event).
   */
  async _subscribeAgain(sub, reason, alreadyPaused) {
    if (!alreadyPaused) sub.live = false;
    const current = () => this._subs.get(sub.recordId) === sub;
    const payload = { recordId: sub.recordId, mode: sub.mode };
    const since = reason === 'reconnect' && sub.synced ? sub.version : null;
    if (since !== null) payload.sinceVersion = since;
    let outcome;
    try {
      outcome = await this._request('mesh/subscribe-record', payload, this._timeoutMs, (reply) => {
        if (!current()) return null;
        if (!reply || reply.success !== true) {
          throw new MeshError(`subscription to "${sub.recordId}" refused after ${reason}`, 'EFORBIDDEN');
        }
        if (reply.resumed === true) {
          // Runs before the next frame: the missed pushes that follow find the subscription live.
          if (since === null || reply.version !== since) return 'mismatch';
          sub.live = true;
          return 'resumed';
        }
        sub.value = reply.record ?? null;
        sub.version = reply.version ?? 0;
        sub.live = true;
        sub.synced = true;
        this._report(sub, { recordId: sub.recordId, value: sub.value, version: sub.version, full: true, [reason]: true });
        return 'full';
      });
    } catch (err) {
      if (!current()) return null;
      if (err.code === 'ECLOSED' && this._state !== 'closed') return null; // the next reconnect retries
      this._subs.delete(sub.recordId);
      err.recordId = sub.recordId;
      this._emit('error', err);
      return null;
    }
    // A resume from a version this client did not ask for: start over from a snapshot.
    if (outcome === 'mismatch') return this._resync(sub);
    return outcome;
  }

  /** Ends a subscription. Resolves with the server's answer (true if it was subscribed); false
   * without asking when the client is not connected (nothing is resubscribed later). */
  async unsubscribeRecord(recordId) {
    const sub = this._subs.get(recordId);
    if (sub) {
      sub.live = false;
      this._subs.delete(recordId);
    }
    if (this._state !== 'open') return false;
    return this._request('mesh/unsubscribe-record', { recordId }, this._timeoutMs);
  }

  /**
   * Writes a record. `strategy`: `replace` (default), `merge` (shallow, top-level keys) or
   * `deepMerge`. `expectedVersion`: write only if the record is at that version (0: only if
   * it does not exist); otherwise nothing is written and the promise rejects with code
   * `EVERSION` and `version` (the current one). Resolves with the server's reply
   * (`{success: true}`); rejects with a `MeshError` (`EFORBIDDEN`, `EINVALID`, `ELIMIT`,
   * `ESCHEMA` with `violations`, ...) otherwise.
   */
  /** Same as `writeRecord` (the name the issue tracker and some apps use). */
  publish(recordId, value, options) {
    return this.writeRecord(recordId, value, options);
  }

  async writeRecord(recordId, value, { strategy, expectedVersion } = {}) {
    if (typeof recordId !== 'string' || recordId === '') throw new TypeError('recordId must be a non-empty string');
    if (expectedVersion !== undefined && !(Number.isSafeInteger(expectedVersion) && expectedVersion >= 0)) {
      throw new TypeError('expectedVersion must be a non-negative integer');
    }
    const payload = { recordId, newValue: value };
    const options = {};
    if (strategy !== undefined) options.strategy = strategy;
    if (expectedVersion !== undefined) options.expectedVersion = expectedVersion;
    if (Object.keys(options).length > 0) payload.options = options;
    return this._request('mesh/publish-record-update', payload, this._timeoutMs);
  }

  /** The last value and version this client holds for a subscribed record (or undefined). */
  getRecord(recordId) {
    const sub = this._subs.get(recordId);
    return sub ? { value: sub.value, version: sub.version } : undefined;
  }

  // ---- collections -----------------------------------------------------------------------

  /**
   * Subscribes to a collection (a live list of records). Resolves with the server's reply
   * `{success, ids, records: [{id, record}], version}` (`success: false` with empty lists when
   * the server refuses, as Mesh's client does). `onDiff({added, removed, changed, version})`
   * gets the snapshot first (as `added`), then each change: `added` / `removed` as
   * `[{id, record}]` when membership changes (`version` counts the diffs), `changed`
   * `[{id, record}]` when a member's value changes (`version` is then the record's). A gap in
   * diff versions resubscribes, and so does a reconnect, asking this server to resume: the
   * members that came arrive as `added`, those that went as `removed`, those that changed
   * meanwhile as `changed`, flagged `resumed: true` and `resync: true` or `reconnect: true`.
   * (A server that cannot resume, such as Mesh's, sends the whole list again as `added`.)
   */
  async subscribeCollection(collectionId, { onDiff } = {}) {
    if (typeof collectionId !== 'string' || collectionId === '') {
      throw new TypeError('collectionId must be a non-empty string');
    }
    if (onDiff !== undefined && typeof onDiff !== 'function') throw new TypeError('onDiff must be a function');
    // versions: member id -> the record version this client holds (when it knows it).
    const col = { collectionId, onDiff, ids: new Set(), versions: new Map(), version: 0, live: false };
    this._collections.set(collectionId, col);
    const reply = await this._collectionAgain(col, null);
    return reply ?? { success: false, ids: [], records: [], version: 0 };
  }

  /** Subscribes (again) and reports the snapshot; resolves with the reply, or null. */
  async _collectionAgain(col, reason) {
    col.live = false;
    const current = () => this._collections.get(col.collectionId) === col;
    const payload = { collectionId: col.collectionId };
    if (reason && col.version > 0) {
      payload.sinceVersion = col.version;
      payload.members = Object.fromEntries([...col.ids].filter((id) => col.versions.has(id)).map((id) => [id, col.versions.get(id)]));
    }
    let reply;
    try {
      reply = await this._request('mesh/subscribe-collection', payload, this._timeoutMs, (r) => {
        if (!current()) return r;
        if (!r || r.success !== true) {
          this._collections.delete(col.collectionId);
          return { success: false, ids: [], records: [], version: 0 };
        }
        const diff = this._takeOpening(col, r);
        if (reason) diff[reason] = true;
        this._reportDiff(col, diff);
        return r;
      });
    } catch (err) {
      if (!current()) return null;
      if (err.code === 'ECLOSED' && this._state !== 'closed') return null; // the next reconnect retries
      this._collections.delete(col.collectionId);
      err.collectionId = col.collectionId;
      if (reason) this._emit('error', err);
      else throw err;
      return null;
    }
    return reply;
  }

  /** Takes in a subscribe reply (a snapshot, or a resume) and says what it changed. */
  _takeOpening(col, r) {
    const ids = Array.isArray(r.ids) ? r.ids : [];
    const records = Array.isArray(r.records) ? r.records : [];
    const before = col.ids;
    col.ids = new Set(ids);
    col.version = Number.isInteger(r.version) ? r.version : 1;
    col.live = true;
    if (r.resumed !== true) col.versions = new Map();
    for (const id of col.versions.keys()) if (!col.ids.has(id)) col.versions.delete(id);
    for (const m of records) if (Number.isInteger(m?.version)) col.versions.set(m.id, m.version);
    const entry = (m) => ({ id: m?.id, record: m?.record });
    if (r.resumed !== true) return { added: records.map(entry), removed: [], changed: [], version: col.version };
    return {
      added: records.filter((m) => !before.has(m?.id)).map(entry),
      removed: [...before].filter((id) => !col.ids.has(id)).map((id) => ({ id, record: { id } })),
      changed: records.filter((m) => before.has(m?.id)).map(entry),
      version: col.version,
      resumed: true,
    };
  }

  _onCollectionDiff(payload) {
    if (!payload || typeof payload.collectionId !== 'string') return;
    const col = this._collections.get(payload.collectionId);
    if (!col || !col.live) return;
    if (payload.version !== col.version + 1) {
      this._request('mesh/unsubscribe-collection', { collectionId: col.collectionId }, this._timeoutMs).catch(() => {});
      this._collectionAgain(col, 'resync');
      return;
    }
    col.version = payload.version;
    const wrap = (members) => (Array.isArray(members) ? members : []).map((m) => ({ id: m?.id, record: m }));
    const added = wrap(payload.added);
    const removed = wrap(payload.removed);
    for (const m of added) col.ids.add(m.id);
    for (const m of removed) {
      col.ids.delete(m.id);
      col.versions.delete(m.id);
    }
    this._reportDiff(col, { added, removed, changed: [], version: payload.version });
  }

  _onMemberUpdate(payload) {
    if (!payload || typeof payload.recordId !== 'string' || !('full' in payload)) return;
    for (const col of this._collections.values()) {
      if (!col.live || !col.ids.has(payload.recordId)) continue;
      if (Number.isInteger(payload.version)) col.versions.set(payload.recordId, payload.version);
      const changed = [{ id: payload.recordId, record: payload.full }];
      this._reportDiff(col, { added: [], removed: [], changed, version: payload.version });
    }
  }

  _reportDiff(col, diff) {
    if (!col.onDiff) return;
    try {
      col.onDiff(diff);
    } catch (err) {
      this._emit('error', err);
    }
  }

  /** Ends a collection subscription: true if the server had it. */
  async unsubscribeCollection(collectionId) {
    const col = this._collections.get(collectionId);
    if (col) {
      col.live = false;
      this._collections.delete(collectionId);
    }
    if (this._state !== 'open') return false;
    return this._request('mesh/unsubscribe-collection', { collectionId }, this._timeoutMs);
  }

  /** The member ids this client holds for a subscribed collection (or undefined). */
  getCollection(collectionId) {
    const col = this._collections.get(collectionId);
    return col ? { ids: [...col.ids], version: col.version } : undefined;
  }
}
