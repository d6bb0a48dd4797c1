import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { VaultStore } from '../store/store.ts';

/**
 * Prometheus metrics (`GET /metrics`). Counters and histograms are fed by the
 * code that does the work; gauges read the database when scraped, so every
 * replica reports the shared state (sum or max them accordingly).
 * docs/operations.md explains each one.
 */
export interface VaultMetrics {
  registry: Registry;
  /** Refresh attempts that reached a decision, by provider, outcome and what triggered them. */
  refreshes: Counter<'provider' | 'outcome' | 'trigger'>;
  /** Time from taking the lease to storing the new token set (or failing). */
  refreshDuration: Histogram<'provider' | 'outcome'>;
  /** Failed token-endpoint calls by provider and error code. */
  tokenEndpointErrors: Counter<'provider' | 'code'>;
  /** Time spent waiting for another process's refresh lease. */
  leaseWait: Histogram<'outcome'>;
  /** Due credentials the background refresher claimed, and claims that found the work done elsewhere. */
  claims: Counter<'outcome'>;
  /** How late the background refresher claimed a credential: claim time minus `next_refresh_at`. */
  refreshLag: Histogram<'provider'>;
  /** Time spent waiting for a provider's concurrency and rate limit, by priority. */
  providerLimitWait: Histogram<'provider' | 'priority'>;
  /** Webhook deliveries by outcome. */
  webhookDeliveries: Counter<'outcome'>;
  /** Leases ended at once because their holder's liveness lock was released. */
  holderLeasesEnded: Counter;
}

