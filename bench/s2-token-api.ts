/**
 * S2: throughput of the vault's valid-token path, `POST /v1/credentials/:id/access-token`
 * (API key check, credential read and decrypt, JSON answer; no refresh: the token
 * lives a day), against a Fastify hello-world route in the same run on the same
 * machine. One vault on SQLite, one on PostgreSQL (the shared server, a fresh
 * schema), the hello-world app (bench/fastify-hello.ts), each in a child process;
 * autocannon's programmatic API in this process is the load generator, with the
 * same request (POST, `{}` body, bearer header), connections and duration for
 * every target. Each target is warmed up, then the rounds alternate (the order
 * rotates each round, so drift in the machine's load hits all targets alike).
 *   node bench/s2-token-api.ts [--connections 10] [--seconds 5] [--rounds 4] [--warmup 3]
 *                              [--log-level warn] [--pin] [--baseline <vault-process.ts>]
 *                              [--cpu-prof <dir>] [--vault-env KEY=VALUE,KEY=VALUE]
 *
 * Goal: vault requests/s ≥ 0.6 × hello-world requests/s, for each database.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon, { type Result } from 'autocannon';
import { Agent } from 'undici';
import { machineCpu, sampleProcess } from './scale-support.ts';
import { numberArg, report, round, stringArg } from './support.ts';
import {
  assertPostgresReachable,
  baseEnvironment,
  connectCredential,
  createAuthClient,
  dropSchemaLater,
  metricByLabel,
  newAdminKey,
  newSchema,
  onCleanup,
  runCleanups,
  SHARED_DATABASE_URL,
  spawnReady,
  startProvider,
  startVaults,
  stopChild,
  VAULT_PROCESS,
  VaultApi,
} from './vault-support.ts';

const connections = numberArg('connections', 10);
const seconds = numberArg('seconds', 5);
const rounds = numberArg('rounds', 4);
const warmup = numberArg('warmup', 3);
const logLevel = stringArg('log-level', 'warn');
/**
 * `--pin`: the load generator (this process) on CPU 0, every server under test on
 * CPU 1 (`taskset`, all threads), so that neither competes with the other for a
 * core and each server's figure is its own single-core throughput.
 */
const pin = process.argv.includes('--pin');
const pinned: number[] = [];
const pinTo = (cpu: number, pid: number) => {
  execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
};
const HELLO = fileURLToPath(new URL('./fastify-hello.ts', import.meta.url));

/**
 * `--baseline <path>`: also measure another vault-process.ts (a checkout of an
 * earlier commit) on both databases, as `baseline-sqlite` and `baseline-postgres`:
 * before and after, side by side in one run.
 */
const baseline = stringArg('baseline', '');
/** `--cpu-prof <dir>`: each vault writes a V8 CPU profile into `<dir>/<target>/` when it stops. */
const cpuProfileDir = stringArg('cpu-prof', '');
/**
 * `--vault-env TOKENWARDEN_BACKGROUND_REFRESH=0,…`: more environment for every vault
 * (the bench's own environment does not reach them), to see what a feature costs.
 */
const vaultEnv: Record<string, string> = Object.fromEntries(
  stringArg('vault-env', '')
    .split(',')
    .filter((pair) => pair !== '')
    .map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new Error(`--vault-env: ${pair} is not KEY=VALUE`);
      return [pair.slice(0, at), pair.slice(at + 1)];
    }),
);

interface Target {
  name: string;
  url: string;
  /** The server's process, for its CPU time. */
  pid: number;
  /** A vault's API, to read its /metrics after the run. */
  api?: VaultApi;
  headers: Record<string, string>;
}

interface RoundResult {
  round: number;
  target: Target['name'];
  requestsPerSecond: number;
  total: number;
  /**
   * Mean latency, ms, from the rate (connections ÷ requests per second: each connection
   * has one request in flight). autocannon records whole milliseconds, too coarse here.
   */
  meanMs: number;
  p50: number;
  p99: number;
  non2xx: number;
  errors: number;
  /** The server process's CPU time (user + system) per request, µs. */
  serverCpuUsPerRequest: number;
  /** Its CPU time over the round's length: 1 is one core busy all along. */
  serverCoreShare: number;
  /** The same for this process (autocannon). */
  loadGeneratorCoreShare: number;
  /** The same for the other servers, idle meanwhile (their timers, pools, listeners). */
  idleServersCoreShare: number;
  /** Both cores: busy time over all time (/proc/stat). */
  machineBusyShare: number;
}

const agent = new Agent({ connections: 16 });
const loadBefore = loadavg().map((n) => round(n, 2));
process.stderr.write(`load average before: ${loadBefore.join(' ')}\n`);

