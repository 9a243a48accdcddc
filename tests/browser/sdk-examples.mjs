// The SDKs' example apps against `auditlog up`, checked on the website in a real
// browser. Starts `auditlog up` on free ports with a fresh data directory, mints a
// service token, runs the Express example (sdks/node/examples/users-service) and the
// Flask example (sdks/python/examples/users_service.py) against its auditor, and
// drives each over HTTP as a client would: create a user, view it, change its name,
// delete it (each app acting as a user of its own, with request ids of its own).
// Each app is then stopped with SIGTERM (its emitter delivers what is left). Then
// headless Chromium opens the website (signed in as user 1, the admin, as the site
// does) on each acting user's activity page and checks that it lists exactly those
// four events with the right actions and targets and the change of name, and
// opens the `created` event to check its source and request id.
//
//   node tests/browser/sdk-examples.mjs
//
// Needs, as sdks/test.sh prepares them: sdks/node built (dist/) with the example's
// packages (npm ci in sdks/node/examples/users-service), a Python with the SDK and
// Flask (AUDITLOG_SDK_PYTHON, default target/sdk-venv/bin/python), the binary
// (AUDITLOG_BIN, default target/debug/auditlog), playwright-core (npm ci here) and
// Chromium (CHROMIUM_PATH, default /usr/bin/chromium; never downloaded).
// Screenshots: <repo>/target/screenshots/sdk-examples-*.png. Exit 0 on success, 1 on failure.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'sdk-examples';
const TOTAL_TIMEOUT_MS = 180_000;
const START_TIMEOUT_MS = 60_000;
const PAGE_WAIT_MS = 15_000;

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const bin = resolve(repoRoot, process.env.AUDITLOG_BIN || 'target/debug/auditlog');
const python = resolve(repoRoot, process.env.AUDITLOG_SDK_PYTHON || 'target/sdk-venv/bin/python');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const expressDir = join(repoRoot, 'sdks/node/examples/users-service');
const flaskApp = join(repoRoot, 'sdks/python/examples/users_service.py');

const children = [];
let dataDir = null;
let browser = null;
let page = null;
let finished = false;
const pageProblems = [];

function log(msg) {
  console.log(`${NAME}: ${msg}`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `ms` pass; returns the last value. */
async function poll(fn, ms, intervalMs = 250) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v || Date.now() >= deadline) return v;
    await sleep(intervalMs);
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
  });
}

/** Starts a child process whose output is kept (and shown if the test fails). */
function start(label, command, args, options) {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  child.output = [];
  const keep = (chunk) => {
    child.output.push(...chunk.toString().split('\n').filter(Boolean).map((l) => `[${label}] ${l}`));
    if (child.output.length > 200) child.output.splice(0, child.output.length - 200);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.label = label;
  children.push(child);
  return child;
}

/** Waits until `url` answers (any status), failing early if `child` exits. */
async function waitForHttp(child, url) {
  const up = await poll(async () => {
    if (child.exitCode !== null) throw new Error(`${child.label} exited with ${child.exitCode} before answering`);
    try {
      await fetch(url);
      return true;
    } catch {
      return false;
    }
  }, START_TIMEOUT_MS, 100);
  check(up, `${child.label} did not answer at ${url} within ${START_TIMEOUT_MS / 1000} s`);
}

/** SIGTERM, then waits for the exit (the example's emitter delivers on SIGTERM). */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), sleep(5000)]);
}

