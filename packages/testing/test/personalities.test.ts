import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { PERSONALITIES, PERSONALITY_PROFILES, startFakeProvider } from '../src/index.ts';
import {
  CLIENT_SECRET,
  callResource,
  connect,
  must,
  obtainCode,
  REDIRECT_URI,
  refresh,
  sleep,
  tokenJson,
  tokenRequest,
} from './helpers.ts';

describe('personalities', () => {
  it('every personality has a profile', () => {
    assert.deepEqual([...PERSONALITIES].sort(), Object.keys(PERSONALITY_PROFILES).sort());
  });

  it('generic: refresh does not rotate and omits refresh_token', async () => {
    const provider = await startFakeProvider({ autoApprove: true });
    try {
      assert.equal(provider.personality, 'generic');
      const tokens = await connect(provider);
      const refreshToken = must(tokens.refresh_token, 'refresh_token');
      for (let i = 0; i < 2; i++) {
        const res = await refresh(provider, refreshToken);
        assert.equal(res.status, 200);
        const body = await tokenJson(res);
        assert.equal(body.refresh_token, undefined);
        assert.equal(body.expires_in, 3600);
        assert.notEqual(body.access_token, tokens.access_token);
      }
      assert.equal(provider.counters().refreshes, 2);
    } finally {
      await provider.close();
    }
  });

  it('microsoft: rotates, keeps the previous token for the grace period, then invalid_grant', async () => {
    const provider = await startFakeProvider({
      personality: 'microsoft',
      autoApprove: true,
      refreshGraceSeconds: 0.3,
    });
    try {
      const tokens = await connect(provider, { scope: 'offline_access Mail.Read' });
      const first = must(tokens.refresh_token, 'refresh_token');

      const noScope = await refresh(provider, first);
      assert.equal(noScope.status, 400);
      const noScopeBody = await tokenJson(noScope);
      assert.equal(noScopeBody.error, 'invalid_request');
      assert.match(noScopeBody.error_description ?? '', /scope is required/);

      const rotated = await tokenJson(
        await refresh(provider, first, { scope: 'offline_access Mail.Read' }),
      );
      assert.equal(rotated.token_type, 'Bearer');
      assert.equal(rotated.scope, 'offline_access Mail.Read');
      const second = must(rotated.refresh_token, 'rotated refresh_token');
      assert.notEqual(second, first);

      const inGrace = await refresh(provider, first, { scope: 'Mail.Read' });
      assert.equal(
        inGrace.status,
        200,
        'the previous token is still valid within the grace period',
      );

      await sleep(350);
      const late = await refresh(provider, first, { scope: 'Mail.Read' });
      assert.equal(late.status, 400);
      assert.equal((await tokenJson(late)).error, 'invalid_grant');
      const current = await refresh(provider, second, { scope: 'Mail.Read' });
      assert.equal(current.status, 200, 'the grant itself survives');

      const counters = provider.counters();
      assert.equal(counters.reusedRefreshTokens, 1);
      assert.equal(counters.revokedGrants, 0);
      assert.equal(counters.invalidGrants, 1);
    } finally {
      await provider.close();
    }
  });

  it('salesforce: no expires_in; instance_url, id, issued_at, signature; format=urlencoded; no rotation', async () => {
    const provider = await startFakeProvider({
      personality: 'salesforce',
      autoApprove: true,
      accessTokenLifetimeSeconds: 1,
    });
    try {
      const before = Date.now();
      const tokens = await connect(provider, { scope: 'api refresh_token' });
      assert.equal(tokens.expires_in, undefined);
      assert.equal(tokens.token_type, 'Bearer');
      assert.equal(tokens.instance_url, `${provider.url}/sf`);
      assert.match(String(tokens.id), new RegExp(`^${provider.url}/id/00D\\w+/005\\w+$`));
      assert.match(String(tokens.issued_at), /^\d{13}$/);
      assert.ok(Number(tokens.issued_at) >= before);
      const expected = createHmac('sha256', CLIENT_SECRET)
        .update(`${tokens.id}${tokens.issued_at}`)
        .digest('base64');
      assert.equal(
        tokens.signature,
        expected,
        'HMAC-SHA256 of id + issued_at keyed with the client secret',
      );
      const refreshToken = must(tokens.refresh_token, 'refresh_token');

      const json = await tokenJson(await refresh(provider, refreshToken, { format: 'json' }));
      assert.equal(json.refresh_token, undefined);
      assert.equal(json.expires_in, undefined);
      assert.equal(json.instance_url, `${provider.url}/sf`);

      const form = await refresh(provider, refreshToken, { format: 'urlencoded' });
      assert.equal(form.status, 200);
      assert.match(form.headers.get('content-type') ?? '', /^application\/x-www-form-urlencoded/);
      const fields = new URLSearchParams(await form.text());
      assert.equal(fields.get('instance_url'), `${provider.url}/sf`);
      assert.equal(fields.get('token_type'), 'Bearer');
      assert.equal(fields.get('refresh_token'), null);
      const accessToken = must(fields.get('access_token'), 'access_token');

      const query = await callResource(
        `${provider.url}/sf/services/data/v59.0/query?q=SELECT+Id+FROM+Account`,
        accessToken,
      );
      assert.equal(query.status, 200);
      assert.deepEqual(((await query.json()) as { records: unknown[] }).records.length, 1);

      // The client is not told, but the token still expires.
      await sleep(1050);
      const expired = await callResource(
        `${provider.url}/sf/services/data/v59.0/query?q=x`,
        accessToken,
      );
      assert.equal(expired.status, 401);
      assert.deepEqual(await expired.json(), [
        { message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' },
      ]);
    } finally {
      await provider.close();
    }
  });

  it('google: a refresh token only with access_type=offline and prompt=consent; no rotation', async () => {
    const provider = await startFakeProvider({ personality: 'google', autoApprove: true });
    try {
      const online = await connect(provider);
      assert.equal(online.refresh_token, undefined);
      const offlineOnly = await connect(provider, { access_type: 'offline' });
      assert.equal(offlineOnly.refresh_token, undefined);
      const consentOnly = await connect(provider, { prompt: 'consent' });
      assert.equal(consentOnly.refresh_token, undefined);

      const offline = await connect(provider, { access_type: 'offline', prompt: 'consent' });
      const refreshToken = must(offline.refresh_token, 'refresh_token');
      const refreshed = await tokenJson(await refresh(provider, refreshToken));
      assert.equal(refreshed.token_type, 'Bearer');
      assert.equal(refreshed.refresh_token, undefined);
      assert.equal((await refresh(provider, refreshToken)).status, 200);
    } finally {
      await provider.close();
    }
  });

  it('strict: a reused refresh token revokes the whole grant, newest tokens included', async () => {
    const provider = await startFakeProvider({ personality: 'strict', autoApprove: true });
    try {
      const tokens = await connect(provider);
      const first = must(tokens.refresh_token, 'refresh_token');
      const rotated = await tokenJson(await refresh(provider, first));
      const second = must(rotated.refresh_token, 'rotated refresh_token');
      const newestAccess = must(rotated.access_token, 'access_token');
      assert.equal((await callResource(provider.resourceUrl, newestAccess)).status, 200);

      const reuse = await refresh(provider, first);
      assert.equal(reuse.status, 400);
      assert.equal((await tokenJson(reuse)).error, 'invalid_grant');

      assert.equal((await tokenJson(await refresh(provider, second))).error, 'invalid_grant');
      const me = await callResource(provider.resourceUrl, newestAccess);
      assert.equal(me.status, 401);
      assert.match(me.headers.get('www-authenticate') ?? '', /revoked/);
      assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 401);

      const counters = provider.counters();
      assert.equal(counters.reusedRefreshTokens, 1);
      assert.equal(counters.revokedGrants, 1);
      assert.equal(counters.invalidGrants, 2);
      assert.equal(counters.refreshes, 1);
    } finally {
      await provider.close();
    }
  });

  it('strict: two concurrent refreshes with one token end the grant (the race single-flight prevents)', async () => {
    const provider = await startFakeProvider({ personality: 'strict', autoApprove: true });
    try {
      const refreshToken = must((await connect(provider)).refresh_token, 'refresh_token');
      const answers = await Promise.all([
        refresh(provider, refreshToken),
        refresh(provider, refreshToken),
      ]);
      const statuses = answers.map((r) => r.status).sort();
      assert.deepEqual(statuses, [200, 400]);
      const winner = await tokenJson(
        must(
          answers.find((r) => r.status === 200),
          'winner',
        ),
      );
      assert.equal(
        (await refresh(provider, must(winner.refresh_token, 'refresh_token'))).status,
        400,
      );
    } finally {
      await provider.close();
    }
  });

  it('code exchange of a google provider keeps the code single use like the others', async () => {
    const provider = await startFakeProvider({ personality: 'google', autoApprove: true });
    try {
      const { code, verifier } = await obtainCode(provider);
      const params = {
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      };
      assert.equal((await tokenRequest(provider, params)).status, 200);
      assert.equal((await tokenRequest(provider, params)).status, 400);
    } finally {
      await provider.close();
    }
  });
});
