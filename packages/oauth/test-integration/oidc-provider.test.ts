/**
 * @tokenwarden/oauth against panva's oidc-provider: a real authorization server
 * nobody here wrote, with refresh-token rotation on (a consumed refresh token
 * presented again revokes the whole grant), PKCE S256 required and 2-second
 * access tokens. DESIGN.md "Tests and peers", Behaviour 3 (single-flight) and
 * 4 (rotated token sets stored before use).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, type TestContext, test } from 'node:test';
import {
  type AuthClient,
  codeExchangeRequest,
  createAuthClient,
  createAuthorizationRequest,
  DEFAULT_PROVIDERS_DIR,
  isTokenwardenError,
  JsonFileTokenStore,
  loadProviderCatalog,
  MemoryTokenStore,
  type ProviderProfile,
  parseProviderProfile,
  processCodeExchangeResponse,
  processRevocationResponse,
  type RefreshStrategy,
  refreshTokenSet,
  revocationRequest,
  TokenEndpointError,
  TokenManager,
  type TokenSet,
  type TokenStore,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import {
  type Counters,
  countersSince,
  type GrantCounters,
  type OidcServer,
  startOidcServer,
} from './support/oidc-server.ts';

/** `offline_access` gets a refresh token; oidc-provider honours it only with prompt=consent (OIDC Core §11). */
const SCOPES = ['openid', 'offline_access', 'profile'];
const FLOW_PARAMETERS = { prompt: 'consent' };

/** Concurrent callers per strategy, and how long each strategy runs (env override for quick local runs). */
const CALLERS = 20;
const PHASE_MS = Number(process.env.TOKENWARDEN_OIDC_PHASE_MS ?? 12_000);
/** before-expiry margin: with 2-second tokens a token is used for 1 s, then refreshed. */
const MARGIN_SECONDS = 1;
/** Refreshes allowed beyond the expiries a phase spans (a phase's first and last token straddle its edges). */
const SLACK = 2;
const STRATEGIES: readonly RefreshStrategy[] = ['before-expiry', 'every-access', 'on-demand'];

let server: OidcServer;
let client: AuthClient;
let profileSource: string;

/**
 * The catalog's generic profile when `providers/oauth2.json` exists (then the
 * catalog must load), otherwise an equivalent one built here.
 */
async function genericProfile(): Promise<{ profile: ProviderProfile; source: string }> {
  if (existsSync(join(DEFAULT_PROVIDERS_DIR, 'oauth2.json'))) {
    const profile = (await loadProviderCatalog()).get('oauth2');
    assert.ok(profile, 'providers/oauth2.json exists, so the catalog must hold an oauth2 profile');
    return { profile, source: 'providers/oauth2.json' };
  }
  const profile = parseProviderProfile(
    {
      id: 'oauth2',
      displayName: 'Any OAuth 2.0 server',
      docs: ['https://www.rfc-editor.org/rfc/rfc6749'],
      clientAuthentication: 'client_secret_basic',
      pkce: true,
      rotation: 'single-use',
    },
    'oidc-provider.test.ts',
  );
  return { profile, source: 'parseProviderProfile (providers/oauth2.json is absent)' };
}

before(async () => {
  const { profile, source } = await genericProfile();
  profileSource = source;
  server = await startOidcServer({
    accessTokenTtlSeconds: 2,
    tokenEndpointAuthMethod: profile.clientAuthentication,
  });
  client = createAuthClient({
    profile,
    clientId: server.clientId,
    clientSecret: server.clientSecret,
    scopes: SCOPES,
    endpoints: {
      authorizationUrl: server.endpoints.authorizationUrl,
      tokenUrl: server.endpoints.tokenUrl,
      revocationUrl: server.endpoints.revocationUrl,
    },
  });
});

after(async () => {
  await server?.close();
});

/** The whole connect flow with our functions; the provider's login and consent are answered by the harness. */
async function connect(): Promise<TokenSet> {
  const pending = await createAuthorizationRequest(client, {
    redirectUri: server.redirectUri,
    parameters: FLOW_PARAMETERS,
  });
  const callback = await server.authorize(pending.url);
  const parameters = validateAuthorizationResponse(client, callback, pending.state);
  return processCodeExchangeResponse(
    client,
    await codeExchangeRequest(client, parameters, pending),
  );
}

