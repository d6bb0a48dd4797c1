import type { CredentialWithTokens } from './credentials.ts';

/**
 * Where the cache learns of changes made by other writers: another process on
 * the same SQLite file, or another replica on PostgreSQL. This process's own
 * writes invalidate their entry directly (CredentialRepository).
 */
export interface ChangeFeed {
  /**
   * Starts delivering changes to `sink`: `changed(id)` for one credential, and
   * `reset()` whenever changes may have been missed.
   */
  start(sink: ChangeSink): void;
  /** False while changes cannot be delivered (a dropped listener): nothing is served from the cache then. */
  readonly live: boolean;
  /** Called before every lookup; a feed that polls (SQLite) checks here, synchronously. */
  poll(): void;
  stop(): Promise<void>;
}

export interface ChangeSink {
  changed(id: string): void;
  reset(): void;
}

export interface TokenCacheOptions {
  /**
   * Entries kept at most; the oldest filled goes first (every entry is refilled
   * within `maxAgeMs` anyway, and a hit then costs no reordering).
   */
  maxEntries: number;
  /** An entry is read again from the database after this long, whatever the feed says. */
  maxAgeMs: number;
  /**
   * After this process writes a credential, it is neither served from nor stored
   * in the cache for this long (default 2 s): the write's transaction commits
   * later, and a read on another connection meanwhile still sees the old row.
   */
  writeWindowMs?: number;
  /** A monotonic clock in ms (default `performance.now`): a wall clock stepping back must not stretch maxAgeMs. */
  now?: () => number;
}

interface Entry {
  value: CredentialWithTokens;
  filledAt: number;
}

export type CacheLookup = 'hit' | 'miss' | 'bypass';

/**
 * The decrypted credential rows the token endpoint serves, so that the
 * valid-token path reads neither the database nor the cipher (bench S2). It is
 * coherent, not merely short-lived: every write of a credential through this
 * process drops its entry, and a `ChangeFeed` drops the entries other writers
 * changed (SQLite: `PRAGMA data_version`; PostgreSQL: LISTEN on a trigger's
 * NOTIFY). While the feed is down the cache is bypassed.
 *
 * A read that began before an invalidation must not store what it read: every
 * invalidation bumps a generation, and `fill` stores only when the generation
 * is the one the reader saw before it read.
 */
export class TokenCache implements ChangeSink {
  readonly #entries = new Map<string, Entry>();
  readonly #options: TokenCacheOptions;
  readonly #now: () => number;
  #feed: ChangeFeed | undefined;
  #generation = 0;
  /** Credentials this process wrote recently, until when they stay uncached. */
  readonly #writing = new Map<string, number>();
  readonly #writeWindowMs: number;
  /** Lookups by result since start, for /metrics. */
  readonly lookups: Record<CacheLookup, number> = { hit: 0, miss: 0, bypass: 0 };

  constructor(options: TokenCacheOptions) {
    this.#options = options;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#writeWindowMs = options.writeWindowMs ?? 2_000;
  }

  /** Connects the feed of other writers' changes. Without one, only this process writes. */
  attach(feed: ChangeFeed): void {
    this.#feed = feed;
    feed.start(this);
  }

  /** Whether other writers' changes are being heard (no feed: only this process writes). */
  get feedLive(): boolean {
    return this.#feed?.live ?? true;
  }

  get size(): number {
    return this.#entries.size;
  }

  /**
   * The cached row of credential `id` in `tenantId`, or why there is none:
   * `miss` (read it, then `fill` with `generation`) or `bypass` (read it, do not fill).
   */
  lookup(
    tenantId: string,
    id: string,
  ):
    | { value: CredentialWithTokens; generation?: undefined }
    | { result: CacheLookup; generation: number } {
    const feed = this.#feed;
    if (feed !== undefined) {
      feed.poll();
      if (!feed.live) {
        this.lookups.bypass++;
        return { result: 'bypass', generation: -1 };
      }
    }
    const value = this.#fresh(tenantId, id);
    if (value !== undefined) {
      this.lookups.hit++;
      return { value };
    }
    this.lookups.miss++;
    return { result: 'miss', generation: this.#generation };
  }

  /**
   * The cached row, or undefined, without waiting and without counting a miss:
   * the token endpoint's synchronous first try (a miss then goes through `lookup`).
   */
  peek(tenantId: string, id: string): CredentialWithTokens | undefined {
    const feed = this.#feed;
    if (feed !== undefined) {
      feed.poll();
      if (!feed.live) return undefined;
    }
    const value = this.#fresh(tenantId, id);
    if (value !== undefined) this.lookups.hit++;
    return value;
  }

  #fresh(tenantId: string, id: string): CredentialWithTokens | undefined {
    if (this.#writing.size > 0 && this.#isWriting(id)) return undefined;
    const entry = this.#entries.get(id);
    if (entry === undefined || entry.value.record.tenantId !== tenantId) return undefined;
    if (this.#now() - entry.filledAt < this.#options.maxAgeMs) return entry.value;
    this.#entries.delete(id);
    return undefined;
  }

  /** Stores a row read after `lookup` returned `generation`, unless something changed since. */
  fill(value: CredentialWithTokens, generation: number): void {
    if (generation !== this.#generation || this.#options.maxEntries <= 0) return;
    if (this.#feed !== undefined && !this.#feed.live) return;
    if (this.#isWriting(value.record.id)) return;
    this.#entries.delete(value.record.id);
    if (this.#entries.size >= this.#options.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(value.record.id, { value, filledAt: this.#now() });
  }

  /**
   * This process is writing credential `id` (called before the statement, inside
   * its transaction): dropped now, and kept out of the cache until the write
   * window has passed, by when its transaction has committed. (SQLite needs no
   * window, its one connection serializes, and PostgreSQL's NOTIFY at the commit
   * drops a row read before it anyway; the window closes the milliseconds
   * between, so a DELETE answered here is never followed by this replica
   * serving the token.)
   */
  written(id: string): void {
    const now = this.#now();
    if (this.#writing.size >= 1_000) {
      for (const [key, until] of this.#writing) if (until <= now) this.#writing.delete(key);
    }
    this.#writing.set(id, now + this.#writeWindowMs);
    this.changed(id);
  }

  #isWriting(id: string): boolean {
    const until = this.#writing.get(id);
    if (until === undefined) return false;
    if (this.#now() < until) return true;
    this.#writing.delete(id);
    return false;
  }

  /** Credential `id` changed (or may have): drop it, and keep reads under way from storing it. */
  changed(id: string): void {
    this.#generation++;
    this.#entries.delete(id);
  }

  /** Anything may have changed: drop everything. */
  reset(): void {
    this.#generation++;
    this.#entries.clear();
  }

  async stop(): Promise<void> {
    this.reset();
    await this.#feed?.stop();
  }
}
