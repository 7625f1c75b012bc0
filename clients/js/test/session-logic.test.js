// Resume and token handling against a fake server in this process, where the test chooses
// every reply: resumed or not, a refresh accepted or refused, a 4001 close.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { connect } from '../src/index.js';
import { fakeServer, sleep, unsignedJwt, updateLog, waitFor } from './helpers.js';

const isCmd = (name) => (frame) => frame.command === name;
const tokenOf = (peer) => new URL(peer.url, 'http://x').searchParams.get('token');
const patchPush = (version, patch) => ({ command: 'mesh/record-update', payload: { recordId: 'r:1', patch, version } });

/** A getToken that hands out tokens living `lifetimeS` seconds, numbered from 1 in `sub`. */
function tokenSource(lifetimeS) {
  const issued = [];
  const getToken = async () => {
    const iat = Date.now() / 1000;
    issued.push(unsignedJwt({ sub: `token-${issued.length + 1}`, iat, exp: iat + lifetimeS }));
    return issued.at(-1);
  };
  return { issued, getToken };
}

test('resume: a resumed reply keeps the value and the pushes that follow apply to it', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const reconnects = [];
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, reconnect: { minDelayMs: 20, maxDelayMs: 40 }, onReconnect: (e) => reconnects.push(e) });
  t.after(() => client.close());
  let peer = await peerP;
  const log = updateLog();
  const subP = client.subscribeRecord('r:1', log.onUpdate, { mode: 'patch' });
  peer.reply(await peer.next(isCmd('mesh/subscribe-record')), { success: true, record: { n: 5 }, version: 5 });
  await subP;

  peer.socket.terminate();
  peer = await server.nextPeer();
  const resub = await peer.next(isCmd('mesh/subscribe-record'));
  assert.deepEqual(resub.payload, { recordId: 'r:1', mode: 'patch', sinceVersion: 5 });
  // The reply and the missed patch handled back to back, with no microtask between.
  client._receive({ id: resub.id, command: resub.command, payload: { success: true, resumed: true, version: 5 } });
  client._receive(patchPush(6, [{ op: 'replace', path: '/n', value: 6 }]));
  assert.deepEqual(log.updates, [{ recordId: 'r:1', value: { n: 6 }, version: 6, patch: [{ op: 'replace', path: '/n', value: 6 }] }]);
  await waitFor(() => reconnects.length === 1, { what: 'the reconnect event' });
  assert.deepEqual(reconnects[0].resumed, ['r:1']);
  assert.deepEqual(reconnects[0].full, []);
});

test('resume: a resumed reply for another version than asked falls back to a snapshot', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, reconnect: { minDelayMs: 20, maxDelayMs: 40 } });
  t.after(() => client.close());
  let peer = await peerP;
  const log = updateLog();
  const subP = client.subscribeRecord('r:1', log.onUpdate, { mode: 'patch' });
  peer.reply(await peer.next(isCmd('mesh/subscribe-record')), { success: true, record: { n: 5 }, version: 5 });
  await subP;

  peer.socket.terminate();
  peer = await server.nextPeer();
  peer.reply(await peer.next(isCmd('mesh/subscribe-record')), { success: true, resumed: true, version: 3 });
  await peer.next(isCmd('mesh/unsubscribe-record'));
  const again = await peer.next(isCmd('mesh/subscribe-record'));
  assert.deepEqual(again.payload, { recordId: 'r:1', mode: 'patch' }, 'no sinceVersion: the value is not trusted');
  peer.reply(again, { success: true, record: { n: 7 }, version: 7 });
  assert.deepEqual(await log.next(), { recordId: 'r:1', value: { n: 7 }, version: 7, full: true, resync: true });
});

