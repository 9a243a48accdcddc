// Headless browser test of the event page's integrity check: the page itself fetches the
// log's key, the signed checkpoint and the event's inclusion proof and verifies them with
// WebCrypto. Each step opens the page of one real event (user 1's `created` event) in a new
// tab; playwright's request interception stands in for a lying server in between:
//   1. nothing altered: "Included in checkpoint of size N — verified", the key pinned;
//   2. the proof route answers 404 twice: "not sealed yet — retrying", then verified;
//   3. one character of the served leaf changed: the proof no longer leads to the signed root;
//   4. a valid proof, but of another event: the leaf does not match the event;
//   5. one byte of the checkpoint's signature changed: the signature is not valid;
//   6. another key served than the one pinned in step 1: the key changed (and trusting the
//      new key still verifies nothing, since the checkpoint is not signed by it);
//   7. that failure on a phone's screen;
//   8. no WebCrypto (as on plain http to another host): the page says it cannot check.
// Runs against a fresh `auditlog up`:
//
//   AUDITLOG_WEB_URL=http://127.0.0.1:3002 node tests/browser/integrity.mjs
//
// Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium); never downloads a browser.
// Screenshots go to <repo>/target/screenshots/integrity-*.png. Exit 0 on success, 1 on any failure.

import { chromium } from 'playwright-core';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'integrity';
const TOTAL_TIMEOUT_MS = 150_000;
const EVENT_WAIT_MS = 10_000;
/** How long one check may take: the page retries for ~12 s while the event is not sealed. */
const CHECK_WAIT_MS = 30_000;
const JSONAPI = 'application/vnd.api+json';
const PINNED_KEY_STORAGE = 'auditlog.pinnedLogKey';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const baseUrl = (process.env.AUDITLOG_WEB_URL || '').replace(/\/+$/, '');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let browser = null;
let context = null;
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
      const box = (await page.getByTestId('integrity').textContent({ timeout: 1000 }))?.trim();
      if (box) console.error(`${NAME}: integrity box shows: ${box}`);
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

/** GET with the token; the body as text, after checking the status. */
async function get(path, accept = JSONAPI) {
  if (!token) await getToken();
  const send = () => fetch(`${baseUrl}${path}`, { headers: { Accept: accept, Authorization: `Bearer ${token}` } });
  let res = await send();
  if (res.status === 401) {
    await getToken();
    res = await send();
  }
  const text = await res.text();
  check(res.ok, `GET ${path} answered ${res.status}: ${text.slice(0, 300)}`);
  return text;
}

const getJson = async (path) => JSON.parse(await get(path));

/** The attributes of events matching a query, oldest first. */
async function events(query) {
  const doc = await getJson(`/api/data-events?${query}&sort=timestamp&page[size]=10`);
  return (doc?.data || []).map((r) => ({ ...r.attributes, id: String(r.attributes?.id ?? r.id) }));
}

/** User 1's `created` event (seeded when the primary API first opened its database). */
async function seededCreation() {
  const found = await poll(async () => (await events('filter[targetType]=users&filter[targetId]=1&filter[action]=created'))[0],
    EVENT_WAIT_MS, 300);
  check(found, `within ${EVENT_WAIT_MS / 1000} s the API listed no \`created\` event of users 1`);
  return found;
}

// ---- what a lying server would change ------------------------------------------

/** The leaf with one character changed: the last digit of `receivedAt`, so that it is still
 *  this event's JSON (the page's own comparison passes) but not the bytes the log hashed. */
function alterOneCharacter(leafBase64) {
  const leaf = Buffer.from(leafBase64, 'base64').toString('utf8');
  const m = /"receivedAt":(\d+)/.exec(leaf);
  check(m, `the served leaf has no "receivedAt": ${leaf}`);
  const at = m.index + m[0].length - 1;
  const digit = leaf[at] === '9' ? '0' : String(Number(leaf[at]) + 1);
  return Buffer.from(leaf.slice(0, at) + digit + leaf.slice(at + 1), 'utf8').toString('base64');
}

/** The signed note with one bit changed in the Ed25519 signature of its last signature line
 *  (past the 4-byte key hash, so that the signature still claims to be the log key's). */
function alterSignature(note) {
  const lines = note.split('\n');
  const i = lines.findLastIndex((l) => l.startsWith('\u2014 '));
  check(i >= 0, `the checkpoint has no signature line: ${note}`);
  const [dash, name, encoded] = lines[i].split(' ');
  const bytes = Buffer.from(encoded, 'base64');
  check(bytes.length === 68, `the signature line holds ${bytes.length} bytes, not 4 + 64`);
  bytes[4 + 20] ^= 0x01;
  lines[i] = `${dash} ${name} ${bytes.toString('base64')}`;
  return lines.join('\n');
}

