/**
 * The background refresher (issue 4) on SQLite and PostgreSQL: replicas that
 * claim due credentials from one database, per-provider limits, failure
 * handling with reasons, and rescheduling.
 *
 * Replicas run in this process: each is a CredentialService and a
 * BackgroundRefresher with its own instance id over the same database. On
 * PostgreSQL each has its own connection pool; on SQLite they share one
 * connection, because better-sqlite3 waits for a locked file synchronously,
 * which in one process would block the event loop that holds the other
 * connection's transaction (separate vault processes on one SQLite file are
 * covered by cross-process.test.ts). Claims are exclusive by their SQL either way.
 *
 * The fake provider runs with the `strict` personality (single-use refresh
 * tokens; a reused one is answered invalid_grant and revokes the grant), so a
 * credential refreshed twice for one expiry shows up at the provider.
 *
 * PostgreSQL missing makes the PostgreSQL half fail, never skip.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  loadProviderCatalog,
  type ProviderCatalog,
  type TokenResponse,
  TokenSet,
} from '@tokenwarden/oauth';
import { type FakeProvider, type Personality, startFakeProvider } from '@tokenwarden/testing';
import { CredentialService } from '../src/credential-service.ts';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import type { VaultDatabase } from '../src/db/database.ts';
import { createMetrics, type VaultMetrics } from '../src/http/metrics.ts';
import { createLogger } from '../src/logger.ts';
import { ProviderLimiter, parseProviderLimits } from '../src/refresher/provider-limits.ts';
import { BackgroundRefresher } from '../src/refresher.ts';
import type { AuthClientRecord } from '../src/store/auth-clients.ts';
import type { VaultEvent } from '../src/store/events.ts';
import { VaultStore } from '../src/store/store.ts';
import { type Engine, engines, type TestDatabase } from './support/databases.ts';

let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

type TestContext = { after(fn: () => Promise<void>): void };

/** Token-endpoint calls as one replica made them: start times and the most at once. */
interface CallLog {
  starts: number[];
  maxInFlight: number;
}

interface Replica {
  instanceId: string;
  store: VaultStore;
  service: CredentialService;
  refresher: BackgroundRefresher;
  metrics: VaultMetrics;
  calls: CallLog;
}

interface ReplicaOptions {
  /** TOKENWARDEN_PROVIDER_LIMITS syntax. */
  limits?: string;
  intervalMs?: number;
  leaseMs?: number;
  claimSize?: number;
  backoff?: { baseMs: number; maxMs: number };
}

/** One database, one provider, one auth client, and replicas on demand. */
interface Fixture {
  engine: Engine['name'];
  database: TestDatabase;
  provider: FakeProvider;
  clientId: string;
  clientSecret: string;
  tenantId: string;
  authClient: AuthClientRecord;
  /** The first replica's store (all share the database). */
  store: VaultStore;
  /** Every log line of every replica. */
  logs: string[];
  replica(options?: ReplicaOptions): Promise<Replica>;
  /** Credentials with fresh grants at the provider; `expiresIn` is what the vault is told. */
  seed(
    count: number,
    options?: { authClient?: AuthClientRecord; expiresIn?: (index: number) => number },
  ): Promise<string[]>;
  registerAuthClient(options?: {
    clientSecret?: string;
    providerId?: string;
  }): Promise<AuthClientRecord>;
  /** Makes a credential due now (or at `at`). */
  makeDue(ids: string[], at?: number): Promise<void>;
  row(id: string): Promise<CredentialRow>;
  events(type?: VaultEvent['type']): Promise<VaultEvent[]>;
}

interface CredentialRow {
  status: string;
  status_reason: string | null;
  next_refresh_at: number | null;
  failure_count: number;
  last_decision: string | null;
  last_error_code: string | null;
  lease_owner: string | null;
  expires_at: number | null;
}

const keyring = new Keyring(parseKeyList(`test:${randomBytes(32).toString('base64')}`));

