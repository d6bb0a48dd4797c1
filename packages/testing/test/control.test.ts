import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { type Counters, type FakeProvider, startFakeProvider } from '../src/index.ts';
import { callResource, connect, must, refresh, sleep } from './helpers.ts';

describe('counters', () => {
  it('count token requests by grant type, outcomes, and resource answers', async () => {
    const provider = await startFakeProvider({ autoApprove: true });
    try {
      const tokens = await connect(provider);
      await refresh(provider, must(tokens.refresh_token, 'refresh_token'));
      await refresh(provider, 'rt_unknown');
      await fetch(provider.tokenEndpoint, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'password' }),
      });
      await callResource(provider.resourceUrl, tokens.access_token);
      await callResource(provider.resourceUrl);
      await callResource(`${provider.url}/api/admin`, tokens.access_token);

      const counters = provider.counters();
      assert.deepEqual(counters, {
        tokenRequests: { authorization_code: 1, refresh_token: 2, other: 1 },
        refreshes: 1,
        codeExchanges: 1,
        invalidGrants: 1,
        reusedRefreshTokens: 0,
        revokedGrants: 0,
        revocationRequests: 0,
        resourceRequests: 3,
        unauthorized: 1,
        forbidden: 1,
        faultsInjected: 0,
      } satisfies Counters);

      // A snapshot: it does not move, and changing it changes nothing.
      counters.tokenRequests.other = 99;
      await refresh(provider, must(tokens.refresh_token, 'refresh_token'));
      assert.equal(counters.refreshes, 1);
      assert.equal(provider.counters().tokenRequests.other, 1);

      provider.resetCounters();
      assert.equal(provider.counters().refreshes, 0);
      assert.equal(provider.counters().tokenRequests.refresh_token, 0);
    } finally {
      await provider.close();
    }
  });
});

