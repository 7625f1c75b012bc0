// The client's use of the protocol extensions (docs/protocol.md, "Extensions beyond Mesh")
// against the real binary: automatic resume after a dropped connection, the fallback to a
// snapshot, conditional writes, and tokens from `getToken`.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { connect, MeshError } from '../src/index.js';
import { admin, networkGate, nowSeconds, signJwt, startServer, updateLog, waitFor } from './helpers.js';

const FAST_RECONNECT = { minDelayMs: 50, maxDelayMs: 200 };
const PAD = 'x'.repeat(300); // keeps patches smaller than the value, so the server sends patches

/** Drops `client`'s connection through `gate`, runs `whileOffline`, then lets it reconnect and
 * resolves with the `reconnect` event. */
async function dropAndReconnect(client, gate, whileOffline) {
  const reconnected = new Promise((resolve) => {
    const off = client.on('reconnect', (event) => {
      off();
      resolve(event);
    });
  });
  gate.goOffline();
  await waitFor(() => client.state === 'reconnecting', { what: 'state reconnecting' });
  await whileOffline();
  gate.offline = false;
  client.reconnectNow(); // false when an attempt is already under way; that one then connects
  return reconnected;
}

/** Record ids of the `mesh/subscribe-record` frames sent after index `from`, with their
 * `sinceVersion`. */
const resubscriptions = (gate, from) =>
  Object.fromEntries(
    gate.sent
      .slice(from)
      .filter((f) => f.command === 'mesh/subscribe-record')
      .map((f) => [f.payload.recordId, f.payload.sinceVersion]),
  );

test('resume: after a dropped connection the client keeps its value and gets the missed changes as patches', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const gate = networkGate();
  const reader = await connect(server.wsUrl, { WebSocket: gate.WebSocket, reconnect: FAST_RECONNECT });
  t.after(() => reader.close());
  const writer = await connect(server.wsUrl, { WebSocket, reconnect: false });
  t.after(() => writer.close());

  await writer.writeRecord('t:resume', { pad: PAD, items: ['milk'] });
  const log = updateLog();
  await reader.subscribeRecord('t:resume', log.onUpdate, { mode: 'patch' });
  const quiet = updateLog();
  await writer.writeRecord('t:resume-quiet', { still: true });
  await reader.subscribeRecord('t:resume-quiet', quiet.onUpdate); // full mode, no change while away
  await writer.writeRecord('t:resume', { items: ['milk', 'eggs'] }, { strategy: 'merge' });
  assert.equal((await log.next()).version, 2);

  const sentBefore = gate.sent.length;
  const event = await dropAndReconnect(reader, gate, async () => {
    await writer.writeRecord('t:resume', { items: ['milk', 'eggs', 'bread'] }, { strategy: 'merge' });
    await writer.writeRecord('t:resume', { owner: 'ann' }, { strategy: 'merge' });
    await writer.writeRecord('t:resume', { items: ['eggs', 'bread'] }, { strategy: 'merge' });
  });

  assert.deepEqual(resubscriptions(gate, sentBefore), { 't:resume': 2, 't:resume-quiet': 1 });
  assert.deepEqual([...event.resumed].sort(), ['t:resume', 't:resume-quiet']);
  assert.deepEqual(event.full, []);
  const expected = { pad: PAD, items: ['eggs', 'bread'], owner: 'ann' };
  await waitFor(() => log.updates.at(-1)?.version === 5, { what: 'version 5' });
  const missed = log.updates.slice(1);
  assert.deepEqual(missed.map((u) => u.version), [3, 4, 5]);
  assert.ok(missed.every((u) => Array.isArray(u.patch) && !u.full && !u.reconnect), 'the missed changes came as patches');
  assert.deepEqual(missed.at(-1).value, expected);
  assert.deepEqual(quiet.updates, [], 'a resumed subscription with nothing missed reports nothing');

  // The subscription is live, and its value is the server's.
  await writer.writeRecord('t:resume', { owner: 'bob' }, { strategy: 'merge' });
  assert.deepEqual((await log.next((u) => u.version === 6)).value, { ...expected, owner: 'bob' });
  assert.deepEqual(await writer.subscribeRecord('t:resume', () => {}), { record: { ...expected, owner: 'bob' }, version: 6 });
});

