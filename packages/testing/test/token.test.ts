import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeProvider, startFakeProvider } from '../src/index.ts';
import {
  basicAuth,
  CLIENT_ID,
  CLIENT_SECRET,
  connect,
  must,
  refresh,
  tokenJson,
  tokenRequest,
} from './helpers.ts';

describe('token endpoint: client authentication', () => {
  let provider: FakeProvider;
  let refreshToken: string;
  before(async () => {
    provider = await startFakeProvider({
      autoApprove: true,
      clients: [
        { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET },
        { clientId: 'other client', clientSecret: 'p@ss:w%rd +x' },
      ],
    });
    refreshToken = must((await connect(provider)).refresh_token, 'refresh_token');
  });
  after(() => provider.close());

  function post(
    body: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return fetch(provider.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(body),
    });
  }

  it('accepts client_secret_post and client_secret_basic', async () => {
    assert.equal((await refresh(provider, refreshToken)).status, 200);
    const basic = await tokenRequest(
      provider,
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      'basic',
    );
    assert.equal(basic.status, 200);
  });

  it('form-decodes the id and secret inside Basic credentials (RFC 6749 §2.3.1)', async () => {
    // The grant belongs to demo-client, so the other client is authenticated but gets invalid_grant.
    const encoded = await post(
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      { authorization: basicAuth('other client', 'p@ss:w%rd +x') },
    );
    assert.equal(encoded.status, 400);
    assert.equal((await tokenJson(encoded)).error, 'invalid_grant');

    const raw = await post(
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      { authorization: `Basic ${Buffer.from('other client:p@ss:w%rd +x').toString('base64')}` },
    );
    assert.equal(raw.status, 401);
  });

  it('answers 401 invalid_client with a Basic challenge to a wrong Basic secret', async () => {
    const res = await post(
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      { authorization: basicAuth(CLIENT_ID, 'wrong') },
    );
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic/);
    assert.equal((await tokenJson(res)).error, 'invalid_client');
  });

  it('answers 401 invalid_client without a challenge to a wrong posted secret or an unknown client', async () => {
    for (const [id, secret] of [
      [CLIENT_ID, 'wrong'],
      ['nobody', CLIENT_SECRET],
    ] as const) {
      const res = await post({
        grant_type: 'refresh_token',
        refresh_token: refreshToken,
        client_id: id,
        client_secret: secret,
      });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), null);
      assert.equal((await tokenJson(res)).error, 'invalid_client');
    }
    const none = await tokenRequest(
      provider,
      { grant_type: 'refresh_token', refresh_token: refreshToken },
      'none',
    );
    assert.equal(none.status, 401);
  });

  it('refuses two authentication methods in one request', async () => {
    const res = await post(
      { grant_type: 'refresh_token', refresh_token: refreshToken, client_secret: CLIENT_SECRET },
      { authorization: basicAuth(CLIENT_ID, CLIENT_SECRET) },
    );
    assert.equal(res.status, 400);
    assert.equal((await tokenJson(res)).error, 'invalid_request');
  });
});

describe('token endpoint: request checks', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true });
  });
  after(() => provider.close());

  it('answers unsupported_grant_type and invalid_request as RFC 6749 §5.2 JSON', async () => {
    const unsupported = await tokenRequest(provider, {
      grant_type: 'password',
      username: 'u',
      password: 'p',
    });
    assert.equal(unsupported.status, 400);
    assert.equal(unsupported.headers.get('cache-control'), 'no-store');
    const body = await tokenJson(unsupported);
    assert.equal(body.error, 'unsupported_grant_type');
    assert.equal(typeof body.error_description, 'string');

    const missing = await tokenRequest(provider, {});
    assert.equal((await tokenJson(missing)).error, 'invalid_request');
    const noToken = await tokenRequest(provider, { grant_type: 'refresh_token' });
    assert.equal((await tokenJson(noToken)).error, 'invalid_request');
  });

  it('requires a form body and single parameters', async () => {
    const json = await fetch(provider.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'refresh_token' }),
    });
    assert.equal(json.status, 400);
    assert.equal((await tokenJson(json)).error, 'invalid_request');

    const twice = await fetch(provider.tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id=${CLIENT_ID}&client_secret=${CLIENT_SECRET}`,
    });
    assert.match((await tokenJson(twice)).error_description ?? '', /more than once/);
  });

  it('answers invalid_grant to an unknown refresh token and to a scope beyond the grant', async () => {
    const tokens = await connect(provider);
    const unknown = await refresh(provider, 'rt_nope');
    assert.equal((await tokenJson(unknown)).error, 'invalid_grant');
    const wider = await refresh(provider, must(tokens.refresh_token, 'refresh_token'), {
      scope: 'profile admin',
    });
    assert.equal((await tokenJson(wider)).error, 'invalid_scope');
    const narrower = await refresh(provider, must(tokens.refresh_token, 'refresh_token'), {
      scope: 'email',
    });
    assert.equal((await tokenJson(narrower)).scope, 'email');
  });

  it('serves RFC 8414 metadata', async () => {
    const res = await fetch(`${provider.url}/.well-known/oauth-authorization-server`);
    const metadata = (await res.json()) as Record<string, unknown>;
    assert.equal(metadata.issuer, provider.issuer);
    assert.equal(metadata.token_endpoint, provider.tokenEndpoint);
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  });

  it('answers 405 to GET /token', async () => {
    const res = await fetch(provider.tokenEndpoint);
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
  });
});
