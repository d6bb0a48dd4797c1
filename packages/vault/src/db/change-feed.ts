import type SQLite from 'better-sqlite3';
import pg from 'pg';
import type { ChangeFeed, ChangeSink } from '../store/token-cache.ts';
import { endQuietly, guarded } from './dedicated-connection.ts';

/**
 * The NOTIFY channel of credential changes (migration 0004's trigger). One
 * channel per database; the payload is `<schema>/<credential id>`, so vaults in
 * other schemas of the same database are told apart.
 */
export const CREDENTIALS_CHANNEL = 'tokenwarden_credentials';

/** The listener connection's `application_name`. */
export const LISTENER_APPLICATION_NAME = 'tokenwarden-change-feed';

/**
 * SQLite: `PRAGMA data_version` changes when another connection (another
 * process on the same file) commits, and not for this connection's own
 * commits, which invalidate their entries themselves. Any change from outside
 * drops the whole cache: several processes on one SQLite file is the small
 * deployment, and the pragma does not say which rows changed.
 */
export class SqliteDataVersionFeed implements ChangeFeed {
  readonly live = true;
  readonly #statement: SQLite.Statement;
  readonly #intervalMs: number;
  readonly #now: () => number;
  #version: unknown;
  #checkedAt = Number.NEGATIVE_INFINITY;
  #sink: ChangeSink | undefined;

  /**
   * `intervalMs`: the pragma is read at most this often. It opens a read
   * transaction on the WAL (a few system calls, the largest cost of a cache hit
   * when read every time), so at high rates one check covers the requests of
   * the next millisecond: a commit by another process is seen within that.
   */
  constructor(sqlite: SQLite.Database, options: { intervalMs?: number; now?: () => number } = {}) {
    this.#statement = sqlite.prepare('PRAGMA data_version').pluck();
    this.#version = this.#statement.get();
    this.#intervalMs = options.intervalMs ?? 1;
    this.#now = options.now ?? performance.now.bind(performance);
  }

  start(sink: ChangeSink): void {
    this.#sink = sink;
  }

  poll(): void {
    const now = this.#now();
    if (now - this.#checkedAt < this.#intervalMs) return;
    this.#checkedAt = now;
    const version = this.#statement.get();
    if (version !== this.#version) {
      this.#version = version;
      this.#sink?.reset();
    }
  }

  async stop(): Promise<void> {
    this.#sink = undefined;
  }
}

export interface PostgresFeedOptions {
  connectionString: string;
  /**
   * The schema the `credentials` table really is in (the trigger's
   * `TG_TABLE_SCHEMA`): notifications for other schemas are another vault's.
   */
  schema: string;
  /**
   * Sends a NOTIFY on another connection (the pool): the probe that proves
   * notifications reach the listener, at connect time and every `probeEveryMs`.
   */
  notify: (channel: string, payload: string) => Promise<void>;
  /** The listener's `application_name` (default `tokenwarden-change-feed`). */
  applicationName?: string;
  /** Reconnect delay after the listener's connection fails: doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** How often the probe runs once live, and how long it may take. */
  probeEveryMs?: number;
  probeTimeoutMs?: number;
  /**
   * Told of every change of state: live (the probe came back), or down with
   * why (a failed connect, a dropped connection, a probe that never arrived).
   */
  onState?: (live: boolean, error?: unknown) => void;
}

/**
 * PostgreSQL: a connection of its own that LISTENs to the channel the trigger
 * notifies at every commit that changes a credential's tokens or status, or
 * deletes it. The feed is live only while notifications are known to arrive: a
 * probe (a NOTIFY sent through the pool) must come back to the listener before
 * it goes live, and again every `probeEveryMs`. So a connection that died
 * silently (a partition, a failover), or a pooler that accepts LISTEN but
 * never delivers (PgBouncer in transaction mode), turns the cache off instead
 * of leaving it stale. While not live the cache is bypassed and emptied.
 */
export class PostgresNotifyFeed implements ChangeFeed {
  readonly #options: PostgresFeedOptions;
  readonly #prefix: string;
  readonly #probePrefix: string;
  #sink: ChangeSink | undefined;
  #client: pg.Client | undefined;
  #live = false;
  #stopped = false;
  #retryMs: number;
  #timer: NodeJS.Timeout | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  /** The probe awaited: its payload and what to call when it arrives. */
  #probe: { payload: string; arrived: () => void } | undefined;
  #probes = 0;

