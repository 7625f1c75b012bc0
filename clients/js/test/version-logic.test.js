// The client's own logic against a fake server in this process, where every frame is chosen
// by the test: version gaps, stale pushes, timeouts, keepalive answers, reconnect backoff.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { connect, MeshError } from '../src/index.js';
import { connect as connectCore } from '../src/client.js';
import { fakeServer, freePort, sleep, updateLog, waitFor } from './helpers.js';

const isCmd = (name) => (frame) => frame.command === name;

/** Connects a client to `server` and answers its first subscribe with `snapshot`. */
async function subscribed(server, { mode = 'patch', record = { n: 0 }, version = 5, options = {} } = {}) {
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, reconnect: false, ...options });
  const peer = await peerP;
  const log = updateLog();
  const subP = client.subscribeRecord('r:1', log.onUpdate, { mode });
  const sub = await peer.next(isCmd('mesh/subscribe-record'));
  assert.deepEqual(sub.payload, { recordId: 'r:1', mode });
  peer.reply(sub, { success: true, record, version });
  assert.deepEqual(await subP, { record, version });
  return { client, peer, log };
}

const patchPush = (version, patch) => ({ command: 'mesh/record-update', payload: { recordId: 'r:1', patch, version } });
const fullPush = (version, full) => ({ command: 'mesh/record-update', payload: { recordId: 'r:1', full, version } });

