/**
 * The vault's web UI in a real browser: Debian's chromium driven by
 * playwright-core against a vault started in this process (SQLite in a temp
 * folder, the built-in demo provider on, a known admin key). It signs in,
 * connects an account through the demo provider's consent page, watches the
 * credential's expiry count down, refreshes it, adds an auth client through the
 * form (with HTML in its name, which must stay text), revokes the credential,
 * and loses the session on a 401. Every page of the vault runs under its
 * Content-Security-Policy, so a console error there (a CSP violation, a script
 * error) fails the run.
 *
 * A screenshot of the signed-in page is written to the OS temp folder
 * (`tokenwarden-ui.png`) for a human look; it is not compared with anything.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Browser, chromium, type Locator, type Page } from 'playwright-core';
import { loadConfig } from '../src/config.ts';
import { type RunningVault, startVault } from '../src/server.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-gpu',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];
const ADMIN_KEY = `twk_uitest_${randomBytes(24).toString('base64url')}`;
/** Long enough that the background refresher leaves the credential alone during the run. */
const TOKEN_LIFETIME_SECONDS = 900;
const SCREENSHOT = join(tmpdir(), 'tokenwarden-ui.png');

let dataDir: string | undefined;
let vault: RunningVault | undefined;
let browser: Browser | undefined;
let page: Page;
/** Console errors and uncaught exceptions on the vault's own pages. */
const pageProblems: string[] = [];
/** The credential the connect flow created. */
let credentialId = '';

/** Polls `probe` until it returns something other than undefined/false, or fails naming `what`. */
async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastSeen: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      lastSeen = value;
    } catch (error) {
      lastSeen = error;
    }
    if (Date.now() > deadline) {
      assert.fail(`expected ${what} within ${timeoutMs} ms (last seen: ${String(lastSeen)})`);
    }
    await sleep(200);
  }
}

async function text(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? '').trim();
}

function credentialRow(id: string): Locator {
  return page.locator(`[data-testid="credential-row"][data-credential-id="${id}"]`);
}

function vaultUrl(): string {
  assert.ok(vault, 'the vault is running');
  return vault.url;
}

/** Every log line of the vault under test. */
const logLines: string[] = [];
/** What the fake provider's codes and tokens look like (packages/testing/src/internal/store.ts). */
const FAKE_SECRET = /\b(?:code|at|rt)_[A-Za-z0-9_-]{40,}/;

