import { type StoredTokenSet, TokenSet } from '@tokenwarden/oauth';
import {
  type ExpressionBuilder,
  type Kysely,
  PostgresAdapter,
  sql,
  type Transaction,
} from 'kysely';
import type { Cipher } from '../crypto/keyring.ts';
import type { CredentialStatus, CredentialsTable, Database } from '../db/schema.ts';
import type { TokenCache } from './token-cache.ts';

export interface CredentialFlags {
  /** The provider's answer to the code exchange had no refresh token though the profile expects one. */
  missingRefreshToken?: boolean;
}

/** A credential as the API shows it: metadata and health, never a token. */
export interface CredentialRecord {
  id: string;
  tenantId: string;
  authClientId: string;
  status: CredentialStatus;
  statusReason: string | null;
  expiresAt: number | null;
  lastRefreshAt: number | null;
  refreshCount: number;
  /** `inDoubt`: the request went out and no answer came back (the provider may have done it). */
  lastError: { code: string; message: string; at: number; inDoubt: boolean } | null;
  flags: CredentialFlags;
  scope: string | null;
  nextRefreshAt: number | null;
  /** Refresh attempts that failed in a row; 0 after any success. */
  failureCount: number;
  /** The last refresh decision, with its reason. */
  lastDecision: { text: string; at: number } | null;
  createdAt: number;
  updatedAt: number;
}

/** A credential row with its token set decrypted, for the token service only. */
export interface CredentialWithTokens {
  record: CredentialRecord;
  tokenSet: TokenSet;
  version: number;
  leaseOwner: string | null;
  leaseUntil: number | null;
}

/**
 * A due credential this process claimed for the background refresher: its
 * refresh lease is held under `leaseOwner` until `leaseUntil`.
 */
export interface ClaimedCredential {
  id: string;
  tenantId: string;
  authClientId: string;
  providerId: string;
  leaseOwner: string;
  leaseUntil: number;
  /** The owner of the expired lease this claim replaced (a replica that died mid-refresh), or null. */
  takenOverFrom: string | null;
  nextRefreshAt: number;
  failureCount: number;
}

export type LeaseResult =
  | { acquired: true; takenOver: boolean; previousOwner: string | null }
  | { acquired: false; owner: string | null; until: number | null };

const aad = (id: string) => `credential:${id}`;

/** What a new credential is made of. */
export interface NewCredential {
  id: string;
  tenantId: string;
  authClientId: string;
  tokenSet: TokenSet;
  flags: CredentialFlags;
  nextRefreshAt: number | null;
}

export class CredentialRepository {
  readonly #db: Kysely<Database>;
  readonly #keyring: Cipher;
  readonly #cache: TokenCache | undefined;
  readonly #leaseHolder: () => number | null;

  /**
   * `leaseHolder`: this process's liveness lock number while that lock is known to be
   * held (PostgreSQL, db/holder-liveness.ts), else null; every lease this process takes
   * or renews is stamped with it.
   */
  constructor(
    db: Kysely<Database>,
    keyring: Cipher,
    cache?: TokenCache,
    leaseHolder: () => number | null = () => null,
  ) {
    this.#db = db;
    this.#keyring = keyring;
    this.#cache = cache;
    this.#leaseHolder = leaseHolder;
  }

  /**
   * `getWithTokens` for the token endpoint's first read: from the token cache
   * when there is one and it holds the row (see TokenCache for why that is
   * coherent). The answer is shared: never modify it. Reads that decide a
   * refresh (under the lease) use `getWithTokens`, always from the database.
   */
  async getServing(tenantId: string, id: string): Promise<CredentialWithTokens | undefined> {
    const cache = this.#cache;
    if (cache === undefined) return this.getWithTokens(tenantId, id);
    const cached = cache.lookup(tenantId, id);
    if (cached.generation === undefined) return cached.value;
    const value = await this.getWithTokens(tenantId, id);
    if (value !== undefined) {
      Object.freeze(value.record);
      cache.fill(Object.freeze(value), cached.generation);
    }
    return value;
  }

  /** The token cache's row, if it holds one; never waits, never reads the database. */
  peekServing(tenantId: string, id: string): CredentialWithTokens | undefined {
    return this.#cache?.peek(tenantId, id);
  }

