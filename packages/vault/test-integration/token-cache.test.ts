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
import { PostgresNotifyFeed } from '../src/db/change-feed.ts';
import type { VaultDatabase } from '../src/db/database.ts';
import type { CredentialWithTokens } from '../src/store/credentials.ts';
import { VaultStore } from '../src/store/store.ts';
import { TokenCache } from '../src/store/token-cache.ts';
import { engines, POSTGRES_URL, withPostgresClient } from './support/databases.ts';

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
  const feed = hereDb.changeFeed({
    applicationName: `tw-test-feed-${randomBytes(4).toString('hex')}`,
  });
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
  return { cache, feed, hereDb, here, elsewhere, keyring, tenant, newCredential, serve, rotate };
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
  const postgres = () => {
    const engine = engines()[1];
    assert.ok(engine);
    return engine;
  };

  test('while it is down nothing is served from memory; once it is back, a change made meanwhile is seen', async (t) => {
    const s = await setup(t, postgres());
    assert.ok(s.feed instanceof PostgresNotifyFeed);
    const { id, first } = await s.newCredential();
    await s.serve(id);
    assert.equal(accessTokenOf(await s.serve(id)), first.accessToken);

    // Cut this feed's own connection (no other process's).
    const pid = s.feed.backendPid;
    assert.ok(pid !== undefined);
    await withPostgresClient((client) => client.query('select pg_terminate_backend($1)', [pid]));
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

  test('a listener that hears nothing (a pooler that drops LISTEN, a dead connection) never goes live, or goes down', async (t) => {
    const database = await postgres().create(t);
    await database.open(); // migrated: the schema exists
    // The probe never reaches the listener: like PgBouncer in transaction mode.
    const deaf = new PostgresNotifyFeed({
      connectionString: POSTGRES_URL,
      schema: database.databaseSchema,
      notify: async () => undefined,
      probeTimeoutMs: 300,
    });
    const deafCache = new TokenCache({ maxEntries: 10, maxAgeMs: 60_000 });
    deafCache.attach(deaf);
    t.after(() => deafCache.stop());
    await assert.rejects(deaf.ready(1_500), /not live/);
    assert.equal(deafCache.feedLive, false);

    // Hears, then stops hearing: down within a probe period and its timeout.
    let deliver = true;
    const flaky = new PostgresNotifyFeed({
      connectionString: POSTGRES_URL,
      schema: database.databaseSchema,
      notify: async (channel, payload) => {
        if (deliver)
          await withPostgresClient((client) =>
            client.query('select pg_notify($1, $2)', [channel, payload]),
          );
      },
      probeEveryMs: 100,
      probeTimeoutMs: 300,
    });
    const flakyCache = new TokenCache({ maxEntries: 10, maxAgeMs: 60_000 });
    flakyCache.attach(flaky);
    t.after(() => flakyCache.stop());
    await flaky.ready(5_000);
    deliver = false;
    await eventually(
      async () => flaky.live,
      (live) => !live,
      'the feed going down when its probe is lost',
    );
    assert.equal(flakyCache.feedLive, false);
    deliver = true;
    await flaky.ready(10_000);
  });

  test("a token call racing this replica's own write, before its commit, does not keep the old row", async (t) => {
    const s = await setup(t, postgres());
    // No feed at all: only the write window can keep the old row out.
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 3_600_000 });
    const here = new VaultStore(s.hereDb.db, s.keyring, catalog, { tokenCache: cache });
    const { id } = await s.newCredential();
    await here.credentials.getServing(s.tenant.id, id);
    const next = tokens();
    await here.db.transaction().execute(async (trx) => {
      const current = await here.credentials.getWithTokens(s.tenant.id, id);
      assert.ok(current);
      assert.equal(
        await here.credentials.saveTokens(
          trx,
          id,
          current.version,
          next,
          { refreshed: true, nextRefreshAt: null },
          T0,
        ),
        true,
      );
      // Another pool connection, before the commit: the old row.
      const during = await here.credentials.getServing(s.tenant.id, id);
      assert.notEqual(accessTokenOf(during), next.accessToken);
    });
    assert.equal(
      accessTokenOf(await here.credentials.getServing(s.tenant.id, id)),
      next.accessToken,
      'after the commit the new token set, not the row read before it',
    );
  });
});
