/**
 * R1 crash (issue 4): kill -9 a random vault replica at random moments during a
 * rotation storm, and account for every credential afterwards.
 *
 *   node bench/r1-crash.ts [--personality microsoft,strict] [--kills 50]
 *                          [--credentials 300] [--lifetime 2] [--replicas 3]
 *                          [--lease 2] [--timeout-ms 1000] [--answer-delay-ms 50]
 *                          [--gap-ms 500,3000] [--clients 4] [--rate 20]
 *                          [--concurrency 10] [--grace 10]
 *                          [--log-dir <dir>] [--log-level warn]
 *                          [--holder-liveness 1]
 *
 * For each personality, on fresh processes and a fresh PostgreSQL schema
 * (dropped afterwards; PostgreSQL missing fails the run):
 * - one fake provider in a child process: `microsoft` (refresh tokens rotate, the
 *   previous one stays valid for `--grace` seconds) with auth-client profile
 *   `microsoft`, or `strict` (single-use refresh tokens; a used one is answered
 *   invalid_grant and revokes the whole grant) with profile `oauth2` (rotating).
 *   Access tokens live `--lifetime` seconds, so the background refreshers of the
 *   replicas refresh every credential again and again (due at half the lifetime).
 *   The provider's answer to a refresh is held back `--answer-delay-ms` after it
 *   has rotated the token (a latency fault `after-processing`), as a real
 *   provider's answer travels back after its database committed: the window
 *   between the provider's answer and the vault's commit that a kill can hit;
 * - credentials seeded through the vault's own store (grants minted in bulk,
 *   encrypted with the replicas' master key);
 * - `--replicas` vault processes, TOKENWARDEN_LEASE_SECONDS=`--lease`,
 *   TOKENWARDEN_TOKEN_TIMEOUT_MS=`--timeout-ms` (at most half the lease, which the
 *   vault requires), each slot with
 *   a fixed instance id (as pods of a StatefulSet: a restarted replica comes back
 *   under the same name);
 * - `--clients` loops asking random replicas for tokens of random credentials
 *   (`minValiditySeconds: 1`) and calling the provider's resource with them, so
 *   the token endpoint's lease path is in the storm too;
 * - `--kills` times: wait a random time in `--gap-ms`, SIGKILL a random ready
 *   replica, and restart it at once under the same instance id.
 *
 * Then the storm runs on for lease + 2 × lifetime + 4 s (every claim a dead
 * replica left has expired and been taken over), the replicas are stopped, and
 * every credential is accounted for:
 * - snapshot: status and reason in the database; the stored refresh token's
 *   state at the provider (`POST /_control/refresh-token-status`: current,
 *   in-grace, used, unknown; grant revoked or not);
 * - check: one fresh replica (no background refresher) is asked for each
 *   credential's token (`POST /v1/credentials/:id/access-token`, which refreshes
 *   the expired ones) and the provider's resource is called with it;
 * - fine: token and resource 200, and the provider holds its refresh token as
 *   current (or in grace) on a live grant; reported: `reauth_required` with the
 *   interrupted-refresh reason; reported with another reason; broken: anything
 *   else (must be 0).
 *
 * `--holder-liveness 0` runs the replicas with TOKENWARDEN_HOLDER_LIVENESS=0: a
 * dead replica's leases then only expire (the code before liveness locks), for a
 * comparison in the same session.
 *
 * `--log-dir` writes each replica's log lines from the moment it is ready to
 * `<dir>/<instance>-<pid>.log`, at `--log-level` (`debug` adds every refresh
 * decision): how a lost grant's story was read in docs/reliability.md.
 *
 * Lost answers = the provider's successful refreshes − the vault's `refreshed`
 * events: answers a kill (or a timeout) kept from being committed. With `strict`
 * each one hurts its credential; with `microsoft` the grace period saves it.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type TokenResponse, TokenSet } from '@tokenwarden/oauth';
import type { Counters, RefreshTokenStatus } from '@tokenwarden/testing';
import { Agent, request } from 'undici';
import { nextRefreshAt } from '../packages/vault/src/credential-service.ts';
import { newId } from '../packages/vault/src/store/ids.ts';
import { DEFAULT_TENANT_ID } from '../packages/vault/src/store/tenants.ts';
import {
  amountArg,
  type Child,
  DATABASE_URL,
  freshDatabase,
  insertCredentials,
  killChild,
  log,
  numberListArg,
  runCleanups,
  type SeedRow,
  startProvider,
  startReplica,
  stopChild,
} from './scale-support.ts';
import { numberArg, percentile, report, round, stringArg } from './support.ts';

/** The words the vault adds to a reauth_required reason after a takeover. */
const INTERRUPTED =
  'a refresh by another vault process was interrupted before it stored its answer';

