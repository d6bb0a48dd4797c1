import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, SqliteDialect, sql } from 'kysely';
import pg from 'pg';
import type { ChangeFeed } from '../store/token-cache.ts';
import { PostgresNotifyFeed, SqliteDataVersionFeed } from './change-feed.ts';
import { HolderLiveness, type HolderLivenessOptions } from './holder-liveness.ts';
import { migrateToLatest } from './migrations.ts';
import type { Database } from './schema.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface VaultDatabase {
  readonly db: Kysely<Database>;
  readonly dialect: Dialect;
  /** Where the data lives, without credentials: for logs. */
  readonly description: string;
  /** A feed of other writers' credential changes, for the token cache (not started). */
  changeFeed(options?: {
    onState?: (live: boolean, error?: unknown) => void;
    /** PostgreSQL: the listener connection's application_name. */
    applicationName?: string;
  }): ChangeFeed;
  /**
   * PostgreSQL: this process's liveness lock and the watch on the others' (not
   * started); undefined on SQLite, where leases only expire.
   */
  holderLiveness(
    options: Omit<HolderLivenessOptions, 'connectionString' | 'namespace'>,
  ): HolderLiveness | undefined;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  dataDir: string;
  databaseUrl: string | undefined;
  databaseSchema?: string;
  /** PostgreSQL pool size. */
  poolSize?: number;
}

const INT8_OID = 20;

/** Prepared statements kept per SQL text; the vault's queries are a small fixed set. */
const STATEMENT_CACHE_SIZE = 500;

/**
 * Kysely prepares every query anew, and better-sqlite3's `prepare` was the
 * largest single cost of the valid-token path (bench/s2-token-api.ts profile):
 * a statement is reusable, so it is prepared once per SQL text. A statement
 * still iterating (a streamed query) is busy and cannot run again until it
 * finishes: then a fresh one is prepared for this call.
 */
function withStatementCache(sqlite: SQLite.Database): {
  close(): void;
  prepare(sql: string): SQLite.Statement;
} {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => sqlite.close(),
    prepare: (text: string) => {
      const cached = statements.get(text);
      if (cached !== undefined) return cached.busy ? sqlite.prepare(text) : cached;
      const statement = sqlite.prepare(text);
      if (statements.size >= STATEMENT_CACHE_SIZE) {
        const oldest = statements.keys().next().value;
        if (oldest !== undefined) statements.delete(oldest);
      }
      statements.set(text, statement);
      return statement;
    },
  };
}

/**
 * Opens the database and brings its schema up to date: SQLite in the data folder
 * (WAL, synchronous FULL so a commit survives a crash, a busy timeout so several
 * processes share the file), or PostgreSQL when a URL is given.
 */
export async function openDatabase(options: DatabaseOptions): Promise<VaultDatabase> {
  if (options.databaseUrl === undefined) {
    await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
    const path = join(options.dataDir, 'vault.sqlite');
    const sqlite = new SQLite(path);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('busy_timeout = 10000');
    sqlite.pragma('foreign_keys = ON');
    const db = new Kysely<Database>({
      dialect: new SqliteDialect({ database: withStatementCache(sqlite) }),
    });
    await migrateToLatest(db as Kysely<unknown>, 'sqlite');
    return {
      db,
      dialect: 'sqlite',
      description: `sqlite:${path}`,
      changeFeed: () => new SqliteDataVersionFeed(sqlite),
      holderLiveness: () => undefined,
      close: () => db.destroy(),
    };
  }

  const schema = options.databaseSchema ?? 'public';
  const url = new URL(options.databaseUrl);
  const description = `postgres://${url.host}${url.pathname}${schema === 'public' ? '' : ` (schema ${schema})`}`;
  if (schema !== 'public') {
    const setup = new pg.Client({ connectionString: options.databaseUrl });
    await setup.connect();
    try {
      await setup.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    } catch (error) {
      // IF NOT EXISTS is not safe against a concurrent CREATE: a replica starting at the
      // same moment makes it fail with unique_violation (or duplicate_schema). It exists.
      const code = (error as { code?: string }).code;
      if (code !== '23505' && code !== '42P06') throw error;
    } finally {
      await setup.end();
    }
  }
  const pool = new pg.Pool({
    connectionString: options.databaseUrl,
    max: options.poolSize ?? 10,
    // Times are bigint milliseconds: well inside Number's exact range.
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID
          ? (value: string) => Number(value)
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
    ...(schema === 'public' ? {} : { options: `-c search_path=${schema}` }),
  });
  // A dropped connection (database restart) must not crash the process; the pool reconnects.
  // The pool's 'error' covers idle clients only: a client checked out between two
  // statements (inside a transaction) emits 'error' on itself, and with no listener
  // that killed every replica when PostgreSQL restarted under load
  // (bench/r3-database-restart.ts). Its query fails instead, and the pool drops the
  // broken client when it is released.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  await migrateToLatest(db as Kysely<unknown>, 'postgres', schema);
  const connectionString = options.databaseUrl;
  // The schema the trigger names in its notifications: where `credentials` really
  // is, which the server's search_path decides when no schema is configured.
  const located = await sql<{ schema: string; oid: number }>`
    select n.nspname as schema, c.oid::int8 as oid
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.oid = to_regclass('credentials')`.execute(db);
  const tableSchema = located.rows[0]?.schema ?? schema;
  const tableOid = located.rows[0]?.oid;
  if (tableOid === undefined)
    throw new Error('the credentials table was not found after migration');
  return {
    db,
    dialect: 'postgres',
    description,
    changeFeed: (feed) =>
      new PostgresNotifyFeed({
        connectionString,
        schema: tableSchema,
        notify: async (channel, payload) => {
          await sql`select pg_notify(${channel}, ${payload})`.execute(db);
        },
        ...(feed?.onState === undefined ? {} : { onState: feed.onState }),
        ...(feed?.applicationName === undefined ? {} : { applicationName: feed.applicationName }),
      }),
    holderLiveness: (liveness) =>
      new HolderLiveness({ ...liveness, connectionString, namespace: tableOid }),
    close: () => db.destroy(),
  };
}
