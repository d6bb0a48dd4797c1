import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AuthClient,
  processRefreshResponse,
  processRevocationResponse,
  type RetryPolicy,
  refreshGrantRequest,
  retryPolicyFor,
  revocationRequest,
  TokenEndpointError,
  type TokenResponse,
  type TokenSet,
  TokenwardenError,
  withRetry,
} from '@tokenwarden/oauth';
import type { Transaction } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from './db/schema.ts';
import { isDatabaseDown, VaultError } from './errors.ts';
import { refreshOutcome, type VaultMetrics } from './http/metrics.ts';
import { type BackoffPolicy, DEFAULT_BACKOFF, failureBackoffMs } from './refresher/backoff.ts';
import {
  type LimitPriority,
  type LimitSlot,
  type LimitTicket,
  LimitWaitAborted,
  type ProviderLimiter,
} from './refresher/provider-limits.ts';
import type { AuthClientRecord } from './store/auth-clients.ts';
import type {
  ClaimedCredential,
  CredentialRecord,
  CredentialWithTokens,
} from './store/credentials.ts';
import { newId } from './store/ids.ts';
import type { VaultStore } from './store/store.ts';

export interface CredentialServiceOptions {
  store: VaultStore;
  logger: Logger;
  /** This process, as named in leases. */
  instanceId: string;
  leaseMs: number;
  tokenRequestTimeoutMs: number;
  retry?: RetryPolicy;
  /** For tests: replaces the global fetch for token requests. */
  fetch?: typeof fetch;
  metrics?: VaultMetrics;
  /** Per-provider concurrency and rate of token-endpoint calls; none: unlimited. */
  limits?: ProviderLimiter;
  /** Backoff after failed refreshes (`failure_count`). Default 5 s doubling up to 5 min. */
  backoff?: BackoffPolicy;
  now?: () => number;
  random?: () => number;
}

/** What the background refresher decided for one claimed credential, and why. */
export type RefreshDecision =
  | { outcome: 'refreshed'; reason: string }
  /** Refreshed elsewhere (token endpoint, updateKeys, another replica), no longer due, or the lease was lost. */
  | { outcome: 'skipped'; reason: string }
  | { outcome: 'backed_off'; reason: string; code: string }
  | { outcome: 'reauth_required'; reason: string }
  /** The auth client is marked misconfigured: its credentials wait until it is edited. */
  | { outcome: 'paused'; reason: string }
  /** The refresher is stopping: the claim was given back untouched. */
  | { outcome: 'released'; reason: string };

/** One refresh under a lease this process holds. */
interface LeaseHeld {
  tenantId: string;
  id: string;
  /** Refresh only while this is still the access token (compare-and-refresh); undefined: refresh. */
  expected: string | undefined;
  /** The metric label and event member: stale-token, expired, expiring, forced, scheduled. */
  trigger: string;
  leaseOwner: string;
  leaseTakenAt: number;
  takenOver: boolean;
  force: boolean;
  priority: LimitPriority;
  retry: RetryPolicy | undefined;
  signal?: AbortSignal | undefined;
  /** The row as already read under the lease. */
  read?: CredentialWithTokens | undefined;
  /** A background waiter's ticket lands here, so a caller can move it to the front. */
  ticket?: ((ticket: LimitTicket) => void) | undefined;
  /** Receives the decision, as stored in `last_decision`. */
  decided?: ((decision: string) => void) | undefined;
}

/** A refresh that stopped before calling the provider because the lease went to someone else. */
class LeaseLost extends TokenwardenError {
  constructor(id: string) {
    super(
      'store_conflict',
      `credential ${id}: the refresh lease was taken over by another process`,
      {
        credentialId: id,
      },
    );
  }
}

/** A refresh whose credential was deleted before its answer could be stored. */
class DeletedDuringRefresh extends TokenwardenError {
  constructor(id: string) {
    super('credential_not_found', `credential ${id} was deleted during a refresh`, {
      credentialId: id,
    });
  }
}

/** What `DELETE /v1/credentials/:id` did at the provider, as its `revoked` event tells it. */
export interface ProviderRevocation {
  revoked: boolean;
  /** Why the revocation failed; never a token. */
  error?: string;
}

/** The internal check (no provider call): the auth client was already marked misconfigured. */
class AuthClientPaused extends TokenwardenError {}

function pausedError(authClient: AuthClientRecord): AuthClientPaused {
  return new AuthClientPaused(
    'client_misconfigured',
    `auth client ${authClient.id} is marked misconfigured (${authClient.statusReason ?? 'rejected by the provider'}); fix it with PATCH /v1/auth-clients/${authClient.id}`,
  );
}

export interface AccessTokenRequest {
  minValiditySeconds?: number | undefined;
  staleAccessToken?: string | undefined;
}

/**
 * Hands out valid tokens with one refresh per credential at a time across every
 * process sharing the database:
 *
 * - inside a process, concurrent callers share one in-flight refresh;
 * - across processes, a lease on the credential row (`lease_owner`,
 *   `lease_until`) admits one refresher; the others wait and re-read. A lease
 *   left by a dead process expires and is taken over;
 * - after taking the lease the row is read again (compare-and-refresh): if the
 *   token is no longer the one the caller saw, the newer one is returned and the
 *   provider is not called;
 * - the merged token set is committed (with a version compare-and-set and its
 *   event, in one transaction) before anyone gets it.
 *
 * The background refresher's claims are the same lease ({@link refreshClaimed}).
 * Every call to a token endpoint passes the provider's limits (`limits`), a
 * waiting caller before background work. Every failure is recorded with its
 * decision: reauth, a paused auth client, or a counted, backed-off retry.
 */
