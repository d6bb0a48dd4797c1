import pg from 'pg';
import { endQuietly, guarded } from './dedicated-connection.ts';

/** The liveness connection's `application_name` (followed by the instance id). */
export const LIVENESS_APPLICATION_NAME = 'tokenwarden-liveness';

export interface HolderLivenessOptions {
  connectionString: string;
  /**
   * The `credentials` table's oid: the locks' first key, so that vaults in other
   * schemas of the same database never see each other's processes.
   */
  namespace: number;
  /**
   * Ends the unexpired leases stamped with a holder whose lock was seen released
   * (CredentialRepository.endLeasesOfHolder, given the locks' first key, the
   * namespace as int4): resolves to their owners, or undefined when the holder's
   * lock turned out held again.
   */
  endLeases: (holder: number, namespaceKey: number) => Promise<string[] | undefined>;
  applicationName?: string;
  /** How often the holders' locks are read (default 250 ms). */
  pollMs?: number;
  /** Polls in a row, on one session, that must see a holder's lock free before its leases end (default 2). */
  missesToEnd?: number;
  /** Reconnect delay after the connection fails: doubles up to `maxRetryMs`. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Told when this process's own lock is known held (true) and when that stops (false, with why). */
  onState?: (live: boolean, error?: unknown) => void;
  /** Told when another holder's leases were ended: its lock number and the leases' owners. */
  onEnded?: (holder: number, owners: string[]) => void;
  /** Told when a poll's statement failed (the session is kept; polled again). */
  onPollFailed?: (error: unknown) => void;
  /** Told when ending a gone holder's leases failed (tried again at the next poll). */
  onEndFailed?: (holder: number, error: unknown) => void;
  random?: () => number;
  /** A monotonic clock in ms. */
  now?: () => number;
}

const MAX_HOLDER = 0x7fff_ffff;

/**
 * PostgreSQL: tells the vault's processes, within a poll or two, that another one
 * has died, so the refresh leases it held are taken over at once rather than when
 * they expire. Without it each dead holder costs up to a lease (R1: a chain of
 * them outlasted a rotating provider's 10-s grace period).
 *
 * Each process holds a session-level advisory lock, (credentials table oid, a random
 * number), on a connection of its own for as long as it lives, and stamps every lease
 * it takes with that number (`lease_holder`) while the lock is known to be held by
 * that connection's session. PostgreSQL ends a session, and releases its locks, as
 * soon as the client's socket closes, which a killed process's kernel does at once.
 * Every process reads the granted locks of its namespace from `pg_locks` every
 * `pollMs`; a holder whose lock it saw held and then sees free on `missesToEnd`
 * polls in a row of the same session has its leases ended (`endLeases`).
 *
 * A lock seen free only counts after it was seen held on the same session: when
 * PostgreSQL restarts (or fails over) every session ends, the watcher's included,
 * and the holders that come back take their numbers again, so a restart ends no
 * lease (bench/r3-database-restart.ts). A process that lost its own session stamps
 * nothing until its lock is held again; a lease stamped just before it learned of
 * the loss is ended like a dead process's, and a refresh it still has under way
 * then races the takeover as a refresh outliving its lease does. Behind a
 * transaction-mode pooler the lock would belong to whichever server connection ran
 * the statement: every poll checks that the lock is held by its own backend, and
 * when it is not this process stamps nothing (leases then only expire).
 */
export class HolderLiveness {
  readonly #options: HolderLivenessOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #pollMs: number;
  /** The locks' first key: the namespace (an oid) as the int4 pg_advisory_lock takes. */
  readonly #namespaceKey: number;
  #client: pg.Client | undefined;
  #holder: number | undefined;
  /** When a poll last found this process's lock held by its own session (monotonic ms). */
  #verifiedAt = Number.NEGATIVE_INFINITY;
  /** Other holders seen on this session, with how many polls in a row found them gone. */
  readonly #seen = new Map<number, number>();
  #live = false;
  /** The backend pid of the session that took this process's lock. */
  #lockPid: number | undefined;
  /** The lock turned out to belong to another session than the polling one (a pooler). */
  #pooled = false;
  #stopped = false;
  #retryMs: number;
  #timer: NodeJS.Timeout | undefined;

