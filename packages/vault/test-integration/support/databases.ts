/**
 * Both storage engines for integration tests: SQLite in a fresh temp folder, and
 * PostgreSQL (127.0.0.1:5432, trust auth) in a fresh schema `tw_test_<random>`
 * that is dropped afterwards. Every storage test runs once per engine:
 *
 *   for (const engine of engines()) {
 *     describe(engine.name, () => {
 *       test('…', async (t) => {
 *         const database = await engine.create(t);   // cleaned up after the test
 *         const handle = await database.open();
 *       });
 *     });
 *   }
 *
 * PostgreSQL missing is a failure with a clear message, never a skip
 * (DESIGN.md: "CI fails, not skips, when it is missing").
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type VaultDatabase } from '../../src/db/database.ts';

/** Where the PostgreSQL tests connect; TOKENWARDEN_TEST_POSTGRES_URL overrides it. */
export const POSTGRES_URL =
  process.env.TOKENWARDEN_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export type EngineName = 'sqlite' | 'postgres';

/** One test's own database: a temp data folder, plus a schema on PostgreSQL. */
export interface TestDatabase {
  readonly engine: EngineName;
  /** A fresh temp folder (the SQLite file, the key file). */
  readonly dataDir: string;
  /** Undefined on SQLite. */
  readonly databaseUrl: string | undefined;
  /** The test's own schema on PostgreSQL; 'public' (unused) on SQLite. */
  readonly databaseSchema: string;
  /** The environment variables that point a vault's config at this database. */
  readonly env: Readonly<Record<string, string>>;
  /** Opens (and migrates) the database; closed by cleanup() if still open. */
  open(options?: { poolSize?: number }): Promise<VaultDatabase>;
  /** Closes what open() opened, drops the schema, removes the temp folder. Idempotent. */
  cleanup(): Promise<void>;
}

export interface Engine {
  readonly name: EngineName;
  /**
   * A fresh database for one test. Given the test context, cleanup is registered
   * with `t.after`; without it, the caller calls cleanup().
   */
  create(t?: { after(fn: () => Promise<void>): void }): Promise<TestDatabase>;
}

/** SQLite and PostgreSQL, in that order. */
export function engines(): Engine[] {
  return [
    { name: 'sqlite', create: (t) => register(t, createSqlite()) },
    { name: 'postgres', create: (t) => register(t, createPostgres()) },
  ];
}

async function register(
  t: { after(fn: () => Promise<void>): void } | undefined,
  pending: Promise<TestDatabase>,
): Promise<TestDatabase> {
  const database = await pending;
  t?.after(() => database.cleanup());
  return database;
}

async function createSqlite(): Promise<TestDatabase> {
  const dataDir = await mkdtemp(join(tmpdir(), 'tw-sqlite-'));
  return testDatabase({ engine: 'sqlite', dataDir, databaseUrl: undefined, schema: 'public' });
}

async function createPostgres(): Promise<TestDatabase> {
  await assertPostgresReachable();
  const dataDir = await mkdtemp(join(tmpdir(), 'tw-pg-'));
  const schema = randomSchemaName();
  return testDatabase({
    engine: 'postgres',
    dataDir,
    databaseUrl: POSTGRES_URL,
    schema,
    dropSchema: () => dropSchema(schema),
  });
}

