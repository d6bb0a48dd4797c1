import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type FakeProvider, startFakeProvider } from '../src/index.ts';
import {
  basicAuth,
  CLIENT_ID,
  CLIENT_SECRET,
  callResource,
  connect,
  must,
  refresh,
  sleep,
  tokenJson,
} from './helpers.ts';

describe('protected resource', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true, accessTokenLifetimeSeconds: 1 });
  });
  after(() => provider.close());

  it('answers 401 with a bare challenge, no error code, when no token is sent (RFC 6750 §3.1)', async () => {
    for (const headers of [{}, { authorization: basicAuth('a', 'b') }]) {
      const res = await fetch(provider.resourceUrl, { headers });
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="fake"');
    }
  });

  it('answers 401 invalid_token to an unknown token and 400 to a malformed one', async () => {
    const unknown = await callResource(provider.resourceUrl, 'at_unknown');
    assert.equal(unknown.status, 401);
    assert.equal(
      unknown.headers.get('www-authenticate'),
      'Bearer realm="fake", error="invalid_token", error_description="the access token is unknown"',
    );
    const malformed = await callResource(provider.resourceUrl, 'has"quote');
    assert.equal(malformed.status, 400);
  });

  it('expires access tokens after the configured lifetime', async () => {
    const tokens = await connect(provider);
    assert.equal(tokens.expires_in, 1);
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 200);
    await sleep(1050);
    const res = await callResource(provider.resourceUrl, tokens.access_token);
    assert.equal(res.status, 401);
    assert.equal(
      res.headers.get('www-authenticate'),
      'Bearer realm="fake", error="invalid_token", error_description="the access token expired"',
    );
    assert.deepEqual(await res.json(), {
      error: 'invalid_token',
      error_description: 'the access token expired',
    });
    const refreshed = await tokenJson(
      await refresh(provider, must(tokens.refresh_token, 'refresh_token')),
    );
    assert.equal((await callResource(provider.resourceUrl, refreshed.access_token)).status, 200);
  });

  it('answers 403 insufficient_scope on /api/admin without the admin scope', async () => {
    const plain = await connect(provider);
    const res = await callResource(`${provider.url}/api/admin`, plain.access_token);
    assert.equal(res.status, 403);
    const challenge = res.headers.get('www-authenticate') ?? '';
    assert.match(challenge, /^Bearer /);
    assert.match(challenge, /error="insufficient_scope"/);
    assert.match(challenge, /scope="admin"/);
    const admin = await connect(provider, { scope: 'profile admin' });
    assert.equal((await callResource(`${provider.url}/api/admin`, admin.access_token)).status, 200);
  });

  it('echoes a digest of the request body', async () => {
    const tokens = await connect(provider);
    const body = Buffer.from(JSON.stringify({ hello: 'world', n: [1, 2, 3] }));
    for (const method of ['POST', 'PUT']) {
      const res = await callResource(`${provider.url}/api/echo`, tokens.access_token, {
        method,
        headers: { 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), {
        method,
        contentType: 'application/json',
        length: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
      });
    }
    const unauthorized = await callResource(`${provider.url}/api/echo`, 'at_nope', {
      method: 'POST',
      body,
    });
    assert.equal(unauthorized.status, 401);
    const get = await callResource(`${provider.url}/api/echo`, tokens.access_token);
    assert.equal(get.status, 405);
  });

  it('serves the Salesforce-like and Graph-like APIs with the same 401 semantics', async () => {
    const tokens = await connect(provider);
    const query = await callResource(
      `${provider.url}/sf/services/data/v59.0/query?q=SELECT+Name+FROM+Account`,
      tokens.access_token,
    );
    const records = (await query.json()) as {
      totalSize: number;
      done: boolean;
      records: Array<{ Id: string; Name: string }>;
    };
    assert.equal(records.totalSize, 1);
    assert.equal(records.done, true);
    assert.equal(records.records[0]?.Name, 'Acme');
    assert.match(records.records[0]?.Id ?? '', /^001/);

    const messages = await callResource(`${provider.url}/v1.0/me/messages`, tokens.access_token);
    const list = (await messages.json()) as { value: Array<{ id: string; subject: string }> };
    assert.ok(list.value.length > 0);
    assert.equal(typeof list.value[0]?.subject, 'string');

    for (const path of ['/sf/services/data/v59.0/query?q=x', '/v1.0/me/messages']) {
      const res = await callResource(`${provider.url}${path}`, 'at_nope');
      assert.equal(res.status, 401, path);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
  });

  it('revokeAccessTokens() and expireAccessTokens() make issued tokens answer 401', async () => {
    const a = await connect(provider);
    assert.ok(provider.revokeAccessTokens() >= 1);
    const revoked = await callResource(provider.resourceUrl, a.access_token);
    assert.equal(revoked.status, 401);
    assert.match(revoked.headers.get('www-authenticate') ?? '', /revoked/);
    // Refreshing still works: only the access tokens were revoked.
    const fresh = await tokenJson(await refresh(provider, must(a.refresh_token, 'refresh_token')));
    assert.equal((await callResource(provider.resourceUrl, fresh.access_token)).status, 200);

    assert.equal(provider.expireAccessTokens(), 1);
    const expired = await callResource(provider.resourceUrl, fresh.access_token);
    assert.match(expired.headers.get('www-authenticate') ?? '', /expired/);
  });

  it('revokeGrant() ends the grant of a refresh token', async () => {
    const tokens = await connect(provider);
    const refreshToken = must(tokens.refresh_token, 'refresh_token');
    assert.equal(provider.revokeGrant(refreshToken), true);
    assert.equal(provider.revokeGrant(refreshToken), false);
    assert.equal(provider.revokeGrant('rt_unknown'), false);
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 401);
    assert.equal((await tokenJson(await refresh(provider, refreshToken))).error, 'invalid_grant');
  });
});

