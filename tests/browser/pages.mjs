// Headless browser test of the website's pages beyond the users table: event explorer
// (filters, total, load more, export, activity chart), object timeline (diff, state at a
// point, compare), live feed (an event emitted during the test) and actor activity.
// The test makes its own data through the API, so it runs against a fresh `auditlog up`.
//
//   AUDITLOG_WEB_URL=http://127.0.0.1:3002 node tests/browser/pages.mjs
//
// Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium); never downloads a browser.
// Screenshots go to <repo>/target/screenshots/pages-*.png. Exit 0 on success, 1 on any failure.

import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'pages';
const TOTAL_TIMEOUT_MS = 60_000;
const EVENTS_WAIT_MS = 10_000;
const LIVE_WAIT_MS = 5_000;
const JSONAPI = 'application/vnd.api+json';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const baseUrl = (process.env.AUDITLOG_WEB_URL || '').replace(/\/+$/, '');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let browser = null;
let page = null;
let finished = false;
let passed = 0;
const pageProblems = [];

function log(msg) {
  console.log(`${NAME}: ${msg}`);
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

async function fail(message) {
  if (finished) return;
  finished = true;
  console.error(`${NAME}: FAILED: ${message}`);
  if (pageProblems.length) {
    console.error(`${NAME}: problems reported by the page:`);
    for (const p of pageProblems.slice(-10)) console.error(`  ${p}`);
  }
  if (page) {
    try {
      const errorText = (await page.getByTestId('error').textContent({ timeout: 1000 }))?.trim();
      if (errorText) console.error(`${NAME}: error area shows: ${errorText}`);
    } catch { /* page gone */ }
    try {
      mkdirSync(shotDir, { recursive: true });
      const shot = join(shotDir, `${NAME}-failure.png`);
      await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
      console.error(`${NAME}: failure screenshot: ${shot}`);
    } catch (err) {
      console.error(`${NAME}: could not save a failure screenshot: ${err.message}`);
    }
  }
  await closeBrowser();
  console.log(`${NAME}: ${passed} passed, 1 failed`);
  process.exit(1);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function poll(fn, ms, intervalMs = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

async function screenshot(name) {
  const path = join(shotDir, `${NAME}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
  log(`screenshot: ${path}`);
}

/** Runs one numbered step; a failure names the step. */
async function step(title, fn) {
  log(`-- ${title}`);
  try {
    await fn();
  } catch (err) {
    throw new Error(`${title}: ${err && err.message ? err.message : err}`);
  }
  passed++;
}

// ---- API, from the test itself (as user 1, like the page) ------------------

let token = null;

async function getToken() {
  const res = await fetch(`${baseUrl}/tokens/1`);
  check(res.ok, `GET /tokens/1 answered ${res.status}`);
  token = (await res.text()).trim().replace(/^"|"$/g, '');
}

async function api(method, path, body) {
  if (!token) await getToken();
  const send = () => fetch(`${baseUrl}${path}`, {
    method,
    headers: { Accept: JSONAPI, Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': JSONAPI } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  let res = await send();
  if (res.status === 401) {
    await getToken();
    res = await send();
  }
  const text = await res.text();
  check(res.ok, `${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return text ? JSON.parse(text) : null;
}

async function createUser(name, email) {
  const doc = await api('POST', '/api/users', { data: { type: 'users', attributes: { name, email, agreedTos: false } } });
  check(doc?.data?.id !== undefined, `POST /api/users gave no id: ${JSON.stringify(doc)}`);
  return String(doc.data.id);
}

async function patchUser(id, attributes) {
  await api('PATCH', `/api/users/${id}`, { data: { type: 'users', id, attributes } });
}

/** Events on a target, all pages, oldest first. */
async function eventsOn(id) {
  const doc = await api('GET', `/api/data-events?filter[targetType]=users&filter[targetId]=${id}&sort=timestamp&page[size]=100`);
  return (doc?.data || []).map((r) => r.attributes);
}

// ---- the run ---------------------------------------------------------------

async function run() {
  check(baseUrl, 'set AUDITLOG_WEB_URL to the website, e.g. http://127.0.0.1:3002');
  mkdirSync(shotDir, { recursive: true });

  // Data: two users; A renamed 6 times, B's email changed 5 times (11 `changed` events in all).
  const stamp = Date.now();
  const nameA0 = `Pages A ${stamp}`;
  const idA = await createUser(nameA0, `pages.a.${stamp}@example.com`);
  const idB = await createUser(`Pages B ${stamp}`, `pages.b.${stamp}@example.com`);
  const namesA = [nameA0];
  // A few ms apart, so that "state at" each change's timestamp is that change's state.
  const pause = () => new Promise((r) => setTimeout(r, 15));
  for (let i = 1; i <= 6; i++) {
    namesA.push(`Pages A ${stamp} v${i}`);
    await pause();
    await patchUser(idA, { name: namesA[i] });
  }
  for (let i = 1; i <= 5; i++) {
    await pause();
    await patchUser(idB, { email: `pages.b.${stamp}.v${i}@example.com` });
  }
  log(`made users ${idA} and ${idB} with 11 changes`);
  // Events are stored asynchronously: wait until they are all queryable.
  const stored = await poll(async () => {
    const a = await eventsOn(idA);
    const b = await eventsOn(idB);
    return a.filter((e) => e.action === 'changed').length >= 6 && b.filter((e) => e.action === 'changed').length >= 5
      && a.some((e) => e.action === 'created') ? a : null;
  }, EVENTS_WAIT_MS, 300);
  check(stored, `within ${EVENTS_WAIT_MS / 1000} s the API did not list the created and changed events of users ${idA} and ${idB}`);

  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') pageProblems.push(`console: ${msg.text()}`); });
  page.on('dialog', (d) => d.accept());

  const response = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
  check(response && response.ok(), `GET ${baseUrl} answered ${response ? response.status() : 'nothing'}`);
  await page.getByTestId('user-row-1').waitFor({ state: 'visible' });

  const rows = page.getByTestId('results').getByTestId('result-row');
  const readTotal = async () => {
    const t = await page.getByTestId('total-count').getAttribute('data-total');
    return t ? Number(t) : null;
  };
  const readRows = () => page.getByTestId('results').evaluate((table) =>
    [...table.querySelectorAll('[data-testid="result-row"]')].map((r) => ({
      action: r.dataset.action, actor: r.dataset.actor, target: r.dataset.target, id: r.dataset.eventId,
    })));

  await step('1. explorer: filters, total, load more, export, chart', async () => {
    await page.getByTestId('nav-events').click();
    await page.getByTestId('filter-form').waitFor({ state: 'visible' });
    check(/#\/events/.test(page.url()), `the Events link led to ${page.url()}`);
    await rows.first().waitFor();
    const allTotal = await poll(readTotal, 5000);
    check(allTotal !== null && allTotal >= 13, `the total count shows ${allTotal}, expected at least the 13 events this test made`);
    log(`unfiltered: ${allTotal} events`);

    // Only `changed`, 10 per page.
    await page.getByTestId('filter-action-changed').check();
    await page.getByTestId('filter-page-size').selectOption('10');
    await page.getByTestId('apply-filters').click();
    const changedTotal = await poll(async () => {
      const list = await readRows();
      const t = await readTotal();
      return t !== null && list.length && list.every((r) => r.action === 'changed') ? t : null;
    }, 5000);
    check(changedTotal !== null, 'after filtering by action=changed the results still show other actions or no total');
    check(changedTotal >= 11, `the changed-only total is ${changedTotal}, expected at least 11`);
    check(changedTotal < allTotal, `the total did not change with the filter (${allTotal} → ${changedTotal})`);
    check((await rows.count()) === 10, `a page of 10 shows ${await rows.count()} rows`);
    check(page.url().includes('action=changed'), `the filters are not in the address: ${page.url()}`);
    log(`action=changed: ${changedTotal} events, 10 on the first page`);

    // Load more.
    await page.getByTestId('load-more').click();
    const more = await poll(async () => ((await rows.count()) > 10 ? rows.count() : null), 5000);
    check(more, 'Load more added no rows');
    const list = await readRows();
    check(list.every((r) => r.action === 'changed'), 'rows loaded by Load more are not all `changed`');
    check(new Set(list.map((r) => r.id)).size === list.length, 'Load more repeated rows of the first page');
    log(`load more: ${list.length} rows`);

    // Chart: bars inside the SVG, with an accessible summary.
    const chart = page.getByTestId('activity-chart');
    await chart.waitFor();
    const bars = await poll(async () => ((await chart.locator('rect[data-testid="chart-bar"]').count()) || null), 5000);
    check(bars >= 1, 'the activity chart has no bars');
    const title = await chart.locator('title').first().textContent();
    check(/activity/i.test(title || ''), `the chart has no <title> (got "${title}")`);
    const chartTotal = Number(await chart.getAttribute('data-total'));
    check(chartTotal >= 11, `the chart counts ${chartTotal} events, expected at least 11 changed`);
    log(`chart: ${bars} bar segments, ${chartTotal} events`);

    // Export CSV: a download whose first line is a header.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-csv').click()]);
    const path = await download.path();
    const csv = readFileSync(path, 'utf8');
    const lines = csv.trim().split(/\r?\n/);
    check(lines.length >= changedTotal, `the CSV export has ${lines.length} lines for ${changedTotal} events`);
    log(`export: ${download.suggestedFilename()}, ${lines.length} lines`);

    await page.getByTestId('results').scrollIntoViewIfNeeded();
    await screenshot('explorer');
  });

  await step('2. object timeline: diff, state at this point, compare', async () => {
    // Reach the timeline from a link in the results, as a person would.
    await page.getByTestId('filter-target-type').fill('users');
    await page.getByTestId('filter-target-id').fill(idA);
    await page.getByTestId('apply-filters').click();
    await poll(async () => {
      const list = await readRows();
      return list.length && list.every((r) => r.target === `users/${idA}`);
    }, 5000);
    await rows.first().locator(`a.target`).click();
    check(page.url().includes(`#/objects/users/${idA}`), `the target link led to ${page.url()}`);
    const timeline = page.getByTestId('timeline');
    const items = timeline.getByTestId('timeline-event');
    await poll(async () => (await items.count()) >= 7, 5000);
    check((await items.count()) >= 7, `the timeline shows ${await items.count()} events, expected the creation and 6 renames`);

    // Oldest first: the first rename shows name v0 → v1.
    const firstChange = items.filter({ has: page.locator('[data-testid="diff"][data-field="name"] [data-testid="diff-prev"]') }).first();
    const prev = await firstChange.locator('[data-field="name"] [data-testid="diff-prev"]').textContent();
    const next = await firstChange.locator('[data-field="name"] [data-testid="diff-next"]').textContent();
    check(prev === namesA[0] && next === namesA[1], `the first rename shows "${prev}" → "${next}", expected "${namesA[0]}" → "${namesA[1]}"`);

    // State at the third rename: name v3, email unchanged.
    const third = items.filter({ has: page.locator('[data-testid="diff"][data-field="name"]') }).nth(3);
    await third.getByTestId('state-button').click();
    const panel = third.getByTestId('state-panel');
    await panel.waitFor({ state: 'visible' });
    await panel.getByTestId('state-field').first().waitFor();
    const name = await panel.locator('[data-testid="state-field"][data-field="name"] dd').textContent();
    const email = await panel.locator('[data-testid="state-field"][data-field="email"] dd').textContent();
    check(name === namesA[3], `state at the third rename shows name "${name}", expected "${namesA[3]}"`);
    check(email === `pages.a.${stamp}@example.com`, `state at the third rename shows email "${email}"`);
    check((await third.getByTestId('state-button').getAttribute('aria-expanded')) === 'true', 'the state button is not marked expanded');
    log(`state at rename 3: name "${name}"`);

    // Compare creation → now: the name went from v0 to v6.
    await page.getByTestId('compare').click();
    const result = page.getByTestId('compare-result');
    await result.getByTestId('diff').first().waitFor();
    const cmpPrev = await result.locator('[data-testid="diff"][data-field="name"] [data-testid="diff-prev"]').textContent();
    const cmpNext = await result.locator('[data-testid="diff"][data-field="name"] [data-testid="diff-next"]').textContent();
    check(cmpPrev === namesA[0] && cmpNext === namesA[6], `compare shows "${cmpPrev}" → "${cmpNext}", expected "${namesA[0]}" → "${namesA[6]}"`);
    log('compare: first name → last name');

    await third.scrollIntoViewIfNeeded();
    await screenshot('timeline');
  });

  await step('3. live: an event emitted during the test appears', async () => {
    await page.getByTestId('nav-live').click();
    const status = page.getByTestId('live-status');
    const connected = await poll(async () => (await status.getAttribute('data-state')) === 'connected', 5000);
    check(connected, `the live view did not connect (status: "${(await status.textContent())?.trim()}")`);
    const liveName = `Pages Live ${stamp}`;
    const t0 = Date.now();
    const idC = await createUser(liveName, `pages.live.${stamp}@example.com`);
    const feed = page.getByTestId('live-feed');
    const seen = await poll(async () => feed.getByTestId('live-event').evaluateAll((items, wanted) => items.some((li) =>
      li.dataset.action === 'created' && li.textContent.includes(wanted)), liveName), LIVE_WAIT_MS, 200);
    check(seen, `within ${LIVE_WAIT_MS / 1000} s the live feed did not show the creation of user ${idC} ("${liveName}")`);
    log(`live: saw users ${idC} created after ${Date.now() - t0} ms`);
    await screenshot('live');
  });

  await step('4. actor page: what users 1 did', async () => {
    await page.goto(`${baseUrl}/#/actors/users/1`);
    const table = page.getByTestId('actor-results');
    const actorRows = table.getByTestId('result-row');
    await actorRows.first().waitFor();
    const list = await table.evaluate((t) => [...t.querySelectorAll('[data-testid="result-row"]')]
      .map((r) => ({ actor: r.dataset.actor, target: r.dataset.target, action: r.dataset.action })));
    check(list.every((r) => r.actor === 'users/1'), `the actor page lists events by others: ${JSON.stringify(list.find((r) => r.actor !== 'users/1'))}`);
    check(list.some((r) => r.target === `users/${idA}` && r.action === 'changed'), `the actor page does not list the renames of users ${idA}`);
    const chart = page.locator('#view-actor').getByTestId('activity-chart');
    await chart.waitFor();
    const bars = await poll(async () => ((await chart.locator('rect[data-testid="chart-bar"]').count()) || null), 5000);
    check(bars >= 1, 'the actor\'s activity chart has no bars');
    log(`actor: ${list.length} rows, ${bars} bar segments`);
    await screenshot('actor');
  });

  await step('5. phone layout', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${baseUrl}/#/events?action=changed`);
    await rows.first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the explorer is ${overflow}px wider than a phone screen`);
    await screenshot('phone');
  });

  // Clean up the users this test made.
  for (const id of [idA, idB]) await api('DELETE', `/api/users/${id}`).catch(() => {});

  const jsErrors = pageProblems.filter((p) => p.startsWith('page error'));
  check(jsErrors.length === 0, `the page threw: ${jsErrors.join('; ')}`);
}

const timer = setTimeout(() => fail(`the run took longer than ${TOTAL_TIMEOUT_MS / 1000} s`), TOTAL_TIMEOUT_MS);

try {
  await run();
  finished = true;
  clearTimeout(timer);
  await closeBrowser();
  console.log(`${NAME}: ${passed} passed, 0 failed`);
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  await fail(err && err.message ? err.message : String(err));
}
