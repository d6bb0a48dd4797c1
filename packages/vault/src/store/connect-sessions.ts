import type { Kysely } from 'kysely';
import type { ConnectSessionsTable, Database } from '../db/schema.ts';
import { newId } from './ids.ts';

export interface ConnectSession {
  id: string;
  tenantId: string;
  authClientId: string;
  redirectUri: string;
  returnTo: string | null;
  scopes: string[] | null;
  status: 'pending' | 'started' | 'completed' | 'failed';
  error: { code: string; message: string } | null;
  credentialId: string | null;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  stateHash: string | null;
  browserHash: string | null;
  verifierEnc: string | null;
}

export type ConsumeResult =
  | { outcome: 'consumed'; session: ConnectSession }
  | { outcome: 'unknown' }
  | { outcome: 'replayed'; session: ConnectSession };

export class ConnectSessionRepository {
  readonly #db: Kysely<Database>;

  constructor(db: Kysely<Database>) {
    this.#db = db;
  }

  async create(
    input: {
      tenantId: string;
      authClientId: string;
      redirectUri: string;
      returnTo: string | null;
      scopes: string[] | null;
    },
    now: number,
    ttlMs: number,
  ): Promise<ConnectSession> {
    const row: ConnectSessionsTable = {
      id: newId('cs'),
      tenant_id: input.tenantId,
      auth_client_id: input.authClientId,
      state_hash: null,
      browser_hash: null,
      verifier_enc: null,
      redirect_uri: input.redirectUri,
      return_to: input.returnTo,
      scopes: input.scopes === null ? null : JSON.stringify(input.scopes),
      status: 'pending',
      error_code: null,
      error_message: null,
      credential_id: null,
      created_at: now,
      expires_at: now + ttlMs,
      used_at: null,
    };
    await this.#db.insertInto('connect_sessions').values(row).execute();
    return toSession(row);
  }

  async get(id: string): Promise<ConnectSession | undefined> {
    const row = await this.#db
      .selectFrom('connect_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row === undefined ? undefined : toSession(row);
  }

  /**
   * The browser opened the connect link: bind the flow to it (cookie hash), and
   * record the state and encrypted PKCE verifier. Allowed again (a reload) until
   * the callback consumes the state.
   */
  async start(
    id: string,
    values: { stateHash: string; browserHash: string; verifierEnc: string },
    now: number,
  ): Promise<boolean> {
    const result = await this.#db
      .updateTable('connect_sessions')
      .set({
        state_hash: values.stateHash,
        browser_hash: values.browserHash,
        verifier_enc: values.verifierEnc,
        status: 'started',
      })
      .where('id', '=', id)
      .where('used_at', 'is', null)
      .where('status', 'in', ['pending', 'started'])
      .where('expires_at', '>', now)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Marks the state used, once: a second callback with the same state is a replay. */
  async consume(stateHash: string, now: number): Promise<ConsumeResult> {
    const result = await this.#db
      .updateTable('connect_sessions')
      .set({ used_at: now })
      .where('state_hash', '=', stateHash)
      .where('used_at', 'is', null)
      .executeTakeFirst();
    const row = await this.#db
      .selectFrom('connect_sessions')
      .selectAll()
      .where('state_hash', '=', stateHash)
      .executeTakeFirst();
    if (row === undefined) return { outcome: 'unknown' };
    return Number(result.numUpdatedRows) === 1
      ? { outcome: 'consumed', session: toSession(row) }
      : { outcome: 'replayed', session: toSession(row) };
  }

  async complete(id: string, credentialId: string): Promise<void> {
    // The verifier has done its job: it is not kept.
    await this.#db
      .updateTable('connect_sessions')
      .set({ status: 'completed', credential_id: credentialId, verifier_enc: null })
      .where('id', '=', id)
      .execute();
  }

  async fail(id: string, code: string, message: string): Promise<void> {
    await this.#db
      .updateTable('connect_sessions')
      .set({ status: 'failed', error_code: code, error_message: message, verifier_enc: null })
      .where('id', '=', id)
      .where('status', '!=', 'completed')
      .execute();
  }
}

function toSession(row: ConnectSessionsTable): ConnectSession {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    authClientId: row.auth_client_id,
    redirectUri: row.redirect_uri,
    returnTo: row.return_to,
    scopes: row.scopes === null ? null : (JSON.parse(row.scopes) as string[]),
    status: row.status,
    error:
      row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    credentialId: row.credential_id,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    stateHash: row.state_hash,
    browserHash: row.browser_hash,
    verifierEnc: row.verifier_enc,
  };
}