try {
  await assertPostgresReachable(SHARED_DATABASE_URL);
  const provider = await startProvider(
    { personality: 'generic', tokenLifetimeSeconds: 86_400 },
    agent,
  );
  onCleanup(() => stopChild(provider.child));

  const targets: Target[] = [];
  const hello = await spawnReady('fastify hello-world', [HELLO], baseEnvironment());
  onCleanup(() => stopChild(hello));
  pinned.push(hello.pid);
  const authHeader = `Bearer ${newAdminKey()}`;
  targets.push({
    name: 'hello-world',
    pid: hello.pid,
    url: String(hello.info.url),
    headers: { authorization: authHeader, 'content-type': 'application/json' },
  });

  const vaultTargets = [
    { name: 'vault-sqlite', backend: 'sqlite', process: VAULT_PROCESS },
    { name: 'vault-postgres', backend: 'postgres', process: VAULT_PROCESS },
    ...(baseline === ''
      ? []
      : [
          { name: 'baseline-sqlite', backend: 'sqlite', process: baseline },
          { name: 'baseline-postgres', backend: 'postgres', process: baseline },
        ]),
  ] as const;
  for (const { name, backend, process: vaultProcess } of vaultTargets) {
    const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-s2-'));
    onCleanup(() => rm(dataDir, { recursive: true, force: true }));
    const adminKey = newAdminKey();
    const schema = newSchema('tw_s2');
    if (backend === 'postgres') await dropSchemaLater(SHARED_DATABASE_URL, schema);
    const [vault] = await startVaults(
      {
        dataDir,
        adminKey,
        logLevel,
        ...(backend === 'postgres' ? { databaseUrl: SHARED_DATABASE_URL, schema } : {}),
        env: {
          ...vaultEnv,
          ...(cpuProfileDir === ''
            ? {}
            : { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${join(cpuProfileDir, name)}` }),
        },
      },
      1,
      vaultProcess,
    );
    if (vault === undefined) throw new Error('no vault');
    onCleanup(() => stopChild(vault.child));
    pinned.push(vault.child.pid);
    const api = new VaultApi(vault.url, adminKey, agent);
    const authClientId = await createAuthClient(api, provider);
    const credentialId = await connectCredential(api, authClientId, agent);
    const path = `/v1/credentials/${credentialId}/access-token`;
    const first = await api.must('POST', path, {});
    if (typeof first.access_token !== 'string') throw new Error('no access token');
    targets.push({
      name,
      pid: vault.child.pid,
      api,
      url: `${vault.url}${path}`,
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
    });
  }
  await provider.control('reset-counters', 'POST');
  if (pin) {
    pinTo(0, process.pid);
    for (const pid of pinned) pinTo(1, pid);
  }

  const run = (target: Target, duration: number): Promise<Result> =>
    autocannon({
      url: target.url,
      method: 'POST',
      headers: target.headers,
      body: '{}',
      connections,
      pipelining: 1,
      duration,
    });

  for (const target of targets) {
    process.stderr.write(`warm-up ${target.name} ${warmup} s\n`);
    const result = await run(target, warmup);
    if (result.non2xx > 0 || result.errors > 0)
      throw new Error(
        `${target.name}: ${result.non2xx} non-2xx, ${result.errors} errors in warm-up`,
      );
  }

  const results: RoundResult[] = [];
  for (let r = 0; r < rounds; r++) {
    const order = targets.map((_, i) => targets[(i + r) % targets.length] as Target);
    for (const target of order) {
      const serverBefore = sampleProcess(target.pid)?.cpuMs ?? 0;
      const others = targets.filter((t) => t !== target);
      const othersCpuMs = () => others.reduce((n, t) => n + (sampleProcess(t.pid)?.cpuMs ?? 0), 0);
      const othersBefore = othersCpuMs();
      const generatorBefore = process.cpuUsage();
      const machineBefore = machineCpu();
      const result = await run(target, seconds);
      const serverMs = (sampleProcess(target.pid)?.cpuMs ?? 0) - serverBefore;
      const othersMs = othersCpuMs() - othersBefore;
      const generator = process.cpuUsage(generatorBefore);
      const machineAfter = machineCpu();
      const row: RoundResult = {
        round: r + 1,
        target: target.name,
        requestsPerSecond: round(result.requests.total / result.duration, 0),
        total: result.requests.total,
        meanMs: round((connections * 1000 * result.duration) / result.requests.total, 2),
        p50: result.latency.p50,
        p99: result.latency.p99,
        non2xx: result.non2xx,
        errors: result.errors,
        serverCpuUsPerRequest: round((serverMs * 1000) / result.requests.total, 1),
        serverCoreShare: round(serverMs / (result.duration * 1000), 2),
        loadGeneratorCoreShare: round(
          (generator.user + generator.system) / 1000 / (result.duration * 1000),
          2,
        ),
        idleServersCoreShare: round(othersMs / (result.duration * 1000), 3),
        machineBusyShare: round(
          (machineAfter.busy - machineBefore.busy) / (machineAfter.total - machineBefore.total),
          2,
        ),
      };
      results.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
  }

  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 === 1
      ? (sorted[mid] ?? 0)
      : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  };
  const summary = Object.fromEntries(
    targets.map((target) => {
      const mine = results.filter((r) => r.target === target.name);
      const total = mine.reduce((n, r) => n + r.total, 0);
      return [
        target.name,
        {
          requestsPerSecond: round(total / (mine.length * seconds), 0),
          meanMs: round(median(mine.map((r) => r.meanMs)), 2),
          p50Ms: median(mine.map((r) => r.p50)),
          p99Ms: median(mine.map((r) => r.p99)),
          non2xx: mine.reduce((n, r) => n + r.non2xx, 0),
          errors: mine.reduce((n, r) => n + r.errors, 0),
          serverCpuUsPerRequest: median(mine.map((r) => r.serverCpuUsPerRequest)),
          serverCoreShare: median(mine.map((r) => r.serverCoreShare)),
          loadGeneratorCoreShare: median(mine.map((r) => r.loadGeneratorCoreShare)),
          machineBusyShare: median(mine.map((r) => r.machineBusyShare)),
        },
      ];
    }),
  ) as Record<
    Target['name'],
    {
      requestsPerSecond: number;
      meanMs: number;
      p50Ms: number;
      p99Ms: number;
      non2xx: number;
      errors: number;
      serverCpuUsPerRequest: number;
      serverCoreShare: number;
      loadGeneratorCoreShare: number;
      machineBusyShare: number;
    }
  >;
  // Per round, each vault against the hello-world run of the same round.
  const ratiosByRound = (name: Target['name']) =>
    Array.from({ length: rounds }, (_, r) => {
      const vault = results.find((x) => x.round === r + 1 && x.target === name);
      const base = results.find((x) => x.round === r + 1 && x.target === 'hello-world');
      return round((vault?.requestsPerSecond ?? 0) / (base?.requestsPerSecond ?? 1), 3);
    });
  const rateOf = (name: string) => summary[name]?.requestsPerSecond ?? 0;
  const ratioOf = (name: string) => round(rateOf(name) / rateOf('hello-world'), 3);
  const ratios = {
    sqlite: ratioOf('vault-sqlite'),
    postgres: ratioOf('vault-postgres'),
    sqliteByRound: ratiosByRound('vault-sqlite'),
    postgresByRound: ratiosByRound('vault-postgres'),
    ...(baseline === ''
      ? {}
      : {
          baselineSqlite: ratioOf('baseline-sqlite'),
          baselinePostgres: ratioOf('baseline-postgres'),
          /** This checkout's requests/s over the baseline's, per database. */
          speedupSqlite: round(rateOf('vault-sqlite') / rateOf('baseline-sqlite'), 2),
          speedupPostgres: round(rateOf('vault-postgres') / rateOf('baseline-postgres'), 2),
        }),
  };
  // How each vault served the calls: from its token cache (hit) or the database
  // (miss, bypass). A baseline from before the cache has no such metric.
  const tokenCache: Record<string, Record<string, number>> = {};
  for (const target of targets) {
    if (target.api === undefined) continue;
    tokenCache[target.name] = metricByLabel(
      await target.api.metrics(),
      'tokenwarden_token_cache_lookups_total',
      'result',
    );
  }
  const counters = await provider.counters();
  const loadAfter = loadavg().map((n) => round(n, 2));
  let cpu = '';
  try {
    cpu = execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {}
  const pass =
    ratios.sqlite >= 0.6 &&
    ratios.postgres >= 0.6 &&
    counters.tokenRequests.refresh_token === 0 &&
    Object.values(summary).every((s) => s.non2xx === 0 && s.errors === 0);
  await report('s2-token-api', {
    connections,
    secondsPerRound: seconds,
    rounds,
    warmupSeconds: warmup,
    vaultLogLevel: logLevel,
    pinned: pin
      ? 'load generator on CPU 0, servers on CPU 1'
      : 'no (the scheduler places every process)',
    cpus: cpu,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAfter,
    summary,
    ratios,
    refreshRequestsDuringRun: counters.tokenRequests.refresh_token,
    tokenCacheLookups: tokenCache,
    rounds_: results,
    goal: 'vault requests/s >= 0.6 x Fastify hello-world requests/s on SQLite and on PostgreSQL, no refresh, no error',
    pass,
  });
  process.exitCode = pass ? 0 : 1;
} catch (error) {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
} finally {
  await agent.close().catch(() => undefined);
  await runCleanups();
}
