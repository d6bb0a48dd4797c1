import { type Kysely, PostgresAdapter, sql, type Transaction } from 'kysely';
import { type Cipher, Keyring } from '../crypto/keyring.ts';
import type {
  Database,
  EventType,
  WebhookDeliveriesTable,
  WebhookDeliveryStatus,
  WebhookEventType,
  WebhooksTable,
} from '../db/schema.ts';
import { newWebhookSecret } from '../webhooks/signature.ts';
import type { VaultEvent } from './events.ts';
import { newId } from './ids.ts';

/** The credential events a webhook may subscribe to, in the order the docs list them. */
export const WEBHOOK_EVENT_TYPES: readonly WebhookEventType[] = Object.freeze([
  'connected',
  'refreshed',
  'refresh_failed',
  'reauth_required',
  'revoked',
]);

/** How many webhooks one tenant may have: every event is sent once per subscription. */
export const MAX_WEBHOOKS_PER_TENANT = 25;

export function isWebhookEventType(type: EventType): type is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);
}

/** A delivery as the API shows it. */
export interface DeliveryRecord {
  id: string;
  webhookId: string;
  eventId: number;
  eventType: WebhookEventType;
  status: WebhookDeliveryStatus;
  attempts: number;
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  lastHttpStatus: number | null;
  lastError: string | null;
  deliveredAt: number | null;
  createdAt: number;
}

/** A subscription as the API shows it: the signing secret never leaves the vault after creation. */
export interface WebhookRecord {
  id: string;
  tenantId: string;
  url: string;
  events: WebhookEventType[];
  createdAt: number;
  updatedAt: number;
  /** The delivery of the most recent event sent to it, if any. */
  lastDelivery: DeliveryRecord | null;
}

/** A delivery a worker holds the claim of, with what it needs to send it. */
export interface ClaimedDelivery {
  id: string;
  webhookId: string;
  tenantId: string;
  url: string;
  /** Encrypted; see {@link WebhookRepository.decryptSecret}. */
  secretEnc: string;
  /** Attempts made before this one. */
  attempts: number;
  /** Undefined when the event row is gone (never, unless someone pruned events). */
  event: VaultEvent | undefined;
}

export type AttemptResult =
  | { outcome: 'delivered'; httpStatus: number }
  | { outcome: 'failed'; httpStatus: number | null; error: string; nextAttemptAt: number }
  | { outcome: 'gave_up'; httpStatus: number | null; error: string };

const aad = (id: string) => `webhook:${id}`;
type Executor = Kysely<Database> | Transaction<Database>;

/**
 * Webhooks of the subscribing tenant whose events include `type`. Called by the
 * event log in the event's transaction (store/events.ts).
 */
export async function subscribedWebhookIds(
  executor: Executor,
  tenantId: string,
  type: EventType,
): Promise<string[]> {
  if (!isWebhookEventType(type)) return [];
  const rows = await executor
    .selectFrom('webhooks')
    .select(['id', 'events'])
    .where('tenant_id', '=', tenantId)
    .execute();
  return rows
    .filter((row) => (JSON.parse(row.events) as string[]).includes(type))
    .map((row) => row.id);
}

/** The outbox rows of one event: one per subscribed webhook, due at once. */
export async function insertDeliveries(
  executor: Executor,
  event: { id: number; tenantId: string; type: WebhookEventType },
  webhookIds: readonly string[],
  now: number,
): Promise<void> {
  if (webhookIds.length === 0) return;
  await executor
    .insertInto('webhook_deliveries')
    .values(
      webhookIds.map((webhookId) => ({
        id: newId('whd'),
        webhook_id: webhookId,
        tenant_id: event.tenantId,
        event_id: event.id,
        event_type: event.type,
        status: 'pending' as const,
        attempts: 0,
        next_attempt_at: now,
        lease_owner: null,
        lease_until: null,
        last_attempt_at: null,
        last_http_status: null,
        last_error: null,
        delivered_at: null,
        created_at: now,
      })),
    )
    .execute();
}

export class WebhookRepository {
  readonly #db: Kysely<Database>;
  readonly #keyring: Cipher;
  readonly #postgres: boolean;

  constructor(db: Kysely<Database>, keyring: Cipher) {
    this.#db = db;
    this.#keyring = keyring;
    this.#postgres = db.getExecutor().adapter instanceof PostgresAdapter;
  }