describe('vault web UI in chromium', { timeout: 180_000 }, () => {
  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: this test drives Debian's chromium. Install it with: apt-get install chromium`,
    );
    dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-ui-'));
    vault = await startVault(
      loadConfig({
        TOKENWARDEN_DATA_DIR: dataDir,
        HOST: '127.0.0.1',
        PORT: '0',
        TOKENWARDEN_ADMIN_KEY: ADMIN_KEY,
        TOKENWARDEN_DEMO_PROVIDER: '1',
        TOKENWARDEN_DEMO_TOKEN_LIFETIME: String(TOKEN_LIFETIME_SECONDS),
        LOG_LEVEL: 'debug',
      }),
      { logDestination: { write: (line: string) => void logLines.push(line) } },
    );
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    page = await context.newPage();
    page.setDefaultTimeout(15_000);
    const origin = new URL(vault.url).origin;
    const onVault = (url: string) => url.startsWith(`${origin}/`) || url === origin;
    page.on('pageerror', (error) => {
      if (onVault(page.url())) pageProblems.push(`uncaught: ${error.message}`);
    });
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      const where = message.location().url || page.url();
      if (!onVault(where)) return;
      // The browser logs every non-2xx fetch; the 401s this test provokes on purpose are expected.
      if (/Failed to load resource: .*\b401\b/.test(message.text())) return;
      pageProblems.push(`console error on ${where}: ${message.text()}`);
    });
  });

  after(async () => {
    await browser?.close();
    await vault?.close();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    // The demo provider's codes and tokens carry these prefixes: none may reach a log line.
    const leaks = logLines.filter((line) => FAKE_SECRET.test(line) || line.includes(ADMIN_KEY));
    assert.deepEqual(leaks, [], 'a code, token or API key reached the vault log');
    assert.ok(logLines.length > 0, 'the vault logged (the check above saw something)');
  });

  test('refuses an unknown API key with a message', async () => {
    await page.goto(vaultUrl());
    await page.getByTestId('sign-in-key').fill(`twk_nosuch_${'x'.repeat(40)}`);
    await page.getByTestId('sign-in-submit').click();
    const message = page.getByTestId('sign-in-message');
    await message.waitFor({ state: 'visible' });
    assert.match(await text(message), /did not accept this API key/);
    assert.equal(await page.locator('#app').isVisible(), false);
  });

  test('signs in with the admin key and lists the demo auth client', async () => {
    await page.getByTestId('sign-in-key').fill(ADMIN_KEY);
    await page.getByTestId('sign-in-submit').click();
    const demo = page.getByTestId('auth-client-row').filter({ hasText: 'Demo provider' });
    await demo.waitFor();
    assert.match(await text(demo.getByTestId('auth-client-status')), /^ok/);
    assert.equal(await page.getByTestId('sign-in-key').isVisible(), false);
    assert.equal(
      await page.evaluate(() => sessionStorage.getItem('tokenwarden.apiKey')),
      ADMIN_KEY,
      'the key is kept in sessionStorage',
    );
  });

  test("connects an account through the provider's consent page", async () => {
    const demo = page.getByTestId('auth-client-row').filter({ hasText: 'Demo provider' });
    await demo.getByTestId('connect-button').click();
    const approve = page.getByRole('button', { name: 'Approve' });
    await approve.waitFor();
    assert.notEqual(
      new URL(page.url()).origin,
      new URL(vaultUrl()).origin,
      'the consent page is served by the provider, not the vault',
    );
    await approve.click();

    const banner = page.getByTestId('connect-banner');
    await banner.waitFor();
    const match = /Connected: (cr_[A-Za-z0-9_-]+)/.exec(await text(banner));
    assert.ok(match?.[1], `the banner names the new credential: "${await text(banner)}"`);
    credentialId = match[1];

    const url = new URL(page.url());
    assert.equal(url.origin, new URL(vaultUrl()).origin, 'back on the vault');
    assert.equal(url.search, '', 'the result parameters are taken out of the address bar');
    assert.equal(url.hash, '#credentials');
  });

  test('shows the credential as active with a live expiry countdown', async () => {
    const row = credentialRow(credentialId);
    await row.waitFor();
    assert.match(await text(row.getByTestId('credential-status')), /^active/);
    assert.match(await text(row.getByTestId('credential-auth-client')), /^Demo provider$/);
    assert.equal(await text(row.getByTestId('credential-refresh-count')), '0');

    const expiry = row.getByTestId('credential-expiry');
    const first = await text(expiry);
    assert.match(first, /^expires in \d+ min( \d+ s)?$/);
    const later = await eventually('the expiry countdown to move', async () => {
      const now = await text(expiry);
      return now !== first && now;
    });
    assert.match(later, /^expires in /);

    const events = page.getByTestId('events-list');
    await events
      .locator(`[data-event-type="connected"][data-credential-id="${credentialId}"]`)
      .waitFor();
  });

  test('Refresh now increases the refresh count and logs a refreshed event', async () => {
    const row = credentialRow(credentialId);
    const count = row.getByTestId('credential-refresh-count');
    const before = Number(await text(count));
    await row.getByTestId('refresh-button').click();
    await eventually('the refresh count to increase', async () => {
      const now = Number(await text(count));
      return now > before && now;
    });
    assert.match(await text(row.getByTestId('credential-status')), /^active/);
    assert.notEqual(await text(row.getByTestId('credential-last-refresh')), 'never');
    assert.match(await text(row.getByTestId('credential-expiry')), /^expires in /);

    const refreshed = page
      .getByTestId('events-list')
      .locator(`[data-event-type="refreshed"][data-credential-id="${credentialId}"]`);
    await refreshed.first().waitFor();
    // Newest first: the refresh is listed above the connect.
    const types = await page
      .getByTestId('events-list')
      .locator('[data-testid="event"]')
      .evaluateAll((items) => items.map((item) => item.getAttribute('data-event-type')));
    assert.ok(
      types.indexOf('refreshed') < types.indexOf('connected'),
      `events newest first: ${types.join(', ')}`,
    );
  });

  test('adds an auth client through the form; HTML in its name stays text', async () => {
    const name = '<img src=x data-injected=1> Acme & "Co"';
    await page.locator('#add-auth-client > summary').click();
    await page.getByTestId('auth-client-name').fill(name);
    await page.getByTestId('auth-client-provider').selectOption('oauth2');
    await page.getByTestId('auth-client-client-id').fill('acme-client');
    await page.getByTestId('auth-client-client-secret').fill('acme-secret');
    await page.getByTestId('auth-client-scopes').fill('read write');
    await page.locator('#ac-authorization-url').fill('http://127.0.0.1:9/authorize');
    await page.locator('#ac-token-url').fill('http://127.0.0.1:9/token');
    await page.getByTestId('auth-client-submit').click();

    const row = page.getByTestId('auth-client-row').filter({ hasText: 'Acme & "Co"' });
    await row.waitFor();
    assert.equal(await text(row.locator('td').first()), name);
    assert.equal(await page.locator('[data-injected]').count(), 0, 'no element built from data');
    assert.ok(await page.getByTestId('auth-client-form-message').isHidden());
  });

  test('the signed-in page renders (screenshot for a human look)', async (t) => {
    // Collapse the form again so the screenshot shows the three lists.
    await page.locator('#add-auth-client > summary').click();
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    assert.deepEqual(pageProblems, [], 'no console errors or CSP violations on vault pages');
  });

  test('Revoke asks first, then removes the credential and logs a revoked event', async () => {
    const row = credentialRow(credentialId);
    page.once('dialog', (dialog) => {
      assert.equal(dialog.type(), 'confirm');
      assert.match(dialog.message(), new RegExp(credentialId));
      void dialog.accept();
    });
    await row.getByTestId('revoke-button').click();
    await row.waitFor({ state: 'detached' });
    await page
      .getByTestId('events-list')
      .locator(`[data-event-type="revoked"][data-credential-id="${credentialId}"]`)
      .waitFor();
  });

  test('a 401 from the API returns to the sign-in form with a message', async () => {
    await page.evaluate(() =>
      sessionStorage.setItem('tokenwarden.apiKey', `twk_revoked_${'y'.repeat(40)}`),
    );
    const message = page.getByTestId('sign-in-message');
    await message.waitFor({ state: 'visible', timeout: 10_000 });
    assert.match(await text(message), /401/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('tokenwarden.apiKey')), null);
    assert.equal(await page.locator('#app').isVisible(), false);
    assert.deepEqual(pageProblems, [], 'no console errors or CSP violations on vault pages');
  });
});