/** With `--log-dir`, the replica's log lines from now on go to a file of its own. */
function keepLog(child: Child, instance: string): void {
  if (logDir === '') return;
  mkdirSync(logDir, { recursive: true });
  const file = createWriteStream(join(logDir, `${instance}-${child.pid}.log`), { flags: 'a' });
  child.listeners.add((line) => file.write(`${line}\n`));
  child.process.once('exit', () => file.end());
}

const personalities = stringArg('personality', 'microsoft,strict').split(',');
for (const p of personalities)
  if (p !== 'microsoft' && p !== 'strict')
    throw new Error('--personality: microsoft and/or strict');
const kills = numberArg('kills', 50);
const credentialCount = numberArg('credentials', 300);
const lifetime = numberArg('lifetime', 2);
const replicaCount = numberArg('replicas', 3);
const leaseSeconds = numberArg('lease', 2);
const timeoutMs = numberArg('timeout-ms', 1000);
const answerDelayMs = amountArg('answer-delay-ms', 50);
const [gapMin, gapMax] = numberListArg('gap-ms', [500, 3000]) as [number, number];
const clientCount = amountArg('clients', 4);
const rate = numberArg('rate', 20);
const concurrency = numberArg('concurrency', 10);
const grace = numberArg('grace', 10);
const logDir = stringArg('log-dir', '');
const logLevel = stringArg('log-level', 'warn');
const holderLiveness = stringArg('holder-liveness', '1');
if (holderLiveness !== '1' && holderLiveness !== '0')
  throw new Error('--holder-liveness: 1 (default) or 0');
if (2 * timeoutMs > leaseSeconds * 1000)
  throw new Error('--timeout-ms must be at most half the lease (the vault refuses more)');

interface Slot {
  index: number;
  instance: string;
  child: Child | undefined;
  url: string | undefined;
  starting: Promise<void> | undefined;
  restarts: number;
}

interface CredentialOutcome {
  before: { status: string; reason: string | null; rt: RefreshTokenStatus };
  check: { token: string; resource: number | string | null };
  after: { status: string; reason: string | null; rt: RefreshTokenStatus | null };
  category: 'fine' | 'reported' | 'reported_other_reason' | 'broken';
}

const random = (min: number, max: number) => min + Math.random() * (max - min);

