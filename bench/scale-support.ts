/**
 * Shared by S1 (bench/s1-scale.ts) and R1 (bench/r1-crash.ts): fake providers and
 * vault replicas as child processes, the vault's own store opened on the same
 * PostgreSQL schema with the same master key (to seed and to inspect), bulk
 * seeding, and per-process CPU and memory from /proc.
 *
 * Every child gets a pipe on stdin: the vault process
 * (packages/vault/test-integration/support/vault-process.ts) and the fake
 * provider (through a preloaded module) exit when it closes, so even a bench
 * killed with SIGKILL leaves nothing running. On exit, SIGINT or SIGTERM every
 * child still running is killed and the clean-ups (schemas) run.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadProviderCatalog, type TokenSet } from '@tokenwarden/oauth';
import type { MintedGrant } from '@tokenwarden/testing';
import { Keyring, parseKeyList } from '../packages/vault/src/crypto/keyring.ts';
import { openDatabase } from '../packages/vault/src/db/database.ts';
import { VaultStore } from '../packages/vault/src/store/store.ts';
import { stringArg } from './support.ts';
import {
  assertPostgresReachable,
  baseEnvironment,
  type Child,
  dropSchema,
  EXIT_WITH_PARENT,
  killChild,
  onCleanup,
  PROVIDER_CLI,
  runCleanups,
  SHARED_DATABASE_URL,
  spawnReady,
  stopChild,
  VAULT_PROCESS,
} from './vault-support.ts';

/** The shared PostgreSQL server of the tests and benchmarks. */
export const DATABASE_URL = SHARED_DATABASE_URL;

// Child processes (spawning, clean-up on exit, stopping) are test-integration/support/children.ts's.
export { baseEnvironment, type Child, killChild, onCleanup, runCleanups, spawnReady, stopChild };

// ---------------------------------------------------------------- fake provider

export interface ProviderChild {
  child: Child;
  url: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  resourceUrl: string;
  clientId: string;
  clientSecret: string;
  control<T>(path: string, body?: unknown, method?: string): Promise<T>;
  mint(count: number, scope: string): Promise<MintedGrant[]>;
}

