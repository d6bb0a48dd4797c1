import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { type FakeProvider, startFakeProvider } from '../src/index.ts';
import {
  authorizationParams,
  authorize,
  callResource,
  connect,
  must,
  refresh,
  tokenJson,
} from './helpers.ts';

describe('fault injection', () => {
  let provider: FakeProvider;
  let refreshToken: string;
  let accessToken: string;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true });
    const tokens = await connect(provider);
    refreshToken = must(tokens.refresh_token, 'refresh_token');
    accessToken = must(tokens.access_token, 'access_token');
  });
  afterEach(() => {
    provider.faults.clear();
  });
  after(() => provider.close());

  it('latency delays the answer, which is otherwise normal', async () => {
    provider.faults.inject({ kind: 'latency', ms: 150 }, { times: 1 });
    const started = performance.now();
    const res = await refresh(provider, refreshToken);
    assert.ok(performance.now() - started >= 140);
    assert.equal(res.status, 200);
  });

  it('status answers 503 by default, or the given 5xx', async () => {
    provider.faults.inject({ kind: 'status' }, { times: 1 });
    provider.faults.inject({ kind: 'status', status: 500 }, { times: 1 });
    const first = await refresh(provider, refreshToken);
    assert.equal(first.status, 503);
    assert.equal((await tokenJson(first)).error, 'temporarily_unavailable');
    assert.equal((await refresh(provider, refreshToken)).status, 500);
    assert.equal((await refresh(provider, refreshToken)).status, 200);
  });

  it('rate-limit answers 429 with Retry-After', async () => {
    provider.faults.inject({ kind: 'rate-limit', retryAfterSeconds: 7 }, { times: 1 });
    const res = await refresh(provider, refreshToken);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '7');
  });

  it('reset destroys the connection without an answer', async () => {
    provider.faults.inject({ kind: 'reset' }, { times: 1 });
    await assert.rejects(refresh(provider, refreshToken), TypeError);
    assert.equal((await refresh(provider, refreshToken)).status, 200);
  });

  it('invalid-json answers 200 with a truncated JSON body', async () => {
    provider.faults.inject({ kind: 'invalid-json' }, { times: 1 });
    const res = await refresh(provider, refreshToken);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    await assert.rejects(res.json(), SyntaxError);
  });

  it('html answers 502 with an HTML page', async () => {
    provider.faults.inject({ kind: 'html' }, { times: 1 });
    const res = await refresh(provider, refreshToken);
    assert.equal(res.status, 502);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.match(await res.text(), /<html>/);
  });

  it('ok-error answers HTTP 200 with an OAuth error body', async () => {
    provider.faults.inject({ kind: 'ok-error' }, { times: 1 });
    provider.faults.inject(
      { kind: 'ok-error', error: 'invalid_grant', description: 'bad_refresh_token' },
      { times: 1 },
    );
    const first = await refresh(provider, refreshToken);
    assert.equal(first.status, 200);
    assert.equal((await tokenJson(first)).error, 'server_error');
    assert.deepEqual(await tokenJson(await refresh(provider, refreshToken)), {
      error: 'invalid_grant',
      error_description: 'bad_refresh_token',
    });
  });

  it('times limits a fault; without times it lasts until cleared; list() and clear(id)', async () => {
    const twice = provider.faults.inject({ kind: 'status' }, { times: 2 });
    assert.deepEqual(provider.faults.list(), [
      { id: twice, fault: { kind: 'status' }, endpoint: 'token', after: 'before', remaining: 2 },
    ]);
    assert.equal((await refresh(provider, refreshToken)).status, 503);
    assert.equal(provider.faults.list()[0]?.remaining, 1);
    assert.equal((await refresh(provider, refreshToken)).status, 503);
    assert.equal(provider.faults.list().length, 0);
    assert.equal((await refresh(provider, refreshToken)).status, 200);

    const forever = provider.faults.inject({ kind: 'status' });
    for (let i = 0; i < 3; i++) assert.equal((await refresh(provider, refreshToken)).status, 503);
    assert.equal(provider.faults.clear(forever), 1);
    assert.equal(provider.faults.clear(forever), 0);
    assert.equal((await refresh(provider, refreshToken)).status, 200);
  });

  it('applies to the chosen endpoint only, or to any', async () => {
    provider.faults.inject({ kind: 'status' }, { endpoint: 'resource', times: 1 });
    assert.equal((await refresh(provider, refreshToken)).status, 200);
    assert.equal((await callResource(provider.resourceUrl, accessToken)).status, 503);
    assert.equal((await callResource(provider.resourceUrl, accessToken)).status, 200);

    provider.faults.inject({ kind: 'html' }, { endpoint: 'authorize', times: 1 });
    assert.equal((await authorize(provider, authorizationParams().params)).status, 502);

    provider.faults.inject({ kind: 'status', status: 502 }, { endpoint: 'any', times: 2 });
    assert.equal((await callResource(provider.resourceUrl, accessToken)).status, 502);
    assert.equal((await refresh(provider, refreshToken)).status, 502);
    assert.equal((await refresh(provider, refreshToken)).status, 200);
  });

  it('rejects malformed faults with every problem listed', () => {
    assert.throws(
      () =>
        provider.faults.inject(
          { kind: 'status', status: 404 },
          { endpoint: 'nowhere' as 'any', times: 0 },
        ),
      (error: unknown) =>
        error instanceof TypeError &&
        /status must be an integer from 500/.test(error.message) &&
        /endpoint must be one of/.test(error.message) &&
        /times must be a positive integer/.test(error.message),
    );
    assert.throws(() => provider.faults.inject({ kind: 'explode' } as never), TypeError);
    assert.equal(provider.faults.list().length, 0);
  });

  it('counts every fault that fired', async () => {
    provider.resetCounters();
    provider.faults.inject({ kind: 'status' }, { times: 2 });
    await refresh(provider, refreshToken);
    await refresh(provider, refreshToken);
    await refresh(provider, refreshToken);
    const counters = provider.counters();
    assert.equal(counters.faultsInjected, 2);
    assert.equal(
      counters.tokenRequests.refresh_token,
      3,
      'faulted requests are still token requests',
    );
    assert.equal(counters.refreshes, 1);
  });
});

