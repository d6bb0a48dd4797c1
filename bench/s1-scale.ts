/**
 * S1 scale (issue 4): many credentials over three providers, their refreshes
 * spread over a window, three vault replicas on one PostgreSQL schema.
 *
 *   node bench/s1-scale.ts [--credentials 10000,100000] [--spread 60,600]
 *                          [--replicas 3] [--rate 30] [--burst 5] [--concurrency 8]
 *                          [--provider-limit <calls/s>] [--lead <s>]
 *
 * `--credentials` and `--spread` (seconds) may list several sizes, run one after
 * the other, each on fresh providers, replicas and schema; with equal
 * credentials/spread the refresh rate is the same, so memory differences come
 * from the number of credentials, not the load.
 *
 * Per size:
 * - three fake providers in child processes, `strict` personality (single-use
 *   refresh tokens: a credential refreshed twice for one expiry presents a used
 *   refresh token, which is answered invalid_grant and counted), new access
 *   tokens living an hour, so every credential is refreshed exactly once in the
 *   run. Auth clients with the profiles `microsoft`, `google` and `hubspot`
 *   (limits are per profile id), endpoints pointing at the fake ones;
 * - a fresh PostgreSQL schema (dropped afterwards; PostgreSQL missing fails the
 *   run), migrated, and credentials seeded through the vault's own store code:
 *   grants minted in bulk at the providers (`POST /_control/grants`), token sets
 *   encrypted by `CredentialRepository.encryptTokens` with the replicas' master
 *   key, inserted 1,000 rows per statement with the values `create` writes and
 *   `next_refresh_at` from the vault's own `nextRefreshAt`. Each token is an
 *   hour-long token received long enough ago that credential i of N expires at
 *   T0 + 300 s + spread × (i + ½)/N: with the profiles' 300-s margin it is due at
 *   T0 + spread × (i + ½)/N, so due times (and expiries) are spread evenly over
 *   the window; credentials alternate between the three providers;
 * - three replicas (vault processes), TOKENWARDEN_PROVIDER_LIMITS
 *   `<id>=<concurrency>/<rate>/<burst>` for each profile, so that replicas ×
 *   (rate + burst) stays within the limit each provider is given
 *   (`--provider-limit`, default exactly replicas × (rate + burst));
 * - every second the providers' counters are read: refresh-token requests in
 *   that interval must stay within limit × max(1, interval in seconds);
 * - CPU time (utime + stime from /proc/<pid>/stat) of each replica from T0 to the
 *   end of the refreshes, its peak RSS (VmHWM) and RSS samples.
 *
 * Checks: every credential refreshed exactly once (refresh_count = 1, provider
 * refreshes = N, no invalid_grant, no reused refresh token), each before its
 * expiry, no provider's limit exceeded in any sample.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TokenResponse, TokenSet } from '@tokenwarden/oauth';
import type { Counters } from '@tokenwarden/testing';
import { nextRefreshAt } from '../packages/vault/src/credential-service.ts';
import { newId } from '../packages/vault/src/store/ids.ts';
import { DEFAULT_TENANT_ID } from '../packages/vault/src/store/tenants.ts';
import {
  amountArg,
  replicaStats as askReplicaStats,
  type Child,
  DATABASE_URL,
  freshDatabase,
  insertCredentials,
  log,
  machineCpu,
  numberListArg,
  type ProviderChild,
  type ReplicaStats,
  runCleanups,
  type SeedRow,
  sampleProcess,
  startProvider,
  startReplica,
  stopChild,
} from './scale-support.ts';
import { numberArg, percentile, report, round } from './support.ts';

const PROFILES = ['microsoft', 'google', 'hubspot'] as const;
/** The profiles' expiryMarginSeconds (all three: 300). */
const MARGIN_SECONDS = 300;
/** Seeded tokens: an hour long, like the new ones the providers hand out. */
const TOKEN_LIFETIME_SECONDS = 3600;

const sizes = numberListArg('credentials', [100_000]);
const spreads = numberListArg('spread', [600]);
if (spreads.length !== 1 && spreads.length !== sizes.length)
  throw new Error('--spread must give one value, or one per --credentials value');
const replicaCount = numberArg('replicas', 3);
const rate = numberArg('rate', 30);
const burst = numberArg('burst', 5);
const concurrency = numberArg('concurrency', 8);
const providerLimit = numberArg('provider-limit', replicaCount * (rate + burst));
const leadOverride = amountArg('lead', 0);
const databaseUrl = DATABASE_URL;