describe('against a fake server', () => {
  let server;
  before(async () => {
    server = await fakeServer();
  });
  after(() => server.close());

  test('connect resolves after mesh/assign-id and sends the token as a query parameter', async () => {
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, token: 'a.b.c', reconnect: false });
    const peer = await peerP;
    assert.equal(client.connectionId, peer.id);
    assert.equal(new URL(peer.url, 'http://x').searchParams.get('token'), 'a.b.c');
    assert.equal(client.state, 'open');
    await client.close();
    assert.equal(client.state, 'closed');
  });

  test('patches in order are applied; stale and duplicate pushes are ignored', async () => {
    const { client, peer, log } = await subscribed(server);
    peer.send(patchPush(6, [{ op: 'replace', path: '/n', value: 1 }]));
    peer.send(patchPush(6, [{ op: 'replace', path: '/n', value: 99 }])); // duplicate version
    peer.send(patchPush(4, [{ op: 'replace', path: '/n', value: 98 }])); // older than the snapshot
    peer.send(fullPush(5, { n: 97 })); // full, not newer
    peer.send(patchPush(7, [{ op: 'add', path: '/list', value: ['a'] }]));
    const first = await log.next();
    assert.deepEqual(first, { recordId: 'r:1', value: { n: 1 }, version: 6, patch: [{ op: 'replace', path: '/n', value: 1 }] });
    const second = await log.next();
    assert.deepEqual(second.value, { n: 1, list: ['a'] });
    assert.equal(second.version, 7);
    await sleep(50);
    assert.equal(log.updates.length, 2);
    assert.deepEqual(first.value, { n: 1 }, 'earlier values are not mutated by later patches');
    assert.deepEqual(client.getRecord('r:1'), { value: { n: 1, list: ['a'] }, version: 7 });
    await client.close();
  });

  test('a patch after a gap makes the client unsubscribe, subscribe again and report the snapshot', async () => {
    const { client, peer, log } = await subscribed(server);
    peer.send(patchPush(7, [{ op: 'replace', path: '/n', value: 2 }])); // 6 is missing
    const unsub = await peer.next();
    assert.equal(unsub.command, 'mesh/unsubscribe-record');
    assert.deepEqual(unsub.payload, { recordId: 'r:1' });
    const resub = await peer.next();
    assert.equal(resub.command, 'mesh/subscribe-record');
    assert.deepEqual(resub.payload, { recordId: 'r:1', mode: 'patch' });
    // Pushes that arrive before the new snapshot belong to the old subscription: dropped.
    peer.send(patchPush(8, [{ op: 'replace', path: '/n', value: 3 }]));
    peer.reply(unsub, true);
    peer.reply(resub, { success: true, record: { n: 8 }, version: 8 });
    const update = await log.next();
    assert.deepEqual(update, { recordId: 'r:1', value: { n: 8 }, version: 8, full: true, resync: true });
    // And the subscription goes on from the new snapshot.
    peer.send(patchPush(9, [{ op: 'replace', path: '/n', value: 9 }]));
    assert.deepEqual((await log.next()).value, { n: 9 });
    assert.equal(log.updates.length, 2);
    await client.close();
  });

  test('a push handled right after the subscribe reply, with no microtask between, is not lost', async () => {
    // The ws package emits the frames of one TCP chunk back to back; browsers do not. Both
    // must work, for the first subscribe and for a resubscribe.
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, reconnect: false });
    const peer = await peerP;
    const log = updateLog();
    const subP = client.subscribeRecord('r:1', log.onUpdate, { mode: 'patch' });
    const sub = await peer.next(isCmd('mesh/subscribe-record'));
    client._receive({ id: sub.id, command: sub.command, payload: { success: true, record: { n: 0 }, version: 5 } });
    client._receive(patchPush(6, [{ op: 'replace', path: '/n', value: 6 }]));
    await subP;
    assert.deepEqual(log.updates.map((u) => u.version), [6]);

    client._receive(patchPush(8, [{ op: 'replace', path: '/n', value: 8 }])); // gap
    const resub = await peer.next(isCmd('mesh/subscribe-record'));
    client._receive({ id: resub.id, command: resub.command, payload: { success: true, record: { n: 8 }, version: 8 } });
    client._receive(patchPush(9, [{ op: 'replace', path: '/n', value: 9 }]));
    assert.deepEqual(log.updates.map((u) => [u.version, u.value.n, Boolean(u.resync)]), [[6, 6, false], [8, 8, true], [9, 9, false]]);
    await client.close();
  });

  test('a full push is taken whenever it is newer, also across a gap (no resubscribe)', async () => {
    const { client, peer, log } = await subscribed(server);
    peer.send(fullPush(12, { n: 12 }));
    assert.deepEqual(await log.next(), { recordId: 'r:1', value: { n: 12 }, version: 12, full: true });
    peer.send(patchPush(13, [{ op: 'replace', path: '/n', value: 13 }]));
    assert.deepEqual((await log.next()).value, { n: 13 });
    assert.equal(peer.frames.filter(isCmd('mesh/subscribe-record')).length, 1);
    await client.close();
  });

  test('a patch that does not fit the value triggers a resync', async () => {
    const { client, peer, log } = await subscribed(server);
    peer.send(patchPush(6, [{ op: 'remove', path: '/missing' }]));
    await peer.next(isCmd('mesh/unsubscribe-record'));
    const resub = await peer.next(isCmd('mesh/subscribe-record'));
    peer.reply(resub, { success: true, record: { n: 6 }, version: 6 });
    assert.deepEqual(await log.next(), { recordId: 'r:1', value: { n: 6 }, version: 6, full: true, resync: true });
    await client.close();
  });

  test('the first patch of a record that did not exist applies to {}', async () => {
    const { client, peer, log } = await subscribed(server, { record: null, version: 0 });
    peer.send(patchPush(1, [{ op: 'add', path: '/items', value: [] }]));
    assert.deepEqual((await log.next()).value, { items: [] });
    await client.close();
  });

  test('mesh/record-deleted reports deleted and ends the subscription', async () => {
    const { client, peer, log } = await subscribed(server, { mode: 'full' });
    peer.send({ command: 'mesh/record-deleted', payload: { recordId: 'r:1', version: 5 } });
    assert.deepEqual(await log.next(), { recordId: 'r:1', deleted: true, value: null, version: 5 });
    peer.send(fullPush(1, { n: 1 }));
    await sleep(50);
    assert.equal(log.updates.length, 1);
    assert.equal(client.getRecord('r:1'), undefined);
    await client.close();
  });

  test('answers ping with pong and latency:request with latency:response, without ids', async () => {
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, reconnect: false });
    const peer = await peerP;
    peer.send({ command: 'ping', payload: {} });
    assert.deepEqual(await peer.next(), { command: 'pong', payload: {} });
    peer.send({ command: 'latency:request', payload: {} });
    assert.deepEqual(await peer.next(), { command: 'latency:response', payload: {} });
    peer.send({ command: 'latency', payload: 12 });
    await waitFor(() => client.latencyMs === 12, { what: 'latencyMs' });
    await client.close();
  });

  test('error payloads reject with MeshError carrying code and server name', async () => {
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, reconnect: false });
    const peer = await peerP;
    const pending = client.command('app/thing', { x: 1 });
    const frame = await peer.next();
    assert.equal(typeof frame.id, 'number');
    assert.deepEqual(frame.payload, { x: 1 });
    peer.reply(frame, { error: 'nope', code: 'EFORBIDDEN', name: 'ForbiddenError' });
    await assert.rejects(pending, (err) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'EFORBIDDEN');
      assert.equal(err.serverName, 'ForbiddenError');
      assert.equal(err.message, 'nope');
      return true;
    });
    await client.close();
  });

  test('requests time out instead of hanging', async () => {
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, reconnect: false, requestTimeoutMs: 150 });
    await peerP;
    const started = Date.now();
    await assert.rejects(client.command('app/slow'), { code: 'ETIMEOUT' });
    assert.ok(Date.now() - started < 1000);
    await assert.rejects(client.command('app/slow', {}, { timeoutMs: 50 }), { code: 'ETIMEOUT' });
    await client.close();
  });

  test('close() rejects requests in flight with ECLOSED and later ones at once', async () => {
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket });
    await peerP;
    const rejected = assert.rejects(client.command('app/slow'), { code: 'ECLOSED' });
    await client.close();
    await rejected;
    await assert.rejects(client.writeRecord('r:1', {}), { code: 'ECLOSED' });
  });

  test('patch mode without a JSON Patch function is refused up front (core entry)', async () => {
    const peerP = server.nextPeer();
    const client = await connectCore(server.url, { WebSocket, reconnect: false });
    await peerP;
    await assert.rejects(client.subscribeRecord('r:1', () => {}, { mode: 'patch' }), TypeError);
    await client.close();
  });

  test('an exception thrown by onUpdate goes to the error event, not through the client', async () => {
    const errors = [];
    const peerP = server.nextPeer();
    const client = await connect(server.url, { WebSocket, reconnect: false, onError: (e) => errors.push(e) });
    const peer = await peerP;
    const pending = client.subscribeRecord('r:2', () => {
      throw new Error('boom');
    });
    peer.reply(await peer.next(isCmd('mesh/subscribe-record')), { success: true, record: null, version: 0 });
    await pending;
    peer.send({ command: 'mesh/record-update', payload: { recordId: 'r:2', full: 1, version: 1 } });
    peer.send({ command: 'mesh/record-update', payload: { recordId: 'r:2', full: 2, version: 2 } });
    await waitFor(() => errors.length === 2, { what: 'the error events' });
    assert.equal(errors[0].message, 'boom');
    assert.deepEqual(client.getRecord('r:2'), { value: 2, version: 2 });
    await client.close();
  });
});

