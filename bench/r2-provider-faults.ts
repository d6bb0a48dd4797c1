/**
 * R2: provider faults. For each fault the fake provider can inject on its token
 * endpoint, and each provider personality asked for, a fresh run:
 *
 *   - the fake provider (child process) with short access tokens;
 *   - one vault (child process, SQLite) with the background refresher on, a short
 *     token timeout (TOKENWARDEN_TOKEN_TIMEOUT_MS) and a fast refresher pass;
 *   - N credentials connected through the vault's real connect flow;
 *   - callers (K per credential) in this process that loop: take a token from the
 *     vault, call the provider's resource, and on a 401 ask again with
 *     `staleAccessToken` and retry once.
 *
 * Healthy for a few seconds, then the fault is injected for longer than two token
 * lifetimes (so every token expires during it and both the refresher and the
 * callers' refreshes meet it), then cleared. Reported per run: the classification
 * the vault recorded (refresh_failed events' codes, the credentials' lastError
 * codes, /metrics token-endpoint errors), the reauth_required count, the
 * provider's view (refresh requests, faults fired, invalid_grant answers, reused
 * refresh tokens), and whether and how fast it recovered: every credential
 * active, refreshed after the fault cleared with no last error, and a token from
 * the vault accepted by the resource for each; callers' failures after that.
 *
 *   node bench/r2-provider-faults.ts [--personalities microsoft,strict] [--faults all]
 *        [--credentials 4] [--callers 2] [--token-lifetime 4] [--fault-seconds 12]
 *        [--timeout-ms 1000] [--latency-ms 3000] [--extra yes]
 *
 * `--extra yes` (default) adds the `after-processing` cases: the provider does the
 * refresh (a rotating or single-use refresh token is spent) and the answer is
 * replaced by the fault, as when an answer is lost on the way back.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { numberArg, report, round, stringArg } from './support.ts';
import {
  callResource,
  connectCredential,
  createAuthClient,
  metricByLabel,
  newAdminKey,
  onCleanup,
  type ProviderCounters,
  runCleanups,
  startProvider,
  startVaults,
  stopChild,
  VaultApi,
  type VaultEvent,
} from './vault-support.ts';

const credentialsPerRun = numberArg('credentials', 4);
const callersPerCredential = numberArg('callers', 2);
const tokenLifetime = numberArg('token-lifetime', 4);
const faultSeconds = numberArg('fault-seconds', 12);
const healthySeconds = numberArg('healthy-seconds', 4);
const timeoutMs = numberArg('timeout-ms', 1000);
const latencyMs = numberArg('latency-ms', 3000);
const recoverWithinSeconds = numberArg('recover-within', 90);
const personalities = stringArg('personalities', 'microsoft,strict').split(',');
const faultFilter = stringArg('faults', 'all');
const extra = stringArg('extra', 'yes') === 'yes';

interface FaultCase {
  name: string;
  fault: Record<string, unknown>;
  after: 'before' | 'after-processing';
  /** The codes a refresh failure may be classified as. */
  expected: string[];
  /** Whether a refresh token may be spent by the provider without the vault seeing the answer. */
  spendsRefreshToken: boolean;
}