describe('after-processing faults', () => {
  it('strict: the refresh is processed (token consumed), the answer lost; retrying ends the grant', async () => {
    const provider = await startFakeProvider({ personality: 'strict', autoApprove: true });
    try {
      const tokens = await connect(provider);
      const refreshToken = must(tokens.refresh_token, 'refresh_token');
      provider.faults.inject(
        { kind: 'status', status: 502 },
        { after: 'after-processing', times: 1 },
      );
      const lost = await refresh(provider, refreshToken);
      assert.equal(lost.status, 502);
      assert.equal(provider.counters().refreshes, 1, 'the provider did the refresh');

      const retry = await refresh(provider, refreshToken);
      assert.equal((await tokenJson(retry)).error, 'invalid_grant');
      const counters = provider.counters();
      assert.equal(counters.reusedRefreshTokens, 1);
      assert.equal(counters.revokedGrants, 1);
      assert.equal(counters.faultsInjected, 1);
    } finally {
      await provider.close();
    }
  });

  it('reset after processing: the connection dies after the token was rotated', async () => {
    const provider = await startFakeProvider({
      personality: 'microsoft',
      autoApprove: true,
      refreshGraceSeconds: 0,
    });
    try {
      const tokens = await connect(provider, { scope: 'Mail.Read' });
      const refreshToken = must(tokens.refresh_token, 'refresh_token');
      provider.faults.inject({ kind: 'reset' }, { after: 'after-processing', times: 1 });
      await assert.rejects(refresh(provider, refreshToken, { scope: 'Mail.Read' }), TypeError);
      const retry = await refresh(provider, refreshToken, { scope: 'Mail.Read' });
      assert.equal((await tokenJson(retry)).error, 'invalid_grant');
    } finally {
      await provider.close();
    }
  });

  it('latency after processing delays a normal answer', async () => {
    const provider = await startFakeProvider({ autoApprove: true });
    try {
      const tokens = await connect(provider);
      provider.faults.inject(
        { kind: 'latency', ms: 100 },
        { after: 'after-processing', endpoint: 'resource', times: 1 },
      );
      const started = performance.now();
      assert.equal((await callResource(provider.resourceUrl, tokens.access_token)).status, 200);
      assert.ok(performance.now() - started >= 90);
    } finally {
      await provider.close();
    }
  });

  it('close() does not wait for a pending latency fault', async () => {
    const provider = await startFakeProvider({ autoApprove: true });
    const tokens = await connect(provider);
    provider.faults.inject({ kind: 'latency', ms: 60_000 }, { endpoint: 'resource' });
    const pending = callResource(provider.resourceUrl, tokens.access_token).catch(
      (error: unknown) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    const started = performance.now();
    await provider.close();
    assert.ok(performance.now() - started < 1000);
    assert.ok((await pending) instanceof TypeError);
  });
});
