/**
 * Auth clients whose endpoints are on the vault's own machine (127.0.0.1,
 * localhost, [::1]): the vault would send the client secret and refresh tokens
 * there, so the API refuses them (400 `validation_failed`, naming the setting)
 * unless the operator sets TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS, which `--demo`
 * turns on and says so in the "vault listening" log line. Vaults in this
 * process on SQLite in temp folders; no provider is called.
 *
 * Regression: before the setting existed, any tenant API key could create an
 * auth client with `http://127.0.0.1:<port>` endpoints.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, type TestContext, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { type RunningVault, startVault } from '../src/server.ts';
import { type Json, newTestApiKey } from './support/vault-harness.ts';

const SETTING = 'TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS';

interface Vault {
  running: RunningVault;
  dataDir: string;
  adminKey: string;
  logs: string[];
  api(
    method: string,
    path: string,
    body?: unknown,
    key?: string,
  ): Promise<{ status: number; json: Json }>;
}

/** A vault with `env` on top of a fresh (or the given) data folder; closed with the test. */
async function startLoopbackVault(
  t: TestContext,
  env: Record<string, string>,
  reuse?: { dataDir: string; adminKey: string },
): Promise<Vault> {
  const dataDir = reuse?.dataDir ?? (await mkdtemp(join(tmpdir(), 'tokenwarden-loopback-')));
  if (reuse === undefined) t.after(() => rm(dataDir, { recursive: true, force: true }));
  const adminKey = reuse?.adminKey ?? newTestApiKey();
  const logs: string[] = [];
  const running = await startVault(
    loadConfig({
      TOKENWARDEN_DATA_DIR: dataDir,
      HOST: '127.0.0.1',
      PORT: '0',
      TOKENWARDEN_ADMIN_KEY: adminKey,
      TOKENWARDEN_BACKGROUND_REFRESH: '0',
      TOKENWARDEN_WEBHOOK_DELIVERY: '0',
      LOG_LEVEL: 'info',
      ...env,
    }),
    { logDestination: { write: (line: string) => void logs.push(line) } },
  );
  t.after(() => running.close());
  const api: Vault['api'] = async (method, path, body, key = adminKey) => {
    const response = await fetch(`${running.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text === '' ? undefined : JSON.parse(text) };
  };
  return { running, dataDir, adminKey, logs, api };
}

function authClient(endpoints: Record<string, string>, name = 'loopback') {
  return {
    name,
    providerId: 'oauth2',
    clientId: 'client',
    clientSecret: `cs-${randomBytes(16).toString('base64url')}`,
    endpoints,
  };
}

const LOOPBACK = {
  authorizationUrl: 'http://127.0.0.1:9/authorize',
  tokenUrl: 'http://127.0.0.1:9/token',
  revocationUrl: 'http://127.0.0.1:9/revoke',
};
const REMOTE = {
  authorizationUrl: 'https://idp.example.com/authorize',
  tokenUrl: 'https://idp.example.com/token',
};

/** The `vault listening` log line, parsed. */
function listeningLine(vault: Vault): Json {
  const line = vault.logs.find((text) => text.includes('"vault listening"'));
  assert.ok(line, 'the vault logged "vault listening"');
  return JSON.parse(line);
}

function assertRefused(answer: { status: number; json: Json }, field: RegExp): void {
  assert.equal(answer.status, 400, JSON.stringify(answer.json));
  assert.equal(answer.json.error.code, 'validation_failed');
  assert.match(answer.json.error.message, new RegExp(`${SETTING}=1`));
  assert.match(answer.json.error.message, /loopback host/);
  assert.match(answer.json.error.message, field);
}

describe('auth-client endpoints on loopback hosts', { timeout: 60_000 }, () => {
  test(`refused by default, for admin and tenant keys, whatever the scheme, with a message naming ${SETTING}`, async (t) => {
    const vault = await startLoopbackVault(t, {});
    assert.equal(listeningLine(vault).loopbackEndpoints, undefined);

    assertRefused(
      await vault.api('POST', '/v1/auth-clients', authClient(LOOPBACK)),
      /endpoints\.tokenUrl: "http:\/\/127\.0\.0\.1:9"/,
    );
    for (const host of ['localhost:8443', '[::1]:8443', '127.0.0.2', '0.0.0.0:8443']) {
      assertRefused(
        await vault.api(
          'POST',
          '/v1/auth-clients',
          authClient({ ...REMOTE, tokenUrl: `https://${host}/token` }),
        ),
        /endpoints\.tokenUrl/,
      );
    }
    assertRefused(
      await vault.api(
        'POST',
        '/v1/auth-clients',
        authClient({ ...REMOTE, issuer: 'http://localhost:9/realms/x' }),
      ),
      /endpoints\.issuer/,
    );

    const tenant = await vault.api('POST', '/v1/tenants', { name: 'other' });
    assert.equal(tenant.status, 201);
    const tenantKey = await vault.api('POST', `/v1/tenants/${tenant.json.id}/api-keys`, {
      label: 'tenant key',
    });
    assert.equal(tenantKey.status, 201);
    assertRefused(
      await vault.api('POST', '/v1/auth-clients', authClient(LOOPBACK), tenantKey.json.key),
      /endpoints\.authorizationUrl/,
    );

    // Plain http elsewhere stays refused, by the profile check as before.
    const plain = await vault.api(
      'POST',
      '/v1/auth-clients',
      authClient({ ...REMOTE, tokenUrl: 'http://idp.example.com/token' }),
    );
    assert.equal(plain.status, 400);
    assert.equal(plain.json.error.code, 'invalid_configuration');

    const remote = await vault.api('POST', '/v1/auth-clients', authClient(REMOTE, 'remote'));
    assert.equal(remote.status, 201, JSON.stringify(remote.json));
    assert.equal((await vault.api('GET', '/v1/auth-clients')).json.authClients.length, 1);

    // PATCH cannot move an accepted auth client to the vault's own machine either.
    assertRefused(
      await vault.api('PATCH', `/v1/auth-clients/${remote.json.id}`, {
        endpoints: LOOPBACK,
        clientSecret: 'another-secret',
      }),
      /endpoints\.revocationUrl/,
    );
    const after = await vault.api('GET', `/v1/auth-clients/${remote.json.id}`);
    assert.deepEqual(after.json.endpoints, REMOTE);
  });

  test(`accepted with ${SETTING}=1, and said in the log line`, async (t) => {
    const vault = await startLoopbackVault(t, { [SETTING]: '1' });
    assert.match(listeningLine(vault).loopbackEndpoints, new RegExp(`^allowed: ${SETTING} is on`));
    const created = await vault.api('POST', '/v1/auth-clients', authClient(LOOPBACK));
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.deepEqual(created.json.endpoints, LOOPBACK);
    const https = await vault.api(
      'POST',
      '/v1/auth-clients',
      authClient({ ...REMOTE, tokenUrl: 'https://localhost:8443/token' }),
    );
    assert.equal(https.status, 201, JSON.stringify(https.json));
    const moved = await vault.api('PATCH', `/v1/auth-clients/${https.json.id}`, {
      endpoints: LOOPBACK,
      clientSecret: 'another-secret',
    });
    assert.equal(moved.status, 200, JSON.stringify(moved.json));
  });

  test('demo mode turns it on (and says so); an explicit 0 still wins', async (t) => {
    const demo = await startLoopbackVault(t, { TOKENWARDEN_DEMO_PROVIDER: '1' });
    assert.match(listeningLine(demo).loopbackEndpoints, /demo mode/);
    assert.ok(demo.running.demoProvider, 'the demo provider runs');
    const demoClient = await demo.api('GET', '/v1/auth-clients/ac_demo');
    assert.equal(demoClient.status, 200);
    assert.match(demoClient.json.endpoints.tokenUrl, /^http:\/\/127\.0\.0\.1:\d+\//);
    // The demo provider's consent page is reachable through the connect flow.
    const session = await demo.api('POST', '/v1/connect-sessions', { authClientId: 'ac_demo' });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const opened = await fetch(session.json.url, { redirect: 'manual' });
    assert.equal(opened.status, 302);
    assert.ok(
      opened.headers.get('location')?.startsWith(demoClient.json.endpoints.authorizationUrl),
    );
    const created = await demo.api('POST', '/v1/auth-clients', authClient(LOOPBACK));
    assert.equal(created.status, 201, JSON.stringify(created.json));

    const strict = await startLoopbackVault(t, { TOKENWARDEN_DEMO_PROVIDER: '1', [SETTING]: '0' });
    assert.equal(listeningLine(strict).loopbackEndpoints, undefined);
    assert.equal((await strict.api('GET', '/v1/auth-clients/ac_demo')).status, 200);
    assertRefused(
      await strict.api('POST', '/v1/auth-clients', authClient(LOOPBACK)),
      /endpoints\.tokenUrl/,
    );
  });

  test('auth clients stored while it was on are named at start-up without it, and cannot be edited', async (t) => {
    const first = await startLoopbackVault(t, { [SETTING]: '1' });
    const created = await first.api('POST', '/v1/auth-clients', authClient(LOOPBACK));
    assert.equal(created.status, 201);
    await first.running.close();

    const second = await startLoopbackVault(t, {}, first);
    const warning = second.logs
      .map((line) => JSON.parse(line) as Json)
      .find((line) => Array.isArray(line.authClients));
    assert.ok(warning, 'a start-up warning lists them');
    assert.match(warning.msg, new RegExp(SETTING));
    assert.deepEqual(warning.authClients, [{ id: created.json.id, tenantId: 'default' }]);
    assertRefused(
      await second.api('PATCH', `/v1/auth-clients/${created.json.id}`, { name: 'renamed' }),
      /endpoints\.tokenUrl/,
    );
    const fixed = await second.api('PATCH', `/v1/auth-clients/${created.json.id}`, {
      endpoints: REMOTE,
      clientSecret: 'another-secret',
    });
    assert.equal(fixed.status, 200, JSON.stringify(fixed.json));
    assert.equal((await second.api('DELETE', `/v1/auth-clients/${created.json.id}`)).status, 204);
  });
});