interface Sample {
  at: number;
  /** Refresh-token requests per provider since the previous sample. */
  requests: number[];
  intervalMs: number;
}

async function runSize(count: number, spreadSeconds: number) {
  const label = `${count} credentials over ${spreadSeconds} s`;
  log(`S1 ${label}: starting providers and the schema`);
  const providers: ProviderChild[] = await Promise.all(
    PROFILES.map((profile) =>
      startProvider({
        name: profile,
        personality: 'strict',
        tokenLifetimeSeconds: TOKEN_LIFETIME_SECONDS,
      }),
    ),
  );
  const database = await freshDatabase(databaseUrl, 'tw_s1');
  const { store } = database;
  const replicas: Child[] = [];
  try {
    const now0 = Date.now();
    await store.tenants.ensureDefaultTenant(now0);
    const clients = await Promise.all(
      PROFILES.map(async (profile, p) => {
        const provider = providers[p] as ProviderChild;
        const record = await store.authClients.create(
          DEFAULT_TENANT_ID,
          {
            name: `S1 ${profile}`,
            providerId: profile,
            clientId: provider.clientId,
            clientSecret: provider.clientSecret,
            endpoints: {
              authorizationUrl: provider.authorizationEndpoint,
              tokenUrl: provider.tokenEndpoint,
            },
          },
          now0,
        );
        const resolved = await store.authClients.resolve(DEFAULT_TENANT_ID, record.id);
        if (resolved === undefined) throw new Error('auth client not stored');
        return resolved;
      }),
    );

    // Grants, minted in bulk (credential i belongs to provider i % 3).
    const seedStarted = Date.now();
    const perProvider = PROFILES.map((_, p) => Math.floor((count - p - 1) / 3) + 1);
    const grants = await Promise.all(
      providers.map((provider, p) => {
        const scopes = clients[p]?.client.scopes ?? [];
        return provider.mint(perProvider[p] ?? 0, scopes.length > 0 ? scopes.join(' ') : 'profile');
      }),
    );
    const mintedMs = Date.now() - seedStarted;
    log(`S1 ${label}: ${count} grants minted in ${mintedMs} ms; encrypting and inserting`);

    // T0: the first credential is due then. The lead covers inserting and starting replicas.
    const lead = leadOverride > 0 ? leadOverride : Math.ceil(20 + count / 5000);
    const t0 = Date.now() + lead * 1000;
    const spreadMs = spreadSeconds * 1000;
    const dueAt = (i: number) => Math.round(t0 + (spreadMs * (i + 0.5)) / count);
    const ids: string[] = new Array(count);
    const rows: SeedRow[] = [];
    const insertStarted = Date.now();
    for (let i = 0; i < count; i++) {
      const p = i % 3;
      const client = clients[p];
      const minted = grants[p]?.[Math.floor(i / 3)];
      if (client === undefined || minted === undefined) throw new Error(`no grant for ${i}`);
      const expiry = dueAt(i) + MARGIN_SECONDS * 1000;
      const { grant_id: _grant, ...response } = minted;
      const tokenSet = TokenSet.fromResponse(
        { ...(response as TokenResponse), expires_in: TOKEN_LIFETIME_SECONDS },
        expiry - TOKEN_LIFETIME_SECONDS * 1000,
      );
      const next = nextRefreshAt(tokenSet, client.client);
      if (next === null || Math.abs(next - dueAt(i)) > 1)
        throw new Error(`credential ${i}: the vault would refresh it at ${next}, not ${dueAt(i)}`);
      const id = newId('cr');
      ids[i] = id;
      rows.push({
        id,
        tenantId: DEFAULT_TENANT_ID,
        authClientId: client.record.id,
        tokenSet,
        nextRefreshAt: next,
      });
      if (rows.length === 1000 || i === count - 1) {
        await insertCredentials(store, rows, Date.now());
        rows.length = 0;
      }
    }
    grants.length = 0;
    const insertMs = Date.now() - insertStarted;
    log(`S1 ${label}: inserted in ${insertMs} ms; starting ${replicaCount} replicas`);

    const adminKey = `twk_${randomBytes(4).toString('hex')}_${randomBytes(32).toString('base64url')}`;
    const limits = PROFILES.map((id) => `${id}=${concurrency}/${rate}/${burst}`).join(',');
    const env = (index: number): NodeJS.ProcessEnv => ({
      DATABASE_URL: databaseUrl,
      TOKENWARDEN_DATABASE_SCHEMA: database.schema,
      TOKENWARDEN_MASTER_KEYS: database.masterKeys,
      TOKENWARDEN_ADMIN_KEY: adminKey,
      TOKENWARDEN_INSTANCE_ID: `s1-replica-${index + 1}`,
      TOKENWARDEN_PROVIDER_LIMITS: limits,
      // The fake providers listen on 127.0.0.1.
      TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: '0',
    });
    replicas.push(
      ...(await Promise.all(
        Array.from({ length: replicaCount }, (_, i) =>
          startReplica(`replica ${i + 1}`, env(i), { stats: true }),
        ),
      )),
    );
    const readyAt = Date.now();
    const slackMs = t0 - readyAt;
    log(
      `S1 ${label}: replicas ready ${slackMs >= 0 ? `${round(slackMs / 1000)} s before` : `${round(-slackMs / 1000)} s after`} T0`,
    );
    const heapMb = (stats: ReplicaStats) => round(stats.heapUsed / 2 ** 20);
    const heapAfterGc: number[][] = (
      await Promise.all(replicas.map((replica) => askReplicaStats(replica)))
    ).map((stats) => [heapMb(stats)]);
    const heapAtStart = heapAfterGc.map((series) => series[0] ?? 0);
    if (slackMs > 0) await sleep(Math.max(0, t0 - Date.now()));

    // The run: counters every second, processes every 5 s.
    const cpuStart = replicas.map((r) => sampleProcess(r.pid)?.cpuMs ?? 0);
    const machineStart = machineCpu();
    const providerCpuStart = providers.map((p) => sampleProcess(p.child.pid)?.cpuMs ?? 0);
    const runStarted = Date.now();
    const samples: Sample[] = [];
    const rssSamples: number[][] = replicas.map(() => []);
    const counters = async () => Promise.all(providers.map((p) => p.control<Counters>('counters')));
    let previous = await counters();
    let previousAt = Date.now();
    const deadline = t0 + spreadMs + 180_000;
    let lastProgress = 0;
    let refreshed = 0;
    let tick = 0;
    while (Date.now() < deadline) {
      await sleep(1000 - ((Date.now() - runStarted) % 1000));
      const current = await counters();
      const at = Date.now();
      samples.push({
        at,
        intervalMs: at - previousAt,
        requests: current.map(
          (c, p) => c.tokenRequests.refresh_token - (previous[p]?.tokenRequests.refresh_token ?? 0),
        ),
      });
      previous = current;
      previousAt = at;
      refreshed = current.reduce((sum, c) => sum + c.refreshes, 0);
      if (++tick % 5 === 0) {
        replicas.forEach((replica, r) => {
          const sample = sampleProcess(replica.pid);
          if (sample !== undefined) rssSamples[r]?.push(sample.rssKb);
        });
      }
      if (tick % 60 === 0) {
        const stats = await Promise.all(replicas.map((replica) => askReplicaStats(replica)));
        stats.forEach((one, r) => {
          heapAfterGc[r]?.push(heapMb(one));
        });
      }
      if (at - lastProgress >= 30_000) {
        lastProgress = at;
        const due = Math.min(count, Math.max(0, Math.floor(((at - t0) / spreadMs) * count)));
        log(`S1 ${label}: ${refreshed} refreshed, ${due} due so far`);
      }
      if (refreshed >= count && at >= t0 + spreadMs) break;
    }
    const refreshesDoneAt = Date.now();
    const cpuEnd = replicas.map((r) => sampleProcess(r.pid));
    const machineEnd = machineCpu();
    const providerCpuEnd = providers.map((p) => sampleProcess(p.child.pid)?.cpuMs ?? 0);
    const statsAtEnd = await Promise.all(replicas.map((replica) => askReplicaStats(replica)));
    const heapAtEnd = statsAtEnd.map(heapMb);
    // A few seconds more: a duplicate refresh would show up here.
    await sleep(3000);
    const finalCounters = await counters();

    // What the database says.
    const stored = await store.db
      .selectFrom('credentials')
      .select(['id', 'status', 'refresh_count', 'last_refresh_at', 'last_error_code'])
      .execute();
    const byId = new Map(stored.map((row) => [row.id, row]));
    const lagMs: number[] = [];
    let neverRefreshed = 0;
    let refreshedTwice = 0;
    let afterExpiry = 0;
    let notActive = 0;
    let firstRefresh = Number.POSITIVE_INFINITY;
    let lastRefresh = 0;
    for (let i = 0; i < count; i++) {
      const row = byId.get(ids[i] as string);
      if (row === undefined || row.last_refresh_at === null || row.refresh_count === 0) {
        neverRefreshed++;
        continue;
      }
      if (row.refresh_count > 1) refreshedTwice++;
      if (row.status !== 'active') notActive++;
      const at = row.last_refresh_at;
      firstRefresh = Math.min(firstRefresh, at);
      lastRefresh = Math.max(lastRefresh, at);
      lagMs.push(at - dueAt(i));
      if (at >= dueAt(i) + MARGIN_SECONDS * 1000) afterExpiry++;
    }
    lagMs.sort((a, b) => a - b);
    const events = await store.db
      .selectFrom('events')
      .select((eb) => ['type', eb.fn.countAll<number>().as('n')])
      .groupBy('type')
      .execute();

    // Rates: per provider per sample, normalised to the sample's length.
    const limitViolations: Array<{ provider: string; at: string; requests: number; ms: number }> =
      [];
    const peakPerSecond = PROFILES.map(() => 0);
    const totalPerSecond: number[] = [];
    for (const sample of samples) {
      let total = 0;
      sample.requests.forEach((requests, p) => {
        total += requests;
        const allowed = providerLimit * Math.max(1, sample.intervalMs / 1000);
        if (requests > allowed)
          limitViolations.push({
            provider: PROFILES[p] as string,
            at: new Date(sample.at).toISOString(),
            requests,
            ms: sample.intervalMs,
          });
        peakPerSecond[p] = Math.max(
          peakPerSecond[p] ?? 0,
          requests / Math.max(1, sample.intervalMs / 1000),
        );
      });
      totalPerSecond.push(total / Math.max(1, sample.intervalMs / 1000));
    }

    const wallMs = refreshesDoneAt - runStarted;
    const replicaStats = replicas.map((replica, r) => {
      const end = cpuEnd[r];
      const cpuMs = (end?.cpuMs ?? 0) - (cpuStart[r] ?? 0);
      const rss = rssSamples[r] ?? [];
      return {
        instance: `s1-replica-${r + 1}`,
        cpuSeconds: round(cpuMs / 1000),
        cpuShareOfOneCore: round(cpuMs / wallMs, 3),
        peakRssMb: round((end?.hwmKb ?? 0) / 1024),
        rssMbAtEnd: round((end?.rssKb ?? 0) / 1024),
        rssMbMaxSampled: round(Math.max(0, ...rss) / 1024),
        /** RSS every 30 s of the run, MB: growth over time would show here. */
        rssMbEvery30s: rss.filter((_, k) => k % 6 === 5).map((kb) => round(kb / 1024, 0)),
        /** V8 heap in use right after a full GC (what is really retained), MB. */
        heapMbAfterGcAtStart: heapAtStart[r] ?? 0,
        heapMbAfterGcAtEnd: heapAtEnd[r] ?? 0,
        /** process.memoryUsage() after that GC, MB: what the RSS is made of. */
        memoryAtEndMb: Object.fromEntries(
          Object.entries(statsAtEnd[r] ?? {})
            .filter(([key]) => key !== 'cpu')
            .map(([key, value]) => [key, round(Number(value) / 2 ** 20)]),
        ),
        heapMbAfterGcEvery60s: heapAfterGc[r] ?? [],
        stderrLines: replica.stderrLines,
        stderrSample: replica.stderr.slice(-3),
      };
    });
    const replicaCpuMs = replicaStats.reduce((sum, r) => sum + r.cpuSeconds * 1000, 0);
    const totalProvider = (key: 'refreshes' | 'invalidGrants' | 'reusedRefreshTokens') =>
      finalCounters.reduce((sum, c) => sum + c[key], 0);
    const result = {
      credentials: count,
      spreadSeconds,
      replicas: replicaCount,
      providerLimitPerSecond: providerLimit,
      vaultLimits: limits,
      seed: {
        mintMs: mintedMs,
        encryptAndInsertMs: insertMs,
        leadSeconds: lead,
        replicasReadyBeforeT0Seconds: round(slackMs / 1000),
      },
      refreshes: {
        providerRefreshes: totalProvider('refreshes'),
        providerRefreshRequests: finalCounters.reduce(
          (sum, c) => sum + c.tokenRequests.refresh_token,
          0,
        ),
        invalidGrants: totalProvider('invalidGrants'),
        reusedRefreshTokens: totalProvider('reusedRefreshTokens'),
        refreshedEvents: Number(events.find((e) => e.type === 'refreshed')?.n ?? 0),
        eventsByType: Object.fromEntries(events.map((e) => [e.type, Number(e.n)])),
        neverRefreshed,
        refreshedMoreThanOnce: refreshedTwice,
        refreshedAfterExpiry: afterExpiry,
        notActive,
        perSecondMean: round(count / ((lastRefresh - firstRefresh) / 1000)),
        perSecondPeakSampled: round(Math.max(0, ...totalPerSecond)),
        firstToLastRefreshSeconds: round((lastRefresh - firstRefresh) / 1000),
        /** Commit time minus due time (next_refresh_at). */
        lagMs: {
          p50: percentile(lagMs, 0.5),
          p99: percentile(lagMs, 0.99),
          max: lagMs.at(-1) ?? 0,
          min: lagMs[0] ?? 0,
        },
        /** How long before expiry the latest refresh landed (margin 300 s minus the worst lag). */
        smallestHeadroomBeforeExpirySeconds: round(
          (MARGIN_SECONDS * 1000 - (lagMs.at(-1) ?? 0)) / 1000,
        ),
      },
      rateLimit: {
        samples: samples.length,
        peakPerSecondByProvider: Object.fromEntries(
          PROFILES.map((id, p) => [id, round(peakPerSecond[p] ?? 0)]),
        ),
        violations: limitViolations.length,
        violationSample: limitViolations.slice(0, 5),
      },
      cpu: {
        runSeconds: round(wallMs / 1000),
        replicasTotalShareOfOneCore: round(replicaCpuMs / wallMs, 3),
        replicaCpuMsPerRefresh: round(replicaCpuMs / Math.max(1, totalProvider('refreshes')), 2),
        providersTotalShareOfOneCore: round(
          providers.reduce(
            (sum, _, p) => sum + ((providerCpuEnd[p] ?? 0) - (providerCpuStart[p] ?? 0)),
            0,
          ) / wallMs,
          3,
        ),
        machineBusyShare: round(
          (machineEnd.busy - machineStart.busy) / (machineEnd.total - machineStart.total),
          3,
        ),
      },
      replicaStats,
    };
    const ok =
      neverRefreshed === 0 &&
      refreshedTwice === 0 &&
      afterExpiry === 0 &&
      notActive === 0 &&
      result.refreshes.providerRefreshes === count &&
      result.refreshes.invalidGrants === 0 &&
      result.refreshes.reusedRefreshTokens === 0 &&
      limitViolations.length === 0;
    log(`S1 ${label}: ${ok ? 'PASS' : 'FAIL'}`);
    return { ok, ...result };
  } finally {
    await Promise.all(replicas.map((r) => stopChild(r)));
    await Promise.all(providers.map((p) => stopChild(p.child)));
    await database.close();
    await runCleanups();
  }
}