async function cleanUp() {
  await closeBrowser();
  for (const child of children.reverse()) {
    const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await stop(child).catch(() => {});
    clearTimeout(killer);
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
}

async function fail(message) {
  if (finished) return;
  finished = true;
  console.error(`${NAME}: FAILED: ${message}`);
  for (const child of children) {
    if (child.output.length) console.error(child.output.slice(-30).join('\n'));
  }
  if (pageProblems.length) {
    console.error(`${NAME}: problems reported by the page:`);
    for (const p of pageProblems.slice(-10)) console.error(`  ${p}`);
  }
  if (page) {
    try {
      mkdirSync(shotDir, { recursive: true });
      const shot = join(shotDir, `${NAME}-failure.png`);
      await page.screenshot({ path: shot, fullPage: true, timeout: 5000 });
      console.error(`${NAME}: failure screenshot: ${shot}`);
    } catch (err) {
      console.error(`${NAME}: could not save a failure screenshot: ${err.message}`);
    }
  }
  await cleanUp();
  console.log(`${NAME}: 0 passed, 1 failed`);
  process.exit(1);
}

/** One JSON request to an example app; returns { status, body }. */
async function call(app, method, path, body) {
  const res = await fetch(`${app.url}${path}`, {
    method,
    headers: {
      'x-user-id': String(app.actorId),
      'x-request-id': `${app.requestPrefix}-${method.toLowerCase()}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Create, view, change, delete one user through the app; returns the user's id and names. */
async function exercise(app) {
  const first = `${app.label} Ann`;
  const renamed = `${app.label} Ann Renamed`;
  const created = await call(app, 'POST', '/api/users', { data: { type: 'users', attributes: { name: first, email: 'ann@example.com' } } });
  check(created.status === 201, `${app.label}: POST /api/users answered ${created.status}`);
  const id = created.body.data.id;
  const viewed = await call(app, 'GET', `/api/users/${id}`);
  check(viewed.status === 200, `${app.label}: GET /api/users/${id} answered ${viewed.status}`);
  const changed = await call(app, 'PATCH', `/api/users/${id}`, { data: { type: 'users', attributes: { name: renamed } } });
  check(changed.status === 200 && changed.body.data.attributes.name === renamed, `${app.label}: PATCH /api/users/${id} answered ${changed.status}`);
  const deleted = await call(app, 'DELETE', `/api/users/${id}`);
  check(deleted.status === 204, `${app.label}: DELETE /api/users/${id} answered ${deleted.status}`);
  log(`${app.label}: created, viewed, changed and deleted user ${id}`);
  return { id, first, renamed };
}

/** The rows of the actor page's results table, as the page shows them. */
function readActorRows() {
  return page.getByTestId('actor-results').evaluate((table) =>
    [...table.querySelectorAll('[data-testid="result-row"]')].map((r) => ({
      action: r.dataset.action,
      target: r.dataset.target,
      actor: r.dataset.actor,
      changes: [...r.querySelectorAll('[data-testid="change"]')].map((c) => ({
        field: c.dataset.field,
        prev: c.querySelector('.diff-prev')?.textContent ?? null,
        next: c.querySelector('.diff-next')?.textContent ?? null,
      })),
    })));
}

/** Opens the acting user's activity page and checks the four events there. */
async function checkWebsite(webUrl, app, user) {
  const url = `${webUrl}/#/actors/users/${app.actorId}`;
  const response = await page.goto(url, { waitUntil: 'domcontentloaded' });
  check(response && response.ok(), `GET ${url} answered ${response ? response.status() : 'nothing'}`);
  const want = ['created', 'viewed', 'changed', 'deleted'];
  let rows = [];
  const shown = await poll(async () => {
    rows = await readActorRows();
    return rows.length >= want.length;
  }, PAGE_WAIT_MS);
  const listed = rows.map((r) => `${r.action} ${r.actor} → ${r.target}`).join('; ') || '(nothing)';
  check(shown, `the activity page of users/${app.actorId} lists ${listed}, not the four events`);
  check(rows.length === want.length, `the activity page of users/${app.actorId} lists ${rows.length} events: ${listed}`);
  // (Events of the same millisecond may be listed in either order.)
  const actions = rows.map((r) => r.action).sort();
  check(JSON.stringify(actions) === JSON.stringify([...want].sort()),
    `the activity page lists the actions ${actions.join(', ')}, expected ${want.join(', ')} once each`);
  for (const r of rows) {
    check(r.actor === `users/${app.actorId}`, `a row names actor ${r.actor}, expected users/${app.actorId}`);
    check(r.target === `users/${user.id}`, `the ${r.action} row names target ${r.target}, expected users/${user.id}`);
  }
  const change = rows.find((r) => r.action === 'changed').changes;
  check(change.length === 1 && change[0].field === 'name' && change[0].prev === user.first && change[0].next === user.renamed,
    `the changed row shows ${JSON.stringify(change)}, expected only name "${user.first}" → "${user.renamed}"`);
  const createdFields = rows.find((r) => r.action === 'created').changes.map((c) => c.field).sort();
  check(createdFields.includes('name') && createdFields.includes('email'), `the created row shows the fields ${createdFields.join(', ')}`);
  // The activity chart counts the same four (and has drawn its bars before the screenshot).
  const chart = page.locator('#view-actor').getByTestId('activity-chart');
  const charted = await poll(async () => ((await chart.locator('rect[data-testid="chart-bar"]').count()) > 0
    ? chart.getAttribute('data-total') : null), PAGE_WAIT_MS);
  check(charted === String(want.length), `the activity chart counts ${charted} events, expected ${want.length}`);
  const shot = join(shotDir, `${NAME}-${app.key}.png`);
  await page.screenshot({ path: shot, fullPage: true });
  log(`${app.label}: the website lists created, viewed, changed (name) and deleted on users/${user.id}; screenshot ${shot}`);

  // The created event's own page: source and request id as the app sent them.
  const createdRow = page.getByTestId('actor-results').locator('[data-testid="result-row"][data-action="created"]');
  await createdRow.locator('a.time-link').click();
  const detail = page.locator('#event-detail dl.meta-list');
  await detail.waitFor();
  const meta = await detail.evaluate((dl) => Object.fromEntries([...dl.querySelectorAll('div')]
    .map((d) => [d.querySelector('dt')?.textContent, d.querySelector('dd')?.textContent])));
  check(meta.Source === app.source, `the created event's source is ${meta.Source}, expected ${app.source}`);
  check(meta['Request ID'] === `${app.requestPrefix}-post`, `the created event's request id is ${meta['Request ID']}`);
  log(`${app.label}: the created event shows source ${meta.Source} and request id ${meta['Request ID']}`);
}

async function run() {
  check(existsSync(bin), `${bin} does not exist: build it (cargo build -p auditlog) or set AUDITLOG_BIN`);
  check(existsSync(python), `${python} does not exist: run sdks/test.sh (it makes the venv) or set AUDITLOG_SDK_PYTHON`);
  check(existsSync(join(repoRoot, 'sdks/node/dist/index.js')), 'sdks/node is not built: cd sdks/node && npm ci && npm run build');
  check(existsSync(join(expressDir, 'node_modules/express')), `the Express example has no packages: cd ${expressDir} && npm ci`);
  mkdirSync(shotDir, { recursive: true });

  // 1. auditlog up on free ports, fresh data directory.
  dataDir = mkdtempSync(join(tmpdir(), 'auditlog-sdk-examples-'));
  const [apiPort, auditorPort, webPort] = [await freePort(), await freePort(), await freePort()];
  const env = { ...process.env, AUDITLOG_LOG: 'warn', AUDITLOG_LOG_FORMAT: 'human' };
  const up = start('auditlog up', bin, ['up', '--data-dir', dataDir, '--api-addr', `127.0.0.1:${apiPort}`,
    '--auditor-addr', `127.0.0.1:${auditorPort}`, '--web-addr', `127.0.0.1:${webPort}`], { env });
  const auditorUrl = `http://127.0.0.1:${auditorPort}`;
  const webUrl = `http://127.0.0.1:${webPort}`;
  await waitForHttp(up, `${auditorUrl}/healthz`);
  await waitForHttp(up, webUrl);
  log(`auditlog up: auditor ${auditorUrl}, website ${webUrl}`);
  const token = execFileSync(bin, ['token', '--data-dir', dataDir, '--subject', 'users-service', '--role', 'service', '--ttl', '1h'],
    { encoding: 'utf8' }).trim();

  // 2. The two example apps, each acting as a user of its own.
  const apps = [
    { key: 'express', label: 'Express', source: 'users-service', actorId: 901, command: process.execPath, args: [join(expressDir, 'server.mjs')] },
    { key: 'flask', label: 'Flask', source: 'users-service-py', actorId: 902, command: python, args: [flaskApp] },
  ];
  for (const app of apps) {
    const port = await freePort();
    app.url = `http://127.0.0.1:${port}`;
    app.requestPrefix = `${app.key}-${Date.now()}`;
    // The data directory as working directory: the emitters would spill into its .auditlog-spill.
    app.child = start(app.label, app.command, app.args, {
      cwd: dataDir,
      env: { ...process.env, AUDITLOG_URL: auditorUrl, AUDITLOG_TOKEN: token, PORT: String(port) },
    });
    await waitForHttp(app.child, `${app.url}/api/users/0`);
    log(`${app.label} example on ${app.url}`);
  }

  // 3. Create, view, change, delete through each; SIGTERM makes each deliver the rest.
  for (const app of apps) app.user = await exercise(app);
  for (const app of apps) {
    await stop(app.child);
    log(`${app.label} stopped (${app.child.signalCode ?? `exit ${app.child.exitCode}`})`);
  }

  // 4. The website, in Chromium.
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  for (const app of apps) {
    // A page load of its own for each app.
    if (page) await page.close();
    page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on('pageerror', (err) => pageProblems.push(`page error: ${err.message}`));
    page.on('console', (msg) => { if (msg.type() === 'error') pageProblems.push(`console: ${msg.text()}`); });
    await checkWebsite(webUrl, app, app.user);
  }

  const jsErrors = pageProblems.filter((p) => p.startsWith('page error'));
  check(jsErrors.length === 0, `the page threw: ${jsErrors.join('; ')}`);
}

const timer = setTimeout(() => fail(`the run took longer than ${TOTAL_TIMEOUT_MS / 1000} s`), TOTAL_TIMEOUT_MS);

try {
  await run();
  finished = true;
  clearTimeout(timer);
  await cleanUp();
  log('passed');
  console.log(`${NAME}: 1 passed, 0 failed`);
  process.exit(0);
} catch (err) {
  clearTimeout(timer);
  await fail(err && err.message ? err.message : String(err));
}
