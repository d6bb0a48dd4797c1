import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AuthClient,
  type AuthClientConfig,
  createAuthClient,
  type ProviderProfileInput,
  parseProviderProfile,
  processRefreshResponse,
  refreshGrantRequest,
  refreshTokenSet,
  TokenEndpointError,
  TokenSet,
  TokenwardenError,
} from '../src/index.ts';

const TOKEN_URL = 'http://127.0.0.1:1/oauth/token';
const CLIENT_SECRET = 'client-secret-marker-77aa';

function makeClient(
  overrides: Partial<ProviderProfileInput> = {},
  config: Partial<Omit<AuthClientConfig, 'profile'>> = {},
): AuthClient {
  const profile = parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      rotation: 'rotating',
      authorizationUrl: 'http://127.0.0.1:1/oauth/authorize',
      tokenUrl: TOKEN_URL,
      ...overrides,
    },
    'test',
  );
  return createAuthClient({
    profile,
    clientId: 'client-1',
    clientSecret: CLIENT_SECRET,
    ...config,
  });
}

interface Captured {
  url: string;
  method: string;
  headers: Headers;
  form: URLSearchParams;
  signal: AbortSignal | undefined;
}

type Reply = Response | ((request: Captured) => Response | Promise<Response>);

/** A fetch that records every request and answers from a script; it never touches the network. */
function fakeFetch(...replies: Reply[]) {
  const requests: Captured[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    const request: Captured = {
      url: String(input),
      method: init?.method ?? 'GET',
      headers: new Headers(init?.headers),
      form: new URLSearchParams(String(init?.body ?? '')),
      signal: init?.signal ?? undefined,
    };
    requests.push(request);
    const reply = replies[requests.length - 1];
    if (reply === undefined) throw new Error(`unexpected request #${requests.length}`);
    return typeof reply === 'function' ? reply(request) : reply;
  };
  return { fetch, requests };
}

const tokenJson = (body: Record<string, unknown>) => Response.json(body);
const noWait = { sleep: async () => {}, random: () => 0 };

/** Decodes `Authorization: Basic` into its form-urlencoded user and password (RFC 6749 §2.3.1). */
function basicCredentials(header: string | null): [string, string] {
  if (header === null) assert.fail('no Authorization header');
  assert.ok(header.startsWith('Basic '), `not a Basic header: ${header}`);
  const decoded = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  assert.ok(colon > 0, 'no colon in the Basic credentials');
  const formDecode = (value: string) => decodeURIComponent(value.replace(/\+/g, ' '));
  // both halves are form-urlencoded, so neither may hold a raw colon
  assert.ok(!decoded.slice(0, colon).includes(':') && !decoded.slice(colon + 1).includes(':'));
  return [formDecode(decoded.slice(0, colon)), formDecode(decoded.slice(colon + 1))];
}

