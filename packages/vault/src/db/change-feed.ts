import type SQLite from 'better-sqlite3';
import pg from 'pg';
import type { ChangeFeed, ChangeSink } from '../store/token-cache.ts';

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
  schema: string;
  /** Reconnect delay after the listener's connection fails: doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Told when the listener goes down or comes back (for the log). */
  onState?: (live: boolean, error?: unknown) => void;
}

/**
 * PostgreSQL: a connection of its own that LISTENs to the channel the trigger
 * notifies at every commit that changes a credential's tokens or status, or
 * deletes it. Notifications arrive only while that connection lives: when it
 * drops, the feed is not live (the cache is bypassed and emptied) until it has
 * reconnected and listens again.
 */
export class PostgresNotifyFeed implements ChangeFeed {
  readonly #options: PostgresFeedOptions;
  readonly #prefix: string;
  #sink: ChangeSink | undefined;
  #client: pg.Client | undefined;
  #live = false;
  #stopped = false;
  #retryMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: PostgresFeedOptions) {
    this.#options = options;
    this.#prefix = `${options.schema}/`;
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
        throw new Error('the credential change listener is not connected');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      // Operators (and tests) find the listener in pg_stat_activity by this name.
      application_name: LISTENER_APPLICATION_NAME,
    });
    this.#client = client;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      this.#down(error);
      client.removeAllListeners('notification');
      client.end().catch(() => undefined);
      if (this.#stopped) return;
      this.#timer = setTimeout(() => void this.#connect(), this.#retryMs);
      this.#timer.unref();
      this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 5_000);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('connection ended')));
    client.on('notification', (message) => {
      const payload = message.payload;
      if (message.channel !== CREDENTIALS_CHANNEL || payload === undefined) return;
      if (payload.startsWith(this.#prefix)) this.#sink?.changed(payload.slice(this.#prefix.length));
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CREDENTIALS_CHANNEL}`);
    } catch (error) {
      fail(error);
      return;
    }
    if (failed || this.#stopped) return;
    // Changes made before LISTEN took effect were never announced to this process.
    this.#sink?.reset();
    this.#live = true;
    this.#retryMs = this.#options.retryMs ?? 250;
    this.#options.onState?.(true);
  }

  #down(error: unknown): void {
    const wasLive = this.#live;
    this.#live = false;
    this.#sink?.reset();
    if (wasLive && !this.#stopped) this.#options.onState?.(false, error);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#live = false;
    clearTimeout(this.#timer);
    this.#sink = undefined;
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) {
      client.removeAllListeners('end');
      client.removeAllListeners('error');
      client.on('error', () => undefined);
      await client.end().catch(() => undefined);
    }
  }
}
