/**
 * The vault's HTTP API (docs/api.md), route by route, against a vault and the
 * fake provider in this process: auth clients, connect sessions, credentials
 * and their tokens (refresh before expiry, compare-and-refresh under 50
 * concurrent callers, reauthorization, Salesforce's instance_url, updateKeys,
 * forced refresh, revocation), events, tenants and API keys, authentication,
 * tenant isolation (another tenant's things answer 404), the operations routes
 * and the OpenAPI document.
 *
 * The harness checks every `/v1` answer for the `{error: {code, message}}`
 * shape and for secrets, and every vault's log for secrets when it closes
 * (support/vault-harness.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CALLER_RETRY_GAP_MS } from '../src/credential-service.ts';
import {
  type ApiResponse,
  assertError,
  type Json,
  newTestApiKey,
  startTestVault,
  type TestVault,
} from './support/vault-harness.ts';

const nowSeconds = () => Date.now() / 1000;

/** The documented members of a credential: metadata, never a token. */
const CREDENTIAL_KEYS = [
  'authClientId',
  'createdAt',
  'expiresAt',
  'flags',
  'id',
  'lastError',
  'lastRefreshAt',
  'nextRefreshAt',
  'providerId',
  'refreshCount',
  'scope',
  'status',
  'statusReason',
  'updatedAt',
];

const AUTH_CLIENT_KEYS = [
  'clientId',
  'createdAt',
  'endpoints',
  'hasClientSecret',
  'id',
  'name',
  'placeholders',
  'providerId',
  'scopes',
  'status',
  'statusReason',
  'updatedAt',
];

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Every member name in a JSON value, however deep. */
function memberNames(value: unknown, into: Set<string> = new Set()): Set<string> {
  if (Array.isArray(value)) for (const item of value) memberNames(item, into);
  else if (typeof value === 'object' && value !== null) {
    for (const [key, member] of Object.entries(value)) {
      into.add(key);
      memberNames(member, into);
    }
  }
  return into;
}

function assertNoTokenMembers(value: unknown): void {
  for (const name of memberNames(value)) {
    assert.ok(
      !/^(access_token|refresh_token|id_token|accessToken|refreshToken|tokens?|client_?secret|clientSecret|key|keyHash|key_hash)$/i.test(
        name,
      ),
      `no ${name} member in the answer`,
    );
  }
}

function assertCredentialShape(credential: Json): void {
  assert.deepEqual(Object.keys(credential).sort(), CREDENTIAL_KEYS);
  assert.match(credential.id, /^cr_/);
  assert.match(credential.createdAt, ISO);
  assert.match(credential.updatedAt, ISO);
  assert.ok(['active', 'reauth_required', 'revoked'].includes(credential.status));
  assert.equal(typeof credential.flags.missingRefreshToken, 'boolean');
  assertNoTokenMembers(credential);
}

function accessToken(t: TestVault, credentialId: string, body?: unknown, key?: string) {
  return t.api('POST', `/v1/credentials/${credentialId}/access-token`, {
    ...(body === undefined ? {} : { body }),
    ...(key === undefined ? {} : { key }),
  });
}

async function typesOf(t: TestVault, credentialId: string): Promise<string[]> {
  const events = await t.api('GET', `/v1/events?credentialId=${credentialId}&limit=500`);
  assert.equal(events.status, 200);
  return events.json.events.map((event: { type: string }) => event.type);
}

/** Imports a made-up token set (remembered as secrets); returns the answer and the tokens. */
async function importCredential(
  t: TestVault,
  tokens: Record<string, unknown> = {},
  authClientId = t.authClientId,
  key?: string,
): Promise<{ answer: ApiResponse; accessToken: string; refreshToken: string }> {
  const access = t.rememberSecret(`imported-at-${randomBytes(16).toString('base64url')}`);
  const refresh = t.rememberSecret(`imported-rt-${randomBytes(16).toString('base64url')}`);
  const answer = await t.api('POST', '/v1/credentials', {
    ...(key === undefined ? {} : { key }),
    body: {
      authClientId,
      tokens: {
        access_token: access,
        token_type: 'bearer',
        refresh_token: refresh,
        expires_in: 3600,
        scope: 'profile email',
        ...tokens,
      },
    },
  });
  return { answer, accessToken: access, refreshToken: refresh };
}

