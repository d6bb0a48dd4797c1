import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AuthorizedFetchOptions, createAuthorizedFetch } from '../src/authorized-fetch.ts';
import { TokenwardenError } from '../src/errors.ts';
import type { ProviderProfile } from '../src/profile.ts';
import { MemoryTokenStore } from '../src/store.ts';
import { TokenManager } from '../src/token-manager.ts';
import {
  type FakeResource,
  type FakeTokenEndpoint,
  fakeResource,
  fakeTokenEndpoint,
  jsonResponse,
  RESOURCE_URL,
  rotatingTokens,
  sleep,
  storedTokens,
  type TokenFields,
  testClient,
  testProfile,
  tokenCheckingResource,
} from './support/runtime-fakes.ts';

const T0 = Date.UTC(2031, 0, 1);
const CREDENTIAL = 'cred-B';

interface Setup {
  manager: TokenManager;
  endpoint: FakeTokenEndpoint;
  clock: { now: number };
  /** Everything that happened, in order, as the test chooses to record it. */
  log: string[];
}

async function setup(
  options: {
    tokens?: TokenFields;
    profile?: ProviderProfile;
    tokenPrefix?: string;
    endpointDelayMs?: number;
    onTokens?: () => Promise<void>;
  } = {},
): Promise<Setup> {
  const store = new MemoryTokenStore();
  const prefix = options.tokenPrefix ?? '';
  await store.compareAndSet(
    CREDENTIAL,
    null,
    storedTokens(
      options.tokens ?? { access_token: `${prefix}access-0`, refresh_token: `${prefix}refresh-0` },
      T0,
    ),
  );
  const log: string[] = [];
  const clock = { now: T0 };
  const endpoint = fakeTokenEndpoint(rotatingTokens({}, prefix), {
    onCall: () => {
      log.push('token endpoint');
    },
    ...(options.endpointDelayMs === undefined ? {} : { delayMs: options.endpointDelayMs }),
  });
  const manager = new TokenManager({
    store,
    authClient: testClient(options.profile ?? testProfile()),
    now: () => clock.now,
    refresh: { fetch: endpoint.fetch, retry: { sleep: async () => {} } },
    onTokens: async (event) => {
      log.push(`onTokens ${event.tokenSet.accessToken}`);
      await options.onTokens?.();
    },
  });
  return { manager, endpoint, clock, log };
}

function authorizedFetch(
  { manager }: Setup,
  resource: FakeResource,
  options: AuthorizedFetchOptions = {},
): typeof fetch {
  return createAuthorizedFetch(manager.source(CREDENTIAL), { fetch: resource.fetch, ...options });
}

function tokensSent(resource: FakeResource): (string | null)[] {
  return resource.requests.map((r) => r.headers.get('authorization'));
}

const utf8 = (text: string) => new TextEncoder().encode(text);

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const queue = chunks.map((c) => (typeof c === 'string' ? utf8(c) : c));
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const chunk = queue.shift();
      if (chunk === undefined) controller.close();
      else controller.enqueue(chunk);
    },
  });
}

describe('createAuthorizedFetch: the Authorization header', () => {
  it('sends Bearer <token>, replacing the caller’s Authorization and keeping other headers', async () => {
    const context = await setup({
      tokens: { access_token: 'access-0', refresh_token: 'refresh-0', token_type: 'bearer' },
    });
    const resource = tokenCheckingResource(new Set(['access-0']));
    const response = await authorizedFetch(context, resource)(RESOURCE_URL, {
      headers: { authorization: 'Basic dXNlcjpwYXNz', 'x-request-id': 'r-1' },
    });
    assert.equal(response.status, 200);
    assert.deepEqual(tokensSent(resource), ['Bearer access-0']);
    assert.equal(resource.requests[0]?.headers.get('x-request-id'), 'r-1');
    assert.equal(context.endpoint.calls.length, 0);
  });
});

