import {
  type AuthClient,
  createAuthClient,
  type ProviderCatalog,
  TokenwardenError,
} from '@tokenwarden/oauth';
import type { Kysely } from 'kysely';
import type { Cipher } from '../crypto/keyring.ts';
import type { AuthClientsTable, Database } from '../db/schema.ts';
import { newId } from './ids.ts';

export interface AuthClientEndpoints {
  authorizationUrl?: string;
  tokenUrl?: string;
  revocationUrl?: string;
}

/** An auth client as the API shows it: the secret never leaves the vault. */
export interface AuthClientRecord {
  id: string;
  tenantId: string;
  name: string;
  providerId: string;
  clientId: string;
  hasClientSecret: boolean;
  scopes: string[];
  placeholders: Record<string, string>;
  endpoints: AuthClientEndpoints;
  status: 'ok' | 'misconfigured';
  statusReason: string | null;
  createdAt: number;
  updatedAt: number;
}

export interface AuthClientInput {
  name: string;
  providerId: string;
  clientId: string;
  clientSecret: string;
  scopes?: string[] | undefined;
  placeholders?: Record<string, string> | undefined;
  endpoints?: AuthClientEndpoints | undefined;
}

const aad = (id: string) => `auth_client:${id}`;

export class AuthClientRepository {
  readonly #db: Kysely<Database>;
  readonly #keyring: Cipher;
  readonly #catalog: ProviderCatalog;

  constructor(db: Kysely<Database>, keyring: Cipher, catalog: ProviderCatalog) {
    this.#db = db;
    this.#keyring = keyring;
    this.#catalog = catalog;
  }

  /** Checks an auth client against its profile exactly as a refresh would use it. */
  validate(input: AuthClientInput): AuthClient {
    const profile = this.#catalog.get(input.providerId);
    if (profile === undefined) {
      throw new TokenwardenError(
        'invalid_configuration',
        `unknown provider "${input.providerId}"; GET /v1/providers lists them`,
      );
    }
    return createAuthClient({
      profile,
      clientId: input.clientId,
      clientSecret: input.clientSecret,
      ...(input.scopes === undefined ? {} : { scopes: input.scopes }),
      ...(input.placeholders === undefined ? {} : { placeholders: input.placeholders }),
      ...(input.endpoints === undefined ? {} : { endpoints: input.endpoints }),
    });
  }

  async create(
    tenantId: string,
    input: AuthClientInput,
    now: number,
    id: string = newId('ac'),
  ): Promise<AuthClientRecord> {
    const client = this.validate(input);
    const row: AuthClientsTable = {
      id,
      tenant_id: tenantId,
      name: input.name,
      provider_id: input.providerId,
      client_id: input.clientId,
      client_secret_enc: this.#keyring.encrypt(input.clientSecret, aad(id)),
      scopes: JSON.stringify(input.scopes ?? [...client.scopes]),
      placeholders: JSON.stringify(input.placeholders ?? {}),
      endpoints: JSON.stringify(input.endpoints ?? {}),
      status: 'ok',
      status_reason: null,
      created_at: now,
      updated_at: now,
    };
    await this.#db.insertInto('auth_clients').values(row).execute();
    return toRecord(row);
  }

  async get(tenantId: string, id: string): Promise<AuthClientRecord | undefined> {
    const row = await this.#row(tenantId, id);
    return row === undefined ? undefined : toRecord(row);
  }

  async list(tenantId: string): Promise<AuthClientRecord[]> {
    const rows = await this.#db
      .selectFrom('auth_clients')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at')
      .execute();
    return rows.map(toRecord);
  }

  /**
   * Merges a patch into a stored auth client. `check` sees the merged, checked
   * client before anything is written and throws to refuse it (the API's
   * endpoint policy): what it approves is exactly what is stored.
   */
  async update(
    tenantId: string,
    id: string,
    patch: Partial<Omit<AuthClientInput, 'providerId'>>,
    now: number,
    check?: (client: AuthClient) => void,
  ): Promise<AuthClientRecord | undefined> {
    const row = await this.#row(tenantId, id);
    if (row === undefined) return undefined;
    const current = toRecord(row);
    const secret = patch.clientSecret ?? this.#keyring.decrypt(row.client_secret_enc, aad(id));
    const merged: AuthClientInput = {
      name: patch.name ?? current.name,
      providerId: current.providerId,
      clientId: patch.clientId ?? current.clientId,
      clientSecret: secret,
      scopes: patch.scopes ?? current.scopes,
      placeholders: patch.placeholders ?? current.placeholders,
      endpoints: patch.endpoints ?? current.endpoints,
    };
    const client = this.validate(merged);
    check?.(client);
    await this.#db
      .updateTable('auth_clients')
      .set({
        name: merged.name,
        client_id: merged.clientId,
        client_secret_enc: this.#keyring.encrypt(secret, aad(id)),
        scopes: JSON.stringify(merged.scopes),
        placeholders: JSON.stringify(merged.placeholders),
        endpoints: JSON.stringify(merged.endpoints),
        // New settings deserve a new chance: a misconfiguration flag is cleared.
        status: 'ok',
        status_reason: null,
        updated_at: now,
      })
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .execute();
    return this.get(tenantId, id);
  }

  async delete(tenantId: string, id: string): Promise<boolean> {
    const result = await this.#db
      .deleteFrom('auth_clients')
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  async markMisconfigured(id: string, reason: string, now: number): Promise<void> {
    await this.#db
      .updateTable('auth_clients')
      .set({ status: 'misconfigured', status_reason: reason, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  /** The oauth view of a stored auth client, secret decrypted, for a protocol call. */
  async resolve(
    tenantId: string,
    id: string,
  ): Promise<{ record: AuthClientRecord; client: AuthClient } | undefined> {
    const row = await this.#row(tenantId, id);
    if (row === undefined) return undefined;
    const record = toRecord(row);
    const client = this.validate({
      name: record.name,
      providerId: record.providerId,
      clientId: record.clientId,
      clientSecret: this.#keyring.decrypt(row.client_secret_enc, aad(id)),
      scopes: record.scopes,
      placeholders: record.placeholders,
      endpoints: record.endpoints,
    });
    return { record, client };
  }

  /** Re-encrypts every secret under the active key. Returns how many rows changed. */
  async reencryptAll(): Promise<number> {
    const keyring = this.#keyring;
    const rows = await this.#db
      .selectFrom('auth_clients')
      .select(['id', 'client_secret_enc'])
      .execute();
    let changed = 0;
    for (const row of rows) {
      const secret = keyring.decrypt(row.client_secret_enc, aad(row.id));
      const result = await this.#db
        .updateTable('auth_clients')
        .set({ client_secret_enc: keyring.encrypt(secret, aad(row.id)) })
        .where('id', '=', row.id)
        .where('client_secret_enc', '=', row.client_secret_enc)
        .executeTakeFirst();
      changed += Number(result.numUpdatedRows);
    }
    return changed;
  }

  #row(tenantId: string, id: string): Promise<AuthClientsTable | undefined> {
    return this.#db
      .selectFrom('auth_clients')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
  }
}

function toRecord(row: AuthClientsTable): AuthClientRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    name: row.name,
    providerId: row.provider_id,
    clientId: row.client_id,
    hasClientSecret: row.client_secret_enc.length > 0,
    scopes: JSON.parse(row.scopes) as string[],
    placeholders: JSON.parse(row.placeholders) as Record<string, string>,
    endpoints: JSON.parse(row.endpoints) as AuthClientEndpoints,
    status: row.status,
    statusReason: row.status_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
