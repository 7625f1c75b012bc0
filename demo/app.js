// The demo page: a shared checklist (record todo:<room>, patch mode), live pointers (one
// record per tab, cursor:<room>:<connection id>, followed through the collection
// cursors:<room>) and the list of every checklist (collection `todos`), all through
// @mesh-records/client. A toggle drops the connection and keeps it down, to show the client
// resuming from the missed patches.
//
// The server's write rules (config.toml) shape it: the checklist must satisfy
// schemas/todo.json (a refused write shows its first violation in the error banner), so a
// removed item is really taken out (a conditional rewrite, not a null); a pointer record
// expires 5 s after its last write, so this page rewrites its own every 2 s while open and a
// closed tab's pointer goes away by itself.
//
// Query parameters: ?ws=ws://host:port/ws (default: this host, path /ws), ?room=name
// (default "demo"; letters, digits, _ and -).
//
// In the browser console, `mesh` is this page's handle: `mesh.writeRecord(id, value, options)`
// writes like the page does and shows a refusal in the page (try a malformed item:
// mesh.writeRecord('todo:demo', {items: {x: {text: 5}}}, {strategy: 'deepMerge'})).

import { connect } from './mesh-client.js';

const params = new URLSearchParams(location.search);
const WS_URL = params.get('ws') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const ROOM = /^[A-Za-z0-9_-]{1,64}$/.test(params.get('room') ?? '') ? params.get('room') : 'demo';
const TODO_ID = `todo:${ROOM}`;
const CURSORS_ID = `cursors:${ROOM}`; // a collection: the room's cursor:<room>:* records
const CURSOR_PREFIX = `cursor:${ROOM}:`; // + a connection id: one tab's pointer record
const CURSOR_SEND_MS = 50; // at most this often per page
// The pointer records' ttl_seconds is 5 (config.toml): a beat every 2 s may miss one and
// still keep an open tab's pointer alive.
const CURSOR_HEARTBEAT_MS = 2000;
const CURSOR_IDLE_MS = 30_000; // hide a pointer that has not moved for this long
// A removal is a conditional rewrite; another page's edit in between costs one more try.
const REWRITE_ATTEMPTS = 5;
const VERSION_WAIT_MS = 2000; // how long a retry waits for the version that beat it

const $ = (selector) => document.querySelector(selector);
const ui = {
  status: $('#status'),
  form: $('#add-form'),
  input: $('#new-item'),
  addButton: $('#add-form button'),
  list: $('#items'),
  empty: $('#empty'),
  summary: $('#summary'),
  error: $('#error'),
  board: $('#board'),
  cursors: $('#cursors'),
  network: $('#network-toggle'),
  stats: $('#resume-stats'),
  lists: $('#lists'),
};
$('#todo-id').textContent = TODO_ID;
$('#cursors-id').textContent = CURSORS_ID;

// fast-json-patch is loaded by a classic <script> as window.jsonpatch.
const applyPatch = (value, ops) => window.jsonpatch.applyPatch(value, ops, true, false).newDocument;

let client = null;
let todo = null; // the record's value: { items: { [itemId]: { text, done, at } } }
const cursors = new Map(); // connection id -> { x, y, t }: the members of CURSORS_ID
const cursorSeen = new Map(); // connection id -> { key, at }: when its pointer last moved here
const ownIds = new Set(); // this page's connection ids, old ones included (never drawn)

// ---- status and errors ------------------------------------------------------------------

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const usable = state === 'open';
  ui.input.disabled = !usable;
  ui.addButton.disabled = !usable;
}

let errorTimer = null;
/** Shows a refusal in the banner. A schema refusal (ESCHEMA) names its first violation, where
 * in the value and what is wrong there; the server's whole message is the tooltip. */