describe('providers, auth clients, connect sessions, credentials', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('GET /v1/providers lists the catalog', async () => {
    const answer = await t.api('GET', '/v1/providers');
    assert.equal(answer.status, 200);
    const byId = new Map<string, Json>(answer.json.providers.map((p: Json) => [p.id, p]));
    for (const id of ['microsoft', 'salesforce', 'google', 'github', 'slack', 'xero', 'oauth2'])
      assert.ok(byId.has(id), `the catalog has ${id}`);
    const microsoft = byId.get('microsoft');
    assert.equal(typeof microsoft.displayName, 'string');
    assert.equal(microsoft.rotation, 'rotating');
    assert.equal(microsoft.placeholders.tenant.default, 'common');
    assert.ok(microsoft.defaultScopes.includes('offline_access'));
    assert.ok(microsoft.docs.length > 0);
    for (const provider of answer.json.providers) {
      assert.equal(typeof provider.id, 'string');
      assert.ok(Array.isArray(provider.defaultScopes));
      assert.ok(['none', 'rotating', 'single-use'].includes(provider.rotation));
    }
  });

  test('auth clients: POST, GET, GET one; client_secret never in an answer', async () => {
    const created = await t.api('POST', '/v1/auth-clients', {
      body: {
        name: 'Another client',
        providerId: 'oauth2',
        clientId: t.clientId,
        clientSecret: t.clientSecret,
        scopes: ['profile', 'email'],
        endpoints: {
          authorizationUrl: t.provider.authorizationEndpoint,
          tokenUrl: t.provider.tokenEndpoint,
        },
      },
    });
    assert.equal(created.status, 201);
    const client = created.json;
    assert.deepEqual(Object.keys(client).sort(), AUTH_CLIENT_KEYS);
    assert.match(client.id, /^ac_/);
    assert.equal(client.name, 'Another client');
    assert.equal(client.providerId, 'oauth2');
    assert.equal(client.clientId, t.clientId);
    assert.equal(client.hasClientSecret, true);
    assert.deepEqual(client.scopes, ['profile', 'email']);
    assert.deepEqual(client.placeholders, {});
    assert.equal(client.endpoints.tokenUrl, t.provider.tokenEndpoint);
    assert.equal(client.status, 'ok');
    assert.equal(client.statusReason, null);
    assert.match(client.createdAt, ISO);
    assertNoTokenMembers(client);

    const one = await t.api('GET', `/v1/auth-clients/${client.id}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.json, client);
    const list = await t.api('GET', '/v1/auth-clients');
    assert.equal(list.status, 200);
    const ids = list.json.authClients.map((c: Json) => c.id);
    assert.ok(ids.includes(client.id) && ids.includes(t.authClientId));
    assertNoTokenMembers(list.json);
  });

  test('auth clients: invalid configurations answer 400 listing each problem', async () => {
    const base = { name: 'x', clientId: 'id', clientSecret: t.rememberSecret('s3cret-for-400') };
    const noEndpoints = await t.api('POST', '/v1/auth-clients', {
      body: { ...base, providerId: 'oauth2' },
    });
    assertError(noEndpoints, 400, 'invalid_configuration');
    assert.match(noEndpoints.json.error.message, /endpoints\.authorizationUrl/);
    assert.match(noEndpoints.json.error.message, /endpoints\.tokenUrl/);

    const microsoft = await t.api('POST', '/v1/auth-clients', {
      body: {
        ...base,
        providerId: 'microsoft',
        placeholders: { tenant: 'not a tenant!', region: 'eu' },
        endpoints: { tokenUrl: 'http://login.example.com/token' },
      },
    });
    assertError(microsoft, 400, 'invalid_configuration');
    for (const problem of [/placeholders\.tenant/, /placeholders\.region/, /endpoints\.tokenUrl/])
      assert.match(microsoft.json.error.message, problem);

    assertError(
      await t.api('POST', '/v1/auth-clients', { body: { ...base, providerId: 'nope' } }),
      400,
      'invalid_configuration',
    );
    // Malformed bodies: missing members, unknown members, wrong types.
    for (const body of [
      { name: 'x', providerId: 'oauth2', clientId: 'id' },
      { ...base, providerId: 'oauth2', client_secret: 'x' },
      { ...base, providerId: 'oauth2', scopes: { profile: true } },
      { ...base, providerId: 'oauth2', name: '' },
    ]) {
      assertError(await t.api('POST', '/v1/auth-clients', { body }), 400, 'validation_failed');
    }
    assertError(
      await t.api('POST', '/v1/auth-clients', { rawBody: '{"name": ' }),
      400,
      'validation_failed',
    );
  });

  test('auth clients: PATCH (the secret stays write-only; a wrong one marks it misconfigured)', async () => {
    const id = await t.registerAuthClient({ name: 'to patch' });
    const credentialId = await t.connectAccount({ authClientId: id });

    const renamed = await t.api('PATCH', `/v1/auth-clients/${id}`, {
      body: { name: 'patched', scopes: ['profile'] },
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.json.name, 'patched');
    assert.deepEqual(renamed.json.scopes, ['profile']);
    assert.equal(renamed.json.providerId, 'oauth2');
    assert.equal(renamed.json.hasClientSecret, true);

    const wrongSecret = t.rememberSecret(`wrong-${randomBytes(16).toString('base64url')}`);
    const patched = await t.api('PATCH', `/v1/auth-clients/${id}`, {
      body: { clientSecret: wrongSecret },
    });
    assert.equal(patched.status, 200);
    assertNoTokenMembers(patched.json);
    const refused = await t.api('POST', `/v1/credentials/${credentialId}/refresh`);
    assertError(refused, 502, 'client_misconfigured');
    const misconfigured = await t.api('GET', `/v1/auth-clients/${id}`);
    assert.equal(misconfigured.json.status, 'misconfigured');
    assert.equal(typeof misconfigured.json.statusReason, 'string');
    const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
    assert.equal(credential.json.status, 'active', 'a client problem is not the user’s problem');
    assert.equal(credential.json.lastError.code, 'client_misconfigured');

    const fixed = await t.api('PATCH', `/v1/auth-clients/${id}`, {
      body: { clientSecret: t.clientSecret },
    });
    assert.equal(fixed.json.status, 'ok');
    assert.equal(fixed.json.statusReason, null);
    const refreshed = await t.api('POST', `/v1/credentials/${credentialId}/refresh`);
    assert.equal(refreshed.status, 200);
    assert.equal(refreshed.json.lastError, null);

    assertError(
      await t.api('PATCH', `/v1/auth-clients/${id}`, { body: { providerId: 'google' } }),
      400,
      'validation_failed',
    );
    assertError(await t.api('PATCH', `/v1/auth-clients/${id}`, { body: {} }), 400);
    // Endpoints decide where the client secret and refresh tokens go: moving them
    // needs the secret again, and never happens under existing credentials.
    assertError(
      await t.api('PATCH', `/v1/auth-clients/${id}`, {
        body: { endpoints: { tokenUrl: 'https://attacker.example/token' } },
      }),
      400,
      'validation_failed',
    );
    assertError(
      await t.api('PATCH', `/v1/auth-clients/${id}`, {
        body: {
          endpoints: { tokenUrl: 'https://attacker.example/token' },
          clientSecret: 'new-secret',
        },
      }),
      409,
      'conflict',
    );
    const unused = await t.registerAuthClient({ name: 'unused' });
    assertError(
      await t.api('PATCH', `/v1/auth-clients/${unused}`, {
        body: { endpoints: { tokenUrl: 'http://example.com/token' }, clientSecret: 'new-secret' },
      }),
      400,
      'invalid_configuration',
    );
    assertError(
      await t.api('PATCH', '/v1/auth-clients/ac_nope', { body: { name: 'x' } }),
      404,
      'not_found',
    );
    assert.equal((await t.api('GET', `/v1/auth-clients/${id}`)).json.name, 'patched');
  });

  test('auth clients: DELETE answers 409 while credentials use it, then 204, then 404', async () => {
    const id = await t.registerAuthClient({ name: 'to delete' });
    const credentialId = await t.connectAccount({ authClientId: id });
    assertError(await t.api('DELETE', `/v1/auth-clients/${id}`), 409, 'conflict');
    assert.equal((await t.api('GET', `/v1/auth-clients/${id}`)).status, 200);
    assert.equal((await t.api('DELETE', `/v1/credentials/${credentialId}`)).status, 204);
    const deleted = await t.api('DELETE', `/v1/auth-clients/${id}`);
    assert.equal(deleted.status, 204);
    assert.equal(deleted.text, '');
    assertError(await t.api('GET', `/v1/auth-clients/${id}`), 404, 'not_found');
    assertError(await t.api('DELETE', `/v1/auth-clients/${id}`), 404, 'not_found');
  });

  test('connect sessions: POST and GET', async () => {
    const created = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId, scopes: ['profile'] },
    });
    assert.equal(created.status, 201);
    assert.match(created.json.id, /^cs_/);
    assert.equal(created.json.url, `${t.url}/connect/${created.json.id}`);
    assert.equal(created.json.status, 'pending');
    assert.match(created.json.expiresAt, ISO);
    const read = await t.api('GET', `/v1/connect-sessions/${created.json.id}`);
    assert.equal(read.status, 200);
    assert.equal(read.json.id, created.json.id);
    assert.equal(read.json.status, 'pending');
    assert.equal(read.json.credentialId, null);
    assertError(
      await t.api('POST', '/v1/connect-sessions', {
        body: { authClientId: t.authClientId, returnTo: 'https://elsewhere.example/' },
      }),
      400,
      'validation_failed',
    );
    assertError(
      await t.api('POST', '/v1/connect-sessions', { body: { authClientId: 'ac_nope' } }),
      404,
      'not_found',
    );
    assertError(await t.api('GET', '/v1/connect-sessions/cs_nope'), 404, 'not_found');
  });

  test('credentials: POST imports a token set; the answer holds no token', async () => {
    const before = Date.now();
    const { answer, accessToken: access } = await importCredential(t);
    assert.equal(answer.status, 201);
    const credential = answer.json;
    assertCredentialShape(credential);
    assert.equal(credential.authClientId, t.authClientId);
    assert.equal(credential.providerId, 'oauth2');
    assert.equal(credential.status, 'active');
    assert.equal(credential.statusReason, null);
    assert.equal(credential.refreshCount, 0);
    assert.equal(credential.lastRefreshAt, null);
    assert.equal(credential.lastError, null);
    assert.equal(credential.scope, 'profile email');
    const expiresAt = Date.parse(credential.expiresAt);
    assert.ok(expiresAt >= before + 3_599_000 && expiresAt <= Date.now() + 3_600_000);

    const token = await accessToken(t, credential.id);
    assert.equal(token.status, 200);
    assert.equal(token.json.access_token, access);
    assert.equal(token.json.token_type, 'Bearer', 'any spelling of bearer is Bearer');
    assert.deepEqual(await typesOf(t, credential.id), ['connected']);

    // Without a refresh token, and with expires_in as a numeric string.
    const bare = await t.api('POST', '/v1/credentials', {
      body: {
        authClientId: t.authClientId,
        tokens: { access_token: t.rememberSecret('bare-access-token-1'), expires_in: '120' },
      },
    });
    assert.equal(bare.status, 201);
    assert.ok(Math.abs(Date.parse(bare.json.expiresAt) - Date.now() - 120_000) < 5_000);

    // No expires_in and no default lifetime in the profile: the expiry is unknown.
    const unknown = await t.api('POST', '/v1/credentials', {
      body: {
        authClientId: t.authClientId,
        tokens: { access_token: t.rememberSecret('no-expiry-access-token'), token_type: 'Bearer' },
      },
    });
    assert.equal(unknown.status, 201);
    assert.equal(unknown.json.expiresAt, null);
    const unknownToken = await accessToken(t, unknown.json.id);
    assert.equal(unknownToken.json.expires_at, null);

    for (const tokens of [
      {},
      { access_token: '' },
      { token_type: 'Bearer' },
      { access_token: 'x-long-enough', expires_in: 'soon' },
      { access_token: 'x-long-enough', expires_in: -1 },
    ]) {
      const refused = await t.api('POST', '/v1/credentials', {
        body: { authClientId: t.authClientId, tokens },
      });
      assertError(refused, 400, 'validation_failed');
    }
    assertError(
      await t.api('POST', '/v1/credentials', {
        body: { authClientId: 'ac_nope', tokens: { access_token: 'x-long-enough' } },
      }),
      404,
      'not_found',
    );
  });

  test('credentials: GET list (with filters) and GET one, never a token', async () => {
    const connected = await t.connectAccount();
    const list = await t.api('GET', '/v1/credentials');
    assert.equal(list.status, 200);
    assert.ok(list.json.credentials.length >= 2);
    for (const credential of list.json.credentials) assertCredentialShape(credential);
    assert.ok(list.json.credentials.some((c: Json) => c.id === connected));

    const other = await t.registerAuthClient({ name: 'filter' });
    const { answer } = await importCredential(t, {}, other);
    const filtered = await t.api('GET', `/v1/credentials?authClientId=${other}`);
    assert.deepEqual(
      filtered.json.credentials.map((c: Json) => c.id),
      [answer.json.id],
    );
    const active = await t.api('GET', '/v1/credentials?status=active');
    assert.ok(active.json.credentials.every((c: Json) => c.status === 'active'));
    const none = await t.api('GET', '/v1/credentials?status=reauth_required');
    assert.deepEqual(none.json.credentials, []);
    assertError(await t.api('GET', '/v1/credentials?status=broken'), 400, 'validation_failed');
    assertError(await t.api('GET', '/v1/credentials?color=blue'), 400, 'validation_failed');

    const one = await t.api('GET', `/v1/credentials/${connected}`);
    assert.equal(one.status, 200);
    assertCredentialShape(one.json);
    const tokens = await t.tokensOf(connected);
    assert.ok(!one.text.includes(tokens.accessToken));
    assert.ok(tokens.refreshToken !== undefined && !one.text.includes(tokens.refreshToken));
    assertError(await t.api('GET', '/v1/credentials/cr_nope'), 404, 'credential_not_found');
  });

  test('access-token: a valid token as is; expires_at in seconds; no refresh', async () => {
    const credentialId = await t.connectAccount();
    const refreshes = t.provider.counters().refreshes;
    const answer = await accessToken(t, credentialId);
    assert.equal(answer.status, 200);
    assert.deepEqual(Object.keys(answer.json).sort(), [
      'access_token',
      'expires_at',
      'extra',
      'token_type',
    ]);
    assert.equal(answer.headers.get('cache-control'), 'no-store');
    assert.equal(answer.headers.get('content-type'), 'application/json; charset=utf-8');
    assert.equal(answer.json.access_token, (await t.tokensOf(credentialId)).accessToken);
    assert.equal(answer.json.token_type, 'Bearer');
    assert.ok(Number.isInteger(answer.json.expires_at), 'expires_at is whole seconds');
    assert.ok(Math.abs(answer.json.expires_at - (nowSeconds() + 3600)) < 10);
    assert.equal(typeof answer.json.extra.scope, 'string');
    assertNoTokenMembers(answer.json.extra);
    assert.equal(t.provider.counters().refreshes, refreshes);

    // The token works at the provider's resource.
    const me = await fetch(t.provider.resourceUrl, {
      headers: { authorization: `Bearer ${answer.json.access_token}` },
    });
    assert.equal(me.status, 200);
    await me.arrayBuffer();

    // An explicit empty body, and a staleAccessToken that is no longer current, change nothing.
    assert.equal(
      (await accessToken(t, credentialId, {})).json.access_token,
      answer.json.access_token,
    );
    const notCurrent = await accessToken(t, credentialId, { staleAccessToken: 'an-older-token' });
    assert.equal(notCurrent.json.access_token, answer.json.access_token);
    assert.equal(t.provider.counters().refreshes, refreshes);

    for (const body of [
      { minValiditySeconds: -1 },
      { minValiditySeconds: 'soon' },
      { staleAccessToken: '' },
      { other: 1 },
    ]) {
      assertError(await accessToken(t, credentialId, body), 400, 'validation_failed');
    }
    assertError(await accessToken(t, 'cr_nope'), 404, 'credential_not_found');
  });

  test('access-token: minValiditySeconds refreshes a token with less left (capped at half its life)', async () => {
    const credentialId = await t.connectAccount();
    const first = (await accessToken(t, credentialId)).json.access_token;
    const refreshes = t.provider.counters().refreshes;

    // Fresh (3600 s lifetime): asking for a day is capped at half the lifetime, so no refresh.
    assert.equal(
      (await accessToken(t, credentialId, { minValiditySeconds: 86_400 })).json.access_token,
      first,
    );
    assert.equal(t.provider.counters().refreshes, refreshes);

    // Age it: received 3000 s ago, 600 s left.
    const now = Date.now();
    await t.rewriteTokens(credentialId, (stored) => ({
      ...stored,
      received_at_ms: now - 3_000_000,
      expires_at_ms: now + 600_000,
    }));
    const enough = await accessToken(t, credentialId, { minValiditySeconds: 300 });
    assert.equal(enough.json.access_token, first, '600 s left is enough for 300');
    assert.equal(t.provider.counters().refreshes, refreshes);

    const refreshed = await accessToken(t, credentialId, { minValiditySeconds: 900 });
    assert.equal(refreshed.status, 200);
    assert.notEqual(refreshed.json.access_token, first);
    assert.equal(t.provider.counters().refreshes, refreshes + 1);
    assert.ok(Math.abs(refreshed.json.expires_at - (nowSeconds() + 3600)) < 10);
    const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
    assert.equal(credential.json.refreshCount, 1);
    assert.deepEqual(await typesOf(t, credentialId), ['connected', 'refreshed']);

    // An expired token is refreshed without being asked.
    await t.rewriteTokens(credentialId, (stored) => ({
      ...stored,
      received_at_ms: now - 4_000_000,
      expires_at_ms: now - 1_000,
    }));
    const renewed = await accessToken(t, credentialId);
    assert.notEqual(renewed.json.access_token, refreshed.json.access_token);
    assert.equal(t.provider.counters().refreshes, refreshes + 2);
    // A refresh answer without refresh_token (this provider does not rotate) keeps the old one.
    assert.ok((await t.tokensOf(credentialId)).refreshToken !== undefined);
  });

  test('access-token: a provider outage answers 503, or serves a still-valid token', async () => {
    const credentialId = await t.connectAccount();
    const first = (await accessToken(t, credentialId)).json.access_token;
    const fault = t.provider.faults.inject({ kind: 'status', status: 503 });
    try {
      const before = t.provider.counters().tokenRequests.refresh_token;
      const outage = await accessToken(t, credentialId, { staleAccessToken: first });
      assertError(outage, 503, 'token_endpoint_unavailable');
      assert.ok(
        t.provider.counters().tokenRequests.refresh_token - before > 1,
        'an outage is retried',
      );
      const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
      assert.equal(credential.json.status, 'active', 'an outage is not a reauthorization');
      assert.equal(credential.json.lastError.code, 'token_endpoint_unavailable');
      assert.match(credential.json.lastError.at, ISO);

      // Asked again at once: held back without a provider request, told when to retry.
      const asked = t.provider.counters().tokenRequests.refresh_token;
      const held = await accessToken(t, credentialId, { staleAccessToken: first });
      assertError(held, 503, 'token_endpoint_unavailable');
      assert.match(held.json.error.message, /asked again 1 s after a failure/);
      assert.equal(held.headers.get('retry-after'), '1');
      assert.equal(t.provider.counters().tokenRequests.refresh_token, asked, 'no provider request');
      assert.equal(
        (await t.api('GET', `/v1/credentials/${credentialId}`)).json.lastError.at,
        credential.json.lastError.at,
        'not recorded as another failure',
      );

      // Only expiring, not rejected: the token still works, so it is served.
      const now = Date.now();
      await t.rewriteTokens(credentialId, (stored) => ({
        ...stored,
        received_at_ms: now - 3_000_000,
        expires_at_ms: now + 600_000,
      }));
      const served = await accessToken(t, credentialId, { minValiditySeconds: 900 });
      assert.equal(served.status, 200);
      assert.equal(served.json.access_token, first);
    } finally {
      t.provider.faults.clear(fault);
    }
    // Once the gap after the last failure has passed, the provider is asked again.
    await sleep(CALLER_RETRY_GAP_MS);
    // One failure, then success: retried within the same call.
    t.provider.faults.inject({ kind: 'status', status: 503 }, { times: 1 });
    const retried = await accessToken(t, credentialId, { staleAccessToken: first });
    assert.equal(retried.status, 200);
    assert.notEqual(retried.json.access_token, first);
    assert.equal((await t.api('GET', `/v1/credentials/${credentialId}`)).json.lastError, null);
  });

  test('access-token: a request that got no answer is not held back where refresh tokens rotate with a grace', async () => {
    // The harness's profile, oauth2, rotates with a grace period: after a reset the
    // provider may have rotated, so the next call asks it again at once.
    const credentialId = await t.connectAccount();
    const first = (await accessToken(t, credentialId)).json.access_token;
    const fault = t.provider.faults.inject({ kind: 'reset' });
    try {
      assertError(
        await accessToken(t, credentialId, { staleAccessToken: first }),
        503,
        'token_endpoint_unavailable',
      );
      const asked = t.provider.counters().tokenRequests.refresh_token;
      assertError(
        await accessToken(t, credentialId, { staleAccessToken: first }),
        503,
        'token_endpoint_unavailable',
      );
      assert.ok(t.provider.counters().tokenRequests.refresh_token > asked, 'asked again at once');
    } finally {
      t.provider.faults.clear(fault);
    }
    await sleep(CALLER_RETRY_GAP_MS);
  });

  test('PUT keys: a bare token response or {oauth: {…}}; omitted members are kept', async () => {
    const credentialId = await t.connectAccount();
    const before = await t.tokensOf(credentialId);
    const bare = t.rememberSecret(`put-bare-${randomBytes(12).toString('base64url')}`);
    const put = await t.api('PUT', `/v1/credentials/${credentialId}/keys`, {
      body: { access_token: bare, token_type: 'Bearer', expires_in: 3600 },
    });
    assert.equal(put.status, 200);
    assertCredentialShape(put.json);
    assert.equal(put.json.id, credentialId);
    const afterBare = await t.tokensOf(credentialId);
    assert.equal(afterBare.accessToken, bare);
    assert.equal(afterBare.refreshToken, before.refreshToken, 'refresh_token omitted: kept');
    assert.equal(afterBare.scope, before.scope, 'scope omitted: kept');
    assert.equal((await accessToken(t, credentialId)).json.access_token, bare);

    const wrapped = t.rememberSecret(`put-wrapped-${randomBytes(12).toString('base64url')}`);
    const rotated = t.rememberSecret(`put-rt-${randomBytes(12).toString('base64url')}`);
    const put2 = await t.api('PUT', `/v1/credentials/${credentialId}/keys`, {
      body: { oauth: { access_token: wrapped, refresh_token: rotated, expires_in: '1800' } },
    });
    assert.equal(put2.status, 200);
    assert.ok(Math.abs(Date.parse(put2.json.expiresAt) - Date.now() - 1_800_000) < 5_000);
    const afterWrapped = await t.tokensOf(credentialId);
    assert.equal(afterWrapped.accessToken, wrapped);
    assert.equal(afterWrapped.refreshToken, rotated);
    assert.equal(afterWrapped.tokenType, 'Bearer');
    assert.deepEqual(await typesOf(t, credentialId), ['connected', 'keys_updated', 'keys_updated']);

    const garbage: Array<{ body?: unknown; rawBody?: string }> = [
      { rawBody: 'not json' },
      { rawBody: '"a string"' },
      { body: [] },
      { body: {} },
      { body: { foo: 'bar' } },
      { body: { access_token: '' } },
      { body: { access_token: 'x-long-enough', expires_in: -5 } },
      { body: { access_token: 'x-long-enough', expires_in: 'later' } },
      { body: { access_token: 'x-long-enough', refresh_token: 5 } },
      { body: { oauth: { refresh_token: 'x-long-enough' } } },
      { body: { oauth: { access_token: 'x-long-enough' }, other: {} } },
      // A token set that could not be read back would make the credential answer 500 forever.
      { body: { access_token: 'x-long-enough', token_type: 5 } },
      { body: { access_token: 'x-long-enough', token_type: '' } },
      { body: { oauth: { access_token: 'x-long-enough', token_type: null } } },
      { body: { access_token: 'x-long-enough', scope: 7 } },
    ];
    for (const request of garbage) {
      const refused = await t.api('PUT', `/v1/credentials/${credentialId}/keys`, request);
      assertError(refused, 400, 'validation_failed');
    }
    assert.equal((await t.tokensOf(credentialId)).accessToken, wrapped, 'garbage changed nothing');
    assert.equal((await accessToken(t, credentialId)).json.access_token, wrapped);
    assertError(
      await t.api('PUT', '/v1/credentials/cr_nope/keys', {
        body: { access_token: 'x-long-enough' },
      }),
      404,
      'credential_not_found',
    );
  });

  test('POST refresh: a forced refresh, recorded', async () => {
    const credentialId = await t.connectAccount();
    const before = await t.tokensOf(credentialId);
    const refreshes = t.provider.counters().refreshes;
    const answer = await t.api('POST', `/v1/credentials/${credentialId}/refresh`);
    assert.equal(answer.status, 200);
    assertCredentialShape(answer.json);
    assert.equal(answer.json.refreshCount, 1);
    assert.match(answer.json.lastRefreshAt, ISO);
    assert.equal(t.provider.counters().refreshes, refreshes + 1);
    const after = await t.tokensOf(credentialId);
    assert.notEqual(after.accessToken, before.accessToken);
    assert.equal(after.refreshToken, before.refreshToken);
    assert.equal((await accessToken(t, credentialId)).json.access_token, after.accessToken);
    const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
    const refreshed = events.json.events.find((e: Json) => e.type === 'refreshed');
    assert.equal(refreshed.data.trigger, 'forced');
    assert.equal(refreshed.data.refreshTokenRotated, false);
    assertError(await t.api('POST', '/v1/credentials/cr_nope/refresh'), 404);
  });

  test('DELETE: revokes at the provider, then deletes; 404 after', async () => {
    const credentialId = await t.connectAccount();
    const { refreshToken } = await t.tokensOf(credentialId);
    assert.ok(refreshToken !== undefined);
    const revocations = t.provider.counters().revocationRequests;
    const deleted = await t.api('DELETE', `/v1/credentials/${credentialId}`);
    assert.equal(deleted.status, 204);
    assert.equal(t.provider.counters().revocationRequests, revocations + 1);
    assert.equal(t.provider.revokeGrant(refreshToken), false, 'the grant is already revoked');
    assertError(await t.api('GET', `/v1/credentials/${credentialId}`), 404);
    assertError(await accessToken(t, credentialId), 404);
    assertError(await t.api('POST', `/v1/credentials/${credentialId}/refresh`), 404);
    assertError(await t.api('DELETE', `/v1/credentials/${credentialId}`), 404);
    const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
    const revoked = events.json.events.find((e: Json) => e.type === 'revoked');
    assert.deepEqual(revoked.data.providerRevocation, { revoked: true });

    // A failed revocation is recorded and does not stop the delete.
    const second = await t.connectAccount();
    t.provider.faults.inject({ kind: 'status', status: 500 }, { endpoint: 'revoke', times: 1 });
    assert.equal((await t.api('DELETE', `/v1/credentials/${second}`)).status, 204);
    assertError(await t.api('GET', `/v1/credentials/${second}`), 404);
    const secondEvents = await t.api('GET', `/v1/events?credentialId=${second}`);
    const failed = secondEvents.json.events.find((e: Json) => e.type === 'revoked');
    assert.equal(failed.data.providerRevocation.revoked, false);
    assert.equal(typeof failed.data.providerRevocation.error, 'string');
  });
});

for (const database of ['sqlite', 'postgres'] as const) {
  describe(`compare-and-refresh and reauthorization (single-use refresh tokens, ${database})`, () => {
    let t: TestVault;
    before(async () => {
      t = await startTestVault({ personality: 'strict', database });
    });
    after(async () => {
      await t?.close();
    });

    test('50 concurrent callers with the same stale token: one refresh, one new token for all', async () => {
      const credentialId = await t.connectAccount();
      const stale = (await accessToken(t, credentialId)).json.access_token;
      const before = t.provider.counters();
      // Slow the provider down so that the callers really overlap the refresh.
      t.provider.faults.inject({ kind: 'latency', ms: 150 }, { times: 1 });
      const answers = await Promise.all(
        Array.from({ length: 50 }, () => accessToken(t, credentialId, { staleAccessToken: stale })),
      );
      const after = t.provider.counters();
      assert.equal(after.refreshes - before.refreshes, 1, 'exactly one refresh at the provider');
      assert.equal(after.tokenRequests.refresh_token - before.tokenRequests.refresh_token, 1);
      assert.equal(after.invalidGrants, before.invalidGrants);
      const tokens = new Set(answers.map((answer) => answer.json.access_token));
      assert.ok(answers.every((answer) => answer.status === 200));
      assert.equal(tokens.size, 1, 'everybody got the same token');
      const [fresh] = tokens;
      assert.notEqual(fresh, stale);
      assert.equal(fresh, (await t.tokensOf(credentialId)).accessToken);
      assert.equal((await t.api('GET', `/v1/credentials/${credentialId}`)).json.refreshCount, 1);
      const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
      const refreshed = events.json.events.filter((e: Json) => e.type === 'refreshed');
      assert.equal(refreshed.length, 1);
      assert.equal(refreshed[0].data.trigger, 'stale-token');
      assert.equal(refreshed[0].data.refreshTokenRotated, true);

      // Late callers still holding the old token get the new one, with no refresh.
      const late = await Promise.all(
        Array.from({ length: 10 }, () => accessToken(t, credentialId, { staleAccessToken: stale })),
      );
      assert.ok(late.every((answer) => answer.json.access_token === fresh));
      assert.equal(t.provider.counters().refreshes, after.refreshes);
    });

    test('409 reauth_required after the provider revoked the grant', async () => {
      const credentialId = await t.connectAccount();
      const { accessToken: current, refreshToken } = await t.tokensOf(credentialId);
      assert.ok(refreshToken !== undefined);
      assert.equal(t.provider.revokeGrant(refreshToken), true);

      const refused = await accessToken(t, credentialId, { staleAccessToken: current });
      assertError(refused, 409, 'reauth_required');
      const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
      assert.equal(credential.json.status, 'reauth_required');
      assert.match(credential.json.statusReason, /invalid_grant/);
      assert.equal(credential.json.lastError.code, 'reauth_required');
      assert.deepEqual(await typesOf(t, credentialId), [
        'connected',
        'refresh_failed',
        'reauth_required',
      ]);
      const listed = await t.api('GET', '/v1/credentials?status=reauth_required');
      assert.deepEqual(
        listed.json.credentials.map((c: Json) => c.id),
        [credentialId],
      );

      // From now on every access-token call answers 409, without calling the provider.
      const requests = t.provider.counters().tokenRequests.refresh_token;
      assertError(await accessToken(t, credentialId), 409, 'reauth_required');
      assertError(await accessToken(t, credentialId, { minValiditySeconds: 10 }), 409);
      assert.equal(t.provider.counters().tokenRequests.refresh_token, requests);
      // A forced refresh tries again and is refused again.
      assertError(
        await t.api('POST', `/v1/credentials/${credentialId}/refresh`),
        409,
        'reauth_required',
      );
    });
  });
}

for (const database of ['sqlite', 'postgres'] as const) {
  describe(`DELETE and the refresh lease (single-use refresh tokens, ${database})`, () => {
    let t: TestVault;
    before(async () => {
      // A 1-s lease and a 0.5-s token timeout: a DELETE waits at most 1.5 s for the lease.
      t = await startTestVault({
        personality: 'strict',
        database,
        env: { TOKENWARDEN_LEASE_SECONDS: '1', TOKENWARDEN_TOKEN_TIMEOUT_MS: '500' },
      });
    });
    after(async () => {
      await t?.close();
    });

    test('regression: DELETE during a refresh waits for it, then revokes and deletes; the refresh stores its answer first', async () => {
      const credentialId = await t.connectAccount();
      const stale = (await t.tokensOf(credentialId)).accessToken;
      const before = t.provider.counters();
      // The provider rotates the refresh token at once, then is slow to answer.
      t.provider.faults.inject(
        { kind: 'latency', ms: 300 },
        { after: 'after-processing', times: 1 },
      );
      const refreshing = accessToken(t, credentialId, { staleAccessToken: stale });
      const deadline = Date.now() + 5_000;
      while (t.provider.counters().refreshes === before.refreshes) {
        assert.ok(Date.now() < deadline, 'the provider received the refresh');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const deleted = await t.api('DELETE', `/v1/credentials/${credentialId}`);
      const refreshed = await refreshing;

      assert.equal(deleted.status, 204, deleted.text);
      assert.equal(refreshed.status, 200, 'the refresh under way finished: it held the lease');
      assert.notEqual(refreshed.json.access_token, stale);
      assert.deepEqual(
        await typesOf(t, credentialId),
        ['connected', 'refreshed', 'revoked'],
        'the refresh committed before the delete; nothing after the delete',
      );
      const after = t.provider.counters();
      assert.equal(after.revocationRequests, before.revocationRequests + 1);
      assert.equal(after.invalidGrants, before.invalidGrants, 'no refresh met a revoked grant');
      assertError(await t.api('GET', `/v1/credentials/${credentialId}`), 404);
      assertError(await accessToken(t, credentialId, { staleAccessToken: stale }), 404);
      const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
      const revoked = events.json.events.find((e: Json) => e.type === 'revoked');
      assert.deepEqual(revoked.data.providerRevocation, { revoked: true });
    });

    test('regression: DELETE answers 409 conflict while another process holds the refresh lease past the wait, and takes over an expired one', async () => {
      const credentialId = await t.connectAccount();
      const other = 'other-replica-7';
      const taken = await t.vault.store.credentials.tryAcquireLease(
        credentialId,
        other,
        Date.now(),
        60_000,
      );
      assert.ok(taken.acquired);
      const revocations = t.provider.counters().revocationRequests;
      const started = Date.now();
      const refused = await t.api('DELETE', `/v1/credentials/${credentialId}`);
      assertError(refused, 409, 'conflict');
      assert.ok(Date.now() - started >= 1_400, 'it waited for the lease (lease + token timeout)');
      assert.match(refused.json.error.message, new RegExp(`credential ${credentialId}`));
      assert.match(refused.json.error.message, /was not deleted/);
      assert.match(refused.json.error.message, new RegExp(other));
      assert.match(refused.json.error.message, /try again/);
      // Nothing happened: not revoked at the provider, not deleted, no event.
      assert.equal(t.provider.counters().revocationRequests, revocations);
      assert.equal((await t.api('GET', `/v1/credentials/${credentialId}`)).status, 200);
      assert.deepEqual(await typesOf(t, credentialId), ['connected']);
      assert.equal((await accessToken(t, credentialId)).status, 200, 'still served');

      // The holder died: its lease expires, and the delete takes it over.
      await t.vault.store.db
        .updateTable('credentials')
        .set({ lease_until: Date.now() - 1 })
        .where('id', '=', credentialId)
        .execute();
      assert.equal((await t.api('DELETE', `/v1/credentials/${credentialId}`)).status, 204);
      assert.equal(t.provider.counters().revocationRequests, revocations + 1);
      assert.deepEqual(await typesOf(t, credentialId), ['connected', 'revoked']);

      // Another tenant's DELETE of an id never waits for, nor touches, its lease.
      const foreign = await t.connectAccount();
      const { key } = await t.createTenant('lease-isolation');
      assert.ok(
        (await t.vault.store.credentials.tryAcquireLease(foreign, other, Date.now(), 60_000))
          .acquired,
      );
      const quick = Date.now();
      assertError(await t.api('DELETE', `/v1/credentials/${foreign}`, { key }), 404);
      assert.ok(Date.now() - quick < 1_000, 'answered at once');
      const lease = await t.vault.store.db
        .selectFrom('credentials')
        .select('lease_owner')
        .where('id', '=', foreign)
        .executeTakeFirstOrThrow();
      assert.equal(lease.lease_owner, other);
    });
  });
}

describe('Salesforce personality', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ personality: 'salesforce', profile: 'salesforce' });
  });
  after(async () => {
    await t?.close();
  });

  test('access-token carries instance_url in extra; expiry from the profile default', async () => {
    const credentialId = await t.connectAccount();
    const answer = await accessToken(t, credentialId);
    assert.equal(answer.status, 200);
    assert.equal(answer.json.extra.instance_url, `${t.provider.url}/sf`);
    assert.equal(typeof answer.json.extra.id, 'string');
    assert.ok(
      answer.json.extra.signature === undefined || answer.json.extra.signature === '[redacted]',
    );
    // No expires_in from Salesforce: the profile's 7200 s default.
    assert.ok(Math.abs(answer.json.expires_at - (nowSeconds() + 7200)) < 10);

    const refreshed = await accessToken(t, credentialId, {
      staleAccessToken: answer.json.access_token,
    });
    assert.notEqual(refreshed.json.access_token, answer.json.access_token);
    assert.equal(refreshed.json.extra.instance_url, `${t.provider.url}/sf`);
    assert.equal(t.provider.counters().refreshes, 1);
  });
});

describe('events', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('every type, paged with after/limit/next, oldest first', async () => {
    const first = await t.connectAccount();
    await t.api('POST', `/v1/credentials/${first}/refresh`);
    await t.api('PUT', `/v1/credentials/${first}/keys`, {
      body: { access_token: t.rememberSecret('events-access-token'), expires_in: 60 },
    });
    const second = await t.connectAccount();
    const { refreshToken, accessToken: current } = await t.tokensOf(second);
    t.provider.revokeGrant(refreshToken ?? '');
    assertError(await accessToken(t, second, { staleAccessToken: current }), 409);
    assert.equal((await t.api('DELETE', `/v1/credentials/${first}`)).status, 204);

    const all = await t.api('GET', '/v1/events?limit=500');
    assert.equal(all.status, 200);
    assert.equal(all.json.next, null);
    const events = all.json.events;
    assert.deepEqual(
      events.map((e: Json) => e.type),
      [
        'connected',
        'refreshed',
        'keys_updated',
        'connected',
        'refresh_failed',
        'reauth_required',
        'revoked',
      ],
    );
    for (const event of events) {
      assert.deepEqual(Object.keys(event).sort(), [
        'at',
        'authClientId',
        'credentialId',
        'data',
        'id',
        'type',
      ]);
      assert.match(event.id, /^\d+$/);
      assert.match(event.at, ISO);
      assert.equal(event.authClientId, t.authClientId);
      assertNoTokenMembers(event.data);
    }
    const ids = events.map((e: Json) => Number(e.id));
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      'oldest first',
    );

    // Page by two.
    const paged: string[] = [];
    let after: string | null = null;
    let pages = 0;
    for (;;) {
      const page: ApiResponse = await t.api(
        'GET',
        `/v1/events?limit=2${after === null ? '' : `&after=${after}`}`,
      );
      assert.equal(page.status, 200);
      assert.ok(page.json.events.length <= 2);
      paged.push(...page.json.events.map((e: Json) => e.id));
      pages++;
      if (page.json.next === null) break;
      assert.equal(page.json.next, page.json.events.at(-1).id);
      after = page.json.next;
    }
    assert.deepEqual(
      paged,
      events.map((e: Json) => e.id),
    );
    assert.ok(pages >= 4);

    const later = await t.api('GET', `/v1/events?after=${events[3].id}`);
    assert.deepEqual(
      later.json.events.map((e: Json) => e.id),
      events.slice(4).map((e: Json) => e.id),
    );
    const onlySecond = await t.api('GET', `/v1/events?credentialId=${second}`);
    assert.deepEqual(
      onlySecond.json.events.map((e: Json) => e.type),
      ['connected', 'refresh_failed', 'reauth_required'],
    );
    assert.equal((await t.api('GET', '/v1/events?credentialId=cr_nope')).json.events.length, 0);

    for (const query of ['limit=0', 'limit=501', 'limit=many', 'after=abc', 'after=-1', 'since=1'])
      assertError(await t.api('GET', `/v1/events?${query}`), 400, 'validation_failed');
  });
});

describe('tenants, API keys and authentication', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('tenants: admin creates and lists them; a created key is shown once', async () => {
    const tenant = await t.api('POST', '/v1/tenants', { body: { name: 'Acme' } });
    assert.equal(tenant.status, 201);
    assert.deepEqual(Object.keys(tenant.json).sort(), ['createdAt', 'id', 'name']);
    assert.equal(tenant.json.name, 'Acme');
    const tenants = await t.api('GET', '/v1/tenants');
    assert.equal(tenants.status, 200);
    const ids = tenants.json.tenants.map((x: Json) => x.id);
    assert.ok(ids.includes('default') && ids.includes(tenant.json.id));

    const created = await t.api('POST', `/v1/tenants/${tenant.json.id}/api-keys`, {
      body: { label: 'ci' },
    });
    assert.equal(created.status, 201);
    assert.deepEqual(Object.keys(created.json).sort(), ['createdAt', 'id', 'key', 'label']);
    assert.match(created.json.key, /^twk_[0-9a-f]+_[\w-]{43}$/);
    assert.equal(created.json.label, 'ci');
    assert.equal(created.headers.get('cache-control'), 'no-store');
    const key = created.json.key;

    // The key works for its tenant (an empty one), and is never shown again.
    const credentials = await t.api('GET', '/v1/credentials', { key });
    assert.equal(credentials.status, 200);
    assert.deepEqual(credentials.json.credentials, []);
    const keys = await t.api('GET', '/v1/api-keys', { key });
    assert.equal(keys.status, 200);
    assert.equal(keys.json.apiKeys.length, 1);
    const [listed] = keys.json.apiKeys;
    assert.deepEqual(Object.keys(listed).sort(), [
      'admin',
      'createdAt',
      'id',
      'label',
      'lastUsedAt',
    ]);
    assert.equal(listed.id, created.json.id);
    assert.equal(listed.admin, false);
    assert.match(listed.lastUsedAt, ISO, 'lastUsedAt is recorded');
    // The secret is everything after `twk_<id>_` (base64url: it may hold `_` itself).
    const keySecret = key.slice(key.indexOf('_', 'twk_'.length) + 1);
    assert.ok(keySecret.length >= 32);
    assert.ok(!keys.text.includes(keySecret), 'no part of the key secret');

    const adminKeys = await t.api('GET', '/v1/api-keys');
    assert.ok(adminKeys.json.apiKeys.some((k: Json) => k.admin === true));
    assert.ok(adminKeys.json.apiKeys.every((k: Json) => k.id !== created.json.id));

    // Without a body: no label.
    const unlabeled = await t.api('POST', `/v1/tenants/${tenant.json.id}/api-keys`);
    assert.equal(unlabeled.status, 201);
    assert.equal(unlabeled.json.label, '');
    assertError(
      await t.api('POST', '/v1/tenants/tn_nope/api-keys', { body: {} }),
      404,
      'not_found',
    );
    assertError(await t.api('POST', '/v1/tenants', { body: {} }), 400, 'validation_failed');
  });

  test('admin routes answer 403 to a tenant key', async () => {
    const { tenantId, key } = await t.createTenant('not admin');
    assertError(await t.api('POST', '/v1/tenants', { key, body: { name: 'x' } }), 403, 'forbidden');
    assertError(await t.api('GET', '/v1/tenants', { key }), 403, 'forbidden');
    assertError(
      await t.api('POST', `/v1/tenants/${tenantId}/api-keys`, { key, body: {} }),
      403,
      'forbidden',
    );
    assertError(
      await t.api('POST', '/v1/tenants/default/api-keys', { key, body: {} }),
      403,
      'forbidden',
    );
  });

  test('DELETE /v1/api-keys/:id revokes a key: 401 after', async () => {
    const own = await t.createTenant('self-revoking');
    assert.equal(
      (await t.api('DELETE', `/v1/api-keys/${own.keyId}`, { key: own.key })).status,
      204,
    );
    assertError(await t.api('GET', '/v1/credentials', { key: own.key }), 401, 'unauthorized');
    assertError(await t.api('DELETE', `/v1/api-keys/${own.keyId}`), 404, 'not_found');

    // The admin manages every tenant's keys: it can revoke one it created for a tenant.
    const managed = await t.createTenant('managed');
    assert.equal((await t.api('GET', '/v1/credentials', { key: managed.key })).status, 200);
    assert.equal((await t.api('DELETE', `/v1/api-keys/${managed.keyId}`)).status, 204);
    assertError(await t.api('GET', '/v1/credentials', { key: managed.key }), 401, 'unauthorized');
    assertError(await t.api('DELETE', '/v1/api-keys/key_nope'), 404, 'not_found');

    // A key of the default tenant that is not the admin key cannot revoke the admin key.
    const plain = await t.api('POST', '/v1/tenants/default/api-keys', { body: { label: 'plain' } });
    assert.equal(plain.status, 201);
    const adminKeyId = `key_${t.adminKey.split('_')[1]}`;
    assertError(
      await t.api('DELETE', `/v1/api-keys/${adminKeyId}`, { key: plain.json.key }),
      403,
      'forbidden',
    );
    assert.equal((await t.api('GET', '/v1/api-keys')).status, 200, 'the admin key still works');
    // It can revoke itself.
    assert.equal(
      (await t.api('DELETE', `/v1/api-keys/${plain.json.id}`, { key: plain.json.key })).status,
      204,
    );
    assertError(await t.api('GET', '/v1/api-keys', { key: plain.json.key }), 401, 'unauthorized');
  });

  test('authentication: missing, malformed, unknown, wrong and revoked keys answer 401', async () => {
    const unauthorized = (answer: ApiResponse) => assertError(answer, 401, 'unauthorized');
    unauthorized(await t.api('GET', '/v1/credentials', { key: null }));
    const adminId = t.adminKey.split('_')[1];
    for (const authorization of [
      'Bearer',
      'Bearer ',
      'Bearer nope',
      `Bearer twk_${adminId}_short`,
      `Bearer ${t.adminKey} extra`,
      `Basic ${Buffer.from(`x:${t.adminKey}`).toString('base64')}`,
      t.adminKey,
      `Bearer ${newTestApiKey()}`,
      `Bearer twk_${adminId}_${randomBytes(32).toString('base64url')}`,
      `Bearer ${t.adminKey.slice(0, -1)}${t.adminKey.endsWith('A') ? 'B' : 'A'}`,
    ]) {
      unauthorized(await t.api('GET', '/v1/credentials', { authorization }));
    }
    // The scheme is case-insensitive.
    assert.equal(
      (await t.api('GET', '/v1/credentials', { authorization: `bearer ${t.adminKey}` })).status,
      200,
    );

    // Every /v1 route needs a key.
    for (const [method, path] of [
      ['GET', '/v1/providers'],
      ['GET', '/v1/auth-clients'],
      ['POST', '/v1/auth-clients'],
      ['GET', `/v1/auth-clients/${t.authClientId}`],
      ['PATCH', `/v1/auth-clients/${t.authClientId}`],
      ['DELETE', `/v1/auth-clients/${t.authClientId}`],
      ['POST', '/v1/connect-sessions'],
      ['GET', '/v1/connect-sessions/cs_x'],
      ['POST', '/v1/credentials'],
      ['GET', '/v1/credentials'],
      ['GET', '/v1/credentials/cr_x'],
      ['POST', '/v1/credentials/cr_x/access-token'],
      ['PUT', '/v1/credentials/cr_x/keys'],
      ['POST', '/v1/credentials/cr_x/refresh'],
      ['DELETE', '/v1/credentials/cr_x'],
      ['GET', '/v1/events'],
      ['POST', '/v1/tenants'],
      ['GET', '/v1/tenants'],
      ['POST', '/v1/tenants/default/api-keys'],
      ['GET', '/v1/api-keys'],
      ['DELETE', '/v1/api-keys/key_x'],
    ] as const) {
      const body = method === 'GET' || method === 'DELETE' ? {} : { body: {} };
      unauthorized(await t.api(method, path, { key: null, ...body }));
    }
    assert.equal((await t.api('GET', `/v1/auth-clients/${t.authClientId}`)).status, 200);
  });

  test('unknown routes and malformed requests answer the error shape', async () => {
    assertError(await t.api('GET', '/v1/nothing-here'), 404, 'not_found');
    assertError(await t.api('POST', '/v1/credentials', { rawBody: '{' }), 400, 'validation_failed');
    const wrongType = await fetch(`${t.url}/v1/credentials`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.adminKey}`, 'content-type': 'text/plain' },
      body: 'hello',
    });
    assert.ok(wrongType.status >= 400 && wrongType.status < 500);
    const body = (await wrongType.json()) as Json;
    assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message']);
  });
});