describe('refreshGrantRequest (RFC 6749 §6)', () => {
  it('POSTs grant_type=refresh_token and the refresh token, form-encoded, to the token URL', async () => {
    const { fetch, requests } = fakeFetch(tokenJson({ access_token: 'a', token_type: 'bearer' }));
    const response = await refreshGrantRequest(makeClient(), 'refresh-1', { fetch });
    assert.equal(response.status, 200);
    assert.equal(requests.length, 1);
    const [request] = requests;
    assert.ok(request !== undefined);
    assert.equal(request.url, TOKEN_URL);
    assert.equal(request.method, 'POST');
    assert.match(request.headers.get('content-type') ?? '', /^application\/x-www-form-urlencoded/);
    assert.equal(request.headers.get('accept'), 'application/json');
    assert.equal(request.form.get('grant_type'), 'refresh_token');
    assert.equal(request.form.get('refresh_token'), 'refresh-1');
    assert.ok(request.signal instanceof AbortSignal, 'every request has a timeout signal');
  });

  it('client_secret_post: id and secret in the body, no Authorization header', async () => {
    const { fetch, requests } = fakeFetch(tokenJson({ access_token: 'a', token_type: 'bearer' }));
    await refreshGrantRequest(makeClient({ clientAuthentication: 'client_secret_post' }), 'r', {
      fetch,
    });
    const form = requests[0]?.form;
    assert.equal(form?.get('client_id'), 'client-1');
    assert.equal(form?.get('client_secret'), CLIENT_SECRET);
    assert.equal(requests[0]?.headers.get('authorization'), null);
  });

  it('client_secret_basic: form-urlencoded id and secret in the Authorization header (§2.3.1)', async () => {
    const clientId = 'client id:with/odd+chars';
    const clientSecret = 'p@ss w:rd/+=&%é-_.~';
    const { fetch, requests } = fakeFetch(tokenJson({ access_token: 'a', token_type: 'bearer' }));
    const client = makeClient(
      { clientAuthentication: 'client_secret_basic' },
      { clientId, clientSecret },
    );
    await refreshGrantRequest(client, 'r', { fetch });
    const request = requests[0];
    assert.ok(request !== undefined);
    assert.deepEqual(basicCredentials(request.headers.get('authorization')), [
      clientId,
      clientSecret,
    ]);
    assert.equal(request.form.get('client_secret'), null);
    assert.ok(!request.form.toString().includes(encodeURIComponent(clientSecret)));
  });

  it('adds the profile refresh parameters (Salesforce format=json)', async () => {
    const { fetch, requests } = fakeFetch(tokenJson({ access_token: 'a', token_type: 'bearer' }));
    await refreshGrantRequest(makeClient({ parameters: { refresh: { format: 'json' } } }), 'r', {
      fetch,
    });
    assert.equal(requests[0]?.form.get('format'), 'json');
    assert.equal(requests[0]?.form.get('grant_type'), 'refresh_token');
  });

  it('sends the scopes, joined with the profile separator, when sendScopeOnRefresh (Microsoft)', async () => {
    const { fetch, requests } = fakeFetch(
      tokenJson({ access_token: 'a', token_type: 'bearer' }),
      tokenJson({ access_token: 'a', token_type: 'bearer' }),
    );
    const microsoft = makeClient(
      { sendScopeOnRefresh: true },
      { scopes: ['offline_access', 'https://graph.microsoft.com/Mail.Read'] },
    );
    await refreshGrantRequest(microsoft, 'r', { fetch });
    assert.equal(
      requests[0]?.form.get('scope'),
      'offline_access https://graph.microsoft.com/Mail.Read',
    );
    const commaSeparated = makeClient(
      { sendScopeOnRefresh: true, scopes: { separator: ',' } },
      { scopes: ['a', 'b'] },
    );
    await refreshGrantRequest(commaSeparated, 'r', { fetch });
    assert.equal(requests[1]?.form.get('scope'), 'a,b');
  });

  it('sends no scope by default, nor when there are no scopes', async () => {
    const { fetch, requests } = fakeFetch(
      tokenJson({ access_token: 'a', token_type: 'bearer' }),
      tokenJson({ access_token: 'a', token_type: 'bearer' }),
    );
    await refreshGrantRequest(makeClient({}, { scopes: ['a'] }), 'r', { fetch });
    await refreshGrantRequest(makeClient({ sendScopeOnRefresh: true }, { scopes: [] }), 'r', {
      fetch,
    });
    assert.equal(requests[0]?.form.has('scope'), false);
    assert.equal(requests[1]?.form.has('scope'), false);
  });

  it('a network error → token_endpoint_unavailable naming the cause code, not the token', async () => {
    const failure = new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    const { fetch } = fakeFetch(() => {
      throw failure;
    });
    await assert.rejects(
      refreshGrantRequest(makeClient(), 'refresh-secret-1', { fetch }),
      (error) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'token_endpoint_unavailable');
        assert.match(error.message, /token endpoint failed \(ECONNRESET\)/);
        assert.equal(error.cause, failure);
        assert.ok(!error.message.includes('refresh-secret-1'));
        assert.ok(!error.message.includes(CLIENT_SECRET));
        return true;
      },
    );
  });
});