export function createMetrics(
  store: VaultStore,
  now: () => number = Date.now,
  /** PostgreSQL: this process's liveness lock (db/holder-liveness.ts), when it has one. */
  holderLiveness?: { readonly live: boolean },
): VaultMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tokenwarden_' });
  const registers = [registry];
  if (holderLiveness !== undefined) {
    new Gauge({
      name: 'tokenwarden_holder_liveness_live',
      help: 'PostgreSQL: whether this process holds its liveness lock on a session of its own (1), so that its leases are taken over at once if it dies; 0 while it does not (leases it takes then only expire).',
      registers,
      collect() {
        this.set(holderLiveness.live ? 1 : 0);
      },
    });
  }
  new Gauge({
    name: 'tokenwarden_credentials',
    help: 'Credentials by status (database-wide).',
    labelNames: ['status'],
    registers,
    async collect() {
      const rows = await store.db
        .selectFrom('credentials')
        .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
        .groupBy('status')
        .execute();
      this.reset();
      for (const row of rows) this.set({ status: row.status }, Number(row.n));
    },
  });
  // Backlog: work the refresher can do now and has not finished. Credentials of a
  // misconfigured auth client wait for a human (tokenwarden_refresh_held), and a
  // backed-off credential's next_refresh_at is its retry time, so it counts only
  // once that has come.
  new Gauge({
    name: 'tokenwarden_refresh_backlog',
    help: 'Active credentials whose scheduled refresh (or retry) time has passed, not refreshed yet, auth client not misconfigured (database-wide).',
    registers,
    async collect() {
      const row = await store.db
        .selectFrom('credentials')
        .innerJoin('auth_clients', 'auth_clients.id', 'credentials.auth_client_id')
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('credentials.status', '=', 'active')
        .where('credentials.next_refresh_at', '<=', now())
        .where('auth_clients.status', '=', 'ok')
        .executeTakeFirst();
      this.set(Number(row?.n ?? 0));
    },
  });
  new Gauge({
    name: 'tokenwarden_refresh_held',
    help: 'Active credentials the refresher holds back, by reason: auth_client_misconfigured (paused until the auth client is edited), backing_off (failed refreshes in a row; retried later) (database-wide).',
    labelNames: ['reason'],
    registers,
    async collect() {
      const [paused, backingOff] = await Promise.all([
        store.db
          .selectFrom('credentials')
          .innerJoin('auth_clients', 'auth_clients.id', 'credentials.auth_client_id')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('credentials.status', '=', 'active')
          .where('auth_clients.status', '=', 'misconfigured')
          .executeTakeFirst(),
        store.db
          .selectFrom('credentials')
          .select((eb) => eb.fn.countAll<number>().as('n'))
          .where('status', '=', 'active')
          .where('failure_count', '>', 0)
          .executeTakeFirst(),
      ]);
      this.set({ reason: 'auth_client_misconfigured' }, Number(paused?.n ?? 0));
      this.set({ reason: 'backing_off' }, Number(backingOff?.n ?? 0));
    },
  });
  const tokenCache = store.tokenCache;
  if (tokenCache !== undefined) {
    const reported = { hit: 0, miss: 0, bypass: 0 };
    new Counter({
      name: 'tokenwarden_token_cache_lookups_total',
      help: 'Token-endpoint reads by token cache result: hit (served from memory), miss (read from the database, then kept), bypass (read from the database: the change listener was down) (this process).',
      labelNames: ['result'],
      registers,
      collect() {
        for (const result of ['hit', 'miss', 'bypass'] as const) {
          const total = tokenCache.lookups[result];
          this.inc({ result }, total - reported[result]);
          reported[result] = total;
        }
      },
    });
    new Gauge({
      name: 'tokenwarden_token_cache_feed_live',
      help: 'Whether this process hears other writers’ credential changes (1) or serves nothing from the token cache until it does again (0).',
      registers,
      collect() {
        this.set(tokenCache.feedLive ? 1 : 0);
      },
    });
    new Gauge({
      name: 'tokenwarden_token_cache_entries',
      help: 'Credentials held decrypted in the token cache (this process).',
      registers,
      collect() {
        this.set(tokenCache.size);
      },
    });
  }
  return {
    registry,
    refreshes: new Counter({
      name: 'tokenwarden_refreshes_total',
      help: 'Refreshes by provider, outcome (ok, reauth_required, client_misconfigured, unavailable, invalid_response, rejected, error) and trigger.',
      labelNames: ['provider', 'outcome', 'trigger'],
      registers,
    }),
    refreshDuration: new Histogram({
      name: 'tokenwarden_refresh_duration_seconds',
      help: 'Refresh latency, lease taken to token set stored, by provider and outcome.',
      labelNames: ['provider', 'outcome'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    tokenEndpointErrors: new Counter({
      name: 'tokenwarden_token_endpoint_errors_total',
      help: 'Failed calls to providers’ token endpoints by provider and error code.',
      labelNames: ['provider', 'code'],
      registers,
    }),
    leaseWait: new Histogram({
      name: 'tokenwarden_lease_wait_seconds',
      help: 'Time spent waiting for another process’s refresh lease, by outcome (token_changed, acquired, timeout).',
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    claims: new Counter({
      name: 'tokenwarden_refresher_claims_total',
      help: 'Due credentials the background refresher claimed (claimed); of those, claims that found the credential refreshed elsewhere or their lease taken over before the refresh began (contended), and claims given back unused when the refresher stopped (released).',
      labelNames: ['outcome'],
      registers,
    }),
    refreshLag: new Histogram({
      name: 'tokenwarden_refresher_lag_seconds',
      help: 'How late the background refresher claimed a due credential (claim time minus its next_refresh_at), by provider.',
      labelNames: ['provider'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    }),
    providerLimitWait: new Histogram({
      name: 'tokenwarden_provider_limit_wait_seconds',
      help: 'Time a token-endpoint call waited for its provider’s concurrency and rate limit, by provider and priority (interactive, background).',
      labelNames: ['provider', 'priority'],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    webhookDeliveries: new Counter({
      name: 'tokenwarden_webhook_deliveries_total',
      help: 'Webhook delivery attempts by outcome (delivered, failed, gave_up).',
      labelNames: ['outcome'],
      registers,
    }),
    holderLeasesEnded: new Counter({
      name: 'tokenwarden_dead_holder_leases_total',
      help: 'Refresh leases this process ended at once because their holder’s liveness lock was released (PostgreSQL: a vault process died or lost its database session); each is then taken over without waiting for it to expire.',
      registers,
    }),
  };
}

/** The metric label for an error code: the few outcomes operators alert on. */
export function refreshOutcome(code: string | undefined): string {
  switch (code) {
    case undefined:
      return 'ok';
    case 'reauth_required':
    case 'client_misconfigured':
      return code;
    case 'token_endpoint_unavailable':
      return 'unavailable';
    case 'invalid_token_response':
      return 'invalid_response';
    case 'token_request_rejected':
      return 'rejected';
    default:
      return 'error';
  }
}