export class CredentialService {
  readonly #options: CredentialServiceOptions;
  readonly #store: VaultStore;
  readonly #now: () => number;
  /** In-process single-flight; undefined from a background refresh that had nothing to share. */
  readonly #flights = new Map<string, Promise<TokenSet | undefined>>();
  /** Background refreshes waiting for a provider slot, by credential: a caller promotes them. */
  readonly #tickets = new Map<string, LimitTicket>();
  readonly #backoff: BackoffPolicy;
  readonly #random: () => number;

  constructor(options: CredentialServiceOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
    this.#backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.#random = options.random ?? Math.random;
  }

  /**
   * `POST /v1/credentials/:id/access-token`, first try: the valid-token path without a wait: the token set from the token cache when
   * the credential is active and its token needs no refresh for `request`;
   * otherwise undefined, and the caller goes through `accessToken`.
   */
  cachedAccessToken(
    tenantId: string,
    id: string,
    request: AccessTokenRequest = {},
  ): TokenSet | undefined {
    const current = this.#store.credentials.peekServing(tenantId, id);
    if (current === undefined || current.record.status !== 'active') return undefined;
    if (refreshTrigger(current.tokenSet, request, this.#now()) !== undefined) return undefined;
    return current.tokenSet;
  }

  /** `POST /v1/credentials/:id/access-token`. */
  async accessToken(
    tenantId: string,
    id: string,
    request: AccessTokenRequest = {},
  ): Promise<TokenSet> {
    // The plain path's read may come from the token cache; a refresh reads again under the lease.
    const current = await this.#load(tenantId, id, true);
    assertUsable(current.record);
    const trigger = refreshTrigger(current.tokenSet, request, this.#now());
    if (trigger === undefined) return current.tokenSet;
    // Without a refresh token, a token that still works is better than none.
    if (trigger === 'expiring' && current.tokenSet.refreshToken === undefined)
      return current.tokenSet;
    const expected = current.tokenSet.accessToken;
    try {
      return await this.#refreshShared(tenantId, id, expected, trigger);
    } catch (error) {
      // An outage while the token still works: serve it (only when nobody reported it rejected).
      const left = current.tokenSet.secondsLeft(this.#now());
      if (
        error instanceof TokenwardenError &&
        error.transient &&
        trigger === 'expiring' &&
        left !== undefined &&
        left > 0
      ) {
        this.#options.logger.warn(
          { credentialId: id, code: error.code },
          'refresh failed; serving the still-valid token',
        );
        return current.tokenSet;
      }
      throw error;
    }
  }

  /**
   * The background refresher's call, for a credential it claimed: the claim is
   * the refresh lease, already held under `claim.leaseOwner`, so no second
   * acquire. Under the lease the row is read again: if someone refreshed it
   * meanwhile (`next_refresh_at` moved) nothing is done. The refresh waits for
   * the provider's limits at background priority, makes one attempt (a failure
   * is retried later through the backoff, not inside the lease), and the lease is
   * released when it is over. Never throws: the decision says what happened.
   */
  async refreshClaimed(claim: ClaimedCredential, signal?: AbortSignal): Promise<RefreshDecision> {
    const result = this.#refreshClaimedHolding(claim, signal);
    // Callers of this credential in this process share the refresh (unless one of
    // theirs is already under way: it waits for this lease and sees the new token).
    if (!this.#flights.has(claim.id)) {
      const flight = result.then((outcome) => {
        if (outcome.error !== undefined && outcome.decision.outcome !== 'skipped')
          throw outcome.error;
        return outcome.tokenSet;
      });
      const settled = flight.finally(() => {
        if (this.#flights.get(claim.id) === settled) this.#flights.delete(claim.id);
      });
      settled.catch(() => undefined);
      this.#flights.set(claim.id, settled);
    }
    return (await result).decision;
  }

  async #refreshClaimedHolding(
    claim: ClaimedCredential,
    signal: AbortSignal | undefined,
  ): Promise<{ decision: RefreshDecision; tokenSet?: TokenSet | undefined; error?: unknown }> {
    const { id, tenantId, leaseOwner } = claim;
    const skipped = (reason: string, tokenSet?: TokenSet) => ({
      decision: { outcome: 'skipped' as const, reason },
      tokenSet,
    });
    let release = true;
    try {
      const current = await this.#store.credentials.getWithTokens(tenantId, id);
      if (current === undefined) return skipped('deleted since it was claimed');
      if (current.leaseOwner !== leaseOwner) {
        release = false;
        return skipped(
          `refreshed elsewhere: the claim expired and ${current.leaseOwner ?? 'nobody'} holds the lease now`,
          current.tokenSet,
        );
      }
      if (current.record.status !== 'active')
        return skipped(`status is ${current.record.status}`, current.tokenSet);
      const due = current.record.nextRefreshAt;
      let trigger = 'scheduled';
      if (due === null || due > this.#now()) {
        // Not due, but taken from a holder that died during a refresh: if the provider
        // rotated the refresh token before the death, the stored one lives only for the
        // grace period. Refresh now while it does. Only `rotating` has one: a spent
        // single-use token gains nothing from a retry and may cost the grant if the
        // holder is only slow, and with `none` nothing is in doubt.
        const inGrace =
          claim.takenOverFrom !== null &&
          (await this.#client(tenantId, current.record.authClientId)).client.profile.rotation ===
            'rotating';
        if (!inGrace)
          return skipped(`refreshed elsewhere; ${describeSchedule(due)}`, current.tokenSet);
        trigger = 'taken-over';
      }
      let decided = '';
      try {
        const tokenSet = await this.#refreshHoldingLease({
          tenantId,
          id,
          expected: current.tokenSet.accessToken,
          trigger,
          leaseOwner,
          leaseTakenAt: claim.leaseUntil - this.#options.leaseMs,
          takenOver: claim.takenOverFrom !== null,
          force: false,
          priority: 'background',
          retry: { ...this.#options.retry, maxAttempts: 1 },
          signal,
          read: current,
          ticket: (ticket) => this.#tickets.set(id, ticket),
          decided: (text) => {
            decided = text;
          },
        });
        // Released below, by owner: the commit no longer releases it (a claim kept after a
        // successful refresh blocked the credential's callers for a whole lease: R2, R3).
        return { decision: { outcome: 'refreshed', reason: decided }, tokenSet };
      } catch (error) {
        if (error instanceof LimitWaitAborted)
          return {
            decision: { outcome: 'released', reason: 'the refresher is stopping' },
            tokenSet: current.tokenSet,
          };
        if (error instanceof LeaseLost) {
          release = false;
          return { ...skipped(`refreshed elsewhere: ${error.message}`), error };
        }
        if (error instanceof DeletedDuringRefresh)
          return { ...skipped('deleted during the refresh; its answer was discarded'), error };
        const code = error instanceof TokenwardenError ? error.code : 'internal_error';
        const reason = decided || (error instanceof Error ? error.message : String(error));
        const decision: RefreshDecision =
          code === 'reauth_required'
            ? { outcome: 'reauth_required', reason }
            : code === 'client_misconfigured'
              ? { outcome: 'paused', reason }
              : { outcome: 'backed_off', reason, code };
        return { decision, error };
      } finally {
        this.#tickets.delete(id);
      }
    } catch (error) {
      // Reading the row failed (database outage): the claim expires and is retried.
      return {
        decision: {
          outcome: 'backed_off',
          reason: `could not read the credential: ${error instanceof Error ? error.message : String(error)}`,
          code: 'internal_error',
        },
        error,
      };
    } finally {
      if (release)
        await this.#store.credentials.releaseLease(id, leaseOwner).catch(() => undefined);
    }
  }

  /** `POST /v1/credentials/:id/refresh`: refresh now, whatever the expiry. */
  async forceRefresh(tenantId: string, id: string): Promise<CredentialRecord> {
    const current = await this.#load(tenantId, id);
    if (current.record.status === 'revoked') assertUsable(current.record);
    await this.#refreshShared(tenantId, id, current.tokenSet.accessToken, 'forced', true);
    return (await this.#load(tenantId, id)).record;
  }

  /**
   * `DELETE /v1/credentials/:id`: revokes the grant at the provider (RFC 7009) where
   * the profile has a revocation endpoint, then deletes the credential with its
   * `revoked` event, all under the credential's refresh lease. So no refresh (token
   * endpoint, background refresher, another replica) runs meanwhile: none can rotate
   * the token at the provider after it was revoked, nor commit into the deleted row.
   *
   * A refresh under way is waited for, as long as a caller of the token endpoint
   * waits for one (lease + token request timeout), and the token set it stored is
   * the one revoked. A lease left by a dead process has expired and is taken over.
   * A lease still held after the wait (a live process kept renewing it) is a
   * `conflict`: nothing was revoked or deleted, try again. Deleting regardless would
   * let that refresh rotate the grant after the revocation.
   * A failed revocation does not stop the delete; the event reports it.
   */
  async deleteCredential(tenantId: string, id: string): Promise<ProviderRevocation> {
    const { leaseMs, tokenRequestTimeoutMs } = this.#options;
    const credentials = this.#store.credentials;
    const notFound = () =>
      new TokenwardenError('credential_not_found', `credential ${id} does not exist`, {
        credentialId: id,
      });
    // Its own owner, neither the token endpoint's (the bare instance id) nor a claim's,
    // so that no release by another path of this process can free the delete's lease.
    const owner = `${this.#options.instanceId}~${newId('delete')}`;
    const deadline = this.#now() + leaseMs + tokenRequestTimeoutMs;
    for (let pause = 10; ; pause = Math.min(pause * 2, 200)) {
      // Checked first, so another tenant's id never touches that credential's lease.
      if ((await credentials.get(tenantId, id)) === undefined) throw notFound();
      const lease = await credentials.tryAcquireLease(id, owner, this.#now(), leaseMs);
      if (lease.acquired) break;
      if (this.#now() > deadline) {
        throw new VaultError(
          'conflict',
          `credential ${id} was not deleted: a refresh ${lease.owner === null ? 'by another vault process' : `by vault process ${lease.owner}`} has held its refresh lease for more than ${Math.ceil((leaseMs + tokenRequestTimeoutMs) / 1000)} s; try again`,
        );
      }
      await sleep(pause + Math.floor(Math.random() * pause));
    }
    try {
      // Read again under the lease: a refresh that just ended may have rotated the token.
      const current = await credentials.getWithTokens(tenantId, id);
      if (current === undefined) throw notFound();
      const revocation = await this.#revokeAtProvider(current);
      await this.#store.db.transaction().execute(async (trx) => {
        if (!(await credentials.delete(tenantId, id, trx))) throw notFound();
        await this.#store.events.append(
          {
            type: 'revoked',
            tenantId,
            credentialId: id,
            authClientId: current.record.authClientId,
            data: { providerRevocation: revocation },
          },
          this.#now(),
          trx,
        );
      });
      return revocation;
    } finally {
      // A no-op once the row is gone; frees the credential when the delete failed.
      await credentials.releaseLease(id, owner).catch(() => undefined);
    }
  }

  /** Revokes a credential's refresh token (or else its access token) where the provider can. */
  async #revokeAtProvider(current: CredentialWithTokens): Promise<ProviderRevocation> {
    const { id, tenantId, authClientId } = current.record;
    const resolved = await this.#store.authClients.resolve(tenantId, authClientId);
    if (resolved?.client.revocationUrl === undefined) return { revoked: false };
    const { refreshToken, accessToken } = current.tokenSet;
    try {
      await this.#revoke(
        resolved.client,
        refreshToken ?? accessToken,
        refreshToken === undefined ? 'access_token' : 'refresh_token',
      );
      return { revoked: true };
    } catch (error) {
      this.#options.logger.warn(
        { credentialId: id, code: error instanceof TokenwardenError ? error.code : undefined },
        'revocation at the provider failed; deleting anyway',
      );
      return { revoked: false, error: this.#failureMessage(error, 'revocation', id) };
    }
  }