  /** Creates a subscription; the signing secret is returned this once and stored encrypted. */
  async create(
    tenantId: string,
    input: { url: string; events: readonly WebhookEventType[] },
    now: number,
  ): Promise<{ record: WebhookRecord; secret: string }> {
    const id = newId('wh');
    const secret = newWebhookSecret();
    const events = WEBHOOK_EVENT_TYPES.filter((type) => input.events.includes(type));
    const row: WebhooksTable = {
      id,
      tenant_id: tenantId,
      url: input.url,
      events: JSON.stringify(events),
      secret_enc: this.#keyring.encrypt(secret, aad(id)),
      created_at: now,
      updated_at: now,
    };
    await this.#db.insertInto('webhooks').values(row).execute();
    return { record: toRecord(row, null), secret };
  }

  async count(tenantId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('webhooks')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return Number(row?.n ?? 0);
  }

  async list(tenantId: string): Promise<WebhookRecord[]> {
    const rows = await this.#db
      .selectFrom('webhooks')
      .selectAll()
      .where('tenant_id', '=', tenantId)
      .orderBy('created_at')
      .orderBy('id')
      .execute();
    const records: WebhookRecord[] = [];
    for (const row of rows) records.push(toRecord(row, await this.#lastDelivery(row.id)));
    return records;
  }

  async get(tenantId: string, id: string): Promise<WebhookRecord | undefined> {
    const row = await this.#db
      .selectFrom('webhooks')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row === undefined ? undefined : toRecord(row, await this.#lastDelivery(row.id));
  }

  /** Deletes a subscription and its deliveries (a claim in flight then records nothing). */
  async delete(tenantId: string, id: string): Promise<boolean> {
    return this.#db.transaction().execute(async (trx) => {
      const result = await trx
        .deleteFrom('webhooks')
        .where('id', '=', id)
        .where('tenant_id', '=', tenantId)
        .executeTakeFirst();
      if (Number(result.numDeletedRows) !== 1) return false;
      // The foreign key cascades too; this keeps SQLite files opened without foreign_keys clean.
      await trx.deleteFrom('webhook_deliveries').where('webhook_id', '=', id).execute();
      return true;
    });
  }

  /** A webhook's deliveries, newest event first. */
  async deliveries(tenantId: string, webhookId: string, limit: number): Promise<DeliveryRecord[]> {
    const rows = await this.#db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', webhookId)
      .where('tenant_id', '=', tenantId)
      .orderBy('event_id', 'desc')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(toDelivery);
  }

  async #lastDelivery(webhookId: string): Promise<DeliveryRecord | null> {
    const row = await this.#db
      .selectFrom('webhook_deliveries')
      .selectAll()
      .where('webhook_id', '=', webhookId)
      .orderBy('event_id', 'desc')
      .orderBy('id')
      .limit(1)
      .executeTakeFirst();
    return row === undefined ? null : toDelivery(row);
  }

  decryptSecret(webhookId: string, secretEnc: string): string {
    return this.#keyring.decrypt(secretEnc, aad(webhookId));
  }

