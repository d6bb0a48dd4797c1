import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type AuthClient,
  createAuthClient,
  type ProviderProfileInput,
  parseProviderProfile,
  processRevocationResponse,
  revocationRequest,
  TokenEndpointError,
  TokenwardenError,
} from '../src/index.ts';

const REVOKE_URL = 'http://127.0.0.1:1/oauth/revoke';
const CLIENT_SECRET = 'client-secret-marker-a1b2';

function makeClient(overrides: Partial<ProviderProfileInput> = {}): AuthClient {
  const profile = parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      rotation: 'none',
      authorizationUrl: 'http://127.0.0.1:1/oauth/authorize',
      tokenUrl: 'http://127.0.0.1:1/oauth/token',
      revocationUrl: REVOKE_URL,
      ...overrides,
    },
    'test',
  );
  return createAuthClient({ profile, clientId: 'client-1', clientSecret: CLIENT_SECRET });
}

interface Captured {
  url: string;
  method: string;
  headers: Headers;
  form: URLSearchParams;
}

function fakeFetch(reply: () => Response) {
  const requests: Captured[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    requests.push({
      url: String(input),
      method: init?.method ?? 'GET',
      headers: new Headers(init?.headers),
      form: new URLSearchParams(String(init?.body ?? '')),
    });
    return reply();
  };
  return { fetch, requests };
}

async function rejection(promise: Promise<unknown>): Promise<TokenEndpointError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TokenEndpointError, `expected a TokenEndpointError, got ${error}`);
    return error;
  }
  assert.fail('expected the promise to reject');
}

describe('revocationRequest (RFC 7009 §2.1)', () => {
  it('POSTs the token and token_type_hint with client_secret_post authentication', async () => {
    const { fetch, requests } = fakeFetch(() => new Response(null, { status: 200 }));
    const response = await revocationRequest(makeClient(), 'refresh-1', 'refresh_token', { fetch });
    assert.equal(response.status, 200);
    const request = requests[0];
    assert.ok(request !== undefined);
    assert.equal(request.url, REVOKE_URL);
    assert.equal(request.method, 'POST');
    assert.match(request.headers.get('content-type') ?? '', /^application\/x-www-form-urlencoded/);
    assert.equal(request.form.get('token'), 'refresh-1');
    assert.equal(request.form.get('token_type_hint'), 'refresh_token');
    assert.equal(request.form.get('client_id'), 'client-1');
    assert.equal(request.form.get('client_secret'), CLIENT_SECRET);
  });

  it('hints access_token when revoking an access token', async () => {
    const { fetch, requests } = fakeFetch(() => new Response(null, { status: 200 }));
    await revocationRequest(makeClient(), 'access-1', 'access_token', { fetch });
    assert.equal(requests[0]?.form.get('token'), 'access-1');
    assert.equal(requests[0]?.form.get('token_type_hint'), 'access_token');
  });

  it('authenticates with client_secret_basic when the profile says so', async () => {
    const { fetch, requests } = fakeFetch(() => new Response(null, { status: 200 }));
    const client = makeClient({ clientAuthentication: 'client_secret_basic' });
    await revocationRequest(client, 'refresh-1', 'refresh_token', { fetch });
    const header = requests[0]?.headers.get('authorization') ?? '';
    assert.match(header, /^Basic /);
    const [id = '', secret = ''] = Buffer.from(header.slice('Basic '.length), 'base64')
      .toString()
      .split(':')
      .map((half) => decodeURIComponent(half.replace(/\+/g, ' ')));
    assert.deepEqual([id, secret], ['client-1', CLIENT_SECRET]);
    assert.equal(requests[0]?.form.has('client_secret'), false);
  });

  it('without a revocation URL → invalid_configuration, and nothing is sent', async () => {
    const { fetch, requests } = fakeFetch(() => new Response(null, { status: 200 }));
    const client = makeClient({ revocationUrl: undefined });
    assert.equal(client.revocationUrl, undefined);
    await assert.rejects(
      () => revocationRequest(client, 'refresh-1', 'refresh_token', { fetch }),
      (error: unknown) => {
        assert.ok(error instanceof TokenwardenError);
        assert.equal(error.code, 'invalid_configuration');
        assert.match(error.message, /revocation endpoint/);
        return true;
      },
    );
    assert.equal(requests.length, 0);
  });

  it('a network error → token_endpoint_unavailable naming the revocation endpoint', async () => {
    const { fetch } = fakeFetch(() => {
      throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
    });
    const error = await rejection(
      revocationRequest(makeClient(), 'refresh-1', 'refresh_token', { fetch }),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.match(error.message, /revocation endpoint failed \(ECONNREFUSED\)/);
    assert.ok(!error.message.includes('refresh-1'));
  });
});

describe('processRevocationResponse (RFC 7009 §2.2)', () => {
  it('200 is success, with or without a body', async () => {
    assert.equal(await processRevocationResponse(new Response(null, { status: 200 })), undefined);
    assert.equal(await processRevocationResponse(Response.json({})), undefined);
  });

  it('503 → token_endpoint_unavailable with Retry-After', async () => {
    const error = await rejection(
      processRevocationResponse(
        new Response('down', { status: 503, headers: { 'retry-after': '30' } }),
      ),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.status, 503);
    assert.equal(error.retryAfterSeconds, 30);
    assert.equal(error.transient, true);
  });

  it('429 → token_endpoint_unavailable', async () => {
    const error = await rejection(
      processRevocationResponse(Response.json({ error: 'slow_down' }, { status: 429 })),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.oauthError, 'slow_down');
  });

  it('400 invalid_client → client_misconfigured', async () => {
    const error = await rejection(
      processRevocationResponse(Response.json({ error: 'invalid_client' }, { status: 400 })),
    );
    assert.equal(error.code, 'client_misconfigured');
    assert.equal(error.oauthError, 'invalid_client');
    assert.equal(error.status, 400);
    assert.match(error.message, /HTTP 400 \(invalid_client\)/);
  });

  it('400 unsupported_token_type → token_request_rejected', async () => {
    const error = await rejection(
      processRevocationResponse(
        Response.json({ error: 'unsupported_token_type' }, { status: 400 }),
      ),
    );
    assert.equal(error.code, 'token_request_rejected');
    assert.equal(error.oauthError, 'unsupported_token_type');
  });

  it('a non-JSON error body is classified by status alone, and not echoed', async () => {
    const error = await rejection(
      processRevocationResponse(new Response('<html>token refresh-1</html>', { status: 400 })),
    );
    assert.equal(error.code, 'token_request_rejected');
    assert.equal(error.oauthError, undefined);
    assert.ok(!error.message.includes('refresh-1'));
    assert.ok(!JSON.stringify(error).includes('refresh-1'));
  });
});
