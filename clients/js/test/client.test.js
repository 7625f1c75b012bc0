// The client against the real mesh-records binary (see helpers.js for how it is found and
// configured).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WebSocket } from 'ws';
import { applyPatch, connect, MeshError } from '../src/index.js';
import { admin, recordingWebSocket, sleep, startServer, updateLog, waitFor } from './helpers.js';

const opts = (extra = {}) => ({ WebSocket, reconnect: false, ...extra });

describe('against the server', () => {
  let server;
  const clients = [];
  const open = async (extra) => {
    const client = await connect(server.wsUrl, opts(extra));
    clients.push(client);
    return client;
  };

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await server?.stop();
  });

  test('connect resolves with the connection id from mesh/assign-id', async () => {
    const opened = [];
    const a = await open({ onOpen: (e) => opened.push(e) });
    const b = await open();
    assert.equal(typeof a.connectionId, 'string');
    assert.ok(a.connectionId.length > 0);
    assert.notEqual(a.connectionId, b.connectionId);
    assert.deepEqual(opened, [{ connectionId: a.connectionId, reconnected: false }]);
    assert.equal(await a.command('mesh/noop'), true);
  });

  test('full mode: snapshot, then every new value', async () => {
    const reader = await open();
    const writer = await open();
    const log = updateLog();
    assert.deepEqual(await reader.subscribeRecord('t:full', log.onUpdate), { record: null, version: 0 });
    assert.deepEqual(await writer.writeRecord('t:full', { a: 1 }), { success: true });
    assert.deepEqual(await log.next(), { recordId: 't:full', value: { a: 1 }, version: 1, full: true });
    await writer.writeRecord('t:full', ['x']);
    assert.deepEqual(await log.next(), { recordId: 't:full', value: ['x'], version: 2, full: true });
    // A second subscriber starts from the current snapshot.
    assert.deepEqual(await writer.subscribeRecord('t:full', () => {}), { record: ['x'], version: 2 });
  });

  test('patch mode: the value stays right through replace, merge, deepMerge and array edits', async () => {
    const reader = await open();
    const writer = await open();
    const log = updateLog();
    await reader.subscribeRecord('t:patch', log.onUpdate, { mode: 'patch' });
    const steps = [
      [{ items: [{ text: 'milk', done: false }], title: 'list' }, undefined, { items: [{ text: 'milk', done: false }], title: 'list' }],
      [{ owner: 'ann' }, 'merge', { items: [{ text: 'milk', done: false }], title: 'list', owner: 'ann' }],
      [{ meta: { tags: { a: 1 } } }, 'deepMerge', { items: [{ text: 'milk', done: false }], title: 'list', owner: 'ann', meta: { tags: { a: 1 } } }],
      [{ meta: { tags: { b: 2 } } }, 'deepMerge', { items: [{ text: 'milk', done: false }], title: 'list', owner: 'ann', meta: { tags: { a: 1, b: 2 } } }],
      [{ items: [{ text: 'milk', done: true }, { text: 'eggs', done: false }] }, 'merge', null],
      [{ items: [{ text: 'bread', done: false }, { text: 'milk', done: true }, { text: 'eggs', done: false }] }, 'merge', null],
      [{ title: 'weekend' }, 'replace', { title: 'weekend' }],
    ];
    let expected;
    let version = 0;
    let patches = 0;
    for (const [value, strategy, result] of steps) {
      expected = result ?? { ...expected, ...value };
      await writer.writeRecord('t:patch', value, strategy ? { strategy } : {});
      version += 1;
      const update = await log.next();
      assert.equal(update.version, version);
      assert.deepEqual(update.value, expected, `after step ${version}`);
      if (update.patch) {
        patches += 1;
        assert.ok(Array.isArray(update.patch));
      } else {
        assert.equal(update.full, true); // the server may send a full value when it is smaller
      }
    }
    assert.ok(patches >= 4, `most updates came as patches (${patches} of ${steps.length})`);
    const check = await open();
    assert.deepEqual(await check.subscribeRecord('t:patch', () => {}), { record: expected, version });
  });

  test('writeRecord strategies: merge is shallow, deepMerge recursive, replace replaces', async () => {
    const client = await open();
    await client.writeRecord('t:strategies', { a: { x: 1, y: 2 }, b: 1 });
    await client.writeRecord('t:strategies', { a: { x: 9 } }, { strategy: 'merge' });
    let snap = await client.subscribeRecord('t:strategies', () => {});
    assert.deepEqual(snap.record, { a: { x: 9 }, b: 1 });
    await client.writeRecord('t:strategies', { a: { y: 3 }, c: [1] }, { strategy: 'deepMerge' });
    await client.writeRecord('t:strategies', { c: [2] }, { strategy: 'deepMerge' }); // arrays replace
    snap = await client.subscribeRecord('t:strategies', () => {});
    assert.deepEqual(snap, { record: { a: { x: 9, y: 3 }, b: 1, c: [2] }, version: 4 });
    await client.writeRecord('t:strategies', { only: true }, { strategy: 'replace' });
    assert.deepEqual((await client.subscribeRecord('t:strategies', () => {})).record, { only: true });
  });

  test('errors carry the server codes', async () => {
    const client = await open();
    await assert.rejects(client.writeRecord('secret:1', { a: 1 }), (err) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'EFORBIDDEN');
      assert.equal(err.serverName, 'ForbiddenError');
      return true;
    });
    await assert.rejects(client.subscribeRecord('secret:1', () => {}), { code: 'EFORBIDDEN' });
    assert.equal(client.getRecord('secret:1'), undefined);
    await assert.rejects(client.writeRecord('t:x', null), { code: 'EINVALID' });
    await assert.rejects(client.writeRecord('t:x', {}, { strategy: 'sideways' }), { code: 'EINVALID' });
    await assert.rejects(client.command('mesh/set-my-connection-metadata', { userId: '5' }), { code: 'EFORBIDDEN' });
  });

  test('a schema refusal is ESCHEMA with the violations, and nothing is written', async () => {
    const client = await open();
    await client.writeRecord('s:1', { n: 1 });
    await assert.rejects(client.writeRecord('s:1', { n: 'two', extra: true }, { strategy: 'merge' }), (err) => {
      assert.ok(err instanceof MeshError);
      assert.equal(err.code, 'ESCHEMA');
      assert.equal(err.serverName, 'ValidationError');
      // Judged on the merged value; JSON Pointer paths ("" is the whole value).
      assert.deepEqual(err.violations.map((v) => v.path).sort(), ['', '/n']);
      assert.ok(err.violations.every((v) => typeof v.message === 'string' && v.message !== ''));
      return true;
    });
    assert.deepEqual((await client.subscribeRecord('s:1', () => {})).record, { n: 1 });
    // Other refusals carry none.
    await assert.rejects(client.writeRecord('t:x', null), (err) => err.code === 'EINVALID' && !('violations' in err));
  });

  test('an unknown custom command is ENOTFOUND', async () => {
    const client = await open();
    await assert.rejects(client.command('app/does-not-exist', { any: 1 }), (err) => {
      assert.equal(err.code, 'ENOTFOUND');
      assert.equal(err.serverName, 'CommandError');
      assert.equal(err.message, 'Command "app/does-not-exist" not found');
      return true;
    });
    // The connection is still good.
    assert.deepEqual(await client.command('mesh/get-my-connection-metadata'), { metadata: null });
  });

  test('a version gap (crafted push) makes the client resubscribe and report the real snapshot', async () => {
    const sent = [];
    const reader = await open({ WebSocket: recordingWebSocket(sent) });
    const writer = await open();
    const log = updateLog();
    // Padding keeps patches smaller than the value, so the server sends patches (for tiny
    // values it sends the whole value instead, which is smaller).
    const pad = 'x'.repeat(200);
    await writer.writeRecord('t:gap', { n: 1, pad });
    await reader.subscribeRecord('t:gap', log.onUpdate, { mode: 'patch' });
    await writer.writeRecord('t:gap', { n: 2 }, { strategy: 'merge' });
    const second = await log.next();
    assert.equal(second.version, 2);
    assert.ok(second.patch);

    // Version 4 where 3 is due: as if 3 had been lost.
    reader._receive({ command: 'mesh/record-update', payload: { recordId: 't:gap', patch: [{ op: 'replace', path: '/n', value: 4 }], version: 4 } });
    const resynced = await log.next();
    assert.deepEqual(resynced, { recordId: 't:gap', value: { n: 2, pad }, version: 2, full: true, resync: true });
    const commands = sent.map((f) => f.command);
    assert.deepEqual(commands.slice(-2), ['mesh/unsubscribe-record', 'mesh/subscribe-record']);

    // Real updates go on from there.
    await writer.writeRecord('t:gap', { n: 3 }, { strategy: 'merge' });
    const next = await log.next();
    assert.deepEqual(next, { recordId: 't:gap', value: { n: 3, pad }, version: 3, patch: [{ op: 'replace', path: '/n', value: 3 }] });
  });

  test('deletion reports deleted and ends the subscription', async () => {
    const reader = await open();
    const writer = await open();
    const full = updateLog();
    const patch = updateLog();
    await writer.writeRecord('t:del', { a: 1 });
    await writer.writeRecord('t:del', { a: 2 });
    await reader.subscribeRecord('t:del', full.onUpdate);
    await writer.subscribeRecord('t:del', patch.onUpdate, { mode: 'patch' });
    assert.equal((await admin(server, 'DELETE', 't:del')).status, 200);
    assert.deepEqual(await full.next(), { recordId: 't:del', deleted: true, value: null, version: 2 });
    assert.deepEqual(await patch.next(), { recordId: 't:del', deleted: true, value: null, version: 2 });
    assert.equal(reader.getRecord('t:del'), undefined);
    // Re-created: the ended subscriptions hear nothing.
    await writer.writeRecord('t:del', { a: 3 });
    await sleep(150);
    assert.equal(full.updates.length, 1);
    assert.equal(patch.updates.length, 1);
    assert.equal(await reader.unsubscribeRecord('t:del'), false);
  });

  test('unsubscribe stops updates', async () => {
    const reader = await open();
    const writer = await open();
    const log = updateLog();
    await reader.subscribeRecord('t:unsub', log.onUpdate, { mode: 'patch' });
    await writer.writeRecord('t:unsub', { a: 1 });
    await log.next();
    assert.equal(await reader.unsubscribeRecord('t:unsub'), true);
    await writer.writeRecord('t:unsub', { a: 2 });
    await sleep(150);
    assert.equal(log.updates.length, 1);
    assert.equal(await reader.unsubscribeRecord('t:unsub'), false);
  });

  test('many pipelined writes reach a patch subscriber in order with the right final value', async () => {
    const reader = await open();
    const writer = await open();
    const log = updateLog();
    await reader.subscribeRecord('t:many', log.onUpdate, { mode: 'patch' });
    const writes = [];
    for (let i = 1; i <= 200; i++) writes.push(writer.writeRecord('t:many', { [`k${i % 17}`]: i, last: i }, { strategy: 'merge' }));
    await Promise.all(writes);
    await waitFor(() => log.updates.at(-1)?.version === 200, { what: 'version 200' });
    log.updates.forEach((u, i) => assert.equal(u.version, i + 1));
    const expected = {};
    for (let i = 1; i <= 200; i++) Object.assign(expected, { [`k${i % 17}`]: i, last: i });
    assert.deepEqual(log.updates.at(-1).value, expected);
    assert.ok(!log.updates.some((u) => u.resync), 'no resync was needed');
  });

  test('applyPatch from the package entry is fast-json-patch and does not mutate', () => {
    const before = { a: [1, 2] };
    const afterPatch = applyPatch(before, [{ op: 'add', path: '/a/-', value: 3 }]);
    assert.deepEqual(afterPatch, { a: [1, 2, 3] });
    assert.deepEqual(before, { a: [1, 2] });
    assert.throws(() => applyPatch({}, [{ op: 'remove', path: '/nope' }]));
  });
});