describe('createAuthorizedFetch: strategies', () => {
  it('before-expiry (default) refreshes a token inside the margin before sending', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-0', 'access-1']));
    const send = authorizedFetch(context, resource);

    context.clock.now = T0 + (3600 - 1000) * 1000;
    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 0, 'not with 1000 s left');

    context.clock.now = T0 + (3600 - 200) * 1000;
    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 1, 'with 200 s left, the default margin being 300');
    assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
  });

  it('before-expiry honours marginSeconds', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-0', 'access-1']));
    const send = authorizedFetch(context, resource, { marginSeconds: 60 });
    context.clock.now = T0 + (3600 - 200) * 1000;
    await send(RESOURCE_URL);
    assert.equal(context.endpoint.calls.length, 0);
    context.clock.now = T0 + (3600 - 59) * 1000;
    await send(RESOURCE_URL);
    assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
  });

  it('every-access refreshes before every request', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-1', 'access-2', 'access-3']));
    const send = authorizedFetch(context, resource, { strategy: 'every-access' });
    for (let i = 0; i < 3; i++) assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 3);
    assert.deepEqual(tokensSent(resource), [
      'Bearer access-1',
      'Bearer access-2',
      'Bearer access-3',
    ]);
  });

  it('on-demand sends the stored token, even expired, and refreshes only after a 401', async () => {
    const context = await setup();
    context.clock.now = T0 + 7200 * 1000; // an hour past expiry
    const valid = new Set(['access-0']);
    const resource = tokenCheckingResource(valid);
    const send = authorizedFetch(context, resource, { strategy: 'on-demand' });

    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 0);

    valid.clear();
    valid.add('access-1');
    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 1);
    assert.deepEqual(tokensSent(resource), [
      'Bearer access-0',
      'Bearer access-0',
      'Bearer access-1',
    ]);
  });
});

describe('createAuthorizedFetch: recovering from an expired token', () => {
  for (const strategy of ['before-expiry', 'every-access', 'on-demand'] as const) {
    it(`${strategy}: a 401 gets one refresh, then the request once more, after onTokens completed`, async () => {
      const context = await setup({
        onTokens: async () => {
          await sleep(20);
          context.log.push('onTokens done');
        },
      });
      const valid = new Set<string>();
      const resource = tokenCheckingResource(valid, {
        onRequest: (token, status) => {
          context.log.push(`resource ${token} → ${status}`);
          // The token the strategy sends first is the one the resource calls expired.
          if (valid.size === 0) valid.add(token.replace(/\d+$/, (n) => String(Number(n) + 1)));
        },
      });
      const response = await authorizedFetch(context, resource, { strategy })(RESOURCE_URL, {
        method: 'POST',
        body: 'payload',
      });
      assert.equal(response.status, 200);
      const first = strategy === 'every-access' ? 1 : 0;
      assert.deepEqual(context.log.slice(-5), [
        `resource access-${first} → 401`,
        'token endpoint',
        `onTokens access-${first + 1}`,
        'onTokens done',
        `resource access-${first + 1} → 200`,
      ]);
      assert.equal(resource.requests.length, 2);
      assert.deepEqual(await response.json(), { ok: true, token: `access-${first + 1}` });
    });
  }

  it('fails with unauthorized_after_refresh on a second 401, never looping', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set());
    await assert.rejects(authorizedFetch(context, resource)(RESOURCE_URL), (error: unknown) => {
      assert.ok(error instanceof TokenwardenError);
      assert.equal(error.code, 'unauthorized_after_refresh');
      assert.equal(error.credentialId, CREDENTIAL);
      assert.ok(error.message.includes(CREDENTIAL));
      assert.ok(error.message.includes('HTTP 401'));
      return true;
    });
    assert.equal(resource.requests.length, 2);
    assert.equal(context.endpoint.calls.length, 1);
    assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
  });

  it('returns a 403 insufficient_scope as it is, without a refresh', async () => {
    const context = await setup();
    const resource = fakeResource(
      () =>
        new Response('needs admin', {
          status: 403,
          headers: {
            'www-authenticate': 'Bearer realm="api", error="insufficient_scope", scope="admin"',
          },
        }),
    );
    // Even where the profile counts 403 as expired.
    const response = await authorizedFetch(context, resource, { expiredStatuses: [401, 403] })(
      RESOURCE_URL,
    );
    assert.equal(response.status, 403);
    assert.equal(await response.text(), 'needs admin');
    assert.equal(resource.requests.length, 1);
    assert.equal(context.endpoint.calls.length, 0);
  });

  it('returns a 401 that says insufficient_scope as it is, too', async () => {
    const context = await setup();
    const resource = fakeResource(
      () =>
        new Response('', {
          status: 401,
          headers: { 'www-authenticate': 'Basic realm="x", Bearer error="insufficient_scope"' },
        }),
    );
    const response = await authorizedFetch(context, resource)(RESOURCE_URL);
    assert.equal(response.status, 401);
    assert.equal(resource.requests.length, 1);
    assert.equal(context.endpoint.calls.length, 0);
  });

  it('returns a 403 as it is when the expired statuses are the default [401]', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(), { rejectStatus: 403 });
    const response = await authorizedFetch(context, resource)(RESOURCE_URL);
    assert.equal(response.status, 403);
    assert.equal(resource.requests.length, 1);
    assert.equal(context.endpoint.calls.length, 0);
  });

  it('refreshes on a 403 without insufficient_scope when expiredStatuses is [401, 403]', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-1']), { rejectStatus: 403 });
    const response = await authorizedFetch(context, resource, { expiredStatuses: [401, 403] })(
      RESOURCE_URL,
    );
    assert.equal(response.status, 200);
    assert.equal(context.endpoint.calls.length, 1);
    assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
  });
});

