/**
 * Holders' liveness on PostgreSQL (src/db/holder-liveness.ts): the refresh leases
 * of a process whose liveness lock is released are ended at once and taken over,
 * long before they would expire; a live holder's are not, nor are any when the
 * watcher's own session ends (a database restart). Leases here last a minute, so
 * a takeover within seconds can only come from the liveness lock.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { loadProviderCatalog, type ProviderCatalog, TokenSet } from '@tokenwarden/oauth';
import { sql } from 'kysely';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import type { HolderLiveness, HolderLivenessOptions } from '../src/db/holder-liveness.ts';
import { VaultStore } from '../src/store/store.ts';
import { baseEnvironment, killChild, spawnReady } from './support/children.ts';
import { engines, type TestDatabase, withPostgresClient } from './support/databases.ts';

const LEASE_MS = 60_000;
const LEASE_HOLDER = join(fileURLToPath(new URL('.', import.meta.url)), 'support/lease-holder.ts');

let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

const postgres = () => {
  const engine = engines()[1];
  assert.ok(engine);
  return engine;
};

/** Polls `check` until it is true, at most `ms`; resolves to the time it took. */
async function within(ms: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(20);
  }
}

type Ended = { holder: number; owners: string[] };

/** One "process": a database handle, its liveness (started, verified) and a store stamping leases with it. */
async function process_(
  t: { after(fn: () => Promise<void>): void },
  database: TestDatabase,
  options: Partial<HolderLivenessOptions> = {},
): Promise<{ store: VaultStore; liveness: HolderLiveness; ended: Ended[] }> {
  const handle = await database.open();
  const ended: Ended[] = [];
  let store: VaultStore | undefined;
  const liveness = handle.holderLiveness({
    pollMs: 50,
    endLeases: (holder, namespaceKey) => {
      assert.ok(store);
      return store.credentials.endLeasesOfHolder(holder, namespaceKey, Date.now());
    },
    onEnded: (holder, owners) => ended.push({ holder, owners }),
    ...options,
  });
  assert.ok(liveness, 'PostgreSQL has a liveness lock');
  const keyring = new Keyring(parseKeyList(`k1:${randomBytes(32).toString('base64')}`));
  store = new VaultStore(handle.db, keyring, catalog, { leaseHolder: () => liveness.holder() });
  liveness.start();
  t.after(() => liveness.stop());
  await liveness.ready();
  return { store, liveness, ended };
}

