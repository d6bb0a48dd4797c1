/**
 * The caches that keep the valid-token path light (bench/s2-token-api.ts): the
 * API key lookup cache (a revocation through this process takes effect at once,
 * one through another replica within API_KEY_CACHE_MS; a different secret under
 * a cached id is checked against the database) and SQLite's prepared-statement
 * cache. On both engines (the statement cache: SQLite only).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sql } from 'kysely';
import { API_KEY_CACHE_MS, TenantRepository } from '../src/store/tenants.ts';
import { engines } from './support/databases.ts';

const T0 = 1_700_000_000_000;

for (const engine of engines()) {
  describe(`${engine.name}: API key cache`, () => {
    test('a revocation through this process takes effect at once', async (t) => {
      const database = await engine.create(t);
      const handle = await database.open();
      const tenants = new TenantRepository(handle.db);
      const tenant = await tenants.create('acme', T0);
      const { id, key } = await tenants.createApiKey(tenant.id, 'ci', false, T0);
      assert.equal((await tenants.authenticate(key, T0 + 1))?.id, id);
      assert.equal((await tenants.authenticate(key, T0 + 2))?.id, id, 'served from the cache');
      assert.equal(await tenants.revokeApiKey(tenant.id, id, T0 + 3), true);
      assert.equal(await tenants.authenticate(key, T0 + 4), undefined);
    });

    test('a revocation through another replica takes effect within API_KEY_CACHE_MS', async (t) => {
      const database = await engine.create(t);
      const handle = await database.open();
      const here = new TenantRepository(handle.db);
      const elsewhere = new TenantRepository(handle.db);
      const tenant = await here.create('acme', T0);
      const { id, key } = await here.createApiKey(tenant.id, 'ci', false, T0);
      assert.equal((await here.authenticate(key, T0))?.id, id);
      assert.equal(await elsewhere.revokeApiKey(tenant.id, id, T0 + 1), true);
      assert.equal((await here.authenticate(key, T0 + 2))?.id, id, 'still cached here');
      assert.equal(await here.authenticate(key, T0 + API_KEY_CACHE_MS), undefined);
      assert.equal(await here.authenticate(key, T0 + API_KEY_CACHE_MS + 1), undefined);
    });

    test('the cache holds only successes; a wrong secret under a cached id is refused', async (t) => {
      const database = await engine.create(t);
      const handle = await database.open();
      const tenants = new TenantRepository(handle.db);
      const tenant = await tenants.create('acme', T0);
      const { id, key } = await tenants.createApiKey(tenant.id, 'ci', false, T0);
      assert.equal((await tenants.authenticate(key, T0))?.id, id);
      const last = key.at(-1) === 'A' ? 'B' : 'A';
      assert.equal(await tenants.authenticate(`${key.slice(0, -1)}${last}`, T0 + 1), undefined);
      assert.equal((await tenants.authenticate(key, T0 + 2))?.id, id);
      // The principal handed to requests cannot be changed by one of them.
      const principal = await tenants.authenticate(key, T0 + 3);
      assert.ok(principal !== undefined && Object.isFrozen(principal));
    });
  });
}

describe('sqlite: prepared-statement cache', () => {
  const sqlite = engines()[0];
  test('repeated and streamed queries give the same rows', async (t) => {
    if (sqlite === undefined) throw new Error('no sqlite engine');
    const database = await sqlite.create(t);
    const handle = await database.open();
    const tenants = new TenantRepository(handle.db);
    for (let i = 0; i < 5; i++) await tenants.create(`t${i}`, T0 + i);
    for (let i = 0; i < 3; i++) assert.equal((await tenants.list()).length, 5);

    // Kysely's SQLite driver runs one query at a time, so a cached statement is never
    // asked for while it streams; the same SQL streamed, then executed, still works.
    const query = handle.db.selectFrom('tenants').select('name').orderBy('created_at');
    const names: string[] = [];
    for await (const row of query.stream()) names.push(row.name);
    assert.deepEqual(names, ['t0', 't1', 't2', 't3', 't4']);
    assert.equal((await query.execute()).length, 5);
    const count = await sql<{ n: number }>`select count(*) as n from tenants`.execute(handle.db);
    assert.equal(Number(count.rows[0]?.n), 5);
  });
});
