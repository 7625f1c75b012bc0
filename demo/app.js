// The demo page: a shared checklist (record todo:<room>, patch mode), live pointers
// (record cursors:<room>, full mode) and the list of every checklist (collection `todos`),
// all through @mesh-records/client. A toggle drops the
// connection and keeps it down, to show the client resuming from the missed patches.
//
// Query parameters: ?ws=ws://host:port/ws (default: this host, path /ws), ?room=name
// (default "demo"; letters, digits, _ and -).

import { connect } from './mesh-client.js';

const params = new URLSearchParams(location.search);
const WS_URL = params.get('ws') ?? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
const ROOM = /^[A-Za-z0-9_-]{1,64}$/.test(params.get('room') ?? '') ? params.get('room') : 'demo';
const TODO_ID = `todo:${ROOM}`;
const CURSORS_ID = `cursors:${ROOM}`;
const CURSOR_SEND_MS = 50; // at most this often per page
const CURSOR_IDLE_MS = 30_000; // hide a pointer that has not moved for this long

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
let todo = null; // the record's value: { items: { [itemId]: { text, done, at } | null } }
let cursors = {}; // { [connectionId]: { x, y, t } | null }
const cursorSeen = new Map(); // connectionId -> { key, at }: when its entry last changed here

// ---- status and errors ------------------------------------------------------------------

function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
  const usable = state === 'open';
  ui.input.disabled = !usable;
  ui.addButton.disabled = !usable;
}

let errorTimer = null;
function showError(err) {
  ui.error.textContent = `${err.code ? `${err.code}: ` : ''}${err.message}`;
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

function onChecklistsDiff({ added, removed, changed, resync, reconnect }) {
  if (resync || reconnect) checklists.clear();
  for (const { id, record } of added) checklists.set(id, record);
  for (const { id } of removed) checklists.delete(id);
  for (const { id, record } of changed) checklists.set(id, record);
  renderLists();
}

// ---- checklist ----------------------------------------------------------------------------

function currentItems() {
  const items = todo && typeof todo === 'object' && !Array.isArray(todo) ? todo.items : null;
  if (!items || typeof items !== 'object' || Array.isArray(items)) return [];
  return Object.entries(items)
    .filter(([, item]) => item && typeof item === 'object' && typeof item.text === 'string')
    .map(([id, item]) => ({ id, text: item.text, done: item.done === true, at: Number(item.at) || 0 }))
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
    box.addEventListener('change', () => write({ items: { [item.id]: { done: box.checked } } }));
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
    remove.addEventListener('click', () => write({ items: { [item.id]: null } }));

    li.append(label, remove);
    return li;
  });
  ui.list.replaceChildren(...rows);
  ui.empty.hidden = items.length > 0;
  const done = items.filter((item) => item.done).length;
  ui.summary.textContent = items.length ? `${done} of ${items.length} done` : '';
}

// Every change is a deepMerge of just the touched item, so concurrent edits of different
// items from different pages never overwrite each other. A removed item becomes null.
function write(change) {
  if (!client) return;
  client.writeRecord(TODO_ID, change, { strategy: 'deepMerge' }).catch(showError);
}

function newItemId() {
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (!text) return;
  write({ items: { [newItemId()]: { text, done: false, at: Date.now() } } });
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
  for (const [id, entry] of Object.entries(cursors ?? {})) {
    if (!entry || typeof entry !== 'object' || id === client?.connectionId) continue;
    const key = `${entry.x},${entry.y},${entry.t}`;
    const seen = cursorSeen.get(id);
    if (!seen || seen.key !== key) cursorSeen.set(id, { key, at: now });
    if (now - cursorSeen.get(id).at > CURSOR_IDLE_MS) continue;
    if (!Number.isFinite(entry.x) || !Number.isFinite(entry.y)) continue;
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
}
setInterval(renderCursors, 5000); // hides pointers that went idle

let pendingCursor = null;
let lastCursorSent = 0;
let cursorTimer = null;

function sendCursor() {
  cursorTimer = null;
  if (!client?.connected || !pendingCursor) return;
  const entry = pendingCursor;
  pendingCursor = null;
  lastCursorSent = Date.now();
  client.writeRecord(CURSORS_ID, { [client.connectionId]: entry }, { strategy: 'merge' }).catch(() => {
    // a lost pointer position is not worth an error message
  });
}

document.addEventListener('pointermove', (event) => {
  const rect = ui.board.getBoundingClientRect();
  const clamp = (v) => Math.min(1.5, Math.max(-0.5, v));
  pendingCursor = {
    x: Number(clamp((event.clientX - rect.left) / rect.width).toFixed(4)),
    y: Number(clamp((event.clientY - rect.top) / rect.height).toFixed(4)),
    t: Date.now(),
  };
  if (cursorTimer) return;
  cursorTimer = setTimeout(sendCursor, Math.max(0, CURSOR_SEND_MS - (Date.now() - lastCursorSent)));
});

function forgetCursor(connectionId) {
  if (client?.connected && connectionId) {
    client.writeRecord(CURSORS_ID, { [connectionId]: null }, { strategy: 'merge' }).catch(() => {});
  }
}
window.addEventListener('pagehide', () => forgetCursor(client?.connectionId));

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
  let previousId = client.connectionId;
  client.on('reconnect', ({ connectionId, resumed, full }) => {
    forgetCursor(previousId); // our old entry would linger otherwise
    previousId = connectionId;
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
      },
      { mode: 'patch' },
    );
    todo = snapshot.record;
    renderTodo();
    const pointerSnapshot = await client.subscribeRecord(CURSORS_ID, (update) => {
      cursors = update.value ?? {};
      renderCursors();
    });
    cursors = pointerSnapshot.record ?? {};
    renderCursors();
    await client.subscribeCollection('todos', { onDiff: onChecklistsDiff });
  } catch (err) {
    showError(err);
  }
  document.body.dataset.ready = 'true';
}

renderTodo();
start();