describe('revocation endpoint (RFC 7009)', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true });
  });
  after(() => provider.close());

  function revoke(
    params: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<Response> {
    return fetch(provider.revocationEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(params),
    });
  }

  it('revoking an access token ends only that token', async () => {
    const tokens = await connect(provider);
    const accessToken = must(tokens.access_token, 'access_token');
    const res = await revoke({
      token: accessToken,
      token_type_hint: 'access_token',
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    });
    assert.equal(res.status, 200);
    assert.equal((await callResource(provider.resourceUrl, accessToken)).status, 401);
    assert.equal(
      (await refresh(provider, must(tokens.refresh_token, 'refresh_token'))).status,
      200,
    );
  });

  it('revoking a refresh token ends its grant', async () => {
    const tokens = await connect(provider);
    const res = await revoke(
      { token: must(tokens.refresh_token, 'refresh_token') },
      { authorization: basicAuth(CLIENT_ID, CLIENT_SECRET) },
    );
    assert.equal(res.status, 200);
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 401);
    assert.equal(
      (await tokenJson(await refresh(provider, must(tokens.refresh_token, 'refresh_token')))).error,
      'invalid_grant',
    );
  });

  it('answers 200 to unknown tokens, 401 to a bad client, 400 without a token', async () => {
    assert.equal(
      (await revoke({ token: 'whatever', client_id: CLIENT_ID, client_secret: CLIENT_SECRET }))
        .status,
      200,
    );
    const bad = await revoke(
      { token: 'whatever' },
      { authorization: basicAuth(CLIENT_ID, 'wrong') },
    );
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('www-authenticate') ?? '', /^Basic/);
    assert.equal(
      (await revoke({ client_id: CLIENT_ID, client_secret: CLIENT_SECRET })).status,
      400,
    );
    const counters = provider.counters();
    assert.equal(counters.revocationRequests, 5);
    assert.equal(counters.revokedGrants, 1);
  });
});