describe('tenant isolation', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test("another tenant's auth client, credential, connect session and events answer 404", async () => {
    // Tenant A (default, admin key): an auth client, a credential, a connect session, events.
    const credentialA = await t.connectAccount();
    const sessionA = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId },
    });
    const tokenA = (await accessToken(t, credentialA)).json.access_token;
    const b = await t.createTenant('B');
    const key = b.key;
    const before = t.provider.counters();

    const notFound = (answer: ApiResponse) =>
      assertError(answer, 404, ['not_found', 'credential_not_found']);
    notFound(await t.api('GET', `/v1/auth-clients/${t.authClientId}`, { key }));
    notFound(
      await t.api('PATCH', `/v1/auth-clients/${t.authClientId}`, { key, body: { name: 'mine' } }),
    );
    notFound(await t.api('DELETE', `/v1/auth-clients/${t.authClientId}`, { key }));
    notFound(await t.api('GET', `/v1/credentials/${credentialA}`, { key }));
    notFound(await accessToken(t, credentialA, undefined, key));
    notFound(await accessToken(t, credentialA, { staleAccessToken: tokenA }, key));
    notFound(
      await t.api('PUT', `/v1/credentials/${credentialA}/keys`, {
        key,
        body: { access_token: t.rememberSecret('b-overwrites-a-token') },
      }),
    );
    notFound(await t.api('POST', `/v1/credentials/${credentialA}/refresh`, { key }));
    notFound(await t.api('DELETE', `/v1/credentials/${credentialA}`, { key }));
    notFound(await t.api('GET', `/v1/connect-sessions/${sessionA.json.id}`, { key }));
    notFound(
      await t.api('POST', '/v1/connect-sessions', { key, body: { authClientId: t.authClientId } }),
    );
    notFound((await importCredential(t, {}, t.authClientId, key)).answer);
    const adminKeyId = `key_${t.adminKey.split('_')[1]}`;
    notFound(await t.api('DELETE', `/v1/api-keys/${adminKeyId}`, { key }));

    // Lists hold only B's things.
    assert.deepEqual((await t.api('GET', '/v1/auth-clients', { key })).json.authClients, []);
    assert.deepEqual((await t.api('GET', '/v1/credentials', { key })).json.credentials, []);
    assert.deepEqual(
      (await t.api('GET', `/v1/credentials?authClientId=${t.authClientId}`, { key })).json
        .credentials,
      [],
    );
    assert.deepEqual((await t.api('GET', '/v1/events', { key })).json.events, []);
    assert.deepEqual(
      (await t.api('GET', `/v1/events?credentialId=${credentialA}`, { key })).json.events,
      [],
    );
    const bKeys = (await t.api('GET', '/v1/api-keys', { key })).json.apiKeys;
    assert.deepEqual(
      bKeys.map((k: Json) => k.id),
      [b.keyId],
    );

    // A's things are untouched, and the provider was never called on B's behalf.
    const after = t.provider.counters();
    assert.equal(after.refreshes, before.refreshes);
    assert.equal(after.revocationRequests, before.revocationRequests);
    assert.equal((await accessToken(t, credentialA)).json.access_token, tokenA);
    assert.equal(
      (await t.api('GET', `/v1/auth-clients/${t.authClientId}`)).json.name,
      'Fake provider',
    );
    assert.equal((await t.api('GET', `/v1/connect-sessions/${sessionA.json.id}`)).status, 200);
    assert.equal((await t.api('GET', '/v1/credentials')).status, 200, 'the admin key still works');
    assert.ok(
      (await t.api('GET', '/v1/api-keys')).json.apiKeys.some((k: Json) => k.id === adminKeyId),
    );

    // B's own things work for B, and are as invisible to A.
    const authClientB = await t.registerAuthClient({ key, name: 'B client' });
    const credentialB = await t.connectAccount({ key, authClientId: authClientB });
    assert.equal((await accessToken(t, credentialB, undefined, key)).status, 200);
    assert.equal((await t.api('GET', `/v1/credentials/${credentialB}`, { key })).status, 200);
    notFound(await t.api('GET', `/v1/credentials/${credentialB}`));
    notFound(await t.api('GET', `/v1/auth-clients/${authClientB}`));
    notFound(await accessToken(t, credentialB));
    const eventsA = (await t.api('GET', '/v1/events?limit=500')).json.events;
    assert.ok(eventsA.every((e: Json) => e.credentialId !== credentialB));
    const eventsB = (await t.api('GET', '/v1/events', { key })).json.events;
    assert.deepEqual(
      eventsB.map((e: Json) => [e.type, e.credentialId]),
      [['connected', credentialB]],
    );
  });
});