export async function startProvider(options: {
  name: string;
  personality: string;
  tokenLifetimeSeconds: number;
  graceSeconds?: number;
}): Promise<ProviderChild> {
  const clientId = `tw-${options.name}-${randomBytes(3).toString('hex')}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const child = await spawnReady(
    `provider ${options.name}`,
    [
      '--import',
      EXIT_WITH_PARENT,
      PROVIDER_CLI,
      '--personality',
      options.personality,
      '--token-lifetime',
      String(options.tokenLifetimeSeconds),
      ...(options.graceSeconds === undefined ? [] : ['--grace', String(options.graceSeconds)]),
      '--client',
      `${clientId}:${clientSecret}`,
      '--port',
      '0',
    ],
    baseEnvironment(),
  );
  const url = String(child.info.url);
  const control = async <T>(path: string, body?: unknown, method?: string): Promise<T> => {
    const response = await fetch(`${url}/_control/${path}`, {
      method: method ?? (body === undefined ? 'GET' : 'POST'),
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`control ${path}: HTTP ${response.status} ${text}`);
    return JSON.parse(text) as T;
  };
  return {
    child,
    url,
    authorizationEndpoint: String(child.info.authorizationEndpoint),
    tokenEndpoint: String(child.info.tokenEndpoint),
    resourceUrl: String(child.info.resourceUrl),
    clientId,
    clientSecret,
    control,
    async mint(count, scope) {
      const grants: MintedGrant[] = [];
      for (let done = 0; done < count; ) {
        const batch = Math.min(10_000, count - done);
        const answer = await control<{ grants: MintedGrant[] }>('grants', {
          count: batch,
          client_id: clientId,
          scope,
        });
        grants.push(...answer.grants);
        done += batch;
      }
      return grants;
    },
  };
}

// ---------------------------------------------------------------- vault replicas

/**
 * Preloaded into replicas started with `stats`: on SIGUSR2 the process runs a
 * full garbage collection and writes one line `S1-STATS {...}` to stderr with
 * process.memoryUsage() (heapUsed after that GC: what is really retained) and
 * process.cpuUsage().
 */
const STATS_ON_SIGNAL = `data:text/javascript,${encodeURIComponent(
  "process.on('SIGUSR2', () => { globalThis.gc?.(); process.stderr.write('S1-STATS ' + JSON.stringify({ ...process.memoryUsage(), cpu: process.cpuUsage() }) + '\\n'); });",
)}`;

/** Starts one vault process configured by `env` (its own TOKENWARDEN_* and DATABASE_URL). */
export function startReplica(
  name: string,
  env: NodeJS.ProcessEnv,
  options: { stats?: boolean } = {},
): Promise<Child> {
  const args = options.stats === true ? ['--expose-gc', '--import', STATS_ON_SIGNAL] : [];
  return spawnReady(name, [...args, VAULT_PROCESS], { ...baseEnvironment(), ...env });
}

export interface ReplicaStats {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  cpu: { user: number; system: number };
}

/** Asks a replica started with `stats` for its memory after a full GC, and its CPU time. */
export async function replicaStats(child: Child, timeoutMs = 10_000): Promise<ReplicaStats> {
  const answer = new Promise<ReplicaStats>((resolve, reject) => {
    const listener = (line: string) => {
      if (!line.startsWith('S1-STATS ')) return;
      clearTimeout(timer);
      child.listeners.delete(listener);
      resolve(JSON.parse(line.slice('S1-STATS '.length)) as ReplicaStats);
    };
    const timer = setTimeout(() => {
      child.listeners.delete(listener);
      reject(new Error(`${child.name} did not report its stats`));
    }, timeoutMs);
    child.listeners.add(listener);
  });
  child.process.kill('SIGUSR2');
  return answer;
}

// ---------------------------------------------------------------- database

export interface BenchDatabase {
  schema: string;
  /** `TOKENWARDEN_MASTER_KEYS` for every replica. */
  masterKeys: string;
  store: VaultStore;
  close(): Promise<void>;
}

/**
 * A fresh PostgreSQL schema (dropped at clean-up), migrated, and the vault's own
 * store on it with the master key the replicas get.
 */
export async function freshDatabase(databaseUrl: string, prefix: string): Promise<BenchDatabase> {
  await assertPostgresReachable(databaseUrl);
  const schema = `${prefix}_${randomBytes(5).toString('hex')}`;
  onCleanup(() => dropSchema(databaseUrl, schema));
  const masterKeys = `${prefix}:${randomBytes(32).toString('base64')}`;
  const database = await openDatabase({
    dataDir: '/nonexistent',
    databaseUrl,
    databaseSchema: schema,
    poolSize: 4,
  });
  const catalog = await loadProviderCatalog();
  const store = new VaultStore(database.db, new Keyring(parseKeyList(masterKeys)), catalog);
  return { schema, masterKeys, store, close: () => database.close() };
}

export interface SeedRow {
  id: string;
  tenantId: string;
  authClientId: string;
  tokenSet: TokenSet;
  nextRefreshAt: number | null;
}

/**
 * Inserts credentials in multi-row statements of `batch` rows, with exactly the
 * values `CredentialRepository.create` writes (token set encrypted by the store's
 * own `encryptTokens`, bound to the row id).
 */
export async function insertCredentials(
  store: VaultStore,
  rows: readonly SeedRow[],
  now: number,
  batch = 1000,
): Promise<void> {
  for (let start = 0; start < rows.length; start += batch) {
    const values = rows.slice(start, start + batch).map((row) =>
      store.credentials.newRow(
        {
          id: row.id,
          tenantId: row.tenantId,
          authClientId: row.authClientId,
          tokenSet: row.tokenSet,
          flags: { missingRefreshToken: false },
          nextRefreshAt: row.nextRefreshAt,
        },
        now,
      ),
    );
    await store.db.insertInto('credentials').values(values).execute();
  }
}

// ---------------------------------------------------------------- /proc

const CLOCK_TICKS_PER_SECOND = 100;

export interface ProcessSample {
  /** User + system CPU time so far, milliseconds. */
  cpuMs: number;
  /** Resident set size now, and its peak so far (VmHWM), kB. */
  rssKb: number;
  hwmKb: number;
}

/** CPU time and memory of a live process (Linux /proc); undefined when it is gone. */
export function sampleProcess(pid: number): ProcessSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which is in parentheses and may hold spaces).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
    return {
      cpuMs: ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND,
      rssKb: kb('VmRSS'),
      hwmKb: kb('VmHWM'),
    };
  } catch {
    return undefined;
  }
}

/** Busy and total CPU time of the whole machine so far (jiffies), from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

// ---------------------------------------------------------------- arguments and numbers

/** `--name 1,2,3`: positive numbers. */
export function numberListArg(name: string, fallback: number[]): number[] {
  const text = stringArg(name, fallback.join(','));
  const values = text.split(',').map((part) => Number(part.trim()));
  if (values.length === 0 || values.some((v) => !Number.isFinite(v) || v <= 0))
    throw new Error(`--${name} must be positive numbers separated by commas`);
  return values;
}

/** A non-negative number flag (numberArg of support.ts refuses 0). */
export function amountArg(name: string, fallback: number): number {
  const value = Number(stringArg(name, String(fallback)));
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} must be a number ≥ 0`);
  return value;
}

export function log(line: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}
