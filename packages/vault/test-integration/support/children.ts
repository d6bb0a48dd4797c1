/**
 * Child processes for the tests and benchmarks that run the vault, the fake
 * provider and other servers as processes of their own
 * (test-integration/support/cross-process.ts, bench/vault-support.ts,
 * bench/scale-support.ts): started with a pipe on stdin, ready when they print
 * one JSON line, killed when this process goes, however it goes.
 *
 * The vault process (vault-process.ts) and the fake provider (through the
 * preloaded EXIT_WITH_PARENT) exit when that pipe closes, so even a SIGKILL of
 * this process leaves nothing behind. On a normal exit, SIGINT or SIGTERM every
 * child is killed and every registered clean-up (temporary folders, PostgreSQL
 * schemas and clusters) runs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
export const PROVIDER_CLI = join(ROOT, 'packages/testing/src/cli.ts');
export const VAULT_PROCESS = join(ROOT, 'packages/vault/test-integration/support/vault-process.ts');
/** Preloaded into children that do not watch their stdin themselves. */
export const EXIT_WITH_PARENT = `data:text/javascript,${encodeURIComponent(
  "process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM')); process.stdin.resume();",
)}`;

/** The shared PostgreSQL server (DESIGN.md "Tests and peers"; never restarted by these runs). */
export const SHARED_DATABASE_URL =
  process.env.TOKENWARDEN_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface Child {
  name: string;
  process: ChildProcess;
  /** The JSON line it printed when ready. */
  info: Record<string, unknown>;
  pid: number;
  /** Its last stderr lines. */
  stderr: string[];
  stderrLines: number;
  /** Log lines (pino JSON) by message: how often each warning or error was logged. */
  messages: Map<string, number>;
  /** Called with every stderr line (S1's stats answers included). */
  listeners: Set<(line: string) => void>;
}

const live = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void> | void> = [];
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      for (const child of live) child.kill('SIGKILL');
      void runCleanups().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    });
  }
}

/** Registers a clean-up to run by runCleanups() (also on SIGINT/SIGTERM), last registered first. */
export function onCleanup(fn: () => Promise<void> | void): void {
  hookExit();
  cleanups.push(fn);
}

export async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop();
    try {
      await fn?.();
    } catch (error) {
      process.stderr.write(`clean-up failed: ${(error as Error).message}\n`);
    }
  }
}

/** Starts a Node.js child and waits for the one JSON line it prints when ready. */
export async function spawnReady(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 90_000,
): Promise<Child> {
  hookExit();
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'pipe'], cwd: ROOT });
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (child.stdout === null || child.stderr === null || child.pid === undefined)
    throw new Error(`${name}: could not start`);
  const record: Child = {
    name,
    process: child,
    pid: child.pid,
    info: {},
    stderr: [],
    stderrLines: 0,
    messages: new Map(),
    listeners: new Set(),
  };
  createInterface({ input: child.stderr }).on('line', (line) => {
    record.stderrLines++;
    for (const listener of record.listeners) listener(line);
    if (line.startsWith('S1-STATS ')) return;
    if (line.startsWith('{')) {
      try {
        const msg = String((JSON.parse(line) as { msg?: unknown }).msg);
        record.messages.set(msg, (record.messages.get(msg) ?? 0) + 1);
      } catch {}
    }
    record.stderr.push(line);
    if (record.stderr.length > 50) record.stderr.shift();
  });
  const lines = createInterface({ input: child.stdout });
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${name} did not start within ${timeoutMs} ms`)),
      timeoutMs,
    );
    lines.once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line) as Record<string, unknown>);
      } catch {
        reject(new Error(`${name} printed ${JSON.stringify(line)} instead of its JSON line`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `${name} exited (${signal ?? `code ${code}`}) before it was ready:\n${record.stderr.join('\n')}`,
        ),
      );
    });
  });
  try {
    record.info = await ready;
  } catch (error) {
    await stopChild(record);
    throw error;
  }
  return record;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when it exited. */
export async function stopChild(child: Child, graceMs = 10_000): Promise<void> {
  const proc = child.process;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** kill -9; resolves when it is gone. */
export async function killChild(child: Child): Promise<void> {
  const proc = child.process;
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill('SIGKILL');
  await exited;
}

/** The inherited environment without anything that would configure a vault. */
export function baseEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (
      key.startsWith('TOKENWARDEN_') ||
      ['DATABASE_URL', 'HOST', 'PORT', 'LOG_LEVEL'].includes(key)
    )
      continue;
    env[key] = value;
  }
  return env;
}

/** Fails with a clear message when the PostgreSQL server is not there: CI fails, it does not skip. */
export async function assertPostgresReachable(
  databaseUrl: string = SHARED_DATABASE_URL,
  neededBy = 'this run',
): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    const where = new URL(databaseUrl);
    throw new Error(
      `PostgreSQL is not reachable at ${where.host}${where.pathname} (${error instanceof Error ? error.message : String(error)}); ` +
        `${neededBy} needs it (start PostgreSQL on 127.0.0.1:5432, or set TOKENWARDEN_TEST_DATABASE_URL)`,
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function dropSchema(databaseUrl: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}