function showError(err) {
  const first = Array.isArray(err.violations) ? err.violations[0] : null;
  const more = first && err.violations.length > 1 ? ` (and ${err.violations.length - 1} more)` : '';
  const detail = first ? `${first.path || '(the whole value)'}: ${first.message}${more}` : err.message;
  ui.error.textContent = `${err.code ? `${err.code}: ` : ''}${detail}`;
  ui.error.title = err.message ?? '';
  ui.error.dataset.code = err.code ?? '';
  ui.error.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => (ui.error.hidden = true), 5000);
}

// ---- the list of checklists (collection `todos`) -----------------------------------------

const checklists = new Map(); // record id -> value (with `id` for members from diffs)

function openItems(value) {
  const items = Object.values(value?.items ?? {}).filter(Boolean);
  return { total: items.length, open: items.filter((item) => !item.done).length };
}

function renderLists() {
  ui.lists.replaceChildren(
    ...[...checklists.keys()].sort().map((id) => {
      const room = id.slice('todo:'.length);
      const { total, open } = openItems(checklists.get(id));
      const li = document.createElement('li');
      const link = document.createElement('a');
      link.href = `?room=${encodeURIComponent(room)}`;
      link.textContent = room;
      if (id === TODO_ID) link.setAttribute('aria-current', 'page');
      li.append(link, ` ${open}/${total} open`);
      return li;
    }),
  );
}

function onChecklistsDiff({ added, removed, changed, resync, reconnect, resumed }) {
  // A new snapshot replaces the list; a resume reports only what changed since.
  if ((resync || reconnect) && !resumed) checklists.clear();
  for (const { id, record } of added) checklists.set(id, record);
  for (const { id } of removed) checklists.delete(id);
  for (const { id, record } of changed) checklists.set(id, record);
  renderLists();
}

// ---- checklist ----------------------------------------------------------------------------

function currentItems() {
  return Object.entries(cleanItems(todo))
    .map(([id, item]) => ({ id, ...item }))
    .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
}

