/**
 * B4 the held-lease index (migration 0006_abandoned_leases) on PostgreSQL: what it
 * costs the refresher's writes and what it saves its claims.
 *
 *   node bench/b4-held-lease-index.ts [--credentials 100000] [--workers 4] [--batch 8]
 *                                     [--per-round 2000] [--rounds 6] [--idle-claims 200]
 *
 * The index `credentials_held_lease (status, lease_until) WHERE lease_owner IS NOT
 * NULL` lets a claim find abandoned leases without reading every active row; but
 * a lease write (claim, release) now changes an indexed column, so PostgreSQL can
 * no longer make it a heap-only (HOT) update: it adds an entry to every index of
 * `credentials`. Two schemas, migrated by the vault and seeded alike (one tenant,
 * one auth client, `--credentials` credentials with token sets encrypted by the
 * store, all due, earliest first); in the baseline the index is dropped again,
 * which is the schema before 0006.
 *
 * Writes: `--workers` loops per schema run the statements of the background
 * refresher for each refresh, through the vault's own store code: `claimDue`
 * (`--batch` at a time), `getWithTokens` under the lease, `saveTokens` and the
 * `refreshed` event in one transaction (next refresh an hour later), and
 * `releaseLease`. No provider is called: the database's share is what is
 * measured. Each round refreshes `--per-round` credentials, right after a
 * `CHECKPOINT` (so both schemas pay full-page images alike), and rounds alternate
 * between the schemas (order swapped every round). Reported per schema:
 * refreshes per second, WAL bytes per refresh (`pg_current_wal_lsn`, server-wide,
 * so nothing else should run), and at the end, from `pg_stat_user_tables`, the
 * updates of `credentials` and how many were HOT, and the size of its indexes.
 *
 * Claims: afterwards every credential is moved an hour ahead (nothing due,
 * nothing held, `VACUUM ANALYZE`), the refresher's steady state between expiries,
 * and `claimDue` runs `--idle-claims` times on each schema, alternating: its
 * latency is what every poll of every provider costs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TokenSet } from '@tokenwarden/oauth';
import { sql } from 'kysely';
import { newId } from '../packages/vault/src/store/ids.ts';
import type { VaultStore } from '../packages/vault/src/store/store.ts';
import { DEFAULT_TENANT_ID } from '../packages/vault/src/store/tenants.ts';
import {
  type BenchDatabase,
  DATABASE_URL,
  freshDatabase,
  insertCredentials,
  log,
  runCleanups,
  type SeedRow,
} from './scale-support.ts';
import { numberArg, percentile, report, round } from './support.ts';

const count = numberArg('credentials', 100_000);
const workers = numberArg('workers', 4);
const batch = numberArg('batch', 8);
const perRound = numberArg('per-round', 2000);
const rounds = numberArg('rounds', 6);
const idleClaims = numberArg('idle-claims', 200);
const PROVIDER = 'oauth2';
const LEASE_MS = 30_000;
const HOUR = 3_600_000;

interface Target {
  name: 'with-index' | 'without-index';
  database: BenchDatabase;
  refreshes: number;
  elapsedMs: number;
  walBytes: number;
  perRound: number[];
}

async function prepare(name: Target['name']): Promise<Target> {
  const database = await freshDatabase(DATABASE_URL, 'tw_b4');
  const { store } = database;
  const now = Date.now();
  await store.tenants.ensureDefaultTenant(now);
  const client = await store.authClients.create(
    DEFAULT_TENANT_ID,
    {
      name: 'B4',
      providerId: PROVIDER,
      clientId: 'b4-client',
      clientSecret: 'b4-secret',
      endpoints: {
        authorizationUrl: 'https://provider.invalid/authorize',
        tokenUrl: 'https://provider.invalid/token',
      },
    },
    now,
  );
  const rows: SeedRow[] = [];
  for (let i = 0; i < count; i++) {
    rows.push({
      id: newId('cr'),
      tenantId: DEFAULT_TENANT_ID,
      authClientId: client.id,
      tokenSet: tokenSet(i, now - HOUR),
      // All due, spread over the last hour, earliest first.
      nextRefreshAt: now - HOUR + Math.floor((i * HOUR) / count),
    });
    if (rows.length === 1000 || i === count - 1) {
      await insertCredentials(store, rows, now);
      rows.length = 0;
    }
  }
  if (name === 'without-index') await sql`DROP INDEX credentials_held_lease`.execute(store.db);
  await sql`VACUUM ANALYZE credentials`.execute(store.db);
  return { name, database, refreshes: 0, elapsedMs: 0, walBytes: 0, perRound: [] };
}

function tokenSet(n: number, receivedAt: number): TokenSet {
  return TokenSet.fromResponse(
    {
      access_token: `b4-access-${n}-${receivedAt}`,
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: `b4-refresh-${n}-${receivedAt}`,
    },
    receivedAt,
  );
}

/** One refresher loop: the statements of each refresh, while the round has work left. */
async function worker(store: VaultStore, index: number, left: { count: number }): Promise<number> {
  const owner = `b4-${index}~1`;
  let done = 0;
  while (left.count > 0) {
    const take = Math.min(batch, left.count);
    left.count -= take;
    const now = Date.now();
    const claims = await store.credentials.claimDue({
      providerId: PROVIDER,
      owner,
      now,
      leaseMs: LEASE_MS,
      limit: take,
    });
    if (claims.length === 0) throw new Error('nothing left to claim: use more --credentials');
    left.count += take - claims.length;
    for (const claim of claims) {
      const read = await store.credentials.getWithTokens(claim.tenantId, claim.id);
      if (read === undefined) throw new Error(`credential ${claim.id} vanished`);
      const at = Date.now();
      await store.db.transaction().execute(async (trx) => {
        const saved = await store.credentials.saveTokens(
          trx,
          claim.id,
          read.version,
          tokenSet(done, at),
          { refreshed: true, nextRefreshAt: at + HOUR, leaseOwner: owner, decision: 'b4' },
          at,
        );
        if (!saved) throw new Error(`credential ${claim.id} changed under its lease`);
        await store.events.append(
          {
            type: 'refreshed',
            tenantId: claim.tenantId,
            credentialId: claim.id,
            authClientId: claim.authClientId,
            data: { trigger: 'expiry', instance: owner },
          },
          at,
          trx,
        );
      });
      await store.credentials.releaseLease(claim.id, owner);
      done++;
    }
  }
  return done;
}

