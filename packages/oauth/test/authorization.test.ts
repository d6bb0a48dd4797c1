import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  type AuthClient,
  type AuthClientConfig,
  codeExchangeRequest,
  createAuthClient,
  createAuthorizationRequest,
  type ProviderProfileInput,
  parseProviderProfile,
  processCodeExchangeResponse,
  TokenEndpointError,
  TokenwardenError,
  validateAuthorizationResponse,
} from '../src/index.ts';

const AUTHORIZE_URL = 'http://127.0.0.1:1/oauth/authorize';
const TOKEN_URL = 'http://127.0.0.1:1/oauth/token';
const REDIRECT_URI = 'http://127.0.0.1:8080/oauth/callback';
const CLIENT_SECRET = 'client-secret-marker-5e2d';

function makeClient(
  overrides: Partial<ProviderProfileInput> = {},
  config: Partial<Omit<AuthClientConfig, 'profile'>> = {},
): AuthClient {
  const profile = parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      rotation: 'none',
      authorizationUrl: AUTHORIZE_URL,
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
}

/** A fetch that records each request and answers with the given Responses in turn. */
function fakeFetch(...replies: Response[]) {
  const requests: Captured[] = [];
  const fetch: typeof globalThis.fetch = async (input, init) => {
    requests.push({
      url: String(input),
      method: init?.method ?? 'GET',
      headers: new Headers(init?.headers),
      form: new URLSearchParams(String(init?.body ?? '')),
    });
    const reply = replies[requests.length - 1];
    if (reply === undefined) throw new Error(`unexpected request #${requests.length}`);
    return reply;
  };
  return { fetch, requests };
}

const base64url = /^[A-Za-z0-9_-]+$/;

describe('createAuthorizationRequest (RFC 6749 §4.1.1, RFC 7636)', () => {
  it('builds the URL with response_type, client_id, redirect_uri and a fresh state', async () => {
    const client = makeClient();
    const pending = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    const { url } = pending;
    assert.equal(`${url.origin}${url.pathname}`, AUTHORIZE_URL);
    assert.equal(url.searchParams.get('response_type'), 'code');
    assert.equal(url.searchParams.get('client_id'), 'client-1');
    assert.equal(url.searchParams.get('redirect_uri'), REDIRECT_URI);
    assert.equal(url.searchParams.get('state'), pending.state);
    assert.match(pending.state, base64url);
    assert.ok(pending.state.length >= 22, 'state carries at least 128 bits');
    assert.equal(pending.redirectUri, REDIRECT_URI);
    assert.ok(!url.href.includes(CLIENT_SECRET));
  });

  it('sends a PKCE S256 challenge equal to base64url(sha256(verifier)), never the verifier', async () => {
    const pending = await createAuthorizationRequest(makeClient(), { redirectUri: REDIRECT_URI });
    const expected = createHash('sha256').update(pending.codeVerifier).digest('base64url');
    assert.equal(pending.url.searchParams.get('code_challenge'), expected);
    assert.equal(pending.url.searchParams.get('code_challenge_method'), 'S256');
    assert.match(pending.codeVerifier, base64url);
    assert.ok(pending.codeVerifier.length >= 43 && pending.codeVerifier.length <= 128);
    assert.ok(!pending.url.href.includes(pending.codeVerifier));
  });

  it('uses a new state and verifier every time', async () => {
    const client = makeClient();
    const a = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    const b = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    assert.notEqual(a.state, b.state);
    assert.notEqual(a.codeVerifier, b.codeVerifier);
  });

  it('adds the profile authorization parameters (Google access_type / prompt)', async () => {
    const client = makeClient({
      parameters: { authorization: { access_type: 'offline', prompt: 'consent' } },
    });
    const { url } = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    assert.equal(url.searchParams.get('access_type'), 'offline');
    assert.equal(url.searchParams.get('prompt'), 'consent');
  });

  it('joins the scopes with the profile separator', async () => {
    const spaced = makeClient({}, { scopes: ['openid', 'email', 'offline_access'] });
    const a = await createAuthorizationRequest(spaced, { redirectUri: REDIRECT_URI });
    assert.equal(a.url.searchParams.get('scope'), 'openid email offline_access');
    const commas = makeClient({ scopes: { separator: ',' } }, { scopes: ['read', 'write'] });
    const b = await createAuthorizationRequest(commas, { redirectUri: REDIRECT_URI });
    assert.equal(b.url.searchParams.get('scope'), 'read,write');
  });

  it('falls back to the profile default scopes; the flow may replace them', async () => {
    const client = makeClient({ scopes: { default: ['profile'] } });
    const a = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    assert.equal(a.url.searchParams.get('scope'), 'profile');
    const b = await createAuthorizationRequest(client, {
      redirectUri: REDIRECT_URI,
      scopes: ['mail', 'calendar'],
    });
    assert.equal(b.url.searchParams.get('scope'), 'mail calendar');
  });

  it('omits scope when there are none', async () => {
    const { url } = await createAuthorizationRequest(makeClient(), { redirectUri: REDIRECT_URI });
    assert.equal(url.searchParams.has('scope'), false);
  });

  it('adds per-flow parameters, which cannot replace the protocol ones', async () => {
    const pending = await createAuthorizationRequest(makeClient(), {
      redirectUri: REDIRECT_URI,
      parameters: {
        login_hint: 'user@example.com',
        state: 'attacker-state',
        client_id: 'other-client',
        redirect_uri: 'https://evil.example.com/cb',
        response_type: 'token',
        code_challenge_method: 'plain',
      },
    });
    const params = pending.url.searchParams;
    assert.equal(params.get('login_hint'), 'user@example.com');
    assert.equal(params.get('state'), pending.state);
    assert.equal(params.get('client_id'), 'client-1');
    assert.equal(params.get('redirect_uri'), REDIRECT_URI);
    assert.equal(params.get('response_type'), 'code');
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.equal(params.getAll('state').length, 1);
  });

  it('keeps a query the authorization URL already has', async () => {
    const client = makeClient({ authorizationUrl: `${AUTHORIZE_URL}?tenant=acme` });
    const { url } = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    assert.equal(url.searchParams.get('tenant'), 'acme');
    assert.equal(url.searchParams.get('response_type'), 'code');
  });

  it('sends no PKCE parameters when the profile turns PKCE off', async () => {
    const { url } = await createAuthorizationRequest(makeClient({ pkce: false }), {
      redirectUri: REDIRECT_URI,
    });
    assert.equal(url.searchParams.has('code_challenge'), false);
    assert.equal(url.searchParams.has('code_challenge_method'), false);
    assert.ok(url.searchParams.has('state'));
  });
});