  constructor(options: PostgresFeedOptions) {
    this.#options = options;
    this.#prefix = `${options.schema}/`;
    this.#probePrefix = `${options.schema}~probe~${process.pid}-${Math.random().toString(36).slice(2, 10)}-`;
    this.#retryMs = options.retryMs ?? 250;
  }

  get live(): boolean {
    return this.#live;
  }

  start(sink: ChangeSink): void {
    this.#sink = sink;
    void this.#connect();
  }

  poll(): void {}

  /** Resolves once the feed is live (for tests and start-up); rejects after `timeoutMs`. */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.#live) {
      if (this.#stopped || Date.now() > deadline)
        throw new Error('the credential change listener is not live');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** The listener connection's backend pid, for tests that cut it. */
  get backendPid(): number | undefined {
    return (this.#client as { processID?: number } | undefined)?.processID;
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      // Operators (and tests) find the listener in pg_stat_activity by this name.
      application_name: this.#options.applicationName ?? LISTENER_APPLICATION_NAME,
      keepAlive: true,
      connectionTimeoutMillis: 5_000,
    });
    this.#client = client;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      clearTimeout(this.#probeTimer);
      this.#probe = undefined;
      this.#down(error);
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (this.#stopped) return;
      this.#timer = setTimeout(() => void this.#connect(), this.#retryMs);
      this.#timer.unref();
      this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 5_000);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('the listener connection ended')));
    client.on('notification', (message) => {
      const payload = message.payload;
      if (message.channel !== CREDENTIALS_CHANNEL || payload === undefined) return;
      if (payload.startsWith(this.#prefix)) {
        guarded(() => this.#sink?.changed(payload.slice(this.#prefix.length)));
      } else if (this.#probe !== undefined && payload === this.#probe.payload) {
        this.#probe.arrived();
      }
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CREDENTIALS_CHANNEL}`);
      await this.#roundTrip();
    } catch (error) {
      fail(error);
      return;
    }
    if (failed || this.#stopped) return;
    // Changes made before LISTEN took effect were never announced to this process.
    guarded(() => this.#sink?.reset());
    this.#live = true;
    this.#retryMs = this.#options.retryMs ?? 250;
    guarded(() => this.#options.onState?.(true));
    this.#scheduleProbe(client, fail);
  }

  #scheduleProbe(client: pg.Client, fail: (error: unknown) => void): void {
    this.#probeTimer = setTimeout(() => {
      if (this.#stopped || this.#client !== client) return;
      this.#roundTrip().then(
        () => this.#scheduleProbe(client, fail),
        (error: unknown) => fail(error),
      );
    }, this.#options.probeEveryMs ?? 10_000);
    this.#probeTimer.unref();
  }

  /** Sends a probe through the pool and waits for the listener to hear it. */
  async #roundTrip(): Promise<void> {
    const payload = `${this.#probePrefix}${++this.#probes}`;
    const timeoutMs = this.#options.probeTimeoutMs ?? 3_000;
    let timer: NodeJS.Timeout | undefined;
    const arrived = new Promise<void>((resolve, reject) => {
      this.#probe = { payload, arrived: resolve };
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `a NOTIFY sent through the pool did not reach the listener within ${timeoutMs} ms (a dead connection, or a pooler that does not pass LISTEN/NOTIFY through)`,
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await this.#options.notify(CREDENTIALS_CHANNEL, payload);
      await arrived;
    } finally {
      clearTimeout(timer);
      this.#probe = undefined;
    }
  }

  #down(error: unknown): void {
    this.#live = false;
    guarded(() => this.#sink?.reset());
    if (!this.#stopped) guarded(() => this.#options.onState?.(false, error));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#live = false;
    clearTimeout(this.#timer);
    clearTimeout(this.#probeTimer);
    this.#sink = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) await endQuietly(client);
  }
}