const FAULTS: FaultCase[] = [
  {
    name: 'latency',
    fault: { kind: 'latency', ms: latencyMs },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: true,
  },
  {
    name: 'status-503',
    fault: { kind: 'status', status: 503 },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
  {
    name: 'status-500',
    fault: { kind: 'status', status: 500 },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
  {
    name: 'rate-limit',
    fault: { kind: 'rate-limit', retryAfterSeconds: 2 },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
  {
    name: 'reset',
    fault: { kind: 'reset' },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
  {
    name: 'invalid-json',
    fault: { kind: 'invalid-json' },
    after: 'before',
    expected: ['invalid_token_response'],
    spendsRefreshToken: false,
  },
  {
    name: 'html',
    fault: { kind: 'html' },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
  {
    name: 'ok-error',
    fault: { kind: 'ok-error' },
    after: 'before',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: false,
  },
];
const EXTRA: FaultCase[] = [
  {
    name: 'invalid-json after-processing',
    fault: { kind: 'invalid-json' },
    after: 'after-processing',
    expected: ['invalid_token_response'],
    spendsRefreshToken: true,
  },
  {
    name: 'reset after-processing',
    fault: { kind: 'reset' },
    after: 'after-processing',
    expected: ['token_endpoint_unavailable'],
    spendsRefreshToken: true,
  },
];

interface CallRecord {
  at: number;
  ok: boolean;
  reason?: string;
}

export interface FaultRunResult {
  fault: string;
  after: string;
  personality: string;
  faultSeconds: number;
  spendsRefreshToken: boolean;
  /** refresh_failed events during and after the fault, by code. */
  refreshFailedByCode: Record<string, number>;
  /** lastError codes seen while polling the credentials during the fault. */
  lastErrorCodes: string[];
  /** /metrics tokenwarden_token_endpoint_errors_total by code at the end. */
  metricsErrorsByCode: Record<string, number>;
  /** /metrics tokenwarden_refreshes_total by outcome at the end. */
  metricsRefreshesByOutcome: Record<string, number>;
  /** Codes the callers got from the token endpoint during the fault. */
  callerErrorsDuringFault: Record<string, number>;
  classificationOk: boolean;
  /** /metrics error counts by code equal the refresh_failed events by code. */
  metricsAgree: boolean;
  /** Every lastError code seen is one of the refresh_failed events' codes. */
  lastErrorAgrees: boolean;
  reauthRequired: number;
  reauthReasons: string[];
  /** reauth_required although the provider never spent a refresh token whose answer was lost. */
  wronglyReauthRequired: number;
  provider: {
    refreshRequestsDuringFault: number;
    faultsFired: number;
    refreshes: number;
    invalidGrants: number;
    reusedRefreshTokens: number;
    revokedGrants: number;
  };
  /** Provider refresh requests per failed refresh during the fault: > 1 means retried inside one refresh. */
  attemptsPerFailedRefresh: number;
  recovered: boolean;
  /** Seconds from clearing the fault until every check passed. */
  secondsToRecover: number | null;
  callerCallsBeforeFault: number;
  callerFailuresBeforeFault: number;
  callerCallsDuringFault: number;
  callerFailuresDuringFault: number;
  callerCallsAfterRecovery: number;
  callerFailuresAfterRecovery: number;
  finalStatuses: Record<string, number>;
  vaultWarnings: number;
}

async function runCase(testCase: FaultCase, personality: string): Promise<FaultRunResult> {
  const agent = new Agent({ connections: 64 });
  const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-r2-'));
  const label = `${testCase.name} × ${personality}`;
  const progress = (line: string) => process.stderr.write(`[${label}] ${line}\n`);
  const stops: Array<() => Promise<void>> = [];
  try {
    const provider = await startProvider(
      { personality, tokenLifetimeSeconds: tokenLifetime },
      agent,
    );
    stops.push(() => stopChild(provider.child));
    const adminKey = newAdminKey();
    const [vault] = await startVaults(
      {
        dataDir,
        adminKey,
        env: {
          TOKENWARDEN_TOKEN_TIMEOUT_MS: String(timeoutMs),
          TOKENWARDEN_REFRESH_INTERVAL_MS: '250',
          TOKENWARDEN_BACKGROUND_REFRESH: 'true',
        },
      },
      1,
    );
    if (vault === undefined) throw new Error('no vault');
    stops.unshift(() => stopChild(vault.child));
    const api = new VaultApi(vault.url, adminKey, agent);
    const authClientId = await createAuthClient(api, provider, personality);
    const ids: string[] = [];
    for (let i = 0; i < credentialsPerRun; i++)
      ids.push(await connectCredential(api, authClientId, agent));

    // Callers.
    const calls: CallRecord[] = [];
    let running = true;
    const tokenCall = async (id: string, stale?: string): Promise<string | CallRecord> => {
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
        return { at: Date.now(), ok: false, reason: `token ${response.statusCode} ${code}`.trim() };
      } catch (error) {
        return { at: Date.now(), ok: false, reason: `token ${(error as { code?: string }).code}` };
      }
    };
    const caller = async (id: string) => {
      while (running) {
        const first = await tokenCall(id);
        if (typeof first !== 'string') {
          calls.push(first);
          await sleep(100);
          continue;
        }
        let status = await callResource(provider.resourceUrl, first, agent);
        if (status === 401) {
          const next = await tokenCall(id, first);
          if (typeof next !== 'string') {
            calls.push(next);
            await sleep(100);
            continue;
          }
          status = await callResource(provider.resourceUrl, next, agent);
        }
        calls.push(
          status === 200
            ? { at: Date.now(), ok: true }
            : { at: Date.now(), ok: false, reason: `resource ${status}` },
        );
        await sleep(50);
      }
    };
    const callers = ids.flatMap((id) =>
      Array.from({ length: callersPerCredential }, () => caller(id)),
    );

    await sleep(healthySeconds * 1000);
    const { last: marker } = await api.events();
    await provider.control('reset-counters', 'POST');
    const faultAt = Date.now();
    progress(`inject ${JSON.stringify(testCase.fault)} (${testCase.after})`);
    await provider.control('faults', 'POST', {
      fault: testCase.fault,
      endpoint: 'token',
      after: testCase.after,
    });
    const lastErrorCodes = new Set<string>();
    while (Date.now() < faultAt + faultSeconds * 1000) {
      for (const credential of await api.credentials())
        if (credential.lastError !== null) lastErrorCodes.add(credential.lastError.code);
      await sleep(500);
    }
    const duringFault = (await provider.counters()) as ProviderCounters;
    await provider.control('faults', 'DELETE');
    const clearedAt = Date.now();
    progress('fault cleared');

    // Recovery: every credential active, refreshed since the fault cleared with no last
    // error, and a token from the vault that the resource accepts, for each.
    let recoveredAt: number | undefined;
    while (Date.now() < clearedAt + recoverWithinSeconds * 1000) {
      const credentials = (await api.credentials()).filter((c) => ids.includes(c.id));
      const stored = credentials.every(
        (c) =>
          c.status === 'active' &&
          c.lastError === null &&
          c.lastRefreshAt !== null &&
          Date.parse(c.lastRefreshAt) >= clearedAt,
      );
      if (stored) {
        const probes = await Promise.all(
          ids.map(async (id) => {
            const token = await tokenCall(id);
            return typeof token === 'string'
              ? (await callResource(provider.resourceUrl, token, agent)) === 200
              : false;
          }),
        );
        if (probes.every(Boolean)) {
          recoveredAt = Date.now();
          break;
        }
      }
      if (credentials.some((c) => c.status !== 'active')) {
        // A credential that needs the user again does not come back by itself.
        break;
      }
      await sleep(250);
    }
    if (recoveredAt !== undefined) progress(`recovered in ${(recoveredAt - clearedAt) / 1000} s`);
    else progress('did not recover');
    const afterFrom = recoveredAt ?? clearedAt;
    await sleep(3000);
    running = false;
    await Promise.all(callers);

    const events = (await api.events(marker)).events.filter(
      (e: VaultEvent) => e.credentialId !== null && ids.includes(e.credentialId),
    );
    const refreshFailedByCode: Record<string, number> = {};
    for (const event of events.filter((e) => e.type === 'refresh_failed')) {
      const code = String(event.data?.code);
      refreshFailedByCode[code] = (refreshFailedByCode[code] ?? 0) + 1;
    }
    const failedDuringFault = events.filter(
      (e) =>
        e.type === 'refresh_failed' && Date.parse(e.at) >= faultAt && Date.parse(e.at) <= clearedAt,
    ).length;
    const reauthEvents = events.filter((e) => e.type === 'reauth_required');
    const metrics = await api.metrics();
    const counters = await provider.counters();
    const credentials = (await api.credentials()).filter((c) => ids.includes(c.id));
    const finalStatuses: Record<string, number> = {};
    for (const c of credentials) finalStatuses[c.status] = (finalStatuses[c.status] ?? 0) + 1;
    const reauthRequired = new Set([
      ...reauthEvents.map((e) => e.credentialId),
      ...credentials.filter((c) => c.status === 'reauth_required').map((c) => c.id),
    ]).size;
    const window = (from: number, to: number) => calls.filter((c) => c.at >= from && c.at < to);
    const beforeFault = window(0, faultAt);
    const during = window(faultAt, clearedAt);
    const after = window(afterFrom, Number.POSITIVE_INFINITY);
    const callerErrorsDuringFault: Record<string, number> = {};
    for (const c of during.filter((x) => !x.ok))
      callerErrorsDuringFault[c.reason ?? '?'] =
        (callerErrorsDuringFault[c.reason ?? '?'] ?? 0) + 1;
    const seenCodes = new Set([...Object.keys(refreshFailedByCode), ...lastErrorCodes]);
    // A spent refresh token can end in invalid_grant (reauth_required) afterwards: that is the
    // provider's verdict, not a misclassification of the fault.
    const allowed = new Set([
      ...testCase.expected,
      ...(testCase.spendsRefreshToken ? ['reauth_required'] : []),
    ]);
    const classificationOk =
      seenCodes.size > 0 &&
      [...seenCodes].every((code) => allowed.has(code)) &&
      testCase.expected.some((code) => seenCodes.has(code));
    const spent = counters.reusedRefreshTokens > 0 || counters.invalidGrants > 0;
    const metricsErrorsByCode = metricByLabel(
      metrics,
      'tokenwarden_token_endpoint_errors_total',
      'code',
    );
    const sameCounts = (a: Record<string, number>, b: Record<string, number>) =>
      Object.keys({ ...a, ...b }).every((k) => (a[k] ?? 0) === (b[k] ?? 0));
    return {
      fault: testCase.name,
      after: testCase.after,
      personality,
      faultSeconds,
      spendsRefreshToken: testCase.spendsRefreshToken,
      refreshFailedByCode,
      lastErrorCodes: [...lastErrorCodes],
      metricsErrorsByCode,
      metricsRefreshesByOutcome: metricByLabel(metrics, 'tokenwarden_refreshes_total', 'outcome'),
      callerErrorsDuringFault,
      classificationOk,
      // The healthy phase's failures (none expected) are in the metrics but not in these events.
      metricsAgree: sameCounts(metricsErrorsByCode, refreshFailedByCode),
      lastErrorAgrees: [...lastErrorCodes].every((code) => code in refreshFailedByCode),
      reauthRequired,
      reauthReasons: [
        ...new Set(
          reauthEvents.map((e) => String(e.data?.reason ?? '')).map((r) => r.slice(0, 200)),
        ),
      ],
      wronglyReauthRequired: testCase.spendsRefreshToken && spent ? 0 : reauthRequired,
      provider: {
        refreshRequestsDuringFault: duringFault.tokenRequests.refresh_token,
        faultsFired: duringFault.faultsInjected,
        refreshes: counters.refreshes,
        invalidGrants: counters.invalidGrants,
        reusedRefreshTokens: counters.reusedRefreshTokens,
        revokedGrants: counters.revokedGrants,
      },
      attemptsPerFailedRefresh:
        failedDuringFault === 0
          ? 0
          : round(duringFault.tokenRequests.refresh_token / failedDuringFault, 2),
      recovered: recoveredAt !== undefined,
      secondsToRecover: recoveredAt === undefined ? null : round((recoveredAt - clearedAt) / 1000),
      callerCallsBeforeFault: beforeFault.length,
      callerFailuresBeforeFault: beforeFault.filter((c) => !c.ok).length,
      callerCallsDuringFault: during.length,
      callerFailuresDuringFault: during.filter((c) => !c.ok).length,
      callerCallsAfterRecovery: after.length,
      callerFailuresAfterRecovery: after.filter((c) => !c.ok).length,
      finalStatuses,
      vaultWarnings: vault.child.stderrLines,
    };
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    await agent.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}

const loadBefore = loadavg().map((n) => round(n, 2));
const cases = [...FAULTS, ...(extra ? EXTRA : [])].filter(
  (c) => faultFilter === 'all' || faultFilter.split(',').includes(c.name),
);
const results: FaultRunResult[] = [];
onCleanup(() => undefined);
try {
  for (const personality of personalities) {
    for (const testCase of cases) {
      const result = await runCase(testCase, personality);
      process.stderr.write(`${JSON.stringify(result)}\n`);
      results.push(result);
    }
  }
} catch (error) {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
} finally {
  await runCleanups();
}

const row = (r: FaultRunResult) => {
  const classes = Object.entries(r.refreshFailedByCode)
    .map(([code, n]) => `${code} ×${n}`)
    .join(', ');
  const agree = r.metricsAgree && r.lastErrorAgrees ? 'yes' : 'no';
  const reauth =
    r.reauthRequired === 0
      ? '0'
      : `${r.reauthRequired} (wrongly ${r.wronglyReauthRequired}; provider: ${r.provider.reusedRefreshTokens} reused refresh tokens)`;
  const after = r.recovered
    ? `${r.callerFailuresAfterRecovery}/${r.callerCallsAfterRecovery}`
    : `${r.callerFailuresAfterRecovery}/${r.callerCallsAfterRecovery} (409 reauth_required)`;
  return `| ${r.fault} | ${r.personality} | ${classes || '—'} | ${agree} | ${r.attemptsPerFailedRefresh} | ${reauth} | ${r.recovered ? 'yes' : 'no'} | ${r.secondsToRecover ?? '—'} | ${r.callerFailuresDuringFault}/${r.callerCallsDuringFault} | ${after} |`;
};
const table = [
  '| fault | personality | classification (refresh_failed events) | lastError and /metrics agree | provider requests per failed refresh | reauth_required | recovered | seconds to recover | caller failures during fault | caller failures after recovery |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...results.map(row),
].join('\n');

// Expected: before-processing faults never end in reauth_required and always recover; a
// spent refresh token may end in reauth_required only when the provider said invalid_grant.
const pass =
  results.length === cases.length * personalities.length &&
  results.every(
    (r) =>
      r.classificationOk &&
      r.metricsAgree &&
      r.lastErrorAgrees &&
      r.wronglyReauthRequired === 0 &&
      (r.recovered ? r.callerFailuresAfterRecovery === 0 : r.reauthRequired > 0),
  ) &&
  results.filter((r) => !r.spendsRefreshToken).every((r) => r.recovered && r.reauthRequired === 0);
await report('r2-provider-faults', {
  credentials: credentialsPerRun,
  callersPerCredential,
  tokenLifetimeSeconds: tokenLifetime,
  faultSeconds,
  healthySeconds,
  tokenTimeoutMs: timeoutMs,
  latencyMs,
  loadAverageBefore: loadBefore,
  loadAverageAfter: loadavg().map((n) => round(n, 2)),
  results,
  table,
  goal: 'right classification, no credential wrongly reauth_required, recovery once the fault clears (faults before processing); a refresh token the provider spent without the vault seeing the answer ends in reauth_required only on the provider’s invalid_grant',
  pass,
});
process.stdout.write(`\n${table}\n`);
process.exitCode = pass ? 0 : 1;