const runs: Array<Awaited<ReturnType<typeof runSize>>> = [];
let failed = false;
try {
  for (const [index, count] of sizes.entries()) {
    const spread = spreads.length === 1 ? (spreads[0] as number) : (spreads[index] as number);
    const run = await runSize(count, spread);
    runs.push(run);
    if (!run.ok) failed = true;
  }
} finally {
  await runCleanups();
}
const peak = (run: (typeof runs)[number]) => Math.max(...run.replicaStats.map((r) => r.peakRssMb));
const heap = (run: (typeof runs)[number]) =>
  Math.max(...run.replicaStats.map((r) => r.heapMbAfterGcAtEnd));
const first = runs[0];
const last = runs.at(-1);
await report('s1-scale', {
  command: `node bench/s1-scale.ts ${process.argv.slice(2).join(' ')}`.trim(),
  ok: !failed,
  runs,
  ...(first !== undefined && last !== undefined && runs.length > 1
    ? {
        memoryGrowth: {
          from: first.credentials,
          to: last.credentials,
          peakRssMbFrom: peak(first),
          peakRssMbTo: peak(last),
          ratio: round(peak(last) / peak(first), 2),
          heapMbAfterGcFrom: heap(first),
          heapMbAfterGcTo: heap(last),
          heapRatio: round(heap(last) / heap(first), 2),
        },
      }
    : {}),
});
process.exit(failed ? 1 : 0);