test('resume falls back to the snapshot when the server cannot resume', async (t) => {
  const server = await startServer({ historyVersions: 2 });
  t.after(() => server.stop());
  const gate = networkGate();
  const reader = await connect(server.wsUrl, { WebSocket: gate.WebSocket, reconnect: FAST_RECONNECT });
  t.after(() => reader.close());
  const writer = await connect(server.wsUrl, { WebSocket, reconnect: false });
  t.after(() => writer.close());

  const logs = {};
  const subscribe = async (id, mode) => {
    logs[id] = updateLog();
    await writer.writeRecord(id, { pad: PAD, n: 1 });
    await reader.subscribeRecord(id, logs[id].onUpdate, { mode });
  };
  await subscribe('t:near', 'patch'); // one change while away: within the history
  await subscribe('t:far', 'patch'); // four changes: more than the history keeps
  await subscribe('t:recreated', 'patch'); // deleted and written again
  await subscribe('t:full-mode', 'full'); // full mode resumes only when nothing was missed

  const sentBefore = gate.sent.length;
  const event = await dropAndReconnect(reader, gate, async () => {
    await writer.writeRecord('t:near', { n: 2 }, { strategy: 'merge' });
    for (let n = 2; n <= 5; n++) await writer.writeRecord('t:far', { n }, { strategy: 'merge' });
    assert.equal((await admin(server, 'DELETE', 't:recreated')).status, 200);
    await writer.writeRecord('t:recreated', { fresh: true });
    await writer.writeRecord('t:full-mode', { n: 2 }, { strategy: 'merge' });
  });

  assert.deepEqual(resubscriptions(gate, sentBefore), { 't:near': 1, 't:far': 1, 't:recreated': 1, 't:full-mode': 1 });
  assert.deepEqual(event.resumed, ['t:near']);
  assert.deepEqual([...event.full].sort(), ['t:far', 't:full-mode', 't:recreated']);
  assert.deepEqual(logs['t:near'].updates.map((u) => [u.version, Boolean(u.patch), u.value.n]), [[2, true, 2]]);
  assert.deepEqual(logs['t:far'].updates, [{ recordId: 't:far', value: { pad: PAD, n: 5 }, version: 5, full: true, reconnect: true }]);
  // Deleted at version 1, created again at 2: the snapshot, never a patch across the deletion.
  assert.deepEqual(logs['t:recreated'].updates, [{ recordId: 't:recreated', value: { fresh: true }, version: 2, full: true, reconnect: true }]);
  assert.deepEqual(logs['t:full-mode'].updates, [{ recordId: 't:full-mode', value: { pad: PAD, n: 2 }, version: 2, full: true, reconnect: true }]);
});

