/**
 * R3: PostgreSQL restarted in the middle of a storm. A throwaway PostgreSQL
 * cluster of its own (initdb into a temp folder, a free port, removed at the end
 * and on failure; the shared server on 5432 is never touched), three vault
 * processes on it, the fake provider (`microsoft` personality by default:
 * rotating refresh tokens with a grace period) with short access tokens, C
 * credentials connected through the real connect flow, and callers spread over
 * the vaults that take a token, call the resource, and on a 401 ask again with
 * `staleAccessToken`. Every vault's `/readyz` is polled every 100 ms.
 *
 * After a healthy phase the cluster is stopped (`pg_ctl stop -m fast`), kept
 * down for a few seconds and started again. Reported: each vault's 503 window on
 * `/readyz` against the real outage, whether every vault process survived, how
 * long after the database came back until every call succeeded again, and, at
 * the end, every credential checked: still active, a forced refresh succeeds
 * (the stored refresh token is intact) and the token it serves is accepted by
 * the resource. Credentials lost or unusable must be 0.
 *
 *   node bench/r3-database-restart.ts [--vaults 3] [--credentials 20] [--callers 2]
 *        [--token-lifetime 3] [--down-seconds 3] [--healthy-seconds 6] [--after-seconds 40]
 *        [--personality microsoft] [--restarts 1] [--provider-latency-ms 200]
 *
 * The provider's token endpoint answers after --provider-latency-ms (a latency
 * fault, as real token endpoints take 100–500 ms), so refreshes are in flight
 * when the database goes away: their answers arrive with no database to store
 * them in.
 *
 * Needs root (to run initdb and pg_ctl as the postgres user) and PostgreSQL's
 * server binaries under /usr/lib/postgresql/<version>/bin.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chown, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { Agent, request } from 'undici';
import { numberArg, report, round, stringArg } from './support.ts';
import {
  callResource,
  connectCredential,
  createAuthClient,
  metricByLabel,
  newAdminKey,
  newMasterKeys,
  onCleanup,
  runCleanups,
  startProvider,
  startVaults,
  stopChild,
  VaultApi,
  type VaultChild,
} from './vault-support.ts';

const run = promisify(execFile);
const vaultCount = numberArg('vaults', 3);
const credentialCount = numberArg('credentials', 20);
const callersPerCredential = numberArg('callers', 2);
const tokenLifetime = numberArg('token-lifetime', 3);
const downSeconds = numberArg('down-seconds', 3);
const healthySeconds = numberArg('healthy-seconds', 6);
const afterSeconds = numberArg('after-seconds', 40);
const restarts = numberArg('restarts', 1);
const personality = stringArg('personality', 'microsoft');
const providerLatencyMs = numberArg('provider-latency-ms', 200);

// ---------------------------------------------------------------- a throwaway cluster

async function postgresBin(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql'))
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  const version = versions[0];
  if (version === undefined) throw new Error('no PostgreSQL server under /usr/lib/postgresql');
  return `/usr/lib/postgresql/${version}/bin`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no free port');
  return address.port;
}

interface Cluster {
  dir: string;
  port: number;
  url: string;
  stop(mode: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
}

async function createCluster(): Promise<Cluster> {
  const bin = await postgresBin();
  const dir = await mkdtemp(join(tmpdir(), 'tokenwarden-r3-pg-'));
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  await chown(dir, uid, gid);
  const port = await freePort();
  if (port === 5432) throw new Error('refusing to use port 5432 (the shared server)');
  const asPostgres = (tool: string, args: string[]) =>
    run('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { timeout: 120_000 });
  const pgCtl = (args: string[]) => asPostgres('pg_ctl', ['-D', dir, ...args]);
  let removed = false;
  const stopNow = () => {
    if (removed) return;
    try {
      execFileSync('runuser', [
        '-u',
        'postgres',
        '--',
        join(bin, 'pg_ctl'),
        '-D',
        dir,
        '-m',
        'immediate',
        'stop',
      ]);
    } catch {}
  };
  // Removed at the end, on failure, and (synchronously) if this process exits early.
  process.once('exit', stopNow);
  onCleanup(async () => {
    stopNow();
    removed = true;
    await rm(dir, { recursive: true, force: true });
  });
  await asPostgres('initdb', ['-D', dir, '--auth=trust', '-U', 'postgres', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  const start = async () => {
    await pgCtl(['-o', options, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
  };
  await start();
  return {
    dir,
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    stop: async (mode) => {
      await pgCtl(['-m', mode, '-w', '-t', '60', 'stop']);
    },
    start,
  };
}

// ---------------------------------------------------------------- the storm

interface CallRecord {
  at: number;
  ok: boolean;
  reason?: string;
  vault: number;
}

interface ReadySample {
  at: number;
  status: number | string;
}

const agent = new Agent({ connections: 256 });
let polling = false;
const loadBefore = loadavg().map((n) => round(n, 2));
let exitCode = 1;
try {
  const cluster = await createCluster();
  process.stderr.write(`cluster on port ${cluster.port} in ${cluster.dir}\n`);
  const provider = await startProvider({ personality, tokenLifetimeSeconds: tokenLifetime }, agent);
  onCleanup(() => stopChild(provider.child));
  const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-r3-'));
  onCleanup(() => rm(dataDir, { recursive: true, force: true }));
  const adminKey = newAdminKey();
  const vaults: VaultChild[] = await startVaults(
    {
      dataDir,
      adminKey,
      databaseUrl: cluster.url,
      schema: 'public',
      masterKeys: newMasterKeys(),
      env: { TOKENWARDEN_REFRESH_INTERVAL_MS: '250' },
    },
    vaultCount,
  );
  const exits: Array<{
    vault: string;
    at: number;
    code: number | null;
    signal: string | null;
    stderr: string[];
  }> = [];
  for (const vault of vaults) {
    onCleanup(() => stopChild(vault.child));
    vault.child.process.once('exit', (code, signal) => {
      if (!polling) return;
      const stderr = vault.child.stderr.slice(-45);
      exits.push({ vault: vault.instance, at: Date.now(), code, signal, stderr });
      process.stderr.write(
        `${vault.instance} exited (${signal ?? `code ${code}`}):\n${stderr.join('\n')}\n`,
      );
    });
  }
  const apis = vaults.map((v) => new VaultApi(v.url, adminKey, agent));
  const api = apis[0] as VaultApi;
  const authClientId = await createAuthClient(api, provider, personality);
  const ids: string[] = [];
  for (let i = 0; i < credentialCount; i++)
    ids.push(await connectCredential(apis[i % apis.length] as VaultApi, authClientId, agent));
  process.stderr.write(`${ids.length} credentials on ${vaults.length} vaults\n`);

  // /readyz pollers.
  polling = true;
  const ready: ReadySample[][] = vaults.map(() => []);
  const pollers = vaults.map(async (vault, index) => {
    while (polling) {
      const at = Date.now();
      let status: number | string;
      try {
        const response = await request(`${vault.url}/readyz`, {
          dispatcher: agent,
          headersTimeout: 5_000,
          bodyTimeout: 5_000,
        });
        await response.body.dump();
        status = response.statusCode;
      } catch (error) {
        status = (error as { code?: string }).code ?? 'error';
      }
      ready[index]?.push({ at, status });
      await sleep(Math.max(0, 100 - (Date.now() - at)));
    }
  });

  // The database's view, every 500 ms while it answers: credentials under a live lease
  // (a refresh or a claim in progress, or one left behind by the outage) and credentials
  // whose stored access token has expired.
  const leaseSamples: Array<{ at: number; leased: number; expired: number }> = [];
  const leaseProbe = (async () => {
    while (polling) {
      const client = new pg.Client({ connectionString: cluster.url, connectionTimeoutMillis: 500 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const now = Date.now();
        const result = await client.query<{ leased: string; expired: string }>(
          'select count(*) filter (where lease_until > $1) as leased, count(*) filter (where expires_at < $1) as expired from credentials',
          [now],
        );
        const row = result.rows[0];
        leaseSamples.push({ at: now, leased: Number(row?.leased), expired: Number(row?.expired) });
      } catch {
      } finally {
        await client.end().catch(() => undefined);
      }
      await sleep(500);
    }
  })();

  // Callers: credential i's callers go to vaults round-robin.
  const calls: CallRecord[] = [];
  let running = true;
  const tokenCall = async (
    vaultIndex: number,
    id: string,
    stale?: string,
  ): Promise<string | CallRecord> => {
    const vault = vaults[vaultIndex] as VaultChild;
    try {
      const response = await request(`${vault.url}/v1/credentials/${id}/access-token`, {
        method: 'POST',
        dispatcher: agent,
        headersTimeout: 120_000,
        bodyTimeout: 120_000,
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(stale === undefined ? {} : { staleAccessToken: stale }),
      });
      const text = await response.body.text();
      if (response.statusCode === 200)
        return String((JSON.parse(text) as { access_token: string }).access_token);
      let code = '';
      try {
        code = String((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '');
      } catch {}
      return {
        at: Date.now(),
        ok: false,
        reason: `token ${response.statusCode} ${code}`.trim(),
        vault: vaultIndex,
      };
    } catch (error) {
      return {
        at: Date.now(),
        ok: false,
        reason: `token ${(error as { code?: string }).code ?? 'error'}`,
        vault: vaultIndex,
      };
    }
  };
  const caller = async (id: string, vaultIndex: number) => {
    while (running) {
      const first = await tokenCall(vaultIndex, id);
      if (typeof first !== 'string') {
        calls.push(first);
        await sleep(100);
        continue;
      }
      let status = await callResource(provider.resourceUrl, first, agent);
      if (status === 401) {
        const next = await tokenCall(vaultIndex, id, first);
        if (typeof next !== 'string') {
          calls.push(next);
          await sleep(100);
          continue;
        }
        status = await callResource(provider.resourceUrl, next, agent);
      }
      calls.push(
        status === 200
          ? { at: Date.now(), ok: true, vault: vaultIndex }
          : { at: Date.now(), ok: false, reason: `resource ${status}`, vault: vaultIndex },
      );
      await sleep(20);
    }
  };
  let next = 0;
  const callers = ids.flatMap((id) =>
    Array.from({ length: callersPerCredential }, () => caller(id, next++ % vaults.length)),
  );

  await provider.control('faults', 'POST', {
    fault: { kind: 'latency', ms: providerLatencyMs },
    endpoint: 'token',
  });
  await sleep(healthySeconds * 1000);
  const outages: Array<{ stopAt: number; stoppedAt: number; startAt: number; upAt: number }> = [];
  for (let i = 0; i < restarts; i++) {
    const stopAt = Date.now();
    process.stderr.write('stopping PostgreSQL (fast)\n');
    await cluster.stop('fast');
    const stoppedAt = Date.now();
    await sleep(downSeconds * 1000);
    const startAt = Date.now();
    await cluster.start();
    const upAt = Date.now();
    process.stderr.write(
      `PostgreSQL down ${(upAt - stoppedAt) / 1000} s (stop took ${(stoppedAt - stopAt) / 1000} s)\n`,
    );
    outages.push({ stopAt, stoppedAt, startAt, upAt });
    if (i < restarts - 1) await sleep(healthySeconds * 1000);
  }
  const lastUp = (outages.at(-1) as { upAt: number }).upAt;
  await sleep(afterSeconds * 1000);
  running = false;
  await Promise.all(callers);
  polling = false;
  await Promise.all(pollers);
  await leaseProbe;

  // Every vault survived?
  const alive = vaults.map(
    (v) => v.child.process.exitCode === null && v.child.process.signalCode === null,
  );

  // Readiness per vault and outage: when /readyz first answered non-200 after the stop,
  // and when it answered 200 again, both from the moment the stop began.
  const firstOutage = outages[0] as { stopAt: number };
  const readiness = ready.map((samples, index) => ({
    vault: vaults[index]?.instance,
    samples: samples.length,
    statuses: [...new Set(samples.filter((s) => s.status !== 200).map((s) => String(s.status)))],
    notReadyBeforeStop: samples.filter((s) => s.status !== 200 && s.at < firstOutage.stopAt).length,
    outages: outages.map((o, k) => {
      const end = outages[k + 1]?.stopAt ?? Number.POSITIVE_INFINITY;
      const window = samples.filter((s) => s.at >= o.stopAt && s.at < end);
      const bad = window.filter((s) => s.status !== 200);
      const first = bad[0];
      const last = bad.at(-1);
      const readyAgain = window.find((s) => s.status === 200 && s.at > (last?.at ?? end));
      return {
        notReadySamples: bad.length,
        notReadyFromSeconds: first === undefined ? null : round((first.at - o.stopAt) / 1000, 2),
        readyAgainSeconds:
          readyAgain === undefined ? null : round((readyAgain.at - o.stopAt) / 1000, 2),
        databaseUpSeconds: round((o.upAt - o.stopAt) / 1000, 2),
      };
    }),
  }));

  // Calls: failures per phase, and when the last failure after the database came back happened.
  const before = calls.filter((c) => c.at < firstOutage.stopAt);
  const during = calls.filter((c) => c.at >= firstOutage.stopAt && c.at < lastUp);
  const after = calls.filter((c) => c.at >= lastUp);
  const failuresAfter = after.filter((c) => !c.ok);
  const lastFailure = failuresAfter.at(-1);
  const reasons = (list: CallRecord[]) => {
    const out: Record<string, number> = {};
    for (const c of list.filter((x) => !x.ok))
      out[c.reason ?? '?'] = (out[c.reason ?? '?'] ?? 0) + 1;
    return out;
  };

  // Calls per second (completed), from the first stop: [second, ok, failed].
  const timeline = new Map<number, [number, number]>();
  for (const c of calls) {
    const second = Math.floor((c.at - firstOutage.stopAt) / 1000);
    const slot = timeline.get(second) ?? [0, 0];
    slot[c.ok ? 0 : 1]++;
    timeline.set(second, slot);
  }
  const callsPerSecond = [...timeline.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([second, [ok, failed]]) => [second, ok, failed]);

  // Every credential: status, a forced refresh through a vault, and its token at the resource.
  const check = await Promise.all(
    ids.map(async (id, i) => {
      const liveApis = apis.filter((_, k) => alive[k]);
      const vaultApi = (liveApis[i % Math.max(1, liveApis.length)] ?? api) as VaultApi;
      const credential = await vaultApi.must('GET', `/v1/credentials/${id}`);
      const refreshed = await vaultApi.call('POST', `/v1/credentials/${id}/refresh`);
      const token = await vaultApi.call('POST', `/v1/credentials/${id}/access-token`, {});
      const resource =
        token.status === 200
          ? await callResource(provider.resourceUrl, String(token.json.access_token), agent)
          : 'no token';
      return {
        id,
        status: String(credential.status),
        statusReason: credential.statusReason as string | null,
        refreshStatus: refreshed.status,
        tokenStatus: token.status,
        resource,
        usable:
          credential.status === 'active' &&
          refreshed.status === 200 &&
          token.status === 200 &&
          resource === 200,
      };
    }),
  );
  const unusable = check.filter((c) => !c.usable);
  const counters = await provider.counters();
  const liveApi = apis.find((_, k) => alive[k]) ?? api;
  const events = (await liveApi.events()).events;
  const eventCounts: Record<string, number> = {};
  for (const e of events) eventCounts[e.type] = (eventCounts[e.type] ?? 0) + 1;
  const refreshFailedCodes: Record<string, number> = {};
  for (const e of events.filter((x) => x.type === 'refresh_failed')) {
    const code = String(e.data?.code);
    refreshFailedCodes[code] = (refreshFailedCodes[code] ?? 0) + 1;
  }
  const metrics = await Promise.all(
    apis.map((a, k) => (alive[k] ? a.metrics() : Promise.resolve(new Map<string, number>()))),
  );
  const metricsErrors = metrics.map((m) =>
    metricByLabel(m, 'tokenwarden_token_endpoint_errors_total', 'code'),
  );
  let vaultLogTail: string[] = [];
  for (const v of vaults) vaultLogTail = vaultLogTail.concat(v.child.stderr.slice(-3));
  const pgLog = (await readFile(join(cluster.dir, 'log'), 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => /FATAL|PANIC|ERROR/.test(l)).length;

  const outageSeconds = outages.map((o) => ({
    stopTookSeconds: round((o.stoppedAt - o.stopAt) / 1000, 2),
    downSeconds: round((o.upAt - o.stoppedAt) / 1000, 2),
    fromStopToUpSeconds: round((o.upAt - o.stopAt) / 1000, 2),
  }));
  const everyVaultSawEveryOutage = readiness.every((r) =>
    r.outages.every((o) => o.notReadySamples > 0 && o.readyAgainSeconds !== null),
  );
  const pass =
    alive.every(Boolean) &&
    everyVaultSawEveryOutage &&
    readiness.every((r) => r.notReadyBeforeStop === 0) &&
    unusable.length === 0 &&
    before.every((c) => c.ok) &&
    (lastFailure === undefined || lastFailure.at < lastUp + 0.75 * afterSeconds * 1000);
  await report('r3-database-restart', {
    vaults: vaultCount,
    credentials: credentialCount,
    callersPerCredential,
    tokenLifetimeSeconds: tokenLifetime,
    personality,
    providerLatencyMs,
    restarts,
    outages: outageSeconds,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadavg().map((n) => round(n, 2)),
    vaultsAlive: alive,
    vaultExits: exits,
    commitsRetriedAfterOutage: vaults.map(
      (v) =>
        v.child.messages.get(
          'the database does not answer; storing the refreshed token set again shortly',
        ) ?? 0,
    ),
    readiness,
    calls: {
      beforeOutage: { calls: before.length, failures: before.filter((c) => !c.ok).length },
      duringOutage: {
        calls: during.length,
        failures: during.filter((c) => !c.ok).length,
        reasons: reasons(during),
      },
      afterDatabaseBack: {
        calls: after.length,
        failures: failuresAfter.length,
        reasons: reasons(failuresAfter),
        secondsUntilLastFailure:
          lastFailure === undefined ? 0 : round((lastFailure.at - lastUp) / 1000, 2),
        secondsUntilFirstSuccess: (() => {
          const first = after.find((c) => c.ok);
          return first === undefined ? null : round((first.at - lastUp) / 1000, 2);
        })(),
      },
    },
    callsPerSecond,
    databaseView: leaseSamples.map((x) => [
      round((x.at - firstOutage.stopAt) / 1000, 1),
      x.leased,
      x.expired,
    ]),
    credentialsChecked: check.length,
    credentialsLostOrUnusable: unusable.length,
    unusable: unusable.slice(0, 10),
    provider: {
      refreshes: counters.refreshes,
      invalidGrants: counters.invalidGrants,
      reusedRefreshTokens: counters.reusedRefreshTokens,
      revokedGrants: counters.revokedGrants,
    },
    eventCounts,
    refreshFailedCodes,
    metricsTokenEndpointErrorsByVault: metricsErrors,
    postgresLogErrorLines: pgLog,
    vaultLogTail,
    goal: 'every vault survives and reports the outage on /readyz (503) while it lasts; after it, every call succeeds again and every credential is active, refreshes and serves a token the resource accepts (0 lost or unusable)',
    pass,
  });
  exitCode = pass ? 0 : 1;
} catch (error) {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  exitCode = 1;
} finally {
  await agent.close().catch(() => undefined);
  await runCleanups();
}
process.exitCode = exitCode;
