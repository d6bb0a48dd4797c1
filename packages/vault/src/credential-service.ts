import { setTimeout as sleep } from 'node:timers/promises';
import {
  type AuthClient,
  processRefreshResponse,
  type RetryPolicy,
  refreshGrantRequest,
  TokenEndpointError,
  type TokenResponse,
  type TokenSet,
  TokenwardenError,
  withRetry,
} from '@tokenwarden/oauth';
import type { Logger } from 'pino';
import { refreshOutcome, type VaultMetrics } from './http/metrics.ts';
import type { AuthClientRecord } from './store/auth-clients.ts';
import type { CredentialRecord, CredentialWithTokens } from './store/credentials.ts';
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
  now?: () => number;
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
 */
export class CredentialService {
  readonly #options: CredentialServiceOptions;
  readonly #store: VaultStore;
  readonly #now: () => number;
  readonly #flights = new Map<string, Promise<TokenSet>>();

  constructor(options: CredentialServiceOptions) {
    this.#options = options;
    this.#store = options.store;
    this.#now = options.now ?? Date.now;
  }

  /** `POST /v1/credentials/:id/access-token`. */
  async accessToken(
    tenantId: string,
    id: string,
    request: AccessTokenRequest = {},
  ): Promise<TokenSet> {
    const current = await this.#load(tenantId, id);
    assertUsable(current.record);
    const trigger = refreshTrigger(current.tokenSet, request, this.#now());
    if (trigger === undefined) return current.tokenSet;
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
   * The background refresher's call: refresh when `next_refresh_at` has come,
   * unless someone else refreshed meanwhile. A transient failure pushes the next
   * attempt back, so an outage is not hammered every pass.
   */
  async refreshIfDue(tenantId: string, id: string): Promise<void> {
    const current = await this.#load(tenantId, id);
    const due = current.record.nextRefreshAt;
    if (current.record.status !== 'active' || due === null || due > this.#now()) return;
    try {
      await this.#refreshShared(tenantId, id, current.tokenSet.accessToken, 'scheduled');
    } catch (error) {
      // reauth_required already cleared the schedule; anything else tries again later.
      if (!(error instanceof TokenwardenError && error.code === 'reauth_required')) {
        const transient = error instanceof TokenwardenError && error.transient;
        const delay = transient
          ? Math.min(
              RETRY_LATER_MAX_MS,
              RETRY_LATER_MS * (current.record.lastError === null ? 1 : 2),
            )
          : RETRY_LATER_MAX_MS;
        await this.#store.db
          .updateTable('credentials')
          .set({ next_refresh_at: this.#now() + delay })
          .where('id', '=', id)
          .execute();
      }
      throw error;
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
          { refreshed: false, nextRefreshAt: nextRefreshAt(next, client) },
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

  async #load(tenantId: string, id: string): Promise<CredentialWithTokens> {
    const current = await this.#store.credentials.getWithTokens(tenantId, id);
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
      // A refresh that began from an older token can end with the very token this
      // caller reports stale (when it ran longer than a token lifetime): then refresh again.
      const shared = await inFlight;
      if (shared.accessToken !== expected) return shared;
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
          return await this.#refreshHoldingLease(
            tenantId,
            id,
            expected,
            trigger,
            lease.takenOver,
            force,
          );
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

  async #refreshHoldingLease(
    tenantId: string,
    id: string,
    expected: string,
    trigger: string,
    takenOver: boolean,
    force: boolean,
  ): Promise<TokenSet> {
    const { instanceId, leaseMs, logger } = this.#options;
    // Read again under the lease: the token may have changed since the caller looked.
    const current = await this.#load(tenantId, id);
    if (current.tokenSet.accessToken !== expected) return current.tokenSet;
    assertUsable(current.record, force);
    const { record: authClient, client } = await this.#client(
      tenantId,
      current.record.authClientId,
    );
    const refreshToken = current.tokenSet.refreshToken;
    const started = this.#now();
    const measure = (code: string | undefined) => {
      const metrics = this.#options.metrics;
      if (metrics === undefined) return;
      const provider = client.profile.id;
      const outcome = refreshOutcome(code);
      metrics.refreshes.inc({ provider, outcome, trigger });
      metrics.refreshDuration.observe({ provider, outcome }, (this.#now() - started) / 1000);
      if (code !== undefined) metrics.tokenEndpointErrors.inc({ provider, code });
    };
    try {
      if (authClient.status === 'misconfigured') {
        throw new TokenwardenError(
          'client_misconfigured',
          `auth client ${authClient.id} is marked misconfigured (${authClient.statusReason ?? 'rejected by the provider'}); fix it with PATCH /v1/auth-clients/${authClient.id}`,
        );
      }
      if (refreshToken === undefined) {
        throw new TokenwardenError(
          'reauth_required',
          'the credential has no refresh token and its access token can no longer be used',
        );
      }
      const next = await withRetry(async (attempt) => {
        if (
          attempt > 1 &&
          !(await this.#store.credentials.renewLease(id, instanceId, this.#now(), leaseMs))
        ) {
          throw new TokenwardenError('store_conflict', 'the refresh lease was lost during retries');
        }
        const response = await refreshGrantRequest(client, refreshToken, {
          timeoutMs: this.#options.tokenRequestTimeoutMs,
          ...(this.#options.fetch === undefined ? {} : { fetch: this.#options.fetch }),
        });
        const tokens = await processRefreshResponse(client, response);
        return current.tokenSet.merge(
          tokens,
          this.#now(),
          client.profile.defaultAccessTokenLifetimeSeconds,
        );
      }, this.#options.retry);
      await this.#commitRefresh(tenantId, current, next, client, trigger);
      measure(undefined);
      logger.info(
        { credentialId: id, trigger, ms: this.#now() - started, takenOver },
        'credential refreshed',
      );
      return next;
    } catch (error) {
      measure(error instanceof TokenwardenError ? error.code : 'internal_error');
      await this.#recordFailure(tenantId, current, client, error, takenOver).catch(
        (failure: unknown) => {
          logger.error({ credentialId: id, err: failure }, 'could not record a refresh failure');
        },
      );
      throw error instanceof TokenwardenError ? error.forCredential(id) : error;
    }
  }

  async #commitRefresh(
    tenantId: string,
    read: CredentialWithTokens,
    next: TokenSet,
    client: AuthClient,
    trigger: string,
  ): Promise<void> {
    const id = read.record.id;
    const now = this.#now();
    await this.#store.db.transaction().execute(async (trx) => {
      let version = read.version;
      let saved = await this.#store.credentials.saveTokens(
        trx,
        id,
        version,
        next,
        {
          refreshed: true,
          nextRefreshAt: nextRefreshAt(next, client),
          leaseOwner: this.#options.instanceId,
        },
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
        if (latest === undefined)
          throw new TokenwardenError(
            'credential_not_found',
            `credential ${id} was deleted during a refresh`,
            { credentialId: id },
          );
        version = latest.version;
        saved = await this.#store.credentials.saveTokens(
          trx,
          id,
          version,
          next,
          {
            refreshed: true,
            nextRefreshAt: nextRefreshAt(next, client),
            leaseOwner: this.#options.instanceId,
          },
          now,
        );
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
          data: { trigger, instance: this.#options.instanceId, ...eventData(next, read.tokenSet) },
        },
        now,
        trx,
      );
    });
  }

  async #recordFailure(
    tenantId: string,
    read: CredentialWithTokens,
    client: AuthClient,
    error: unknown,
    takenOver: boolean,
  ): Promise<void> {
    const id = read.record.id;
    const now = this.#now();
    const code = error instanceof TokenwardenError ? error.code : 'internal_error';
    const description = error instanceof TokenEndpointError ? error.errorDescription : undefined;
    const message = error instanceof Error ? error.message : String(error);
    await this.#store.db.transaction().execute(async (trx) => {
      const base = { tenantId, credentialId: id, authClientId: read.record.authClientId };
      if (code === 'reauth_required') {
        let reason =
          description === undefined
            ? message
            : `the provider answered invalid_grant: ${description}`;
        if (takenOver && client.profile.rotation !== 'none') {
          reason +=
            '; a refresh by another vault process was interrupted before it stored its answer, and the provider may already have spent the refresh token';
        }
        await this.#store.credentials.recordFailure(
          trx,
          id,
          { code, message, status: 'reauth_required', statusReason: reason, nextRefreshAt: null },
          now,
        );
        await this.#store.events.append(
          { ...base, type: 'refresh_failed', data: { code, message } },
          now,
          trx,
        );
        await this.#store.events.append(
          { ...base, type: 'reauth_required', data: { reason, interruptedRefresh: takenOver } },
          now,
          trx,
        );
        return;
      }
      await this.#store.credentials.recordFailure(trx, id, { code, message }, now);
      await this.#store.events.append(
        { ...base, type: 'refresh_failed', data: { code, message } },
        now,
        trx,
      );
    });
    if (code === 'client_misconfigured' && error instanceof TokenEndpointError) {
      await this.#store.authClients.markMisconfigured(read.record.authClientId, message, now);
    }
  }
}

/** When a scheduled refresh failed for a transient reason, try again after this long (doubled once). */
const RETRY_LATER_MS = 5_000;
const RETRY_LATER_MAX_MS = 60_000;

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

/** When the background refresher should refresh: expiry minus the profile's margin (capped at half the lifetime). */
export function nextRefreshAt(tokenSet: TokenSet, client: AuthClient): number | null {
  const expiresAt = tokenSet.expiresAtMs;
  const lifetime = tokenSet.lifetimeSeconds;
  const keepAlive = client.profile.keepAliveIntervalSeconds;
  const keepAliveAt = keepAlive === undefined ? null : tokenSet.receivedAtMs + keepAlive * 1000;
  if (expiresAt === undefined || lifetime === undefined) return keepAliveAt;
  const margin = Math.min(client.profile.expiryMarginSeconds, lifetime / 2) * 1000;
  const due = expiresAt - margin;
  return keepAliveAt === null ? due : Math.min(due, keepAliveAt);
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
