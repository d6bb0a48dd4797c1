/**
 * The vault's storage on both engines (SQLite in a temp folder, PostgreSQL in a
 * schema of its own per test): migrations, tenants and API keys, auth clients
 * with encrypted secrets, credentials with compare-and-set writes and
 * transactional events, the refresh lease under concurrency, single-use connect
 * states, event paging, and key rotation, including rotation while a vault
 * serves tokens from the same data folder.
 *
 * PostgreSQL must be reachable (127.0.0.1:5432); without it the PostgreSQL half
 * fails with a message saying so.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProviderCatalog, type ProviderCatalog, TokenSet } from '@tokenwarden/oauth';
import { sql, type Transaction } from 'kysely';
import { loadConfig } from '../src/config.ts';
import {
  KEY_FILE_NAME,
  Keyring,
  KeyringError,
  KeyringHolder,
  loadKeyring,
  parseKeyList,
} from '../src/crypto/keyring.ts';
import type { VaultDatabase } from '../src/db/database.ts';
import type { Database } from '../src/db/schema.ts';
import { rotateKeys } from '../src/rotate-keys.ts';
import { startVault } from '../src/server.ts';
import type { AuthClientInput, AuthClientRecord } from '../src/store/auth-clients.ts';
import type { CredentialRecord } from '../src/store/credentials.ts';
import { sha256Hex } from '../src/store/ids.ts';
import { VaultStore } from '../src/store/store.ts';
import { DEFAULT_TENANT_ID } from '../src/store/tenants.ts';
import { type Engine, engines, postgresTables, type TestDatabase } from './support/databases.ts';

let catalog: ProviderCatalog;
before(async () => {
  catalog = await loadProviderCatalog();
});

const T0 = 1_700_000_000_000;

interface Fixture {
  database: TestDatabase;
  handle: VaultDatabase;
  store: VaultStore;
  cipher: KeyringHolder;
  tenantId: string;
}

type TestContext = { after(fn: () => Promise<void>): void };

/** A fresh database on `engine`, a key file in its data folder, a store and a tenant. */
async function fixture(
  t: TestContext,
  engine: Engine,
  options: { poolSize?: number } = {},
): Promise<Fixture> {
  const database = await engine.create(t);
  const handle = await database.open(options);
  const cipher = await fileCipher(database.dataDir);
  const store = new VaultStore(handle.db, cipher, catalog);
  const tenant = await store.tenants.create('acme', T0);
  return { database, handle, store, cipher, tenantId: tenant.id };
}

async function fileCipher(dataDir: string): Promise<KeyringHolder> {
  const { keyring } = await loadKeyring({ masterKeys: undefined, dataDir });
  return new KeyringHolder(keyring, join(dataDir, KEY_FILE_NAME));
}

function authClientInput(clientSecret: string, overrides: Partial<AuthClientInput> = {}) {
  return {
    name: 'Outlook',
    providerId: 'microsoft',
    clientId: 'client-1',
    clientSecret,
    scopes: ['offline_access', 'Mail.Read'],
    endpoints: {
      authorizationUrl: 'http://127.0.0.1:9/authorize',
      tokenUrl: 'http://127.0.0.1:9/token',
    },
    ...overrides,
  } satisfies AuthClientInput;
}

function secret(label: string): string {
  return `${label}-${randomBytes(18).toString('base64url')}`;
}

function tokenSet(now = T0, overrides: Record<string, unknown> = {}): TokenSet {
  return TokenSet.fromResponse(
    {
      access_token: secret('at'),
      token_type: 'Bearer',
      refresh_token: secret('rt'),
      expires_in: 3600,
      scope: 'offline_access Mail.Read',
      ...overrides,
    },
    now,
  );
}

/** The client secret a resolved auth client would send (client_secret_post puts it in the body). */
async function sentClientSecret(
  store: VaultStore,
  tenantId: string,
  id: string,
): Promise<string | null> {
  const resolved = await store.authClients.resolve(tenantId, id);
  assert.ok(resolved, 'the auth client resolves');
  const body = new URLSearchParams();
  await resolved.client.clientAuth(resolved.client.as, resolved.client.client, body, new Headers());
  return body.get('client_secret');
}

async function credential(
  f: Fixture,
  authClient: AuthClientRecord,
  tokens = tokenSet(),
  now = T0,
  tenantId = f.tenantId,
): Promise<{ record: CredentialRecord; tokens: TokenSet }> {
  const record = await f.store.credentials.create(
    {
      id: `cr_${randomBytes(12).toString('base64url')}`,
      tenantId,
      authClientId: authClient.id,
      tokenSet: tokens,
      flags: {},
      nextRefreshAt: now + 3_000_000,
    },
    now,
  );
  return { record, tokens };
}

async function rawCredential(handle: VaultDatabase, id: string) {
  return handle.db
    .selectFrom('credentials')
    .selectAll()
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
}

/** Every stored row of a table, stringified (for "the secret is not in there"). */
async function tableText(
  handle: VaultDatabase,
  table: 'api_keys' | 'auth_clients' | 'credentials' | 'connect_sessions' | 'events',
): Promise<string> {
  return JSON.stringify(await handle.db.selectFrom(table).selectAll().execute());
}

/** Starts every function at the same moment and waits for all of them. */
async function race<T>(count: number, fn: (index: number) => Promise<T>): Promise<T[]> {
  let go!: () => void;
  const start = new Promise<void>((resolve) => {
    go = resolve;
  });
  const runs = Array.from({ length: count }, async (_, index) => {
    await start;
    return fn(index);
  });
  go();
  return Promise.all(runs);
}

