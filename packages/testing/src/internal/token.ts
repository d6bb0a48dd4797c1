import { createHash, createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { authenticateClient } from './client-auth.ts';
import type { ProviderContext } from './context.ts';
import type { FormParams, Reply } from './http.ts';
import { SALESFORCE_ORG_ID, SALESFORCE_USER_ID } from './identity.ts';
import type { RegisteredClient } from './options.ts';
import { parseScope } from './scope.ts';
import type { Grant } from './store.ts';

/** A parsed token request; `form` is null when the body was not form-encoded. */
export interface TokenRequestInput {
  readonly form: { readonly params: FormParams; readonly duplicate: string | null } | null;
}

type Format = 'json' | 'urlencoded';

/** RFC 7636 §4.1: code_verifier = 43*128 unreserved characters. */
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

/**
 * `POST /token`: the authorization-code and refresh-token grants, answered as
 * the configured personality would.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 */
export function tokenRequest(
  ctx: ProviderContext,
  req: IncomingMessage,
  input: TokenRequestInput,
): Reply {
  if (input.form === null) {
    return tokenError(
      ctx,
      'json',
      400,
      'invalid_request',
      'the body must be application/x-www-form-urlencoded',
    );
  }
  const { params, duplicate } = input.form;
  let format: Format = 'json';
  if (ctx.profile.salesforceFields) {
    const requested = params.get('format') ?? 'json';
    if (requested !== 'json' && requested !== 'urlencoded') {
      return tokenError(ctx, 'json', 400, 'invalid_request', 'format must be json or urlencoded');
    }
    format = requested;
  }
  if (duplicate !== null) {
    return tokenError(
      ctx,
      format,
      400,
      'invalid_request',
      `the parameter ${duplicate} was sent more than once`,
    );
  }

  const auth = authenticateClient(req, params, ctx.options.clients);
  if (!auth.ok) {
    const status = auth.error === 'invalid_client' ? 401 : 400;
    // §5.2: a failed Basic attempt must be answered with 401 and a challenge.
    const headers: Record<string, string> = auth.basicTried
      ? { 'www-authenticate': 'Basic realm="fake"' }
      : {};
    return tokenError(ctx, format, status, auth.error, auth.description, headers);
  }

  const grantType = params.get('grant_type');
  if (grantType === undefined)
    return tokenError(ctx, format, 400, 'invalid_request', 'grant_type is required');
  const now = Date.now();
  if (grantType === 'authorization_code') return codeGrant(ctx, auth.client, params, format, now);
  if (grantType === 'refresh_token') return refreshGrant(ctx, auth.client, params, format, now);
  return tokenError(
    ctx,
    format,
    400,
    'unsupported_grant_type',
    `grant_type ${grantType} is not supported`,
  );
}

function codeGrant(
  ctx: ProviderContext,
  client: RegisteredClient,
  params: FormParams,
  format: Format,
  now: number,
): Reply {
  const code = params.get('code');
  if (code === undefined)
    return tokenError(ctx, format, 400, 'invalid_request', 'code is required');
  const record = ctx.store.codes.get(code);
  // A code of another client is answered like an unknown one: no oracle.
  if (record === undefined || record.clientId !== client.clientId) {
    return tokenError(ctx, format, 400, 'invalid_grant', 'the authorization code is unknown');
  }
  if (record.grant !== null) {
    // §4.1.2: a code used twice is a sign of theft; the tokens issued with it go too.
    if (ctx.store.revokeGrant(record.grant)) ctx.counters.revokedGrants++;
    return tokenError(
      ctx,
      format,
      400,
      'invalid_grant',
      'the authorization code was already used; the tokens issued with it are revoked',
    );
  }
  if (record.expiresAt <= now)
    return tokenError(ctx, format, 400, 'invalid_grant', 'the authorization code expired');

  const redirectUri = params.get('redirect_uri');
  if ((record.redirectUriSent || redirectUri !== undefined) && redirectUri !== record.redirectUri) {
    return tokenError(
      ctx,
      format,
      400,
      'invalid_grant',
      'redirect_uri does not match the authorization request',
    );
  }

  const verifier = params.get('code_verifier');
  if (record.codeChallenge === null) {
    // RFC 9700 §2.1.1: a verifier without a challenge is a downgrade attempt.
    if (verifier !== undefined) {
      return tokenError(
        ctx,
        format,
        400,
        'invalid_grant',
        'code_verifier was sent but the authorization request had no code_challenge',
      );
    }
  } else {
    if (verifier === undefined)
      return tokenError(ctx, format, 400, 'invalid_grant', 'code_verifier is required');
    if (!CODE_VERIFIER.test(verifier) || s256(verifier) !== record.codeChallenge) {
      return tokenError(ctx, format, 400, 'invalid_grant', 'PKCE verification failed');
    }
  }

  const grant = ctx.store.createGrant(client.clientId, record.scopes, record.sub);
  record.grant = grant;
  const withRefreshToken = !ctx.profile.refreshTokenNeedsOfflineConsent || record.offlineConsent;
  const refreshToken = withRefreshToken ? ctx.store.issueRefreshToken(grant) : null;
  ctx.counters.codeExchanges++;
  return tokenSuccess(ctx, client, grant, record.scopes, refreshToken, format, now);
}

function refreshGrant(
  ctx: ProviderContext,
  client: RegisteredClient,
  params: FormParams,
  format: Format,
  now: number,
): Reply {
  const { profile, store, counters } = ctx;
  const token = params.get('refresh_token');
  if (token === undefined)
    return tokenError(ctx, format, 400, 'invalid_request', 'refresh_token is required');
  // Request syntax first: a malformed request must not count as a token reuse.
  const scopeParam = params.get('scope');
  if (scopeParam === undefined && profile.scopeRequiredOnRefresh) {
    return tokenError(
      ctx,
      format,
      400,
      'invalid_request',
      'scope is required when refreshing a token with this provider',
    );
  }
  const requestedScopes = scopeParam === undefined ? null : parseScope(scopeParam);
  if (scopeParam !== undefined && requestedScopes === null) {
    return tokenError(ctx, format, 400, 'invalid_scope', 'the scope parameter is malformed');
  }

  const record = store.refreshTokens.get(token);
  if (record === undefined || record.grant.clientId !== client.clientId) {
    return tokenError(ctx, format, 400, 'invalid_grant', 'the refresh token is unknown');
  }
  const grant = record.grant;
  if (grant.revoked)
    return tokenError(ctx, format, 400, 'invalid_grant', 'the grant has been revoked');

  if (record.usedAt !== null) {
    const inGrace = profile.rotation === 'rotating' && now < record.graceUntil;
    if (!inGrace) {
      counters.reusedRefreshTokens++;
      if (profile.rotation === 'single-use') {
        // RFC 9700 §4.14.2: either the client or an attacker holds a stolen token; end the grant.
        if (store.revokeGrant(grant)) counters.revokedGrants++;
        return tokenError(
          ctx,
          format,
          400,
          'invalid_grant',
          'the refresh token was already used; the grant is revoked',
        );
      }
      return tokenError(
        ctx,
        format,
        400,
        'invalid_grant',
        'the refresh token was replaced and its grace period is over',
      );
    }
  }

  const scopes = requestedScopes ?? grant.scopes;
  const extra = scopes.find((s) => !grant.scopes.includes(s));
  if (extra !== undefined) {
    return tokenError(
      ctx,
      format,
      400,
      'invalid_scope',
      `scope ${extra} was not part of the original grant`,
    );
  }

  let refreshToken: string | null = null;
  if (profile.rotation !== 'none') {
    refreshToken = store.issueRefreshToken(grant);
    // Within the grace period an old token may be used again; its grace does not restart.
    if (record.usedAt === null) {
      store.markRefreshTokenUsed(
        token,
        record,
        now,
        profile.rotation === 'rotating' ? ctx.options.refreshGraceMs : 0,
      );
    }
  }
  counters.refreshes++;
  return tokenSuccess(ctx, client, grant, scopes, refreshToken, format, now);
}

function tokenSuccess(
  ctx: ProviderContext,
  client: RegisteredClient,
  grant: Grant,
  scopes: readonly string[],
  refreshToken: string | null,
  format: Format,
  now: number,
): Reply {
  const lifetimeMs = ctx.options.accessTokenLifetimeMs;
  const accessToken = ctx.store.issueAccessToken(grant, scopes, now + lifetimeMs);
  const body: Record<string, string | number> = { access_token: accessToken, token_type: 'Bearer' };
  // expires_in is whole seconds; a fractional lifetime is rounded up, so a
  // client may believe in a token for up to a second after it expired.
  if (ctx.profile.sendsExpiresIn) body.expires_in = Math.max(1, Math.ceil(lifetimeMs / 1000));
  if (refreshToken !== null) body.refresh_token = refreshToken;
  body.scope = scopes.join(' ');
  if (ctx.profile.salesforceFields) {
    const id = `${ctx.urls.url}/id/${SALESFORCE_ORG_ID}/${SALESFORCE_USER_ID}`;
    const issuedAt = String(now);
    body.instance_url = ctx.urls.instanceUrl;
    body.id = id;
    body.issued_at = issuedAt;
    // Salesforce signs id + issued_at with the client secret so the client can check both.
    body.signature = createHmac('sha256', client.clientSecret)
      .update(id + issuedAt)
      .digest('base64');
  }
  return encode(200, body, format, {});
}

function tokenError(
  ctx: ProviderContext,
  format: Format,
  status: number,
  error: string,
  description: string,
  headers: Record<string, string> = {},
): Reply {
  if (error === 'invalid_grant') ctx.counters.invalidGrants++;
  return encode(status, { error, error_description: description }, format, headers);
}

/** §5.1: token answers must not be cached. */
function encode(
  status: number,
  body: Record<string, string | number>,
  format: Format,
  headers: Record<string, string>,
): Reply {
  const common = { 'cache-control': 'no-store', pragma: 'no-cache', ...headers };
  if (format === 'urlencoded') {
    const form = new URLSearchParams();
    for (const [key, value] of Object.entries(body)) form.set(key, String(value));
    return {
      status,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...common },
      body: form.toString(),
    };
  }
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...common },
    body: JSON.stringify(body),
  };
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}
