import { inspect } from 'node:util';
import { isSecretKey, redact } from './redact.ts';

/**
 * A token endpoint's answer as the provider sent it (RFC 6749 §5.1), after
 * validation. Unknown members (Salesforce `instance_url`, Slack `team`) are kept.
 */
export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  id_token?: string;
  [member: string]: unknown;
}

/**
 * The plain, storable form of a token set. It holds secrets: only stores and the
 * code that hands a token to its user touch it.
 */
export interface StoredTokenSet {
  /** Every member the provider sent, merged over earlier responses. */
  tokens: TokenResponse;
  /**
   * Absolute expiry in milliseconds since the epoch, or null when unknown.
   * Milliseconds, not seconds: with one-second tokens a whole second of rounding
   * would make every token look expired on arrival.
   */
  expires_at_ms: number | null;
  /** When the response that set the current access token arrived (ms since the epoch). */
  received_at_ms: number;
}

/**
 * A token set that cannot leak by accident: `JSON.stringify`, `console.log`,
 * `util.inspect` and template strings all print a redacted summary. The secrets
 * are reached only through the explicit accessors and {@link TokenSet.toStored}.
 */
export class TokenSet {
  readonly #stored: StoredTokenSet;
  #extra: Readonly<Record<string, unknown>> | undefined;

  private constructor(stored: StoredTokenSet) {
    this.#stored = stored;
  }

  /**
   * A token set from a fresh token response.
   *
   * @param receivedAt when the response arrived, in milliseconds (Date.now()).
   * @param defaultLifetimeSeconds the profile's assumed lifetime when `expires_in` is absent.
   */
  static fromResponse(
    response: TokenResponse,
    receivedAt: number,
    defaultLifetimeSeconds?: number,
  ): TokenSet {
    const lifetime = response.expires_in ?? defaultLifetimeSeconds;
    return new TokenSet({
      tokens: { ...response },
      expires_at_ms: lifetime === undefined ? null : receivedAt + Math.floor(lifetime * 1000),
      received_at_ms: receivedAt,
    });
  }

  /** Rebuilds a token set from its stored form, checking its shape. */
  static fromStored(stored: StoredTokenSet): TokenSet {
    const tokens: unknown = stored?.tokens;
    if (
      typeof tokens !== 'object' ||
      tokens === null ||
      typeof (tokens as TokenResponse).access_token !== 'string' ||
      typeof (tokens as TokenResponse).token_type !== 'string' ||
      // a refresh token of another type would reach the token endpoint as garbage
      !['string', 'undefined'].includes(typeof (tokens as TokenResponse).refresh_token) ||
      !(stored.expires_at_ms === null || Number.isFinite(stored.expires_at_ms)) ||
      !Number.isFinite(stored.received_at_ms)
    ) {
      throw new TypeError(
        'stored token set is malformed: expected {tokens: {access_token, token_type, …}, expires_at_ms, received_at_ms}',
      );
    }
    return new TokenSet({
      tokens: { ...(tokens as TokenResponse) },
      expires_at_ms: stored.expires_at_ms,
      received_at_ms: stored.received_at_ms,
    });
  }

  /**
   * Merges a refresh response over this set: members the response carries replace
   * the old ones, members it omits are kept (above all `refresh_token`, which most
   * providers send only when it changes). The expiry is recomputed from the new
   * response alone: an old `expires_in` says nothing about a new access token.
   */
  merge(response: TokenResponse, receivedAt: number, defaultLifetimeSeconds?: number): TokenSet {
    const next = TokenSet.fromResponse(response, receivedAt, defaultLifetimeSeconds);
    const tokens: TokenResponse = { ...this.#stored.tokens, ...next.#stored.tokens };
    if (response.expires_in === undefined) delete tokens.expires_in;
    return new TokenSet({ ...next.#stored, tokens });
  }

  get accessToken(): string {
    return this.#stored.tokens.access_token;
  }

  get refreshToken(): string | undefined {
    return this.#stored.tokens.refresh_token;
  }

  /** The token type as an `Authorization` scheme: `Bearer` for any spelling of bearer. */
  get authorizationScheme(): string {
    const type = this.#stored.tokens.token_type;
    return type.toLowerCase() === 'bearer' ? 'Bearer' : type;
  }

  get tokenType(): string {
    return this.#stored.tokens.token_type;
  }

  get scope(): string | undefined {
    return this.#stored.tokens.scope;
  }

  /** Expiry in whole seconds since the epoch (rounded down), or undefined when neither the provider nor the profile says. */
  get expiresAt(): number | undefined {
    const ms = this.#stored.expires_at_ms;
    return ms === null ? undefined : Math.floor(ms / 1000);
  }

  /** Expiry in milliseconds since the epoch, or undefined when unknown. */
  get expiresAtMs(): number | undefined {
    return this.#stored.expires_at_ms ?? undefined;
  }

  /** When the current access token arrived, in milliseconds since the epoch. */
  get receivedAtMs(): number {
    return this.#stored.received_at_ms;
  }

  /** The access token's lifetime as issued, in seconds, when known. */
  get lifetimeSeconds(): number | undefined {
    const expiresAt = this.#stored.expires_at_ms;
    return expiresAt === null ? undefined : (expiresAt - this.#stored.received_at_ms) / 1000;
  }

  /** Seconds left before expiry at `now` (milliseconds), or undefined when unknown. */
  secondsLeft(now: number = Date.now()): number | undefined {
    const expiresAt = this.#stored.expires_at_ms;
    return expiresAt === null ? undefined : (expiresAt - now) / 1000;
  }

  /**
   * Non-secret members of the response (`instance_url`, `scope`, …), for callers
   * and APIs. Computed once (a token set never changes) and frozen: the vault's
   * token endpoint answers with it on every call.
   */
  get extra(): Readonly<Record<string, unknown>> {
    if (this.#extra !== undefined) return this.#extra;
    const extra: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this.#stored.tokens)) {
      if (!isSecretKey(key) && key !== 'token_type' && key !== 'expires_in')
        extra[key] = redact(value);
    }
    this.#extra = Object.freeze(extra);
    return this.#extra;
  }

  /** A member of the response by name (`instance_url`), secrets included. */
  get(member: string): unknown {
    return this.#stored.tokens[member];
  }

  /** The whole response, secrets included: for stores and for `updateKeys`. */
  toStored(): StoredTokenSet {
    return {
      tokens: { ...this.#stored.tokens },
      expires_at_ms: this.#stored.expires_at_ms,
      received_at_ms: this.#stored.received_at_ms,
    };
  }

  /** What logging shows: which members exist, never their secret values. */
  toJSON(): Record<string, unknown> {
    return {
      tokens: redact(this.#stored.tokens),
      expires_at_ms: this.#stored.expires_at_ms,
      received_at_ms: this.#stored.received_at_ms,
    };
  }

  toString(): string {
    const expiresAt = this.#stored.expires_at_ms;
    return `TokenSet(${this.tokenType}, expires ${expiresAt === null ? 'unknown' : new Date(expiresAt).toISOString()})`;
  }

  [inspect.custom](): string {
    return `TokenSet ${inspect(this.toJSON(), { depth: 3 })}`;
  }
}