function testDatabase(spec: {
  engine: EngineName;
  dataDir: string;
  databaseUrl: string | undefined;
  schema: string;
  dropSchema?: () => Promise<void>;
}): TestDatabase {
  const opened: VaultDatabase[] = [];
  /** Opens still under way when a test ends (one of a Promise.all failed): waited for before dropping. */
  const opening: Array<Promise<unknown>> = [];
  let cleaned: Promise<void> | undefined;
  return {
    engine: spec.engine,
    dataDir: spec.dataDir,
    databaseUrl: spec.databaseUrl,
    databaseSchema: spec.schema,
    env: {
      TOKENWARDEN_DATA_DIR: spec.dataDir,
      ...(spec.databaseUrl === undefined
        ? {}
        : { DATABASE_URL: spec.databaseUrl, TOKENWARDEN_DATABASE_SCHEMA: spec.schema }),
    },
    open(options = {}) {
      const pending = openDatabase({
        dataDir: spec.dataDir,
        databaseUrl: spec.databaseUrl,
        databaseSchema: spec.schema,
        ...(options.poolSize === undefined ? {} : { poolSize: options.poolSize }),
      }).then((database) => {
        // close() twice must be harmless: tests close early, cleanup closes again.
        let closing: Promise<void> | undefined;
        const tracked: VaultDatabase = {
          ...database,
          close: () => {
            closing ??= database.close();
            return closing;
          },
        };
        opened.push(tracked);
        return tracked;
      });
      opening.push(pending.catch(() => undefined));
      return pending;
    },
    cleanup() {
      cleaned ??= (async () => {
        await Promise.all(opening);
        for (const database of opened) await database.close().catch(() => undefined);
        await spec.dropSchema?.();
        await rm(spec.dataDir, { recursive: true, force: true });
      })();
      return cleaned;
    },
  };
}

/** `tw_test_<16 hex>`: a valid lowercase identifier (TOKENWARDEN_DATABASE_SCHEMA's rule). */
export function randomSchemaName(): string {
  return `tw_test_${randomBytes(8).toString('hex')}`;
}

let reachable: Promise<void> | undefined;

/**
 * Fails (once per run, then fast) with a message saying what is missing when
 * PostgreSQL cannot be reached. Never a skip.
 */
export function assertPostgresReachable(): Promise<void> {
  reachable ??= (async () => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 5000 });
    try {
      await client.connect();
      await client.query('select 1');
    } catch (error) {
      throw new Error(
        `PostgreSQL is not reachable at ${redactUrl(POSTGRES_URL)} (${(error as Error).message}). ` +
          'The storage tests run on SQLite and PostgreSQL and fail, not skip, without it: ' +
          'start PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth) or set TOKENWARDEN_TEST_POSTGRES_URL.',
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  })();
  return reachable;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.href;
  } catch {
    return '(unparsable URL)';
  }
}

/** Runs `fn` with a plain client on the server (no search_path). */
export async function withPostgresClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  await assertPostgresReachable();
  const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function dropSchema(schema: string): Promise<void> {
  if (!/^tw_test_[a-z0-9_]+$/.test(schema)) throw new Error(`refusing to drop schema ${schema}`);
  await withPostgresClient((client) => client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`));
}

/** The tables of a schema, sorted. */
export async function postgresTables(schema: string): Promise<string[]> {
  return withPostgresClient(async (client) => {
    const result = await client.query<{ table_name: string }>(
      `SELECT table_name FROM information_schema.tables
        WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`,
      [schema],
    );
    return result.rows.map((row) => row.table_name);
  });
}

/** Every row of every table in a schema (`SELECT *`), by table. */
export async function postgresRows(
  schema: string,
): Promise<Array<{ table: string; rows: Record<string, unknown>[] }>> {
  const tables = await postgresTables(schema);
  return withPostgresClient(async (client) => {
    const dump: Array<{ table: string; rows: Record<string, unknown>[] }> = [];
    for (const table of tables) {
      const result = await client.query<Record<string, unknown>>(
        `SELECT * FROM "${schema}"."${table}"`,
      );
      dump.push({ table, rows: result.rows });
    }
    return dump;
  });
}

/** The SQLite database files of a data folder: vault.sqlite and its -wal / -shm when present. */
export async function sqliteFiles(dataDir: string): Promise<string[]> {
  const names = await readdir(dataDir);
  return names
    .filter((name) => /^vault\.sqlite(-wal|-shm|-journal)?$/.test(name))
    .map((name) => join(dataDir, name));
}