describe('createAuthorizedFetch: request bodies on the retry', () => {
  const bodies: Record<
    string,
    { init: () => RequestInit; bytes: Uint8Array; contentType: string | null }
  > = {
    string: {
      init: () => ({ body: 'héllo wörld ✓' }),
      bytes: utf8('héllo wörld ✓'),
      contentType: 'text/plain;charset=UTF-8',
    },
    URLSearchParams: {
      init: () => ({ body: new URLSearchParams({ a: '1', b: 'x y&z' }) }),
      bytes: utf8('a=1&b=x+y%26z'),
      contentType: 'application/x-www-form-urlencoded;charset=UTF-8',
    },
    Uint8Array: {
      init: () => ({ body: new Uint8Array([0, 1, 2, 127, 128, 254, 255]) }),
      bytes: new Uint8Array([0, 1, 2, 127, 128, 254, 255]),
      contentType: null,
    },
    ArrayBuffer: {
      init: () => ({ body: new Uint8Array([9, 8, 7]).buffer }),
      bytes: new Uint8Array([9, 8, 7]),
      contentType: null,
    },
    Blob: {
      init: () => ({
        body: new Blob(['blob-part|', new Uint8Array([0, 200, 255])], { type: 'image/x-test' }),
      }),
      bytes: new Uint8Array([...utf8('blob-part|'), 0, 200, 255]),
      contentType: 'image/x-test',
    },
    JSON: {
      init: () => ({
        body: JSON.stringify({ subject: 'Ünïcode', to: ['a@example.com'] }),
        headers: { 'content-type': 'application/json' },
      }),
      bytes: utf8(JSON.stringify({ subject: 'Ünïcode', to: ['a@example.com'] })),
      contentType: 'application/json',
    },
    'ReadableStream under the limit': {
      init: () =>
        ({
          body: streamOf('chunk-1|', new Uint8Array([0, 255]), '|chunk-3'),
          duplex: 'half',
          headers: { 'content-type': 'application/octet-stream' },
        }) as RequestInit,
      bytes: new Uint8Array([...utf8('chunk-1|'), 0, 255, ...utf8('|chunk-3')]),
      contentType: 'application/octet-stream',
    },
    'ReadableStream of exactly the limit': {
      init: () =>
        ({ body: streamOf('x'.repeat(32), 'y'.repeat(32)), duplex: 'half' }) as RequestInit,
      bytes: utf8('x'.repeat(32) + 'y'.repeat(32)),
      contentType: null,
    },
  };

  for (const [kind, { init, bytes, contentType }] of Object.entries(bodies)) {
    it(`replays a ${kind} body byte for byte`, async () => {
      const context = await setup();
      const resource = tokenCheckingResource(new Set(['access-1']));
      const response = await authorizedFetch(context, resource, { maxReplayBodyBytes: 64 })(
        RESOURCE_URL,
        { method: 'POST', ...init() },
      );
      assert.equal(response.status, 200);
      assert.equal(resource.requests.length, 2);
      for (const request of resource.requests) {
        assert.equal(request.method, 'POST');
        assert.deepEqual(request.body, bytes);
        assert.equal(request.headers.get('content-type'), contentType);
      }
      assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
    });
  }

  it('sends a stream over maxReplayBodyBytes once, in full, when no retry is needed', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-0']));
    const chunks = Array.from({ length: 4 }, (_, i) => `${i}`.repeat(10));
    const response = await authorizedFetch(context, resource, { maxReplayBodyBytes: 16 })(
      RESOURCE_URL,
      { method: 'PUT', body: streamOf(...chunks), duplex: 'half' } as RequestInit,
    );
    assert.equal(response.status, 200);
    assert.deepEqual(resource.requests[0]?.body, utf8(chunks.join('')));
  });

  it('fails with body_not_replayable after a 401 for a stream over the limit, sending nothing more', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-1']));
    const chunks = Array.from({ length: 4 }, (_, i) => `${i}`.repeat(10));
    await assert.rejects(
      authorizedFetch(context, resource, { maxReplayBodyBytes: 16 })(RESOURCE_URL, {
        method: 'PUT',
        body: streamOf(...chunks),
        duplex: 'half',
      } as RequestInit),
      (error: unknown) => {
        assert.ok(error instanceof TokenwardenError);
        assert.equal(error.code, 'body_not_replayable');
        assert.equal(error.credentialId, CREDENTIAL);
        assert.ok(error.message.includes(CREDENTIAL));
        assert.match(error.message, /maxReplayBodyBytes \(16\)/);
        return true;
      },
    );
    assert.equal(resource.requests.length, 1, 'no second request');
    assert.deepEqual(resource.requests[0]?.body, utf8(chunks.join('')), 'the one send was whole');
  });
});