function renderTodo() {
  const items = currentItems();
  const rows = items.map((item) => {
    const li = document.createElement('li');
    li.className = item.done ? 'item done' : 'item';
    li.dataset.id = item.id;

    const label = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = item.done;
    box.addEventListener('change', () => toggleItem(item.id, box.checked));
    const text = document.createElement('span');
    text.className = 'item-text';
    text.textContent = item.text;
    label.append(box, text);

    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'remove';
    remove.title = 'Remove';
    remove.setAttribute('aria-label', `Remove "${item.text}"`);
    remove.textContent = '×';
    remove.addEventListener('click', () => removeItem(item.id));

    li.append(label, remove);
    return li;
  });
  ui.list.replaceChildren(...rows);
  ui.empty.hidden = items.length > 0;
  const done = items.filter((item) => item.done).length;
  ui.summary.textContent = items.length ? `${done} of ${items.length} done` : '';
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isItem = (v) =>
  isPlainObject(v) &&
  Object.keys(v).length === 3 &&
  typeof v.text === 'string' &&
  typeof v.done === 'boolean' &&
  typeof v.at === 'number';

/** The items of a checklist value as schemas/todo.json wants them: what the page shows, with
 * anything else (the null items older versions of this page left) dropped. */
function cleanItems(value) {
  const items = isPlainObject(value) && isPlainObject(value.items) ? value.items : {};
  const clean = {};
  for (const [id, item] of Object.entries(items)) {
    if (isPlainObject(item) && typeof item.text === 'string') {
      clean[id] = { text: item.text, done: item.done === true, at: Number(item.at) || 0 };
    }
  }
  return clean;
}

/** Whether a merge into `value` can pass the schema: a record left with null items (or other
 * junk) refuses every merge, as the result would still hold them, so it is rewritten. */
function mergeable(value) {
  if (value === null || value === undefined) return true;
  if (!isPlainObject(value) || Object.keys(value).some((key) => key !== 'items')) return false;
  return isPlainObject(value.items) && Object.values(value.items).every(isItem);
}

/**
 * Adds and toggles are a deepMerge of just the touched item, so concurrent edits of different
 * items from different pages never overwrite each other. A removal cannot be a merge (a merge
 * only adds or overwrites; the old way, a null item, is refused by the schema), so it rewrites
 * the whole list without the item, on the condition that the record is still at the version
 * this page holds: it cannot undo an edit it has not seen. Adds and toggles rewrite too when
 * the held value cannot take a merge (see `mergeable`), which cleans it up.
 */
function addItem(text) {
  const id = newItemId();
  const item = { text, done: false, at: Date.now() };
  if (mergeable(todo)) mergeItem(id, item);
  else rewriteItems((items) => ({ ...items, [id]: item }));
}

function toggleItem(id, done) {
  if (mergeable(todo)) mergeItem(id, { done });
  else rewriteItems((items) => (items[id] ? { ...items, [id]: { ...items[id], done } } : null));
}

function removeItem(id) {
  rewriteItems((items) => {
    if (!(id in items)) return null; // already gone
    const { [id]: _removed, ...rest } = items;
    return rest;
  });
}

function mergeItem(id, fields) {
  if (!client) return;
  client.writeRecord(TODO_ID, { items: { [id]: fields } }, { strategy: 'deepMerge' }).catch((err) => {
    // A toggle that lands after another page removed the item would create a bare
    // {done}, which the schema refuses at the item itself: the item is gone, nothing to say.
    const atItem = (v) => v.path === `/items/${id}`;
    if (err.code === 'ESCHEMA' && !('text' in fields) && err.violations?.every(atItem)) return;
    showError(err);
  });
}

/** Writes `change(items)` (null: nothing to do) as the whole checklist, expecting the version
 * the page holds; on EVERSION waits for the newer value and applies the change to it. */
async function rewriteItems(change) {
  for (let attempt = 1; client; attempt++) {
    const held = client.getRecord(TODO_ID);
    if (!held) return; // not subscribed (yet, or the record was deleted)
    const next = change(cleanItems(held.value));
    if (!next) return;
    try {
      await client.writeRecord(TODO_ID, { items: next }, { expectedVersion: held.value === null ? 0 : held.version });
      return;
    } catch (err) {
      if (err.code !== 'EVERSION' || attempt >= REWRITE_ATTEMPTS) {
        showError(err);
        return;
      }
      await todoAtLeast(err.version);
    }
  }
}

// Retries wait here for the subscription to reach the version that beat them.
const versionWaiters = [];
function todoAtLeast(version) {
  return new Promise((resolve) => {
    const waiter = { version, resolve };
    versionWaiters.push(waiter);
    setTimeout(() => settleWaiter(waiter), VERSION_WAIT_MS);
    checkVersionWaiters();
  });
}
function settleWaiter(waiter) {
  const at = versionWaiters.indexOf(waiter);
  if (at >= 0) versionWaiters.splice(at, 1);
  waiter.resolve();
}
function checkVersionWaiters() {
  const held = client?.getRecord(TODO_ID);
  for (const waiter of [...versionWaiters]) {
    if (!held || held.version >= waiter.version) settleWaiter(waiter);
  }
}

function newItemId() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (!text) return;
  addItem(text);
  ui.input.value = '';
  ui.input.focus();
});

// ---- pointers -----------------------------------------------------------------------------

/** A short label for a connection id ("…-7" → "#7"). */
function labelFor(id) {
  const counter = /-(\d+)$/.exec(id);
  return counter ? `#${counter[1]}` : id.slice(-4);
}

