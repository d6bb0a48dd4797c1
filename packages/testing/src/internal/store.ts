import { randomBytes, randomUUID } from 'node:crypto';

/** One authorization: everything issued from one approved authorization request descends from it. */
export interface Grant {
  readonly id: string;
  readonly clientId: string;
  readonly scopes: readonly string[];
  readonly sub: string;
  revoked: boolean;
  /** Rotated-away refresh tokens, oldest first; capped so a long benchmark stays flat. */
  readonly usedRefreshTokens: string[];
}

export interface AccessTokenRecord {
  readonly grant: Grant;
  readonly scope: string;
  expiresAt: number;
  revoked: boolean;
}

export interface RefreshTokenRecord {
  readonly grant: Grant;
  /** When it was rotated away; `null` while it is the current one. */
  usedAt: number | null;
  /** Until when a rotated-away token is still accepted (`rotating` personalities). */
  graceUntil: number;
}

export interface AuthorizationCodeRecord {
  readonly clientId: string;
  readonly redirectUri: string;
  /** RFC 6749 §4.1.3: redirect_uri is required at the token endpoint only if it was sent here. */
  readonly redirectUriSent: boolean;
  readonly codeChallenge: string | null;
  readonly scopes: readonly string[];
  readonly sub: string;
  /** Google: `access_type=offline` and `prompt=consent` were both requested. */
  readonly offlineConsent: boolean;
  readonly expiresAt: number;
  /** Set on the successful exchange; a replay revokes it (RFC 6749 §4.1.2). */
  grant: Grant | null;
}

/** An authorization request waiting on the consent page. */
export interface PendingAuthorization {
  readonly clientId: string;
  readonly redirectUri: string;
  readonly redirectUriSent: boolean;
  readonly state: string | null;
  readonly scopes: readonly string[];
  readonly codeChallenge: string | null;
  readonly offlineConsent: boolean;
  readonly expiresAt: number;
}

export const CODE_LIFETIME_MS = 60_000;
export const CONSENT_LIFETIME_MS = 10 * 60_000;
/** Used codes are kept this long past their expiry so a late replay still revokes the grant. */
const USED_CODE_RETENTION_MS = 10 * 60_000;
const MAX_USED_REFRESH_TOKENS_PER_GRANT = 1000;

function randomToken(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** Every code, grant and token the fake provider has issued, in memory. */
export class TokenStore {
  readonly accessTokens = new Map<string, AccessTokenRecord>();
  readonly refreshTokens = new Map<string, RefreshTokenRecord>();
  readonly codes = new Map<string, AuthorizationCodeRecord>();
  readonly pending = new Map<string, PendingAuthorization>();
  /** Every code and token ever issued, when the provider was asked to remember them. */
  readonly issued: Set<string> | undefined;

  constructor(recordIssued = false) {
    this.issued = recordIssued ? new Set() : undefined;
  }

  #issue(prefix: string): string {
    const secret = randomToken(prefix);
    this.issued?.add(secret);
    return secret;
  }

  savePending(request: PendingAuthorization): string {
    const id = randomUUID();
    this.pending.set(id, request);
    return id;
  }

  /** One-time: the consent decision consumes the request. */
  takePending(id: string, now: number): PendingAuthorization | undefined {
    const request = this.pending.get(id);
    if (request === undefined) return undefined;
    this.pending.delete(id);
    return request.expiresAt > now ? request : undefined;
  }

  createCode(record: Omit<AuthorizationCodeRecord, 'grant'>): string {
    const code = this.#issue('code_');
    this.codes.set(code, { ...record, grant: null });
    return code;
  }

  createGrant(clientId: string, scopes: readonly string[], sub: string): Grant {
    return { id: randomUUID(), clientId, scopes, sub, revoked: false, usedRefreshTokens: [] };
  }

  issueAccessToken(grant: Grant, scopes: readonly string[], expiresAt: number): string {
    const token = this.#issue('at_');
    this.accessTokens.set(token, { grant, scope: scopes.join(' '), expiresAt, revoked: false });
    return token;
  }

  issueRefreshToken(grant: Grant): string {
    const token = this.#issue('rt_');
    this.refreshTokens.set(token, { grant, usedAt: null, graceUntil: 0 });
    return token;
  }

  markRefreshTokenUsed(
    token: string,
    record: RefreshTokenRecord,
    now: number,
    graceMs: number,
  ): void {
    record.usedAt = now;
    record.graceUntil = now + graceMs;
    const used = record.grant.usedRefreshTokens;
    used.push(token);
    if (used.length > MAX_USED_REFRESH_TOKENS_PER_GRANT) {
      const oldest = used.shift();
      if (oldest !== undefined) this.refreshTokens.delete(oldest);
    }
  }

  /** Kills the grant and, through it, every access and refresh token descended from it. */
  revokeGrant(grant: Grant): boolean {
    if (grant.revoked) return false;
    grant.revoked = true;
    return true;
  }

  /** Returns how many access tokens were valid. */
  revokeAllAccessTokens(now: number): number {
    let count = 0;
    for (const record of this.accessTokens.values()) {
      if (isValid(record, now)) count++;
      record.revoked = true;
    }
    return count;
  }

  /** Returns how many access tokens were valid. */
  expireAllAccessTokens(now: number): number {
    let count = 0;
    for (const record of this.accessTokens.values()) {
      if (isValid(record, now)) {
        count++;
        record.expiresAt = now;
      }
    }
    return count;
  }

  /**
   * Drops what can no longer be used. Revoked access tokens are kept until
   * they would have expired, so a 401 still says "revoked" rather than "unknown".
   */
  prune(now: number): void {
    for (const [token, record] of this.accessTokens) {
      if (record.expiresAt <= now) this.accessTokens.delete(token);
    }
    for (const [token, record] of this.refreshTokens) {
      if (record.grant.revoked) this.refreshTokens.delete(token);
    }
    for (const [code, record] of this.codes) {
      const keepUntil =
        record.grant === null ? record.expiresAt : record.expiresAt + USED_CODE_RETENTION_MS;
      if (keepUntil <= now) this.codes.delete(code);
    }
    for (const [id, request] of this.pending) {
      if (request.expiresAt <= now) this.pending.delete(id);
    }
  }
}

export function isValid(record: AccessTokenRecord, now: number): boolean {
  return !record.revoked && !record.grant.revoked && record.expiresAt > now;
}