async function newCredential(store: VaultStore): Promise<string> {
  const now = Date.now();
  const tenant = await store.tenants.create(`acme-${randomBytes(3).toString('hex')}`, now);
  const authClient = await store.authClients.create(
    tenant.id,
    {
      name: 'Outlook',
      providerId: 'microsoft',
      clientId: 'client-1',
      clientSecret: `cs-${randomBytes(12).toString('base64url')}`,
      scopes: ['offline_access'],
    },
    now,
  );
  const record = await store.credentials.create(
    {
      id: `cr_${randomBytes(12).toString('base64url')}`,
      tenantId: tenant.id,
      authClientId: authClient.id,
      tokenSet: TokenSet.fromResponse(
        { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt', expires_in: 3600 },
        now,
      ),
      flags: {},
      nextRefreshAt: null,
    },
    now,
  );
  return record.id;
}

const leaseOf = (store: VaultStore, id: string) =>
  store.db
    .selectFrom('credentials')
    .select(['lease_owner', 'lease_until', 'lease_holder'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();

describe('postgres: holders’ liveness', () => {
  test('a SIGKILLed process’s lease is ended within seconds (not its minute) and taken over; a live holder’s is not', async (t) => {
    const database = await postgres().create(t);
    const watcher = await process_(t, database);
    const id = await newCredential(watcher.store);

    const child = await spawnReady('lease-holder', [LEASE_HOLDER], {
      ...baseEnvironment(),
      ...database.env,
      LEASE_CREDENTIAL_ID: id,
      LEASE_OWNER: 'doomed~1',
      LEASE_MS: String(LEASE_MS),
    });
    t.after(() => killChild(child));
    assert.equal(child.info.acquired, true);
    const holder = child.info.holder;
    assert.equal(typeof holder, 'number');
    assert.equal((await leaseOf(watcher.store, id)).lease_holder, holder, 'the lease is stamped');

    // Alive: several polls later the lease is still its holder's.
    await sleep(400);
    const refused = await watcher.store.credentials.tryAcquireLease(
      id,
      'watcher',
      Date.now(),
      LEASE_MS,
    );
    assert.equal(refused.acquired, false);
    assert.deepEqual(watcher.ended, []);

    await killChild(child);
    const tookMs = await within(3_000, 'the dead holder’s lease taken over', async () => {
      const lease = await watcher.store.credentials.tryAcquireLease(
        id,
        'watcher',
        Date.now(),
        LEASE_MS,
      );
      if (lease.acquired) {
        assert.deepEqual(lease, { acquired: true, takenOver: true, previousOwner: 'doomed~1' });
      }
      return lease.acquired;
    });
    assert.ok(tookMs < 3_000);
    assert.deepEqual(watcher.ended, [{ holder, owners: ['doomed~1'] }]);
    const taken = await leaseOf(watcher.store, id);
    assert.equal(taken.lease_owner, 'watcher');
    assert.equal(taken.lease_holder, watcher.liveness.holder());
  });

  test('the background claim takes a dead holder’s lease as abandoned, and records whose it was', async (t) => {
    const database = await postgres().create(t);
    const doomed = await process_(t, database);
    const watcher = await process_(t, database);
    await sleep(200); // each has seen the other
    const id = await newCredential(watcher.store);
    const claimed = await doomed.store.credentials.claimDue({
      providerId: 'microsoft',
      owner: 'doomed~2',
      now: Date.now(),
      leaseMs: LEASE_MS,
      limit: 10,
    });
    assert.deepEqual(
      claimed.map((claim) => claim.id),
      [],
      'not due: nothing claimed',
    );
    assert.equal(
      (await doomed.store.credentials.tryAcquireLease(id, 'doomed~2', Date.now(), LEASE_MS))
        .acquired,
      true,
    );
    const holder = doomed.liveness.holder();
    await doomed.liveness.stop();
    await within(3_000, 'the lease ended', async () => watcher.ended.length > 0);
    assert.deepEqual(watcher.ended, [{ holder, owners: ['doomed~2'] }]);
    const [claim] = await watcher.store.credentials.claimDue({
      providerId: 'microsoft',
      owner: 'watcher~1',
      now: Date.now(),
      leaseMs: LEASE_MS,
      limit: 10,
    });
    assert.equal(claim?.id, id);
    assert.equal(claim?.takenOverFrom, 'doomed~2');
  });

  test('a lease taken without a verified lock (none, or a pooler’s) is not stamped and only expires', async (t) => {
    const database = await postgres().create(t);
    const watcher = await process_(t, database);
    const id = await newCredential(watcher.store);
    const handle = await database.open();
    const keyring = new Keyring(parseKeyList(`k1:${randomBytes(32).toString('base64')}`));
    const unstamped = new VaultStore(handle.db, keyring, catalog);
    assert.equal(
      (await unstamped.credentials.tryAcquireLease(id, 'plain', Date.now(), LEASE_MS)).acquired,
      true,
    );
    assert.equal((await leaseOf(watcher.store, id)).lease_holder, null);
    // Another process comes and goes meanwhile: only its own leases would end.
    const other = await process_(t, database);
    await sleep(200); // seen by the watcher
    await other.liveness.stop();
    await within(3_000, 'the other process seen gone', async () => watcher.ended.length > 0);
    assert.deepEqual(watcher.ended[0]?.owners, []);
    const lease = await watcher.store.credentials.tryAcquireLease(
      id,
      'watcher',
      Date.now(),
      LEASE_MS,
    );
    assert.equal(lease.acquired, false);
  });

  test('a holder’s leases are not ended while its lock is held (checked in the ending transaction)', async (t) => {
    const database = await postgres().create(t);
    const holding = await process_(t, database);
    const id = await newCredential(holding.store);
    assert.equal(
      (await holding.store.credentials.tryAcquireLease(id, 'holding~1', Date.now(), LEASE_MS))
        .acquired,
      true,
    );
    const holder = holding.liveness.holder();
    assert.ok(holder !== null);
    const { rows } = await sql<{
      oid: number;
    }>`select 'credentials'::regclass::oid::int8 as oid`.execute(holding.store.db);
    const oid = rows[0]?.oid;
    assert.ok(oid !== undefined);
    const namespaceKey = oid | 0; // as the lock takes it (int4)
    // A watcher acting on a stale observation (the holder came back with its number).
    assert.equal(
      await holding.store.credentials.endLeasesOfHolder(holder, namespaceKey, Date.now()),
      undefined,
    );
    assert.equal((await leaseOf(holding.store, id)).lease_owner, 'holding~1');
    await holding.liveness.stop();
    assert.deepEqual(
      await holding.store.credentials.endLeasesOfHolder(holder, namespaceKey, Date.now()),
      ['holding~1'],
    );
  });

  test('a database restart ends no lease: the watcher forgets the holders it saw when its own session ends', async (t) => {
    const database = await postgres().create(t);
    // The holder comes back slowly, the watcher at once: a watcher that remembered
    // the holder across its own reconnect would see its lock free for many polls.
    const holding = await process_(t, database, { retryMs: 1_000 });
    const watcher = await process_(t, database, { retryMs: 20 });
    const id = await newCredential(watcher.store);
    assert.equal(
      (await holding.store.credentials.tryAcquireLease(id, 'holding~1', Date.now(), LEASE_MS))
        .acquired,
      true,
    );
    const holder = holding.liveness.holder();
    await sleep(200); // the watcher has seen the holder's lock
    const pids = [holding.liveness.backendPid, watcher.liveness.backendPid];
    assert.ok(pids.every((pid) => pid !== undefined));
    // Both sessions end at once, as when PostgreSQL restarts.
    await withPostgresClient((client) =>
      client.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [pids]),
    );
    await within(5_000, 'both locks held again, on new sessions', async () => {
      const back = holding.liveness.holder() !== null && watcher.liveness.holder() !== null;
      return (
        back && holding.liveness.backendPid !== pids[0] && watcher.liveness.backendPid !== pids[1]
      );
    });
    assert.equal(holding.liveness.holder(), holder, 'the holder took its number back');
    await sleep(300);
    assert.deepEqual(watcher.ended, []);
    const lease = await watcher.store.credentials.tryAcquireLease(
      id,
      'watcher',
      Date.now(),
      LEASE_MS,
    );
    assert.equal(lease.acquired, false, 'the lease is still the holder’s');
  });
});

describe('sqlite: holders’ liveness', () => {
  test('there is none: leases only expire', async (t) => {
    const engine = engines()[0];
    assert.ok(engine);
    const database = await engine.create(t);
    const handle = await database.open();
    assert.equal(handle.holderLiveness({ endLeases: async () => [] }), undefined);
  });
});