async function fixture(
  t: TestContext,
  engine: Engine,
  options: { personality?: Personality; lifetimeSeconds?: number } = {},
): Promise<Fixture> {
  const clientId = `tw-refresher-${randomBytes(4).toString('hex')}`;
  const clientSecret = `cs-${randomBytes(24).toString('base64url')}`;
  const provider = await startFakeProvider({
    personality: options.personality ?? 'strict',
    autoApprove: true,
    requirePkce: false,
    accessTokenLifetimeSeconds: options.lifetimeSeconds ?? 3600,
    clients: [{ clientId, clientSecret }],
  });
  t.after(() => provider.close());
  const database = await engine.create(t);
  const handles: VaultDatabase[] = [await database.open()];
  const first = handles[0] as VaultDatabase;
  const store = new VaultStore(first.db, keyring, catalog);
  const tenant = await store.tenants.create('refresher', Date.now());
  const logs: string[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.length > 0) logs.push(line);
      done();
    },
  });
  const replicas: Replica[] = [];
  let replicaCount = 0;
  t.after(async () => {
    for (const replica of replicas) await replica.refresher.stop();
  });

  const registerAuthClient = (
    input: { clientSecret?: string; providerId?: string } = {},
  ): Promise<AuthClientRecord> =>
    store.authClients.create(
      tenant.id,
      {
        name: 'fake provider',
        providerId: input.providerId ?? 'oauth2',
        clientId,
        clientSecret: input.clientSecret ?? clientSecret,
        endpoints: {
          authorizationUrl: provider.authorizationEndpoint,
          tokenUrl: provider.tokenEndpoint,
        },
      },
      Date.now(),
    );
  const authClient = await registerAuthClient();

  const f: Fixture = {
    engine: engine.name,
    database,
    provider,
    clientId,
    clientSecret,
    tenantId: tenant.id,
    authClient,
    store,
    logs,
    registerAuthClient,
    async replica(options = {}) {
      const index = ++replicaCount;
      let replicaStore = store;
      if (engine.name === 'postgres' && index > 1) {
        const handle = await database.open({ poolSize: 4 });
        handles.push(handle);
        replicaStore = new VaultStore(handle.db, keyring, catalog);
      }
      const parsed = parseProviderLimits(options.limits ?? 'default=50/1000/1000');
      assert.ok(parsed.ok);
      const limits = new ProviderLimiter(parsed.limits);
      const calls: CallLog = { starts: [], maxInFlight: 0 };
      let inFlight = 0;
      const countingFetch: typeof fetch = async (input, init) => {
        calls.starts.push(Date.now());
        inFlight++;
        calls.maxInFlight = Math.max(calls.maxInFlight, inFlight);
        try {
          const response = await fetch(input, init);
          // Counted until the body is in: the whole call to the provider.
          const body = await response.arrayBuffer();
          return new Response(body, { status: response.status, headers: response.headers });
        } finally {
          inFlight--;
        }
      };
      const instanceId = `replica-${index}`;
      const logger = createLogger('debug', logDestination).child({ instance: instanceId });
      const metrics = createMetrics(replicaStore);
      const leaseMs = options.leaseMs ?? 30_000;
      const service = new CredentialService({
        store: replicaStore,
        logger,
        instanceId,
        leaseMs,
        tokenRequestTimeoutMs: 5_000,
        fetch: countingFetch,
        metrics,
        limits,
        backoff: options.backoff ?? { baseMs: 5_000, maxMs: 60_000 },
      });
      const refresher = new BackgroundRefresher({
        store: replicaStore,
        service,
        logger,
        metrics,
        limits,
        instanceId,
        leaseMs,
        intervalMs: options.intervalMs ?? 200,
        claimSize: options.claimSize ?? 100,
      });
      const replica = { instanceId, store: replicaStore, service, refresher, metrics, calls };
      replicas.push(replica);
      return replica;
    },
    async seed(count, options = {}) {
      const target = options.authClient ?? authClient;
      const resolved = await store.authClients.resolve(tenant.id, target.id);
      assert.ok(resolved);
      const service = new CredentialService({
        store,
        logger: createLogger('silent'),
        instanceId: 'seeder',
        leaseMs: 30_000,
        tokenRequestTimeoutMs: 5_000,
      });
      const ids: string[] = [];
      for (let start = 0; start < count; start += 25) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(25, count - start) }, async (_, offset) => {
            const index = start + offset;
            const response = await grant(provider, clientId, clientSecret);
            const expiresIn = options.expiresIn?.(index);
            const tokens = TokenSet.fromResponse(
              expiresIn === undefined ? response : { ...response, expires_in: expiresIn },
              Date.now(),
            );
            return (await service.createCredential(tenant.id, resolved, tokens, 'import')).id;
          }),
        );
        ids.push(...batch);
      }
      return ids;
    },
    async makeDue(ids, at = Date.now() - 1) {
      await store.db
        .updateTable('credentials')
        .set({ next_refresh_at: at })
        .where('id', 'in', ids)
        .execute();
    },
    async row(id) {
      return store.db
        .selectFrom('credentials')
        .select([
          'status',
          'status_reason',
          'next_refresh_at',
          'failure_count',
          'last_decision',
          'last_error_code',
          'lease_owner',
          'expires_at',
        ])
        .where('id', '=', id)
        .executeTakeFirstOrThrow();
    },
    async events(type) {
      const all: VaultEvent[] = [];
      for (;;) {
        const after = all.at(-1)?.id;
        const page = await store.events.list(tenant.id, {
          limit: 1000,
          ...(after === undefined ? {} : { after }),
        });
        all.push(...page);
        if (page.length < 1000) break;
      }
      return type === undefined ? all : all.filter((event) => event.type === type);
    },
  };
  return f;
}