test('conditional writes: expectedVersion, EVERSION with the current version, one winner of eight', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const client = await connect(server.wsUrl, { WebSocket, reconnect: false });
  t.after(() => client.close());

  assert.deepEqual(await client.writeRecord('t:cas', { n: 1 }, { expectedVersion: 0 }), { success: true });
  await assert.rejects(client.writeRecord('t:cas', { n: 99 }, { expectedVersion: 0 }), (err) => {
    assert.ok(err instanceof MeshError);
    assert.equal(err.code, 'EVERSION');
    assert.equal(err.serverName, 'VersionMismatchError');
    assert.equal(err.version, 1);
    return true;
  });
  assert.deepEqual(await client.writeRecord('t:cas', { m: 2 }, { strategy: 'merge', expectedVersion: 1 }), { success: true });
  assert.deepEqual(await client.subscribeRecord('t:cas', () => {}), { record: { n: 1, m: 2 }, version: 2 });

  // Eight writers that all read version 2: exactly one write lands.
  const others = await Promise.all(Array.from({ length: 8 }, () => connect(server.wsUrl, { WebSocket, reconnect: false })));
  t.after(() => Promise.all(others.map((c) => c.close())));
  const results = await Promise.allSettled(others.map((c, i) => c.writeRecord('t:cas', { winner: i }, { expectedVersion: 2 })));
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r) => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.ok(lost.every((r) => r.reason.code === 'EVERSION' && r.reason.version === 3));
  const winner = results.findIndex((r) => r.status === 'fulfilled');
  assert.deepEqual(await client.subscribeRecord('t:cas', () => {}), { record: { winner }, version: 3 });

  for (const bad of [-1, 1.5, '3', null]) {
    await assert.rejects(client.writeRecord('t:cas', { n: 1 }, { expectedVersion: bad }), TypeError);
  }
});

const SECRET = 'js-test-secret';

test('tokens: getToken gives the first token and a fresh one for each reconnect', async (t) => {
  const server = await startServer({ jwtSecret: SECRET });
  t.after(() => server.stop());
  const issued = [];
  const getToken = async () => {
    const iat = nowSeconds();
    issued.push(signJwt({ sub: 'alice', iat, exp: iat + 2, n: issued.length }, SECRET));
    return issued.at(-1);
  };
  const errors = [];
  const gate = networkGate();
  const client = await connect(server.wsUrl, { WebSocket: gate.WebSocket, getToken, reconnect: FAST_RECONNECT, onError: (e) => errors.push(e) });
  t.after(() => client.close());
  const tokenIn = (url) => new URL(url).searchParams.get('token');
  assert.equal(tokenIn(gate.urls[0]), issued[0]);

  // Let the first token expire (this server refuses expired tokens at the upgrade), then drop
  // the connection: the client comes back with a fresh token.
  const firstExp = JSON.parse(Buffer.from(issued[0].split('.')[1], 'base64url')).exp;
  await waitFor(() => Date.now() > firstExp * 1000 + 200, { timeoutMs: 5000, what: 'the first token to expire' });
  const event = await dropAndReconnect(client, gate, async () => {});
  assert.ok(event.connectionId);
  assert.equal(tokenIn(gate.urls.at(-1)), issued.at(-1));
  assert.notEqual(issued.at(-1), issued[0]);
  assert.deepEqual(await client.writeRecord('t:token', { ok: true }), { success: true });
  // A server without mesh/refresh-token answers the scheduled refresh with ENOTFOUND; that is
  // the only error allowed here.
  assert.deepEqual(errors.filter((e) => e.code !== 'ENOTFOUND'), []);
});

test('tokens: mesh/refresh-token keeps the connection open past the first token\'s expiry', async (t) => {
  const server = await startServer({ jwtSecret: SECRET });
  t.after(() => server.stop());
  let calls = 0;
  const getToken = () => {
    calls += 1;
    const iat = Date.now() / 1000;
    return signJwt({ sub: 'alice', iat, exp: iat + 3 }, SECRET);
  };
  // Does this server know the command yet (issue 13, clause 5)?
  const probe = await connect(server.wsUrl, { WebSocket, reconnect: false, token: getToken() });
  const known = await probe.command('mesh/refresh-token', { token: getToken() }).then(
    () => true,
    (err) => err.code !== 'ENOTFOUND',
  );
  await probe.close();
  if (!known) {
    t.skip('this server has no mesh/refresh-token yet');
    return;
  }

  const gate = networkGate();
  const closes = [];
  const errors = [];
  const client = await connect(server.wsUrl, {
    WebSocket: gate.WebSocket,
    getToken,
    reconnect: FAST_RECONNECT,
    onClose: (e) => closes.push(e),
    onError: (e) => errors.push(e),
  });
  t.after(() => client.close());
  const firstId = client.connectionId;
  calls = 0;
  // Three-second tokens, refreshed half way: without refreshes the server would close the
  // connection (4001) once the first expired plus its leeway (5 s by default).
  await waitFor(() => calls >= 6, { timeoutMs: 20_000, what: 'six refreshes' });
  const refreshes = gate.sent.filter((f) => f.command === 'mesh/refresh-token');
  assert.ok(refreshes.length >= 6);
  assert.deepEqual(closes, []);
  assert.deepEqual(errors, []);
  assert.equal(client.connectionId, firstId);
  assert.deepEqual(await client.writeRecord('t:refreshed', { ok: true }), { success: true });
});

