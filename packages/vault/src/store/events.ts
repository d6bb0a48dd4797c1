import type { Kysely, Transaction } from 'kysely';
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

  constructor(db: Kysely<Database>) {
    this.#db = db;
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

  /** A page of a tenant's events, oldest first, after the given id. */
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