describe('validateAuthorizationResponse (RFC 6749 §4.1.2)', () => {
  const client = makeClient();

  function callback(params: Record<string, string>): URL {
    const url = new URL(REDIRECT_URI);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
    return url;
  }

  function rejects(run: () => unknown, pattern: RegExp): void {
    assert.throws(run, (error: unknown) => {
      assert.ok(error instanceof TokenwardenError);
      assert.equal(error.code, 'invalid_authorization_response');
      assert.match(error.message, pattern);
      return true;
    });
  }

  it('accepts the right state and returns the parameters for the code exchange', () => {
    const params = validateAuthorizationResponse(
      client,
      callback({ code: 'code-1', state: 'state-1' }),
      'state-1',
    );
    assert.equal(params.get('code'), 'code-1');
  });

  it('accepts URLSearchParams as well as a URL', () => {
    const params = validateAuthorizationResponse(
      client,
      new URLSearchParams({ code: 'code-1', state: 'state-1' }),
      'state-1',
    );
    assert.equal(params.get('code'), 'code-1');
  });

  it('rejects a wrong state', () => {
    rejects(
      () =>
        validateAuthorizationResponse(client, callback({ code: 'c', state: 'forged' }), 'state-1'),
      /state/,
    );
  });

  it('rejects a missing state', () => {
    rejects(
      () => validateAuthorizationResponse(client, callback({ code: 'c' }), 'state-1'),
      /state/,
    );
  });

  it('turns error=access_denied into invalid_authorization_response naming access_denied', () => {
    assert.throws(
      () =>
        validateAuthorizationResponse(
          client,
          callback({
            error: 'access_denied',
            error_description: 'The user denied the request',
            state: 'state-1',
          }),
          'state-1',
        ),
      (error: unknown) => {
        assert.ok(error instanceof TokenwardenError);
        assert.equal(error.code, 'invalid_authorization_response');
        assert.match(error.message, /access_denied/);
        assert.match(error.message, /The user denied the request/);
        assert.deepEqual(error.cause, {
          error: 'access_denied',
          error_description: 'The user denied the request',
        });
        return true;
      },
    );
  });

  it('checks the state before believing an error (a forged error redirect)', () => {
    rejects(
      () =>
        validateAuthorizationResponse(
          client,
          callback({ error: 'access_denied', state: 'forged' }),
          'state-1',
        ),
      /state/,
    );
  });

  it('rejects an issuer (RFC 9207 iss) other than the provider', () => {
    rejects(
      () =>
        validateAuthorizationResponse(
          client,
          callback({ code: 'c', state: 'state-1', iss: 'https://evil.example.com' }),
          'state-1',
        ),
      /iss/,
    );
  });
});