async function runPersonality(personality: 'microsoft' | 'strict') {
  const profile = personality === 'microsoft' ? 'microsoft' : 'oauth2';
  log(`R1 ${personality}: provider, schema, ${credentialCount} credentials`);
  const provider = await startProvider({
    name: personality,
    personality,
    tokenLifetimeSeconds: lifetime,
    ...(personality === 'microsoft' ? { graceSeconds: grace } : {}),
  });
  const database = await freshDatabase(DATABASE_URL, 'tw_r1');
  const { store } = database;
  const agent = new Agent({ connections: 64, headersTimeout: 15_000, bodyTimeout: 15_000 });
  const slots: Slot[] = [];
  let checker: Child | undefined;
  try {
    const now = Date.now();
    await store.tenants.ensureDefaultTenant(now);
    const record = await store.authClients.create(
      DEFAULT_TENANT_ID,
      {
        name: `R1 ${personality}`,
        providerId: profile,
        clientId: provider.clientId,
        clientSecret: provider.clientSecret,
        endpoints: {
          authorizationUrl: provider.authorizationEndpoint,
          tokenUrl: provider.tokenEndpoint,
        },
      },
      now,
    );
    const client = await store.authClients.resolve(DEFAULT_TENANT_ID, record.id);
    if (client === undefined) throw new Error('auth client not stored');
    const scopes = client.client.scopes;
    const grants = await provider.mint(
      credentialCount,
      scopes.length > 0 ? scopes.join(' ') : 'profile',
    );
    const ids: string[] = [];
    const rows: SeedRow[] = grants.map((minted) => {
      const { grant_id: _grant, ...response } = minted;
      const tokenSet = TokenSet.fromResponse(response as TokenResponse, Date.now());
      const id = newId('cr');
      ids.push(id);
      return {
        id,
        tenantId: DEFAULT_TENANT_ID,
        authClientId: record.id,
        tokenSet,
        nextRefreshAt: nextRefreshAt(tokenSet, client.client),
      };
    });
    await insertCredentials(store, rows, Date.now());
    if (answerDelayMs > 0)
      await provider.control('faults', {
        fault: { kind: 'latency', ms: answerDelayMs },
        endpoint: 'token',
        after: 'after-processing',
      });

    const adminKey = `twk_${randomBytes(4).toString('hex')}_${randomBytes(32).toString('base64url')}`;
    const env = (instance: string, background = true): NodeJS.ProcessEnv => ({
      DATABASE_URL,
      TOKENWARDEN_DATABASE_SCHEMA: database.schema,
      TOKENWARDEN_MASTER_KEYS: database.masterKeys,
      TOKENWARDEN_ADMIN_KEY: adminKey,
      TOKENWARDEN_INSTANCE_ID: instance,
      TOKENWARDEN_LEASE_SECONDS: String(leaseSeconds),
      TOKENWARDEN_TOKEN_TIMEOUT_MS: String(timeoutMs),
      TOKENWARDEN_PROVIDER_LIMITS: `${profile}=${concurrency}/${rate}`,
      TOKENWARDEN_REFRESH_INTERVAL_MS: '250',
      TOKENWARDEN_REFRESH_BACKOFF_MS: '500',
      TOKENWARDEN_REFRESH_BACKOFF_MAX_MS: '5000',
      TOKENWARDEN_BACKGROUND_REFRESH: background ? '1' : '0',
      TOKENWARDEN_HOLDER_LIVENESS: holderLiveness,
      // The fake provider listens on 127.0.0.1.
      TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
      LOG_LEVEL: logLevel,
      HOST: '127.0.0.1',
      PORT: '0',
    });
    const restartTimes: number[] = [];
    const start = (slot: Slot): Promise<void> => {
      const began = Date.now();
      slot.starting = startReplica(`replica ${slot.instance}`, env(slot.instance)).then(
        (child) => {
          keepLog(child, slot.instance);
          slot.child = child;
          slot.url = String(child.info.url);
          slot.starting = undefined;
          restartTimes.push(Date.now() - began);
        },
        (error: unknown) => {
          slot.starting = undefined;
          throw error;
        },
      );
      return slot.starting;
    };
    for (let i = 0; i < replicaCount; i++)
      slots.push({
        index: i,
        instance: `r1-${personality}-${i + 1}`,
        child: undefined,
        url: undefined,
        starting: undefined,
        restarts: 0,
      });
    // Counted from here: every refresh the provider answers from now on is one of the storm's.
    await provider.control('reset-counters', {});
    await Promise.all(slots.map(start));
    restartTimes.length = 0;
    log(`R1 ${personality}: ${replicaCount} replicas up; storm and ${clientCount} clients`);

    // Clients: token from a random ready replica, then the resource.
    const clientStats = {
      tokenCalls: 0,
      tokenOk: 0,
      resourceOk: 0,
      resource401: 0,
      replicaGone: 0,
      errors: {} as Record<string, number>,
    };
    const count = (key: string) => {
      clientStats.errors[key] = (clientStats.errors[key] ?? 0) + 1;
    };
    let clientsRunning = true;
    const clientLoops = Array.from({ length: clientCount }, async () => {
      while (clientsRunning) {
        const ready = slots.filter((s) => s.child !== undefined && s.url !== undefined);
        const slot = ready[Math.floor(Math.random() * ready.length)];
        const id = ids[Math.floor(Math.random() * ids.length)] as string;
        if (slot?.url === undefined) {
          await sleep(50);
          continue;
        }
        clientStats.tokenCalls++;
        try {
          const answer = await request(`${slot.url}/v1/credentials/${id}/access-token`, {
            method: 'POST',
            dispatcher: agent,
            headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ minValiditySeconds: 1 }),
          });
          const text = await answer.body.text();
          if (answer.statusCode !== 200) {
            let code = '';
            try {
              code = String((JSON.parse(text) as { error?: { code?: string } }).error?.code);
            } catch {}
            count(`token ${answer.statusCode} ${code}`);
            await sleep(20);
            continue;
          }
          clientStats.tokenOk++;
          const token = (JSON.parse(text) as { access_token: string }).access_token;
          const resource = await request(provider.resourceUrl, {
            dispatcher: agent,
            headers: { authorization: `Bearer ${token}` },
          });
          await resource.body.dump();
          if (resource.statusCode === 200) clientStats.resourceOk++;
          else if (resource.statusCode === 401) clientStats.resource401++;
          else count(`resource ${resource.statusCode}`);
        } catch {
          // The replica was killed under the call.
          clientStats.replicaGone++;
          await sleep(20);
        }
      }
    });

    // The kills.
    const killLog: Array<{ at: string; instance: string; pid: number; gapMs: number }> = [];
    let retiredLogLines = 0;
    const retiredLogs: string[] = [];
    const stormStarted = Date.now();
    for (let k = 0; k < kills; k++) {
      const gap = Math.round(random(gapMin, gapMax));
      await sleep(gap);
      let ready = slots.filter((s) => s.child !== undefined);
      while (ready.length === 0) {
        await Promise.race(slots.map((s) => s.starting).filter((p) => p !== undefined));
        ready = slots.filter((s) => s.child !== undefined);
      }
      const slot = ready[Math.floor(Math.random() * ready.length)] as Slot;
      const child = slot.child as Child;
      slot.child = undefined;
      slot.url = undefined;
      await killChild(child);
      retiredLogLines += child.stderrLines;
      retiredLogs.push(...child.stderr.slice(-2));
      killLog.push({
        at: new Date().toISOString(),
        instance: slot.instance,
        pid: child.pid,
        gapMs: gap,
      });
      slot.restarts++;
      void start(slot).catch((error: unknown) =>
        log(`R1 ${personality}: restart of ${slot.instance} failed: ${String(error)}`),
      );
      if ((k + 1) % 10 === 0) log(`R1 ${personality}: ${k + 1} kills`);
    }
    await Promise.all(slots.map((s) => s.starting));
    for (const slot of slots) if (slot.child === undefined) await start(slot);
    const settleMs = (leaseSeconds + 2 * lifetime + 4) * 1000;
    log(`R1 ${personality}: ${kills} kills done; settling ${settleMs / 1000} s`);
    await sleep(settleMs);
    const stormMs = Date.now() - stormStarted;
    clientsRunning = false;
    await Promise.all(clientLoops);
    await Promise.all(slots.map((s) => (s.child === undefined ? undefined : stopChild(s.child))));
    await provider.control('faults', undefined, 'DELETE');
    const stormCounters = await provider.control<Counters>('counters');
    const replicaLogs = [...retiredLogs, ...slots.flatMap((s) => s.child?.stderr.slice(-5) ?? [])];
    const replicaLogLines = slots.reduce(
      (n, s) => n + (s.child?.stderrLines ?? 0),
      retiredLogLines,
    );

    // Snapshot: the database and the provider's view.
    const snapshot = async () => {
      const states = await Promise.all(
        ids.map(async (id) => {
          const row = await store.credentials.getWithTokens(DEFAULT_TENANT_ID, id);
          if (row === undefined) throw new Error(`credential ${id} is gone`);
          return row;
        }),
      );
      const { statuses } = await provider.control<{ statuses: RefreshTokenStatus[] }>(
        'refresh-token-status',
        { refresh_tokens: states.map((s) => s.tokenSet.refreshToken ?? '') },
      );
      return states.map((s, i) => ({
        status: s.record.status,
        reason: s.record.statusReason,
        rt: statuses[i] as RefreshTokenStatus,
      }));
    };
    const before = await snapshot();
    const eventRows = await store.db
      .selectFrom('events')
      .select(['type', 'data'])
      .where('type', 'in', ['refreshed', 'reauth_required', 'refresh_failed'])
      .execute();
    const refreshedEvents = eventRows.filter((e) => e.type === 'refreshed').length;
    const reauthEvents = eventRows.filter((e) => e.type === 'reauth_required');
    const failureCodes: Record<string, number> = {};
    for (const e of eventRows.filter((row) => row.type === 'refresh_failed')) {
      const code = String((JSON.parse(e.data) as { code?: string }).code);
      failureCodes[code] = (failureCodes[code] ?? 0) + 1;
    }
    const interruptedEvents = reauthEvents.filter(
      (e) => (JSON.parse(e.data) as { interruptedRefresh?: boolean }).interruptedRefresh === true,
    ).length;

    // The check: one fresh replica, no background refresher; every credential's token and the resource.
    log(`R1 ${personality}: checking every credential through a fresh replica`);
    checker = await startReplica('checker', env(`r1-${personality}-checker`, false));
    const checkUrl = String(checker.info.url);
    const checks: CredentialOutcome['check'][] = new Array(ids.length);
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < ids.length) {
          const i = next++;
          const answer = await request(`${checkUrl}/v1/credentials/${ids[i]}/access-token`, {
            method: 'POST',
            dispatcher: agent,
            headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
            body: JSON.stringify({ minValiditySeconds: 1 }),
          });
          const text = await answer.body.text();
          if (answer.statusCode !== 200) {
            let code = '';
            try {
              code = String((JSON.parse(text) as { error?: { code?: string } }).error?.code);
            } catch {}
            checks[i] = { token: `${answer.statusCode} ${code}`, resource: null };
            continue;
          }
          const token = (JSON.parse(text) as { access_token: string }).access_token;
          const resource = await request(provider.resourceUrl, {
            dispatcher: agent,
            headers: { authorization: `Bearer ${token}` },
          });
          await resource.body.dump();
          checks[i] = { token: 'ok', resource: resource.statusCode };
        }
      }),
    );
    await stopChild(checker);
    const after = await snapshot();

    const outcomes: CredentialOutcome[] = ids.map((_, i) => {
      const b = before[i] as (typeof before)[number];
      const a = after[i] as (typeof after)[number];
      const check = checks[i] as CredentialOutcome['check'];
      const alive = (rt: RefreshTokenStatus) =>
        (rt.state === 'current' || rt.state === 'in-grace') && rt.grantRevoked === false;
      let category: CredentialOutcome['category'];
      if (check.token === 'ok' && check.resource === 200 && a.status === 'active' && alive(a.rt))
        category = 'fine';
      else if (a.status === 'reauth_required' && (a.reason ?? '').includes(INTERRUPTED))
        category = 'reported';
      else if (a.status === 'reauth_required') category = 'reported_other_reason';
      else category = 'broken';
      return { before: b, check, after: a, category };
    });
    const timelines = async (
      all: CredentialOutcome[],
      kills: typeof killLog,
      since: number,
    ): Promise<unknown[]> => {
      const hurt = ids.filter((_, i) => all[i]?.category !== 'fine').slice(0, 5);
      const rows = await store.db
        .selectFrom('events')
        .select(['credential_id', 'type', 'data', 'created_at'])
        .where('credential_id', 'in', hurt)
        .orderBy('id')
        .execute();
      const killsMs = kills.map((k) => `${Date.parse(k.at) - since} ${k.instance}`);
      return hurt.map((id) => ({
        id,
        outcome: all[ids.indexOf(id)],
        events: rows
          .filter((r) => r.credential_id === id)
          .map((r) => `${r.created_at - since} ${r.type} ${r.data}`),
        kills: killsMs,
      }));
    };
    const tally = (category: CredentialOutcome['category']) =>
      outcomes.filter((o) => o.category === category);
    const fine = tally('fine');
    const reported = tally('reported');
    const reportedOther = tally('reported_other_reason');
    const broken = tally('broken');
    const result = {
      personality,
      profile,
      credentials: credentialCount,
      tokenLifetimeSeconds: lifetime,
      replicas: replicaCount,
      leaseSeconds,
      tokenTimeoutMs: timeoutMs,
      holderLiveness: holderLiveness === '1',
      answerDelayMs,
      vaultLimits: `${profile}=${concurrency}/${rate}`,
      ...(personality === 'microsoft' ? { graceSeconds: grace } : {}),
      kills: killLog.length,
      stormSeconds: round(stormMs / 1000),
      restartMs: {
        p50: percentile(
          [...restartTimes].sort((a, b) => a - b),
          0.5,
        ),
        max: Math.max(0, ...restartTimes),
      },
      storm: {
        providerRefreshes: stormCounters.refreshes,
        providerRefreshRequests: stormCounters.tokenRequests.refresh_token,
        refreshesPerSecond: round(stormCounters.refreshes / (stormMs / 1000)),
        invalidGrants: stormCounters.invalidGrants,
        reusedRefreshTokens: stormCounters.reusedRefreshTokens,
        revokedGrants: stormCounters.revokedGrants,
        vaultRefreshedEvents: refreshedEvents,
        /** Provider answers never committed by the vault (kills between answer and commit, timeouts). */
        lostAnswers: stormCounters.refreshes - refreshedEvents,
        reauthRequiredEvents: reauthEvents.length,
        reauthRequiredEventsInterrupted: interruptedEvents,
        refreshFailedByCode: failureCodes,
        clients: clientStats,
        replicaWarnLines: replicaLogLines,
        replicaLogSample: replicaLogs.slice(-6),
      },
      atSnapshot: {
        active: before.filter((b) => b.status === 'active').length,
        reauthRequired: before.filter((b) => b.status === 'reauth_required').length,
        /** Active in the vault while the provider no longer honours its refresh token: hurt, not noticed yet. */
        activeButDeadAtProvider: before.filter(
          (b) =>
            b.status === 'active' &&
            !((b.rt.state === 'current' || b.rt.state === 'in-grace') && !b.rt.grantRevoked),
        ).length,
        grantsRevokedAtProvider: before.filter((b) => b.rt.grantRevoked !== false).length,
      },
      outcome: {
        fine: fine.length,
        reportedInterrupted: reported.length,
        reportedDuringStorm: reported.filter((o) => o.before.status === 'reauth_required').length,
        reportedAtCheck: reported.filter((o) => o.before.status !== 'reauth_required').length,
        reportedOtherReason: reportedOther.length,
        otherReasons: [...new Set(reportedOther.map((o) => o.after.reason))].slice(0, 5),
        broken: broken.length,
        brokenSample: broken.slice(0, 5),
        /** Reported, yet the provider still honours the grant: a false alarm. */
        reportedButAliveAtProvider: [...reported, ...reportedOther].filter(
          (o) => o.after.rt !== null && o.after.rt.grantRevoked === false,
        ).length,
      },
      killLog: killLog.slice(0, 3),
      /**
       * For up to 5 credentials not fine, in personality `microsoft` (where the grace
       * should save every one): each event of the credential and every kill, in ms
       * since the storm began, to see what kept its refresh from coming back in time.
       */
      ...(personality === 'microsoft' && fine.length < outcomes.length
        ? { timelines: await timelines(outcomes, killLog, stormStarted) }
        : {}),
    };
    const ok =
      killLog.length === kills &&
      broken.length === 0 &&
      reportedOther.length === 0 &&
      (personality === 'microsoft' ? fine.length === credentialCount : true);
    log(
      `R1 ${personality}: ${ok ? 'PASS' : 'FAIL'}: ${fine.length} fine, ${reported.length} reported (interrupted), ${reportedOther.length} reported (other), ${broken.length} broken; ${result.storm.lostAnswers} lost answers`,
    );
    return { ok, ...result };
  } finally {
    await agent.close().catch(() => undefined);
    if (checker !== undefined) await stopChild(checker);
    for (const slot of slots) if (slot.starting !== undefined) await slot.starting.catch(() => {});
    await Promise.all(slots.map((s) => (s.child === undefined ? undefined : stopChild(s.child))));
    await stopChild(provider.child);
    await database.close();
    await runCleanups();
  }
}

const runs: Array<Awaited<ReturnType<typeof runPersonality>>> = [];
try {
  for (const personality of personalities)
    runs.push(await runPersonality(personality as 'microsoft' | 'strict'));
} finally {
  await runCleanups();
}
const ok = runs.every((r) => r.ok);
await report('r1-crash', {
  command: `node bench/r1-crash.ts ${process.argv.slice(2).join(' ')}`.trim(),
  ok,
  runs,
});
process.exit(ok ? 0 : 1);