function grantOf(tokenSet: TokenSet): string {
  const refreshToken = tokenSet.refreshToken;
  assert.ok(refreshToken, 'the token set has a refresh token');
  const grantId = server.grantIdOf(refreshToken);
  assert.ok(grantId, 'the provider knows the refresh token');
  return grantId;
}

function isCode(code: string, oauthError?: string) {
  return (error: unknown): boolean => {
    assert.ok(isTokenwardenError(error), `expected a TokenwardenError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    if (oauthError !== undefined) {
      assert.ok(error instanceof TokenEndpointError);
      assert.equal(error.oauthError, oauthError);
    }
    return true;
  };
}

async function userinfo(accessToken: string): Promise<Response> {
  return fetch(server.endpoints.userinfoUrl, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
}

/** Only the fields a test names, so one assertion shows every mismatch. */
function pick(counters: Counters, ...keys: (keyof Counters)[]): Partial<Counters> {
  return Object.fromEntries(keys.map((key) => [key, counters[key]]));
}

describe('code flow with our functions against oidc-provider', () => {
  test('PKCE S256 + state → login and consent → callback → code exchange → a token set', async (t) => {
    t.diagnostic(`profile: ${profileSource}`);
    const before = server.snapshot();
    const pending = await createAuthorizationRequest(client, {
      redirectUri: server.redirectUri,
      parameters: FLOW_PARAMETERS,
    });
    assert.equal(pending.url.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(pending.url.searchParams.get('code_challenge'));
    assert.equal(pending.url.searchParams.get('state'), pending.state);

    const callback = await server.authorize(pending.url);
    assert.equal(callback.searchParams.get('state'), pending.state);
    assert.equal(callback.searchParams.get('iss'), server.issuer, 'RFC 9207 iss is sent');
    assert.ok(callback.searchParams.get('code'));

    assert.throws(
      () => validateAuthorizationResponse(client, callback, 'not-the-state-we-sent'),
      isCode('invalid_authorization_response'),
    );

    const parameters = validateAuthorizationResponse(client, callback, pending.state);
    const sentAt = Date.now();
    const tokenSet = await processCodeExchangeResponse(
      client,
      await codeExchangeRequest(client, parameters, pending),
    );
    const receivedBy = Date.now();
    assert.ok(tokenSet.accessToken.length > 0);
    assert.ok(tokenSet.refreshToken !== undefined && tokenSet.refreshToken.length > 0);
    assert.equal(tokenSet.authorizationScheme, 'Bearer');
    assert.deepEqual(tokenSet.scope?.split(' ').sort(), [...SCOPES].sort());
    assert.equal(tokenSet.lifetimeSeconds, server.accessTokenTtlSeconds);
    const ttlMs = server.accessTokenTtlSeconds * 1000;
    const expiresAtMs = tokenSet.expiresAtMs ?? Number.NaN;
    assert.ok(
      expiresAtMs >= sentAt + ttlMs && expiresAtMs <= receivedBy + ttlMs,
      `expires_at ≈ now + ttl (${expiresAtMs - receivedBy} ms from now + ttl)`,
    );
    assert.equal(typeof tokenSet.get('id_token'), 'string', 'the id_token is kept as data');

    const me = await userinfo(tokenSet.accessToken);
    assert.equal(me.status, 200);
    assert.equal(((await me.json()) as { sub?: unknown }).sub, server.accountId);

    // RFC 6749 §4.1.2: a code is single-use, and the provider revokes what it issued.
    await assert.rejects(
      processCodeExchangeResponse(client, await codeExchangeRequest(client, parameters, pending)),
      isCode('reauth_required', 'invalid_grant'),
    );
    await assert.rejects(refreshTokenSet(client, tokenSet), isCode('reauth_required'));
    assert.deepEqual(
      pick(
        countersSince(before, server.snapshot()),
        'codeGrants',
        'refreshGrants',
        'invalidGrant',
        'grantsRevokedOnReuse',
        'serverErrors',
        'interactionErrors',
      ),
      {
        codeGrants: 1,
        refreshGrants: 0,
        invalidGrant: 2,
        grantsRevokedOnReuse: 1,
        serverErrors: 0,
        interactionErrors: 0,
      },
    );
  });

  test('a wrong PKCE verifier is refused', async () => {
    const pending = await createAuthorizationRequest(client, {
      redirectUri: server.redirectUri,
      parameters: FLOW_PARAMETERS,
    });
    const parameters = validateAuthorizationResponse(
      client,
      await server.authorize(pending.url),
      pending.state,
    );
    const wrong = { ...pending, codeVerifier: `${pending.codeVerifier.slice(0, -4)}AAAA` };
    await assert.rejects(
      processCodeExchangeResponse(client, await codeExchangeRequest(client, parameters, wrong)),
      isCode('reauth_required', 'invalid_grant'),
    );
  });
});

describe('an issuer with a path (a Keycloak realm, an Okta authorization server)', () => {
  test('the RFC 9207 iss of the redirect is checked against endpoints.issuer', async () => {
    const realm = await startOidcServer({
      issuerPath: '/realms/acme',
      tokenEndpointAuthMethod: client.profile.clientAuthentication,
    });
    try {
      const clientFor = (issuer?: string) =>
        createAuthClient({
          profile: client.profile,
          clientId: realm.clientId,
          clientSecret: realm.clientSecret,
          scopes: SCOPES,
          endpoints: {
            authorizationUrl: realm.endpoints.authorizationUrl,
            tokenUrl: realm.endpoints.tokenUrl,
            ...(issuer === undefined ? {} : { issuer }),
          },
        });
      const callbackFor = async (authClient: AuthClient) => {
        const pending = await createAuthorizationRequest(authClient, {
          redirectUri: realm.redirectUri,
          parameters: FLOW_PARAMETERS,
        });
        return { pending, callback: await realm.authorize(pending.url) };
      };

      // Without an issuer the token URL's origin is assumed, and the realm's iss differs.
      const assumed = clientFor();
      const first = await callbackFor(assumed);
      assert.equal(first.callback.searchParams.get('iss'), realm.issuer);
      assert.throws(
        () => validateAuthorizationResponse(assumed, first.callback, first.pending.state),
        isCode('invalid_authorization_response'),
      );
      // A server that is not the one the flow started with is refused (mix-up defence).
      const other = clientFor(`${new URL(realm.issuer).origin}/realms/other`);
      const second = await callbackFor(other);
      assert.throws(
        () => validateAuthorizationResponse(other, second.callback, second.pending.state),
        isCode('invalid_authorization_response'),
      );

      const configured = clientFor(realm.issuer);
      const { pending, callback } = await callbackFor(configured);
      const parameters = validateAuthorizationResponse(configured, callback, pending.state);
      const tokenSet = await processCodeExchangeResponse(
        configured,
        await codeExchangeRequest(configured, parameters, pending),
      );
      const refreshed = await refreshTokenSet(configured, tokenSet);
      assert.notEqual(refreshed.refreshToken, tokenSet.refreshToken);
      assert.equal(realm.counters.refreshGrants, 1);
    } finally {
      await realm.close();
    }
  });
});

interface PhaseResult {
  strategy: RefreshStrategy;
  elapsedMs: number;
  requests: number;
  failures: string[];
}

/** CALLERS loops of authorizedFetch against the userinfo endpoint for PHASE_MS. */
async function hammer(
  manager: TokenManager,
  credentialId: string,
  strategy: RefreshStrategy,
): Promise<PhaseResult> {
  const authorizedFetch = manager.authorizedFetch(
    credentialId,
    strategy === 'before-expiry' ? { strategy, marginSeconds: MARGIN_SECONDS } : { strategy },
  );
  const failures: string[] = [];
  let requests = 0;
  const started = performance.now();
  const deadline = started + PHASE_MS;
  const caller = async () => {
    while (performance.now() < deadline) {
      try {
        const response = await authorizedFetch(server.endpoints.userinfoUrl);
        const body = await response.text();
        requests++;
        if (response.status !== 200) {
          failures.push(`HTTP ${response.status}: ${body.slice(0, 200)}`);
          return;
        }
      } catch (error) {
        failures.push(
          isTokenwardenError(error) ? `${error.code}: ${error.message}` : String(error),
        );
        // A failed credential fails fast: stop this caller rather than spin.
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: CALLERS }, caller));
  return { strategy, elapsedMs: performance.now() - started, requests, failures };
}

async function storedRefreshToken(store: TokenStore, credentialId: string): Promise<string> {
  const record = await store.load(credentialId);
  const refreshToken = record?.tokenSet.tokens.refresh_token;
  assert.ok(typeof refreshToken === 'string', 'the store holds a refresh token');
  return refreshToken;
}

/**
 * One credential kept alive through every strategy by concurrent callers; the
 * provider's view of its grant is compared before and after each phase.
 */
async function keepAlive(t: TestContext, store: TokenStore, label: string): Promise<void> {
  const credentialId = `oidc-${label}`;
  const initial = await connect();
  const grantId = grantOf(initial);
  const seen: { reason: string; refreshToken: string | undefined }[] = [];
  const manager = new TokenManager({
    store,
    authClient: client,
    onTokens: (event) => {
      seen.push({ reason: event.reason, refreshToken: event.tokenSet.refreshToken });
    },
  });
  await manager.save(credentialId, initial);

  const ttlMs = server.accessTokenTtlSeconds * 1000;
  for (const strategy of STRATEGIES) {
    const before: GrantCounters = server.grant(grantId);
    const refreshTokenBefore = await storedRefreshToken(store, credentialId);
    const phase = await hammer(manager, credentialId, strategy);
    const after: GrantCounters = server.grant(grantId);

    const refreshes = after.refreshGrants - before.refreshGrants;
    // Tokens live at most ttl: covering the phase takes at least this many new ones.
    const expiries = Math.ceil(phase.elapsedMs / ttlMs) - 1;
    const ok = after.userinfoOk - before.userinfoOk;
    const unauthorized = after.userinfoUnauthorized - before.userinfoUnauthorized;
    const summary = {
      store: label,
      strategy,
      seconds: Math.round(phase.elapsedMs / 100) / 10,
      requests: phase.requests,
      expiries,
      refreshes,
      userinfo200: ok,
      userinfo401Recovered: unauthorized,
      invalidGrant: after.invalidGrant - before.invalidGrant,
      grantsRevoked: after.revoked - before.revoked,
    };
    t.diagnostic(JSON.stringify(summary));

    assert.deepEqual(phase.failures, [], `${strategy}: every request answered 200`);
    assert.ok(phase.requests > CALLERS, `${strategy}: the callers made requests`);
    assert.equal(ok, phase.requests, `${strategy}: the provider answered 200 to each of them`);
    assert.equal(summary.invalidGrant, 0, `${strategy}: no invalid_grant`);
    assert.equal(summary.grantsRevoked, 0, `${strategy}: the grant was never revoked`);
    assert.ok(
      refreshes >= expiries,
      `${strategy}: ${refreshes} refreshes cover ${expiries} expiries`,
    );
    if (strategy === 'before-expiry') {
      // Each token is used until `margin` before its expiry, then replaced once.
      const windows = Math.ceil(phase.elapsedMs / (ttlMs - MARGIN_SECONDS * 1000));
      assert.ok(
        refreshes <= windows + SLACK,
        `before-expiry: ${refreshes} refreshes for ${windows} refresh windows: ${CALLERS} callers share them`,
      );
    }
    if (strategy === 'on-demand') {
      assert.ok(
        refreshes <= expiries + 1 + SLACK,
        `on-demand: ${refreshes} refreshes for ${expiries} expiries: ${CALLERS} callers share them`,
      );
    }
    if (strategy === 'every-access') {
      // Every request asks for a refresh; callers arriving while one is under way
      // share it. Unshared, refreshes would equal requests.
      assert.ok(
        refreshes * (CALLERS / 2) <= phase.requests,
        `every-access: ${refreshes} refreshes for ${phase.requests} requests: on average at least ${CALLERS / 2} callers share each`,
      );
    }
    const refreshTokenAfter = await storedRefreshToken(store, credentialId);
    assert.notEqual(
      refreshTokenAfter,
      refreshTokenBefore,
      `${strategy}: the refresh token rotated`,
    );
  }

  const grant = server.grant(grantId);
  const stored = await storedRefreshToken(store, credentialId);
  assert.notEqual(stored, initial.refreshToken, 'the stored refresh token is not the first one');
  assert.equal(stored, grant.refreshTokensIssued.at(-1), 'the store holds the newest one');
  assert.deepEqual(
    seen.map((event) => event.reason),
    ['imported', ...Array.from({ length: grant.refreshGrants }, () => 'refreshed')],
    'onTokens saw the import, then every refresh',
  );
  assert.deepEqual(
    seen.map((event) => event.refreshToken),
    grant.refreshTokensIssued,
    'onTokens saw every refresh token the provider issued, in order',
  );
  assert.deepEqual(
    grant.refreshTokensConsumed,
    grant.refreshTokensIssued.slice(0, -1),
    'each refresh token was presented exactly once, in order',
  );
}

describe('keep-alive under concurrency (single-flight, rotation stored before use)', {
  concurrency: true,
}, () => {
  test('MemoryTokenStore', async (t) => {
    await keepAlive(t, new MemoryTokenStore(), 'memory');
  });

  test('JsonFileTokenStore in a temporary folder', async (t) => {
    const folder = await mkdtemp(join(tmpdir(), 'tokenwarden-oidc-'));
    try {
      const path = join(folder, 'tokens.json');
      await keepAlive(t, await JsonFileTokenStore.open(path), 'file');
      const reopened = await JsonFileTokenStore.open(path);
      const record = await reopened.load('oidc-file');
      assert.ok(record, 'the file holds the credential');
      assert.ok(server.grantIdOf(String(record.tokenSet.tokens.refresh_token)));
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});

describe('negative control: two uncoordinated processes', () => {
  test('two managers over two stores refresh the same grant at once → reuse detected, grant revoked', async () => {
    const initial = await connect();
    const grantId = grantOf(initial);
    const credentialId = 'shared';
    const first = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
    const second = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
    await first.save(credentialId, initial);
    await second.save(credentialId, initial);
    const before = server.snapshot();

    // Each process's single-flight is per process: nothing stops both from
    // presenting the same refresh token. The provider serves one, then sees a
    // consumed token come back.
    const outcomes = await Promise.allSettled([
      first.refresh(credentialId),
      second.refresh(credentialId),
    ]);
    const won = outcomes.findIndex((outcome) => outcome.status === 'fulfilled');
    const lost = outcomes.find((outcome) => outcome.status === 'rejected');
    assert.ok(won !== -1 && lost !== undefined, 'one refresh succeeded, the other failed');
    assert.ok(isCode('reauth_required', 'invalid_grant')(lost.reason));
    const winner = won === 0 ? first : second;
    const rotated = (outcomes[won] as PromiseFulfilledResult<TokenSet>).value;

    assert.deepEqual(
      pick(
        countersSince(before, server.snapshot()),
        'refreshGrants',
        'invalidGrant',
        'grantsRevoked',
        'grantsRevokedOnReuse',
      ),
      { refreshGrants: 1, invalidGrant: 1, grantsRevoked: 1, grantsRevokedOnReuse: 1 },
    );
    assert.equal(server.grant(grantId).revoked, 1);
    // The damage is not the second process's alone: the first one's fresh tokens died with the grant.
    assert.equal((await userinfo(rotated.accessToken)).status, 401);
    await assert.rejects(winner.refresh(credentialId), isCode('reauth_required', 'invalid_grant'));
  });
});

describe('revocation (RFC 7009)', () => {
  test('revoking the refresh token ends the grant: the next refresh is reauth_required', async () => {
    const tokenSet = await connect();
    const credentialId = 'revoked';
    const manager = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
    await manager.save(credentialId, tokenSet);
    const before = server.snapshot();

    const refreshToken = tokenSet.refreshToken;
    assert.ok(refreshToken);
    await processRevocationResponse(await revocationRequest(client, refreshToken, 'refresh_token'));
    // RFC 7009 §2.2: a token the server does not know is answered 200 too.
    await processRevocationResponse(
      await revocationRequest(client, 'no-such-token', 'refresh_token'),
    );

    await assert.rejects(manager.refresh(credentialId), isCode('reauth_required', 'invalid_grant'));
    const authorizedFetch = manager.authorizedFetch(credentialId, { strategy: 'on-demand' });
    await assert.rejects(
      authorizedFetch(server.endpoints.userinfoUrl),
      isCode('reauth_required'),
      'the access token went with the grant, and the refresh after the 401 fails',
    );
    assert.deepEqual(
      pick(
        countersSince(before, server.snapshot()),
        'grantsRevokedByRevocation',
        'invalidGrant',
        'userinfoUnauthorized',
        'refreshGrants',
      ),
      { grantsRevokedByRevocation: 1, invalidGrant: 2, userinfoUnauthorized: 1, refreshGrants: 0 },
    );
  });
});

describe('harness health', () => {
  test('the provider reported no server_error and the interaction handler never failed', () => {
    assert.deepEqual(
      pick(server.snapshot(), 'serverErrors', 'interactionErrors', 'userinfoOther'),
      {
        serverErrors: 0,
        interactionErrors: 0,
        userinfoOther: 0,
      },
    );
  });
});
