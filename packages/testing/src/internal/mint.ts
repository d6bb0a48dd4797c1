import type { MintedGrant, MintGrantsOptions, RefreshTokenStatus } from '../types.ts';
import type { ProviderContext } from './context.ts';
import { FAKE_USER } from './identity.ts';
import { DEFAULT_SCOPES, parseScope } from './scope.ts';

/** The most grants one `mintGrants` call (or `POST /_control/grants`) issues. */
export const MAX_MINTED_GRANTS = 10_000;

/**
 * Grants issued in bulk, as if the user had approved each authorization request
 * and the client had exchanged the code: one grant, one access token, one refresh
 * token each (also for personalities that need offline consent for one). For
 * seeding benchmarks with many credentials without two HTTP round trips each.
 */
export function mintGrants(ctx: ProviderContext, options: MintGrantsOptions): MintedGrant[] {
  const problems: string[] = [];
  const count = options?.count;
  if (!Number.isInteger(count) || count < 1 || count > MAX_MINTED_GRANTS)
    problems.push(`count must be a whole number from 1 to ${MAX_MINTED_GRANTS}`);
  const clients = ctx.options.clients;
  const clientId = options?.clientId ?? (clients.size === 1 ? [...clients.keys()][0] : undefined);
  if (typeof clientId !== 'string' || !clients.has(clientId))
    problems.push(
      options?.clientId === undefined
        ? 'clientId is required when several clients are registered'
        : `no client is registered with the id "${String(options.clientId)}"`,
    );
  const scopes =
    options?.scope === undefined
      ? DEFAULT_SCOPES
      : typeof options.scope === 'string'
        ? parseScope(options.scope)
        : null;
  if (scopes === null) problems.push('scope must be space-separated scope tokens');
  if (problems.length > 0) throw new TypeError(`cannot mint grants:\n- ${problems.join('\n- ')}`);

  const now = Date.now();
  const lifetimeMs = ctx.options.accessTokenLifetimeMs;
  const scope = (scopes as readonly string[]).join(' ');
  const minted: MintedGrant[] = [];
  for (let i = 0; i < count; i++) {
    const grant = ctx.store.createGrant(
      clientId as string,
      scopes as readonly string[],
      FAKE_USER.sub,
    );
    const accessToken = ctx.store.issueAccessToken(grant, grant.scopes, now + lifetimeMs);
    minted.push({
      grant_id: grant.id,
      access_token: accessToken,
      token_type: 'Bearer',
      // As the token endpoint answers: whole seconds, rounded up.
      ...(ctx.profile.sendsExpiresIn
        ? { expires_in: Math.max(1, Math.ceil(lifetimeMs / 1000)) }
        : {}),
      refresh_token: ctx.store.issueRefreshToken(grant),
      scope,
    });
  }
  return minted;
}

/** What the provider knows of each refresh token, without using any. */
export function refreshTokenStatus(
  ctx: ProviderContext,
  refreshTokens: readonly string[],
): RefreshTokenStatus[] {
  const now = Date.now();
  return refreshTokens.map((token) => {
    const record = typeof token === 'string' ? ctx.store.refreshTokens.get(token) : undefined;
    if (record === undefined) return { state: 'unknown', grantId: null, grantRevoked: null };
    const state =
      record.usedAt === null
        ? 'current'
        : ctx.profile.rotation === 'rotating' && now < record.graceUntil
          ? 'in-grace'
          : 'used';
    return { state, grantId: record.grant.id, grantRevoked: record.grant.revoked };
  });
}