function colorFor(id) {
  let hash = 0;
  for (const ch of id) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 65% 45%)`;
}

function renderCursors() {
  const now = Date.now();
  const shown = [];
  for (const [id, entry] of cursors) {
    if (ownIds.has(id) || id === client?.connectionId) continue;
    if (!Number.isFinite(entry?.x) || !Number.isFinite(entry?.y)) continue;
    // Heartbeats rewrite a still pointer: only a move counts as activity.
    const key = `${entry.x},${entry.y}`;
    const seen = cursorSeen.get(id);
    if (!seen || seen.key !== key) cursorSeen.set(id, { key, at: now });
    if (now - cursorSeen.get(id).at > CURSOR_IDLE_MS) continue;
    let el = ui.cursors.querySelector(`[data-id="${CSS.escape(id)}"]`);
    if (!el) {
      el = document.createElement('div');
      el.className = 'cursor';
      el.dataset.id = id;
      el.style.setProperty('--color', colorFor(id));
      el.innerHTML =
        '<svg viewBox="0 0 16 16" width="18" height="18"><path d="M1 1 L1 13 L4.5 9.5 L7 15 L9 14 L6.6 8.6 L11.5 8.6 Z"/></svg><span></span>';
      el.querySelector('span').textContent = labelFor(id);
      ui.cursors.append(el);
    }
    el.style.left = `${(entry.x * 100).toFixed(2)}%`;
    el.style.top = `${(entry.y * 100).toFixed(2)}%`;
    shown.push(el);
  }
  for (const el of [...ui.cursors.children]) if (!shown.includes(el)) el.remove();
  for (const id of cursorSeen.keys()) if (!cursors.has(id)) cursorSeen.delete(id);
}
setInterval(renderCursors, 5000); // hides pointers that went idle

/** Follows the collection CURSORS_ID: a tab's record joins when its pointer first moves and
 * leaves when the server deletes it, 5 s after that tab's last write (closed, or offline). */
function onCursorsDiff({ added, removed, changed, resync, reconnect, resumed }) {
  if ((resync || reconnect) && !resumed) cursors.clear();
  const tabOf = (recordId) => (recordId?.startsWith(CURSOR_PREFIX) ? recordId.slice(CURSOR_PREFIX.length) : null);
  for (const { id, record } of [...added, ...changed]) {
    if (tabOf(id)) cursors.set(tabOf(id), record);
  }
  for (const { id } of removed) cursors.delete(tabOf(id));
  renderCursors();
}

let myPointer = null; // { x, y } over the board, as fractions of its size
let lastCursorSent = 0;
let cursorTimer = null;

function sendCursor() {
  clearTimeout(cursorTimer);
  cursorTimer = null;
  if (!client?.connected || !myPointer) return;
  lastCursorSent = Date.now();
  // `t` makes every write a change: the server skips a write that changes nothing, and such
  // a write would not push the record's expiry back.
  const entry = { ...myPointer, t: lastCursorSent };
  client.writeRecord(`${CURSOR_PREFIX}${client.connectionId}`, entry).catch(() => {
    // a lost pointer position is not worth an error message
  });
}

document.addEventListener('pointermove', (event) => {
  const rect = ui.board.getBoundingClientRect();
  // The record's schema takes -0.5 to 1.5: a pointer a little outside the board still shows.
  const clamp = (v) => Math.min(1.5, Math.max(-0.5, v));
  myPointer = {
    x: Number(clamp((event.clientX - rect.left) / rect.width).toFixed(4)),
    y: Number(clamp((event.clientY - rect.top) / rect.height).toFixed(4)),
  };
  if (cursorTimer) return;
  cursorTimer = setTimeout(sendCursor, Math.max(0, CURSOR_SEND_MS - (Date.now() - lastCursorSent)));
});

// The heartbeat: while this page is open its pointer record stays alive. Closed (or asleep in
// a background tab), it stops, and the server deletes the record within ~5 s.
setInterval(() => {
  if (!cursorTimer && Date.now() - lastCursorSent >= CURSOR_HEARTBEAT_MS) sendCursor();
}, 500);

// ---- going offline ------------------------------------------------------------------------

// "Offline" is simulated below the client: the WebSocket class handed to it drops its open
// sockets and fails new ones (without touching the network, so the console stays clean),
// which the client sees exactly as a lost network.
let offline = false;
const openSockets = new Set();

/** A socket that never connects: it reports a close on the next tick. */
class OfflineSocket {
  constructor() {
    this.readyState = 0;
    this.onopen = this.onmessage = this.onerror = this.onclose = null;
    setTimeout(() => {
      this.readyState = 3;
      this.onclose?.({ code: 1006, reason: 'offline (demo toggle)' });
    }, 0);
  }

  send() {
    throw new Error('offline (demo toggle)');
  }

  close() {}
}

function DemoWebSocket(url) {
  if (offline) return new OfflineSocket();
  const ws = new WebSocket(url);
  openSockets.add(ws);
  ws.addEventListener('close', () => openSockets.delete(ws));
  return ws;
}

/** Reconnects now rather than after the backoff; retries while an attempt is under way. */
function reconnectSoon() {
  if (offline || !client || client.state !== 'reconnecting') return;
  if (!client.reconnectNow()) setTimeout(reconnectSoon, 100);
}

function renderNetwork() {
  ui.network.textContent = offline ? 'go online' : 'go offline';
  ui.network.dataset.offline = String(offline);
}

ui.network.addEventListener('click', () => {
  offline = !offline;
  renderNetwork();
  if (offline) {
    for (const ws of openSockets) ws.close(4000, 'offline (demo toggle)');
  } else {
    reconnectSoon();
  }
});

const resumeStats = { resumed: 0, full: 0 };
function renderStats() {
  ui.stats.dataset.resumed = String(resumeStats.resumed);
  ui.stats.dataset.full = String(resumeStats.full);
  ui.stats.textContent = `resumed ${resumeStats.resumed} / full ${resumeStats.full}`;
}

// ---- connection -------------------------------------------------------------------------

async function start() {
  setStatus('connecting', 'connecting…');
  let delay = 1000;
  for (;;) {
    try {
      client = await connect(WS_URL, {
        applyPatch,
        WebSocket: DemoWebSocket,
        reconnect: { minDelayMs: 500, maxDelayMs: 8000 },
        onClose: ({ willReconnect }) => {
          if (offline) setStatus('offline', 'offline');
          else setStatus(willReconnect ? 'reconnecting' : 'closed', willReconnect ? 'reconnecting…' : 'disconnected');
        },
        onOpen: ({ connectionId }) => {
          document.body.dataset.connectionId = connectionId;
          setStatus('open', `connected · you are ${labelFor(connectionId)}`);
        },
        onError: showError,
      });
      break;
    } catch (err) {
      setStatus('offline', `cannot reach ${WS_URL}; retrying…`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 10_000);
    }
  }
  ownIds.add(client.connectionId);
  client.on('reconnect', ({ connectionId, resumed, full }) => {
    // A new connection id is a new pointer record; the old one expires by itself, and is
    // never drawn here meanwhile.
    ownIds.add(connectionId);
    sendCursor();
    resumeStats.resumed += resumed.length;
    resumeStats.full += full.length;
    renderStats();
  });
  ui.network.disabled = false;
  setStatus('open', `connected · you are ${labelFor(client.connectionId)}`);

  try {
    const snapshot = await client.subscribeRecord(
      TODO_ID,
      (update) => {
        todo = update.value;
        renderTodo();
        checkVersionWaiters();
      },
      { mode: 'patch' },
    );
    todo = snapshot.record;
    renderTodo();
    await client.subscribeCollection(CURSORS_ID, { onDiff: onCursorsDiff });
    await client.subscribeCollection('todos', { onDiff: onChecklistsDiff });
  } catch (err) {
    showError(err);
  }
  document.body.dataset.ready = 'true';
}

// The browser console's handle (see the top of this file); the browser test uses it too.
window.mesh = {
  room: ROOM,
  todoId: TODO_ID,
  get client() {
    return client;
  },
  /** client.writeRecord, with a refusal shown in the page's error banner (and rethrown). */
  writeRecord(recordId, value, options) {
    if (!client) return Promise.reject(new Error('not connected yet'));
    return client.writeRecord(recordId, value, options).catch((err) => {
      showError(err);
      throw err;
    });
  },
};

renderTodo();
start();
