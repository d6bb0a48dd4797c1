/**
 * Tests src/internal/token-response.ts (RFC 6749 §5.1 / §5.2 validation and error
 * classification) through its two public doors: processRefreshResponse and
 * processCodeExchangeResponse. Every Response is built by hand; nothing is fetched.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import fc from 'fast-check';
import {
  type AuthClient,
  createAuthClient,
  ERROR_CODES,
  type ProviderProfileInput,
  parseProviderProfile,
  processCodeExchangeResponse,
  processRefreshResponse,
  TokenEndpointError,
} from '../src/index.ts';

const ACCESS = 'AT-unique-marker-3c9e51';
const REFRESH = 'RT-unique-marker-b7f20a';
const CLIENT_SECRET = 'client-secret-marker-118d';

function makeClient(overrides: Partial<ProviderProfileInput> = {}): AuthClient {
  const profile = parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      rotation: 'none',
      authorizationUrl: 'http://127.0.0.1:1/authorize',
      tokenUrl: 'http://127.0.0.1:1/token',
      ...overrides,
    },
    'test',
  );
  return createAuthClient({ profile, clientId: 'client-1', clientSecret: CLIENT_SECRET });
}

const plain = makeClient();

function json(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return Response.json(body, { status, headers });
}

function text(body: string, status: number, headers: Record<string, string> = {}): Response {
  return new Response(body, { status, headers });
}

/** The TokenEndpointError a promise rejects with (fails the test on anything else). */
async function rejection(promise: Promise<unknown>): Promise<TokenEndpointError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof TokenEndpointError, `expected a TokenEndpointError, got ${error}`);
    return error;
  }
  assert.fail('expected the promise to reject');
}

/** No message, enumerable field, cause or printed form holds a token or the client secret. */
function assertNoSecrets(error: TokenEndpointError): void {
  const forms = [
    error.message,
    error.stack ?? '',
    JSON.stringify(error),
    inspect(error, { depth: Number.POSITIVE_INFINITY }),
    format('%o', error),
  ];
  for (const form of forms) {
    for (const secret of [ACCESS, REFRESH, CLIENT_SECRET]) {
      assert.ok(!form.includes(secret), `error exposes ${secret}: ${form}`);
    }
  }
}

