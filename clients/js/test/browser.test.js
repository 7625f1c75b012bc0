// Two headless Chromium pages on the demo, against the real server: an item added in page A
// shows up in page B within 1 s, a toggle in B shows up in A, a removal too, the list of
// checklists (a collection) follows in both, pointers travel,
// and page A gone offline catches up after B's edits once it is back (counted as a resume). Saves target/demo-screenshot.png at the repository root. (A page that goes away
// clears its pointer on pagehide; that is best effort and not asserted.)
//
// Needs Debian's /usr/bin/chromium (scripts/browser-test.sh installs it) and playwright-core.
// Without Chromium the test is skipped, unless MESH_REQUIRE_BROWSER=1 (then it fails).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_DIR, serveDemo, startServer } from './helpers.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
const required = process.env.MESH_REQUIRE_BROWSER === '1';
const SCREENSHOT = path.join(REPO_DIR, 'target', 'demo-screenshot.png');

test('demo: two pages edit one checklist live', { skip: !haveChromium && !required && `no ${CHROMIUM}` }, async (t) => {
  assert.ok(haveChromium, `${CHROMIUM} is missing (scripts/browser-test.sh installs it)`);
  const { chromium } = await import('playwright-core');

  const server = await startServer();
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
  const a = await openPage('A');
  const b = await openPage('B');

  const item = (page, text) => page.locator('li.item', { hasText: text });

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
    await page.fill('#new-item', text);
    await page.press('#new-item', 'Enter');
    await item(page, text).waitFor({ timeout: 1000 });
  }
  await item(a, 'Return library books').waitFor({ timeout: 1000 });
  await item(b, 'Call the plumber').locator('button.remove').click();
  await item(a, 'Call the plumber').waitFor({ state: 'detached', timeout: 1000 });
  await item(a, 'Book train tickets').locator('input[type="checkbox"]').check();
  await b.locator('li.item.done', { hasText: 'Book train tickets' }).waitFor({ timeout: 1000 });

  const texts = async (page) => page.locator('li.item .item-text').allTextContents();
  const expected = ['Buy oat milk', 'Water the plants', 'Book train tickets', 'Return library books'];
  assert.deepEqual(await texts(a), expected);
  assert.deepEqual(await texts(b), expected);
  assert.equal(await a.textContent('#summary'), '2 of 4 done');

  // The list of checklists (collection `todos`) follows in both pages: 2 of 4 still open.
  for (const page of [a, b]) {
    await page.locator('#lists li', { hasText: '2/4 open' }).waitFor({ timeout: 1000 });
  }

  // Pointers: B moves over its board; A draws B's pointer there.
  const bId = await b.evaluate(() => document.body.dataset.connectionId);
  const box = await b.locator('#board').boundingBox();
  await b.mouse.move(box.x + box.width * 0.2, box.y + box.height * 0.3);
  await b.mouse.move(box.x + box.width * 0.62, box.y + box.height * 0.58, { steps: 8 });
  const pointer = a.locator(`.cursor[data-id="${bId}"]`);
  await pointer.waitFor({ timeout: 2000 });
  await a.waitForFunction(
    (id) => {
      const el = document.querySelector(`.cursor[data-id="${id}"]`);
      return el && Math.abs(parseFloat(el.style.left) - 62) < 1 && Math.abs(parseFloat(el.style.top) - 58) < 1;
    },
    bId,
    { timeout: 2000 },
  );
  const label = await pointer.textContent();
  assert.ok((await b.textContent('#status')).trim().endsWith(` ${label}`), `pointer label ${label}`);
  assert.equal(await b.locator(`.cursor[data-id="${bId}"]`).count(), 0, 'a page does not draw its own pointer');

  // A goes offline; B edits; A comes back and catches up from the missed patches (a resume).
  await a.click('#network-toggle');
  await a.waitForSelector('#status[data-state="offline"]', { timeout: 2000 });
  assert.equal((await a.textContent('#network-toggle')).trim(), 'go online');
  await b.fill('#new-item', 'Fix the bike');
  await b.press('#new-item', 'Enter');
  await item(b, 'Fix the bike').waitFor({ timeout: 1000 });
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

  mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await a.screenshot({ path: SCREENSHOT, fullPage: true });
  t.diagnostic(`screenshot: ${SCREENSHOT}`);

  assert.deepEqual(problems, []);
});
