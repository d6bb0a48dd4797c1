import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import { CREDENTIALS_CHANNEL } from './change-feed.ts';
import type { Dialect } from './database.ts';

/**
 * Migrations, written once with Kysely's schema builder so that SQLite and
 * PostgreSQL get the same tables. Never edit a released migration: add one.
 */
function migrations(dialect: Dialect): Record<string, Migration> {
  const ms = dialect === 'postgres' ? 'bigint' : 'integer';
  return {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('tenants')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('created_at', ms, (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('api_keys')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('key_hash', 'text', (c) => c.notNull().unique())
          .addColumn('label', 'text', (c) => c.notNull())
          .addColumn('is_admin', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('last_used_at', ms)
          .addColumn('revoked_at', ms)
          .execute();
        await db.schema
          .createTable('auth_clients')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('name', 'text', (c) => c.notNull())
          .addColumn('provider_id', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('client_secret_enc', 'text', (c) => c.notNull())
          .addColumn('scopes', 'text', (c) => c.notNull())
          .addColumn('placeholders', 'text', (c) => c.notNull())
          .addColumn('endpoints', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull().defaultTo('ok'))
          .addColumn('status_reason', 'text')
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('auth_clients_tenant')
          .on('auth_clients')
          .column('tenant_id')
          .execute();
        await db.schema
          .createTable('connect_sessions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('auth_client_id', 'text', (c) =>
            c.notNull().references('auth_clients.id').onDelete('cascade'),
          )
          .addColumn('state_hash', 'text', (c) => c.unique())
          .addColumn('browser_hash', 'text')
          .addColumn('verifier_enc', 'text')
          .addColumn('redirect_uri', 'text', (c) => c.notNull())
          .addColumn('return_to', 'text')
          .addColumn('scopes', 'text')
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('error_code', 'text')
          .addColumn('error_message', 'text')
          .addColumn('credential_id', 'text')
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('expires_at', ms, (c) => c.notNull())
          .addColumn('used_at', ms)
          .execute();
        await db.schema
          .createTable('credentials')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('auth_client_id', 'text', (c) => c.notNull().references('auth_clients.id'))
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('status_reason', 'text')
          .addColumn('token_enc', 'text', (c) => c.notNull())
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('expires_at', ms)
          .addColumn('last_refresh_at', ms)
          .addColumn('refresh_count', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('last_error_code', 'text')
          .addColumn('last_error_message', 'text')
          .addColumn('last_error_at', ms)
          .addColumn('flags', 'text', (c) => c.notNull().defaultTo('{}'))
          .addColumn('scope', 'text')
          .addColumn('lease_owner', 'text')
          .addColumn('lease_until', ms)
          .addColumn('next_refresh_at', ms)
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('credentials_tenant')
          .on('credentials')
          .columns(['tenant_id', 'created_at'])
          .execute();
        await db.schema
          .createIndex('credentials_next_refresh')
          .on('credentials')
          .columns(['status', 'next_refresh_at'])
          .execute();
        await db.schema
          .createTable('events')
          .addColumn('id', dialect === 'postgres' ? 'bigserial' : 'integer', (c) =>
            dialect === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('tenant_id', 'text', (c) => c.notNull())
          .addColumn('credential_id', 'text')
          .addColumn('auth_client_id', 'text')
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('data', 'text', (c) => c.notNull())
          .addColumn('created_at', ms, (c) => c.notNull())
          .execute();
        await db.schema
          .createIndex('events_tenant')
          .on('events')
          .columns(['tenant_id', 'id'])
          .execute();
      },
    },
    // Issue 4, background refresher: failure counting and backoff, the reason of the last
    // decision, and the previous owner of a lease a claim took over. One column per ALTER:
    // SQLite adds a single column per statement.
    '0002_refresher': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .alterTable('credentials')
          .addColumn('failure_count', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
        await db.schema.alterTable('credentials').addColumn('last_decision', 'text').execute();
        await db.schema.alterTable('credentials').addColumn('last_decision_at', ms).execute();
        await db.schema.alterTable('credentials').addColumn('lease_taken_from', 'text').execute();
      },
    },
    '0003_webhooks': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('webhooks')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
          .addColumn('url', 'text', (c) => c.notNull())
          .addColumn('events', 'text', (c) => c.notNull())
          .addColumn('secret_enc', 'text', (c) => c.notNull())
          .addColumn('created_at', ms, (c) => c.notNull())
          .addColumn('updated_at', ms, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('webhooks_tenant').on('webhooks').column('tenant_id').execute();
        await db.schema
          .createTable('webhook_deliveries')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('webhook_id', 'text', (c) =>
            c.notNull().references('webhooks.id').onDelete('cascade'),
          )
          .addColumn('tenant_id', 'text', (c) => c.notNull())
          .addColumn('event_id', ms, (c) => c.notNull())
          .addColumn('event_type', 'text', (c) => c.notNull())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
          .addColumn('next_attempt_at', ms)
          .addColumn('lease_owner', 'text')
          .addColumn('lease_until', ms)
          .addColumn('last_attempt_at', ms)
          .addColumn('last_http_status', 'integer')
          .addColumn('last_error', 'text')
          .addColumn('delivered_at', ms)
          .addColumn('created_at', ms, (c) => c.notNull())
          .execute();
        // Due rows only: next_attempt_at is null once a delivery is final, so this stays small.
        await db.schema
          .createIndex('webhook_deliveries_due')
          .on('webhook_deliveries')
          .column('next_attempt_at')
          .where('next_attempt_at', 'is not', null)
          .execute();
        await db.schema
          .createIndex('webhook_deliveries_webhook')
          .on('webhook_deliveries')
          .columns(['webhook_id', 'event_id'])
          .execute();
      },
    },
    // The token cache's change feed on PostgreSQL (db/change-feed.ts): every commit that
    // changes what the token endpoint would answer for a credential (its token set, whose
    // version grows on every write, or its status; a re-encryption too, harmlessly) or
    // deletes it notifies the listening
    // replicas. NOTIFY is sent at commit, so a listener never hears of a change it cannot
    // read yet. SQLite needs nothing: the feed polls `PRAGMA data_version`.
    '0004_credential_notify': {
      async up(db: Kysely<unknown>) {
        if (dialect !== 'postgres') return;
        await sql`
          CREATE FUNCTION tokenwarden_credential_changed() RETURNS trigger
          LANGUAGE plpgsql AS $$
          BEGIN
            PERFORM pg_notify(${sql.lit(CREDENTIALS_CHANNEL)}, TG_TABLE_SCHEMA || '/' || OLD.id);
            RETURN NULL;
          END $$`.execute(db);
        await sql`
          CREATE TRIGGER credentials_changed AFTER UPDATE ON credentials FOR EACH ROW
          WHEN (OLD.version IS DISTINCT FROM NEW.version OR OLD.status IS DISTINCT FROM NEW.status
                OR OLD.token_enc IS DISTINCT FROM NEW.token_enc)
          EXECUTE FUNCTION tokenwarden_credential_changed()`.execute(db);
        await sql`
          CREATE TRIGGER credentials_deleted AFTER DELETE ON credentials FOR EACH ROW
          EXECUTE FUNCTION tokenwarden_credential_changed()`.execute(db);
      },
    },
    // Whether the last failed refresh may have been done by the provider anyway (no
    // answer came back): the token endpoint's hold after provider trouble spares those
    // on rotating profiles, whose grace period wants a prompt retry.
    '0005_last_error_in_doubt': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .alterTable('credentials')
          .addColumn('last_error_in_doubt', 'integer', (c) => c.notNull().defaultTo(0))
          .execute();
      },
    },
    '0006_abandoned_leases': {
      async up(db: Kysely<unknown>) {
        // Held leases only (a handful: the refreshes under way), so the refresher finds
        // those whose holder died without reading the due backlog. `status` leads, as in
        // the claim's condition: with only `lease_until`, SQLite's planner prefers
        // credentials_next_refresh on `status` and sorts every active row. The price on
        // PostgreSQL: lease writes touch an indexed column, so they are no longer HOT.
        await db.schema
          .createIndex('credentials_held_lease')
          .on('credentials')
          .columns(['status', 'lease_until'])
          .where(sql.ref('lease_owner'), 'is not', null)
          .execute();
      },
    },
    // One credential's events (`GET /v1/events?credentialId=`, the web UI's credential
    // view) without reading through the whole tenant's: in a tenant of 500,000 events on
    // PostgreSQL 15, a credential's page took 59-67 ms with (tenant_id, id) alone and
    // 0.2-0.9 ms with this index.
    '0007_events_by_credential': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createIndex('events_credential')
          .on('events')
          .columns(['tenant_id', 'credential_id', 'id'])
          .execute();
      },
    },
    // Which process incarnation holds a lease (db/holder-liveness.ts): on PostgreSQL the
    // number of the session advisory lock that process holds while it lives, so a lease
    // whose holder's session ended is taken over at once instead of when it expires.
    // Null on SQLite, and for a lease taken while the process's own lock was not known
    // to be held.
    '0008_lease_holder': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('credentials').addColumn('lease_holder', ms).execute();
      },
    },
  };
}

export async function migrateToLatest(
  db: Kysely<unknown>,
  dialect: Dialect,
  schema?: string,
): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations(dialect) };
  // On PostgreSQL the migrator's own tables are looked up by schema: without it, Kysely's
  // introspection finds `kysely_migration` in any schema of the database (another vault's)
  // and never creates it in this one.
  const migrator = new Migrator({
    db,
    provider,
    ...(dialect === 'postgres' && schema !== undefined ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === 'Error');
  if (error !== undefined || failed !== undefined) {
    throw new Error(
      `database migration ${failed?.migrationName ?? ''} failed: ${(error as Error)?.message ?? 'unknown error'}`,
    );
  }
}
