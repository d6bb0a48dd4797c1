/**
 * The token cache behind the token endpoint's valid-token path
 * (src/store/token-cache.ts): what one process or replica serves from memory
 * follows every change another one commits, on both engines. Two database
 * handles stand for two processes (SQLite: two connections to one file, seen
 * through `PRAGMA data_version`) or two replicas (PostgreSQL: two pools, the
 * change seen through the trigger's NOTIFY); only "here" has a cache.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProviderCatalog, type ProviderCatalog, TokenSet } from '@tokenwarden/oauth';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import { LISTENER_APPLICATION_NAME, PostgresNotifyFeed } from '../src/db/change-feed.ts';
import type { VaultDatabase } from '../src/db/database.ts';
import type { CredentialWithTokens } from '../src/store/credentials.ts';
import { VaultStore } from '../src/store/store.ts';
import { TokenCache } from '../src/store/token-cache.ts';
import { engines, withPostgresClient } from './support/databases.ts';

const T0 = 1_700_000_000_000;
let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

function tokens(): TokenSet {
  return TokenSet.fromResponse(
    {
      access_token: `at-${randomBytes(12).toString('base64url')}`,
      token_type: 'Bearer',
      refresh_token: `rt-${randomBytes(12).toString('base64url')}`,
      expires_in: 3600,
    },
    Date.now(),
  );
}

/** Polls `read` until `accept` holds, at most `ms`: a change from elsewhere arrives asynchronously. */
async function eventually<T>(
  read: () => Promise<T>,
  accept: (value: T) => boolean,
  what: string,
  ms = 3_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await read();
    if (accept(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not seen within ${ms} ms`);
    await sleep(5);
  }
}

async function setup(
  t: { after(fn: () => Promise<void>): void },
  engine: ReturnType<typeof engines>[number],
) {
  const database = await engine.create(t);
  const [hereDb, elsewhereDb] = [await database.open(), await database.open()] as [
    VaultDatabase,
    VaultDatabase,
  ];
  const keyring = new Keyring(parseKeyList(`k1:${randomBytes(32).toString('base64')}`));
  const cache = new TokenCache({ maxEntries: 100, maxAgeMs: 3_600_000 });
  const feed = hereDb.changeFeed();
  cache.attach(feed);
  t.after(() => cache.stop());
  if (feed instanceof PostgresNotifyFeed) await feed.ready();
  const here = new VaultStore(hereDb.db, keyring, catalog, { tokenCache: cache });
  const elsewhere = new VaultStore(elsewhereDb.db, keyring, catalog);
  const tenant = await here.tenants.create('acme', T0);
  const authClient = await here.authClients.create(
    tenant.id,
    {
      name: 'Outlook',
      providerId: 'microsoft',
      clientId: 'client-1',
      clientSecret: `cs-${randomBytes(12).toString('base64url')}`,
      scopes: ['offline_access'],
    },
    T0,
  );
  const newCredential = async () => {
    const first = tokens();
    const record = await elsewhere.credentials.create(
      {
        id: `cr_${randomBytes(12).toString('base64url')}`,
        tenantId: tenant.id,
        authClientId: authClient.id,
        tokenSet: first,
        flags: {},
        nextRefreshAt: null,
      },
      T0,
    );
    return { id: record.id, first };
  };
  const serve = (id: string) => here.credentials.getServing(tenant.id, id);
  /** Writes a new token set through `store` (compare-and-set on the current version). */
  const rotate = async (store: VaultStore, id: string): Promise<TokenSet> => {
    const next = tokens();
    const current = await store.credentials.getWithTokens(tenant.id, id);
    assert.ok(current);
    const saved = await store.db
      .transaction()
      .execute((trx) =>
        store.credentials.saveTokens(
          trx,
          id,
          current.version,
          next,
          { refreshed: true, nextRefreshAt: null },
          T0,
        ),
      );
    assert.equal(saved, true);
    return next;
  };
  return { cache, feed, here, elsewhere, tenant, newCredential, serve, rotate };
}

const accessTokenOf = (value: CredentialWithTokens | undefined) => value?.tokenSet.accessToken;

for (const engine of engines()) {
  describe(`${engine.name}: token cache`, () => {
    test('serves from memory, and follows a change made elsewhere', async (t) => {
      const s = await setup(t, engine);
      const { id, first } = await s.newCredential();
      assert.equal(accessTokenOf(await s.serve(id)), first.accessToken);
      const before = s.cache.lookups.hit;
      assert.equal(accessTokenOf(await s.serve(id)), first.accessToken);
      assert.equal(s.cache.lookups.hit, before + 1, 'the second read is a hit');

      const second = await s.rotate(s.elsewhere, id);
      await eventually(
        () => s.serve(id),
        (value) => accessTokenOf(value) === second.accessToken,
        'a token set rotated elsewhere',
      );
      // And it is cached again.
      const hits = s.cache.lookups.hit;
      assert.equal(accessTokenOf(await s.serve(id)), second.accessToken);
      assert.equal(s.cache.lookups.hit, hits + 1);
    });

    test('a status change and a deletion elsewhere are followed', async (t) => {
      const s = await setup(t, engine);
      const { id } = await s.newCredential();
      await s.serve(id);
      await s.elsewhere.credentials.setStatus(undefined, id, 'reauth_required', 'revoked', T0);
      await eventually(
        () => s.serve(id),
        (value) => value?.record.status === 'reauth_required',
        'a status set elsewhere',
      );
      assert.equal(await s.elsewhere.credentials.delete(s.tenant.id, id), true);
      await eventually(
        () => s.serve(id),
        (value) => value === undefined,
        'a deletion elsewhere',
      );
    });

    test("this process's own writes are seen at once", async (t) => {
      const s = await setup(t, engine);
      const { id } = await s.newCredential();
      await s.serve(id);
      const next = await s.rotate(s.here, id);
      assert.equal(accessTokenOf(await s.serve(id)), next.accessToken);
      await s.here.credentials.setStatus(undefined, id, 'revoked', 'deleted by a test', T0);
      assert.equal((await s.serve(id))?.record.status, 'revoked');
      assert.equal(await s.here.credentials.delete(s.tenant.id, id), true);
      assert.equal(await s.serve(id), undefined);
    });

    test('another tenant cannot read a cached credential', async (t) => {
      const s = await setup(t, engine);
      const { id } = await s.newCredential();
      await s.serve(id);
      const other = await s.here.tenants.create('other', T0);
      assert.equal(await s.here.credentials.getServing(other.id, id), undefined);
      assert.ok(await s.serve(id), 'still served to its own tenant');
    });

    test('what is served cannot be modified by its reader', async (t) => {
      const s = await setup(t, engine);
      const { id } = await s.newCredential();
      await s.serve(id);
      const cached = await s.serve(id);
      assert.ok(cached !== undefined && Object.isFrozen(cached) && Object.isFrozen(cached.record));
    });
  });
}

describe('postgres: the change listener', () => {
  test('while it is down nothing is served from memory; after it reconnects, changes made meanwhile are seen', async (t) => {
    const postgres = engines()[1];
    assert.ok(postgres);
    const s = await setup(t, postgres);
    assert.ok(s.feed instanceof PostgresNotifyFeed);
    const { id, first } = await s.newCredential();
    await s.serve(id);
    assert.equal(accessTokenOf(await s.serve(id)), first.accessToken);

    // Kill this test's listener (its backend listens; other tests' listeners run in other files).
    const killed = await withPostgresClient(async (client) => {
      const { rows } = await client.query<{ pid: number }>(
        `select pid from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()`,
        [LISTENER_APPLICATION_NAME],
      );
      for (const row of rows) await client.query('select pg_terminate_backend($1)', [row.pid]);
      return rows.length;
    });
    assert.ok(killed >= 1, 'the listener was found by its application_name');
    await eventually(
      async () => s.feed.live,
      (live) => !live,
      'the feed noticing its connection is gone',
    );
    const bypassed = s.cache.lookups.bypass;
    await s.serve(id);
    assert.equal(s.cache.lookups.bypass, bypassed + 1, 'read from the database while down');

    const second = await s.rotate(s.elsewhere, id);
    await s.feed.ready(10_000);
    assert.equal(accessTokenOf(await s.serve(id)), second.accessToken);
    const hits = s.cache.lookups.hit;
    assert.equal(accessTokenOf(await s.serve(id)), second.accessToken);
    assert.equal(s.cache.lookups.hit, hits + 1, 'served from memory again');
  });
});
