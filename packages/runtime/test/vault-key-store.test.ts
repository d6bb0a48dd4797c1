import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenwardenError } from '@tokenwarden/oauth';
import { RuntimeError } from '../src/errors.ts';
import { RunSession } from '../src/session.ts';
import { VaultKeyStore, VaultTokenSource } from '../src/vault-key-store.ts';
import { contract, dataAt, memorySink } from './support/helpers.ts';

const API_KEY = 'twk_test_0123456789abcdef';
const VAULT = 'http://127.0.0.1:4080';

interface Call {
  method: string;
  path: string;
  body: unknown;
  authorization: string | null;
}

/**
 * A vault as far as the runtime sees it (docs/api.md), in memory, plus a
 * protected resource that accepts only the current access token. No network.
 */
function fakeVault() {
  const calls: Call[] = [];
  const state = {
    generation: 1,
    refreshes: 0,
    expiresAt: Math.floor(Date.now() / 1000) + 3600,
    keys: [] as unknown[],
    fail: undefined as Response | Error | undefined,
    /** Tokens the resource rejects although the vault still hands them out (revoked at the provider). */
    revoked: new Set<string>(),
  };
  const token = () => `vault-access-${state.generation}`;
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const headers = new Headers(init?.headers);
    if (url.pathname.startsWith('/resource')) {
      return headers.get('authorization') === `Bearer ${token()}` && !state.revoked.has(token())
        ? json(200, { me: 'ok' })
        : new Response('', {
            status: 401,
            headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
          });
    }
    const body = init?.body === undefined ? undefined : JSON.parse(String(init.body));
    calls.push({
      method: init?.method ?? 'GET',
      path: url.pathname,
      body,
      authorization: headers.get('authorization'),
    });
    if (state.fail instanceof Error) throw state.fail;
    if (state.fail !== undefined) return state.fail.clone();
    const accessToken = url.pathname.match(/^\/v1\/credentials\/([^/]+)\/access-token$/);
    if (accessToken) {
      const request = body as { staleAccessToken?: string };
      if (request.staleAccessToken === token()) {
        state.generation++;
        state.refreshes++;
      }
      return json(200, {
        access_token: token(),
        token_type: 'Bearer',
        expires_at: state.expiresAt,
        extra: { instance_url: 'https://eu1.example', scope: 'api' },
      });
    }
    if (/\/refresh$/.test(url.pathname)) {
      state.generation++;
      state.refreshes++;
      return json(200, { id: 'cr_1', status: 'active' });
    }
    if (/\/keys$/.test(url.pathname) && init?.method === 'PUT') {
      state.keys.push(body);
      return json(200, { id: 'cr_1', status: 'active' });
    }
    return json(404, { error: { code: 'not_found', message: 'no route' } });
  }) as typeof globalThis.fetch;
  return { calls, state, fetch, token };
}