async function walLsn(store: VaultStore): Promise<bigint> {
  const row = await sql<{
    bytes: string;
  }>`select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text as bytes`.execute(store.db);
  return BigInt(row.rows[0]?.bytes ?? '0');
}

async function measureRound(target: Target): Promise<void> {
  const { store } = target.database;
  await sql`CHECKPOINT`.execute(store.db);
  const walBefore = await walLsn(store);
  const started = Date.now();
  const left = { count: perRound };
  const counts = await Promise.all(
    Array.from({ length: workers }, (_, index) => worker(store, index, left)),
  );
  const elapsed = Date.now() - started;
  const walAfter = await walLsn(store);
  const refreshes = counts.reduce((a, b) => a + b, 0);
  if (refreshes !== perRound) throw new Error(`${refreshes} refreshes, not ${perRound}`);
  target.refreshes += refreshes;
  target.elapsedMs += elapsed;
  target.walBytes += Number(walAfter - walBefore);
  target.perRound.push(round((refreshes * 1000) / elapsed, 0));
  log(`${target.name}: ${refreshes} refreshes in ${elapsed} ms`);
}

async function tableStats(store: VaultStore) {
  const stats = await sql<{
    updates: string;
    hot: string;
    indexes: string;
  }>`select n_tup_upd::text as updates, n_tup_hot_upd::text as hot,
            pg_indexes_size(relid)::text as indexes
       from pg_stat_user_tables
      where relid = 'credentials'::regclass`.execute(store.db);
  const row = stats.rows[0];
  if (row === undefined) throw new Error('no statistics for credentials');
  return { updates: Number(row.updates), hot: Number(row.hot), indexBytes: Number(row.indexes) };
}

async function idleClaimMs(store: VaultStore): Promise<number> {
  const started = process.hrtime.bigint();
  const claims = await store.credentials.claimDue({
    providerId: PROVIDER,
    owner: 'b4-idle~1',
    now: Date.now(),
    leaseMs: LEASE_MS,
    limit: batch,
  });
  if (claims.length !== 0) throw new Error('an idle claim found work');
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function main() {
  log(`B4: seeding two schemas with ${count} credentials each`);
  const targets = [await prepare('with-index'), await prepare('without-index')];
  const before = await Promise.all(targets.map((t) => tableStats(t.database.store)));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? targets : [...targets].reverse();
    for (const target of order) await measureRound(target);
  }
  // Statistics reach pg_stat_user_tables when a backend reports them: at most once a
  // second while busy, and an idle backend's last ones within 10 s (PostgreSQL 15's
  // PGSTAT_IDLE_INTERVAL). Wait past that before reading.
  await sleep(11_000);
  const after = await Promise.all(targets.map((t) => tableStats(t.database.store)));

  // The steady state between expiries: nothing due, nothing held.
  for (const { database } of targets) {
    await database.store.db
      .updateTable('credentials')
      .set({ next_refresh_at: Date.now() + HOUR, lease_owner: null, lease_until: null })
      .execute();
    await sql`VACUUM ANALYZE credentials`.execute(database.store.db);
  }
  const latencies: number[][] = targets.map(() => []);
  for (let i = 0; i < idleClaims; i++) {
    for (const [t, target] of targets.entries())
      latencies[t]?.push(await idleClaimMs(target.database.store));
  }

  const summary = Object.fromEntries(
    targets.map((target, t) => {
      const sorted = [...(latencies[t] ?? [])].sort((a, b) => a - b);
      const updates = (after[t]?.updates ?? 0) - (before[t]?.updates ?? 0);
      const hot = (after[t]?.hot ?? 0) - (before[t]?.hot ?? 0);
      return [
        target.name,
        {
          refreshesPerSecond: round((target.refreshes * 1000) / target.elapsedMs, 0),
          perRound: target.perRound,
          walBytesPerRefresh: round(target.walBytes / target.refreshes, 0),
          credentialUpdates: updates,
          hotShare: round(hot / Math.max(1, updates), 3),
          indexBytesBefore: before[t]?.indexBytes,
          indexBytesAfter: after[t]?.indexBytes,
          idleClaimMs: {
            p50: round(percentile(sorted, 0.5), 3),
            p99: round(percentile(sorted, 0.99), 3),
          },
        },
      ];
    }),
  );
  const withIndex = summary['with-index'];
  const without = summary['without-index'];
  if (withIndex === undefined || without === undefined) throw new Error('a target is missing');
  await report('b4-held-lease-index', {
    credentials: count,
    workers,
    batch,
    refreshesPerRound: perRound,
    rounds,
    idleClaims,
    summary,
    ratios: {
      refreshesPerSecond: round(withIndex.refreshesPerSecond / without.refreshesPerSecond, 3),
      walBytesPerRefresh: round(withIndex.walBytesPerRefresh / without.walBytesPerRefresh, 3),
      idleClaimP50: round(withIndex.idleClaimMs.p50 / without.idleClaimMs.p50, 4),
    },
  });
  for (const target of targets) await target.database.close();
}

try {
  await main();
} finally {
  await runCleanups();
}