  /** This process changed credential `id` (or is about to commit a change): drop it from the cache. */
  #changed(id: string): void {
    this.#cache?.written(id);
  }

  encryptTokens(id: string, tokenSet: TokenSet): string {
    return this.#keyring.encrypt(JSON.stringify(tokenSet.toStored()), aad(id));
  }

  /** A new credential's row, token set encrypted: what `create` inserts (bulk seeding too). */
  newRow(row: NewCredential, now: number): CredentialsTable {
    return {
      id: row.id,
      tenant_id: row.tenantId,
      auth_client_id: row.authClientId,
      status: 'active',
      status_reason: null,
      token_enc: this.encryptTokens(row.id, row.tokenSet),
      version: 1,
      expires_at: row.tokenSet.expiresAtMs ?? null,
      last_refresh_at: null,
      refresh_count: 0,
      last_error_code: null,
      last_error_message: null,
      last_error_at: null,
      last_error_in_doubt: 0,
      flags: JSON.stringify(row.flags),
      scope: row.tokenSet.scope ?? null,
      lease_owner: null,
      lease_until: null,
      next_refresh_at: row.nextRefreshAt,
      created_at: now,
      updated_at: now,
      failure_count: 0,
      last_decision: null,
      last_decision_at: null,
      lease_taken_from: null,
      lease_holder: null,
    };
  }

  async create(
    row: NewCredential,
    now: number,
    trx?: Transaction<Database>,
  ): Promise<CredentialRecord> {
    const values = this.newRow(row, now);
    await (trx ?? this.#db).insertInto('credentials').values(values).execute();
    return toRecord(values);
  }

  async get(tenantId: string, id: string): Promise<CredentialRecord | undefined> {
    const row = await this.#db
      .selectFrom('credentials')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return row === undefined ? undefined : toRecord(row);
  }

  async getWithTokens(tenantId: string, id: string): Promise<CredentialWithTokens | undefined> {
    const row = await this.#db
      .selectFrom('credentials')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    if (row === undefined) return undefined;
    const stored = JSON.parse(this.#keyring.decrypt(row.token_enc, aad(row.id))) as StoredTokenSet;
    return {
      record: toRecord(row),
      tokenSet: TokenSet.fromStored(stored),
      version: row.version,
      leaseOwner: row.lease_owner,
      leaseUntil: row.lease_until,
    };
  }

  async list(
    tenantId: string,
    filter: { authClientId?: string; status?: CredentialStatus } = {},
  ): Promise<CredentialRecord[]> {
    let query = this.#db.selectFrom('credentials').selectAll().where('tenant_id', '=', tenantId);
    if (filter.authClientId !== undefined)
      query = query.where('auth_client_id', '=', filter.authClientId);
    if (filter.status !== undefined) query = query.where('status', '=', filter.status);
    return (await query.orderBy('created_at').execute()).map(toRecord);
  }

  async countByAuthClient(tenantId: string, authClientId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('credentials')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('tenant_id', '=', tenantId)
      .where('auth_client_id', '=', authClientId)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /**
   * Takes the refresh lease when nobody holds it or the holder's lease expired
   * (the holder died: `takenOver`). A compare-and-set on the previous holder, so
   * two processes can never both win.
   */
  async tryAcquireLease(
    id: string,
    owner: string,
    now: number,
    leaseMs: number,
  ): Promise<LeaseResult> {
    const row = await this.#db
      .selectFrom('credentials')
      .select(['lease_owner', 'lease_until'])
      .where('id', '=', id)
      .executeTakeFirst();
    if (row === undefined) return { acquired: false, owner: null, until: null };
    if (row.lease_owner !== null && row.lease_until !== null && row.lease_until >= now) {
      return { acquired: false, owner: row.lease_owner, until: row.lease_until };
    }
    let update = this.#db
      .updateTable('credentials')
      .set({ lease_owner: owner, lease_until: now + leaseMs, lease_holder: this.#leaseHolder() })
      .where('id', '=', id);
    update =
      row.lease_owner === null
        ? update.where('lease_owner', 'is', null)
        : update.where('lease_owner', '=', row.lease_owner).where('lease_until', '<', now);
    const result = await update.executeTakeFirst();
    if (Number(result.numUpdatedRows) !== 1) return { acquired: false, owner: null, until: null };
    return { acquired: true, takenOver: row.lease_owner !== null, previousOwner: row.lease_owner };
  }

  /**
   * Claims up to `limit` due credentials of one provider for the background
   * refresher, in one statement: active, `next_refresh_at` passed, lease free or
   * expired (its holder died), auth client not marked misconfigured; earliest
   * first. The claim is the refresh lease (`lease_owner`, `lease_until`), so the
   * token endpoint and the refresher exclude each other through one mechanism.
   *
   * PostgreSQL: the candidates are locked with `FOR UPDATE SKIP LOCKED`, so
   * replicas claiming at the same moment take disjoint rows instead of queueing
   * on each other; `= ANY(ARRAY(…))` makes the subquery run exactly once.
   * SQLite: the same single `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`;
   * SQLite runs one writer at a time, so the statement is atomic as it stands.
   */
  async claimDue(claim: {
    providerId: string;
    owner: string;
    now: number;
    leaseMs: number;
    limit: number;
  }): Promise<ClaimedCredential[]> {
    // Abandoned leases first, due or not: their holder died, maybe after the provider
    // rotated the refresh token, and a rotating provider's grace period is running.
    // Behind a backlog of due credentials (R1: 6–8 s) they would miss it.
    const abandoned = await this.#claim(claim, 'abandoned', claim.limit);
    if (abandoned.length >= claim.limit) return abandoned;
    const due = await this.#claim(claim, 'due', claim.limit - abandoned.length);
    return [...abandoned, ...due];
  }

  /**
   * One claiming statement: `abandoned`, a lease whose holder let it expire
   * (oldest expiry first, through the small index of held leases); `due`,
   * `next_refresh_at` passed and the lease free or expired (earliest first).
   */
  async #claim(
    claim: { providerId: string; owner: string; now: number; leaseMs: number },
    kind: 'abandoned' | 'due',
    limit: number,
  ): Promise<ClaimedCredential[]> {
    const { providerId, owner, now, leaseMs } = claim;
    const postgres = this.#db.getExecutor().adapter instanceof PostgresAdapter;
    const eligible = (eb: ExpressionBuilder<Database, 'credentials'>) =>
      kind === 'abandoned'
        ? eb.and([
            eb('status', '=', 'active'),
            eb('lease_owner', 'is not', null),
            eb('lease_until', '<', now),
          ])
        : eb.and([
            eb('status', '=', 'active'),
            eb('next_refresh_at', '<=', now),
            eb.or([eb('lease_owner', 'is', null), eb('lease_until', '<', now)]),
          ]);
    let candidates = this.#db
      .selectFrom('credentials')
      .select('id')
      .where(eligible)
      .where('auth_client_id', 'in', (eb) =>
        eb
          .selectFrom('auth_clients')
          .select('auth_clients.id')
          .where('auth_clients.provider_id', '=', providerId)
          .where('auth_clients.status', '=', 'ok'),
      )
      .orderBy(kind === 'abandoned' ? 'lease_until' : 'next_refresh_at')
      .limit(limit);
    if (postgres) candidates = candidates.forUpdate().skipLocked();
    // Checked again on the row being written (cheap, and exact whatever the plan).
    const rows = await this.#db
      .updateTable('credentials')
      .set((eb) => ({
        lease_owner: owner,
        lease_until: now + leaseMs,
        lease_taken_from: eb.ref('lease_owner'),
        lease_holder: this.#leaseHolder(),
      }))
      .where(
        postgres
          ? sql<boolean>`id = any(array(${candidates}))`
          : sql<boolean>`id in (${candidates})`,
      )
      .where(eligible)
      .returning([
        'id',
        'tenant_id',
        'auth_client_id',
        'lease_taken_from',
        'next_refresh_at',
        'failure_count',
      ])
      .execute();
    const claims = rows.map((row) => ({
      id: row.id,
      tenantId: row.tenant_id,
      authClientId: row.auth_client_id,
      providerId,
      leaseOwner: owner,
      leaseUntil: now + leaseMs,
      takenOverFrom: row.lease_taken_from,
      nextRefreshAt: row.next_refresh_at ?? now,
      failureCount: row.failure_count,
    }));
    // Due ones earliest first. Abandoned ones are all urgent, and those not due (whose
    // grace period may be running) must not be put behind the due ones: no reordering.
    return kind === 'due' ? claims.sort((a, b) => a.nextRefreshAt - b.nextRefreshAt) : claims;
  }

  /** Extends a lease this owner still holds. False when it was lost. */
  async renewLease(id: string, owner: string, now: number, leaseMs: number): Promise<boolean> {
    const result = await this.#db
      .updateTable('credentials')
      .set({ lease_until: now + leaseMs, lease_holder: this.#leaseHolder() })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  async releaseLease(id: string, owner: string): Promise<void> {
    await this.#db
      .updateTable('credentials')
      .set({ lease_owner: null, lease_until: null, lease_holder: null })
      .where('id', '=', id)
      .where('lease_owner', '=', owner)
      .execute();
  }

  /**
   * Ends, as of `now`, the unexpired leases of active credentials stamped with
   * `holder`: a process whose liveness lock was seen released, so dead (or cut off
   * from the database, which is treated the same). The leases stay with their owner
   * (a renewal by a holder that is in fact alive still succeeds while nobody took
   * over), but they count as abandoned: the next claim or token-endpoint caller takes
   * them over. Returns the owners of the leases ended, or undefined when the holder's
   * lock (`namespaceKey`, `holder`) is held again: checked in the same transaction with
   * a transaction-level lock on it, so a holder that came back with its number cannot
   * stamp a lease that is then ended. PostgreSQL only.
   */
  async endLeasesOfHolder(
    holder: number,
    namespaceKey: number,
    now: number,
  ): Promise<string[] | undefined> {
    return this.#db.transaction().execute(async (trx) => {
      const free = await sql<{ free: boolean }>`
        select pg_try_advisory_xact_lock(${namespaceKey}::int4, ${holder}::int4) as free`.execute(
        trx,
      );
      if (free.rows[0]?.free !== true) return undefined;
      const rows = await trx
        .updateTable('credentials')
        .set({ lease_until: now - 1 })
        // Through credentials_held_lease (status, lease_until; leases held only).
        .where('status', '=', 'active')
        .where('lease_owner', 'is not', null)
        .where('lease_until', '>=', now)
        .where('lease_holder', '=', holder)
        .returning('lease_owner')
        .execute();
      return rows.map((row) => row.lease_owner ?? '');
    });
  }

  /**
   * Writes a new token set if the row is still at `expectedVersion` and clears any
   * error, in the caller's transaction.
   * Returns false when another writer got there first (nothing written).
   */
  async saveTokens(
    trx: Transaction<Database>,
    id: string,
    expectedVersion: number,
    tokenSet: TokenSet,
    changes: {
      refreshed: boolean;
      nextRefreshAt: number | null;
      leaseOwner?: string;
      flags?: CredentialFlags;
      /** Why the token set changed, kept as the credential's last decision. */
      decision?: string;
    },
    now: number,
  ): Promise<boolean> {
    this.#changed(id);
    const result = await trx
      .updateTable('credentials')
      .set((eb) => ({
        token_enc: this.encryptTokens(id, tokenSet),
        version: expectedVersion + 1,
        expires_at: tokenSet.expiresAtMs ?? null,
        scope: tokenSet.scope ?? null,
        status: 'active',
        status_reason: null,
        last_error_code: null,
        last_error_message: null,
        last_error_at: null,
        last_error_in_doubt: 0,
        failure_count: 0,
        next_refresh_at: changes.nextRefreshAt,
        updated_at: now,
        ...(changes.decision === undefined
          ? {}
          : { last_decision: changes.decision, last_decision_at: now }),
        ...(changes.flags === undefined ? {} : { flags: JSON.stringify(changes.flags) }),
        ...(changes.refreshed
          ? { last_refresh_at: now, refresh_count: eb('refresh_count', '+', 1) }
          : {}),
        // The lease is not touched here: its holder releases it (by owner) once the
        // transaction is committed, so a holder whose lease was taken over can never
        // clear the new holder's.
      }))
      .where('id', '=', id)
      .where('version', '=', expectedVersion)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Records a failed refresh; `status` changes only when given. `counted` adds one
   * to `failure_count`. Releases this owner's lease.
   */
  async recordFailure(
    trx: Transaction<Database>,
    id: string,
    failure: {
      code: string;
      message: string;
      /** The request went out and no answer came back. */
      inDoubt?: boolean;
      status?: CredentialStatus;
      statusReason?: string;
      leaseOwner?: string;
      nextRefreshAt?: number | null;
      counted?: boolean;
      decision?: string;
      /** Record only if the row is still at this version. */
      expectedVersion?: number;
    },
    now: number,
  ): Promise<void> {
    if (failure.status !== undefined) this.#changed(id);
    await trx
      .updateTable('credentials')
      .set((eb) => ({
        last_error_code: failure.code,
        last_error_message: failure.message,
        last_error_at: now,
        last_error_in_doubt: failure.inDoubt === true ? 1 : 0,
        updated_at: now,
        ...(failure.counted === true ? { failure_count: eb('failure_count', '+', 1) } : {}),
        ...(failure.decision === undefined
          ? {}
          : { last_decision: failure.decision, last_decision_at: now }),
        ...(failure.status === undefined
          ? {}
          : { status: failure.status, status_reason: failure.statusReason ?? null }),
        ...(failure.nextRefreshAt === undefined ? {} : { next_refresh_at: failure.nextRefreshAt }),
      }))
      .where('id', '=', id)
      // A failure of the token set read at this version says nothing of a newer one.
      .$if(failure.expectedVersion !== undefined, (qb) =>
        qb.where('version', '=', failure.expectedVersion ?? -1),
      )
      .execute();
    if (failure.leaseOwner !== undefined) {
      await trx
        .updateTable('credentials')
        .set({ lease_owner: null, lease_until: null, lease_holder: null })
        .where('id', '=', id)
        .where('lease_owner', '=', failure.leaseOwner)
        .execute();
    }
  }

  async setStatus(
    trx: Transaction<Database> | undefined,
    id: string,
    status: CredentialStatus,
    reason: string | null,
    now: number,
  ): Promise<void> {
    this.#changed(id);
    await (trx ?? this.#db)
      .updateTable('credentials')
      .set({ status, status_reason: reason, updated_at: now })
      .where('id', '=', id)
      .execute();
  }

  async delete(tenantId: string, id: string, trx?: Transaction<Database>): Promise<boolean> {
    this.#changed(id);
    const result = await (trx ?? this.#db)
      .deleteFrom('credentials')
      .where('id', '=', id)
      .where('tenant_id', '=', tenantId)
      .executeTakeFirst();
    return Number(result.numDeletedRows) === 1;
  }

  /** Re-encrypts every token set under the active key, row by row with compare-and-set. */
  async reencryptAll(): Promise<number> {
    const keyring = this.#keyring;
    const rows = await this.#db.selectFrom('credentials').select(['id', 'token_enc']).execute();
    let changed = 0;
    for (const row of rows) {
      const plaintext = keyring.decrypt(row.token_enc, aad(row.id));
      const result = await this.#db
        .updateTable('credentials')
        .set({ token_enc: keyring.encrypt(plaintext, aad(row.id)) })
        .where('id', '=', row.id)
        .where('token_enc', '=', row.token_enc)
        .executeTakeFirst();
      // A refresh that wrote meanwhile already used the active key.
      changed += Number(result.numUpdatedRows);
    }
    return changed;
  }
}

function toRecord(row: CredentialsTable): CredentialRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    authClientId: row.auth_client_id,
    status: row.status,
    statusReason: row.status_reason,
    expiresAt: row.expires_at,
    lastRefreshAt: row.last_refresh_at,
    refreshCount: row.refresh_count,
    lastError:
      row.last_error_code === null || row.last_error_at === null
        ? null
        : {
            code: row.last_error_code,
            message: row.last_error_message ?? '',
            at: row.last_error_at,
            inDoubt: row.last_error_in_doubt === 1,
          },
    flags: JSON.parse(row.flags) as CredentialFlags,
    scope: row.scope,
    nextRefreshAt: row.next_refresh_at,
    failureCount: row.failure_count,
    lastDecision:
      row.last_decision === null
        ? null
        : { text: row.last_decision, at: row.last_decision_at ?? row.updated_at },
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
