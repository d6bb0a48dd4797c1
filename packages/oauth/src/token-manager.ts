import type { AuthClient } from './auth-client.ts';
import { type AuthorizedFetchOptions, createAuthorizedFetch } from './authorized-fetch.ts';
import { TokenwardenError } from './errors.ts';
import { type RefreshOptions, refreshTokenSet } from './refresh.ts';
import { SingleFlight } from './single-flight.ts';
import type { StoredCredential, TokenStore } from './store.ts';
import { type TokenResponse, TokenSet } from './token-set.ts';

/** What a caller asks of a token source. */
export interface TokenRequest {
  /**
   * Refresh first when fewer seconds than this are left. Capped at half the
   * token's lifetime, so a large margin can never cause a refresh on every call.
   */
  minValiditySeconds?: number;
  /**
   * Compare-and-refresh: the token the caller saw rejected. If it is still the
   * current one, refresh; if another caller already replaced it, return the newer
   * token without a second refresh.
   */
  staleAccessToken?: string;
  /** Refresh before answering (the `every-access` strategy). */
  forceRefresh?: boolean;
}

/** Anything that hands out valid tokens for one credential: the local manager, or the vault over HTTP. */
export interface TokenSource {
  readonly credentialId: string;
  getToken(request?: TokenRequest): Promise<TokenSet>;
}

/** Why a token set was written. */
export type TokenChangeReason = 'refreshed' | 'updated-keys' | 'imported';

export interface TokensChangedEvent {
  credentialId: string;
  tokenSet: TokenSet;
  reason: TokenChangeReason;
  /** Why the refresh happened, for logs and metrics: `expiring`, `stale-token`, `forced`. */
  trigger?: string;
}

export interface TokenManagerOptions {
  store: TokenStore;
  /** The auth client that refreshes a credential. */
  authClient: AuthClient | ((credentialId: string) => AuthClient | Promise<AuthClient>);
  /**
   * Called with the whole merged token set after it was stored and before any
   * caller gets it (the `updateKeys` of elastic.io components). Awaited: if it
   * throws, callers get the error, and the stored set stays.
   */
  onTokens?: (event: TokensChangedEvent) => void | Promise<void>;
  /** Network, timeout and retry settings for refresh grants. */
  refresh?: RefreshOptions;
  now?: () => number;
}

/** How many times a save is retried when another writer changed the record meanwhile. */
const MAX_SAVE_CONFLICTS = 5;

/**
 * Keeps credentials' tokens valid: reads them from a store, refreshes when asked
 * or needed, with at most one refresh per credential at a time in this process,
 * and stores every new token set before anyone uses it.
 */
export class TokenManager {
  readonly #options: TokenManagerOptions;
  readonly #flights = new SingleFlight<TokenSet>();
  readonly #parsed = new Map<string, { version: number; tokenSet: TokenSet }>();
  readonly #now: () => number;

  constructor(options: TokenManagerOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /** Stores a token set obtained elsewhere (a code exchange, an import). */
  async save(
    credentialId: string,
    tokenSet: TokenSet,
    reason: TokenChangeReason = 'imported',
  ): Promise<void> {
    const current = await this.#options.store.load(credentialId);
    const version = await this.#options.store.compareAndSet(
      credentialId,
      current?.version ?? null,
      tokenSet.toStored(),
    );
    if (version === undefined) {
      throw new TokenwardenError(
        'store_conflict',
        `credential ${credentialId} changed while it was being saved; try again`,
        {
          credentialId,
        },
      );
    }
    await this.#options.onTokens?.({ credentialId, tokenSet, reason });
  }

  /** A valid token set, refreshed first when the request asks or the token is close to expiry. */
  async getToken(credentialId: string, request: TokenRequest = {}): Promise<TokenSet> {
    const tokenSet = await this.#current(credentialId);
    const trigger = this.#refreshTrigger(tokenSet, request);
    if (trigger === undefined) return tokenSet;
    return this.refresh(credentialId, { expectedAccessToken: tokenSet.accessToken, trigger });
  }

  /**
   * Refreshes unless the current access token is no longer `expectedAccessToken`
   * (then the newer token is returned as it is). Concurrent calls for one
   * credential share one refresh.
   */
  async refresh(
    credentialId: string,
    options: { expectedAccessToken?: string; trigger?: string } = {},
  ): Promise<TokenSet> {
    const shared = await this.#refreshShared(credentialId, options);
    // Joining a refresh that began from an older token can yield the very token this
    // caller saw rejected (it was written meanwhile, e.g. by updateKeys): refresh again.
    if (
      options.expectedAccessToken !== undefined &&
      shared.accessToken === options.expectedAccessToken
    ) {
      return this.#refreshShared(credentialId, options);
    }
    return shared;
  }

