/**
 * A process that holds one credential's refresh lease and then does nothing, for
 * the liveness test (holder-liveness.test.ts) to SIGKILL: it opens the database
 * named by DATABASE_URL and TOKENWARDEN_DATABASE_SCHEMA, takes its liveness lock,
 * takes the lease of LEASE_CREDENTIAL_ID for LEASE_MS under owner LEASE_OWNER, and
 * prints `{acquired, holder}` once done. It exits when its stdin closes.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyring, parseKeyList } from '../../src/crypto/keyring.ts';
import { openDatabase } from '../../src/db/database.ts';
import { CredentialRepository } from '../../src/store/credentials.ts';

const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const database = await openDatabase({
  dataDir: await mkdtemp(join(tmpdir(), 'tw-lease-holder-')),
  databaseUrl: env('DATABASE_URL'),
  databaseSchema: env('TOKENWARDEN_DATABASE_SCHEMA'),
});
const liveness = database.holderLiveness({ endLeases: async () => [], pollMs: 50 });
if (liveness === undefined) throw new Error('no liveness on this database');
liveness.start();
await liveness.ready();
const credentials = new CredentialRepository(
  database.db,
  new Keyring(parseKeyList(`k1:${randomBytes(32).toString('base64')}`)),
  undefined,
  () => liveness.holder(),
);
const lease = await credentials.tryAcquireLease(
  env('LEASE_CREDENTIAL_ID'),
  env('LEASE_OWNER'),
  Date.now(),
  Number(env('LEASE_MS')),
);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
process.stdout.write(
  `${JSON.stringify({ acquired: lease.acquired, holder: liveness.holder() })}\n`,
);
