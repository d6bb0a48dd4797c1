import { type Kysely, PostgresAdapter, sql, type Transaction } from 'kysely';
import type { Database, EventType } from '../db/schema.ts';
import { insertDeliveries, isWebhookEventType, subscribedWebhookIds } from './webhooks.ts';

export interface VaultEvent {
  id: number;
  type: EventType;
  tenantId: string;
  credentialId: string | null;
  authClientId: string | null;
  at: number;
  data: Record<string, unknown>;
}

export interface NewEvent {
  type: EventType;
  tenantId: string;
  credentialId?: string | null;
  authClientId?: string | null;
  /** Never a secret: reasons, codes, expiry times. */
  data?: Record<string, unknown>;
}

export class EventRepository {
  readonly #db: Kysely<Database>;
  readonly #postgres: boolean;

  constructor(db: Kysely<Database>) {
    this.#db = db;
    this.#postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  /**
   * Appends an event, inside the caller's transaction when given one (as the last
   * write of it: see below), else in one of its own. When webhooks of the tenant subscribe to its type,
   * their deliveries (the outbox) are written in the same transaction: an event is
   * never announced without being stored, nor stored without being announced.
   *
   * Ids are in commit order within a tenant, so that a reader paging with
   * `after=<last id>` never skips an event. SQLite writes one transaction at a time.
   * PostgreSQL takes an id at insert, not at commit, so two transactions could
   * commit in the other order; there each append first takes a transaction-scoped
   * advisory lock of the tenant's events, held until its transaction ends, so the
   * event-writing transactions of one tenant commit one at a time from their first
   * event on. Callers append last, after every row lock they need, so no holder of the
   * lock ever waits for a row lock that a waiter for it holds.
   */
  async append(event: NewEvent, now: number, trx?: Transaction<Database>): Promise<void> {
    if (trx === undefined) {
      await this.#db.transaction().execute((own) => this.append(event, now, own));
      return;
    }
    if (this.#postgres) {
      // Keyed by the tenant and the table itself (its oid, resolved as the insert below
      // resolves it), not by current_schema(), which can differ between roles that
      // reach the same table.
      await sql`select pg_advisory_xact_lock(hashtextextended(${`tokenwarden events ${event.tenantId}`}::text, 'events'::regclass::oid::bigint))`.execute(
        trx,
      );
    }
    const insert = trx.insertInto('events').values({
      tenant_id: event.tenantId,
      credential_id: event.credentialId ?? null,
      auth_client_id: event.authClientId ?? null,
      type: event.type,
      data: JSON.stringify(event.data ?? {}),
      created_at: now,
    });
    const webhookIds = await subscribedWebhookIds(trx, event.tenantId, event.type);
    if (webhookIds.length === 0 || !isWebhookEventType(event.type)) {
      await insert.execute();
      return;
    }
    const inserted = await insert.returning('id').executeTakeFirstOrThrow();
    await insertDeliveries(
      trx,
      { id: Number(inserted.id), tenantId: event.tenantId, type: event.type },
      webhookIds,
      now,
    );
  }

  /** A page of a tenant's events, oldest first (commit order), after the given id. */
  async list(
    tenantId: string,
    options: { after?: number; limit: number; credentialId?: string },
  ): Promise<VaultEvent[]> {
    let query = this.#db.selectFrom('events').selectAll().where('tenant_id', '=', tenantId);
    if (options.after !== undefined) query = query.where('id', '>', options.after);
    if (options.credentialId !== undefined)
      query = query.where('credential_id', '=', options.credentialId);
    const rows = await query.orderBy('id').limit(options.limit).execute();
    return rows.map((row) => ({
      id: Number(row.id),
      type: row.type,
      tenantId: row.tenant_id,
      credentialId: row.credential_id,
      authClientId: row.auth_client_id,
      at: row.created_at,
      data: JSON.parse(row.data) as Record<string, unknown>,
    }));
  }
}