describe('control API', () => {
  let provider: FakeProvider;
  let control: string;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true });
    control = `${provider.url}/_control`;
  });
  after(() => provider.close());

  function postJson(path: string, body: unknown): Promise<Response> {
    return fetch(`${control}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  }

  it('reads and resets the counters', async () => {
    await connect(provider);
    const counters = (await (await fetch(`${control}/counters`)).json()) as Counters;
    assert.equal(counters.codeExchanges, 1);
    assert.equal((await fetch(`${control}/reset-counters`, { method: 'POST' })).status, 200);
    assert.equal(
      ((await (await fetch(`${control}/counters`)).json()) as Counters).codeExchanges,
      0,
    );
  });

  it('injects, lists and clears faults', async () => {
    const tokens = await connect(provider);
    const refreshToken = must(tokens.refresh_token, 'refresh_token');
    const created = await postJson('/faults', {
      fault: { kind: 'rate-limit', retryAfterSeconds: 3 },
      times: 1,
    });
    assert.equal(created.status, 201);
    const { id } = (await created.json()) as { id: string };
    assert.equal(provider.faults.list()[0]?.id, id);
    assert.equal((await refresh(provider, refreshToken)).status, 429);
    assert.equal((await refresh(provider, refreshToken)).status, 200);

    const kept = (
      (await (
        await postJson('/faults', { fault: { kind: 'status' }, endpoint: 'resource' })
      ).json()) as { id: string }
    ).id;
    const listed = (await (await fetch(`${control}/faults`)).json()) as {
      faults: Array<{ id: string }>;
    };
    assert.deepEqual(
      listed.faults.map((f) => f.id),
      [kept],
    );
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 503);
    assert.equal((await fetch(`${control}/faults/${kept}`, { method: 'DELETE' })).status, 200);
    assert.equal((await fetch(`${control}/faults/${kept}`, { method: 'DELETE' })).status, 404);
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 200);

    await postJson('/faults', { fault: { kind: 'status' } });
    await postJson('/faults', {
      fault: { kind: 'html' },
      endpoint: 'any',
      after: 'after-processing',
    });
    assert.deepEqual(await (await fetch(`${control}/faults`, { method: 'DELETE' })).json(), {
      cleared: 2,
    });
  });

  it('answers 400 to a malformed fault and 415 to a body that is not JSON', async () => {
    const bad = await postJson('/faults', { fault: { kind: 'latency' } });
    assert.equal(bad.status, 400);
    assert.match(
      ((await bad.json()) as { error_description: string }).error_description,
      /ms must be a number/,
    );
    const form = await fetch(`${control}/faults`, { method: 'POST', body: 'fault=reset' });
    assert.equal(form.status, 415);
    assert.equal(provider.faults.list().length, 0);
  });

  it('revokes and expires access tokens, and revokes grants', async () => {
    const tokens = await connect(provider);
    const revoked = await (
      await fetch(`${control}/revoke-access-tokens`, { method: 'POST' })
    ).json();
    assert.ok((revoked as { revoked: number }).revoked >= 1);
    assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 401);

    const fresh = await connect(provider);
    assert.deepEqual(
      await (await fetch(`${control}/expire-access-tokens`, { method: 'POST' })).json(),
      { expired: 1 },
    );
    assert.equal((await callResource(provider.resourceUrl, fresh.access_token)).status, 401);

    const grant = await postJson('/revoke-grant', { refresh_token: fresh.refresh_token });
    assert.deepEqual(await grant.json(), { revoked: true });
  });

  it('mints grants in bulk and tells the state of refresh tokens', async () => {
    const created = await postJson('/grants', { count: 3, scope: 'profile email' });
    assert.equal(created.status, 201);
    const { grants } = (await created.json()) as {
      grants: Array<{
        grant_id: string;
        access_token: string;
        refresh_token: string;
        expires_in: number;
        scope: string;
      }>;
    };
    assert.equal(grants.length, 3);
    assert.equal(new Set(grants.map((g) => g.grant_id)).size, 3);
    const [first, second] = grants as [(typeof grants)[0], (typeof grants)[0]];
    assert.equal(first.scope, 'profile email');
    assert.equal(first.expires_in, 3600);
    // Real tokens: the resource accepts the access token, the token endpoint the refresh token.
    assert.equal((await callResource(provider.resourceUrl, first.access_token)).status, 200);
    const refreshed = await refresh(provider, first.refresh_token);
    assert.equal(refreshed.status, 200);

    await postJson('/revoke-grant', { refresh_token: second.refresh_token });
    const status = await postJson('/refresh-token-status', {
      refresh_tokens: [first.refresh_token, second.refresh_token, 'rt_unknown'],
    });
    assert.deepEqual(await status.json(), {
      statuses: [
        // generic personality: no rotation, so the refresh token stays current
        { state: 'current', grantId: first.grant_id, grantRevoked: false },
        { state: 'current', grantId: second.grant_id, grantRevoked: true },
        { state: 'unknown', grantId: null, grantRevoked: null },
      ],
    });

    const bad = await postJson('/grants', { count: 0, client_id: 'nobody' });
    assert.equal(bad.status, 400);
    const problems = ((await bad.json()) as { error_description: string }).error_description;
    assert.match(problems, /count must be/);
    assert.match(problems, /no client is registered with the id "nobody"/);
    assert.equal((await postJson('/refresh-token-status', { refresh_tokens: [1] })).status, 400);
  });

  it('shows rotation in refresh-token states (strict, microsoft)', async () => {
    for (const personality of ['strict', 'microsoft'] as const) {
      const rotating = await startFakeProvider({ personality, refreshGraceSeconds: 30 });
      try {
        const [grant] = rotating.mintGrants({ count: 1, scope: 'profile' });
        assert.ok(grant);
        const answer = await refresh(rotating, grant.refresh_token, { scope: 'profile' });
        const next = ((await answer.json()) as { refresh_token: string }).refresh_token;
        assert.deepEqual(
          rotating.refreshTokenStatus([grant.refresh_token, next]).map((s) => s.state),
          [personality === 'strict' ? 'used' : 'in-grace', 'current'],
        );
      } finally {
        await rotating.close();
      }
    }
  });

  it('refuses cross-origin browser requests', async () => {
    const res = await fetch(`${control}/reset-counters`, {
      method: 'POST',
      headers: { origin: 'https://evil.example' },
    });
    assert.equal(res.status, 403);
    const same = await fetch(`${control}/counters`, { headers: { origin: provider.url } });
    assert.equal(same.status, 200);
  });

  it('answers 404 to unknown paths', async () => {
    assert.equal((await fetch(`${control}/nothing`)).status, 404);
    assert.equal((await fetch(`${provider.url}/nothing`)).status, 404);
  });
});

describe('options and lifecycle', () => {
  it('rejects bad options with every problem listed', async () => {
    await assert.rejects(
      startFakeProvider({
        personality: 'okta' as 'generic',
        accessTokenLifetimeSeconds: 0,
        port: 70000,
        clients: [{ clientId: 'a', clientSecret: '' }],
        tokenLifetime: 5,
      } as never),
      (error: unknown) => {
        assert.ok(error instanceof TypeError);
        for (const problem of [
          'personality',
          'accessTokenLifetimeSeconds',
          'port',
          'clientSecret',
          'unknown option "tokenLifetime"',
        ]) {
          assert.ok(error.message.includes(problem), problem);
        }
        return true;
      },
    );
  });

  it('accepts a fractional token lifetime', async () => {
    const provider = await startFakeProvider({
      autoApprove: true,
      accessTokenLifetimeSeconds: 0.2,
    });
    try {
      const tokens = await connect(provider);
      assert.equal(tokens.expires_in, 1);
      await sleep(250);
      assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 401);
    } finally {
      await provider.close();
    }
  });

  it('exposes the endpoint URLs', async () => {
    const provider = await startFakeProvider({ personality: 'salesforce' });
    try {
      assert.match(provider.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(provider.issuer, provider.url);
      assert.equal(provider.authorizationEndpoint, `${provider.url}/authorize`);
      assert.equal(provider.tokenEndpoint, `${provider.url}/token`);
      assert.equal(provider.revocationEndpoint, `${provider.url}/revoke`);
      assert.equal(provider.resourceUrl, `${provider.url}/api/me`);
      assert.equal(provider.personality, 'salesforce');
    } finally {
      await provider.close();
    }
  });

  it('prunes expired access tokens periodically', async () => {
    const provider = await startFakeProvider({
      autoApprove: true,
      accessTokenLifetimeSeconds: 0.1,
      pruneIntervalMs: 50,
    });
    try {
      const tokens = await connect(provider);
      await sleep(250);
      // Pruned tokens are no longer known at all, which is what keeps memory flat.
      const res = await callResource(provider.resourceUrl, tokens.access_token);
      assert.match(res.headers.get('www-authenticate') ?? '', /unknown/);
    } finally {
      await provider.close();
    }
  });

  it('close() closes idle keep-alive connections at once and can be called twice', async () => {
    const provider = await startFakeProvider();
    const agentless = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${provider.url}/_control/counters`,
        { headers: { connection: 'keep-alive' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(agentless, 200);
    const started = performance.now();
    await Promise.all([provider.close(), provider.close()]);
    assert.ok(performance.now() - started < 1000);
  });
});