describe('VaultTokenSource and VaultKeyStore (the vault HTTP API, no network)', () => {
  it('getToken: POST …/access-token with the API key, minValiditySeconds and staleAccessToken', async () => {
    const vault = fakeVault();
    const source = new VaultTokenSource({
      url: VAULT,
      apiKey: API_KEY,
      credentialId: 'cr_1',
      fetch: vault.fetch,
    });
    const first = await source.getToken({ minValiditySeconds: 300 });
    assert.equal(first.accessToken, 'vault-access-1');
    assert.equal(first.get('instance_url'), 'https://eu1.example');
    assert.equal(first.refreshToken, undefined, 'the refresh token never leaves the vault');
    assert.equal(first.expiresAt, vault.state.expiresAt);
    assert.deepEqual(vault.calls[0], {
      method: 'POST',
      path: '/v1/credentials/cr_1/access-token',
      body: { minValiditySeconds: 300 },
      authorization: `Bearer ${API_KEY}`,
    });
    const second = await source.getToken({ staleAccessToken: first.accessToken });
    assert.equal(second.accessToken, 'vault-access-2');
    assert.deepEqual(vault.calls[1]?.body, { staleAccessToken: 'vault-access-1' });
    await source.getToken({ forceRefresh: true });
    assert.deepEqual(
      vault.calls.slice(2).map((c) => `${c.method} ${c.path}`),
      ['POST /v1/credentials/cr_1/refresh', 'POST /v1/credentials/cr_1/access-token'],
    );
  });

  it('readKeys is the token response a component expects in cfg: no refresh token; updateKeys is PUT …/keys', async () => {
    const vault = fakeVault();
    const store = new VaultKeyStore({
      url: `${VAULT}/`,
      apiKey: API_KEY,
      credentialId: 'cr 1',
      fetch: vault.fetch,
    });
    const keys = await store.readKeys({ minValiditySeconds: 120 });
    assert.equal(keys.access_token, 'vault-access-1');
    assert.equal(keys.token_type, 'Bearer');
    assert.equal(keys.instance_url, 'https://eu1.example');
    assert.ok(
      typeof keys.expires_in === 'number' && keys.expires_in > 3500 && keys.expires_in <= 3600,
    );
    assert.equal('refresh_token' in keys, false);
    await store.updateKeys({
      access_token: 'from-component',
      token_type: 'Bearer',
      refresh_token: 'r',
    });
    assert.equal(vault.calls[1]?.method, 'PUT');
    assert.equal(vault.calls[1]?.path, '/v1/credentials/cr%201/keys');
    assert.deepEqual(vault.state.keys, [
      { access_token: 'from-component', token_type: 'Bearer', refresh_token: 'r' },
    ]);
    assert.match(store.description, /vault http:\/\/127\.0\.0\.1:4080 \(credential cr 1\)/);
  });

  it("the vault's own error codes: those of @tokenwarden/oauth keep their code, others are vault_request_failed", async () => {
    const vault = fakeVault();
    const store = new VaultKeyStore({
      url: VAULT,
      apiKey: API_KEY,
      credentialId: 'cr_1',
      fetch: vault.fetch,
    });
    const answer = (status: number, code: string, message: string) =>
      new Response(JSON.stringify({ error: { code, message } }), { status });
    vault.state.fail = answer(409, 'reauth_required', 'credential cr_1: the grant is gone');
    await assert.rejects(store.readKeys(), (error: unknown) => {
      assert.ok(error instanceof TokenwardenError);
      assert.equal(error.code, 'reauth_required');
      assert.equal(error.credentialId, 'cr_1');
      return true;
    });
    vault.state.fail = answer(401, 'unauthorized', 'unknown API key');
    await assert.rejects(
      store.updateKeys({ access_token: 'a', token_type: 'Bearer' }),
      (error: unknown) => {
        assert.ok(error instanceof RuntimeError);
        assert.equal(error.code, 'vault_request_failed');
        assert.match(
          error.message,
          /PUT http:\/\/127\.0\.0\.1:4080\/v1\/credentials\/cr_1\/keys answered HTTP 401 unauthorized: unknown API key/,
        );
        assert.ok(!error.message.includes(API_KEY));
        return true;
      },
    );
    vault.state.fail = new Response('<html>bad gateway</html>', { status: 502 });
    await assert.rejects(store.readKeys(), { code: 'vault_unavailable' });
    vault.state.fail = new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
    await assert.rejects(store.readKeys(), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, 'vault_unavailable');
      assert.match(error.message, /network error \(ECONNREFUSED\)/);
      return true;
    });
    vault.state.fail = new Response(JSON.stringify({ token: 'x' }), { status: 200 });
    await assert.rejects(store.readKeys(), { code: 'vault_request_failed' });
  });

  it('refuses a vault URL that would send the API key in the clear', () => {
    assert.throws(
      () =>
        new VaultKeyStore({ url: 'http://vault.example.com', apiKey: API_KEY, credentialId: 'c' }),
      /must use https/,
    );
    assert.throws(
      () => new VaultKeyStore({ url: VAULT, apiKey: '', credentialId: 'c' }),
      /API key: required/,
    );
  });

  it('this.fetch through the vault: a 401 is one compare-and-refresh and one retry; the new token reaches cfg', async () => {
    const vault = fakeVault();
    const keys = new VaultKeyStore({
      url: VAULT,
      apiKey: API_KEY,
      credentialId: 'cr_1',
      fetch: vault.fetch,
    });
    const session = new RunSession({
      component: await contract(),
      keys,
      fetch: vault.fetch,
      logger: memorySink().sink,
    });
    // the provider revokes the token the step starts with; the vault does not know yet
    const readKeys = keys.readKeys.bind(keys);
    keys.readKeys = async (options) => {
      const current = await readKeys(options);
      vault.state.revoked.add(current.access_token);
      return current;
    };
    const result = await session.runStep('fetch', {
      body: { url: 'http://127.0.0.1:4080/resource' },
    });
    assert.equal(result.ok, true, JSON.stringify(result.events));
    const body = dataAt<{ body: Record<string, unknown> }>(result, 0).body;
    assert.equal(body.status, 200);
    assert.deepEqual(body.answer, { me: 'ok' });
    assert.equal(
      body.tokenInCfg,
      vault.token(),
      'old-style code reading cfg.oauth sees the refreshed token',
    );
    assert.equal(vault.state.refreshes, 1);
    assert.equal(vault.token(), 'vault-access-2');
    assert.equal((session.cfg.oauth as { access_token: string }).access_token, vault.token());
    assert.equal(
      (session.cfg.oauth as { instance_url: string }).instance_url,
      'https://eu1.example',
    );
  });
});