test('getToken: the token is refreshed before exp; a refused refresh is reported and retried', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const { issued, getToken } = tokenSource(3);
  const errors = [];
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, getToken, reconnect: false, onError: (e) => errors.push(e) });
  t.after(() => client.close());
  const peer = await peerP;
  assert.equal(tokenOf(peer), issued[0]);
  const firstExpMs = JSON.parse(Buffer.from(issued[0].split('.')[1], 'base64url')).exp * 1000;

  // Due half way through the 3 s lifetime.
  const first = await peer.next(isCmd('mesh/refresh-token'), 5000);
  assert.ok(Date.now() < firstExpMs, 'refreshed before the token expired');
  assert.deepEqual(first.payload, { token: issued[1] });
  peer.reply(first, { success: true });

  const refused = await peer.next(isCmd('mesh/refresh-token'), 5000);
  assert.deepEqual(refused.payload, { token: issued[2] });
  peer.reply(refused, { error: 'bad token', code: 'EAUTH', name: 'AuthError' });
  await waitFor(() => errors.length === 1, { what: 'the error event' });
  assert.equal(errors[0].code, 'EAUTH');

  // Retried while the accepted token lasts.
  const retry = await peer.next(isCmd('mesh/refresh-token'), 5000);
  assert.deepEqual(retry.payload, { token: issued[3] });
  peer.reply(retry, { success: true });
  assert.equal(client.state, 'open');
});

test('getToken: a server without mesh/refresh-token is reported once, not asked again', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const { getToken } = tokenSource(2);
  const errors = [];
  const peerP = server.nextPeer();
  const client = await connect(server.url, { WebSocket, getToken, reconnect: false, onError: (e) => errors.push(e) });
  t.after(() => client.close());
  const peer = await peerP;
  const refresh = await peer.next(isCmd('mesh/refresh-token'), 5000);
  peer.reply(refresh, { error: 'Command "mesh/refresh-token" not found', code: 'ENOTFOUND', name: 'CommandError' });
  await waitFor(() => errors.length === 1, { what: 'the error event' });
  assert.equal(errors[0].code, 'ENOTFOUND');
  await sleep(2500);
  assert.equal(peer.frames.filter(isCmd('mesh/refresh-token')).length, 1);
  assert.equal(errors.length, 1);
});

test('close code 4001: with getToken the client reconnects with a fresh token; without, it stops', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const { issued, getToken } = tokenSource(3600);
  let peerP = server.nextPeer();
  const refreshing = await connect(server.url, { WebSocket, getToken, reconnect: { minDelayMs: 20, maxDelayMs: 40 } });
  t.after(() => refreshing.close());
  let peer = await peerP;
  peer.socket.close(4001, 'token expired');
  peer = await server.nextPeer();
  assert.equal(tokenOf(peer), issued[1]);
  await waitFor(() => refreshing.state === 'open', { what: 'the reconnect' });

  peerP = server.nextPeer();
  const closes = [];
  const fixed = await connect(server.url, { WebSocket, token: issued[0], reconnect: { minDelayMs: 20, maxDelayMs: 40 }, onClose: (e) => closes.push(e) });
  peer = await peerP;
  peer.socket.close(4001, 'token expired');
  await waitFor(() => fixed.state === 'closed', { what: 'state closed' });
  assert.deepEqual(closes, [{ code: 4001, reason: 'token expired', willReconnect: false }]);
  await assert.rejects(fixed.command('mesh/noop'), { code: 'ECLOSED' });
});

test('getToken failing at reconnect is reported; the current token is used while it lasts', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  const { issued, getToken } = tokenSource(3600);
  let fail = false;
  const errors = [];
  const peerP = server.nextPeer();
  const client = await connect(server.url, {
    WebSocket,
    getToken: () => (fail ? Promise.reject(new Error('identity provider down')) : getToken()),
    reconnect: { minDelayMs: 20, maxDelayMs: 40 },
    onError: (e) => errors.push(e),
  });
  t.after(() => client.close());
  let peer = await peerP;
  fail = true;
  peer.socket.terminate();
  peer = await server.nextPeer();
  assert.equal(tokenOf(peer), issued[0]);
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 'EAUTH');
  assert.match(errors[0].message, /identity provider down/);
});

test('getToken failing at connect rejects connect with EAUTH', async (t) => {
  const server = await fakeServer();
  t.after(() => server.close());
  await assert.rejects(connect(server.url, { WebSocket, getToken: () => '' }), { code: 'EAUTH' });
  await assert.rejects(connect(server.url, { WebSocket, getToken: () => { throw new Error('no'); } }), { code: 'EAUTH' });
  assert.throws(() => connect(server.url, { WebSocket, getToken: 'abc' }), TypeError);
});
