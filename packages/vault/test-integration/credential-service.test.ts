/**
 * The credential service against a real database (SQLite and PostgreSQL) and the
 * fake provider: what a refresh leaves behind when its credential is deleted
 * under it, and what it stores when it fails with an unexpected error.
 *
 * The fake provider runs with the `strict` personality (single-use refresh
 * tokens). PostgreSQL missing makes the PostgreSQL half fail, never skip.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProviderCatalog, type ProviderCatalog, TokenSet } from '@tokenwarden/oauth';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import { CredentialService } from '../src/credential-service.ts';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import { createLogger } from '../src/logger.ts';
import {
  type LimitPriority,
  type LimitSlot,
  type LimitTicket,
  ProviderLimiter,
  parseProviderLimits,
} from '../src/refresher/provider-limits.ts';
import type { AuthClientRecord } from '../src/store/auth-clients.ts';
import type { VaultEvent } from '../src/store/events.ts';
import { VaultStore } from '../src/store/store.ts';
import { type Engine, engines } from './support/databases.ts';

let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

type TestContext = { after(fn: () => Promise<void>): void };

const keyring = new Keyring(parseKeyList(`test:${randomBytes(32).toString('base64')}`));

/** An internal failure whose message must stay in the log: it names a host and a pool. */
const INTERNAL_DETAIL = 'connect ECONNREFUSED 10.20.30.40:5432 (pool vault_internal_primary)';

/** Provider limits whose next `acquire` throws a plain Error, as a bug or a library would. */
class FailingLimiter extends ProviderLimiter {
  failures = 0;
  override acquire(
    providerId: string,
    priority: LimitPriority,
    options: { signal?: AbortSignal | undefined; ticket?: (ticket: LimitTicket) => void } = {},
  ): Promise<LimitSlot> {
    if (this.failures > 0) {
      this.failures--;
      return Promise.reject(new Error(INTERNAL_DETAIL));
    }
    return super.acquire(providerId, priority, options);
  }
}

interface Fixture {
  provider: FakeProvider;
  store: VaultStore;
  tenantId: string;
  authClient: AuthClientRecord;
  service: CredentialService;
  limits: FailingLimiter;
  logs: string[];
  /** Credentials with fresh grants at the provider. */
  seed(count: number): Promise<string[]>;
  events(credentialId: string): Promise<VaultEvent[]>;
}

async function fixture(t: TestContext, engine: Engine): Promise<Fixture> {
  const clientId = `tw-service-${randomBytes(4).toString('hex')}`;
  const clientSecret = `cs-${randomBytes(24).toString('base64url')}`;
  const provider = await startFakeProvider({
    personality: 'strict',
    autoApprove: true,
    requirePkce: false,
    clients: [{ clientId, clientSecret }],
  });
  t.after(() => provider.close());
  const database = await engine.create(t);
  const handle = await database.open();
  const store = new VaultStore(handle.db, keyring, catalog);
  const tenant = await store.tenants.create('service', Date.now());
  const authClient = await store.authClients.create(
    tenant.id,
    {
      name: 'fake provider',
      providerId: 'oauth2',
      clientId,
      clientSecret,
      endpoints: {
        authorizationUrl: provider.authorizationEndpoint,
        tokenUrl: provider.tokenEndpoint,
        revocationUrl: provider.revocationEndpoint,
      },
    },
    Date.now(),
  );
  const logs: string[] = [];
  const logDestination = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      for (const line of chunk.toString().split('\n')) if (line.length > 0) logs.push(line);
      done();
    },
  });
  const parsed = parseProviderLimits('default=50/1000/1000');
  assert.ok(parsed.ok);
  const limits = new FailingLimiter(parsed.limits);
  const service = new CredentialService({
    store,
    logger: createLogger('debug', logDestination),
    instanceId: 'service-test',
    leaseMs: 30_000,
    tokenRequestTimeoutMs: 5_000,
    limits,
    retry: { maxAttempts: 1 },
  });
  return {
    provider,
    store,
    tenantId: tenant.id,
    authClient,
    service,
    limits,
    logs,
    async seed(count) {
      const resolved = await store.authClients.resolve(tenant.id, authClient.id);
      assert.ok(resolved);
      const ids: string[] = [];
      for (const minted of provider.mintGrants({ count, clientId })) {
        const { grant_id: _grant, ...response } = minted;
        const tokens = TokenSet.fromResponse(response, Date.now());
        ids.push((await service.createCredential(tenant.id, resolved, tokens, 'import')).id);
      }
      return ids;
    },
    async events(credentialId) {
      return store.events.list(tenant.id, { limit: 500, credentialId });
    },
  };
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await sleep(5);
  }
}