describe('processRefreshResponse', () => {
  it('validates the Response of a refresh grant', async () => {
    const tokens = await processRefreshResponse(
      makeClient(),
      tokenJson({ access_token: 'a2', token_type: 'Bearer', expires_in: 60 }),
    );
    assert.deepEqual(tokens, { access_token: 'a2', token_type: 'Bearer', expires_in: 60 });
  });
});

describe('refreshTokenSet', () => {
  const receivedAt = 1_700_000_000_000;
  const now = () => receivedAt + 3_000_000;
  const current = TokenSet.fromResponse(
    {
      access_token: 'access-1',
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: 'refresh-1',
      instance_url: 'https://acme.my.salesforce.com',
    },
    receivedAt,
  );

  it('sends the current refresh token and merges the answer, keeping the refresh token', async () => {
    const { fetch, requests } = fakeFetch(
      tokenJson({ access_token: 'access-2', token_type: 'Bearer', expires_in: 3600 }),
    );
    const next = await refreshTokenSet(makeClient(), current, { fetch, now });
    assert.equal(requests[0]?.form.get('refresh_token'), 'refresh-1');
    assert.equal(next.accessToken, 'access-2');
    assert.equal(next.refreshToken, 'refresh-1');
    assert.equal(next.get('instance_url'), 'https://acme.my.salesforce.com');
    assert.equal(next.expiresAtMs, now() + 3_600_000);
    assert.equal(current.accessToken, 'access-1', 'the old set is unchanged');
  });

  it('takes a rotated refresh token', async () => {
    const { fetch } = fakeFetch(
      tokenJson({ access_token: 'access-2', token_type: 'Bearer', refresh_token: 'refresh-2' }),
    );
    const next = await refreshTokenSet(makeClient(), current, { fetch, now });
    assert.equal(next.refreshToken, 'refresh-2');
  });

  it('recomputes the expiry from the profile default when the answer has no expires_in (Salesforce)', async () => {
    const { fetch } = fakeFetch(tokenJson({ access_token: 'access-2', token_type: 'Bearer' }));
    const next = await refreshTokenSet(
      makeClient({ defaultAccessTokenLifetimeSeconds: 7200 }),
      current,
      { fetch, now },
    );
    assert.equal(next.expiresAtMs, now() + 7_200_000);
    assert.equal(next.toStored().tokens.expires_in, undefined);
  });

  it('retries a 503, then succeeds', async () => {
    const { fetch, requests } = fakeFetch(
      new Response('maintenance', { status: 503 }),
      tokenJson({ access_token: 'access-2', token_type: 'Bearer' }),
    );
    const retries: number[] = [];
    const next = await refreshTokenSet(makeClient(), current, {
      fetch,
      now,
      retry: { ...noWait, onRetry: ({ attempt }) => retries.push(attempt) },
    });
    assert.equal(next.accessToken, 'access-2');
    assert.equal(requests.length, 2);
    assert.equal(requests[1]?.form.get('refresh_token'), 'refresh-1');
    assert.deepEqual(retries, [1]);
  });

  it('does not retry invalid_grant: one request, reauth_required', async () => {
    const { fetch, requests } = fakeFetch(
      Response.json({ error: 'invalid_grant', error_description: 'revoked' }, { status: 400 }),
      tokenJson({ access_token: 'never', token_type: 'Bearer' }),
    );
    await assert.rejects(
      refreshTokenSet(makeClient(), current, { fetch, retry: noWait }),
      (error) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'reauth_required');
        assert.equal(error.errorDescription, 'revoked');
        return true;
      },
    );
    assert.equal(requests.length, 1);
  });

  it('throws reauth_required without a request when there is no refresh token', async () => {
    const { fetch, requests } = fakeFetch();
    const noRefresh = TokenSet.fromResponse(
      { access_token: 'a', token_type: 'Bearer' },
      receivedAt,
    );
    await assert.rejects(refreshTokenSet(makeClient(), noRefresh, { fetch }), (error) => {
      assert.ok(error instanceof TokenwardenError);
      assert.equal(error.code, 'reauth_required');
      return true;
    });
    assert.equal(requests.length, 0);
  });

  it('a timeout → token_endpoint_unavailable', async () => {
    const { fetch, requests } = fakeFetch(
      (request) =>
        new Promise<Response>((_, reject) => {
          const signal = request.signal;
          assert.ok(signal !== undefined);
          signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
    );
    const started = performance.now();
    await assert.rejects(
      refreshTokenSet(makeClient(), current, { fetch, timeoutMs: 20, retry: { maxAttempts: 1 } }),
      (error) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'token_endpoint_unavailable');
        assert.match(error.message, /timed out/);
        return true;
      },
    );
    assert.equal(requests.length, 1);
    assert.ok(performance.now() - started < 5000, 'the timeout fired');
  });

  it('a timeout is retried like any outage', async () => {
    const hang = (request: Captured) =>
      new Promise<Response>((_, reject) => {
        request.signal?.addEventListener('abort', () => reject(request.signal?.reason), {
          once: true,
        });
      });
    const { fetch, requests } = fakeFetch(
      hang,
      tokenJson({ access_token: 'access-2', token_type: 'Bearer' }),
    );
    const next = await refreshTokenSet(makeClient(), current, {
      fetch,
      timeoutMs: 20,
      retry: noWait,
    });
    assert.equal(next.accessToken, 'access-2');
    assert.equal(requests.length, 2);
  });

  it('a network error → token_endpoint_unavailable, retried up to maxAttempts', async () => {
    const failure = () => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    };
    const { fetch, requests } = fakeFetch(failure, failure, failure);
    await assert.rejects(
      refreshTokenSet(makeClient(), current, { fetch, retry: { ...noWait, maxAttempts: 3 } }),
      (error) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'token_endpoint_unavailable');
        assert.match(error.message, /ECONNRESET/);
        assert.ok(!error.message.includes('refresh-1'));
        return true;
      },
    );
    assert.equal(requests.length, 3);
  });

  it('single-use refresh tokens: a failure whose outcome is unknown is not retried', async () => {
    const reset = () => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    };
    const { fetch, requests } = fakeFetch(
      reset,
      tokenJson({ access_token: 'never', token_type: 'Bearer' }),
    );
    await assert.rejects(
      refreshTokenSet(makeClient({ rotation: 'single-use' }), current, { fetch, retry: noWait }),
      (error) =>
        error instanceof TokenEndpointError &&
        error.inDoubt &&
        error.code === 'token_endpoint_unavailable',
    );
    assert.equal(requests.length, 1, 'the possibly spent refresh token was not presented again');
  });

  it('single-use refresh tokens: a refused connection (never sent) is retried', async () => {
    const refused = () => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
    };
    const { fetch, requests } = fakeFetch(
      refused,
      tokenJson({ access_token: 'access-2', token_type: 'Bearer' }),
    );
    const next = await refreshTokenSet(makeClient({ rotation: 'single-use' }), current, {
      fetch,
      retry: noWait,
    });
    assert.equal(next.accessToken, 'access-2');
    assert.equal(requests.length, 2);
  });

  it('an invalid_grant after an unanswered attempt says the token may have been spent then', async () => {
    const reset = () => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNRESET' } });
    };
    const { fetch } = fakeFetch(reset, Response.json({ error: 'invalid_grant' }, { status: 400 }));
    await assert.rejects(
      refreshTokenSet(makeClient(), current, { fetch, retry: noWait }),
      (error) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'reauth_required');
        assert.match(error.message, /may have spent the refresh token/);
        return true;
      },
    );
  });

  it('a misconfigured client is not retried', async () => {
    const { fetch, requests } = fakeFetch(
      Response.json({ error: 'invalid_client' }, { status: 401 }),
      tokenJson({ access_token: 'never', token_type: 'Bearer' }),
    );
    await assert.rejects(
      refreshTokenSet(makeClient(), current, { fetch, retry: noWait }),
      (error) => error instanceof TokenEndpointError && error.code === 'client_misconfigured',
    );
    assert.equal(requests.length, 1);
  });
});
