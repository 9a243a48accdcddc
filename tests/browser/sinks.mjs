// Headless browser test of the website's Sinks page: it makes three sinks on the
// auditor (a webhook whose receiver is down, a files sink, a paused one), opens
// #/sinks and expects each row with its state badge, the failing sink's error, and
// the files sink delivering.
//
//   AUDITLOG_WEB_URL=http://127.0.0.1:3002 AUDITLOG_AUDITOR_URL=http://127.0.0.1:3001 \
//     node tests/browser/sinks.mjs
//
// Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium). The screenshot
// goes to <repo>/target/screenshots/sinks.png. Exit 0 on success, 1 on any failure.

import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'sinks';
const JSONAPI = 'application/vnd.api+json';
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const webUrl = (process.env.AUDITLOG_WEB_URL || '').replace(/\/+$/, '');
const auditorUrl = (process.env.AUDITLOG_AUDITOR_URL || '').replace(/\/+$/, '');
const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

let passed = 0;
let failed = 0;

function check(ok, what) {
  if (ok) {
    passed += 1;
    console.log(`${NAME}: ok: ${what}`);
  } else {
    failed += 1;
    console.error(`${NAME}: FAILED: ${what}`);
  }
}

async function addSink(token, id, attributes) {
  const res = await fetch(`${auditorUrl}/api/sinks`, {
    method: 'POST',
    headers: { 'Content-Type': JSONAPI, Authorization: `Bearer ${token}` },
    body: JSON.stringify({ data: { type: 'sinks', id, attributes } }),
  });
  if (res.status !== 201) throw new Error(`POST /api/sinks ${id}: ${res.status} ${await res.text()}`);
}

if (!webUrl || !auditorUrl) {
  console.error(`${NAME}: set AUDITLOG_WEB_URL and AUDITLOG_AUDITOR_URL`);
  process.exit(1);
}
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const token = (await (await fetch(`${webUrl}/tokens/1`)).text()).trim().replace(/^"|"$/g, '');
  const directory = mkdtempSync(join(tmpdir(), 'auditlog-sinks-'));
  await addSink(token, 'siem', { kind: 'webhook', url: 'http://127.0.0.1:9/hook', failingAfterSecs: 1 });
  await addSink(token, 'archive', { kind: 'files', directory });
  await addSink(token, 'paused-hec', { kind: 'splunk', url: 'http://127.0.0.1:9', token: 'x', paused: true });

  const page = await browser.newPage({ viewport: { width: 1280, height: 640 } });
  await page.goto(`${webUrl}/#/sinks`);
  await page.getByTestId('sink-siem').waitFor({ timeout: 15_000 });
  check((await page.locator('#sinks-body tr').count()) === 3, 'three sinks are listed');
  // The page refreshes itself every 2 s: the failing badge and the delivery appear.
  await page.locator('[data-testid="sink-siem"] .sink-failing').waitFor({ timeout: 20_000 });
  const siem = await page.getByTestId('sink-siem').textContent();
  check(/could not be reached/.test(siem), 'the failing sink shows its last error');
  await page.locator('[data-testid="sink-archive"] .sink-delivering').waitFor({ timeout: 20_000 });
  check(true, 'the files sink is delivering');
  const paused = await page.locator('[data-testid="sink-paused-hec"] .sink-state').textContent();
  check(paused === 'paused', 'the paused sink says so');
  check(!(await page.locator('#sinks-body').textContent()).includes('"x"'), 'no secret is shown');
  mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: join(shotDir, 'sinks.png') });
} catch (err) {
  failed += 1;
  console.error(`${NAME}: FAILED: ${err?.stack || err}`);
} finally {
  await browser.close();
}
console.log(`${NAME}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
