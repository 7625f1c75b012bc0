// Headless Chromium pages on the demo, against the real server running the repository's own
// config.toml (its exposures, collections and write rules, as shipped).
//
// 1. Two pages edit one checklist live: an item added in page A shows up in page B within
//    1 s, a toggle in B shows up in A, a removal too, the list of checklists (a collection)
//    follows in both, pointers travel, and page A gone offline catches up after B's edits
//    once it is back (counted as a resume). On the way, the write rules: a removal leaves no
//    trace in the stored value (no null item; two removals racing from one page both land,
//    the second retried after EVERSION), and a malformed write from the browser console is
//    refused with ESCHEMA, shown in the page's banner, and changes nothing. Saves
//    target/demo-screenshot.png at the repository root.
// 2. A closed page's pointer goes away: it stays while its page is open and still (the
//    heartbeat outlives the records' 5 s ttl_seconds), and leaves the other page a few
//    seconds after its page is closed, when the server expires its record.
//
// Needs Debian's /usr/bin/chromium (scripts/browser-test.sh installs it) and playwright-core.
// Without Chromium the tests are skipped, unless MESH_REQUIRE_BROWSER=1 (then they fail).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { connect } from '../src/index.js';
import { REPO_DIR, serveDemo, sleep, startServer } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const required = process.env.MESH_REQUIRE_BROWSER === '1';
const SCREENSHOT = path.join(REPO_DIR, 'target', 'demo-screenshot.png');
const skip = !haveChromium && !required && `no ${CHROMIUM}`;

/** The server (shipped config), the demo files and Chromium, all stopped after `t`; returns
 * `openPage(name)` (a page in its own browser context, connected and ready) and `problems`
 * (page errors and console errors, which must stay empty). */