  async #revoke(
    client: AuthClient,
    token: string,
    hint: 'refresh_token' | 'access_token',
  ): Promise<void> {
    const response = await revocationRequest(client, token, hint, {
      timeoutMs: this.#options.tokenRequestTimeoutMs,
      ...(this.#options.fetch === undefined ? {} : { fetch: this.#options.fetch }),
    });
    await processRevocationResponse(response);
  }

  /**
   * The message stored for a failure (a credential's last error and decision, events,
   * webhooks): a TokenwardenError's own, written for users and free of secrets; for
   * anything else a fixed text with an id, and the whole error only in the log, with
   * that id: an unexpected error's message can carry internal detail (SQL, paths,
   * addresses, a library's view of a request).
   */
  #failureMessage(error: unknown, during: string, credentialId: string): string {
    if (error instanceof TokenwardenError) return error.message;
    const errorId = newId('err');
    this.#options.logger.error(
      { credentialId, errorId, err: error },
      `unexpected error during ${during}`,
    );
    return `internal error during ${during}; see the vault's log (error id ${errorId})`;
  }

  /**
   * `PUT /v1/credentials/:id/keys`: the `updateKeys` of a component. The response
   * is merged (omitted members kept) and stored with compare-and-set; the
   * refresh schedule moves, so the background refresher does not refresh twice.
   */
  async updateKeys(
    tenantId: string,
    id: string,
    response: TokenResponse,
  ): Promise<CredentialRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.#load(tenantId, id);
      const { client } = await this.#client(tenantId, current.record.authClientId);
      const next = current.tokenSet.merge(
        response,
        this.#now(),
        client.profile.defaultAccessTokenLifetimeSeconds,
      );
      const now = this.#now();
      const saved = await this.#store.db.transaction().execute(async (trx) => {
        const ok = await this.#store.credentials.saveTokens(
          trx,
          id,
          current.version,
          next,
          {
            refreshed: false,
            nextRefreshAt: nextRefreshAt(next, client),
            decision: `keys updated by a component (updateKeys); ${describeSchedule(nextRefreshAt(next, client))}`,
          },
          now,
        );
        if (ok) {
          await this.#store.events.append(
            {
              type: 'keys_updated',
              tenantId,
              credentialId: id,
              authClientId: current.record.authClientId,
              data: eventData(next, current.tokenSet),
            },
            now,
            trx,
          );
        }
        return ok;
      });
      if (saved) return (await this.#load(tenantId, id)).record;
    }
    throw new TokenwardenError(
      'store_conflict',
      `credential ${id} kept changing while keys were being updated; try again`,
      { credentialId: id },
    );
  }

  /** `POST /v1/credentials`: a token set obtained elsewhere, or by the connect flow. */
  async createCredential(
    tenantId: string,
    authClient: { record: AuthClientRecord; client: AuthClient },
    tokenSet: TokenSet,
    source: 'import' | 'connect',
  ): Promise<CredentialRecord> {
    const id = newId('cr');
    const now = this.#now();
    const missingRefreshToken =
      authClient.client.profile.refreshTokenExpected && tokenSet.refreshToken === undefined;
    return this.#store.db.transaction().execute(async (trx) => {
      const record = await this.#store.credentials.create(
        {
          id,
          tenantId,
          authClientId: authClient.record.id,
          tokenSet,
          flags: { missingRefreshToken },
          nextRefreshAt: nextRefreshAt(tokenSet, authClient.client),
        },
        now,
        trx,
      );
      await this.#store.events.append(
        {
          type: 'connected',
          tenantId,
          credentialId: id,
          authClientId: authClient.record.id,
          data: { source, missingRefreshToken, ...eventData(tokenSet) },
        },
        now,
        trx,
      );
      return record;
    });
  }

  async #client(
    tenantId: string,
    authClientId: string,
  ): Promise<{ record: AuthClientRecord; client: AuthClient }> {
    const resolved = await this.#store.authClients.resolve(tenantId, authClientId);
    if (resolved === undefined) {
      throw new TokenwardenError(
        'invalid_configuration',
        `auth client ${authClientId} no longer exists`,
      );
    }
    return resolved;
  }

  async #load(tenantId: string, id: string, serving = false): Promise<CredentialWithTokens> {
    const current = serving
      ? await this.#store.credentials.getServing(tenantId, id)
      : await this.#store.credentials.getWithTokens(tenantId, id);
    if (current === undefined) {
      throw new TokenwardenError('credential_not_found', `credential ${id} does not exist`, {
        credentialId: id,
      });
    }
    return current;
  }

  /** One refresh per credential in this process; callers arriving meanwhile share it. */
  async #refreshShared(
    tenantId: string,
    id: string,
    expected: string,
    trigger: string,
    force = false,
  ): Promise<TokenSet> {
    const inFlight = this.#flights.get(id);
    if (inFlight !== undefined) {
      // A background refresh of this credential waiting for the provider's limit: a caller waits now.
      this.#tickets.get(id)?.promote();
      // A refresh that began from an older token can end with the very token this
      // caller reports stale (when it ran longer than a token lifetime): then refresh again.
      const shared = await inFlight;
      if (shared !== undefined && shared.accessToken !== expected) return shared;
      return this.#refreshShared(tenantId, id, expected, trigger, force);
    }
    const flight = this.#refreshAcrossProcesses(tenantId, id, expected, trigger, force).finally(
      () => this.#flights.delete(id),
    );
    this.#flights.set(id, flight);
    return flight;
  }

  async #refreshAcrossProcesses(
    tenantId: string,
    id: string,
    expected: string,
    trigger: string,
    force: boolean,
  ): Promise<TokenSet> {
    const { leaseMs, instanceId } = this.#options;
    const waitStarted = this.#now();
    const deadline = waitStarted + leaseMs + this.#options.tokenRequestTimeoutMs;
    const waited = (outcome: string) => {
      if (pause > 10)
        this.#options.metrics?.leaseWait.observe({ outcome }, (this.#now() - waitStarted) / 1000);
    };
    let pause = 10;
    for (;;) {
      const current = await this.#load(tenantId, id);
      if (current.tokenSet.accessToken !== expected) {
        waited('token_changed');
        return current.tokenSet;
      }
      assertUsable(current.record, force);
      const lease = await this.#store.credentials.tryAcquireLease(
        id,
        instanceId,
        this.#now(),
        leaseMs,
      );
      if (lease.acquired) {
        waited('acquired');
        try {
          return await this.#refreshHoldingLease({
            tenantId,
            id,
            expected,
            trigger,
            leaseOwner: instanceId,
            leaseTakenAt: this.#now(),
            takenOver: lease.takenOver,
            force,
            priority: 'interactive',
            retry: this.#options.retry,
          });
        } finally {
          await this.#store.credentials.releaseLease(id, instanceId).catch(() => undefined);
        }
      }
      if (this.#now() > deadline) {
        waited('timeout');
        throw new TokenEndpointError(
          'token_endpoint_unavailable',
          `credential ${id}: another vault process has held the refresh lease for too long; try again`,
        );
      }
      await sleep(pause + Math.floor(Math.random() * pause));
      pause = Math.min(pause * 2, 200);
    }
  }

  async #refreshHoldingLease(held: LeaseHeld): Promise<TokenSet> {
    const { tenantId, id, expected, trigger, leaseOwner, force } = held;
    const { leaseMs, logger } = this.#options;
    // Read again under the lease: the token may have changed since the caller looked.
    const current = held.read ?? (await this.#load(tenantId, id));
    if (expected !== undefined && current.tokenSet.accessToken !== expected)
      return current.tokenSet;
    assertUsable(current.record, force);
    const { record: authClient, client } = await this.#client(
      tenantId,
      current.record.authClientId,
    );
    if (held.priority === 'interactive' && !force)
      assertNotCoolingDown(current.record, client.profile.rotation, this.#now());
    const provider = client.profile.id;
    const reason =
      trigger === 'scheduled'
        ? scheduleReason(current, client, this.#now())
        : trigger === 'taken-over'
          ? 'its refresh lease was abandoned (a vault process died during a refresh); the refresh token may be in its grace period'
          : trigger;
    const refreshToken = current.tokenSet.refreshToken;
    const started = this.#now();
    let leaseAt = held.leaseTakenAt;
    let calledProvider = false;
    const measure = (code: string | undefined) => {
      const metrics = this.#options.metrics;
      if (metrics === undefined) return;
      const outcome = refreshOutcome(code);
      metrics.refreshes.inc({ provider, outcome, trigger });
      metrics.refreshDuration.observe({ provider, outcome }, (this.#now() - started) / 1000);
      if (code !== undefined) metrics.tokenEndpointErrors.inc({ provider, code });
    };
    try {
      if (authClient.status === 'misconfigured') throw pausedError(authClient);
      if (refreshToken === undefined) {
        throw new TokenwardenError(
          'reauth_required',
          'the credential has no refresh token and its access token can no longer be used',
        );
      }
      const next = await withRetry(
        async () => {
          const slot = await this.#waitForProvider(provider, held);
          try {
            // While this call waited for its turn, another may have had the client
            // rejected: then the provider is not called again (no hammering).
            if (held.priority === 'background' || (slot?.waitedMs ?? 0) > 0) {
              const latest = await this.#store.authClients.get(tenantId, authClient.id);
              if (latest?.status === 'misconfigured') throw pausedError(latest);
            }
            // The lease must still be ours when the provider is called: renewed after a
            // wait (for the limit, a retry's backoff) or whenever it is a third gone.
            const now = this.#now();
            if (held.priority === 'background' || calledProvider || now - leaseAt > leaseMs / 3) {
              if (!(await this.#store.credentials.renewLease(id, leaseOwner, now, leaseMs)))
                throw new LeaseLost(id);
              leaseAt = now;
            }
            calledProvider = true;
            let tokens: TokenResponse;
            try {
              const response = await refreshGrantRequest(client, refreshToken, {
                timeoutMs: this.#options.tokenRequestTimeoutMs,
                ...(this.#options.fetch === undefined ? {} : { fetch: this.#options.fetch }),
              });
              tokens = await processRefreshResponse(client, response);
            } catch (error) {
              // Marked before the slot is given up, so the calls waiting behind this one
              // see it and do not present the rejected client again.
              if (error instanceof TokenEndpointError && error.code === 'client_misconfigured')
                await this.#store.authClients.markMisconfigured(
                  authClient.id,
                  error.message,
                  this.#now(),
                );
              throw error;
            }
            return current.tokenSet.merge(
              tokens,
              this.#now(),
              client.profile.defaultAccessTokenLifetimeSeconds,
            );
          } finally {
            slot?.release();
          }
        },
        { ...retryPolicyFor(client), ...held.retry },
      );
      const scheduled = nextRefreshAt(next, client);
      const decision = `refreshed (${reason}); ${describeSchedule(scheduled)}`;
      try {
        await this.#commitDurably(id, leaseAt, () =>
          this.#commitRefresh(tenantId, current, next, scheduled, trigger, reason, decision),
        );
      } catch (error) {
        if (error instanceof DeletedDuringRefresh) await this.#discard(id, client, next, current);
        throw error;
      }
      measure(undefined);
      logger.info(
        {
          credentialId: id,
          provider,
          trigger,
          ms: this.#now() - started,
          takenOver: held.takenOver,
        },
        'credential refreshed',
      );
      logger.debug({ credentialId: id, provider, decision }, 'refresh decision');
      held.decided?.(decision);
      return next;
    } catch (error) {
      if (error instanceof LeaseLost || error instanceof LimitWaitAborted) {
        if (!calledProvider) throw error;
      }
      if (!(error instanceof AuthClientPaused)) {
        measure(error instanceof TokenwardenError ? error.code : 'internal_error');
      }
      // Nothing to record on a deleted credential: no error, no event, no webhook.
      if (error instanceof DeletedDuringRefresh) throw error;
      try {
        const decision = await this.#recordFailure(
          current,
          error,
          held.takenOver && client.profile.rotation !== 'none',
          trigger,
        );
        logger.debug({ credentialId: id, provider, decision }, 'refresh decision');
        held.decided?.(decision);
      } catch (failure) {
        logger.error({ credentialId: id, err: failure }, 'could not record a refresh failure');
      }
      throw error instanceof TokenwardenError ? error.forCredential(id) : error;
    }
  }

  /**
   * The provider has answered, and a rotating refresh token is already spent: the
   * answer must reach the database. While the database does not answer (a restart, a
   * failover) the commit is tried again, for as long as this process's lease keeps
   * every other process off the credential. Giving up at once lost the answer: the
   * lease then outlived the outage and the next refresh presented a refresh token the
   * provider had replaced, past its grace period (bench/r3-database-restart.ts).
   */
  async #commitDurably(id: string, leaseAt: number, commit: () => Promise<void>): Promise<void> {
    const deadline = leaseAt + this.#options.leaseMs - COMMIT_RETRY_MARGIN_MS;
    for (let pause = 100; ; pause = Math.min(pause * 2, 1_000)) {
      try {
        await commit();
        return;
      } catch (error) {
        if (!isDatabaseDown(error) || this.#now() + pause > deadline) throw error;
        this.#options.logger.warn(
          { credentialId: id, err: error },
          'the database does not answer; storing the refreshed token set again shortly',
        );
        await sleep(pause);
      }
    }
  }

  /**
   * The credential was deleted while its refresh was at the provider: the answer is
   * dropped, not stored. A refresh token the provider rotated meanwhile was not the
   * one the delete revoked, so it is revoked too (best effort) rather than left alive
   * at the provider with nobody holding it.
   */
  async #discard(
    id: string,
    client: AuthClient,
    next: TokenSet,
    read: CredentialWithTokens,
  ): Promise<void> {
    const rotated =
      next.refreshToken !== undefined && next.refreshToken !== read.tokenSet.refreshToken;
    this.#options.logger.warn(
      { credentialId: id, provider: client.profile.id, revokingRotated: rotated },
      "the credential was deleted during its refresh; the provider's answer was discarded",
    );
    if (!rotated || client.revocationUrl === undefined || next.refreshToken === undefined) return;
    try {
      await this.#revoke(client, next.refreshToken, 'refresh_token');
    } catch (error) {
      this.#options.logger.warn(
        error instanceof TokenwardenError
          ? { credentialId: id, code: error.code }
          : { credentialId: id, err: error },
        'could not revoke the refresh token of a deleted credential at the provider',
      );
    }
  }

  /** Waits for the provider's limit (none configured: at once). */
  async #waitForProvider(provider: string, held: LeaseHeld): Promise<LimitSlot | undefined> {
    const limits = this.#options.limits;
    if (limits === undefined) return undefined;
    const slot = await limits.acquire(provider, held.priority, {
      signal: held.signal,
      ...(held.ticket === undefined ? {} : { ticket: held.ticket }),
    });
    this.#options.metrics?.providerLimitWait.observe(
      { provider, priority: held.priority },
      slot.waitedMs / 1000,
    );
    return slot;
  }

  async #commitRefresh(
    tenantId: string,
    read: CredentialWithTokens,
    next: TokenSet,
    scheduled: number | null,
    trigger: string,
    reason: string,
    decision: string,
  ): Promise<void> {
    const id = read.record.id;
    const now = this.#now();
    const changes = {
      refreshed: true,
      nextRefreshAt: scheduled,
      leaseOwner: this.#options.instanceId,
      decision,
    };
    await this.#store.db.transaction().execute(async (trx) => {
      let saved = await this.#store.credentials.saveTokens(
        trx,
        id,
        read.version,
        next,
        changes,
        now,
      );
      if (!saved) {
        // Someone wrote while we held the lease (an updateKeys, or a lease taken over
        // after ours expired). The provider just answered us: that answer is kept.
        const latest = await trx
          .selectFrom('credentials')
          .select('version')
          .where('id', '=', id)
          .executeTakeFirst();
        // Deleted (by a delete that took over this lease after it expired): nothing is
        // written, and the transaction rolls back.
        if (latest === undefined) throw new DeletedDuringRefresh(id);
        saved = await this.#store.credentials.saveTokens(
          trx,
          id,
          latest.version,
          next,
          changes,
          now,
        );
        if (!saved) {
          // Nothing is handed out that was not stored: the transaction rolls back.
          throw new TokenwardenError(
            'store_conflict',
            `credential ${id} kept changing while a refreshed token set was being stored`,
            { credentialId: id },
          );
        }
        this.#options.logger.warn(
          { credentialId: id },
          'credential changed during a refresh; the refreshed token set was written over it',
        );
      }
      await this.#store.events.append(
        {
          type: 'refreshed',
          tenantId,
          credentialId: id,
          authClientId: read.record.authClientId,
          data: {
            trigger,
            reason,
            instance: this.#options.instanceId,
            ...eventData(next, read.tokenSet),
          },
        },
        now,
        trx,
      );
    });
  }

  /**
   * Stores what a failed refresh means, and returns that decision as text:
   * - `invalid_grant` (or no refresh token): `reauth_required` at once, with the
   *   provider's `error_description` and, after a takeover, the interrupted refresh;
   * - the provider rejected the client: the auth client is marked misconfigured, and
   *   its credentials are not claimed until it is edited (nothing counted, nothing
   *   rescheduled: they resume as soon as it is fixed);
   * - anything else: counted in `failure_count` and backed off (capped, jittered,
   *   `Retry-After` honoured); the credential stays `active` and keeps serving its
   *   token while it is valid.
   */
  async #recordFailure(
    read: CredentialWithTokens,
    error: unknown,
    interruptedRefresh: boolean,
    trigger: string,
  ): Promise<string> {
    const { id, tenantId, authClientId } = read.record;
    const now = this.#now();
    const code = error instanceof TokenwardenError ? error.code : 'internal_error';
    const description = error instanceof TokenEndpointError ? error.errorDescription : undefined;
    const message = this.#failureMessage(error, 'refresh', id);
    const base = { tenantId, credentialId: id, authClientId };
    if (code === 'reauth_required') {
      let reason =
        description === undefined ? message : `the provider answered invalid_grant: ${description}`;
      if (interruptedRefresh) {
        reason +=
          '; a refresh by another vault process was interrupted before it stored its answer, and the provider may already have spent the refresh token';
      }
      const decision = `reauth_required: ${reason}`;
      const recorded = await this.#store.db.transaction().execute(async (trx) => {
        await this.#store.credentials.recordFailure(
          trx,
          id,
          {
            code,
            message,
            status: 'reauth_required',
            statusReason: reason,
            nextRefreshAt: null,
            counted: true,
            decision,
            expectedVersion: read.version,
          },
          now,
        );
        if (!(await stillStored(trx, id))) return false;
        await this.#store.events.append(
          { ...base, type: 'refresh_failed', data: { code, message, trigger } },
          now,
          trx,
        );
        await this.#store.events.append(
          {
            ...base,
            type: 'reauth_required',
            data: { reason, interruptedRefresh },
          },
          now,
          trx,
        );
        return true;
      });
      return recorded ? decision : DELETED_DECISION;
    }
    if (code === 'client_misconfigured') {
      const rejected = error instanceof TokenEndpointError;
      const decision = `paused: ${rejected ? `the provider rejected auth client ${authClientId} (${message})` : message}; refreshes resume when the auth client is edited (PATCH /v1/auth-clients/${authClientId})`;
      const recorded = await this.#store.db.transaction().execute(async (trx) => {
        await this.#store.credentials.recordFailure(trx, id, { code, message, decision }, now);
        if (!(await stillStored(trx, id))) return false;
        // The internal check called nobody: only the provider's answer is an event.
        if (rejected)
          await this.#store.events.append(
            { ...base, type: 'refresh_failed', data: { code, message, trigger } },
            now,
            trx,
          );
        return true;
      });
      return recorded ? decision : DELETED_DECISION;
    }
    const failures = read.record.failureCount + 1;
    const retryAfter = error instanceof TokenEndpointError ? error.retryAfterSeconds : undefined;
    const retryAt = now + failureBackoffMs(failures, this.#backoff, retryAfter, this.#random);
    const scheduled = read.record.nextRefreshAt;
    // Only pushed later: a refresh the caller asked for early does not move the schedule forward.
    const nextAt = scheduled === null ? null : Math.max(scheduled, retryAt);
    const decision = `backed off after ${failures} failure${failures === 1 ? '' : 's'} until ${nextAt === null ? 'the next request (no schedule)' : new Date(nextAt).toISOString()}: ${code}: ${message}`;
    const recorded = await this.#store.db.transaction().execute(async (trx) => {
      await this.#store.credentials.recordFailure(
        trx,
        id,
        {
          code,
          message,
          inDoubt: error instanceof TokenEndpointError && error.inDoubt,
          nextRefreshAt: nextAt,
          counted: true,
          decision,
        },
        now,
      );
      if (!(await stillStored(trx, id))) return false;
      await this.#store.events.append(
        {
          ...base,
          type: 'refresh_failed',
          data: {
            code,
            message,
            trigger,
            failureCount: failures,
            retryAt: nextAt === null ? null : new Date(nextAt).toISOString(),
          },
        },
        now,
        trx,
      );
      return true;
    });
    return recorded ? decision : DELETED_DECISION;
  }
}