  #refreshShared(
    credentialId: string,
    options: { expectedAccessToken?: string; trigger?: string },
  ): Promise<TokenSet> {
    return this.#flights.run(credentialId, async () => {
      // Re-read inside the flight: the caller's view may be older than the store's.
      const record = await this.#load(credentialId);
      const current = TokenSet.fromStored(record.tokenSet);
      if (
        options.expectedAccessToken !== undefined &&
        current.accessToken !== options.expectedAccessToken
      ) {
        return current;
      }
      const client = await this.#authClient(credentialId);
      let next: TokenSet;
      try {
        // Dated by this manager's clock, the one that later judges their expiry.
        next = await refreshTokenSet(client, current, { now: this.#now, ...this.#options.refresh });
      } catch (error) {
        throw error instanceof TokenwardenError ? error.forCredential(credentialId) : error;
      }
      await this.#store(credentialId, record, next);
      const event: TokensChangedEvent = { credentialId, tokenSet: next, reason: 'refreshed' };
      if (options.trigger !== undefined) event.trigger = options.trigger;
      await this.#options.onTokens?.(event);
      return next;
    });
  }

  /**
   * Merges a token response a component emitted (`updateKeys`) into the stored
   * credential, with the same compare-and-set as a refresh.
   */
  async updateKeys(credentialId: string, response: TokenResponse): Promise<TokenSet> {
    const client = await this.#authClient(credentialId);
    const receivedAt = this.#now();
    // Unlike a refresh, the response is merged onto the latest record on every
    // attempt: a refresh that landed meanwhile may have rotated the refresh token,
    // and the response may not carry one.
    for (let attempt = 0; attempt < MAX_SAVE_CONFLICTS; attempt++) {
      const record = await this.#load(credentialId);
      const next = TokenSet.fromStored(record.tokenSet).merge(
        response,
        receivedAt,
        client.profile.defaultAccessTokenLifetimeSeconds,
      );
      const saved = await this.#options.store.compareAndSet(
        credentialId,
        record.version,
        next.toStored(),
      );
      if (saved === undefined) continue;
      await this.#options.onTokens?.({ credentialId, tokenSet: next, reason: 'updated-keys' });
      return next;
    }
    throw new TokenwardenError(
      'store_conflict',
      `credential ${credentialId} kept changing while updated keys were being saved`,
      { credentialId },
    );
  }

  /** A {@link TokenSource} for one credential, for an authorized fetch. */
  source(credentialId: string): TokenSource {
    return { credentialId, getToken: (request) => this.getToken(credentialId, request) };
  }

  /**
   * An authorized `fetch` for one credential. The margin and the "expired"
   * statuses come from the auth client's profile unless `options` set them.
   */
  authorizedFetch(credentialId: string, options: AuthorizedFetchOptions = {}): typeof fetch {
    let ready: typeof fetch | undefined;
    let pending: Promise<typeof fetch> | undefined;
    const resolve = async () => {
      const { profile } = await this.#authClient(credentialId);
      ready = createAuthorizedFetch(this.source(credentialId), {
        marginSeconds: profile.expiryMarginSeconds,
        expiredStatuses: profile.expiredStatuses,
        ...options,
      });
      return ready;
    };
    const authorized = async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
      if (ready !== undefined) return ready(input, init);
      // A failed lookup (the auth client briefly unavailable) is not cached.
      pending ??= resolve().finally(() => {
        pending = undefined;
      });
      return (await pending)(input, init);
    };
    return authorized as typeof fetch;
  }

  /**
   * The stored token set. A TokenSet is immutable, so the one parsed for a
   * version is reused while the store still holds that version (the hot path of
   * the authorized fetch: no copy, no parse).
   */
  async #current(credentialId: string): Promise<TokenSet> {
    const cached = this.#parsed.get(credentialId);
    if (cached !== undefined && this.#options.store.version !== undefined) {
      if ((await this.#options.store.version(credentialId)) === cached.version)
        return cached.tokenSet;
    }
    const record = await this.#load(credentialId);
    const tokenSet = TokenSet.fromStored(record.tokenSet);
    this.#parsed.set(credentialId, { version: record.version, tokenSet });
    return tokenSet;
  }

  #refreshTrigger(tokenSet: TokenSet, request: TokenRequest): string | undefined {
    if (request.forceRefresh === true) return 'forced';
    if (request.staleAccessToken !== undefined && request.staleAccessToken === tokenSet.accessToken)
      return 'stale-token';
    if (request.minValiditySeconds !== undefined) {
      const left = tokenSet.secondsLeft(this.#now());
      const lifetime = tokenSet.lifetimeSeconds;
      if (left === undefined || lifetime === undefined) return undefined;
      const margin = Math.min(request.minValiditySeconds, lifetime / 2);
      if (left < margin) return left <= 0 ? 'expired' : 'expiring';
    }
    return undefined;
  }

  /** Saves with compare-and-set. On a conflict the just-refreshed set still wins: the provider issued it last. */
  async #store(credentialId: string, read: StoredCredential, next: TokenSet): Promise<void> {
    let expected = read.version;
    for (let attempt = 0; attempt < MAX_SAVE_CONFLICTS; attempt++) {
      const saved = await this.#options.store.compareAndSet(
        credentialId,
        expected,
        next.toStored(),
      );
      if (saved !== undefined) return;
      const latest = await this.#options.store.load(credentialId);
      if (latest === undefined) {
        throw new TokenwardenError(
          'credential_not_found',
          `credential ${credentialId} was deleted during a refresh`,
          { credentialId },
        );
      }
      expected = latest.version;
    }
    throw new TokenwardenError(
      'store_conflict',
      `credential ${credentialId} kept changing while a refreshed token set was being saved`,
      {
        credentialId,
      },
    );
  }

  async #load(credentialId: string): Promise<StoredCredential> {
    const record = await this.#options.store.load(credentialId);
    if (record === undefined) {
      throw new TokenwardenError(
        'credential_not_found',
        `credential ${credentialId} does not exist`,
        { credentialId },
      );
    }
    return record;
  }

  #authClient(credentialId: string): AuthClient | Promise<AuthClient> {
    const { authClient } = this.#options;
    return typeof authClient === 'function' ? authClient(credentialId) : authClient;
  }
}