for (const engine of engines()) {
  describe(`storage on ${engine.name}`, () => {
    describe('migrations', () => {
      test('create every table, and opening again (or at once, twice) changes nothing', async (t) => {
        const database = await engine.create(t);
        const first = await database.open();
        const store = new VaultStore(first.db, await fileCipher(database.dataDir), catalog);
        await store.tenants.ensureDefaultTenant(T0);
        const tenant = await store.tenants.create('kept', T0);
        await first.close();

        const second = await database.open();
        const third = await database.open();
        const tables =
          engine.name === 'postgres'
            ? await postgresTables(database.databaseSchema)
            : (
                await sql<{
                  name: string;
                }>`select name from sqlite_master where type = 'table' and name not like 'sqlite_%' order by name`.execute(
                  second.db,
                )
              ).rows.map((row) => row.name);
        for (const table of [
          'api_keys',
          'auth_clients',
          'connect_sessions',
          'credentials',
          'events',
          'tenants',
        ]) {
          assert.ok(tables.includes(table), `table ${table} in ${tables.join(', ')}`);
        }
        const migrations = await sql<{
          name: string;
        }>`select name from kysely_migration`.execute(second.db);
        assert.deepEqual(
          migrations.rows.map((row) => row.name),
          [
            '0001_initial',
            '0002_refresher',
            '0003_webhooks',
            '0004_credential_notify',
            '0005_last_error_in_doubt',
            '0006_abandoned_leases',
            '0007_events_by_credential',
            '0008_lease_holder',
          ],
        );
        const again = new VaultStore(third.db, await fileCipher(database.dataDir), catalog);
        await again.tenants.ensureDefaultTenant(T0 + 1);
        assert.deepEqual(
          (await again.tenants.list()).map((row) => row.id).sort(),
          [DEFAULT_TENANT_ID, tenant.id].sort(),
        );
        assert.equal(await again.tenants.exists(tenant.id), true);
        assert.equal(await again.tenants.exists('tn_nobody'), false);
      });

      if (engine.name === 'postgres') {
        test('a vault schema migrates while another schema of the server already holds a vault', async (t) => {
          const first = await engine.create(t);
          const second = await engine.create(t);
          await first.open();
          const handle = await second.open();
          assert.deepEqual(
            (await postgresTables(second.databaseSchema)).filter((table) =>
              table.startsWith('kysely'),
            ),
            ['kysely_migration', 'kysely_migration_lock'],
          );
          await new VaultStore(handle.db, await fileCipher(second.dataDir), catalog).tenants.create(
            'x',
            T0,
          );
        });

        test('two replicas starting at once both migrate without error', async (t) => {
          const database = await engine.create(t);
          const [a, b] = await Promise.all([database.open(), database.open()]);
          const rows = await sql<{
            n: number;
          }>`select count(*)::int as n from kysely_migration`.execute(a.db);
          assert.equal(rows.rows[0]?.n, 8);
          await b.db.selectFrom('credentials').selectAll().execute();
        });
      }
    });

    describe('tenants and API keys', () => {
      test('only the key hash is stored; right, wrong and revoked keys authenticate as they should', async (t) => {
        const f = await fixture(t, engine);
        const created = await f.store.tenants.createApiKey(f.tenantId, 'ci', false, T0);
        assert.match(created.key, /^twk_[a-f0-9]+_[A-Za-z0-9_-]{43}$/);
        const secretPart = created.key.split('_').slice(2).join('_');

        const stored = await f.handle.db
          .selectFrom('api_keys')
          .selectAll()
          .where('id', '=', created.id)
          .executeTakeFirstOrThrow();
        assert.equal(stored.key_hash, sha256Hex(created.key));
        const everything = await tableText(f.handle, 'api_keys');
        assert.ok(!everything.includes(created.key), 'the key is not stored');
        assert.ok(!everything.includes(secretPart), 'nor its secret part');

        const who = await f.store.tenants.authenticate(created.key, T0 + 1000);
        assert.deepEqual(
          { id: who?.id, tenantId: who?.tenantId, admin: who?.admin, label: who?.label },
          { id: created.id, tenantId: f.tenantId, admin: false, label: 'ci' },
        );

        // Same id, same length, one character different: refused.
        const last = created.key.at(-1) === 'A' ? 'B' : 'A';
        const wrong = `${created.key.slice(0, -1)}${last}`;
        assert.equal(await f.store.tenants.authenticate(wrong, T0), undefined);
        assert.equal(
          await f.store.tenants.authenticate(`${created.key}x`, T0),
          undefined,
          'a longer key with the same prefix',
        );
        assert.equal(await f.store.tenants.authenticate('not-a-key', T0), undefined);
        assert.equal(
          await f.store.tenants.authenticate(`twk_ffffff_${secretPart}`, T0),
          undefined,
          'the right secret under an unknown id',
        );

        assert.deepEqual(
          (await f.store.tenants.listApiKeys(f.tenantId)).map((key) => key.id),
          [created.id],
        );
        assert.equal(await f.store.tenants.revokeApiKey('tn_other', created.id, T0), false);
        assert.equal(await f.store.tenants.revokeApiKey(f.tenantId, created.id, T0), true);
        assert.equal(await f.store.tenants.revokeApiKey(f.tenantId, created.id, T0), false);
        assert.equal(await f.store.tenants.authenticate(created.key, T0 + 2000), undefined);
        assert.deepEqual(await f.store.tenants.listApiKeys(f.tenantId), []);
      });

      test('last use is recorded at most once a minute', async (t) => {
        const f = await fixture(t, engine);
        const { id, key } = await f.store.tenants.createApiKey(f.tenantId, 'ci', false, T0);
        const lastUsed = async () =>
          (
            await f.handle.db
              .selectFrom('api_keys')
              .select('last_used_at')
              .where('id', '=', id)
              .executeTakeFirstOrThrow()
          ).last_used_at;
        await f.store.tenants.authenticate(key, T0 + 1000);
        assert.equal(await lastUsed(), T0 + 1000);
        await f.store.tenants.authenticate(key, T0 + 30_000);
        assert.equal(await lastUsed(), T0 + 1000);
        await f.store.tenants.authenticate(key, T0 + 70_000);
        assert.equal(await lastUsed(), T0 + 70_000);
      });

      test('an admin key from the environment is registered idempotently and revived', async (t) => {
        const f = await fixture(t, engine);
        await f.store.tenants.ensureDefaultTenant(T0);
        assert.equal(await f.store.tenants.hasAdminKey(), false);
        const key = `twk_envadmin_${randomBytes(32).toString('base64url')}`;
        await f.store.tenants.ensureApiKey(key, DEFAULT_TENANT_ID, 'admin', true, T0);
        await f.store.tenants.ensureApiKey(key, DEFAULT_TENANT_ID, 'admin', true, T0 + 1);
        assert.equal(await f.store.tenants.hasAdminKey(), true);
        assert.equal((await f.store.tenants.authenticate(key, T0))?.admin, true);
        assert.ok(!(await tableText(f.handle, 'api_keys')).includes(key));

        await f.store.tenants.revokeApiKey(DEFAULT_TENANT_ID, 'key_envadmin', T0);
        assert.equal(await f.store.tenants.authenticate(key, T0), undefined);
        await f.store.tenants.ensureApiKey(key, DEFAULT_TENANT_ID, 'admin', true, T0 + 2);
        assert.equal((await f.store.tenants.authenticate(key, T0))?.id, 'key_envadmin');

        // A new secret under the same id replaces the old one.
        const replaced = `twk_envadmin_${randomBytes(32).toString('base64url')}`;
        await f.store.tenants.ensureApiKey(replaced, DEFAULT_TENANT_ID, 'admin', true, T0 + 3);
        assert.equal(await f.store.tenants.authenticate(key, T0), undefined);
        assert.equal((await f.store.tenants.authenticate(replaced, T0))?.admin, true);
        await assert.rejects(
          f.store.tenants.ensureApiKey('plain', DEFAULT_TENANT_ID, 'x', true, T0),
          /twk_<id>_<secret>/,
        );
      });

      test('replicas starting together register the same admin key without a conflict', async (t) => {
        const f = await fixture(t, engine);
        await f.store.tenants.ensureDefaultTenant(T0);
        // On PostgreSQL each call runs on a connection of its own, as N replicas would.
        for (let round = 0; round < 200; round++) {
          const key = `twk_race${round}_${randomBytes(32).toString('base64url')}`;
          await Promise.all(
            Array.from({ length: 8 }, (_, i) =>
              f.store.tenants.ensureApiKey(key, DEFAULT_TENANT_ID, 'admin', true, T0 + i),
            ),
          );
          assert.equal((await f.store.tenants.authenticate(key, T0))?.admin, true);
        }
      });
    });

    describe('auth clients', () => {
      test('the secret is stored encrypted and decrypted only to resolve', async (t) => {
        const f = await fixture(t, engine);
        const clientSecret = secret('client-secret');
        const record = await f.store.authClients.create(
          f.tenantId,
          authClientInput(clientSecret),
          T0,
        );
        assert.equal(record.hasClientSecret, true);
        assert.ok(!JSON.stringify(record).includes(clientSecret), 'the record has no secret');
        assert.deepEqual(record.scopes, ['offline_access', 'Mail.Read']);

        const row = await f.handle.db
          .selectFrom('auth_clients')
          .selectAll()
          .where('id', '=', record.id)
          .executeTakeFirstOrThrow();
        assert.ok(row.client_secret_enc.startsWith('tw1.'), row.client_secret_enc);
        assert.equal(Keyring.kidOf(row.client_secret_enc), f.cipher.get().activeKid);
        assert.ok(!(await tableText(f.handle, 'auth_clients')).includes(clientSecret));

        assert.equal(await sentClientSecret(f.store, f.tenantId, record.id), clientSecret);
        assert.deepEqual(await f.store.authClients.get(f.tenantId, record.id), record);
        assert.deepEqual(
          (await f.store.authClients.list(f.tenantId)).map((client) => client.id),
          [record.id],
        );
      });

      test('update re-encrypts (new secret, or the old one under a fresh IV) and clears misconfigured', async (t) => {
        const f = await fixture(t, engine);
        const first = secret('first');
        const record = await f.store.authClients.create(f.tenantId, authClientInput(first), T0);
        const encryptedSecret = async () =>
          (
            await f.handle.db
              .selectFrom('auth_clients')
              .select('client_secret_enc')
              .where('id', '=', record.id)
              .executeTakeFirstOrThrow()
          ).client_secret_enc;
        const before = await encryptedSecret();

        await f.store.authClients.markMisconfigured(
          record.id,
          'invalid_client from the provider',
          T0 + 1,
        );
        const flagged = await f.store.authClients.get(f.tenantId, record.id);
        assert.equal(flagged?.status, 'misconfigured');
        assert.equal(flagged?.statusReason, 'invalid_client from the provider');
        assert.equal(flagged?.updatedAt, T0 + 1);

        const renamed = await f.store.authClients.update(
          f.tenantId,
          record.id,
          { name: 'Mail' },
          T0 + 2,
        );
        assert.equal(renamed?.name, 'Mail');
        assert.equal(renamed?.status, 'ok', 'new settings clear the flag');
        assert.equal(renamed?.statusReason, null);
        const afterRename = await encryptedSecret();
        assert.notEqual(afterRename, before, 'rewritten under a fresh IV');
        assert.equal(await sentClientSecret(f.store, f.tenantId, record.id), first);

        const second = secret('second');
        await f.store.authClients.update(f.tenantId, record.id, { clientSecret: second }, T0 + 3);
        const afterNewSecret = await encryptedSecret();
        assert.ok(afterNewSecret.startsWith('tw1.'));
        assert.ok(!(await tableText(f.handle, 'auth_clients')).includes(second));
        assert.ok(!(await tableText(f.handle, 'auth_clients')).includes(first));
        assert.equal(await sentClientSecret(f.store, f.tenantId, record.id), second);

        await assert.rejects(
          f.store.authClients.update(
            f.tenantId,
            record.id,
            { endpoints: { tokenUrl: 'http://example.com/token' } },
            T0 + 4,
          ),
          'a plain-http token URL off loopback is refused',
        );
        assert.equal(await encryptedSecret(), afterNewSecret, 'a refused update writes nothing');
      });

      test('another tenant sees nothing and changes nothing', async (t) => {
        const f = await fixture(t, engine);
        const other = await f.store.tenants.create('other', T0);
        const record = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        assert.equal(await f.store.authClients.get(other.id, record.id), undefined);
        assert.equal(await f.store.authClients.resolve(other.id, record.id), undefined);
        assert.deepEqual(await f.store.authClients.list(other.id), []);
        assert.equal(
          await f.store.authClients.update(other.id, record.id, { name: 'stolen' }, T0),
          undefined,
        );
        assert.equal(await f.store.authClients.delete(other.id, record.id), false);
        assert.equal((await f.store.authClients.get(f.tenantId, record.id))?.name, 'Outlook');
      });

      test('a secret copied to another row does not decrypt', async (t) => {
        const f = await fixture(t, engine);
        const a = await f.store.authClients.create(f.tenantId, authClientInput(secret('a')), T0);
        const b = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('b')),
          T0 + 1,
        );
        const { client_secret_enc } = await f.handle.db
          .selectFrom('auth_clients')
          .select('client_secret_enc')
          .where('id', '=', a.id)
          .executeTakeFirstOrThrow();
        await f.handle.db
          .updateTable('auth_clients')
          .set({ client_secret_enc })
          .where('id', '=', b.id)
          .execute();
        await assert.rejects(f.store.authClients.resolve(f.tenantId, b.id), KeyringError);
      });

      test('unknown providers and bad endpoints are refused before anything is stored', async (t) => {
        const f = await fixture(t, engine);
        await assert.rejects(
          f.store.authClients.create(f.tenantId, authClientInput('s', { providerId: 'nope' }), T0),
          /unknown provider "nope"/,
        );
        await assert.rejects(
          f.store.authClients.create(
            f.tenantId,
            authClientInput('s', { endpoints: { tokenUrl: 'http://example.com/token' } }),
            T0,
          ),
        );
        assert.deepEqual(await f.store.authClients.list(f.tenantId), []);
      });

      test('deleting an auth client removes its connect sessions, but not while credentials use it', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const session = await f.store.connectSessions.create(
          {
            tenantId: f.tenantId,
            authClientId: client.id,
            redirectUri: 'http://127.0.0.1/cb',
            returnTo: null,
            scopes: null,
          },
          T0,
          600_000,
        );
        const { record } = await credential(f, client);
        await assert.rejects(f.store.authClients.delete(f.tenantId, client.id));
        assert.ok(await f.store.authClients.get(f.tenantId, client.id), 'still there');
        assert.equal(await f.store.credentials.delete(f.tenantId, record.id), true);
        assert.equal(await f.store.authClients.delete(f.tenantId, client.id), true);
        assert.equal(await f.store.connectSessions.get(session.id), undefined);
      });
    });

    describe('credentials', () => {
      test('create, get, list and filter; tokens only through getWithTokens', async (t) => {
        const f = await fixture(t, engine);
        const outlook = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const mail = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s'), { name: 'Mail' }),
          T0,
        );
        const other = await f.store.tenants.create('other', T0);
        const otherClient = await f.store.authClients.create(
          other.id,
          authClientInput(secret('s')),
          T0,
        );
        const a = await credential(f, outlook, tokenSet(T0), T0);
        const b = await credential(f, mail, tokenSet(T0 + 1), T0 + 1);
        const c = await credential(f, outlook, tokenSet(T0 + 2), T0 + 2);
        const foreign = await credential(f, otherClient, tokenSet(T0), T0, other.id);
        await f.store.credentials.setStatus(
          undefined,
          c.record.id,
          'reauth_required',
          'invalid_grant',
          T0 + 5,
        );

        assert.deepEqual(a.record, await f.store.credentials.get(f.tenantId, a.record.id));
        assert.equal(a.record.status, 'active');
        assert.equal(a.record.expiresAt, T0 + 3_600_000);
        assert.equal(a.record.scope, 'offline_access Mail.Read');
        assert.equal(a.record.nextRefreshAt, T0 + 3_000_000);
        assert.ok(
          !JSON.stringify(a.record).includes(a.tokens.accessToken),
          'a record has no token',
        );

        const ids = (records: CredentialRecord[]) => records.map((record) => record.id);
        assert.deepEqual(ids(await f.store.credentials.list(f.tenantId)), [
          a.record.id,
          b.record.id,
          c.record.id,
        ]);
        assert.deepEqual(
          ids(await f.store.credentials.list(f.tenantId, { authClientId: outlook.id })),
          [a.record.id, c.record.id],
        );
        assert.deepEqual(
          ids(await f.store.credentials.list(f.tenantId, { status: 'reauth_required' })),
          [c.record.id],
        );
        assert.deepEqual(
          ids(
            await f.store.credentials.list(f.tenantId, {
              authClientId: outlook.id,
              status: 'active',
            }),
          ),
          [a.record.id],
        );
        assert.deepEqual(ids(await f.store.credentials.list(other.id)), [foreign.record.id]);
        assert.equal(await f.store.credentials.countByAuthClient(f.tenantId, outlook.id), 2);
        assert.equal(
          (await f.store.credentials.get(f.tenantId, c.record.id))?.statusReason,
          'invalid_grant',
        );

        const withTokens = await f.store.credentials.getWithTokens(f.tenantId, a.record.id);
        assert.equal(withTokens?.tokenSet.accessToken, a.tokens.accessToken);
        assert.equal(withTokens?.tokenSet.refreshToken, a.tokens.refreshToken);
        assert.equal(withTokens?.tokenSet.expiresAtMs, T0 + 3_600_000);
        assert.equal(withTokens?.version, 1);
        assert.equal(withTokens?.leaseOwner, null);

        const raw = await rawCredential(f.handle, a.record.id);
        assert.ok(raw.token_enc.startsWith('tw1.'));
        const rows = await tableText(f.handle, 'credentials');
        for (const item of [a, b, c, foreign]) {
          assert.ok(!rows.includes(item.tokens.accessToken));
          assert.ok(!rows.includes(item.tokens.refreshToken as string));
        }

        // Another tenant's credential is invisible, and cannot be deleted from here.
        assert.equal(await f.store.credentials.get(f.tenantId, foreign.record.id), undefined);
        assert.equal(
          await f.store.credentials.getWithTokens(f.tenantId, foreign.record.id),
          undefined,
        );
        assert.equal(await f.store.credentials.delete(f.tenantId, foreign.record.id), false);
        assert.ok(await f.store.credentials.get(other.id, foreign.record.id));
        assert.equal(await f.store.credentials.delete(f.tenantId, b.record.id), true);
        assert.equal(await f.store.credentials.get(f.tenantId, b.record.id), undefined);
      });

      test('a token set copied to another credential does not decrypt', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const a = await credential(f, client);
        const b = await credential(f, client);
        const { token_enc } = await rawCredential(f.handle, a.record.id);
        await f.handle.db
          .updateTable('credentials')
          .set({ token_enc })
          .where('id', '=', b.record.id)
          .execute();
        await assert.rejects(
          f.store.credentials.getWithTokens(f.tenantId, b.record.id),
          KeyringError,
        );
      });

      test('saveTokens is a compare-and-set on the version: a stale writer writes nothing', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record, tokens } = await credential(f, client);
        await f.handle.db
          .transaction()
          .execute((trx) =>
            f.store.credentials.recordFailure(
              trx,
              record.id,
              { code: 'token_endpoint_unavailable', message: '503' },
              T0 + 10,
            ),
          );
        const next = tokens.merge(
          { access_token: secret('at2'), token_type: 'Bearer', expires_in: 1800 },
          T0 + 100,
        );

        const saved = await f.handle.db
          .transaction()
          .execute((trx) =>
            f.store.credentials.saveTokens(
              trx,
              record.id,
              1,
              next,
              { refreshed: true, nextRefreshAt: T0 + 999 },
              T0 + 100,
            ),
          );
        assert.equal(saved, true);
        const current = await f.store.credentials.getWithTokens(f.tenantId, record.id);
        assert.equal(current?.version, 2);
        assert.equal(current?.tokenSet.accessToken, next.accessToken);
        assert.equal(
          current?.tokenSet.refreshToken,
          tokens.refreshToken,
          'an omitted refresh token is kept',
        );
        assert.equal(current?.record.refreshCount, 1);
        assert.equal(current?.record.lastRefreshAt, T0 + 100);
        assert.equal(current?.record.lastError, null, 'a successful write clears the error');
        assert.equal(current?.record.expiresAt, T0 + 100 + 1_800_000);
        assert.equal(current?.record.nextRefreshAt, T0 + 999);

        const rowBefore = await rawCredential(f.handle, record.id);
        const stale = tokens.merge(
          { access_token: secret('stale'), token_type: 'Bearer' },
          T0 + 200,
        );
        for (const version of [1, 3, 99]) {
          const result = await f.handle.db
            .transaction()
            .execute((trx) =>
              f.store.credentials.saveTokens(
                trx,
                record.id,
                version,
                stale,
                { refreshed: true, nextRefreshAt: null },
                T0 + 200,
              ),
            );
          assert.equal(result, false, `version ${version} is not current`);
        }
        assert.deepEqual(
          await rawCredential(f.handle, record.id),
          rowBefore,
          'nothing was written',
        );

        // updateKeys-style write: not a refresh, so the refresh count stays.
        const keys = next.merge({ access_token: secret('keys'), token_type: 'Bearer' }, T0 + 300);
        assert.equal(
          await f.handle.db
            .transaction()
            .execute((trx) =>
              f.store.credentials.saveTokens(
                trx,
                record.id,
                2,
                keys,
                { refreshed: false, nextRefreshAt: null },
                T0 + 300,
              ),
            ),
          true,
        );
        const afterKeys = await f.store.credentials.getWithTokens(f.tenantId, record.id);
        assert.equal(afterKeys?.record.refreshCount, 1);
        assert.equal(afterKeys?.version, 3);
      });

      test('a token write and its event commit together, or roll back together', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record, tokens } = await credential(f, client);
        const next = tokens.merge(
          { access_token: secret('at2'), token_type: 'Bearer', expires_in: 60 },
          T0 + 1,
        );
        const rowBefore = await rawCredential(f.handle, record.id);

        await assert.rejects(
          f.handle.db.transaction().execute(async (trx) => {
            const ok = await f.store.credentials.saveTokens(
              trx,
              record.id,
              1,
              next,
              { refreshed: true, nextRefreshAt: null },
              T0 + 1,
            );
            assert.equal(ok, true);
            await f.store.events.append(
              {
                type: 'refreshed',
                tenantId: f.tenantId,
                credentialId: record.id,
                data: { trigger: 'test' },
              },
              T0 + 1,
              trx,
            );
            throw new Error('crash after the event');
          }),
          /crash after the event/,
        );
        assert.deepEqual(
          await rawCredential(f.handle, record.id),
          rowBefore,
          'the token write rolled back',
        );
        assert.deepEqual(
          await f.store.events.list(f.tenantId, { limit: 10 }),
          [],
          'the event rolled back',
        );
        assert.equal(
          (await f.store.credentials.getWithTokens(f.tenantId, record.id))?.tokenSet.accessToken,
          tokens.accessToken,
        );

        // And a failing insert (an event for an unknown type is fine in SQL; use a NOT NULL violation) after the write.
        await assert.rejects(
          f.handle.db.transaction().execute(async (trx) => {
            await f.store.credentials.saveTokens(
              trx,
              record.id,
              1,
              next,
              { refreshed: true, nextRefreshAt: null },
              T0 + 2,
            );
            await trx
              .insertInto('events')
              // biome-ignore lint/suspicious/noExplicitAny: a deliberately invalid row
              .values({ tenant_id: null as any, type: 'refreshed', data: '{}', created_at: T0 })
              .execute();
          }),
        );
        assert.deepEqual(await rawCredential(f.handle, record.id), rowBefore);

        await f.handle.db.transaction().execute(async (trx) => {
          assert.equal(
            await f.store.credentials.saveTokens(
              trx,
              record.id,
              1,
              next,
              { refreshed: true, nextRefreshAt: null },
              T0 + 3,
            ),
            true,
          );
          await f.store.events.append(
            {
              type: 'refreshed',
              tenantId: f.tenantId,
              credentialId: record.id,
              data: { trigger: 'test' },
            },
            T0 + 3,
            trx,
          );
        });
        assert.equal((await f.store.credentials.getWithTokens(f.tenantId, record.id))?.version, 2);
        const events = await f.store.events.list(f.tenantId, { limit: 10 });
        assert.deepEqual(
          events.map((event) => [event.type, event.credentialId, event.data]),
          [['refreshed', record.id, { trigger: 'test' }]],
        );
      });

      test('recordFailure keeps the tokens, sets the error and status, and releases only its own lease', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record, tokens } = await credential(f, client);
        assert.equal(
          (await f.store.credentials.tryAcquireLease(record.id, 'me', T0, 30_000)).acquired,
          true,
        );
        await f.handle.db.transaction().execute((trx) =>
          f.store.credentials.recordFailure(
            trx,
            record.id,
            {
              code: 'reauth_required',
              message: 'invalid_grant',
              status: 'reauth_required',
              statusReason: 'revoked',
              leaseOwner: 'someone-else',
              nextRefreshAt: null,
            },
            T0 + 5,
          ),
        );
        let current = await f.store.credentials.getWithTokens(f.tenantId, record.id);
        assert.equal(current?.record.status, 'reauth_required');
        assert.equal(current?.record.statusReason, 'revoked');
        assert.deepEqual(current?.record.lastError, {
          code: 'reauth_required',
          message: 'invalid_grant',
          at: T0 + 5,
          inDoubt: false,
        });
        assert.equal(current?.record.nextRefreshAt, null);
        assert.equal(current?.tokenSet.accessToken, tokens.accessToken);
        assert.equal(current?.version, 1, 'a failure is not a token write');
        assert.equal(
          current?.leaseOwner,
          'me',
          "another owner's failure does not release my lease",
        );
        await f.handle.db
          .transaction()
          .execute((trx) =>
            f.store.credentials.recordFailure(
              trx,
              record.id,
              { code: 'x', message: 'y', leaseOwner: 'me' },
              T0 + 6,
            ),
          );
        current = await f.store.credentials.getWithTokens(f.tenantId, record.id);
        assert.equal(current?.leaseOwner, null);
        assert.equal(current?.record.status, 'reauth_required', 'status unchanged when not given');
      });
    });

    describe('the refresh lease', () => {
      test('one of two concurrent acquirers wins; a held lease blocks', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record } = await credential(f, client);
        const [a, b] = await race(2, (i) =>
          f.store.credentials.tryAcquireLease(record.id, `owner-${i}`, T0, 30_000),
        );
        assert.equal([a, b].filter((result) => result?.acquired).length, 1, JSON.stringify([a, b]));
        const winner = a?.acquired ? 'owner-0' : 'owner-1';
        const winning = a?.acquired ? a : b;
        assert.deepEqual(winning, { acquired: true, takenOver: false, previousOwner: null });

        const blocked = await f.store.credentials.tryAcquireLease(
          record.id,
          'late',
          T0 + 29_999,
          30_000,
        );
        assert.deepEqual(blocked, { acquired: false, owner: winner, until: T0 + 30_000 });
        const row = await rawCredential(f.handle, record.id);
        assert.equal(row.lease_owner, winner);
        assert.equal(row.lease_until, T0 + 30_000);
        assert.equal(
          (await f.store.credentials.tryAcquireLease(record.id, winner, T0 + 1, 30_000)).acquired,
          false,
          'not re-entrant: the holder must renew',
        );
        assert.deepEqual(await f.store.credentials.tryAcquireLease('cr_missing', 'x', T0, 30_000), {
          acquired: false,
          owner: null,
          until: null,
        });
      });

      test('an expired lease is taken over, and only once', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record } = await credential(f, client);
        await f.store.credentials.tryAcquireLease(record.id, 'dead', T0, 1000);
        assert.equal(
          (await f.store.credentials.tryAcquireLease(record.id, 'x', T0 + 1000, 1000)).acquired,
          false,
          'still valid at lease_until',
        );
        const results = await race(5, (i) =>
          f.store.credentials.tryAcquireLease(record.id, `heir-${i}`, T0 + 1001, 30_000),
        );
        const winners = results.filter((result) => result.acquired);
        assert.equal(winners.length, 1, JSON.stringify(results));
        assert.deepEqual(winners[0], { acquired: true, takenOver: true, previousOwner: 'dead' });
        const row = await rawCredential(f.handle, record.id);
        assert.match(row.lease_owner ?? '', /^heir-\d$/);
        assert.equal(row.lease_until, T0 + 1001 + 30_000);
      });

      test('renew and release work only for the owner', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record } = await credential(f, client);
        await f.store.credentials.tryAcquireLease(record.id, 'owner', T0, 1000);

        assert.equal(
          await f.store.credentials.renewLease(record.id, 'intruder', T0 + 500, 60_000),
          false,
        );
        assert.equal((await rawCredential(f.handle, record.id)).lease_until, T0 + 1000);
        assert.equal(
          await f.store.credentials.renewLease(record.id, 'owner', T0 + 500, 60_000),
          true,
        );
        assert.equal((await rawCredential(f.handle, record.id)).lease_until, T0 + 60_500);
        assert.equal(
          (await f.store.credentials.tryAcquireLease(record.id, 'x', T0 + 2000, 1000)).acquired,
          false,
          'the renewed lease still holds after the first term',
        );

        await f.store.credentials.releaseLease(record.id, 'intruder');
        assert.equal((await rawCredential(f.handle, record.id)).lease_owner, 'owner');
        await f.store.credentials.releaseLease(record.id, 'owner');
        const released = await rawCredential(f.handle, record.id);
        assert.equal(released.lease_owner, null);
        assert.equal(released.lease_until, null);
        assert.equal(
          await f.store.credentials.renewLease(record.id, 'owner', T0 + 600, 1000),
          false,
          'a released lease cannot be renewed',
        );
        assert.deepEqual(
          await f.store.credentials.tryAcquireLease(record.id, 'next', T0 + 700, 1000),
          {
            acquired: true,
            takenOver: false,
            previousOwner: null,
          },
        );
      });

      test('regression: saveTokens leaves the lease to its holder, so a holder taken over cannot clear the new one', async (t) => {
        const f = await fixture(t, engine);
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record, tokens } = await credential(f, client);
        // 'me' held the lease, it expired, and 'other' took it over; 'me' then commits late.
        await f.store.credentials.tryAcquireLease(record.id, 'me', T0, 1_000);
        await f.store.credentials.tryAcquireLease(record.id, 'other', T0 + 2_000, 30_000);
        const next = tokens.merge({ access_token: secret('at'), token_type: 'Bearer' }, T0 + 1);
        await f.handle.db
          .transaction()
          .execute((trx) =>
            f.store.credentials.saveTokens(
              trx,
              record.id,
              1,
              next,
              { refreshed: true, nextRefreshAt: null, leaseOwner: 'me' },
              T0 + 1,
            ),
          );
        const row = await rawCredential(f.handle, record.id);
        assert.equal(
          row.lease_owner,
          'other',
          "the late committer did not clear the new holder's lease",
        );
        await f.store.credentials.releaseLease(record.id, 'me');
        assert.equal(
          (await rawCredential(f.handle, record.id)).lease_owner,
          'other',
          'release is by owner only',
        );
        await f.store.credentials.releaseLease(record.id, 'other');
        const released = await rawCredential(f.handle, record.id);
        assert.equal(released.lease_owner, null);
        assert.equal(released.lease_until, null);
      });

      test('20 concurrent acquirers (a real pool on PostgreSQL): exactly one winner, every round', async (t) => {
        const f = await fixture(t, engine, { poolSize: 20 });
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const { record } = await credential(f, client);
        // Several handles on one database, as several processes would have.
        const extra = await Promise.all([
          f.database.open({ poolSize: 20 }),
          f.database.open({ poolSize: 20 }),
        ]);
        const repositories = [
          f.store,
          ...extra.map((handle) => new VaultStore(handle.db, f.cipher, catalog)),
        ].map((store) => store.credentials);
        if (engine.name === 'postgres') {
          // Open every pooled connection first, so the race is between connections, not connection set-up.
          await Promise.all(
            Array.from({ length: 20 }, () => sql`select pg_sleep(0.05)`.execute(f.handle.db)),
          );
        }
        let now = T0;
        for (let round = 0; round < 5; round++) {
          now += 100_000;
          const results = await race(20, (i) =>
            (
              repositories[i % repositories.length] as (typeof repositories)[number]
            ).tryAcquireLease(record.id, `r${round}-p${i}`, now, 30_000),
          );
          const winners = results.flatMap((result, i) =>
            result.acquired ? [`r${round}-p${i}`] : [],
          );
          assert.equal(winners.length, 1, `round ${round}: winners ${winners.join(', ')}`);
          assert.equal((await rawCredential(f.handle, record.id)).lease_owner, winners[0]);
          // Odd rounds: the winner releases; even rounds: its lease is left to expire (taken over next round).
          if (round % 2 === 1)
            await f.store.credentials.releaseLease(record.id, winners[0] as string);
          const taken = results.find((result) => result.acquired);
          assert.ok(taken?.acquired);
          // After an even round the lease was left to expire: the next winner takes it over.
          assert.equal(taken.takenOver, round % 2 === 1, `round ${round}`);
        }
      });
    });

    describe('connect sessions', () => {
      async function started(f: Fixture) {
        const client = await f.store.authClients.create(
          f.tenantId,
          authClientInput(secret('s')),
          T0,
        );
        const session = await f.store.connectSessions.create(
          {
            tenantId: f.tenantId,
            authClientId: client.id,
            redirectUri: 'http://127.0.0.1:1/oauth/callback',
            returnTo: 'https://app.example.com/done',
            scopes: ['Mail.Read'],
          },
          T0,
          600_000,
        );
        assert.equal(session.status, 'pending');
        assert.equal(session.expiresAt, T0 + 600_000);
        const state = randomBytes(16).toString('base64url');
        const verifierEnc = f.cipher.encrypt('verifier', `connect_session:${session.id}`);
        assert.equal(
          await f.store.connectSessions.start(
            session.id,
            { stateHash: sha256Hex(state), browserHash: sha256Hex('cookie'), verifierEnc },
            T0 + 1,
          ),
          true,
        );
        return { client, session, state, verifierEnc };
      }

      test('a state is consumed once: two concurrent callbacks give one consumed and one replayed', async (t) => {
        const f = await fixture(t, engine);
        const { session, state, verifierEnc } = await started(f);
        const stored = await f.store.connectSessions.get(session.id);
        assert.equal(stored?.status, 'started');
        assert.equal(stored?.verifierEnc, verifierEnc);
        assert.deepEqual(stored?.scopes, ['Mail.Read']);
        assert.equal(stored?.returnTo, 'https://app.example.com/done');

        const outcomes = await race(2, () =>
          f.store.connectSessions.consume(sha256Hex(state), T0 + 2),
        );
        assert.deepEqual(outcomes.map((outcome) => outcome.outcome).sort(), [
          'consumed',
          'replayed',
        ]);
        for (const outcome of outcomes) {
          assert.ok(outcome.outcome !== 'unknown');
          assert.equal(outcome.session.id, session.id);
          assert.equal(outcome.session.usedAt, T0 + 2);
        }
        assert.equal(
          (await f.store.connectSessions.consume(sha256Hex(state), T0 + 3)).outcome,
          'replayed',
        );
        assert.equal((await f.store.connectSessions.get(session.id))?.usedAt, T0 + 2);
        assert.equal(
          await f.store.connectSessions.start(
            session.id,
            { stateHash: sha256Hex('again'), browserHash: 'x', verifierEnc: 'y' },
            T0 + 4,
          ),
          false,
          'a used session cannot be restarted',
        );
      });

      test('ten concurrent consumers: exactly one consumed', async (t) => {
        const f = await fixture(t, engine);
        const { state } = await started(f);
        const outcomes = await race(10, () =>
          f.store.connectSessions.consume(sha256Hex(state), T0 + 2),
        );
        assert.equal(outcomes.filter((outcome) => outcome.outcome === 'consumed').length, 1);
        assert.equal(outcomes.filter((outcome) => outcome.outcome === 'replayed').length, 9);
      });

      test('an unknown state is unknown, and consumes nothing', async (t) => {
        const f = await fixture(t, engine);
        const { session } = await started(f);
        assert.deepEqual(await f.store.connectSessions.consume(sha256Hex('never-issued'), T0 + 2), {
          outcome: 'unknown',
        });
        assert.equal((await f.store.connectSessions.get(session.id))?.usedAt, null);
        assert.equal(await f.store.connectSessions.get('cs_missing'), undefined);
      });

      test('start is refused once expired; complete and fail drop the verifier; fail never undoes complete', async (t) => {
        const f = await fixture(t, engine);
        const { session } = await started(f);
        assert.equal(
          await f.store.connectSessions.start(
            session.id,
            { stateHash: 'a', browserHash: 'b', verifierEnc: 'c' },
            T0 + 600_000,
          ),
          false,
        );
        await f.store.connectSessions.complete(session.id, 'cr_done');
        await f.store.connectSessions.fail(session.id, 'late', 'too late');
        const done = await f.store.connectSessions.get(session.id);
        assert.equal(done?.status, 'completed');
        assert.equal(done?.credentialId, 'cr_done');
        assert.equal(done?.verifierEnc, null);
        assert.equal(done?.error, null);

        const other = await started(f);
        await f.store.connectSessions.fail(other.session.id, 'access_denied', 'declined');
        const failed = await f.store.connectSessions.get(other.session.id);
        assert.equal(failed?.status, 'failed');
        assert.deepEqual(failed?.error, { code: 'access_denied', message: 'declined' });
        assert.equal(failed?.verifierEnc, null);
      });
    });

    describe('events', () => {
      test('pages oldest first, after an id, per tenant and per credential', async (t) => {
        const f = await fixture(t, engine);
        const other = await f.store.tenants.create('other', T0);
        for (let i = 0; i < 7; i++) {
          await f.store.events.append(
            {
              type: i === 0 ? 'connected' : 'refreshed',
              tenantId: f.tenantId,
              credentialId: i % 2 === 0 ? 'cr_even' : 'cr_odd',
              authClientId: 'ac_1',
              data: { n: i, nested: { ok: true } },
            },
            T0 + i,
          );
          await f.store.events.append(
            { type: 'refreshed', tenantId: other.id, data: { n: 100 + i } },
            T0 + i,
          );
        }
        const first = await f.store.events.list(f.tenantId, { limit: 3 });
        assert.deepEqual(
          first.map((event) => event.data.n),
          [0, 1, 2],
        );
        assert.equal(first[0]?.type, 'connected');
        assert.equal(first[0]?.at, T0);
        assert.equal(first[0]?.authClientId, 'ac_1');
        assert.deepEqual(first[0]?.data, { n: 0, nested: { ok: true } });
        assert.equal(typeof first[0]?.id, 'number');
        for (let i = 1; i < first.length; i++)
          assert.ok((first[i]?.id ?? 0) > (first[i - 1]?.id ?? 0));

        const second = await f.store.events.list(f.tenantId, {
          limit: 3,
          after: first.at(-1)?.id as number,
        });
        assert.deepEqual(
          second.map((event) => event.data.n),
          [3, 4, 5],
        );
        const third = await f.store.events.list(f.tenantId, {
          limit: 3,
          after: second.at(-1)?.id as number,
        });
        assert.deepEqual(
          third.map((event) => event.data.n),
          [6],
        );
        assert.deepEqual(
          await f.store.events.list(f.tenantId, { limit: 3, after: third.at(-1)?.id as number }),
          [],
        );

        const odd = await f.store.events.list(f.tenantId, { limit: 10, credentialId: 'cr_odd' });
        assert.deepEqual(
          odd.map((event) => event.data.n),
          [1, 3, 5],
        );
        const oddAfter = await f.store.events.list(f.tenantId, {
          limit: 10,
          credentialId: 'cr_odd',
          after: odd[0]?.id as number,
        });
        assert.deepEqual(
          oddAfter.map((event) => event.data.n),
          [3, 5],
        );
        const others = await f.store.events.list(other.id, { limit: 100 });
        assert.deepEqual(
          others.map((event) => event.data.n),
          [100, 101, 102, 103, 104, 105, 106],
        );
        assert.ok(
          others.every((event) => event.credentialId === null && event.authClientId === null),
        );
      });

      if (engine.name === 'postgres') {
        test("a tenant's event-writing transactions commit one at a time, so ids are in commit order", async (t) => {
          const f = await fixture(t, engine);
          const other = await f.store.tenants.create('other', T0);
          const append = (n: number, trx?: Transaction<Database>, tenantId = f.tenantId) =>
            f.store.events.append({ type: 'refreshed', tenantId, data: { n } }, T0 + n, trx);
          await append(0);
          const [start] = await f.store.events.list(f.tenantId, { limit: 1 });
          assert.ok(start);
          // Transaction A appends and stays open; B appends while A is open.
          let finishA = () => {};
          const held = new Promise<void>((resolve) => {
            finishA = resolve;
          });
          let appendedA = () => {};
          const inA = new Promise<void>((resolve) => {
            appendedA = resolve;
          });
          const a = f.store.db.transaction().execute(async (trx) => {
            await append(1, trx);
            appendedA();
            await held;
          });
          let b: Promise<void> | undefined;
          try {
            await Promise.race([inA, a]);
            let bDone = false;
            b = append(2).then(() => {
              bDone = true;
            });
            // Another tenant is not held up.
            await Promise.race([
              append(3, undefined, other.id),
              sleep(5000, undefined, { ref: false }).then(() => {
                throw new Error("another tenant's append waited for A's transaction");
              }),
            ]);
            await sleep(300);
            // Without the lock B would take a higher id and commit first: a reader that
            // paged past it would never see A's lower id.
            assert.equal(bDone, false, "B's append waits for A's transaction");
            assert.deepEqual(
              await f.store.events.list(f.tenantId, { limit: 10, after: start.id }),
              [],
            );
          } finally {
            finishA();
            await a;
            await b;
          }
          const page = await f.store.events.list(f.tenantId, { limit: 10, after: start.id });
          assert.deepEqual(
            page.map((event) => event.data.n),
            [1, 2],
          );
          assert.ok((page[1]?.id ?? 0) > (page[0]?.id ?? 0));
        });
      }
    });

    describe('key rotation', () => {
      /** Credentials and auth clients under the data folder's current key file. */
      async function populate(f: Fixture) {
        const secrets = [secret('cs-a'), secret('cs-b')];
        const clients = [];
        for (const [i, clientSecret] of secrets.entries())
          clients.push(
            await f.store.authClients.create(
              f.tenantId,
              authClientInput(clientSecret, { name: `c${i}` }),
              T0 + i,
            ),
          );
        const credentials = [];
        for (let i = 0; i < 4; i++)
          credentials.push(
            await credential(f, clients[i % 2] as AuthClientRecord, tokenSet(T0 + i), T0 + i),
          );
        return { secrets, clients, credentials };
      }

      async function storedKids(handle: VaultDatabase): Promise<Set<string | undefined>> {
        const kids = new Set<string | undefined>();
        for (const row of await handle.db.selectFrom('credentials').select('token_enc').execute())
          kids.add(Keyring.kidOf(row.token_enc));
        for (const row of await handle.db
          .selectFrom('auth_clients')
          .select('client_secret_enc')
          .execute())
          kids.add(Keyring.kidOf(row.client_secret_enc));
        return kids;
      }

      async function assertPlaintextsKept(
        f: Fixture,
        store: VaultStore,
        data: Awaited<ReturnType<typeof populate>>,
      ) {
        for (const item of data.credentials) {
          const current = await store.credentials.getWithTokens(f.tenantId, item.record.id);
          assert.equal(current?.tokenSet.accessToken, item.tokens.accessToken);
          assert.equal(current?.tokenSet.refreshToken, item.tokens.refreshToken);
          assert.equal(current?.tokenSet.expiresAtMs, item.tokens.expiresAtMs);
          assert.equal(current?.version, 1, 're-encryption is not a token write');
        }
        for (const [i, client] of data.clients.entries())
          assert.equal(await sentClientSecret(store, f.tenantId, client.id), data.secrets[i]);
      }

      test('with a key file: every secret re-encrypted under a new key, the old key retired from the file', async (t) => {
        const f = await fixture(t, engine);
        const data = await populate(f);
        const oldKid = f.cipher.get().activeKid;
        assert.deepEqual(await storedKids(f.handle), new Set([oldKid]));

        const config = loadConfig({ ...f.database.env, LOG_LEVEL: 'silent' });
        const result = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.notEqual(result.newKeyId, oldKid);
        assert.deepEqual(result.reencrypted, { credentials: 4, authClients: 2, webhooks: 0 });
        assert.deepEqual(result.retired, [oldKid]);

        const keyFile = join(f.database.dataDir, KEY_FILE_NAME);
        assert.deepEqual(
          parseKeyList(await readFile(keyFile, 'utf8')).map((entry) => entry.kid),
          [result.newKeyId],
        );
        assert.deepEqual(await storedKids(f.handle), new Set([result.newKeyId]));

        // A process that starts now (only the new key) reads every value back unchanged.
        const fresh = new VaultStore(f.handle.db, await fileCipher(f.database.dataDir), catalog);
        await assertPlaintextsKept(f, fresh, data);
        // The old key alone no longer reads anything.
        const onlyOld = new VaultStore(
          f.handle.db,
          new Keyring([{ kid: oldKid, key: Buffer.alloc(32) }]),
          catalog,
        );
        await assert.rejects(
          onlyOld.credentials.getWithTokens(f.tenantId, data.credentials[0]?.record.id as string),
          KeyringError,
        );

        // Rotating again works the same way.
        const again = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.deepEqual(again.retired, [result.newKeyId]);
        await assertPlaintextsKept(
          f,
          new VaultStore(f.handle.db, await fileCipher(f.database.dataDir), catalog),
          data,
        );
      });

      test('a connect flow under way keeps its key until it ends', async (t) => {
        const f = await fixture(t, engine);
        const data = await populate(f);
        const oldKid = f.cipher.get().activeKid;
        const session = await f.store.connectSessions.create(
          {
            tenantId: f.tenantId,
            authClientId: data.clients[0]?.id as string,
            redirectUri: 'http://127.0.0.1/cb',
            returnTo: null,
            scopes: null,
          },
          T0,
          600_000,
        );
        const verifierEnc = f.cipher.encrypt('the-verifier', `connect_session:${session.id}`);
        await f.store.connectSessions.start(
          session.id,
          { stateHash: sha256Hex('s'), browserHash: sha256Hex('b'), verifierEnc },
          T0,
        );

        const config = loadConfig({ ...f.database.env, LOG_LEVEL: 'silent' });
        const result = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.deepEqual(result.retired, []);
        assert.deepEqual(await storedKids(f.handle), new Set([result.newKeyId]));
        const kids = parseKeyList(
          await readFile(join(f.database.dataDir, KEY_FILE_NAME), 'utf8'),
        ).map((entry) => entry.kid);
        assert.deepEqual(kids, [result.newKeyId, oldKid]);
        const fresh = await fileCipher(f.database.dataDir);
        assert.equal(fresh.decrypt(verifierEnc, `connect_session:${session.id}`), 'the-verifier');

        await f.store.connectSessions.complete(session.id, 'cr_x');
        const later = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.deepEqual(later.retired.sort(), [oldKid, result.newKeyId].sort());
      });

      test('with TOKENWARDEN_MASTER_KEYS="new:…,old:…": re-encrypted under new, old reported retired, no key file', async (t) => {
        const database = await engine.create(t);
        const handle = await database.open();
        const oldKey = randomBytes(32);
        const newKey = randomBytes(32);
        const unusedKey = randomBytes(32);
        const oldRing = new Keyring([{ kid: 'old', key: oldKey }]);
        const store = new VaultStore(handle.db, oldRing, catalog);
        const tenant = await store.tenants.create('acme', T0);
        const f: Fixture = {
          database,
          handle,
          store,
          cipher: new KeyringHolder(oldRing, undefined),
          tenantId: tenant.id,
        };
        const data = await populate(f);

        const masterKeys = `new:${newKey.toString('base64')},old:${oldKey.toString('base64')},unused:${unusedKey.toString('base64')}`;
        const config = loadConfig({
          ...database.env,
          TOKENWARDEN_MASTER_KEYS: masterKeys,
          LOG_LEVEL: 'silent',
        });
        const result = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.equal(result.newKeyId, 'new');
        assert.deepEqual(result.reencrypted, { credentials: 4, authClients: 2, webhooks: 0 });
        assert.deepEqual(result.retired.sort(), ['old', 'unused']);
        assert.deepEqual(await storedKids(handle), new Set(['new']));
        await assert.rejects(readFile(join(database.dataDir, KEY_FILE_NAME)), { code: 'ENOENT' });

        const onlyNew = new VaultStore(
          handle.db,
          new Keyring([{ kid: 'new', key: newKey }]),
          catalog,
        );
        await assertPlaintextsKept(f, onlyNew, data);

        // Run again with the same keys: nothing left under old, so nothing to do but re-encrypt under new.
        const again = await rotateKeys(config, { pickupWaitMs: 0 });
        assert.deepEqual(again.retired.sort(), ['old', 'unused']);
        await assertPlaintextsKept(f, onlyNew, data);
      });

      test('a running vault keeps serving tokens before, during and after a rotation by another process', async (t) => {
        const database = await engine.create(t);
        const adminKey = `twk_rotation_${randomBytes(32).toString('base64url')}`;
        const config = loadConfig({
          ...database.env,
          PORT: '0',
          LOG_LEVEL: 'silent',
          TOKENWARDEN_ADMIN_KEY: adminKey,
          // The auth client's endpoints are on 127.0.0.1.
          TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
        });
        const vault = await startVault(config);
        try {
          const call = async (method: string, path: string, body?: unknown) => {
            const response = await fetch(`${vault.url}${path}`, {
              method,
              headers: {
                authorization: `Bearer ${adminKey}`,
                ...(body === undefined ? {} : { 'content-type': 'application/json' }),
              },
              ...(body === undefined ? {} : { body: JSON.stringify(body) }),
            });
            const text = await response.text();
            return {
              status: response.status,
              json: text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>),
            };
          };
          const created = await call('POST', '/v1/auth-clients', authClientInput(secret('client')));
          assert.equal(created.status, 201, JSON.stringify(created.json));
          const authClientId = created.json?.id as string;

          const latest = new Map<string, string>();
          for (let i = 0; i < 3; i++) {
            const accessToken = secret(`imported-${i}`);
            const imported = await call('POST', '/v1/credentials', {
              authClientId,
              tokens: { access_token: accessToken, refresh_token: secret('rt'), expires_in: 3600 },
            });
            assert.equal(imported.status, 201, JSON.stringify(imported.json));
            latest.set(imported.json?.id as string, accessToken);
          }
          const oldKid = (await loadKeyring({ masterKeys: undefined, dataDir: database.dataDir }))
            .keyring.activeKid;

          const serveAll = async (phase: string) => {
            for (const [id, accessToken] of latest) {
              const answer = await call('POST', `/v1/credentials/${id}/access-token`, {});
              assert.equal(answer.status, 200, `${phase}: ${JSON.stringify(answer.json)}`);
              assert.equal(
                answer.json?.access_token,
                accessToken,
                `${phase}: the latest token of ${id}`,
              );
            }
          };
          await serveAll('before');

          // Another process (its own connection and keyring, same data folder) rotates, with the
          // default pick-up wait, while this vault keeps answering and writing (updateKeys).
          let done = false;
          const rotation = rotateKeys(config).finally(() => {
            done = true;
          });
          let rounds = 0;
          let writes = 0;
          while (!done) {
            await serveAll(`during, round ${rounds}`);
            for (const id of latest.keys()) {
              const accessToken = secret('updated');
              const updated = await call('PUT', `/v1/credentials/${id}/keys`, {
                access_token: accessToken,
                expires_in: 3600,
              });
              assert.equal(updated.status, 200, JSON.stringify(updated.json));
              latest.set(id, accessToken);
              writes++;
            }
            rounds++;
            await sleep(25);
          }
          const result = await rotation;
          assert.ok(rounds >= 3, `served during the rotation (${rounds} rounds, ${writes} writes)`);
          assert.notEqual(result.newKeyId, oldKid);
          assert.deepEqual(result.retired, [oldKid]);
          assert.equal(result.reencrypted.authClients, 1);

          await serveAll('right after');
          for (const id of latest.keys()) {
            const accessToken = secret('after');
            assert.equal(
              (await call('PUT', `/v1/credentials/${id}/keys`, { access_token: accessToken }))
                .status,
              200,
            );
            latest.set(id, accessToken);
          }
          await serveAll('after');

          // Nothing was lost: a process starting now, with only the key file's keys, reads every value.
          const keyFileKids = parseKeyList(
            await readFile(join(database.dataDir, KEY_FILE_NAME), 'utf8'),
          ).map((entry) => entry.kid);
          assert.deepEqual(keyFileKids, [result.newKeyId]);
          const handle = await database.open();
          const fresh = new VaultStore(handle.db, await fileCipher(database.dataDir), catalog);
          for (const [id, accessToken] of latest) {
            const current = await fresh.credentials.getWithTokens(DEFAULT_TENANT_ID, id);
            assert.equal(current?.tokenSet.accessToken, accessToken);
            assert.equal(
              Keyring.kidOf((await rawCredential(handle, id)).token_enc),
              result.newKeyId,
            );
          }
          assert.ok(await fresh.authClients.resolve(DEFAULT_TENANT_ID, authClientId));
        } finally {
          await vault.close();
        }
      });
    });
  });
}