/** The decision when a failed refresh's credential was deleted meanwhile: nothing is recorded. */
const DELETED_DECISION = 'deleted during the refresh; nothing recorded';

/**
 * Whether a credential is still there, read after the failure's `UPDATE` in the same
 * transaction (on PostgreSQL that update holds the row until the commit). A deleted
 * credential gets no `refresh_failed` or `reauth_required` event, and so no webhook.
 */
async function stillStored(trx: Transaction<Database>, id: string): Promise<boolean> {
  const row = await trx
    .selectFrom('credentials')
    .select('id')
    .where('id', '=', id)
    .executeTakeFirst();
  return row !== undefined;
}

/** A stored answer must be written before the lease ends: stop retrying this long before. */
const COMMIT_RETRY_MARGIN_MS = 2_000;

/**
 * After a refresh failed because the provider misbehaved (down, overloaded, an
 * answer that is not a token response), token-endpoint callers do not ask it
 * again for this long: each call would otherwise be one more provider request
 * (with its own retries) during an outage, from every caller of every replica.
 * The background refresher keeps its own backoff; a forced refresh
 * (`POST /v1/credentials/:id/refresh`) is not held back, nor is a failure that
 * got no answer (a timeout, a reset) on a profile with `rotation: rotating`: the
 * provider may have rotated, and the first retry once it answers again must come
 * as soon as it can, within the grace (bench/r2-provider-faults.ts: holding those
 * on `microsoft`, a 12-s latency fault against its 10-s grace lost 1 of 4 grants).
 */