/** A grant at the fake provider through the code flow (auto-approved, no PKCE): its token response. */
async function grant(
  provider: FakeProvider,
  clientId: string,
  clientSecret: string,
): Promise<TokenResponse> {
  const redirectUri = 'http://127.0.0.1/callback';
  const authorize = new URL(provider.authorizationEndpoint);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri,
    state: randomBytes(8).toString('hex'),
  }).toString();
  const answer = await fetch(authorize, { redirect: 'manual' });
  const location = answer.headers.get('location');
  await answer.arrayBuffer();
  const code = location === null ? null : new URL(location).searchParams.get('code');
  assert.ok(code, `no code from the fake provider (${answer.status} ${location})`);
  const token = await fetch(provider.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
    }),
  });
  assert.equal(token.status, 200);
  return (await token.json()) as TokenResponse;
}

/** Refreshes at the provider directly, as a component (or a dying replica) would. */
async function refreshAtProvider(
  f: Fixture,
  refreshToken: string,
): Promise<{ status: number; body: TokenResponse }> {
  const answer = await fetch(f.provider.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${f.clientId}:${f.clientSecret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
  });
  return { status: answer.status, body: (await answer.json()) as TokenResponse };
}

async function tokensOf(f: Fixture, id: string): Promise<TokenSet> {
  const current = await f.store.credentials.getWithTokens(f.tenantId, id);
  assert.ok(current);
  return current.tokenSet;
}

/** The most calls started in any window of `windowMs`. */
function peakInWindow(starts: number[], windowMs = 1000): number {
  const sorted = [...starts].sort((a, b) => a - b);
  let peak = 0;
  let low = 0;
  for (let high = 0; high < sorted.length; high++) {
    while ((sorted[high] as number) - (sorted[low] as number) >= windowMs) low++;
    peak = Math.max(peak, high - low + 1);
  }
  return peak;
}

async function counter(metrics: VaultMetrics, outcome: string): Promise<number> {
  const value = await metrics.claims.get();
  return value.values.find((v) => v.labels.outcome === outcome)?.value ?? 0;
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(50);
  }
}

