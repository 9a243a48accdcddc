// Headless browser test of the auditlog website, driven as a person would use it:
// add a user, rename it, open its history and see the change with its diff; with
// AUDITLOG_AUDITOR_URL, erase its personal data and see the values shown as erased.
//
//   AUDITLOG_WEB_URL=http://127.0.0.1:3002 node tests/browser/website.mjs
//
// Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium); never downloads a browser.
// Screenshots go to <repo>/target/screenshots/. Exit 0 on success, 1 on any failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const TOTAL_TIMEOUT_MS = 90_000;
const HISTORY_WAIT_MS = 5_000;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const successShot = join(shotDir, 'website-user-history.png');
const failureShot = join(shotDir, 'website-failure.png');
const erasedShot = join(shotDir, 'website-user-erased.png');

const baseUrl = process.env.AUDITLOG_WEB_URL;
// The auditor, for the erasure step (skipped without it).
const auditorUrl = process.env.AUDITLOG_AUDITOR_URL;
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let browser = null;
let page = null;
let finished = false;
const pageProblems = [];

function log(msg) {
  console.log(`website: ${msg}`);
}

async function fail(message) {
  if (finished) return;
  finished = true;
  console.error(`website: FAILED: ${message}`);
  if (pageProblems.length) {
    console.error('website: problems reported by the page:');
    for (const p of pageProblems.slice(-10)) console.error(`  ${p}`);
  }
  if (page) {
    try {
      const errorText = (await page.getByTestId('error').textContent({ timeout: 1000 }))?.trim();
      if (errorText) console.error(`website: error area shows: ${errorText}`);
    } catch { /* page gone */ }
    try {
      mkdirSync(shotDir, { recursive: true });
      await page.screenshot({ path: failureShot, fullPage: true, timeout: 5000 });
      console.error(`website: failure screenshot: ${failureShot}`);
    } catch (err) {
      console.error(`website: could not save a failure screenshot: ${err.message}`);
    }
  }
  await closeBrowser();
  console.log('website: 0 passed, 1 failed');
  process.exit(1);
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

/** Checks a condition, failing the run with `message` when it does not hold. */
function check(cond, message) {
  if (!cond) throw new Error(message);
}

/** Polls `fn` until it returns a truthy value or `ms` pass; returns the last value. */
async function poll(fn, ms, intervalMs = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The events in a history list, as {action, text, prev[], next[]} read from the page. */
async function readEvents(listTestId) {
  return page.getByTestId(listTestId).evaluate((list) =>
    [...list.querySelectorAll('[data-testid="event"]')].map((ev) => ({
      action: ev.dataset.action,
      text: ev.textContent.replace(/\s+/g, ' ').trim(),
      diffs: [...ev.querySelectorAll('[data-testid="diff"]')].map((d) => ({
        field: d.dataset.field,
        prev: d.querySelector('[data-testid="diff-prev"]')?.textContent ?? null,
        next: d.querySelector('[data-testid="diff-next"]')?.textContent ?? null,
      })),
    })));
}

async function run() {
  check(baseUrl, 'set AUDITLOG_WEB_URL to the website, e.g. http://127.0.0.1:3002');
  mkdirSync(shotDir, { recursive: true });

  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') pageProblems.push(`console: ${msg.text()}`); });
  page.on('dialog', (d) => d.accept());

  // 1. Open the page; the users table shows user 1.
  log(`opening ${baseUrl}`);
  const response = await page.goto(baseUrl, { waitUntil: 'domcontentloaded' });
  check(response && response.ok(), `GET ${baseUrl} answered ${response ? response.status() : 'nothing'}`);
  check((await page.title()) === 'auditlog', `page title is "${await page.title()}", expected "auditlog"`);
  const row1 = page.getByTestId('user-row-1');
  try {
    await row1.waitFor({ state: 'visible' });
  } catch {
    throw new Error('the users table never showed user 1 (row user-row-1)');
  }
  const adminName = await row1.getByTestId('name-input').inputValue();
  check(adminName.trim() !== '', 'user 1 is shown with an empty name');
  log(`users table shows user 1 (${adminName})`);

  // 2. Add a user with a unique name and email.
  const stamp = Date.now();
  const firstName = `Browser Test ${stamp}`;
  const email = `browser.test.${stamp}@example.com`;
  await page.getByTestId('new-user-name').fill(firstName);
  await page.getByTestId('new-user-email').fill(email);
  await page.getByTestId('new-user-tos').check();
  await page.getByTestId('add-user').click();

  // 3. Find its row.
  const rowHandle = await page.waitForFunction((name) => {
    for (const row of document.querySelectorAll('tr[data-testid^="user-row-"]')) {
      const input = row.querySelector('[data-testid="name-input"]');
      if (input && input.value === name) return row.dataset.testid;
    }
    const err = document.querySelector('[data-testid="error"]')?.textContent.trim();
    if (err) return `error:${err}`;
    return null;
  }, firstName, { timeout: 10_000 }).catch(() => null);
  const rowTestId = rowHandle ? await rowHandle.jsonValue() : null;
  check(rowTestId, `the new user "${firstName}" never appeared in the table`);
  check(!rowTestId.startsWith('error:'), `adding a user failed: ${rowTestId.slice(6)}`);
  const userId = rowTestId.replace('user-row-', '');
  const row = page.getByTestId(rowTestId);
  check((await row.getByTestId('email-input').inputValue()) === email, 'the new row shows the wrong email');
  check(await row.getByTestId('tos-input').isChecked(), 'the new row does not show TOS as agreed');
  log(`added user ${userId} (${firstName})`);

  // 4. Rename it and Save.
  const newName = `Renamed Test ${stamp}`;
  await row.getByTestId('name-input').fill(newName);
  await row.getByTestId('save').click();
  const saved = await poll(async () => {
    const err = (await page.getByTestId('error').textContent())?.trim();
    if (err) return `error:${err}`;
    const dirty = await row.getAttribute('data-dirty');
    const busy = await row.getAttribute('data-busy');
    const value = await row.getByTestId('name-input').inputValue();
    return dirty === 'false' && busy !== 'true' && value === newName ? 'ok' : null;
  }, 10_000);
  check(saved, `saving the new name "${newName}" did not finish`);
  check(saved === 'ok', `saving the new name failed: ${String(saved).slice(6)}`);
  log(`renamed user ${userId} to ${newName}`);

  // 5. Open its history and wait for the `changed` event with the diff, and the `created` one.
  await row.getByTestId('history').click();
  const panel = page.getByTestId('history-panel');
  await panel.waitFor({ state: 'visible' });
  let events = [];
  const found = await poll(async () => {
    events = await readEvents('events-on');
    const changed = events.find((e) => e.action === 'changed'
      && e.diffs.some((d) => d.field === 'name' && d.prev === firstName && d.next === newName));
    const created = events.find((e) => e.action === 'created');
    if (changed && created) return true;
    await page.getByTestId('refresh-history').click();
    return false;
  }, HISTORY_WAIT_MS, 500);
  if (!found) {
    const summary = events.map((e) => `${e.action}: ${e.text}`).join('\n  ') || '(no events)';
    throw new Error(`within ${HISTORY_WAIT_MS / 1000} s the "Done to" list did not show both a created event and a changed `
      + `event with name "${firstName}" → "${newName}". It shows:\n  ${summary}`);
  }
  const title = (await page.getByTestId('history-title').textContent()).trim();
  check(title.includes(newName), `the history panel title "${title}" does not name the user`);
  const onText = await page.getByTestId('events-on').textContent();
  check(onText.includes(firstName) && onText.includes(newName), 'the "Done to" list does not show the old and new names');
  log('history shows the created event and the name change with its diff');

  await page.getByTestId('events-on').scrollIntoViewIfNeeded();
  await page.screenshot({ path: successShot, fullPage: true });
  log(`screenshot: ${successShot}`);

  // 5b. Erase the user's personal data at the auditor (when the test names it): the same
  // history then shows its name and email as erased in every change, and neither value.
  if (auditorUrl) {
    // The page asks first: a dismissed confirmation erases nothing.
    const confirmations = [];
    page.removeAllListeners('dialog');
    page.on('dialog', (d) => {
      confirmations.push(d.message());
      if (confirmations.length === 1) d.dismiss(); else d.accept();
    });
    await page.getByTestId('erase-personal-data').click();
    await page.getByTestId('erase-personal-data').click();
    check(confirmations.length === 2 && confirmations[0].includes(`users ${userId}`),
      `the erasure was not confirmed first: ${JSON.stringify(confirmations)}`);
    page.removeAllListeners('dialog');
    page.on('dialog', (d) => d.accept());
    await page.getByTestId('status').filter({ hasText: 'Erased the personal data' }).waitFor();
    const shown = await poll(async () => {
      await page.getByTestId('refresh-history').click();
      events = await readEvents('events-on');
      const changed = events.find((e) => e.action === 'changed');
      // The values the events recorded; the page still labels the user by its name
      // now, which is the primary API's own data, not the log's.
      const values = events.flatMap((e) => e.diffs.flatMap((d) => [d.prev, d.next]));
      return changed && changed.diffs.some((d) => d.field === 'name' && d.prev === '[erased]' && d.next === '[erased]')
        && ![firstName, newName, email].some((v) => values.includes(v));
    }, HISTORY_WAIT_MS, 500);
    check(shown, `after the erasure the "Done to" list still shows personal values: ${JSON.stringify(events.map((e) => e.diffs))}`);
    await page.screenshot({ path: erasedShot, fullPage: true });
    const records = await (await fetch(`${auditorUrl}/api/data-events?filter[eventName]=audit.erased`, {
      headers: { authorization: `Bearer ${await (await fetch(`${baseUrl}/tokens/1`)).text()}` },
    })).json();
    check(records.data?.length === 1, `one erasure is recorded, not ${records.data?.length}`);
    log(`after the confirmed erasure the history shows the name and email as [erased]; screenshot: ${erasedShot}`);
  }

  // 6. Clean up: delete the user; its row goes away.
  await row.getByTestId('delete').click();
  try {
    await row.waitFor({ state: 'detached' });
  } catch {
    const err = (await page.getByTestId('error').textContent())?.trim();
    throw new Error(`deleting user ${userId} did not remove its row${err ? `: ${err}` : ''}`);
  }
  log(`deleted user ${userId}`);

  // 7. Tenants: the operator (user 1) adds an admin of another tenant, whose row
  // shows the tenant; what that admin does is in its tenant, and the explorer's
  // tenant filter shows exactly those events.
  const tenant = `acme${stamp}`;
  const operatorToken = await (await fetch(`${baseUrl}/tokens/1`)).text();
  const made = await fetch(`${baseUrl}/api/users`, {
    method: 'POST',
    headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/vnd.api+json' },
    body: JSON.stringify({ data: { type: 'users', attributes: {
      name: `Tenant Admin ${stamp}`, email: `tenant.${stamp}@example.com`, role: 'admin', tenant,
    } } }),
  });
  const madeText = await made.text();
  check(made.status === 201, `creating a user in tenant ${tenant} answered ${made.status}: ${madeText}`);
  const tenantAdminId = JSON.parse(madeText).data.id;
  const adminToken = await (await fetch(`${baseUrl}/tokens/${tenantAdminId}`)).text();
  const viewed = await fetch(`${baseUrl}/api/users/${tenantAdminId}`, { headers: { authorization: `Bearer ${adminToken}` } });
  check(viewed.status === 200, `the tenant's admin could not read itself: ${viewed.status}`);
  await page.goto(`${baseUrl}/#/users`, { waitUntil: 'domcontentloaded' });
  await page.reload({ waitUntil: 'domcontentloaded' });
  const tenantRow = page.getByTestId(`user-row-${tenantAdminId}`);
  await tenantRow.waitFor({ state: 'visible' });
  const tag = (await tenantRow.getByTestId('tenant').textContent()).trim();
  check(tag === tenant, `the row of the tenant's admin shows tenant "${tag}", expected "${tenant}"`);
  await page.goto(`${baseUrl}/#/events?tenantId=${tenant}`, { waitUntil: 'domcontentloaded' });
  const tenants = await poll(async () => {
    const rows = await page.getByTestId('result-row').evaluateAll((rs) => rs.map((r) => r.dataset.tenant));
    if (!rows.length) {
      await page.getByTestId('filter-form').evaluate((f) => f.requestSubmit());
      return null;
    }
    return rows;
  }, HISTORY_WAIT_MS, 500);
  check(tenants, `the explorer filtered to tenant ${tenant} never showed its admin's events`);
  check(tenants.every((t) => t === tenant), `the explorer filtered to tenant ${tenant} showed events of ${[...new Set(tenants)]}`);
  check((await page.getByTestId('filter-tenant').inputValue()) === tenant, 'the tenant filter does not show the tenant');
  log(`tenant ${tenant}: its admin's row shows the tenant, and the explorer shows its ${tenants.length} event(s) only`);

  // 8. The embeddable viewer: the tenant's admin mints a viewer token for its own
  // user; another site frames /viewer with it, themed dark with an accent, and it
  // shows that user's events (in the tenant) and its timeline.
  if (auditorUrl) {
    const minted = await fetch(`${auditorUrl}/api/viewer-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/vnd.api+json' },
      body: JSON.stringify({ data: { type: 'viewer-tokens', attributes: { objectType: 'users', objectId: String(tenantAdminId) } } }),
    });
    const mintedText = await minted.text();
    check(minted.status === 201, `minting a viewer token answered ${minted.status}: ${mintedText}`);
    const viewerPath = JSON.parse(mintedText).data.attributes.viewerPath;
    const src = `${baseUrl}${viewerPath}&dark=1&accent=%23d81b60`;
    // A page of another origin (a server of its own; Chromium refuses a page it
    // deems public framing a local address) that frames the viewer.
    const embedder = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>embedder</title><iframe title="audit" src="${src}" width="1000" height="700"></iframe>`);
    });
    await new Promise((done) => embedder.listen(0, '127.0.0.1', done));
    const host = await context.newPage();
    host.on('pageerror', (err) => pageProblems.push(`page error: ${err.message}`));
    await host.goto(`http://127.0.0.1:${embedder.address().port}/`);
    const frame = host.frameLocator('iframe');
    const rows = frame.getByTestId('viewer-event');
    try {
      await rows.first().waitFor({ state: 'visible' });
    } catch {
      const msg = await frame.getByTestId('viewer-message').textContent().catch(() => '(no page)');
      throw new Error(`the framed viewer showed no events: ${msg}`);
    }
    const shown = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.tenant));
    check(shown.every((t) => t === tenant), `the viewer showed events of ${[...new Set(shown)]}, expected ${tenant} only`);
    const look = await frame.locator('html').evaluate((html) => ({
      dark: html.classList.contains('dark'),
      accent: getComputedStyle(html).getPropertyValue('--accent').trim(),
    }));
    check(look.dark && look.accent === '#d81b60', `the viewer's theme is ${JSON.stringify(look)}`);
    await frame.getByTestId('viewer-object').filter({ hasText: `users ${tenantAdminId}` }).first().click();
    await frame.getByTestId('viewer-timeline-title').filter({ hasText: `users ${tenantAdminId}` }).waitFor();
    await rows.first().waitFor({ state: 'visible' });
    check(await frame.getByTestId('viewer-more').isHidden(), 'the viewer offers more events than there are');
    await host.screenshot({ path: join(shotDir, 'website-viewer.png') });
    await host.close();
    embedder.close();
    log(`viewer: framed by another page, dark with an accent, ${shown.length} event(s) of ${tenant} and the user's timeline`);
  }

  const jsErrors = pageProblems.filter((p) => p.startsWith('page error'));
  check(jsErrors.length === 0, `the page threw: ${jsErrors.join('; ')}`);
}

const timer = setTimeout(() => fail(`the run took longer than ${TOTAL_TIMEOUT_MS / 1000} s`), TOTAL_TIMEOUT_MS);

try {
  await run();
  finished = true;
  clearTimeout(timer);
  await closeBrowser();
  log('passed');
  console.log('website: 1 passed, 0 failed');
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  await fail(err && err.message ? err.message : String(err));
}