test('connect rejects when no mesh/assign-id arrives in time', async () => {
  const server = await fakeServer({ assignId: false });
  await assert.rejects(connect(server.url, { WebSocket, requestTimeoutMs: 200 }), { code: 'ETIMEOUT' });
  await server.close();
});

test('connect times out against a server that never finishes the handshake', async (t) => {
  const sockets = [];
  const silent = net.createServer((socket) => sockets.push(socket)); // accepts, never answers
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    sockets.forEach((s) => s.destroy());
    silent.close();
  });
  const url = `ws://127.0.0.1:${silent.address().port}/ws`;
  await assert.rejects(connect(url, { WebSocket, requestTimeoutMs: 200 }), { code: 'ETIMEOUT' });
  await sleep(100); // an 'error' the dropped socket emits now must not crash the process
});

test('connect rejects when nothing listens', async () => {
  const port = await freePort();
  await assert.rejects(connect(`ws://127.0.0.1:${port}/ws`, { WebSocket }), { code: 'ECLOSED' });
});

test('reconnects with growing, jittered delays, resubscribes and reports the snapshot', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const events = [];
  const peerP = server.nextPeer();
  const client = await connect(server.url, {
    WebSocket,
    reconnect: { minDelayMs: 40, maxDelayMs: 160 },
    onOpen: (e) => events.push(['open', e]),
    onClose: (e) => events.push(['close', e]),
    onReconnecting: (e) => events.push(['reconnecting', e]),
    onReconnect: (e) => events.push(['reconnect', e]),
  });
  t.after(() => client.close());
  let peer = await peerP;
  const log = updateLog();
  const subP = client.subscribeRecord('r:1', log.onUpdate, { mode: 'patch' });
  peer.reply(await peer.next(isCmd('mesh/subscribe-record')), { success: true, record: { n: 1 }, version: 1 });
  await subP;

  // The server refuses the next three connection attempts (closes them before assign-id).
  server.refuse = 3;
  const inFlight = assert.rejects(client.command('app/never-answered'), { code: 'ECLOSED' });
  peer.socket.terminate();
  await inFlight;
  const queued = client.command('app/echo', { q: 1 }); // waits for the new connection

  peer = await server.nextPeer();
  const resub = await peer.next(isCmd('mesh/subscribe-record'));
  // It asks to resume from the version it holds; this server (like Mesh) ignores that and
  // answers with a snapshot, which the client takes.
  assert.deepEqual(resub.payload, { recordId: 'r:1', mode: 'patch', sinceVersion: 1 });
  const echo = await peer.next(isCmd('app/echo'));
  assert.ok(peer.frames.indexOf(resub) < peer.frames.indexOf(echo), 'resubscriptions go out before queued requests');
  peer.reply(echo, { ok: true });
  assert.deepEqual(await queued, { ok: true });
  peer.reply(resub, { success: true, record: { n: 50 }, version: 3 });
  assert.deepEqual(await log.next(), { recordId: 'r:1', value: { n: 50 }, version: 3, full: true, reconnect: true });
  await waitFor(() => events.some(([type]) => type === 'reconnect'), { what: 'the reconnect event' });

  assert.equal(client.connectionId, peer.id);
  const types = events.map(([type]) => type);
  assert.deepEqual(types, ['open', 'close', 'reconnecting', 'reconnecting', 'reconnecting', 'reconnecting', 'open', 'reconnect']);
  assert.equal(events[1][1].willReconnect, true);
  const delays = events.filter(([type]) => type === 'reconnecting').map(([, e]) => e.delayMs);
  [40, 80, 160, 160].forEach((base, i) => {
    assert.ok(delays[i] >= base / 2 && delays[i] <= base, `delay ${i + 1} = ${delays[i]} within [${base / 2}, ${base}]`);
  });
  assert.deepEqual(events.at(-1)[1], { connectionId: peer.id, attempts: 4, resumed: [], full: ['r:1'] });
});

test('gives up after reconnect.maxAttempts', async () => {
  const server = await fakeServer();
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, reconnect: { minDelayMs: 10, maxDelayMs: 20, maxAttempts: 2 } });
  const peer = await peerP;
  await server.close();
  peer.socket.terminate();
  await waitFor(() => client.state === 'closed', { what: 'state closed' });
  await assert.rejects(client.command('mesh/noop'), { code: 'ECLOSED' });
});
