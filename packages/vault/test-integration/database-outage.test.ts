/**
 * A refresh whose provider answer arrives while the database does not answer
 * (bench/r3-database-restart.ts): the answer, with a single-use refresh token
 * already spent, is stored once the database is back, within the lease; any
 * other failure is not retried; and the retries stop before the lease ends.
 *
 * The database outage is simulated at the one place it matters: the transaction
 * that stores the refreshed token set fails with node-postgres's words for a
 * dropped connection a given number of times. The provider is the fake one with
 * the `strict` personality, so a refresh token presented twice would revoke the grant.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  loadProviderCatalog,
  type ProviderCatalog,
  type TokenResponse,
  TokenSet,
} from '@tokenwarden/oauth';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import { CredentialService } from '../src/credential-service.ts';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import { isDatabaseDown } from '../src/errors.ts';
import { createLogger } from '../src/logger.ts';
import { VaultStore } from '../src/store/store.ts';
import { engines } from './support/databases.ts';

let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

const keyring = new Keyring(parseKeyList(`test:${randomBytes(32).toString('base64')}`));
const CLIENT = { clientId: 'outage-client', clientSecret: `cs-${randomBytes(16).toString('hex')}` };

type TestContext = { after(fn: () => Promise<void>): void };

interface Setup {
  provider: FakeProvider;
  store: VaultStore;
  service: CredentialService;
  tenantId: string;
  credentialId: string;
  /** Makes the next `n` transactions after a provider answer fail with `error`. */
  failCommits(n: number, error: () => Error): void;
  transactionsFailed(): number;
}

async function setup(t: TestContext, leaseMs = 30_000): Promise<Setup> {
  const sqlite = engines()[0];
  if (sqlite === undefined) throw new Error('no sqlite engine');
  const provider = await startFakeProvider({
    personality: 'strict',
    autoApprove: true,
    requirePkce: false,
    clients: [CLIENT],
  });
  t.after(() => provider.close());
  const database = await sqlite.create(t);
  const handle = await database.open();
  const store = new VaultStore(handle.db, keyring, catalog);
  const tenant = await store.tenants.create('outage', Date.now());
  const authClient = await store.authClients.create(
    tenant.id,
    {
      name: 'fake provider',
      providerId: 'oauth2',
      ...CLIENT,
      endpoints: {
        authorizationUrl: provider.authorizationEndpoint,
        tokenUrl: provider.tokenEndpoint,
      },
    },
    Date.now(),
  );
  const resolved = await store.authClients.resolve(tenant.id, authClient.id);
  assert.ok(resolved);

  // The service sees a database whose transactions fail while `failing` > 0, armed
  // only once the provider has answered a refresh.
  let armed = 0;
  let failing = 0;
  let failed = 0;
  let makeError: () => Error = () => new Error('Connection terminated unexpectedly');
  const db = new Proxy(store.db, {
    get(target, property, receiver) {
      if (property !== 'transaction') return Reflect.get(target, property, receiver);
      return () => {
        const builder = target.transaction();
        return new Proxy(builder, {
          get(inner, name, innerReceiver) {
            if (name !== 'execute') return Reflect.get(inner, name, innerReceiver);
            return async (...args: Parameters<typeof builder.execute>) => {
              if (failing > 0) {
                failing--;
                failed++;
                throw makeError();
              }
              return inner.execute(...args);
            };
          },
        });
      };
    },
  });
  const outageStore = new Proxy(store, {
    get(target, property, receiver) {
      return property === 'db' ? db : Reflect.get(target, property, receiver);
    },
  });
  const refreshFetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    const body = await response.arrayBuffer();
    failing = armed;
    armed = 0;
    return new Response(body, { status: response.status, headers: response.headers });
  };
  const service = new CredentialService({
    store: outageStore,
    logger: createLogger('silent'),
    instanceId: 'outage-test',
    leaseMs,
    tokenRequestTimeoutMs: 5_000,
    fetch: refreshFetch,
  });
  const tokens = TokenSet.fromResponse(await grant(provider), Date.now());
  const credential = await service.createCredential(tenant.id, resolved, tokens, 'import');
  return {
    provider,
    store,
    service,
    tenantId: tenant.id,
    credentialId: credential.id,
    failCommits(n, error) {
      armed = n;
      makeError = error;
    },
    transactionsFailed: () => failed,
  };
}

describe('a refresh answer that meets a database outage', () => {
  test('is stored once the database answers again; the rotated refresh token is kept', async (t) => {
    const s = await setup(t);
    const before = await s.store.credentials.getWithTokens(s.tenantId, s.credentialId);
    s.failCommits(3, () => new Error('Connection terminated unexpectedly'));
    await s.service.forceRefresh(s.tenantId, s.credentialId);
    assert.equal(s.transactionsFailed(), 3);
    const after = await s.store.credentials.getWithTokens(s.tenantId, s.credentialId);
    assert.ok(before && after);
    assert.notEqual(after.tokenSet.refreshToken, before.tokenSet.refreshToken);
    assert.equal(after.record.status, 'active');
    assert.equal(after.leaseOwner, null, 'the lease is released by the commit');
    // The stored refresh token is the one the provider issued: it refreshes again.
    await s.service.forceRefresh(s.tenantId, s.credentialId);
    const counters = s.provider.counters();
    assert.equal(counters.refreshes, 2);
    assert.equal(counters.invalidGrants, 0);
    assert.equal(counters.reusedRefreshTokens, 0);
  });

  test('any other failure of the commit is not retried', async (t) => {
    const s = await setup(t);
    s.failCommits(1, () => new Error('boom'));
    await assert.rejects(s.service.forceRefresh(s.tenantId, s.credentialId), /boom/);
    assert.equal(s.transactionsFailed(), 1);
  });

  test('the retries stop before the lease ends', async (t) => {
    // Lease 2.5 s: the commit may be retried for 0.5 s (the lease minus a 2-s margin).
    const s = await setup(t, 2_500);
    s.failCommits(1_000, () =>
      Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    );
    const started = Date.now();
    await assert.rejects(s.service.forceRefresh(s.tenantId, s.credentialId), /ECONNREFUSED/);
    const took = Date.now() - started;
    assert.ok(took < 2_500, `gave up after ${took} ms`);
    assert.ok(s.transactionsFailed() >= 2 && s.transactionsFailed() < 10);
  });

  test('node-postgres errors for a dropped connection count as the database being down', () => {
    assert.equal(isDatabaseDown(new Error('Connection terminated unexpectedly')), true);
    assert.equal(
      isDatabaseDown(new Error('Client has encountered a connection error and is not queryable')),
      true,
    );
    assert.equal(isDatabaseDown(Object.assign(new Error('x'), { code: '57P01' })), true);
    assert.equal(isDatabaseDown(new Error('duplicate key value')), false);
  });
});

async function grant(provider: FakeProvider): Promise<TokenResponse> {
  const redirectUri = 'http://127.0.0.1/callback';
  const authorize = new URL(provider.authorizationEndpoint);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT.clientId,
    redirect_uri: redirectUri,
    state: randomBytes(8).toString('hex'),
  }).toString();
  const answer = await fetch(authorize, { redirect: 'manual' });
  const location = answer.headers.get('location');
  await answer.arrayBuffer();
  const code = location === null ? null : new URL(location).searchParams.get('code');
  assert.ok(code, `no code from the fake provider (${answer.status})`);
  const token = await fetch(provider.tokenEndpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT.clientId}:${CLIENT.clientSecret}`).toString('base64')}`,
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