  /**
   * Claims up to `limit` due deliveries for `owner` until `now + leaseMs`. Due:
   * pending or retrying, `next_attempt_at` passed, and no live claim (a claim
   * left by a dead replica has expired). On PostgreSQL the candidate rows are
   * locked with `FOR UPDATE SKIP LOCKED`, so replicas claiming at once take
   * disjoint rows without waiting; SQLite runs each UPDATE alone. Both re-check
   * the conditions on the row they update, so a row is never claimed twice.
   */
  async claimDue(
    owner: string,
    limit: number,
    leaseMs: number,
    now: number,
  ): Promise<ClaimedDelivery[]> {
    let candidates = this.#db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('next_attempt_at', '<=', now)
      .where('status', 'in', ['pending', 'retrying'])
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
      .orderBy('next_attempt_at')
      .limit(limit);
    if (this.#postgres) candidates = candidates.forUpdate().skipLocked();
    const claimed = await this.#db
      .updateTable('webhook_deliveries')
      .set({ lease_owner: owner, lease_until: now + leaseMs })
      // `= any(array(…))` makes PostgreSQL run the subquery exactly once: as `IN (…)` the
      // planner may rescan it, and each rescan can lock other rows (more than `limit`).
      .where(
        this.#postgres
          ? sql<boolean>`id = any(array(${candidates}))`
          : sql<boolean>`id in (${candidates})`,
      )
      // Checked again on the row being written (cheap, and exact whatever the plan).
      .where('next_attempt_at', '<=', now)
      .where('status', 'in', ['pending', 'retrying'])
      .where((eb) => eb.or([eb('lease_until', 'is', null), eb('lease_until', '<=', now)]))
      .returning('id')
      .execute();
    if (claimed.length === 0) return [];
    const rows = await this.#db
      .selectFrom('webhook_deliveries as d')
      .innerJoin('webhooks as w', 'w.id', 'd.webhook_id')
      .leftJoin('events as e', 'e.id', 'd.event_id')
      .select([
        'd.id',
        'd.webhook_id',
        'd.tenant_id',
        'd.attempts',
        'd.event_id',
        'w.url',
        'w.secret_enc',
        'e.id as e_id',
        'e.type as e_type',
        'e.tenant_id as e_tenant_id',
        'e.credential_id as e_credential_id',
        'e.auth_client_id as e_auth_client_id',
        'e.data as e_data',
        'e.created_at as e_created_at',
      ])
      .where(
        'd.id',
        'in',
        claimed.map((row) => row.id),
      )
      .where('d.lease_owner', '=', owner)
      .orderBy('d.event_id')
      .execute();
    return rows.map((row) => ({
      id: row.id,
      webhookId: row.webhook_id,
      tenantId: row.tenant_id,
      url: row.url,
      secretEnc: row.secret_enc,
      attempts: row.attempts,
      event:
        row.e_id === null || row.e_type === null || row.e_created_at === null
          ? undefined
          : {
              id: Number(row.e_id),
              type: row.e_type,
              tenantId: row.e_tenant_id ?? row.tenant_id,
              credentialId: row.e_credential_id,
              authClientId: row.e_auth_client_id,
              at: row.e_created_at,
              data: JSON.parse(row.e_data ?? '{}') as Record<string, unknown>,
            },
    }));
  }

  /** Records one attempt and ends the claim. False when the claim was lost (expired and taken over, or the webhook was deleted). */
  async recordAttempt(
    id: string,
    owner: string,
    result: AttemptResult,
    now: number,
  ): Promise<boolean> {
    const update = await this.#db
      .updateTable('webhook_deliveries')
      .set((eb) => ({
        attempts: eb('attempts', '+', 1),
        last_attempt_at: now,
        last_http_status: result.httpStatus,
        lease_owner: null,
        lease_until: null,
        ...(result.outcome === 'delivered'
          ? { status: 'delivered', next_attempt_at: null, delivered_at: now, last_error: null }
          : result.outcome === 'failed'
            ? {
                status: 'retrying',
                next_attempt_at: result.nextAttemptAt,
                last_error: result.error,
              }
            : { status: 'gave_up', next_attempt_at: null, last_error: result.error }),
      }))
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    return Number(update.numUpdatedRows) === 1;
  }

  /** Gives a claim back without counting an attempt (the worker is stopping). */
  async release(id: string, owner: string): Promise<void> {
    await this.#db
      .updateTable('webhook_deliveries')
      .set({ lease_owner: null, lease_until: null })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .execute();
  }

  /** Deletes delivered and given-up deliveries created before `before`. */
  async pruneFinished(before: number): Promise<number> {
    const result = await this.#db
      .deleteFrom('webhook_deliveries')
      .where('status', 'in', ['delivered', 'gave_up'])
      .where('created_at', '<', before)
      .executeTakeFirst();
    return Number(result.numDeletedRows);
  }

  /** Re-encrypts every signing secret under the active key (key rotation), with compare-and-set. */
  async reencryptAll(): Promise<number> {
    const rows = await this.#db.selectFrom('webhooks').select(['id', 'secret_enc']).execute();
    let changed = 0;
    for (const row of rows) {
      const plaintext = this.#keyring.decrypt(row.secret_enc, aad(row.id));
      const result = await this.#db
        .updateTable('webhooks')
        .set({ secret_enc: this.#keyring.encrypt(plaintext, aad(row.id)) })
        .where('id', '=', row.id)
        .where('secret_enc', '=', row.secret_enc)
        .executeTakeFirst();
      changed += Number(result.numUpdatedRows);
    }
    return changed;
  }

  /** The key ids the stored signing secrets use (a key rotation must not retire them). */
  async keyIdsInUse(): Promise<Set<string>> {
    const used = new Set<string>();
    for (const row of await this.#db.selectFrom('webhooks').select('secret_enc').execute()) {
      const kid = Keyring.kidOf(row.secret_enc);
      if (kid !== undefined) used.add(kid);
    }
    return used;
  }
}

function toRecord(row: WebhooksTable, lastDelivery: DeliveryRecord | null): WebhookRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    url: row.url,
    events: JSON.parse(row.events) as WebhookEventType[],
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    lastDelivery,
  };
}

function toDelivery(row: WebhookDeliveriesTable): DeliveryRecord {
  return {
    id: row.id,
    webhookId: row.webhook_id,
    eventId: Number(row.event_id),
    eventType: row.event_type,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: row.next_attempt_at,
    lastAttemptAt: row.last_attempt_at,
    lastHttpStatus: row.last_http_status,
    lastError: row.last_error,
    deliveredAt: row.delivered_at,
    createdAt: row.created_at,
  };
}
