import type { Logger } from 'pino';
import type { CredentialService, RefreshDecision } from './credential-service.ts';
import type { VaultMetrics } from './http/metrics.ts';
import type { ProviderLimiter } from './refresher/provider-limits.ts';
import type { ClaimedCredential } from './store/credentials.ts';
import type { VaultStore } from './store/store.ts';

export interface RefresherOptions {
  store: VaultStore;
  service: CredentialService;
  logger: Logger;
  /** Names this process in claims (`<instanceId>~<n>`), as in leases and events. */
  instanceId: string;
  /** Per-provider limits: they size the claims (the service enforces them). */
  limits: ProviderLimiter;
  /** How long a claim (the refresh lease) lives before another replica may take it over. */
  leaseMs: number;
  /** How often due credentials are looked for when there is no backlog. */
  intervalMs: number;
  /** At most this many credentials per claim statement. */
  claimSize: number;
  metrics?: VaultMetrics;
  now?: () => number;
}

/** What one pass did. */
export interface PassSummary {
  /** Credentials claimed, by provider. */
  claimed: Record<string, number>;
  /** Some provider had more due work than this pass could claim. */
  more: boolean;
}

/**
 * Refreshes credentials before they expire (at `next_refresh_at`: expiry minus
 * the profile's margin, the profile's keep-alive interval, or a backoff's retry
 * time), with no caller asking.
 *
 * Each pass claims due credentials per provider from the database (see
 * `CredentialRepository.claimDue`): the claim is the refresh lease, so no two
 * replicas, and no replica and a token-endpoint caller, refresh one credential at
 * once. A claim is sized by the provider's limits so that claimed work starts
 * within a fraction of the lease: at most min(concurrency + rate, rate × lease/3)
 * credentials of one provider are held (claimed, not finished) at a time, and
 * another claim is made when half of them are done. Passes follow one another
 * while work is due; otherwise one runs every `intervalMs`.
 */
export class BackgroundRefresher {
  readonly #options: RefresherOptions;
  readonly #now: () => number;
  /** Claimed and not finished, by provider. */
  readonly #held = new Map<string, number>();
  /** Providers whose last claim was full: more is probably due. */
  readonly #backlogged = new Set<string>();
  readonly #tasks = new Set<Promise<void>>();
  #stopping = new AbortController();
  #claimSequence = 0;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(options: RefresherOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    if (this.#loop !== undefined) return;
    this.#stopping = new AbortController();
    this.#loop = this.#run();
  }

  /** Stops claiming, gives back claims not started, and waits for refreshes under way. */
  async stop(): Promise<void> {
    this.#stopping.abort();
    this.#wake?.();
    await this.#loop;
    this.#loop = undefined;
    await this.#drain();
  }

  /** Starts a pass now rather than at the next interval (leases of a dead process were ended). */
  nudge(): void {
    this.#wake?.();
  }

  /** One pass, then waits for every refresh it started (tests, scripts). */
  async runOnce(): Promise<PassSummary> {
    const summary = await this.#pass();
    await this.#drain();
    return summary;
  }

  /** How many credentials of a provider this process holds at most. */
  heldLimit(providerId: string): number {
    const { concurrency, ratePerSecond } = this.#options.limits.limitFor(providerId);
    const perLease = Math.floor((ratePerSecond * this.#options.leaseMs) / 1000 / 3);
    return Math.max(1, Math.min(concurrency + Math.ceil(ratePerSecond), perLease));
  }

  async #drain(): Promise<void> {
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  async #run(): Promise<void> {
    const signal = this.#stopping.signal;
    while (!signal.aborted) {
      let more = false;
      try {
        more = (await this.#pass()).more;
      } catch (error) {
        this.#options.logger.warn({ err: error }, 'background refresh pass failed');
      }
      if (signal.aborted) break;
      // With a backlog, the next pass comes as soon as a backlogged provider has room
      // (woken by #settle); else after the interval.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, this.#options.intervalMs);
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#wake = done;
        if (more && this.#hasRoom()) done();
      });
      this.#wake = undefined;
    }
  }

  #hasRoom(): boolean {
    for (const provider of this.#backlogged) {
      if ((this.#held.get(provider) ?? 0) <= this.heldLimit(provider) / 2) return true;
    }
    return false;
  }

  async #pass(): Promise<PassSummary> {
    const { store, claimSize, leaseMs, instanceId, metrics } = this.#options;
    const providers = await store.db
      .selectFrom('auth_clients')
      .select('provider_id')
      .distinct()
      .where('status', '=', 'ok')
      .execute();
    const summary: PassSummary = { claimed: {}, more: false };
    for (const { provider_id: provider } of providers) {
      if (this.#stopping.signal.aborted) break;
      const limit = this.heldLimit(provider);
      const held = this.#held.get(provider) ?? 0;
      // Below half the limit only: claims come in batches, not one row at a time.
      if (held > limit / 2) {
        if (this.#backlogged.has(provider)) summary.more = true;
        continue;
      }
      const want = Math.min(claimSize, limit - held);
      const now = this.#now();
      const claims = await store.credentials.claimDue({
        providerId: provider,
        owner: `${instanceId}~${++this.#claimSequence}`,
        now,
        leaseMs,
        limit: want,
      });
      if (claims.length === want) {
        this.#backlogged.add(provider);
        summary.more = true;
      } else {
        this.#backlogged.delete(provider);
      }
      if (claims.length === 0) continue;
      summary.claimed[provider] = claims.length;
      metrics?.claims.inc({ outcome: 'claimed' }, claims.length);
      for (const claim of claims) {
        metrics?.refreshLag.observe({ provider }, Math.max(0, now - claim.nextRefreshAt) / 1000);
        this.#start(claim);
      }
    }
    return summary;
  }

  #start(claim: ClaimedCredential): void {
    const provider = claim.providerId;
    this.#held.set(provider, (this.#held.get(provider) ?? 0) + 1);
    const task = this.#options.service
      .refreshClaimed(claim, this.#stopping.signal)
      .then(
        (decision) => this.#report(claim, decision),
        (error: unknown) =>
          this.#options.logger.error(
            { credentialId: claim.id, err: error },
            'background refresh failed unexpectedly',
          ),
      )
      .finally(() => {
        this.#tasks.delete(task);
        this.#held.set(provider, (this.#held.get(provider) ?? 1) - 1);
        if (this.#wake !== undefined && this.#hasRoom()) this.#wake();
      });
    this.#tasks.add(task);
  }

  #report(claim: ClaimedCredential, decision: RefreshDecision): void {
    // Refreshes and failures are logged (and stored) by the service; what happened
    // to a claim without a refresh is told here.
    if (decision.outcome !== 'skipped' && decision.outcome !== 'released') return;
    this.#options.metrics?.claims.inc({
      outcome: decision.outcome === 'skipped' ? 'contended' : 'released',
    });
    this.#options.logger.debug(
      {
        credentialId: claim.id,
        provider: claim.providerId,
        decision: decision.outcome,
        reason: decision.reason,
      },
      'refresh decision',
    );
  }
}