export const CALLER_RETRY_GAP_MS = 1_000;

/** The 503 of a call held back by CALLER_RETRY_GAP_MS: expected during an outage, so not logged as an error. */
export class ProviderCoolingDown extends TokenEndpointError {}
const PROVIDER_TROUBLE = new Set(['token_endpoint_unavailable', 'invalid_token_response']);

/** Throws a 503 without calling the provider while its last failure is too recent. */
function assertNotCoolingDown(
  record: CredentialRecord,
  rotation: 'none' | 'rotating' | 'single-use',
  now: number,
): void {
  const last = record.lastError;
  if (last === null || record.failureCount === 0 || !PROVIDER_TROUBLE.has(last.code)) return;
  // A request that got no answer, where refresh tokens rotate with a grace period: the
  // provider may have rotated already, and only a prompt retry within the grace keeps
  // the grant.
  if (last.inDoubt && rotation === 'rotating') return;
  const waitMs = last.at + CALLER_RETRY_GAP_MS - now;
  if (waitMs <= 0) return;
  throw new ProviderCoolingDown(
    'token_endpoint_unavailable',
    `credential ${record.id}: the provider failed ${Math.max(0, now - last.at)} ms ago (${last.code}); it is asked again ${CALLER_RETRY_GAP_MS / 1000} s after a failure at the soonest: retry in ${Math.ceil(waitMs / 1000)} s`,
    { retryAfterSeconds: Math.ceil(waitMs / 1000), credentialId: record.id },
  );
}