test('collections: snapshot, diffs, member changes, and a fresh snapshot after a reconnect', async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const gate = networkGate();
  const reader = await connect(server.wsUrl, { WebSocket: gate.WebSocket, reconnect: FAST_RECONNECT });
  t.after(() => reader.close());
  const writer = await connect(server.wsUrl, { WebSocket, reconnect: false });
  t.after(() => writer.close());

  await writer.writeRecord('t:a:1', { title: 'one' });
  const diffs = [];
  const reply = await reader.subscribeCollection('list:a', { onDiff: (d) => diffs.push(d) });
  assert.deepEqual(reply.ids, ['t:a:1']);
  assert.deepEqual(diffs, [{ added: [{ id: 't:a:1', record: { title: 'one', id: 't:a:1' } }], removed: [], changed: [], version: 1 }]);

  await writer.writeRecord('t:a:2', { title: 'two' });
  await writer.writeRecord('t:b:1', { title: 'elsewhere' });
  await writer.writeRecord('t:a:1', { title: 'one!' });
  await waitFor(() => diffs.length === 4, { what: 'the diff and two member changes' });
  assert.deepEqual(diffs[1], { added: [{ id: 't:a:2', record: { title: 'two', id: 't:a:2' } }], removed: [], changed: [], version: 2 });
  assert.deepEqual(diffs[2].changed, [{ id: 't:a:2', record: { title: 'two' } }]);
  assert.deepEqual(diffs[3].changed, [{ id: 't:a:1', record: { title: 'one!' } }]);
  assert.deepEqual(reader.getCollection('list:a'), { ids: ['t:a:1', 't:a:2'], version: 2 });

  // Reconnecting resumes: only what changed while away arrives (one member gone, one new,
  // one changed), and diffs count on.
  const before = diffs.length;
  await dropAndReconnect(reader, gate, async () => {
    assert.equal((await admin(server, 'DELETE', 't:a:1')).status, 200);
    await writer.writeRecord('t:a:3', { title: 'three' });
    await writer.writeRecord('t:a:2', { title: 'two!' });
  });
  await waitFor(() => diffs.length === before + 1, { what: 'the resume after the reconnect' });
  assert.deepEqual(diffs.at(-1), {
    added: [{ id: 't:a:3', record: { title: 'three', id: 't:a:3' } }],
    removed: [{ id: 't:a:1', record: { id: 't:a:1' } }],
    changed: [{ id: 't:a:2', record: { title: 'two!', id: 't:a:2' } }],
    version: 3,
    resumed: true,
    reconnect: true,
  });
  assert.deepEqual(reader.getCollection('list:a'), { ids: ['t:a:2', 't:a:3'], version: 3 });
  await writer.writeRecord('t:a:4', { title: 'four' });
  await waitFor(() => diffs.some((d) => d.version === 4 && d.added.length === 1), { what: 'the next diff' });

  assert.equal(await reader.unsubscribeCollection('list:a'), true);
  const refused = await reader.subscribeCollection('nothing:here');
  assert.deepEqual(refused, { success: false, ids: [], records: [], version: 0 });
});