/** Makes the credential due and claims it as the background refresher would. */
async function claimNow(f: Fixture, id: string) {
  await f.store.db
    .updateTable('credentials')
    .set({ next_refresh_at: Date.now() - 1 })
    .where('id', '=', id)
    .execute();
  const [claim] = await f.store.credentials.claimDue({
    providerId: 'oauth2',
    owner: 'service-test~1',
    now: Date.now(),
    leaseMs: 30_000,
    limit: 10,
  });
  assert.equal(claim?.id, id);
  return claim;
}

async function tokensOf(f: Fixture, id: string): Promise<TokenSet> {
  const current = await f.store.credentials.getWithTokens(f.tenantId, id);
  assert.ok(current, `credential ${id} exists`);
  return current.tokenSet;
}

for (const engine of engines()) {
  describe(`credential service on ${engine.name}`, () => {
    test('regression: a refresh whose credential is deleted before it commits stores nothing, announces nothing, and revokes the rotated token', async (t) => {
      const f = await fixture(t, engine);
      const [id, claimedId] = await f.seed(2);
      assert.ok(id && claimedId);

      // The token endpoint's refresh: the provider rotates the refresh token, then is
      // slow to answer; meanwhile the credential is deleted (as by a delete that took
      // over the refresh's lease after it expired).
      const stale = (await tokensOf(f, id)).accessToken;
      const counters = f.provider.counters();
      f.provider.faults.inject({ kind: 'latency', ms: 300 }, { after: 'after-processing' });
      const refreshing = f.service.accessToken(f.tenantId, id, { staleAccessToken: stale }).then(
        () => assert.fail('the refresh of a deleted credential must not hand out a token'),
        (error: unknown) => error,
      );
      await until('the provider rotated the token', () => {
        return f.provider.counters().refreshes > counters.refreshes;
      });
      assert.equal(await f.store.credentials.delete(f.tenantId, id), true);
      const error = (await refreshing) as { code?: string; message?: string };
      assert.equal(error.code, 'credential_not_found');
      assert.match(error.message ?? '', /was deleted during a refresh/);
      assert.equal(await f.store.credentials.getWithTokens(f.tenantId, id), undefined);
      assert.deepEqual(
        (await f.events(id)).map((event) => event.type),
        ['connected'],
        'no refresh_failed (and so no webhook) for a deleted credential',
      );
      // The refresh token the provider rotated to is not left alive with nobody holding it.
      assert.equal(
        f.provider.counters().revocationRequests,
        counters.revocationRequests + 1,
        'the rotated refresh token is revoked',
      );
      assert.ok(
        f.logs.some((line) => line.includes("the provider's answer was discarded")),
        'the discarded answer is logged',
      );

      // The background refresher's refresh: the same, told as a skipped claim.
      const claim = await claimNow(f, claimedId);
      const refreshes = f.provider.counters().refreshes;
      const deciding = f.service.refreshClaimed(claim);
      await until('the provider rotated the claimed token', () => {
        return f.provider.counters().refreshes > refreshes;
      });
      assert.equal(await f.store.credentials.delete(f.tenantId, claimedId), true);
      const decision = await deciding;
      assert.equal(decision.outcome, 'skipped');
      assert.match(decision.reason, /deleted during the refresh/);
      assert.deepEqual(
        (await f.events(claimedId)).map((event) => event.type),
        ['connected'],
      );
      f.provider.faults.clear();
    });

    test('regression: an unexpected error during a refresh is stored as a fixed message with an error id; the error itself only in the log', async (t) => {
      const f = await fixture(t, engine);
      const [id, claimedId] = await f.seed(2);
      assert.ok(id && claimedId);
      const fixed =
        /^internal error during refresh; see the vault's log \(error id (err_[\w-]+)\)$/;

      // The token endpoint's refresh.
      f.limits.failures = 1;
      const stale = (await tokensOf(f, id)).accessToken;
      await assert.rejects(
        f.service.accessToken(f.tenantId, id, { staleAccessToken: stale }),
        (error: Error) => error.message === INTERNAL_DETAIL,
        'the caller gets the error itself (the API answers it as a generic internal_error)',
      );
      const record = await f.store.credentials.get(f.tenantId, id);
      assert.equal(record?.lastError?.code, 'internal_error');
      const match = fixed.exec(record?.lastError?.message ?? '');
      assert.ok(match, `a fixed message, not the error's own: ${record?.lastError?.message}`);
      const errorId = match[1] as string;
      assert.ok(!record?.lastDecision?.text.includes('10.20.30.40'), 'not in the decision');
      assert.match(
        record?.lastDecision?.text ?? '',
        /internal_error: internal error during refresh/,
      );
      const failed = (await f.events(id)).find((event) => event.type === 'refresh_failed');
      assert.equal(failed?.data.code, 'internal_error');
      assert.equal(failed?.data.message, record?.lastError?.message);
      // The whole error is in the log, under that id.
      const logged = f.logs.map((line) => JSON.parse(line)).find((l) => l.errorId === errorId);
      assert.ok(logged, 'the error is logged with its id');
      assert.equal(logged.credentialId, id);
      assert.equal(logged.err.message, INTERNAL_DETAIL);
      assert.equal(logged.level, 50);

      // The background refresher's refresh: the same.
      const claim = await claimNow(f, claimedId);
      f.limits.failures = 1;
      const decision = await f.service.refreshClaimed(claim);
      assert.equal(decision.outcome, 'backed_off');
      assert.ok(!decision.reason.includes('10.20.30.40'), decision.reason);
      const claimed = await f.store.credentials.get(f.tenantId, claimedId);
      assert.match(claimed?.lastError?.message ?? '', fixed);
      const claimedFailed = (await f.events(claimedId)).find((e) => e.type === 'refresh_failed');
      assert.match(String(claimedFailed?.data.message), fixed);

      // A TokenwardenError's message is written for users: kept as it is.
      f.provider.faults.inject({ kind: 'status', status: 503 }, { times: 1 });
      const now = (await tokensOf(f, id)).accessToken;
      const outage = await f.service.accessToken(f.tenantId, id, { staleAccessToken: now }).then(
        () => assert.fail('the refresh must fail'),
        (error: unknown) => error as { code?: string; message: string },
      );
      assert.equal(outage.code, 'token_endpoint_unavailable');
      const after = await f.store.credentials.get(f.tenantId, id);
      assert.equal(after?.lastError?.code, 'token_endpoint_unavailable');
      assert.ok((after?.lastError?.message ?? '').length > 0);
      assert.doesNotMatch(after?.lastError?.message ?? '', /internal error/);
      assert.ok(
        outage.message.endsWith(after?.lastError?.message ?? '(none)'),
        `${outage.message} ends with ${after?.lastError?.message}`,
      );

      for (const line of f.logs) {
        const parsed = JSON.parse(line);
        if (parsed.errorId === undefined) continue;
        assert.ok(!/access_token|refresh_token/.test(line), 'no token member in the log line');
      }
    });
  });
}