describe('createAuthorizedFetch: inputs and error messages', () => {
  it('keeps a Request object’s method, URL, headers and body, on both sends', async () => {
    const context = await setup();
    const resource = tokenCheckingResource(new Set(['access-1']));
    const input = new Request(`${RESOURCE_URL}?page=2`, {
      method: 'PATCH',
      headers: {
        'content-type': 'application/json',
        'x-trace': 't-1',
        authorization: 'Basic Zm9vOmJhcg==',
      },
      body: '{"name":"x"}',
    });
    const response = await authorizedFetch(context, resource)(input);
    assert.equal(response.status, 200);
    assert.equal(resource.requests.length, 2);
    for (const request of resource.requests) {
      assert.equal(request.method, 'PATCH');
      assert.equal(request.url, `${RESOURCE_URL}?page=2`);
      assert.equal(request.headers.get('content-type'), 'application/json');
      assert.equal(request.headers.get('x-trace'), 't-1');
      assert.deepEqual(request.body, utf8('{"name":"x"}'));
    }
    assert.deepEqual(tokensSent(resource), ['Bearer access-0', 'Bearer access-1']);
  });

  it('keeps query strings and tokens out of error messages', async () => {
    const context = await setup({ tokenPrefix: 'TOKEN-MARKER-' });
    const url = `${RESOURCE_URL}?api_key=QUERY-SECRET-5e1&sig=QUERY-SECRET-2`;
    const failures = [
      authorizedFetch(context, tokenCheckingResource(new Set()))(url),
      authorizedFetch(context, tokenCheckingResource(new Set()), { maxReplayBodyBytes: 4 })(url, {
        method: 'POST',
        body: streamOf('0123456789'),
        duplex: 'half',
      } as RequestInit),
    ];
    const codes: string[] = [];
    for (const failure of failures) {
      const error = await failure.then(
        () => assert.fail('expected an error'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TokenwardenError);
      codes.push(error.code);
      assert.ok(error.message.includes('http://127.0.0.1:1/api/things'), error.message);
      assert.ok(!error.message.includes('QUERY-SECRET'), error.message);
      assert.ok(!error.message.includes('?'), error.message);
      assert.ok(!error.message.includes('TOKEN-MARKER'), error.message);
    }
    assert.deepEqual(codes, ['unauthorized_after_refresh', 'body_not_replayable']);
  });
});

describe('TokenManager.authorizedFetch', () => {
  it('gives 50 concurrent requests that all get 401 one refresh and 50 successes', async () => {
    const context = await setup({ endpointDelayMs: 10 });
    const resource = tokenCheckingResource(new Set(['access-1']), { delayMs: 5 });
    const send = context.manager.authorizedFetch(CREDENTIAL, { fetch: resource.fetch });
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => send(`${RESOURCE_URL}/${i}`)),
    );
    assert.equal(context.endpoint.calls.length, 1);
    assert.deepEqual(
      responses.map((r) => r.status),
      Array(50).fill(200),
    );
    const bodies = (await Promise.all(responses.map((r) => r.json()))) as { token: string }[];
    assert.ok(bodies.every((b) => b.token === 'access-1'));
    const rejected = resource.requests.filter(
      (r) => r.headers.get('authorization') === 'Bearer access-0',
    );
    assert.equal(rejected.length, 50, 'every request first went out with the old token');
    assert.equal(resource.requests.length, 100);
  });

  it('takes the margin and the expired statuses from the profile', async () => {
    const context = await setup({
      profile: testProfile({ expiryMarginSeconds: 100, expiredStatuses: [401, 403] }),
    });
    const valid = new Set(['access-0', 'access-1']);
    const resource = tokenCheckingResource(valid, { rejectStatus: 403 });
    const send = context.manager.authorizedFetch(CREDENTIAL, { fetch: resource.fetch });

    context.clock.now = T0 + (3600 - 150) * 1000;
    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 0, '150 s left is outside a 100 s margin');

    context.clock.now = T0 + (3600 - 90) * 1000;
    assert.equal((await send(RESOURCE_URL)).status, 200);
    assert.equal(context.endpoint.calls.length, 1, '90 s left is inside it');

    valid.delete('access-1');
    valid.add('access-2');
    assert.equal((await send(RESOURCE_URL)).status, 200, 'a 403 counts as expired');
    assert.equal(context.endpoint.calls.length, 2);
    assert.deepEqual(tokensSent(resource), [
      'Bearer access-0',
      'Bearer access-1',
      'Bearer access-1',
      'Bearer access-2',
    ]);
  });

  it('lets explicit options override the profile', async () => {
    const context = await setup({
      profile: testProfile({ expiryMarginSeconds: 100, expiredStatuses: [401, 403] }),
    });
    const resource = tokenCheckingResource(new Set(), { rejectStatus: 403 });
    const send = context.manager.authorizedFetch(CREDENTIAL, {
      fetch: resource.fetch,
      expiredStatuses: [401],
      marginSeconds: 1000,
    });
    context.clock.now = T0 + (3600 - 900) * 1000;
    const response = await send(RESOURCE_URL);
    assert.equal(response.status, 403, 'returned as it is');
    assert.equal(context.endpoint.calls.length, 1, 'refreshed first: 900 s left, margin 1000');
    assert.equal(resource.requests.length, 1);
  });

  it('answers a request for an unknown credential with credential_not_found', async () => {
    const context = await setup();
    const resource = fakeResource(() => jsonResponse({}));
    const send = context.manager.authorizedFetch('cred-missing', { fetch: resource.fetch });
    await assert.rejects(send(RESOURCE_URL), (error: unknown) => {
      assert.ok(error instanceof TokenwardenError);
      assert.equal(error.code, 'credential_not_found');
      return true;
    });
    assert.equal(resource.requests.length, 0);
  });
});