describe('operations and the OpenAPI document', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('healthz, readyz and metrics need no key', async () => {
    const health = await t.api('GET', '/healthz', { key: null });
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { status: 'ok' });
    const ready = await t.api('GET', '/readyz', { key: null });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.json, { status: 'ready' });

    await t.connectAccount();
    const metrics = await t.api('GET', '/metrics', { key: null });
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(metrics.text, /^# HELP /m);
    assert.match(metrics.text, /^tokenwarden_credentials\{status="active"\} 1$/m);
    assert.match(metrics.text, /^tokenwarden_process_cpu_user_seconds_total /m);
  });

  test('/docs serves the OpenAPI UI and /docs/json lists every /v1 route', async () => {
    const ui = await fetch(`${t.url}/docs`);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /<html/i);

    const document = await t.api('GET', '/docs/json', { key: null });
    assert.equal(document.status, 200);
    assert.match(document.json.openapi, /^3\./);
    const paths = document.json.paths;
    const expected: Record<string, string[]> = {
      '/v1/providers': ['get'],
      '/v1/auth-clients': ['get', 'post'],
      '/v1/auth-clients/{id}': ['delete', 'get', 'patch'],
      '/v1/connect-sessions': ['post'],
      '/v1/connect-sessions/{id}': ['get'],
      '/v1/credentials': ['get', 'post'],
      '/v1/credentials/{id}': ['delete', 'get'],
      '/v1/credentials/{id}/access-token': ['post'],
      '/v1/credentials/{id}/keys': ['put'],
      '/v1/credentials/{id}/refresh': ['post'],
      '/v1/events': ['get'],
      '/v1/tenants': ['get', 'post'],
      '/v1/tenants/{id}/api-keys': ['post'],
      '/v1/api-keys': ['get'],
      '/v1/api-keys/{id}': ['delete'],
      '/v1/webhooks': ['get', 'post'],
      '/v1/webhooks/{id}': ['delete', 'get'],
      '/v1/webhooks/{id}/deliveries': ['get'],
      '/healthz': ['get'],
      '/readyz': ['get'],
      '/metrics': ['get'],
    };
    for (const [path, methods] of Object.entries(expected)) {
      assert.ok(paths[path] !== undefined, `the OpenAPI document has ${path}`);
      for (const method of methods)
        assert.ok(paths[path][method] !== undefined, `the OpenAPI document has ${method} ${path}`);
    }
    const v1 = Object.keys(paths).filter((path) => path.startsWith('/v1'));
    assert.deepEqual(
      v1.sort(),
      Object.keys(expected)
        .filter((p) => p.startsWith('/v1'))
        .sort(),
    );
    assert.ok(document.json.components.securitySchemes.apiKey !== undefined);
  });

  test('readyz answers 503 when the database is gone', async () => {
    const gone = await startTestVault();
    try {
      await gone.vault.store.db.destroy();
      const ready = await gone.api('GET', '/readyz', { key: null });
      assert.equal(ready.status, 503);
      assert.equal(ready.json.status, 'unavailable');
      assert.equal(typeof ready.json.reason, 'string');
      assert.equal((await gone.api('GET', '/healthz', { key: null })).status, 200);
    } finally {
      await gone.close();
    }
  });
});

describe('a credential without a refresh token', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('regression: it is served until its token expires, never scheduled, never reauth_required early', async () => {
    const { answer, accessToken: access } = await importCredential(t, {
      refresh_token: undefined,
      expires_in: 600,
    });
    assert.equal(answer.status, 201);
    assert.equal(answer.json.nextRefreshAt, null, 'nothing to refresh with: no schedule');
    const served = await t.api('POST', `/v1/credentials/${answer.json.id}/access-token`, {
      body: { minValiditySeconds: 3600 },
    });
    assert.equal(served.status, 200);
    assert.equal(served.json.access_token, access);
    const after = await t.api('GET', `/v1/credentials/${answer.json.id}`);
    assert.equal(after.json.status, 'active');
  });
});