/** Why a token must be refreshed before it is handed out, or undefined. */
export function refreshTrigger(
  tokenSet: TokenSet,
  request: AccessTokenRequest,
  now: number,
): string | undefined {
  if (request.staleAccessToken !== undefined && request.staleAccessToken === tokenSet.accessToken)
    return 'stale-token';
  const left = tokenSet.secondsLeft(now);
  if (left === undefined) return undefined;
  if (left <= 0) return 'expired';
  const lifetime = tokenSet.lifetimeSeconds;
  if (
    request.minValiditySeconds !== undefined &&
    lifetime !== undefined &&
    left < Math.min(request.minValiditySeconds, lifetime / 2)
  ) {
    return 'expiring';
  }
  return undefined;
}

/**
 * When the background refresher should refresh, and why: expiry minus the
 * profile's margin (capped at half the lifetime), or the profile's keep-alive
 * interval after the token arrived (providers that revoke idle grants), whichever
 * comes first. A token that never expires is refreshed only for keep-alive.
 */
export function refreshSchedule(
  tokenSet: TokenSet,
  client: AuthClient,
): { at: number; why: 'expiry' | 'keep-alive' } | null {
  // Nothing to refresh with: the token is served until it expires, and only then does
  // the credential need the user (DESIGN: no refresh token *and* the access token expired).
  if (tokenSet.refreshToken === undefined) return null;
  const expiresAt = tokenSet.expiresAtMs;
  const lifetime = tokenSet.lifetimeSeconds;
  const keepAlive = client.profile.keepAliveIntervalSeconds;
  const keepAliveAt = keepAlive === undefined ? null : tokenSet.receivedAtMs + keepAlive * 1000;
  if (expiresAt === undefined || lifetime === undefined)
    return keepAliveAt === null ? null : { at: keepAliveAt, why: 'keep-alive' };
  const margin = Math.min(client.profile.expiryMarginSeconds, lifetime / 2) * 1000;
  const due = expiresAt - margin;
  return keepAliveAt !== null && keepAliveAt < due
    ? { at: keepAliveAt, why: 'keep-alive' }
    : { at: due, why: 'expiry' };
}

