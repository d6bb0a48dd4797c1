import { type Kysely, PostgresAdapter, sql, type Transaction } from 'kysely';
import type { Database, EventType } from '../db/schema.ts';
import { VaultError } from '../errors.ts';
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
   * Appends an event, inside the caller's transaction when given one. When
   * webhooks of the tenant subscribe to its type, their deliveries (the outbox)
   * are written in the same transaction: an event is never announced without
   * being stored, nor stored without being announced.
   */
  async append(event: NewEvent, now: number, trx?: Transaction<Database>): Promise<void> {
    const values = {
      tenant_id: event.tenantId,
      credential_id: event.credentialId ?? null,
      auth_client_id: event.authClientId ?? null,
      type: event.type,
      data: JSON.stringify(event.data ?? {}),
      created_at: now,
    };
    const webhookIds = await subscribedWebhookIds(trx ?? this.#db, event.tenantId, event.type);
    if (webhookIds.length === 0 || !isWebhookEventType(event.type)) {
      await (trx ?? this.#db).insertInto('events').values(values).execute();
      return;
    }
    const type = event.type;
    const write = async (executor: Transaction<Database>) => {
      const inserted = await executor
        .insertInto('events')
        .values(values)
        .returning('id')
        .executeTakeFirstOrThrow();
      await insertDeliveries(
        executor,
        { id: Number(inserted.id), tenantId: event.tenantId, type },
        webhookIds,
        now,
      );
    };
    if (trx !== undefined) await write(trx);
    else await this.#db.transaction().execute(write);
  }

  /**
   * A page of a tenant's events, oldest first, after the event `after`.
   *
   * On PostgreSQL an id is taken when a transaction inserts, not when it commits, so a
   * reader paging by id alone would skip an event whose transaction commits after a
   * later id was handed out. There the order is the writing transaction's id, then the
   * event's id, and an event is handed out only once every transaction older than its
   * own has ended (`pg_snapshot_xmin`): a page never has a gap that fills in later.
   * SQLite writes one transaction at a time, so its ids are already commit order.
   */
  async list(
    tenantId: string,
    options: { after?: number; limit: number; credentialId?: string },
  ): Promise<VaultEvent[]> {
    let query = this.#db.selectFrom('events').selectAll().where('tenant_id', '=', tenantId);
    if (options.credentialId !== undefined)
      query = query.where('credential_id', '=', options.credentialId);
    if (options.after !== undefined) {
      const after = options.after;
      const cursor = await this.#db
        .selectFrom('events')
        .select(this.#postgres ? sql<string>`txid::text`.as('txid') : sql<null>`null`.as('txid'))
        .where('tenant_id', '=', tenantId)
        .where('id', '=', after)
        .executeTakeFirst();
      if (cursor === undefined) throw unknownCursor(after);
      query =
        cursor.txid === null
          ? query.where('id', '>', after)
          : query.where(sql<boolean>`(txid, id) > (${cursor.txid}::xid8, ${after})`);
    }
    query = this.#postgres
      ? query
          .where(sql<boolean>`txid < pg_snapshot_xmin(pg_current_snapshot())`)
          .orderBy(sql`txid`)
          .orderBy('id')
      : query.orderBy('id');
    const rows = await query.limit(options.limit).execute();
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

function unknownCursor(after: number): VaultError {
  return new VaultError(
    'validation_failed',
    `after: there is no event ${after}; pass the id of an event from an earlier page, or leave it out to start from the oldest`,
  );
}