for (const engine of engines()) {
  describe(`background refresher on ${engine.name}`, () => {
    test('three replicas keep 300 short-lived credentials alive: each refreshed once per expiry, before it, within the provider limits', async (t) => {
      const LIFETIME = 8;
      const RATE = 40;
      const CONCURRENCY = 6;
      const f = await fixture(t, engine, { lifetimeSeconds: LIFETIME });
      const seeded = Date.now();
      // What the vault is told at first spreads the expiries over 4 s (due 2.5-4.5 s from now).
      const ids = await f.seed(300, { expiresIn: (i) => 5 + (i % 40) / 10 });
      const seedMs = Date.now() - seeded;
      const connected = await f.events('connected');
      const replicas = await Promise.all(
        [1, 2, 3].map(() =>
          f.replica({ limits: `oauth2=${CONCURRENCY}/${RATE}`, intervalMs: 200 }),
        ),
      );
      const counters0 = f.provider.counters();
      for (const replica of replicas) replica.refresher.start();
      const RUN_MS = 9_500;
      await sleep(RUN_MS);
      for (const replica of replicas) await replica.refresher.stop();
      const stoppedAt = Date.now();
      const counters = f.provider.counters();

      const refreshed = await f.events('refreshed');
      const summary = () =>
        JSON.stringify({
          seedMs,
          refreshes: counters.refreshes - counters0.refreshes,
          refreshedEvents: refreshed.length,
          invalidGrants: counters.invalidGrants,
          byReplica: replicas.map((r) => ({
            calls: r.calls.starts.length,
            peakPerSecond: peakInWindow(r.calls.starts),
            maxInFlight: r.calls.maxInFlight,
          })),
          peakAtProvider: peakInWindow(replicas.flatMap((r) => r.calls.starts)),
        });

      // Each expiry replaced once: a second refresh would have reused a single-use token.
      assert.equal(counters.invalidGrants, 0, summary());
      assert.equal(counters.reusedRefreshTokens, 0, summary());
      assert.equal(counters.revokedGrants, 0, summary());
      assert.equal(counters.refreshes - counters0.refreshes, refreshed.length, summary());
      assert.ok(refreshed.length >= 500, `expected two rounds of refreshes: ${summary()}`);
      // Claims are exclusive: every claim led to a refresh (or was given back unused at
      // stop), none found the work done by another replica.
      let claimed = 0;
      let released = 0;
      for (const replica of replicas) {
        claimed += await counter(replica.metrics, 'claimed');
        released += await counter(replica.metrics, 'released');
        assert.equal(await counter(replica.metrics, 'contended'), 0, summary());
      }
      assert.equal(claimed, refreshed.length + released, summary());
      // Every replica took a share.
      const byInstance = new Map<string, number>();
      for (const event of refreshed) {
        const instance = String(event.data.instance);
        byInstance.set(instance, (byInstance.get(instance) ?? 0) + 1);
      }
      assert.deepEqual(
        [...byInstance.keys()].sort(),
        ['replica-1', 'replica-2', 'replica-3'],
        `${summary()}\n${f.logs
          .filter((line) => /"level":(40|50)/.test(line))
          .slice(0, 5)
          .join('\n')}`,
      );

      // Each refresh came after its credential was due and before the token it replaced expired.
      const previousExpiry = new Map<string, number>();
      const lifetimeMs = new Map<string, number>();
      for (const event of connected) {
        const expiresAt = Date.parse(String(event.data.expiresAt));
        previousExpiry.set(String(event.credentialId), expiresAt);
        lifetimeMs.set(String(event.credentialId), expiresAt - event.at);
      }
      for (const event of refreshed) {
        const id = String(event.credentialId);
        const expiry = previousExpiry.get(id);
        const lifetime = lifetimeMs.get(id);
        assert.ok(expiry !== undefined && lifetime !== undefined);
        assert.ok(
          event.at < expiry,
          `${id} refreshed ${event.at - expiry} ms after its token expired: ${summary()}`,
        );
        assert.ok(
          event.at >= expiry - lifetime / 2 - 5,
          `${id} refreshed ${expiry - lifetime / 2 - event.at} ms before it was due`,
        );
        const next = Date.parse(String(event.data.expiresAt));
        previousExpiry.set(id, next);
        lifetimeMs.set(id, next - event.at);
      }
      // None left behind: every token is still valid when the replicas stop.
      for (const id of ids) {
        const row = await f.row(id);
        assert.equal(row.status, 'active');
        assert.equal(row.failure_count, 0);
        assert.ok((row.expires_at ?? 0) > stoppedAt, `${id} expired: ${JSON.stringify(row)}`);
        assert.equal(row.lease_owner, null, 'claims are released');
      }

      // Per replica: never more than CONCURRENCY in flight, never more than RATE (+ the
      // bucket's 1) started in a second; at the provider, 3 times that.
      // The bucket admits RATE + 1 a second; the starts are stamped a little later, when
      // the request goes out, and on a loaded 2-core machine (CI) that jitter can slide
      // a couple of them into the same second: JITTER allows for it, no more.
      const JITTER = 3;
      for (const replica of replicas) {
        assert.ok(replica.calls.maxInFlight <= CONCURRENCY, summary());
        assert.ok(peakInWindow(replica.calls.starts) <= RATE + 1 + JITTER, summary());
      }
      const all = replicas.flatMap((r) => r.calls.starts);
      assert.equal(all.length, refreshed.length, summary());
      assert.ok(peakInWindow(all) <= 3 * (RATE + 1 + JITTER), summary());
      // The limit was reached at some point (else this test shows nothing about it).
      assert.ok(
        replicas.some((r) => peakInWindow(r.calls.starts) >= RATE * 0.75),
        `the rate limit was never approached: ${summary()}`,
      );
    });

    test('a claim left by a dead replica is taken over; a refresh it interrupted is reported as such', async (t) => {
      const f = await fixture(t, engine);
      const [plain, interrupted, live] = await f.seed(3);
      assert.ok(plain && interrupted && live);
      const now = Date.now();
      await f.makeDue([plain, interrupted, live]);
      // The dead replica had claimed all three; for `interrupted` it had already
      // spent the single-use refresh token when it died. `live` is held by a live one.
      const spent = await refreshAtProvider(f, (await tokensOf(f, interrupted)).refreshToken ?? '');
      assert.equal(spent.status, 200);
      await f.store.db
        .updateTable('credentials')
        .set({ lease_owner: 'dead-replica~7', lease_until: now - 1 })
        .where('id', 'in', [plain, interrupted])
        .execute();
      await f.store.db
        .updateTable('credentials')
        .set({ lease_owner: 'live-replica~3', lease_until: now + 60_000 })
        .where('id', '=', live)
        .execute();

      const replica = await f.replica();
      const summary = await replica.refresher.runOnce();
      assert.deepEqual(summary.claimed, { oauth2: 2 });

      const refreshed = await f.row(plain);
      assert.equal(refreshed.status, 'active');
      assert.equal(refreshed.lease_owner, null);
      assert.match(refreshed.last_decision ?? '', /^refreshed \(expiring at /);

      const hurt = await f.row(interrupted);
      assert.equal(hurt.status, 'reauth_required');
      assert.match(hurt.status_reason ?? '', /invalid_grant/);
      assert.match(
        hurt.status_reason ?? '',
        /a refresh by another vault process was interrupted before it stored its answer/,
      );
      const reauth = (await f.events('reauth_required')).find(
        (e) => e.credentialId === interrupted,
      );
      assert.equal(reauth?.data.interruptedRefresh, true);

      const untouched = await f.row(live);
      assert.equal(untouched.lease_owner, 'live-replica~3', 'a live claim is left alone');
      assert.equal(f.provider.counters().refreshes, 2, 'the spent one and the plain one');
    });

    test('an abandoned lease is claimed first, due or not; not due, it is refreshed at once only when refresh tokens rotate with a grace', async (t) => {
      const f = await fixture(t, engine);
      const google = await f.registerAuthClient({ providerId: 'google' });
      const zoom = await f.registerAuthClient({ providerId: 'zoom' });
      const [backlog, rotating] = await f.seed(2);
      const [steady] = await f.seed(1, { authClient: google });
      const [singleUse] = await f.seed(1, { authClient: zoom });
      assert.ok(backlog && rotating && steady && singleUse);
      const now = Date.now();
      // `backlog` has been due for a minute; the other two are not due for an hour, but
      // a replica died refreshing them (its lease expired a moment ago): if the provider
      // rotated the refresh token first, the stored one lives only for its grace period.
      await f.makeDue([backlog], now - 60_000);
      await f.store.db
        .updateTable('credentials')
        .set({
          next_refresh_at: now + 3_600_000,
          lease_owner: 'dead-replica~4',
          lease_until: now - 1,
        })
        .where('id', 'in', [rotating, steady, singleUse])
        .execute();

      const claim = (providerId: string, limit: number) =>
        f.store.credentials.claimDue({
          providerId,
          owner: 'test~1',
          now: Date.now(),
          leaseMs: 30_000,
          limit,
        });
      const [first] = await claim('oauth2', 1);
      assert.equal(first?.id, rotating, 'the abandoned lease before a minute of backlog');
      assert.equal(first?.takenOverFrom, 'dead-replica~4');
      for (const id of [rotating, backlog]) await f.store.credentials.releaseLease(id, 'test~1');
      await f.store.db
        .updateTable('credentials')
        .set({ lease_owner: 'dead-replica~4', lease_until: Date.now() - 1 })
        .where('id', '=', rotating)
        .execute();

      const before = f.provider.counters().refreshes;
      const replica = await f.replica();
      const summary = await replica.refresher.runOnce();
      assert.deepEqual(summary.claimed, { oauth2: 2, google: 1, zoom: 1 });

      const saved = await f.row(rotating);
      assert.equal(saved.status, 'active');
      assert.equal(saved.lease_owner, null);
      assert.match(saved.last_decision ?? '', /its refresh lease was abandoned/);
      const event = (await f.events('refreshed')).find((e) => e.credentialId === rotating);
      assert.equal(event?.data.trigger, 'taken-over');
      assert.ok((saved.next_refresh_at ?? 0) > now, 'rescheduled from the new token');

      // google (`none`): nothing in doubt. zoom (`single-use`): no grace to save, and a
      // second presentation of a spent token could cost the grant: left to its schedule.
      for (const id of [steady, singleUse]) {
        const left = await f.row(id);
        assert.equal(left.lease_owner, null, 'released');
        assert.equal(left.next_refresh_at, now + 3_600_000, 'not refreshed');
      }
      assert.equal(f.provider.counters().refreshes, before + 2, 'backlog and rotating');
    });

    test('concurrency per provider holds, and a waiting caller goes before queued background work', async (t) => {
      const f = await fixture(t, engine);
      const ids = await f.seed(13);
      const background = ids.slice(0, 12);
      const caller = ids[12] as string;
      await f.makeDue(background);
      f.provider.faults.inject({ kind: 'latency', ms: 150 }, { endpoint: 'token' });
      const replica = await f.replica({ limits: 'oauth2=2/1000/1000' });
      const started = Date.now();
      const pass = replica.refresher.runOnce();
      await sleep(50); // the first two are at the provider, ten wait
      const stale = (await tokensOf(f, caller)).accessToken;
      const callerStarted = Date.now();
      const fresh = await replica.service.accessToken(f.tenantId, caller, {
        staleAccessToken: stale,
      });
      const callerMs = Date.now() - callerStarted;
      assert.notEqual(fresh.accessToken, stale);
      await pass;
      const totalMs = Date.now() - started;
      assert.equal(replica.calls.maxInFlight, 2);
      // Behind ten background refreshes it would wait 5 × 150 ms; first in line, one slot's turn.
      assert.ok(
        callerMs < 450,
        `the caller waited ${callerMs} ms (the background pass took ${totalMs} ms)`,
      );
      assert.ok(totalMs >= 6 * 150, `13 calls two at a time take 7 rounds of 150 ms: ${totalMs}`);
      for (const id of background) assert.equal((await f.row(id)).failure_count, 0);
    });

    test('transient failures back off (capped, jittered, counted) and recover without reauth', async (t) => {
      const f = await fixture(t, engine);
      const ids = await f.seed(3);
      await f.makeDue(ids);
      const fault = f.provider.faults.inject(
        { kind: 'status', status: 503 },
        { endpoint: 'token' },
      );
      const replica = await f.replica({
        intervalMs: 100,
        backoff: { baseMs: 200, maxMs: 400 },
      });
      const before = f.provider.counters().tokenRequests.refresh_token;
      replica.refresher.start();
      await until('every credential failed twice', async () => {
        for (const id of ids) if ((await f.row(id)).failure_count < 2) return false;
        return true;
      });
      const row = await f.row(ids[0] as string);
      assert.equal(row.status, 'active');
      assert.equal(row.last_error_code, 'token_endpoint_unavailable');
      assert.match(
        row.last_decision ?? '',
        /^backed off after \d+ failures until \d{4}-.*: token_endpoint_unavailable: /,
      );
      // The still-valid token is served meanwhile.
      const served = await replica.service.accessToken(f.tenantId, ids[0] as string, {});
      assert.equal(served.accessToken, (await tokensOf(f, ids[0] as string)).accessToken);
      await sleep(800);
      const during = f.provider.counters().tokenRequests.refresh_token - before;
      // Without backoff, 1.5 s of 100-ms passes would be ~15 calls per credential;
      // with 100-400 ms waits (200, then 400 capped, halves jittered) at most ~8.
      assert.ok(during <= 3 * 8, `${during} token requests while failing`);
      const failed = (await f.events('refresh_failed')).filter((e) => e.credentialId === ids[0]);
      assert.ok(failed.length >= 2);
      assert.equal(failed.at(-1)?.data.code, 'token_endpoint_unavailable');
      assert.equal(typeof failed.at(-1)?.data.failureCount, 'number');
      assert.equal(typeof failed.at(-1)?.data.retryAt, 'string');

      f.provider.faults.clear(fault);
      await until('every credential refreshed', async () => {
        for (const id of ids) if ((await f.row(id)).failure_count !== 0) return false;
        return true;
      });
      await replica.refresher.stop();
      for (const id of ids) {
        const recovered = await f.row(id);
        assert.equal(recovered.status, 'active');
        assert.equal(recovered.last_error_code, null);
        assert.match(recovered.last_decision ?? '', /retry after \d+ failures/);
      }
      assert.equal((await f.events('reauth_required')).length, 0);
      assert.equal(f.provider.counters().invalidGrants, 0);
    });

    test("invalid_grant marks reauth_required at once with the provider's description", async (t) => {
      const f = await fixture(t, engine);
      const [id] = await f.seed(1);
      assert.ok(id);
      assert.ok(f.provider.revokeGrant((await tokensOf(f, id)).refreshToken ?? ''));
      await f.makeDue([id]);
      const replica = await f.replica();
      await replica.refresher.runOnce();
      const row = await f.row(id);
      assert.equal(row.status, 'reauth_required');
      assert.equal(
        row.status_reason,
        'the provider answered invalid_grant: the grant has been revoked',
      );
      assert.equal(row.next_refresh_at, null, 'no longer scheduled');
      assert.match(
        row.last_decision ?? '',
        /^reauth_required: the provider answered invalid_grant/,
      );
      const [event] = await f.events('reauth_required');
      assert.equal(event?.data.reason, row.status_reason);
      assert.equal(event?.data.interruptedRefresh, false);
      const calls = f.provider.counters().tokenRequests.refresh_token;
      await replica.refresher.runOnce();
      assert.equal(f.provider.counters().tokenRequests.refresh_token, calls, 'not tried again');
    });

    test('invalid_client pauses the auth client: no more token requests for its credentials until it is edited', async (t) => {
      const f = await fixture(t, engine);
      const wrong = await f.registerAuthClient({
        clientSecret: `wrong-${randomBytes(12).toString('hex')}`,
      });
      const paused = await f.seed(5, { authClient: wrong });
      const healthy = await f.seed(2);
      await f.makeDue([...paused, ...healthy]);
      const replica = await f.replica({ limits: 'oauth2=1/1000/1000' });
      const before = f.provider.counters().tokenRequests.refresh_token;
      await replica.refresher.runOnce();
      // One call was rejected; the others saw the mark before calling.
      const requests = () => f.provider.counters().tokenRequests.refresh_token - before;
      assert.equal(requests(), 1 + healthy.length);
      const client = await f.store.authClients.get(f.tenantId, wrong.id);
      assert.equal(client?.status, 'misconfigured');
      for (const id of paused) {
        const row = await f.row(id);
        assert.equal(row.status, 'active', 'a client problem is not the user’s');
        assert.equal(row.failure_count, 0, 'not counted against the credential');
        assert.equal(row.last_error_code, 'client_misconfigured');
        assert.match(row.last_decision ?? '', /^paused: /);
        assert.ok((row.next_refresh_at ?? Infinity) <= Date.now(), 'still due');
        assert.equal(row.lease_owner, null);
      }
      for (const id of healthy) assert.match((await f.row(id)).last_decision ?? '', /^refreshed/);

      // Not claimed while misconfigured, and not counted in the backlog.
      assert.deepEqual((await replica.refresher.runOnce()).claimed, {});
      assert.equal(requests(), 1 + healthy.length);
      const metrics = await replica.metrics.registry.metrics();
      assert.match(metrics, /^tokenwarden_refresh_backlog 0$/m);
      assert.match(metrics, /^tokenwarden_refresh_held\{reason="auth_client_misconfigured"\} 5$/m);

      // Edited (PATCH /v1/auth-clients/:id): its credentials resume at once.
      await f.store.authClients.update(
        f.tenantId,
        wrong.id,
        { clientSecret: f.clientSecret },
        Date.now(),
      );
      assert.deepEqual((await replica.refresher.runOnce()).claimed, { oauth2: 5 });
      for (const id of paused) {
        const row = await f.row(id);
        assert.match(row.last_decision ?? '', /^refreshed/);
        assert.equal(row.last_error_code, null);
      }
    });

    test('a credential refreshed through the token endpoint or updateKeys is rescheduled, not refreshed twice', async (t) => {
      const f = await fixture(t, engine, { lifetimeSeconds: 3600 });
      const [viaEndpoint, viaKeys] = await f.seed(2);
      assert.ok(viaEndpoint && viaKeys);
      const dueAt = Date.now() + 600;
      await f.makeDue([viaEndpoint, viaKeys], dueAt);
      const replica = await f.replica({ intervalMs: 100 });
      replica.refresher.start();

      const stale = (await tokensOf(f, viaEndpoint)).accessToken;
      await replica.service.accessToken(f.tenantId, viaEndpoint, { staleAccessToken: stale });
      const component = await refreshAtProvider(f, (await tokensOf(f, viaKeys)).refreshToken ?? '');
      assert.equal(component.status, 200);
      const updated = await replica.service.updateKeys(f.tenantId, viaKeys, component.body);
      assert.match(updated.lastDecision?.text ?? '', /^keys updated by a component \(updateKeys\)/);

      await sleep(1200); // past the old schedule
      await replica.refresher.stop();
      for (const id of [viaEndpoint, viaKeys]) {
        const row = await f.row(id);
        assert.ok((row.next_refresh_at ?? 0) > Date.now() + 3_000_000, 'moved to the new expiry');
        assert.equal(row.status, 'active');
      }
      const counters = f.provider.counters();
      assert.equal(counters.refreshes, 2, 'one by the endpoint, one by the component');
      assert.equal(counters.invalidGrants, 0);
      assert.equal(await counter(replica.metrics, 'claimed'), 0);
    });

    test('keep-alive: a token that never expires is refreshed at the profile’s interval', async (t) => {
      // Salesforce's fake answers without expires_in; the google profile (30-day keep-alive)
      // has no default lifetime, so the vault sees tokens that never expire.
      const f = await fixture(t, engine, { personality: 'salesforce' });
      const google = await f.registerAuthClient({ providerId: 'google' });
      const resolved = await f.store.authClients.resolve(f.tenantId, google.id);
      assert.ok(resolved);
      const response = await grant(f.provider, f.clientId, f.clientSecret);
      assert.equal(response.expires_in, undefined);
      const thirtyOneDaysAgo = Date.now() - 31 * 86_400_000;
      const seeder = new CredentialService({
        store: f.store,
        logger: createLogger('silent'),
        instanceId: 'seeder',
        leaseMs: 30_000,
        tokenRequestTimeoutMs: 5_000,
      });
      const credential = await seeder.createCredential(
        f.tenantId,
        resolved,
        TokenSet.fromResponse(response, thirtyOneDaysAgo),
        'import',
      );
      assert.equal(credential.expiresAt, null);
      assert.equal(credential.nextRefreshAt, thirtyOneDaysAgo + 30 * 86_400_000);

      const replica = await f.replica();
      await replica.refresher.runOnce();
      const [event] = await f.events('refreshed');
      assert.match(
        String(event?.data.reason),
        /^keep-alive every 2592000 s \(the token does not expire\)/,
      );
      const row = await f.row(credential.id);
      assert.equal(row.expires_at, null);
      const next = row.next_refresh_at ?? 0;
      assert.ok(Math.abs(next - (Date.now() + 30 * 86_400_000)) < 60_000, 'the next keep-alive');
      const now = await tokensOf(f, credential.id);
      assertNoSecrets(f, [
        response.access_token,
        response.refresh_token,
        now.accessToken,
        now.refreshToken,
      ]);
    });
  });
}

/** Decision log lines carry reasons, never a token or the client secret. */
function assertNoSecrets(f: Fixture, secrets: Array<string | undefined>): void {
  assert.ok(f.logs.some((line) => line.includes('refresh decision')));
  for (const secret of [f.clientSecret, ...secrets]) {
    if (secret === undefined) continue;
    assert.ok(!f.logs.some((line) => line.includes(secret)), 'a secret reached a log line');
  }
}