/** When the background refresher should refresh (see {@link refreshSchedule}), or null: never. */
export function nextRefreshAt(tokenSet: TokenSet, client: AuthClient): number | null {
  return refreshSchedule(tokenSet, client)?.at ?? null;
}

/** Why the refresher refreshes a credential now, in words. */
function scheduleReason(read: CredentialWithTokens, client: AuthClient, now: number): string {
  const schedule = refreshSchedule(read.tokenSet, client);
  const expiresAt = read.tokenSet.expiresAtMs;
  const why =
    schedule?.why === 'keep-alive'
      ? `keep-alive every ${client.profile.keepAliveIntervalSeconds ?? 0} s${expiresAt === undefined ? ' (the token does not expire)' : ''}`
      : expiresAt === undefined
        ? 'scheduled'
        : expiresAt <= now
          ? `expired at ${new Date(expiresAt).toISOString()}`
          : `expiring at ${new Date(expiresAt).toISOString()}`;
  const failures = read.record.failureCount;
  return failures > 0 ? `${why}, retry after ${failures} failure${failures === 1 ? '' : 's'}` : why;
}

function describeSchedule(at: number | null): string {
  return at === null ? 'no refresh scheduled' : `next refresh at ${new Date(at).toISOString()}`;
}

function assertUsable(record: CredentialRecord, allowReauth = false): void {
  if (record.status === 'revoked') {
    throw new TokenwardenError(
      'reauth_required',
      `credential ${record.id} was revoked; connect the account again`,
      { credentialId: record.id },
    );
  }
  if (record.status === 'reauth_required' && !allowReauth) {
    throw new TokenwardenError(
      'reauth_required',
      `credential ${record.id} needs the user to connect again: ${record.statusReason ?? 'the provider rejected the grant'}`,
      { credentialId: record.id },
    );
  }
}

/** What events say about a token set: never a secret. */
function eventData(next: TokenSet, previous?: TokenSet): Record<string, unknown> {
  return {
    expiresAt: next.expiresAtMs === undefined ? null : new Date(next.expiresAtMs).toISOString(),
    ...(previous === undefined
      ? {}
      : { refreshTokenRotated: next.refreshToken !== previous.refreshToken }),
  };
}