test('keepalive: the client answers pings, so a short ping interval does not close it', async (t) => {
  const server = await startServer({ pingIntervalMs: 250, maxMissedPongs: 1 });
  t.after(() => server.stop());
  const closes = [];
  const client = await connect(server.wsUrl, opts({ onClose: (e) => closes.push(e) }));
  t.after(() => client.close());

  // For contrast: a socket that never answers "ping" is closed within a few intervals.
  // (docs/protocol.md says with code 4000; the server shuts the socket down without a close
  // frame, so a reading peer sees 1006. Either counts here.)
  const raw = new WebSocket(server.wsUrl);
  const rawClosed = new Promise((resolve) => raw.on('close', (code) => resolve(code)));

  await sleep(1500); // six pings
  assert.ok([4000, 1006].includes(await rawClosed));
  assert.deepEqual(closes, []);
  assert.equal(client.state, 'open');
  assert.equal(await client.command('mesh/noop'), true);
});

test('reconnect: after the server restarts, subscriptions come back with the new snapshot', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const events = [];
  const sent = [];
  const reader = await connect(server.wsUrl, {
    WebSocket: recordingWebSocket(sent),
    reconnect: { minDelayMs: 50, maxDelayMs: 400 },
    onClose: (e) => events.push(['close', e.willReconnect]),
    onReconnect: (e) => events.push(['reconnect', e.connectionId]),
  });
  t.after(() => reader.close());
  const firstId = reader.connectionId;
  const log = updateLog();
  const full = updateLog();
  await reader.writeRecord('t:restart', { before: true, n: 1 });
  await reader.subscribeRecord('t:restart', log.onUpdate, { mode: 'patch' });
  await reader.subscribeRecord('t:restart-full', full.onUpdate);
  await reader.writeRecord('t:restart', { n: 2 }, { strategy: 'merge' });
  assert.deepEqual((await log.next()).value, { before: true, n: 2 });

  await server.kill('SIGKILL');
  await waitFor(() => reader.state === 'reconnecting', { what: 'state reconnecting' });
  // A write made while the server is down waits for the new connection.
  const queuedWrite = reader.writeRecord('t:restart-full', { queued: true });
  await sleep(300);
  await server.start();

  // The memory store starts empty: the new snapshot is "absent", version 0.
  assert.deepEqual(await log.next((u) => u.reconnect, 5000), { recordId: 't:restart', value: null, version: 0, full: true, reconnect: true });
  await queuedWrite;
  await waitFor(() => events.some(([type]) => type === 'reconnect'), { what: 'the reconnect event', timeoutMs: 5000 });
  assert.notEqual(reader.connectionId, firstId);
  assert.deepEqual(events, [['close', true], ['reconnect', reader.connectionId]]);

  // Write again after the restart, from another client: the subscription is live.
  const writer = await connect(server.wsUrl, opts());
  t.after(() => writer.close());
  await writer.writeRecord('t:restart', { after: true });
  const fresh = await log.next();
  assert.deepEqual([fresh.value, fresh.version], [{ after: true }, 1]);
  await writer.writeRecord('t:restart', { list: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'] }, { strategy: 'merge' });
  await writer.writeRecord('t:restart', { more: 1 }, { strategy: 'merge' });
  const patched = await log.next((u) => u.version === 3);
  assert.deepEqual(patched.patch, [{ op: 'add', path: '/more', value: 1 }]);
  assert.deepEqual(patched.value, { after: true, list: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], more: 1 });
  // The full-mode subscription is back too: it got the snapshot (or the queued write).
  await waitFor(() => full.updates.some((u) => u.value?.queued === true), { what: `the queued write on t:restart-full (updates: ${JSON.stringify(full.updates)}, sent: ${JSON.stringify(sent.slice(-8))})` });
});