  constructor(options: HolderLivenessOptions) {
    this.#options = options;
    this.#now = options.now ?? performance.now.bind(performance);
    this.#random = options.random ?? Math.random;
    this.#pollMs = options.pollMs ?? 250;
    this.#namespaceKey = options.namespace | 0;
    this.#retryMs = options.retryMs ?? 250;
  }

  /**
   * The number to stamp leases with: this process's lock number while a recent poll
   * (within four poll intervals) found the lock held by its own session; else null,
   * and a lease taken then only expires.
   */
  holder(): number | null {
    if (this.#holder === undefined) return null;
    return this.#now() - this.#verifiedAt <= 4 * this.#pollMs ? this.#holder : null;
  }

  get live(): boolean {
    return this.#live;
  }

  /** The liveness connection's backend pid, for tests that cut it. */
  get backendPid(): number | undefined {
    return (this.#client as { processID?: number } | undefined)?.processID;
  }

  start(): void {
    void this.#connect();
  }

  /** Resolves once this process's lock is held and verified; rejects after `timeoutMs`. */
  async ready(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.holder() === null) {
      if (this.#stopped || Date.now() > deadline) throw new Error('the liveness lock is not held');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async #connect(): Promise<void> {
    if (this.#stopped) return;
    const client = new pg.Client({
      connectionString: this.#options.connectionString,
      application_name: this.#options.applicationName ?? LIVENESS_APPLICATION_NAME,
      // A dead peer is found by TCP keep-alive, not by a query timeout: ending the
      // session over a slow answer would release a live process's lock.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      connectionTimeoutMillis: 5_000,
    });
    this.#client = client;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      clearTimeout(this.#timer);
      this.#lost(error);
      client.end().catch(() => undefined);
      if (this.#stopped) return;
      this.#timer = setTimeout(() => void this.#connect(), this.#retryMs);
      this.#timer.unref();
      this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs ?? 5_000);
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('the liveness connection ended')));
    try {
      await client.connect();
      this.#holder = await this.#lock(client);
    } catch (error) {
      fail(error);
      return;
    }
    if (failed || this.#stopped) return;
    this.#pooled = false;
    this.#retryMs = this.#options.retryMs ?? 250;
    const loop = async () => {
      if (this.#stopped || this.#client !== client) return;
      try {
        await this.#poll(client, () => this.#client !== client || failed);
      } catch (error) {
        // A failed statement (a statement_timeout, a slow database) keeps the session
        // and its lock: nothing is verified this time, so after four intervals this
        // process stamps nothing until a poll succeeds. A dropped connection is told
        // by the client's 'error' and 'end'.
        this.#options.onPollFailed?.(error);
      }
      if (this.#stopped || this.#client !== client || failed) return;
      this.#timer = setTimeout(() => void loop(), this.#pollMs);
      this.#timer.unref();
    };
    await loop();
  }

  /** Takes this process's lock: its number from before a reconnect if free, else a new one. */
  async #lock(client: pg.Client): Promise<number> {
    let holder = this.#holder ?? this.#pick();
    for (let attempt = 0; attempt < 16; attempt++) {
      const { rows } = await client.query<{ locked: boolean; pid: number }>(
        'select pg_try_advisory_lock($1::int4, $2::int4) as locked, pg_backend_pid() as pid',
        [this.#namespaceKey, holder],
      );
      if (rows[0]?.locked === true) {
        this.#lockPid = rows[0].pid;
        return holder;
      }
      // Held by another process, or by this one's previous session not yet ended.
      holder = this.#pick();
    }
    throw new Error('could not take a liveness lock: 16 numbers in a row were taken');
  }

  #pick(): number {
    return 1 + Math.floor(this.#random() * MAX_HOLDER);
  }

  async #poll(client: pg.Client, superseded: () => boolean): Promise<void> {
    if (this.#pooled) return;
    const { rows } = await client.query<{ me: number; holders: string[]; pids: number[] }>(
      `select pg_backend_pid() as me,
              coalesce(array_agg(l.objid::int8), '{}') as holders,
              coalesce(array_agg(l.pid), '{}') as pids
         from pg_locks l
        where l.locktype = 'advisory' and l.objsubid = 2 and l.granted
          and l.classid = $1::int8::oid
          and l.database = (select oid from pg_database where datname = current_database())`,
      [this.#options.namespace],
    );
    const row = rows[0];
    if (row === undefined) throw new Error('pg_locks answered no row');
    const present = new Set<number>();
    let mine: number | undefined;
    row.holders.forEach((text, index) => {
      const holder = Number(text);
      if (holder === this.#holder) mine = row.pids[index];
      else present.add(holder);
    });
    // The lock must be held by the very session that took it, that answers this poll,
    // and that the connection's startup named (a pooler hands out keys of its own).
    const processId = (client as { processID?: number }).processID;
    if (mine === undefined || mine !== row.me || row.me !== this.#lockPid || processId !== row.me) {
      // A transaction-mode pooler (or a reset that dropped the lock). For good on this
      // connection: a poll landing on the lock's server connection by chance proves
      // nothing, and the pooler may close that one while this process lives. Nor are
      // others watched: the pooler's client connection outlives a database restart,
      // so "seen on this session" would mean nothing.
      this.#pooled = true;
      this.#seen.clear();
      this.#verifiedAt = Number.NEGATIVE_INFINITY;
      this.#live = false;
      const error = new Error(
        'the liveness lock is not held by the session polling it (a transaction-mode pooler?): leases of dead processes are taken over only when they expire; give the vault a direct or session-mode database URL',
      );
      guarded(() => this.#options.onState?.(false, error));
      return;
    }
    this.#verifiedAt = this.#now();
    if (!this.#live) {
      this.#live = true;
      guarded(() => this.#options.onState?.(true));
    }
    const missesToEnd = this.#options.missesToEnd ?? 2;
    for (const holder of present) this.#seen.set(holder, 0);
    for (const [holder, misses] of this.#seen) {
      if (present.has(holder)) continue;
      if (misses + 1 < missesToEnd) {
        this.#seen.set(holder, misses + 1);
        continue;
      }
      let owners: string[] | undefined;
      try {
        owners = await this.#options.endLeases(holder, this.#namespaceKey);
      } catch (error) {
        // Through the pool, which may be down while this session is not: kept, and
        // tried again at the next poll (this session's failure would forget it).
        guarded(() => this.#options.onEndFailed?.(holder, error));
        if (superseded()) return;
        continue;
      }
      // This session ended meanwhile: what it saw is forgotten (#lost), not acted on.
      if (superseded()) return;
      if (owners === undefined) {
        // Held again (the holder came back with its number): alive.
        this.#seen.set(holder, 0);
        continue;
      }
      this.#seen.delete(holder);
      guarded(() => this.#options.onEnded?.(holder, owners));
    }
  }

  #lost(error: unknown): void {
    this.#verifiedAt = Number.NEGATIVE_INFINITY;
    // Holders seen on the session that ended say nothing about the next one.
    this.#seen.clear();
    const wasLive = this.#live;
    this.#live = false;
    if (wasLive && !this.#stopped) guarded(() => this.#options.onState?.(false, error));
  }

  /** Ends the connection, and with it the lock: the other processes end this one's leases. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#verifiedAt = Number.NEGATIVE_INFINITY;
    this.#live = false;
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) await endQuietly(client);
  }
}
