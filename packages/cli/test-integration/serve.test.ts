import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EXIT } from '../src/errors.ts';
import { type RunningCli, runCli, startCli } from '../test/support/run-cli.ts';

/**
 * What a person does in the browser: open the connect URL (the vault sets its
 * cookie and redirects to the provider), approve on the demo provider's consent
 * page, follow the redirect back to the vault's callback with the cookie.
 */
async function approveInBrowser(connectUrl: string): Promise<void> {
  const start = await fetch(connectUrl, { redirect: 'manual' });
  assert.equal(start.status, 302, await start.text());
  const cookie = start.headers
    .getSetCookie()
    .map((header) => header.split(';')[0])
    .join('; ');
  const authorizeUrl = start.headers.get('location') ?? '';
  const consent = await fetch(authorizeUrl, { redirect: 'manual' });
  const html = await consent.text();
  const requestId = /name="request_id" value="([^"]+)"/.exec(html)?.[1];
  assert.ok(requestId, `no consent form: ${html.slice(0, 200)}`);
  const decision = await fetch(new URL('/authorize/decision', authorizeUrl), {
    method: 'POST',
    body: new URLSearchParams({ request_id: requestId, decision: 'approve' }),
    redirect: 'manual',
  });
  assert.equal(decision.status, 302);
  const callback = await fetch(decision.headers.get('location') ?? '', {
    headers: { cookie },
    redirect: 'manual',
  });
  await callback.text();
  assert.ok(callback.status < 400, `callback answered ${callback.status}`);
}

describe('against the real vault started by "tokenwarden serve"', () => {
  let dataDir: string;
  let serve: RunningCli;
  let env: Record<string, string>;
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-cli-'));
    serve = startCli(
      ['serve', '--port', '0', '--data-dir', dataDir, '--demo', '--log-level', 'warn'],
      { env: { TOKENWARDEN_DEMO_TOKEN_LIFETIME: '3600' } },
    );
    const [, url] = await serve.waitFor('stdout', /^listening on (http:\/\/\S+)$/m);
    const [, key] = await serve.waitFor('stderr', /export TOKENWARDEN_API_KEY=(\S+)/);
    env = { TOKENWARDEN_URL: url ?? '', TOKENWARDEN_API_KEY: key ?? '' };
  });
  after(async () => {
    serve.kill('SIGTERM');
    const result = await serve.exited;
    await rm(dataDir, { recursive: true, force: true });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /SIGTERM: stopping/);
  });

  it('auth-clients list shows the demo auth client', async () => {
    const result = await runCli(['auth-clients', 'list', '--json'], { env });
    assert.equal(result.code, EXIT.ok, result.stderr);
    const { authClients } = JSON.parse(result.stdout) as { authClients: { id: string }[] };
    assert.deepEqual(
      authClients.map((client) => client.id),
      ['ac_demo'],
    );
    const table = await runCli(['auth-clients', 'list'], { env });
    assert.match(table.stdout, /^ac_demo +Demo provider +microsoft /m);
  });

  it('connect, token, credentials, keys rotate, delete', async () => {
    const connecting = startCli(['connect', 'ac_demo', '--timeout', '30'], { env });
    const [, connectUrl] = await connecting.waitFor('stderr', /Open this URL in a browser: (\S+)/);
    await approveInBrowser(connectUrl ?? '');
    const connected = await connecting.exited;
    assert.equal(connected.code, EXIT.ok, connected.stderr);
    assert.match(connected.stdout, /^\S+\n$/);
    const credentialId = connected.stdout.trim();

    const token = await runCli(['token', credentialId], { env });
    assert.equal(token.code, EXIT.ok, token.stderr);
    assert.match(token.stdout, /^\S+\n$/);
    assert.equal(token.stderr, '');

    const shown = await runCli(['credentials', 'show', credentialId, '--json'], { env });
    assert.equal(shown.code, EXIT.ok, shown.stderr);
    assert.equal((JSON.parse(shown.stdout) as { status: string }).status, 'active');
    assert.ok(!shown.stdout.includes(token.stdout.trim()), 'show never prints a token');

    const refreshed = await runCli(['credentials', 'refresh', credentialId], { env });
    assert.equal(refreshed.code, EXIT.ok, refreshed.stderr);

    // Re-encrypts while serve keeps running; the credential stays usable.
    const rotated = await runCli(['keys', 'rotate', '--data-dir', dataDir], { env });
    assert.equal(rotated.code, EXIT.ok, rotated.stderr);
    assert.match(rotated.stdout, /^new encryption key: \S+$/m);
    assert.match(
      rotated.stdout,
      /^re-encrypted: 1 credentials, 1 auth clients, 0 webhook secrets$/m,
    );
    const tokenAfter = await runCli(['token', credentialId], { env });
    assert.equal(tokenAfter.code, EXIT.ok, tokenAfter.stderr);

    const deleted = await runCli(['credentials', 'delete', credentialId, '--yes'], { env });
    assert.equal(deleted.code, EXIT.ok, deleted.stderr);
    const gone = await runCli(['token', credentialId], { env });
    assert.equal(gone.code, EXIT.notFound, gone.stderr);
  });

  // Last: it adds an auth client, which the tests above count.
  it('--demo allows auth clients on loopback endpoints, and says so', async () => {
    await serve.waitFor(
      'stderr',
      /Note: +auth clients may use endpoints on loopback hosts \(TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS, on for --demo\)/,
    );
    const added = await runCli(
      [
        'auth-clients',
        'add',
        '--name',
        'Local IdP',
        '--provider',
        'oauth2',
        '--client-id',
        'local',
        '--client-secret-env',
        'LOCAL_SECRET',
        '--authorization-url',
        'http://127.0.0.1:9/authorize',
        '--token-url',
        'http://127.0.0.1:9/token',
        '--json',
      ],
      { env: { ...env, LOCAL_SECRET: `cs-${Date.now()}-local-secret` } },
    );
    assert.equal(added.code, EXIT.ok, added.stderr);
    assert.equal(
      (JSON.parse(added.stdout) as { endpoints: { tokenUrl: string } }).endpoints.tokenUrl,
      'http://127.0.0.1:9/token',
    );
  });
});

describe('tokenwarden serve configuration', () => {
  it('lists every problem, names the flags, and exits 2', async () => {
    const result = await runCli(['serve', '--port', 'eighty', '--log-level', 'loud']);
    assert.equal(result.code, EXIT.usage);
    assert.match(result.stderr, /PORT \(--port\):/);
    assert.match(result.stderr, /LOG_LEVEL \(--log-level\):/);
    assert.equal(result.stdout, '');
  });
});