describe('codeExchangeRequest (RFC 6749 §4.1.3)', () => {
  const ok = () => Response.json({ access_token: 'a', token_type: 'bearer' });

  it('sends the code, redirect_uri and code_verifier with client authentication', async () => {
    const client = makeClient({
      parameters: { codeExchange: { resource: 'https://api.example' } },
    });
    const pending = await createAuthorizationRequest(client, { redirectUri: REDIRECT_URI });
    const params = validateAuthorizationResponse(
      client,
      new URLSearchParams({ code: 'code-1', state: pending.state }),
      pending.state,
    );
    const { fetch, requests } = fakeFetch(ok());
    const response = await codeExchangeRequest(client, params, pending, { fetch });
    assert.equal(response.status, 200);
    const request = requests[0];
    assert.ok(request !== undefined);
    assert.equal(request.url, TOKEN_URL);
    assert.equal(request.method, 'POST');
    assert.equal(request.form.get('grant_type'), 'authorization_code');
    assert.equal(request.form.get('code'), 'code-1');
    assert.equal(request.form.get('redirect_uri'), REDIRECT_URI);
    assert.equal(request.form.get('code_verifier'), pending.codeVerifier);
    assert.equal(request.form.get('client_id'), 'client-1');
    assert.equal(request.form.get('client_secret'), CLIENT_SECRET);
    assert.equal(request.form.get('resource'), 'https://api.example');
    assert.equal(request.form.has('state'), false);
  });

  it('sends no code_verifier when the profile turns PKCE off', async () => {
    const client = makeClient({ pkce: false });
    const params = validateAuthorizationResponse(
      client,
      new URLSearchParams({ code: 'code-1', state: 's' }),
      's',
    );
    const { fetch, requests } = fakeFetch(ok());
    await codeExchangeRequest(
      client,
      params,
      { codeVerifier: 'unused-verifier', redirectUri: REDIRECT_URI },
      { fetch },
    );
    assert.equal(requests[0]?.form.has('code_verifier'), false);
    assert.equal(requests[0]?.form.get('code'), 'code-1');
  });

  it('uses client_secret_basic when the profile says so', async () => {
    const client = makeClient({ clientAuthentication: 'client_secret_basic' });
    const params = validateAuthorizationResponse(
      client,
      new URLSearchParams({ code: 'code-1', state: 's' }),
      's',
    );
    const { fetch, requests } = fakeFetch(ok());
    await codeExchangeRequest(
      client,
      params,
      { codeVerifier: 'v'.repeat(43), redirectUri: REDIRECT_URI },
      { fetch },
    );
    const header = requests[0]?.headers.get('authorization') ?? '';
    assert.match(header, /^Basic /);
    // RFC 6749 §2.3.1: both halves form-urlencoded before base64
    const [id = '', secret = ''] = Buffer.from(header.slice('Basic '.length), 'base64')
      .toString()
      .split(':')
      .map((half) => decodeURIComponent(half.replace(/\+/g, ' ')));
    assert.deepEqual([id, secret], ['client-1', CLIENT_SECRET]);
    assert.equal(requests[0]?.form.has('client_secret'), false);
  });
});

describe('processCodeExchangeResponse (RFC 6749 §4.1.4)', () => {
  it('builds a TokenSet from the answer', async () => {
    const receivedAt = 1_700_000_000_000;
    const ts = await processCodeExchangeResponse(
      makeClient(),
      Response.json({
        access_token: 'access-1',
        token_type: 'bearer',
        expires_in: 3600,
        refresh_token: 'refresh-1',
        scope: 'openid email',
      }),
      receivedAt,
    );
    assert.equal(ts.accessToken, 'access-1');
    assert.equal(ts.refreshToken, 'refresh-1');
    assert.equal(ts.authorizationScheme, 'Bearer');
    assert.equal(ts.scope, 'openid email');
    assert.equal(ts.expiresAtMs, receivedAt + 3_600_000);
  });

  it('classifies a rejected code', async () => {
    await assert.rejects(
      processCodeExchangeResponse(
        makeClient(),
        Response.json(
          { error: 'invalid_grant', error_description: 'code expired' },
          { status: 400 },
        ),
      ),
      (error: unknown) => {
        assert.ok(error instanceof TokenEndpointError);
        assert.equal(error.code, 'reauth_required');
        assert.match(error.message, /code exchange: code expired/);
        return true;
      },
    );
  });
});