async function demoSetup(t) {
  assert.ok(haveChromium, `${CHROMIUM} is missing (scripts/browser-test.sh installs it)`);
  const { chromium } = await import('playwright-core');

  const server = await startServer({ shipped: true });
  t.after(() => server.stop());
  const demo = await serveDemo();
  t.after(() => demo.close());

  // playwright starts Chromium with a fresh temporary profile (its own --user-data-dir) and
  // --headless; the other flags keep it off the network, which is closed here.
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'mesh-demo-browser-'));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
    ],
    env: { ...process.env, HOME: scratch },
  });
  t.after(() => browser.close());

  const problems = [];
  const openPage = async (name) => {
    const context = await browser.newContext({ viewport: { width: 760, height: 560 }, deviceScaleFactor: 1 });
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`${name}: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`${name}: console: ${msg.text()}`);
    });
    await page.goto(`${demo.url}?ws=${encodeURIComponent(server.wsUrl)}`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
    await page.waitForSelector('#status[data-state="open"]');
    return page;
  };
  return { server, openPage, problems };
}

/** Runs `fn` with a client of its own (not a page's), closed afterwards. */
async function withClient(server, fn) {
  const client = await connect(server.wsUrl, { WebSocket, reconnect: false });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The stored value of a record, as the server holds it. */
const storedValue = (server, recordId) =>
  withClient(server, async (client) => (await client.subscribeRecord(recordId, () => {})).record);

/** Moves the page's mouse over its board to (fx, fy), fractions of the board's size. */
async function pointAt(page, fx, fy) {
  const box = await page.locator('#board').boundingBox();
  await page.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.3);
  await page.mouse.move(box.x + box.width * fx, box.y + box.height * fy, { steps: 8 });
}

/** Waits until `page` draws the pointer of connection `id` at (x %, y %) of its board. */
function pointerAt(page, id, x, y) {
  return page.waitForFunction(
    ([id, x, y]) => {
      const el = document.querySelector(`.cursor[data-id="${id}"]`);
      return el && Math.abs(parseFloat(el.style.left) - x) < 1 && Math.abs(parseFloat(el.style.top) - y) < 1;
    },
    [id, x, y],
    { timeout: 2000 },
  );
}

test('demo: two pages edit one checklist live, within its write rules', { skip }, async (t) => {
  const { server, openPage, problems } = await demoSetup(t);
  const a = await openPage('A');
  const b = await openPage('B');

  const item = (page, text) => page.locator('li.item', { hasText: text });
  const add = async (page, text) => {
    await page.fill('#new-item', text);
    await page.press('#new-item', 'Enter');
    await item(page, text).waitFor({ timeout: 1000 });
  };

  // Add in A; B has it within 1 s.
  await a.fill('#new-item', 'Buy oat milk');
  let started = Date.now();
  await a.press('#new-item', 'Enter');
  await item(b, 'Buy oat milk').waitFor({ timeout: 1000 });
  const addMs = Date.now() - started;
  t.diagnostic(`add seen in B after ${addMs} ms`);
  assert.ok(addMs < 1000);
  assert.equal(await a.inputValue('#new-item'), '');

  // Toggle in B; A shows it done within 1 s.
  started = Date.now();
  await item(b, 'Buy oat milk').locator('input[type="checkbox"]').check();
  await a.locator('li.item.done', { hasText: 'Buy oat milk' }).waitFor({ timeout: 1000 });
  t.diagnostic(`toggle seen in A after ${Date.now() - started} ms`);
  assert.equal(await item(a, 'Buy oat milk').locator('input[type="checkbox"]').isChecked(), true);

  // More items from both sides, one removed from B.
  for (const [page, text] of [[a, 'Water the plants'], [b, 'Call the plumber'], [a, 'Book train tickets'], [b, 'Return library books']]) {
    await add(page, text);
  }
  await item(a, 'Return library books').waitFor({ timeout: 1000 });
  await item(b, 'Call the plumber').locator('button.remove').click();
  await item(a, 'Call the plumber').waitFor({ state: 'detached', timeout: 1000 });
  await item(a, 'Book train tickets').locator('input[type="checkbox"]').check();
  await b.locator('li.item.done', { hasText: 'Book train tickets' }).waitFor({ timeout: 1000 });

  // Two removals from A in one go: both expect the same version, so the second is refused
  // with EVERSION and retried on the value after the first. Both land, and no error shows.
  await add(a, 'Scratch one');
  await add(a, 'Scratch two');
  await item(b, 'Scratch two').waitFor({ timeout: 1000 });
  await a.evaluate(() => {
    for (const text of ['Scratch one', 'Scratch two']) {
      const row = [...document.querySelectorAll('li.item')].find((li) => li.textContent.includes(text));
      row.querySelector('button.remove').click();
    }
  });
  for (const page of [a, b]) {
    for (const text of ['Scratch one', 'Scratch two']) await item(page, text).waitFor({ state: 'detached', timeout: 3000 });
  }
  assert.equal(await a.isVisible('#error'), false, 'racing removals end without an error');

  const texts = async (page) => page.locator('li.item .item-text').allTextContents();
  const expected = ['Buy oat milk', 'Water the plants', 'Book train tickets', 'Return library books'];
  assert.deepEqual(await texts(a), expected);
  assert.deepEqual(await texts(b), expected);
  assert.equal(await a.textContent('#summary'), '2 of 4 done');

  // Removed items leave no trace: the stored value holds exactly the four items, no null.
  const stored = await storedValue(server, 'todo:demo');
  assert.deepEqual(Object.keys(stored), ['items']);
  const storedItems = Object.values(stored.items);
  assert.ok(storedItems.every((it) => it !== null && typeof it === 'object'), JSON.stringify(stored));
  assert.deepEqual(storedItems.map((it) => it.text).sort(), [...expected].sort());

  // A malformed write from the console is refused by the schema, and the page says so.
  const versionBefore = await a.evaluate(() => mesh.client.getRecord(mesh.todoId).version);
  const refused = await a.evaluate(() =>
    mesh.writeRecord('todo:demo', { items: { x: { text: 5 } } }, { strategy: 'deepMerge' }).then(
      () => null,
      (err) => ({ code: err.code, serverName: err.serverName, violations: err.violations }),
    ),
  );
  assert.equal(refused?.code, 'ESCHEMA', JSON.stringify(refused));
  assert.equal(refused.serverName, 'ValidationError');
  assert.ok(refused.violations.length > 0 && refused.violations.every((v) => v.path.startsWith('/items/x')), JSON.stringify(refused));
  await a.waitForSelector('#error[data-code="ESCHEMA"]:not([hidden])', { timeout: 1000 });
  const banner = await a.textContent('#error');
  const [first] = refused.violations;
  assert.ok(banner.startsWith('ESCHEMA: ') && banner.includes(`${first.path}: ${first.message}`), banner);
  t.diagnostic(`banner: ${banner}`);
  // So is the old way of removing (a null item), and nothing was written either time.
  const nullRemoval = await a.evaluate(() => {
    const [id] = Object.keys(mesh.client.getRecord(mesh.todoId).value.items);
    return mesh.client.writeRecord(mesh.todoId, { items: { [id]: null } }, { strategy: 'deepMerge' }).then(
      () => null,
      (err) => err.code,
    );
  });
  assert.equal(nullRemoval, 'ESCHEMA');
  await sleep(200); // a write that got through would have been pushed by now
  assert.equal(await a.evaluate(() => mesh.client.getRecord(mesh.todoId).version), versionBefore);
  assert.deepEqual(await storedValue(server, 'todo:demo'), stored);
  assert.deepEqual(await texts(b), expected);

  // The list of checklists (collection `todos`) follows in both pages: 2 of 4 still open.
  for (const page of [a, b]) {
    await page.locator('#lists li', { hasText: '2/4 open' }).waitFor({ timeout: 1000 });
  }

  // Pointers: B moves over its board; A draws B's pointer there.
  const bId = await b.evaluate(() => document.body.dataset.connectionId);
  await pointAt(b, 0.62, 0.58);
  const pointer = a.locator(`.cursor[data-id="${bId}"]`);
  await pointer.waitFor({ timeout: 2000 });
  await pointerAt(a, bId, 62, 58);
  const label = await pointer.textContent();
  assert.ok((await b.textContent('#status')).trim().endsWith(` ${label}`), `pointer label ${label}`);
  assert.equal(await b.locator(`.cursor[data-id="${bId}"]`).count(), 0, 'a page does not draw its own pointer');

  // Another checklist, which stays as it is while A is away.
  const spare = { items: { s1: { text: 'Spare item', done: false, at: 1 } } };
  await withClient(server, (client) => client.writeRecord('todo:spare', spare));
  await a.locator('#lists li', { hasText: 'spare 1/1 open' }).waitFor({ timeout: 1000 });

  // A goes offline; B edits; A comes back and catches up from the missed patches (a resume).
  await a.click('#network-toggle');
  await a.waitForSelector('#status[data-state="offline"]', { timeout: 2000 });
  assert.equal((await a.textContent('#network-toggle')).trim(), 'go online');
  await add(b, 'Fix the bike');
  await item(b, 'Water the plants').locator('input[type="checkbox"]').check();
  await b.locator('li.item.done', { hasText: 'Water the plants' }).waitFor({ timeout: 1000 });
  assert.equal(await item(a, 'Fix the bike').count(), 0, 'an offline page sees nothing new');
  assert.equal(await a.getAttribute('#resume-stats', 'data-resumed'), '0');
  started = Date.now();
  await a.click('#network-toggle');
  await item(a, 'Fix the bike').waitFor({ timeout: 5000 });
  await a.locator('li.item.done', { hasText: 'Water the plants' }).waitFor({ timeout: 2000 });
  t.diagnostic(`offline page caught up ${Date.now() - started} ms after going online`);
  await a.waitForSelector('#status[data-state="open"]', { timeout: 2000 });
  await a.waitForFunction(() => Number(document.querySelector('#resume-stats').dataset.resumed) >= 1, null, { timeout: 2000 });
  assert.match(await a.textContent('#resume-stats'), /^resumed [1-9]\d* \/ full \d+$/);
  const caughtUp = [...expected, 'Fix the bike'];
  assert.deepEqual(await texts(a), caughtUp);
  assert.deepEqual(await texts(b), caughtUp);
  assert.equal(await a.textContent('#summary'), '3 of 5 done');
  // The list of checklists came back with it: the changed one updated, the unchanged one kept
  // (a resume reports only what changed).
  await a.locator('#lists li', { hasText: '2/5 open' }).waitFor({ timeout: 2000 });
  assert.deepEqual(await a.locator('#lists li').allTextContents(), ['demo 2/5 open', 'spare 1/1 open']);

  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await a.screenshot({ path: SCREENSHOT, fullPage: true });
  t.diagnostic(`screenshot: ${SCREENSHOT}`);

  assert.deepEqual(problems, []);
});

test("demo: a closed page's pointer goes away when its record expires", { skip }, async (t) => {
  const { openPage, problems } = await demoSetup(t);
  const a = await openPage('A');
  const b = await openPage('B');

  const bId = await b.evaluate(() => document.body.dataset.connectionId);
  await pointAt(b, 0.4, 0.5);
  await pointerAt(a, bId, 40, 50);
  const memberId = `cursor:demo:${bId}`;
  const members = () => a.evaluate(() => mesh.client.getCollection('cursors:demo').ids);
  assert.ok((await members()).includes(memberId), `A's collection lists ${memberId}`);

  // B stays open without moving for longer than the 5 s expiry: its heartbeat keeps it.
  await sleep(6500);
  assert.equal(await a.locator(`.cursor[data-id="${bId}"]`).count(), 1, "an open page's still pointer stays");

  // B closes without a word to the server; its record expires (5 s after its last beat, at
  // most 2.5 s before the close; the server sweeps within a second) and A drops the pointer.
  const closed = Date.now();
  await b.context().close();
  await a.locator(`.cursor[data-id="${bId}"]`).waitFor({ state: 'detached', timeout: 9000 });
  const goneMs = Date.now() - closed;
  t.diagnostic(`B's pointer left A ${goneMs} ms after B closed`);
  assert.ok(goneMs > 1000, `gone after ${goneMs} ms: expiry, not the page closing, removes it`);
  assert.ok(!(await members()).includes(memberId), `${memberId} left the collection`);

  assert.deepEqual(problems, []);
});
