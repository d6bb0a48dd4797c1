import type { Logger } from 'pino';
import type { CredentialService } from './credential-service.ts';
import type { VaultStore } from './store/store.ts';

export interface RefresherOptions {
  store: VaultStore;
  service: CredentialService;
  logger: Logger;
  /** How often due credentials are looked for. */
  intervalMs: number;
  /** At most this many refreshes per pass. */
  batchSize: number;
  now?: () => number;
}

/**
 * Refreshes credentials before they expire (at `next_refresh_at`: expiry minus
 * the profile's margin, or the profile's keep-alive interval), so tokens stay
 * valid with no caller asking. Each refresh goes through the same lease as the
 * token endpoint, so replicas running this loop side by side never refresh one
 * credential twice for one expiry; a credential a component just refreshed has
 * moved its `next_refresh_at` and is skipped.
 */
export class BackgroundRefresher {
  readonly #options: RefresherOptions;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(options: RefresherOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  start(): void {
    const tick = () => {
      this.#running = this.runOnce()
        .catch((error: unknown) =>
          this.#options.logger.warn({ err: error }, 'background refresh pass failed'),
        )
        .finally(() => {
          this.#running = undefined;
          if (this.#timer !== undefined) this.#timer = setTimeout(tick, this.#options.intervalMs);
        });
    };
    this.#timer = setTimeout(tick, this.#options.intervalMs);
  }

  async stop(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }

  /** One pass: refresh every due credential (up to the batch size). Returns when they are done. */
  async runOnce(): Promise<void> {
    const now = this.#now();
    const due = await this.#options.store.db
      .selectFrom('credentials')
      .select(['id', 'tenant_id'])
      .where('status', '=', 'active')
      .where('next_refresh_at', '<=', now)
      .orderBy('next_refresh_at')
      .limit(this.#options.batchSize)
      .execute();
    await Promise.all(
      due.map(async (row) => {
        try {
          await this.#options.service.refreshIfDue(row.tenant_id, row.id);
        } catch (error) {
          // Already recorded on the credential and as an event by the service.
          this.#options.logger.debug(
            { credentialId: row.id, code: (error as { code?: string }).code },
            'background refresh failed',
          );
        }
      }),
    );
  }
}