/** A JWT with the given claims and a dummy signature (token endpoint id_tokens are not signature-checked: TLS). */
function unsignedJwt(claims: Record<string, unknown>): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'RS256', typ: 'JWT' })}.${part(claims)}.${Buffer.from('sig').toString('base64url')}`;
}

describe('valid RFC 6749 §5.1 responses', () => {
  it('accepts a minimal response', async () => {
    const tokens = await processRefreshResponse(
      plain,
      json({ access_token: ACCESS, token_type: 'Bearer' }),
    );
    assert.deepEqual(tokens, { access_token: ACCESS, token_type: 'Bearer' });
  });

  it('keeps every member, unknown ones included, with token_type as sent', async () => {
    const body = {
      access_token: ACCESS,
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: REFRESH,
      scope: 'api refresh_token',
      instance_url: 'https://acme.my.salesforce.com',
      issued_at: '1700000000000',
    };
    assert.deepEqual(await processRefreshResponse(plain, json(body)), body);
  });

  it('ignores the content-type of a 200 JSON body', async () => {
    const tokens = await processRefreshResponse(
      plain,
      text(JSON.stringify({ access_token: ACCESS, token_type: 'bearer' }), 200, {
        'content-type': 'text/plain',
      }),
    );
    assert.equal(tokens.access_token, ACCESS);
  });

  it('coerces expires_in sent as a numeric string', async () => {
    for (const [sent, expected] of [
      ['3600', 3600],
      [' 60 ', 60],
      ['0', 0],
      ['1.5', 1.5],
    ] as const) {
      const tokens = await processRefreshResponse(
        plain,
        json({ access_token: ACCESS, token_type: 'bearer', expires_in: sent }),
      );
      assert.equal(tokens.expires_in, expected, `expires_in ${JSON.stringify(sent)}`);
    }
  });

  for (const bad of ['1e3', 'abc', '12abc', '', '-5', -5, null, true, { seconds: 5 }]) {
    it(`rejects expires_in ${JSON.stringify(bad)}`, async () => {
      const error = await rejection(
        processRefreshResponse(
          plain,
          json({ access_token: ACCESS, token_type: 'bearer', expires_in: bad }),
        ),
      );
      assert.equal(error.code, 'invalid_token_response');
      assert.match(error.message, /expires_in/);
    });
  }

  for (const [member, value] of [
    ['access_token', 42],
    ['refresh_token', 42],
    ['refresh_token', null],
    ['scope', ['a', 'b']],
  ] as const) {
    it(`rejects ${member} ${JSON.stringify(value)}`, async () => {
      const error = await rejection(
        processRefreshResponse(
          plain,
          json({ access_token: ACCESS, token_type: 'bearer', [member]: value }),
        ),
      );
      assert.equal(error.code, 'invalid_token_response');
      assert.match(error.message, new RegExp(member));
    });
  }

  it('rejects a response without access_token', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ token_type: 'bearer', refresh_token: REFRESH })),
    );
    assert.equal(error.code, 'invalid_token_response');
    assert.match(error.message, /access_token/);
    assertNoSecrets(error);
  });
});

describe('token_type', () => {
  it('missing, without a profile default: rejected', async () => {
    const error = await rejection(processRefreshResponse(plain, json({ access_token: ACCESS })));
    assert.equal(error.code, 'invalid_token_response');
    assert.match(error.message, /token_type/);
    assertNoSecrets(error);
  });

  it('missing, with the profile defaultTokenType (Shopify): filled in', async () => {
    const client = makeClient({ tokenResponse: { defaultTokenType: 'bearer' } });
    const tokens = await processRefreshResponse(client, json({ access_token: ACCESS }));
    assert.equal(tokens.token_type, 'bearer');
  });

  it('present: the profile default does not replace it', async () => {
    const client = makeClient({
      tokenResponse: { defaultTokenType: 'bearer', extraTokenTypes: ['bot'] },
    });
    const tokens = await processRefreshResponse(
      client,
      json({ access_token: ACCESS, token_type: 'bot' }),
    );
    assert.equal(tokens.token_type, 'bot');
  });

  it('unknown: rejected', async () => {
    for (const type of ['mac', 'bot', 'basic']) {
      const error = await rejection(
        processRefreshResponse(plain, json({ access_token: ACCESS, token_type: type })),
      );
      assert.equal(error.code, 'invalid_token_response', type);
      assert.match(error.message, /token_type/);
      assertNoSecrets(error);
    }
  });

  it('listed in extraTokenTypes (Slack bot / user): accepted in any case, others still rejected', async () => {
    const client = makeClient({ tokenResponse: { extraTokenTypes: ['bot', 'user'] } });
    for (const type of ['bot', 'user', 'Bot', 'bearer']) {
      const tokens = await processRefreshResponse(
        client,
        json({ access_token: ACCESS, token_type: type }),
      );
      assert.equal(tokens.token_type, type);
    }
    const error = await rejection(
      processRefreshResponse(client, json({ access_token: ACCESS, token_type: 'mac' })),
    );
    assert.equal(error.code, 'invalid_token_response');
  });

  it('regression: a token_type named like an Object.prototype member ("constructor") is rejected', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ access_token: ACCESS, token_type: 'constructor' })),
    );
    assert.equal(error.code, 'invalid_token_response');
  });
});

describe('id_token', () => {
  const issuer = 'https://issuer.example.com';
  const now = () => Math.floor(Date.now() / 1000);
  const goodClaims = () => ({
    iss: issuer,
    sub: 'user-1',
    aud: 'client-1',
    iat: now(),
    exp: now() + 600,
  });

  it('ignored by default: a garbage id_token is kept as data', async () => {
    const tokens = await processRefreshResponse(
      plain,
      json({ access_token: ACCESS, token_type: 'bearer', id_token: 'not-a-jwt' }),
    );
    assert.equal(tokens.id_token, 'not-a-jwt');
  });

  it('ignored, but still type-checked: a non-string id_token is rejected', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        json({ access_token: ACCESS, token_type: 'bearer', id_token: { sub: 'x' } }),
      ),
    );
    assert.equal(error.code, 'invalid_token_response');
    assert.match(error.message, /id_token/);
  });

  const validating = makeClient({ issuer, tokenResponse: { idToken: 'validate' } });

  it('validated per profile: a garbage id_token is an invalid_token_response', async () => {
    for (const process of [processRefreshResponse, processCodeExchangeResponse]) {
      const error = await rejection(
        process(
          validating,
          json({ access_token: ACCESS, token_type: 'bearer', id_token: 'not-a-jwt' }),
        ),
      );
      assert.equal(error.code, 'invalid_token_response');
      assertNoSecrets(error);
    }
  });

  it('validated per profile: good claims pass, a wrong issuer, audience or expiry does not', async () => {
    const good = unsignedJwt(goodClaims());
    const tokens = await processRefreshResponse(
      validating,
      json({ access_token: ACCESS, token_type: 'bearer', id_token: good }),
    );
    assert.equal(tokens.id_token, good);
    for (const [claim, bad] of [
      ['iss', { ...goodClaims(), iss: 'https://evil.example.com' }],
      ['aud', { ...goodClaims(), aud: 'another-client' }],
      ['exp', { ...goodClaims(), iat: now() - 7200, exp: now() - 3600 }],
    ] as const) {
      const error = await rejection(
        processRefreshResponse(
          validating,
          json({ access_token: ACCESS, token_type: 'bearer', id_token: unsignedJwt(bad) }),
        ),
      );
      assert.equal(error.code, 'invalid_token_response', claim);
      assert.match(error.message, new RegExp(`"${claim}"`));
    }
  });

  it('the same id_token passes when the profile ignores it', async () => {
    const wrongIssuer = unsignedJwt({ ...goodClaims(), iss: 'https://per-instance.example.com' });
    const tokens = await processRefreshResponse(
      plain,
      json({ access_token: ACCESS, token_type: 'bearer', id_token: wrongIssuer }),
    );
    assert.equal(tokens.id_token, wrongIssuer);
  });
});

describe('error responses (RFC 6749 §5.2)', () => {
  it('invalid_grant → reauth_required, keeping the description', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        json(
          { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' },
          400,
        ),
      ),
    );
    assert.equal(error.code, 'reauth_required');
    assert.equal(error.oauthError, 'invalid_grant');
    assert.equal(error.errorDescription, 'Token has been expired or revoked.');
    assert.equal(error.status, 400);
    assert.equal(error.transient, false);
    assert.match(error.message, /invalid_grant/);
    assert.match(error.message, /Token has been expired or revoked\./);
    assert.match(error.message, /refresh/);
  });

  for (const oauthError of ['invalid_client', 'unauthorized_client']) {
    it(`${oauthError} → client_misconfigured`, async () => {
      const error = await rejection(
        processRefreshResponse(
          plain,
          json({ error: oauthError }, oauthError === 'invalid_client' ? 401 : 400),
        ),
      );
      assert.equal(error.code, 'client_misconfigured');
      assert.equal(error.oauthError, oauthError);
      assert.equal(error.errorDescription, undefined);
      assertNoSecrets(error);
    });
  }

  for (const oauthError of ['invalid_scope', 'invalid_request', 'unsupported_grant_type']) {
    it(`${oauthError} → token_request_rejected`, async () => {
      const error = await rejection(
        processRefreshResponse(plain, json({ error: oauthError }, 400)),
      );
      assert.equal(error.code, 'token_request_rejected');
      assert.equal(error.oauthError, oauthError);
    });
  }

  for (const oauthError of ['temporarily_unavailable', 'server_error']) {
    it(`${oauthError} → token_endpoint_unavailable`, async () => {
      const error = await rejection(
        processRefreshResponse(plain, json({ error: oauthError }, 400)),
      );
      assert.equal(error.code, 'token_endpoint_unavailable');
      assert.equal(error.transient, true);
    });
  }

  it('ignores a non-string error_description', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ error: 'invalid_grant', error_description: 42 }, 400)),
    );
    assert.equal(error.code, 'reauth_required');
    assert.equal(error.errorDescription, undefined);
  });

  it('HTTP 200 with an error body (GitHub style) is a classified error', async () => {
    const error = await rejection(
      processCodeExchangeResponse(
        plain,
        json({
          error: 'bad_verification_code',
          error_description: 'The code passed is incorrect or expired.',
          error_uri: 'https://docs.github.com/apps',
        }),
      ),
    );
    assert.equal(error.code, 'token_request_rejected');
    assert.equal(error.oauthError, 'bad_verification_code');
    assert.equal(error.status, 200);
    assert.match(error.message, /code exchange/);
  });

  it('HTTP 200 with an error body (Slack style, ok:false) is a classified error', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ ok: false, error: 'invalid_refresh_token' })),
    );
    assert.equal(error.code, 'token_request_rejected');
    assert.equal(error.oauthError, 'invalid_refresh_token');
  });

  it('HTTP 200 with an error body and a token in it is still an error', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        json({ error: 'invalid_grant', access_token: ACCESS, token_type: 'bearer' }),
      ),
    );
    assert.equal(error.code, 'reauth_required');
    assertNoSecrets(error);
  });

  it('errorAliases map provider codes to RFC codes (GitHub bad_refresh_token → invalid_grant)', async () => {
    const client = makeClient({
      tokenResponse: {
        errorAliases: {
          bad_refresh_token: 'invalid_grant',
          invalid_refresh_token: 'invalid_grant',
        },
      },
    });
    const error = await rejection(
      processRefreshResponse(client, json({ error: 'bad_refresh_token', error_description: 'x' })),
    );
    assert.equal(error.code, 'reauth_required');
    assert.equal(error.oauthError, 'invalid_grant');
    assert.match(error.message, /bad_refresh_token \(invalid_grant\)/);
    const slack = await rejection(
      processRefreshResponse(client, json({ ok: false, error: 'invalid_refresh_token' })),
    );
    assert.equal(slack.code, 'reauth_required');
    // the alias belongs to that profile only
    const unaliased = await rejection(
      processRefreshResponse(plain, json({ error: 'bad_refresh_token' }, 400)),
    );
    assert.equal(unaliased.code, 'token_request_rejected');
  });

  it('regression: an error named like an Object.prototype member is not taken for an alias', async () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const error = await rejection(processRefreshResponse(plain, json({ error: name }, 400)));
      assert.equal(error.code, 'token_request_rejected', name);
      assert.equal(error.oauthError, name);
      assert.ok(!error.message.includes('native code'), error.message);
    }
  });

  it('an empty or non-string error member is not an error response', async () => {
    const tokens = await processRefreshResponse(
      plain,
      json({ access_token: ACCESS, token_type: 'bearer', error: '' }),
    );
    assert.equal(tokens.access_token, ACCESS);
    const error = await rejection(processRefreshResponse(plain, json({ error: 42 }, 400)));
    assert.equal(error.code, 'invalid_token_response');
    assert.equal(error.oauthError, undefined);
  });
});

describe('outages: 5xx, 429, network', () => {
  for (const status of [500, 502, 503, 504]) {
    it(`HTTP ${status} without a body → token_endpoint_unavailable`, async () => {
      const error = await rejection(processRefreshResponse(plain, text('', status)));
      assert.equal(error.code, 'token_endpoint_unavailable');
      assert.equal(error.status, status);
      assert.equal(error.retryAfterSeconds, undefined);
      assert.match(error.message, new RegExp(`HTTP ${status}`));
    });
  }

  it('an HTML 502 page from a proxy → unavailable, without the page in the message', async () => {
    const page =
      '<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>';
    const error = await rejection(
      processRefreshResponse(plain, text(page, 502, { 'content-type': 'text/html' })),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.status, 502);
    assert.ok(!error.message.includes('<html>'), error.message);
  });

  it('503 with Retry-After in seconds', async () => {
    const error = await rejection(
      processRefreshResponse(plain, text('busy', 503, { 'retry-after': '120' })),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.retryAfterSeconds, 120);
  });

  it('429 with Retry-After as an HTTP-date', async () => {
    const at = new Date(Date.now() + 90_000).toUTCString();
    const error = await rejection(
      processRefreshResponse(plain, text('slow down', 429, { 'retry-after': at })),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.status, 429);
    const seconds = error.retryAfterSeconds;
    assert.ok(
      seconds !== undefined && seconds >= 88 && seconds <= 90,
      `retryAfterSeconds ${seconds}`,
    );
  });

  it('429 with an HTTP-date in the past → retry at once (0)', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        text('', 429, { 'retry-after': 'Wed, 21 Oct 2015 07:28:00 GMT' }),
      ),
    );
    assert.equal(error.retryAfterSeconds, 0);
  });

  it('an unparseable Retry-After is left out', async () => {
    const error = await rejection(
      processRefreshResponse(plain, text('', 503, { 'retry-after': 'soon' })),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.retryAfterSeconds, undefined);
  });

  it('429 with an OAuth-looking error body (Slack ratelimited) → unavailable, with Retry-After', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        json({ ok: false, error: 'ratelimited' }, 429, { 'retry-after': '30' }),
      ),
    );
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.equal(error.oauthError, 'ratelimited');
    assert.equal(error.retryAfterSeconds, 30);
  });

  it('regression: a 5xx with a JSON error that is no OAuth code (proxy, gateway) → unavailable', async () => {
    for (const body of [{ error: 'Service Unavailable' }, { error: 'Bad Gateway', status: 502 }]) {
      const error = await rejection(
        processRefreshResponse(plain, json(body, 503, { 'retry-after': '5' })),
      );
      assert.equal(error.code, 'token_endpoint_unavailable', JSON.stringify(body));
      assert.equal(error.retryAfterSeconds, 5);
    }
  });

  it('a 5xx that names invalid_grant is still a lost grant', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ error: 'invalid_grant' }, 500)),
    );
    assert.equal(error.code, 'reauth_required');
  });

  it('a body that breaks off mid-stream → unavailable', async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"access_token":"'));
      },
      pull(controller) {
        controller.error(new TypeError('terminated'));
      },
    });
    const error = await rejection(processRefreshResponse(plain, new Response(body)));
    assert.equal(error.code, 'token_endpoint_unavailable');
    assert.match(error.message, /reading/);
  });
});

describe('other non-token answers', () => {
  it('401 without JSON → client_misconfigured', async () => {
    const error = await rejection(
      processRefreshResponse(
        plain,
        text('Unauthorized', 401, { 'www-authenticate': 'Basic realm="token"' }),
      ),
    );
    assert.equal(error.code, 'client_misconfigured');
    assert.equal(error.status, 401);
  });

  it('400 without an OAuth error → invalid_token_response', async () => {
    const error = await rejection(processRefreshResponse(plain, text('Bad Request', 400)));
    assert.equal(error.code, 'invalid_token_response');
    assert.equal(error.status, 400);
  });

  it('a redirect (not followed) → invalid_token_response', async () => {
    const error = await rejection(
      processRefreshResponse(plain, text('', 302, { location: 'https://login.example.com/' })),
    );
    assert.equal(error.code, 'invalid_token_response');
    assert.equal(error.status, 302);
  });

  it('201 with a token body is not a §5.1 answer', async () => {
    const error = await rejection(
      processRefreshResponse(plain, json({ access_token: ACCESS, token_type: 'bearer' }, 201)),
    );
    assert.equal(error.code, 'invalid_token_response');
    assertNoSecrets(error);
  });

  for (const [name, body] of [
    ['invalid JSON', `{"access_token":"${ACCESS}",`],
    ['a JSON array', JSON.stringify([{ access_token: ACCESS, token_type: 'bearer' }])],
    ['a JSON string', JSON.stringify(ACCESS)],
    ['JSON null', 'null'],
    ['form-encoded (old Facebook / GitHub default)', `access_token=${ACCESS}&token_type=bearer`],
    ['empty', ''],
  ] as const) {
    it(`${name} at 200 → invalid_token_response`, async () => {
      const error = await rejection(processRefreshResponse(plain, text(body, 200)));
      assert.equal(error.code, 'invalid_token_response');
      assert.equal(error.status, 200);
      assertNoSecrets(error);
    });
  }

  it('an oversize body announced by Content-Length is not read', async () => {
    const response = text(JSON.stringify({ access_token: ACCESS, token_type: 'bearer' }), 200, {
      'content-length': String(10 * 1024 * 1024),
    });
    const error = await rejection(processRefreshResponse(plain, response));
    assert.equal(error.code, 'invalid_token_response');
    assert.match(error.message, /too large/);
    assertNoSecrets(error);
  });

  it('an oversize body without Content-Length is rejected too', async () => {
    const padding = 'x'.repeat(300 * 1024);
    const response = text(
      JSON.stringify({ access_token: ACCESS, token_type: 'bearer', padding }),
      200,
    );
    const error = await rejection(processRefreshResponse(plain, response));
    assert.equal(error.code, 'invalid_token_response');
    assert.match(error.message, /too large/);
    assertNoSecrets(error);
  });
});

describe('no token from the body reaches an error', () => {
  const withTokens = { access_token: ACCESS, refresh_token: REFRESH, token_type: 'bearer' };
  const cases: Array<[string, AuthClient, () => Response]> = [
    ['unknown token_type', plain, () => json({ ...withTokens, token_type: 'mac' })],
    ['bad expires_in', plain, () => json({ ...withTokens, expires_in: 'soon' })],
    ['bad scope', plain, () => json({ ...withTokens, scope: 42 })],
    [
      'bad refresh_token',
      plain,
      () => json({ access_token: ACCESS, token_type: 'bearer', refresh_token: 7 }),
    ],
    ['missing token_type', plain, () => json({ access_token: ACCESS, refresh_token: REFRESH })],
    [
      'garbage id_token when validating',
      makeClient({ issuer: 'https://issuer.example.com', tokenResponse: { idToken: 'validate' } }),
      () => json({ ...withTokens, id_token: `${ACCESS}.${REFRESH}.x` }),
    ],
    ['error body with tokens', plain, () => json({ ...withTokens, error: 'invalid_grant' }, 400)],
    ['5xx with tokens', plain, () => json(withTokens, 503)],
    ['401 with tokens', plain, () => json(withTokens, 401)],
    [
      'invalid JSON',
      plain,
      () => text(`{"access_token":"${ACCESS}","refresh_token":"${REFRESH}"`, 200),
    ],
  ];
  for (const [name, client, response] of cases) {
    it(name, async () => {
      for (const process of [processRefreshResponse, processCodeExchangeResponse]) {
        assertNoSecrets(await rejection(process(client, response())));
      }
    });
  }
});

describe('processCodeExchangeResponse', () => {
  it('builds a TokenSet with an absolute expiry', async () => {
    const receivedAt = 1_700_000_000_000;
    const ts = await processCodeExchangeResponse(
      plain,
      json({
        access_token: ACCESS,
        token_type: 'bearer',
        expires_in: '3600',
        refresh_token: REFRESH,
      }),
      receivedAt,
    );
    assert.equal(ts.accessToken, ACCESS);
    assert.equal(ts.refreshToken, REFRESH);
    assert.equal(ts.expiresAtMs, receivedAt + 3_600_000);
    assert.equal(ts.toStored().tokens.expires_in, 3600);
  });

  it('uses the profile default lifetime when expires_in is absent', async () => {
    const client = makeClient({ defaultAccessTokenLifetimeSeconds: 7200 });
    const ts = await processCodeExchangeResponse(
      client,
      json({ access_token: ACCESS, token_type: 'Bearer', instance_url: 'https://x.example' }),
      1_000_000,
    );
    assert.equal(ts.expiresAtMs, 1_000_000 + 7_200_000);
    assert.equal(ts.get('instance_url'), 'https://x.example');
  });

  it('classifies errors like the refresh, naming the code exchange', async () => {
    const error = await rejection(
      processCodeExchangeResponse(plain, json({ error: 'invalid_grant' }, 400)),
    );
    assert.equal(error.code, 'reauth_required');
    assert.match(error.message, /code exchange/);
  });
});

describe('property: processing never throws anything but a classified TokenEndpointError', () => {
  const clients = [
    plain,
    makeClient({
      issuer: 'https://issuer.example.com',
      defaultAccessTokenLifetimeSeconds: 3600,
      tokenResponse: {
        defaultTokenType: 'bearer',
        extraTokenTypes: ['bot', 'user'],
        errorAliases: { bad_refresh_token: 'invalid_grant', invalid_auth: 'invalid_client' },
        idToken: 'validate',
      },
    }),
  ];

  const anyValue = fc.jsonValue();
  const member = (special: fc.Arbitrary<unknown>) =>
    fc.oneof(special, fc.string(), fc.integer(), fc.double(), anyValue);
  const tokenish = fc.record(
    {
      access_token: member(fc.constant(ACCESS)),
      refresh_token: member(fc.constant(REFRESH)),
      token_type: member(
        fc.constantFrom(
          'bearer',
          'Bearer',
          'bot',
          'user',
          'mac',
          'DPoP',
          'constructor',
          '__proto__',
        ),
      ),
      expires_in: member(
        fc.constantFrom('3600', ' 60 ', '1e3', '-5', '0', 0, -1, Number.MAX_VALUE),
      ),
      scope: member(fc.constantFrom('a b', 'a,b')),
      id_token: member(fc.constantFrom('x.y.z', unsignedJwt({ iss: 'x' }))),
      error: member(
        fc.constantFrom(
          'invalid_grant',
          'invalid_client',
          'bad_refresh_token',
          'server_error',
          'constructor',
          '__proto__',
          'toString',
          '',
        ),
      ),
      error_description: member(fc.constant('described')),
      ok: fc.boolean(),
    },
    { requiredKeys: [] },
  );
  /** A valid response with a few members changed or removed: reaches the success path often. */
  const sometimes = <T>(arbitrary: fc.Arbitrary<T>) =>
    fc.oneof({ weight: 5, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary });
  const nearlyValid = fc
    .record({
      access_token: sometimes(member(fc.constant(ACCESS))),
      refresh_token: sometimes(member(fc.constant(REFRESH))),
      token_type: sometimes(member(fc.constantFrom('Bearer', 'bot', 'mac'))),
      expires_in: sometimes(member(fc.constantFrom('3600', 0))),
      scope: sometimes(member(fc.constant('a b'))),
      error: sometimes(member(fc.constant('invalid_grant'))),
      id_token: sometimes(member(fc.constant('x.y.z'))),
    })
    .map((changes) =>
      JSON.stringify({
        access_token: ACCESS,
        refresh_token: REFRESH,
        token_type: 'bearer',
        expires_in: 3600,
        ...Object.fromEntries(Object.entries(changes).filter(([, value]) => value !== undefined)),
      }),
    );
  const body = fc.oneof(
    { weight: 4, arbitrary: nearlyValid },
    tokenish.map((value) => JSON.stringify(value)),
    anyValue.map((value) => JSON.stringify(value)),
    fc.json(),
    fc.string(),
    fc.string({ unit: 'binary' }),
  );
  const contentType = fc.option(
    fc.oneof(
      fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'text/html',
        'text/plain',
        'application/x-www-form-urlencoded',
      ),
      fc.string({ unit: 'grapheme-ascii' }),
    ),
    { nil: undefined },
  );
  const retryAfter = fc.option(
    fc.oneof(
      fc.nat().map(String),
      fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toUTCString())),
      fc.string({ unit: 'grapheme-ascii' }),
    ),
    { nil: undefined },
  );

  /** A hand-built Response with any status 100..599 (the constructor refuses some; those are set afterwards). */
  function anyResponse(
    bodyText: string,
    status: number,
    type: string | undefined,
    retry: string | undefined,
  ): Response {
    const headers = new Headers();
    if (type !== undefined) headers.set('content-type', type);
    if (retry !== undefined) headers.set('retry-after', retry);
    const constructible = status >= 200 && ![204, 205, 304].includes(status);
    const response = new Response(bodyText, { status: constructible ? status : 200, headers });
    if (!constructible) Object.defineProperty(response, 'status', { value: status });
    return response;
  }

  it('for arbitrary bodies, statuses and content types (300 runs)', async () => {
    const outcomes = { tokens: 0, errors: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...clients),
        fc.constantFrom('refresh', 'code exchange'),
        body,
        fc.oneof(
          { weight: 3, arbitrary: fc.constant(200) },
          fc.constantFrom(400, 401, 429, 500, 503),
          { weight: 2, arbitrary: fc.integer({ min: 100, max: 599 }) },
        ),
        contentType,
        retryAfter,
        async (client, grant, bodyText, status, type, retry) => {
          const response = anyResponse(bodyText, status, type, retry);
          try {
            const tokens =
              grant === 'refresh'
                ? await processRefreshResponse(client, response)
                : (await processCodeExchangeResponse(client, response)).toStored().tokens;
            outcomes.tokens++;
            assert.equal(status, 200, 'only HTTP 200 carries tokens');
            assert.equal(typeof tokens.access_token, 'string');
            assert.equal(typeof tokens.token_type, 'string');
            if (tokens.expires_in !== undefined) {
              assert.ok(Number.isFinite(tokens.expires_in) && tokens.expires_in >= 0);
            }
            for (const name of ['refresh_token', 'scope', 'id_token'] as const) {
              const value = tokens[name];
              assert.ok(value === undefined || typeof value === 'string', name);
            }
          } catch (error) {
            if (!(error instanceof TokenEndpointError)) throw error;
            outcomes.errors++;
            assert.ok(Object.hasOwn(ERROR_CODES, error.code), error.code);
            assert.ok(error.oauthError === undefined || typeof error.oauthError === 'string');
            assert.ok(
              error.retryAfterSeconds === undefined ||
                (Number.isFinite(error.retryAfterSeconds) && error.retryAfterSeconds >= 0),
            );
            assertNoSecrets(error);
          }
        },
      ),
      { numRuns: 300 },
    );
    // both paths were exercised, not only the error one
    assert.ok(outcomes.tokens >= 5 && outcomes.errors >= 5, JSON.stringify(outcomes));
  });
});
