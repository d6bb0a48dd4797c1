import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type FakeProvider, startFakeProvider } from '../src/index.ts';
import {
  authorizationParams,
  authorize,
  CLIENT_ID,
  callResource,
  connect,
  must,
  obtainCode,
  pkcePair,
  REDIRECT_URI,
  tokenJson,
  tokenRequest,
} from './helpers.ts';

function locationOf(res: Response): URL {
  return new URL(must(res.headers.get('location'), 'Location header'));
}

describe('authorization code flow with PKCE', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider({ autoApprove: true });
  });
  after(() => provider.close());

  it('redirects with a code and the state, then exchanges the code for tokens', async () => {
    const { params, verifier } = authorizationParams();
    const res = await authorize(provider, params);
    assert.equal(res.status, 302);
    const location = locationOf(res);
    assert.equal(`${location.origin}${location.pathname}`, REDIRECT_URI);
    assert.equal(location.searchParams.get('state'), params.state);
    const code = must(location.searchParams.get('code'), 'code');

    const token = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    assert.equal(token.status, 200);
    assert.equal(token.headers.get('cache-control'), 'no-store');
    const body = await tokenJson(token);
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.expires_in, 3600);
    assert.equal(body.scope, 'profile email');
    assert.equal(typeof body.access_token, 'string');
    assert.equal(typeof body.refresh_token, 'string');

    const me = await callResource(provider.resourceUrl, body.access_token);
    assert.equal(me.status, 200);
    assert.deepEqual(await me.json(), {
      sub: 'fake-user-1',
      name: 'Fake User',
      scope: 'profile email',
    });
  });

  it('answers invalid_grant to a wrong code_verifier, and the right one still works', async () => {
    const { code, verifier } = await obtainCode(provider);
    const wrong = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: pkcePair().verifier,
    });
    assert.equal(wrong.status, 400);
    assert.equal((await tokenJson(wrong)).error, 'invalid_grant');

    const missing = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
    });
    assert.equal((await tokenJson(missing)).error, 'invalid_grant');

    const right = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    assert.equal(right.status, 200);
  });

  it('answers invalid_grant to a replayed code and revokes the tokens issued with it', async () => {
    const { code, verifier } = await obtainCode(provider);
    const exchange = () =>
      tokenRequest(provider, {
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT_URI,
        code_verifier: verifier,
      });
    const first = await tokenJson(await exchange());
    assert.equal((await callResource(provider.resourceUrl, first.access_token)).status, 200);

    const replay = await exchange();
    assert.equal(replay.status, 400);
    const body = await tokenJson(replay);
    assert.equal(body.error, 'invalid_grant');
    assert.match(body.error_description ?? '', /already used/);

    const me = await callResource(provider.resourceUrl, first.access_token);
    assert.equal(me.status, 401);
    const refreshed = await tokenRequest(provider, {
      grant_type: 'refresh_token',
      refresh_token: must(first.refresh_token, 'refresh_token'),
    });
    assert.equal((await tokenJson(refreshed)).error, 'invalid_grant');
  });

  it('answers invalid_grant when redirect_uri differs from the authorization request', async () => {
    const { code, verifier } = await obtainCode(provider);
    const res = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: 'http://127.0.0.1:9/other',
      code_verifier: verifier,
    });
    assert.equal((await tokenJson(res)).error, 'invalid_grant');
  });

  it('rejects the plain PKCE method and a missing challenge with a redirect carrying the state', async () => {
    const { params } = authorizationParams({ code_challenge_method: 'plain' });
    const plain = locationOf(await authorize(provider, params));
    assert.equal(plain.searchParams.get('error'), 'invalid_request');
    assert.equal(plain.searchParams.get('state'), params.state);

    const { params: noChallenge } = authorizationParams();
    delete noChallenge.code_challenge;
    delete noChallenge.code_challenge_method;
    const missing = locationOf(await authorize(provider, noChallenge));
    assert.equal(missing.searchParams.get('error'), 'invalid_request');
    assert.match(missing.searchParams.get('error_description') ?? '', /code_challenge/);
  });

  it('redirects unsupported_response_type and invalid_scope errors', async () => {
    const token = locationOf(
      await authorize(provider, authorizationParams({ response_type: 'token' }).params),
    );
    assert.equal(token.searchParams.get('error'), 'unsupported_response_type');
    const scope = locationOf(
      await authorize(provider, authorizationParams({ scope: 'bad"scope' }).params),
    );
    assert.equal(scope.searchParams.get('error'), 'invalid_scope');
  });

  it('answers an unregistered redirect_uri with a 400 page, never a redirect', async () => {
    for (const redirect of [
      'https://evil.example/callback',
      'http://127.0.0.1:9/cb#frag',
      'not a url',
    ]) {
      const res = await authorize(provider, authorizationParams({ redirect_uri: redirect }).params);
      assert.equal(res.status, 400, redirect);
      assert.equal(res.headers.get('location'), null);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      assert.match(await res.text(), /not registered/);
    }
  });

  it('answers an unknown client with a 400 page, never a redirect', async () => {
    const res = await authorize(provider, authorizationParams({ client_id: 'nobody' }).params);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
    assert.match(await res.text(), /No client is registered/);
  });
});

