// Test helpers: run the real mesh-records binary on a free port with a config written here,
// a fake in-process Mesh server for the version logic, and small waiting utilities.

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocket, WebSocketServer } from 'ws';

export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(PACKAGE_DIR, '../..');
export const ADMIN_TOKEN = 'test-admin-token';

/** The server binary: $MESH_RECORDS_BIN, else target/release, else target/debug. */
export function serverBinary() {
  if (process.env.MESH_RECORDS_BIN) {
    const bin = path.resolve(PACKAGE_DIR, process.env.MESH_RECORDS_BIN);
    if (!existsSync(bin)) throw new Error(`MESH_RECORDS_BIN=${bin} does not exist`);
    return bin;
  }
  for (const profile of ['release', 'debug']) {
    const bin = path.resolve(PACKAGE_DIR, '../../target', profile, 'mesh-records');
    if (existsSync(bin)) return bin;
  }
  throw new Error('no mesh-records binary: run `cargo build` at the repository root or set MESH_RECORDS_BIN');
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** The config file the tests run the server with: memory store, `t:`, `cursors:` and `todo:`
 * writable for anyone, `s:` too but held to a small schema ({n: integer}), the admin API on
 * (for deletions). `historyVersions` sets
 * `[records] history_versions`; `jwtSecret` turns on `[auth]` with tokens required. */
export function configText({ port, pingIntervalMs = 30_000, maxMissedPongs = 1, historyVersions, jwtSecret }) {
  const history = historyVersions === undefined ? '' : `\n[records]\nhistory_versions = ${historyVersions}\n`;
  const auth = jwtSecret === undefined ? '' : `\n[auth]\njwt_secret = "${jwtSecret}"\nrequired = true\n`;
  return `# written by clients/js/test/helpers.js
[server]
host = "127.0.0.1"
port = ${port}
ws_path = "/ws"
workers = 1
ping_interval_ms = ${pingIntervalMs}
max_missed_pongs = ${maxMissedPongs}

[store]
backend = "memory"

[admin]
token = "${ADMIN_TOKEN}"
${history}${auth}
[[records.expose]]
pattern = "^t:"
writable = true

[[records.expose]]
pattern = "^cursors:"
writable = true

[[records.expose]]
pattern = "^todo:"
writable = true

[[records.expose]]
pattern = "^s:"
writable = true
schema = { type = "object", properties = { n = { type = "integer" } }, additionalProperties = false }

[[collections.expose]]
pattern = "^list:([A-Za-z0-9_]+)$"
members = "t:{1}:*"

[[collections.expose]]
id = "todos"
members = "todo:*"
`;
}

/** The repository's own config.toml on `port`, with a database that keeps nothing: the demo's
 * exposures, collections and write rules exactly as shipped (the browser test runs the demo
 * against them). Its schema files come along (see startServer's `shipped`). */
export function shippedConfigText({ port }) {
  let text = readFileSync(path.join(REPO_DIR, 'config.toml'), 'utf8');
  const swap = (pattern, line) => {
    if (!pattern.test(text)) throw new Error(`config.toml has no line matching ${pattern}`);
    text = text.replace(pattern, line);
  };
  swap(/^port = \d+$/m, `port = ${port}`);
  swap(/^sqlite_path = .*$/m, 'sqlite_path = ":memory:"');
  return `# config.toml of the repository, rewritten by clients/js/test/helpers.js\n${text}`;
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts the server binary and waits for `GET /health`, with `configText(options)`, or with
 * the repository's config.toml when `options.shipped` (see shippedConfigText; its schemas/
 * folder is copied beside it, since schema paths are relative to the config file). Returns a
 * handle with `port`, `wsUrl`, `httpUrl`, `logs()`, `kill(signal)` (waits for the exit),
 * `start()` (again, same port and config) and `stop()` (SIGTERM, then SIGKILL; removes the
 * temp dir).
 */
export async function startServer(options = {}) {
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mesh-records-js-'));
  const configPath = path.join(dir, 'config.toml');
  if (options.shipped) {
    writeFileSync(configPath, shippedConfigText({ port }));
    cpSync(path.join(REPO_DIR, 'schemas'), path.join(dir, 'schemas'), { recursive: true });
  } else {
    writeFileSync(configPath, configText({ ...options, port }));
  }
  const bin = serverBinary();
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' };
  for (const key of ['MESH_PORT', 'MESH_REDIS_URL', 'MESH_JWT_SECRET', 'MESH_ADMIN_TOKEN']) delete env[key];

  let child = null;
  let output = '';
  const handle = {
    port,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    logs: () => output,
    async start() {
      child = spawn(bin, ['--config', configPath], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
      running.add(child);
      const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      child.exited = exited;
      exited.then(() => running.delete(child));
      child.stdout.on('data', (d) => (output += d));
      child.stderr.on('data', (d) => (output += d));
      const deadline = Date.now() + 20_000;
      let done = false;
      exited.then(() => (done = true));
      while (Date.now() < deadline) {
        if (done) throw new Error(`mesh-records exited before serving:\n${output}`);
        try {
          const res = await fetch(`${handle.httpUrl}/health`);
          if (res.status === 200) return handle;
        } catch {
          // not listening yet
        }
        await sleep(50);
      }
      throw new Error(`mesh-records did not answer /health within 20 s:\n${output}`);
    },
    async kill(signal = 'SIGKILL') {
      if (!child || child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await child.exited;
    },
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await child.exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle.start();
}

/** Admin API call (`DELETE /api/records/{id}` and friends). */
export async function admin(server, method, recordId, body) {
  const res = await fetch(`${server.httpUrl}/api/records/${encodeURIComponent(recordId)}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const base64url = (text) => Buffer.from(text).toString('base64url');

/** An HS256 JWT over `claims`, signed with `secret` (what the server verifies). */
export function signJwt(claims, secret) {
  const unsigned = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(JSON.stringify(claims))}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** Seconds since the epoch, as JWT claims count time. */
export const nowSeconds = () => Math.floor(Date.now() / 1000);

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor(check, { timeoutMs = 3000, intervalMs = 10, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Collects onUpdate calls; `next(pred)` resolves with the first (past or future) update that
 * matches and was not taken yet. */
export function updateLog() {
  const updates = [];
  let taken = 0;
  const log = {
    updates,
    onUpdate: (update) => updates.push(update),
    async next(pred = () => true, timeoutMs = 3000) {
      return waitFor(
        () => {
          for (let i = taken; i < updates.length; i++) {
            if (pred(updates[i])) {
              taken = i + 1;
              return updates[i];
            }
          }
          return null;
        },
        { timeoutMs, what: 'an update' },
      );
    },
  };
  return log;
}

/** A `ws` WebSocket that records every frame the client sends (parsed). */
export function recordingWebSocket(sent) {
  return class RecordingWebSocket extends WebSocket {
    send(data, ...rest) {
      try {
        sent.push(JSON.parse(data));
      } catch {
        sent.push(data);
      }
      return super.send(data, ...rest);
    }
  };
}

/**
 * A "network" the test can pull: `gate.WebSocket` is a `ws` WebSocket class that fails to
 * connect while `gate.offline` is set; `gate.goOffline()` sets it and drops every socket the
 * class opened (as a lost network would); `gate.urls` lists the URLs it connected to and
 * `gate.sent` the frames sent (parsed).
 */
export function networkGate() {
  const sockets = new Set();
  const gate = {
    offline: false,
    urls: [],
    sent: [],
    goOffline() {
      gate.offline = true;
      for (const socket of sockets) socket.terminate();
    },
    WebSocket: class GatedWebSocket extends WebSocket {
      constructor(url, ...rest) {
        if (gate.offline) throw new Error('offline (test network gate)');
        super(url, ...rest);
        gate.urls.push(String(url));
        sockets.add(this);
        this.once('close', () => sockets.delete(this));
      }

      send(data, ...rest) {
        try {
          gate.sent.push(JSON.parse(data));
        } catch {
          gate.sent.push(data);
        }
        return super.send(data, ...rest);
      }
    },
  };
  return gate;
}

/** A JWT-shaped token with `claims` and no real signature (for the fake server, which does not
 * verify). */
export function unsignedJwt(claims) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part(claims)}.x`;
}

/**
 * A fake Mesh server in this process. Each connection gets `mesh/assign-id` (unless
 * `assignId: false`; `server.refuse = n` terminates the next n at once) and is handed to the test as a peer: `peer.frames` (parsed frames from
 * the client), `peer.next(pred)`, `peer.send(obj)`, `peer.reply(frame, payload)`,
 * `peer.socket`. `server.nextPeer()` resolves with the next connection.
 */
export async function fakeServer({ assignId = true } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  const peers = [];
  const waiting = [];
  let count = 0;
  const control = { refuse: 0 };
  wss.on('connection', (socket, request) => {
    if (control.refuse > 0) {
      // refused before mesh/assign-id: the client's attempt fails
      control.refuse -= 1;
      socket.terminate();
      return;
    }
    const peer = {
      id: `conn-${++count}`,
      url: request.url,
      socket,
      frames: [],
      taken: 0,
      send: (obj) => socket.send(JSON.stringify(obj)),
      reply: (frame, payload) => socket.send(JSON.stringify({ id: frame.id, command: frame.command, payload })),
      next(pred = () => true, timeoutMs = 3000) {
        return waitFor(
          () => {
            for (let i = peer.taken; i < peer.frames.length; i++) {
              if (pred(peer.frames[i])) {
                peer.taken = i + 1;
                return peer.frames[i];
              }
            }
            return null;
          },
          { timeoutMs, what: 'a frame from the client' },
        );
      },
    };
    socket.on('message', (data) => peer.frames.push(JSON.parse(data.toString())));
    if (assignId) peer.send({ command: 'mesh/assign-id', payload: peer.id });
    peers.push(peer);
    waiting.shift()?.(peer);
  });
  let handed = 0;
  return {
    /** Connections to terminate at once, before mesh/assign-id. */
    set refuse(n) {
      control.refuse = n;
    },
    get refuse() {
      return control.refuse;
    },
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    port: wss.address().port,
    peers,
    nextPeer() {
      const index = handed++;
      if (peers[index]) return Promise.resolve(peers[index]);
      return new Promise((resolve) => waiting.push(resolve));
    },
    close() {
      for (const client of wss.clients) client.terminate();
      return new Promise((resolve) => wss.close(resolve));
    },
  };
}

/** The files of demo/ that the page loads, with their content types: exactly what the
 * server's /demo/ route serves. */
export const DEMO_FILES = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'mesh-client.js': 'text/javascript; charset=utf-8',
  'fast-json-patch.min.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};
export const DEMO_DIR = path.join(REPO_DIR, 'demo');

/** Serves demo/ at /demo/ on a free port, like the server's route will: only DEMO_FILES,
 * `/demo/` is index.html, `/demo` redirects to `/demo/`. */
export async function serveDemo() {
  const { createServer } = await import('node:http');
  const { readFile } = await import('node:fs/promises');
  const server = createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://x');
    if (pathname === '/demo') {
      res.writeHead(308, { location: '/demo/' }).end();
      return;
    }
    const name = pathname === '/demo/' ? 'index.html' : pathname.startsWith('/demo/') ? pathname.slice(6) : null;
    if (!name || !Object.hasOwn(DEMO_FILES, name)) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const body = await readFile(path.join(DEMO_DIR, name));
    res.writeHead(200, { 'content-type': DEMO_FILES[name], 'cache-control': 'no-cache' }).end(body);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/demo/`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}
