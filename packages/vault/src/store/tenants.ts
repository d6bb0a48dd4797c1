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

/**
 * How long a successful API key lookup is reused. Every /v1 request authenticates,
 * and the valid-token path is otherwise one credential read: the cache halves its
 * database reads (bench/s2-token-api.ts). A revocation through this process takes
 * effect at once; one made through another replica, within this time.
 */
export const API_KEY_CACHE_MS = 5_000;
const API_KEY_CACHE_SIZE = 10_000;

interface CachedKey {
  /**
   * The key itself, as checked against the row's hash when the entry was made:
   * a later call presenting the same bytes (compared in constant time) is that
   * key, with no hash to compute on the hot path.
   */
  key: Buffer;
  info: ApiKeyInfo;
  until: number;
}

export class TenantRepository {
  readonly #db: Kysely<Database>;
  /** By key id; only successful lookups, compared by hash like a database row. */
  readonly #keys = new Map<string, CachedKey>();

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
    this.#forget(id);
    const keyHash = sha256Hex(key);
    // Replicas starting together run this at once. An upsert on `id` is not enough
    // there: PostgreSQL resolves only the named constraint, and the racing insert
    // can meet the unique `key_hash` first (an error, and a replica that does not
    // start). So: insert unless any unique key exists, then bring the row up to date.
    await this.#db
      .insertInto('api_keys')
      .values({
        id,
        tenant_id: tenantId,
        key_hash: keyHash,
        label,
        is_admin: admin ? 1 : 0,
        created_at: now,
        last_used_at: null,
        revoked_at: null,
      })
      .onConflict((c) => c.doNothing())
      .execute();
    await this.#db
      .updateTable('api_keys')
      .set({ key_hash: keyHash, is_admin: admin ? 1 : 0, revoked_at: null })
      .where('id', '=', id)
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

  /** Drops a cached key lookup and zeroes the key's bytes. */
  #forget(id: string): void {
    const cached = this.#keys.get(id);
    if (cached === undefined) return;
    cached.key.fill(0);
    this.#keys.delete(id);
  }

  /**
   * The key's owner from the cache of successful lookups, or undefined (then
   * `authenticate` reads the row). Synchronous: the hot path's first try.
   */
  cachedAuthentication(key: string, now: number): ApiKeyInfo | undefined {
    const id = apiKeyId(key);
    if (id === undefined) return undefined;
    const cached = this.#keys.get(id);
    if (cached === undefined) return undefined;
    // Anything but a fresh entry (a clock that went back, as in tests, included) reads
    // the row; an expired entry goes, and with it the key's bytes.
    if (now >= cached.until || now < cached.until - API_KEY_CACHE_MS) {
      this.#forget(id);
      return undefined;
    }
    return sameAsciiBytes(cached.key, key) ? cached.info : undefined;
  }

  /**
   * The key's owner, or undefined. Looked up by the id embedded in the key, then
   * the hashes are compared in constant time.
   */
  async authenticate(key: string, now: number): Promise<ApiKeyInfo | undefined> {
    const id = apiKeyId(key);
    if (id === undefined) return undefined;
    const cached = this.cachedAuthentication(key, now);
    if (cached !== undefined) return cached;
    const hash = sha256Hex(key);
    const row = await this.#db
      .selectFrom('api_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (row === undefined || row.revoked_at !== null || !digestsEqual(row.key_hash, hash)) {
      this.#forget(id);
      return undefined;
    }
    // Coarse: at most one write a minute per key, so the hot path stays read-only.
    if (row.last_used_at === null || now - row.last_used_at > 60_000) {
      await this.#db
        .updateTable('api_keys')
        .set({ last_used_at: now })
        .where('id', '=', id)
        .execute();
    }
    const info: ApiKeyInfo = Object.freeze({
      id: row.id,
      tenantId: row.tenant_id,
      label: row.label,
      admin: row.is_admin === 1,
      createdAt: row.created_at,
      lastUsedAt: row.last_used_at,
    });
    if (this.#keys.size >= API_KEY_CACHE_SIZE)
      for (const key of [...this.#keys.keys()]) this.#forget(key);
    this.#forget(id);
    // A buffer of its own (not a slice of Node's shared pool), zeroed when it goes.
    const bytes = Buffer.alloc(Buffer.byteLength(key, 'utf8'));
    bytes.write(key, 'utf8');
    this.#keys.set(id, { key: bytes, info, until: now + API_KEY_CACHE_MS });
    return info;
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
    this.#forget(id);
    const result = await this.#db
      .updateTable('api_keys')
      .set({ revoked_at: now })
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    // Again: a lookup that read the row before this update may have cached it meanwhile.
    this.#forget(id);
    return Number(result.numUpdatedRows) === 1;
  }
}

/**
 * Whether `text` (ASCII: `apiKeyId` accepted it) has exactly the bytes `bytes`,
 * in time that depends on the length only: every byte is compared, no early
 * exit. The hot path's comparison: no buffer for the presented key per call.
 */
export function sameAsciiBytes(bytes: Uint8Array, text: string): boolean {
  if (bytes.length !== text.length) return false;
  let difference = 0;
  for (let i = 0; i < text.length; i++) difference |= (bytes[i] as number) ^ text.charCodeAt(i);
  return difference === 0;
}
