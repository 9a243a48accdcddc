// Headless browser test of the website's Retention page, as the operator (user 1):
// it sets the default tenant's retention (confirmed first), places a legal hold on
// one user, sees both, then releases the hold after a confirmation it first
// dismisses (nothing is released then).
//
//   AUDITLOG_WEB_URL=http://127.0.0.1:3002 node tests/browser/retention.mjs
//
// Uses Debian's chromium (CHROMIUM_PATH, default /usr/bin/chromium). The screenshot
// goes to <repo>/target/screenshots/retention.png. Exit 0 on success, 1 on any failure.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const NAME = 'retention';
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const shotDir = join(repoRoot, 'target', 'screenshots');
const webUrl = (process.env.AUDITLOG_WEB_URL || '').replace(/\/+$/, '');
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

if (!webUrl) {
  console.error(`${NAME}: set AUDITLOG_WEB_URL`);
  process.exit(1);
}
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const dialogs = [];
  let dismissNext = false;
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    if (dismissNext) {
      dismissNext = false;
      d.dismiss();
    } else {
      d.accept();
    }
  });
  await page.goto(`${webUrl}/#/users`);
  await page.getByTestId('whoami').filter({ hasText: 'operator' }).waitFor({ timeout: 15_000 });
  await page.getByTestId('nav-retention').click();
  await page.getByTestId('retention-summary').filter({ hasText: 'for ever' }).waitFor({ timeout: 15_000 });

  // The default tenant keeps its events 400 days: asked first, then shown.
  await page.getByTestId('retention-days-default').fill('400');
  await page.getByTestId('retention-save-default').click();
  await page.getByTestId('retention-table').getByText('400 days').waitFor({ timeout: 10_000 });
  check(dialogs.some((m) => m.includes('400 days')), 'shortening the retention asks first');
  check((await page.getByTestId('retention-days-default').inputValue()) === '400',
    'the default tenant keeps its events 400 days, its own policy');

  // A hold on users 1, with a reason.
  await page.getByTestId('hold-target-type').fill('users');
  await page.getByTestId('hold-target-id').fill('1');
  await page.getByTestId('hold-reason').fill('case 2026-7: a customer complaint');
  await page.getByTestId('place-hold').click();
  const hold = page.getByTestId('holds-table').locator('tbody tr').filter({ hasText: 'case 2026-7' });
  await hold.waitFor({ timeout: 10_000 });
  const row = await hold.textContent();
  check(row.includes('users 1') && row.includes('users/1'), `the hold shows what it covers and who placed it: ${row}`);
  check((await page.getByTestId('retention-summary').textContent()).includes('for ever'),
    'the page says what tenants without a policy keep');
  const holdsCell = await page.getByTestId('retention-table').locator('tr', { hasText: 'default' }).textContent();
  check(/400 days\s*1/.test(holdsCell.replace(/\s+/g, ' ')), `the tenant counts its hold: ${holdsCell}`);
  mkdirSync(shotDir, { recursive: true });
  await page.screenshot({ path: join(shotDir, 'retention.png'), fullPage: true });

  // Releasing asks first: dismissed, the hold stays; accepted, it goes.
  dismissNext = true;
  await hold.getByTestId('release-hold').click();
  await page.waitForTimeout(300);
  check(await hold.count() === 1, 'a dismissed confirmation releases nothing');
  await hold.getByTestId('release-hold').click();
  await page.getByTestId('holds-empty').waitFor({ state: 'visible', timeout: 10_000 });
  check(dialogs.filter((m) => m.includes('Release the legal hold')).length === 2,
    'the release was confirmed first');
  check(await hold.count() === 0, 'the released hold is gone');
} catch (err) {
  failed += 1;
  console.error(`${NAME}: FAILED: ${err?.stack || err}`);
} finally {
  await browser.close();
}
console.log(`${NAME}: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