describe('consent page', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider();
  });
  after(() => provider.close());

  async function consent(): Promise<{ requestId: string; state: string; verifier: string }> {
    const { params, verifier } = authorizationParams({ scope: 'profile admin' });
    const res = await authorize(provider, params);
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, new RegExp(CLIENT_ID));
    assert.match(html, /<code>admin<\/code>/);
    assert.match(html, /value="approve"[^>]*>Approve</);
    assert.match(html, /value="deny"[^>]*>Deny</);
    assert.match(html, /action="\/authorize\/decision"/);
    const requestId = must(/name="request_id" value="([^"]+)"/.exec(html)?.[1], 'request id');
    return { requestId, state: must(params.state, 'state'), verifier };
  }

  function decide(requestId: string, decision: string): Promise<Response> {
    return fetch(`${provider.url}/authorize/decision`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ request_id: requestId, decision }),
      redirect: 'manual',
    });
  }

  it('approve redirects with a code that can be exchanged; the request id is single use', async () => {
    const { requestId, state, verifier } = await consent();
    const res = await decide(requestId, 'approve');
    assert.equal(res.status, 302);
    const location = locationOf(res);
    assert.equal(location.searchParams.get('state'), state);
    const code = must(location.searchParams.get('code'), 'code');
    const token = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code,
      redirect_uri: REDIRECT_URI,
      code_verifier: verifier,
    });
    assert.equal((await tokenJson(token)).scope, 'profile admin');

    const again = await decide(requestId, 'approve');
    assert.equal(again.status, 400);
    assert.equal(again.headers.get('location'), null);
  });

  it('deny redirects with access_denied and the state', async () => {
    const { requestId, state } = await consent();
    const location = locationOf(await decide(requestId, 'deny'));
    assert.equal(location.searchParams.get('error'), 'access_denied');
    assert.equal(location.searchParams.get('state'), state);
    assert.equal(location.searchParams.get('code'), null);
  });

  it('escapes what it shows', async () => {
    const res = await authorize(provider, authorizationParams({ scope: '<script>' }).params);
    const html = await res.text();
    assert.doesNotMatch(html, /<script>/);
    assert.match(html, /&lt;script&gt;/);
    assert.match(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
  });
});

describe('registered redirect URIs and optional PKCE', () => {
  let provider: FakeProvider;
  before(async () => {
    provider = await startFakeProvider({
      autoApprove: true,
      requirePkce: false,
      clients: [
        {
          clientId: CLIENT_ID,
          clientSecret: 'demo-secret',
          redirectUris: ['https://app.example/cb'],
        },
      ],
    });
  });
  after(() => provider.close());

  it('matches registered redirect URIs exactly and allows omitting the only one', async () => {
    const loopback = await authorize(provider, authorizationParams().params);
    assert.equal(loopback.status, 400);
    const omitted = authorizationParams().params;
    delete omitted.redirect_uri;
    const res = await authorize(provider, omitted);
    assert.equal(res.status, 302);
    assert.equal(locationOf(res).origin, 'https://app.example');
  });

  it('accepts a request without PKCE when not required, but not a verifier without a challenge', async () => {
    const params: Record<string, string> = {
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: 'https://app.example/cb',
    };
    const first = must(
      locationOf(await authorize(provider, params)).searchParams.get('code'),
      'code',
    );
    const withVerifier = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code: first,
      redirect_uri: 'https://app.example/cb',
      code_verifier: pkcePair().verifier,
    });
    assert.equal((await tokenJson(withVerifier)).error, 'invalid_grant');
    const ok = await tokenRequest(provider, {
      grant_type: 'authorization_code',
      code: first,
      redirect_uri: 'https://app.example/cb',
    });
    assert.equal(ok.status, 200);
    assert.equal((await tokenJson(ok)).scope, 'profile');
  });
});

it('connect() helper works end to end (sanity for the other suites)', async () => {
  const provider = await startFakeProvider({ autoApprove: true });
  try {
    const tokens = await connect(provider);
    assert.equal(tokens.token_type, 'Bearer');
  } finally {
    await provider.close();
  }
});