/** A valid note verifier key of the same name, for a key the log does not have. */
function rogueKey(servedKey) {
  const name = servedKey.slice(0, servedKey.indexOf('+'));
  const { publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url');
  const hash = createHash('sha256').update(`${name}\n`).update(Buffer.from([0x01])).update(raw)
    .digest().subarray(0, 4).toString('hex');
  return `${name}+${hash}+${Buffer.concat([Buffer.from([0x01]), raw]).toString('base64')}`;
}

// ---- the page ----------------------------------------------------------------

/** Opens the event's page in a new tab (same browser, so the same pinned key), after
 *  `intercept(page)` has set up what the "server" in between will alter. */
async function openEventPage(id, intercept = async () => {}) {
  if (page) await page.close();
  page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageProblems.push(`page error: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') pageProblems.push(`console: ${msg.text()}`); });
  page.on('dialog', (d) => d.accept());
  await intercept(page);
  const response = await page.goto(`${baseUrl}/#/event/${encodeURIComponent(id)}`, { waitUntil: 'domcontentloaded' });
  check(response && response.ok(), `GET ${baseUrl} answered ${response ? response.status() : 'nothing'}`);
  await page.getByTestId('integrity').waitFor();
}

/** What the integrity box shows now. */
function readIntegrity() {
  return page.getByTestId('integrity').evaluate((box) => ({
    state: box.dataset.state,
    failed: box.dataset.failed || null,
    treeSize: box.dataset.treeSize ? Number(box.dataset.treeSize) : null,
    leafIndex: box.dataset.leafIndex ? Number(box.dataset.leafIndex) : null,
    title: box.querySelector('[data-testid="integrity-title"]')?.textContent || '',
    sub: box.querySelector('[data-testid="integrity-sub"]')?.textContent || '',
    tooltip: box.querySelector('.integrity-head')?.title || '',
    detail: box.querySelector('[data-result="failed"] .check-detail')?.textContent || '',
    checks: Object.fromEntries([...box.querySelectorAll('[data-testid="integrity-check"]')]
      .map((li) => [li.dataset.check, li.dataset.result])),
  }));
}

/** Waits for the check's verdict (verified, failed or unavailable). While the event is not
 *  sealed at the end of the page's retries, presses "Check again", for up to CHECK_WAIT_MS. */
async function verdict() {
  let seen;
  const done = await poll(async () => {
    seen = await readIntegrity();
    if (['verified', 'failed', 'unavailable'].includes(seen.state)) return true;
    if (seen.state === 'pending' && !/retrying/.test(seen.title)) await page.getByTestId('integrity-again').click();
    return false;
  }, CHECK_WAIT_MS, 150);
  check(done, `after ${CHECK_WAIT_MS / 1000} s the check still shows ${seen.state}: "${seen.title}" ${seen.sub}`);
  return seen;
}

/** Fails unless the verdict is the failure of check `id` with a title like `title`, every
 *  check before it passed. */
function expectFailure(v, id, title) {
  check(v.state === 'failed', `expected the "${id}" check to fail, the box shows ${v.state}: "${v.title}" ${v.sub}`);
  check(v.failed === id, `expected the "${id}" check to fail, "${v.failed}" failed: "${v.title}" ${v.detail}`);
  check(title.test(v.title), `the failure reads "${v.title}", expected ${title}`);
  const order = ['key', 'signature', 'proof', 'leaf'];
  for (const before of order.slice(0, order.indexOf(id))) {
    check(v.checks[before] === 'ok', `the "${before}" check shows ${v.checks[before]}, expected ok before "${id}" failed`);
  }
  check(v.checks[id] === 'failed', `the "${id}" check is listed as ${v.checks[id]}`);
}

// ---- the run ---------------------------------------------------------------

async function run() {
  check(baseUrl, 'set AUDITLOG_WEB_URL to the website, e.g. http://127.0.0.1:3002');
  mkdirSync(shotDir, { recursive: true });

  const event = await seededCreation();
  const other = (await events('filter[action]=created,viewed,changed')).find((e) => e.id !== event.id);
  check(other, 'the log lists no second event');
  const servedKey = (await get('/log/key', 'text/plain')).trim();
  const origin = (await get('/log/checkpoint', 'text/plain')).split('\n')[0];
  log(`event ${event.id} (${event.action} users ${event.targetId}); other event ${other.id}; log ${origin}`);

  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });

  await step('1. the event is verified in the browser, and the log key pinned', async () => {
    await openEventPage(event.id);
    const v = await verdict();
    check(v.state === 'verified', `the box shows ${v.state}${v.failed ? ` (${v.failed})` : ''}: "${v.title}" ${v.sub}`);
    check(/^Included in checkpoint of size [\d,.\s\u202f]+ — verified$/.test(v.title), `the title reads "${v.title}"`);
    check(v.treeSize > v.leafIndex && v.leafIndex >= 0, `leaf ${v.leafIndex} in a tree of ${v.treeSize}`);
    check(v.sub.includes(origin), `the line under the title does not name the log ${origin}: "${v.sub}"`);
    check(v.sub.includes(`leaf ${v.leafIndex.toLocaleString('en-US')}`) || v.sub.includes(`leaf ${v.leafIndex}`),
      `the line under the title does not give the leaf index ${v.leafIndex}: "${v.sub}"`);
    for (const id of ['key', 'signature', 'proof', 'leaf']) check(v.checks[id] === 'ok', `the "${id}" check shows ${v.checks[id]}`);
    check((v.tooltip.match(/✓/g) || []).length === 4, `the tooltip does not list the 4 passed checks: "${v.tooltip}"`);
    const pinned = await page.evaluate((k) => localStorage.getItem(k), PINNED_KEY_STORAGE);
    check(pinned === servedKey, `the pinned key is "${pinned}", the log serves "${servedKey}"`);
    log(`verified: leaf ${v.leafIndex} of ${v.treeSize}`);
    await page.getByTestId('integrity').locator('summary').click();
    await page.getByTestId('integrity').scrollIntoViewIfNeeded();
    await screenshot('verified');
  });

  await step('2. while the proof answers 404 the page says "not sealed yet — retrying", then verifies', async () => {
    let refused = 0;
    await openEventPage(event.id, (p) => p.route('**/inclusion*', async (route) => {
      if (refused >= 2) return route.continue();
      refused++;
      return route.fulfill({
        status: 404, contentType: JSONAPI,
        body: JSON.stringify({ errors: [{ status: '404', title: 'Not Found', detail: 'this event is not sealed yet' }] }),
      });
    }));
    const pending = await poll(async () => {
      const v = await readIntegrity();
      return v.state === 'pending' && /not sealed yet — retrying/i.test(v.title) ? v : null;
    }, 5000, 50);
    check(pending, 'the page never showed "not sealed yet — retrying"');
    await screenshot('pending');
    const v = await verdict();
    check(v.state === 'verified', `after the 404s the box shows ${v.state}: "${v.title}" ${v.sub}`);
    check(refused === 2, `the proof was refused ${refused} times`);
  });

  await step('3. a leaf altered by one character: the proof does not lead to the signed root', async () => {
    await openEventPage(event.id, (p) => p.route('**/inclusion*', async (route) => {
      const response = await route.fetch();
      const doc = await response.json();
      if (response.ok() && doc?.data?.attributes?.leaf) doc.data.attributes.leaf = alterOneCharacter(doc.data.attributes.leaf);
      await route.fulfill({ response, json: doc });
    }));
    const v = await verdict();
    expectFailure(v, 'proof', /proof does not lead to the signed root/i);
    await screenshot('proof-failed');
  });

  await step('4. a valid proof of another event: the leaf does not match the event', async () => {
    await openEventPage(event.id, (p) => p.route('**/inclusion*', async (route) => {
      const url = route.request().url().replace(`/data-events/${event.id}/`, `/data-events/${other.id}/`);
      await route.fulfill({ response: await route.fetch({ url }) });
    }));
    const v = await verdict();
    expectFailure(v, 'leaf', /leaf does not match the event/i);
    check(v.detail.includes(other.id), `the failure does not name the leaf's id ${other.id}: "${v.detail}"`);
    await screenshot('leaf-failed');
  });

  await step('5. a checkpoint signature with one byte changed is not valid', async () => {
    await openEventPage(event.id, (p) => p.route('**/log/checkpoint', async (route) => {
      const response = await route.fetch();
      await route.fulfill({ response, body: alterSignature(await response.text()) });
    }));
    const v = await verdict();
    expectFailure(v, 'signature', /checkpoint.s signature is not valid/i);
    await screenshot('signature-failed');
  });

  await step('6. another key than the pinned one: the key changed', async () => {
    const rogue = rogueKey(servedKey);
    await openEventPage(event.id, (p) => p.route('**/log/key', (route) => route.fulfill({
      status: 200, contentType: 'text/plain; charset=utf-8', body: `${rogue}\n`,
    })));
    const v = await verdict();
    expectFailure(v, 'key', /key changed since you first loaded this page/i);
    await screenshot('key-changed');
    // Trusting the new key re-pins it; the log's checkpoint is still not signed by it.
    await page.getByTestId('integrity-trust-key').click();
    const after = await poll(async () => {
      const w = await readIntegrity();
      return w.state === 'failed' && w.failed !== 'key' ? w : null;
    }, CHECK_WAIT_MS, 150);
    check(after && after.failed === 'signature', `after trusting the new key the box shows ${JSON.stringify(after || await readIntegrity())}`);
    const pinned = await page.evaluate((k) => localStorage.getItem(k), PINNED_KEY_STORAGE);
    check(pinned === rogue, `the new key was not pinned: "${pinned}"`);
  });

  await step('7. phone layout: a failure with long keys stays on the screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByTestId('integrity').scrollIntoViewIfNeeded();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `the event page is ${overflow}px wider than a phone screen`);
    await screenshot('phone');
  });

  await step('8. without WebCrypto (an insecure context) the page says so instead of failing', async () => {
    await openEventPage(event.id, (p) => p.addInitScript(() => {
      Object.defineProperty(Crypto.prototype, 'subtle', { get: () => undefined });
    }));
    const v = await verdict();
    check(v.state === 'unavailable', `without crypto.subtle the box shows ${v.state}: "${v.title}" ${v.sub}`);
    check(/WebCrypto/.test(v.sub), `the box does not say WebCrypto is missing: "${v.sub}"`);
  });

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
