import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.ts';
import { apiKeyId, digestsEqual, newApiKey, newId, sha256Hex } from './ids.ts';

export interface Tenant {
  id: string;
  name: string;
  createdAt: number;
}

export interface ApiKeyInfo {
  id: string;
  tenantId: string;
  label: string;
  admin: boolean;
  createdAt: number;
  lastUsedAt: number | null;
}

export const DEFAULT_TENANT_ID = 'default';

export class TenantRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async ensureDefaultTenant(now: number): Promise<void> {
    await this.#db
      .insertInto('tenants')
      .values({ id: DEFAULT_TENANT_ID, name: 'default', created_at: now })
      .onConflict((c) => c.column('id').doNothing())
      .execute();
  }

  async create(name: string, now: number): Promise<Tenant> {
    const id = newId('tn');
    await this.#db.insertInto('tenants').values({ id, name, created_at: now }).execute();
    return { id, name, createdAt: now };
  }

  async list(): Promise<Tenant[]> {
    const rows = await this.#db.selectFrom('tenants').selectAll().orderBy('created_at').execute();
    return rows.map((row) => ({ id: row.id, name: row.name, createdAt: row.created_at }));
  }

  async exists(id: string): Promise<boolean> {
    return (
      (await this.#db
        .selectFrom('tenants')
        .select('id')
        .where('id', '=', id)
        .executeTakeFirst()) !== undefined
    );
  }

  /** Creates a key; the plaintext is returned this once and never stored. */
  async createApiKey(
    tenantId: string,
    label: string,
    admin: boolean,
    now: number,
  ): Promise<ApiKeyInfo & { key: string }> {
    const { id, key } = newApiKey();
    await this.#db
      .insertInto('api_keys')
      .values({
        id,
        tenant_id: tenantId,
        key_hash: sha256Hex(key),
        label,
        is_admin: admin ? 1 : 0,
        created_at: now,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
    return { id, key, tenantId, label, admin, createdAt: now, lastUsedAt: null };
  }

  /** Registers a key given from outside (the admin key from the environment), idempotently. */
  async ensureApiKey(
    key: string,
    tenantId: string,
    label: string,
    admin: boolean,
    now: number,
  ): Promise<void> {
    const id = apiKeyId(key);
    if (id === undefined) throw new Error('the admin key does not have the form twk_<id>_<secret>');
    await this.#db
      .insertInto('api_keys')
      .values({
        id,
        tenant_id: tenantId,
        key_hash: sha256Hex(key),
        label,
        is_admin: admin ? 1 : 0,
        created_at: now,
        last_used_at: null,
        revoked_at: null,
      })
      .onConflict((c) =>
        c
          .column('id')
          .doUpdateSet({ key_hash: sha256Hex(key), is_admin: admin ? 1 : 0, revoked_at: null }),
      )
      .execute();
  }

  async hasAdminKey(): Promise<boolean> {
    const row = await this.#db
      .selectFrom('api_keys')
      .select('id')
      .where('is_admin', '=', 1)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return row !== undefined;
  }

  /**
   * The key's owner, or undefined. Looked up by the id embedded in the key, then
   * the hashes are compared in constant time.
   */
  async authenticate(key: string, now: number): Promise<ApiKeyInfo | undefined> {
    const id = apiKeyId(key);
    if (id === undefined) return undefined;
    const row = await this.#db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (row === undefined || row.revoked_at !== null || !digestsEqual(row.key_hash, sha256Hex(key)))
      return undefined;
    // Coarse: at most one write a minute per key, so the hot path stays read-only.
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.#db
        .updateTable('api_keys')
        .set({ last_used_at: now })
        .where('id', '=', id)
        .execute();
    }
    return {
      id: row.id,
      tenantId: row.tenant_id,
      label: row.label,
      admin: row.is_admin === 1,
      createdAt: row.created_at,
      lastUsedAt: row.last_used_at,
    };
  }

  async listApiKeys(tenantId: string): Promise<ApiKeyInfo[]> {
    const rows = await this.#db
      .selectFrom('api_keys')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is', null)
      .orderBy('created_at')
      .execute();
    return rows.map((row) => ({
      id: row.id,
      tenantId: row.tenant_id,
      label: row.label,
      admin: row.is_admin === 1,
      createdAt: row.created_at,
      lastUsedAt: row.last_used_at,
    }));
  }

  async revokeApiKey(tenantId: string, id: string, now: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('api_keys')
      .set({ revoked_at: now })
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}
