import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProviderCatalog } from '@tokenwarden/oauth';
import type { VaultConfig } from './config.ts';
import {
  addKeyToFile,
  KEY_FILE_NAME,
  Keyring,
  KeyringHolder,
  loadKeyring,
  retireKeysInFile,
} from './crypto/keyring.ts';
import { openDatabase } from './db/database.ts';
import { VaultStore } from './store/store.ts';

export interface RotationResult {
  newKeyId: string;
  reencrypted: { credentials: number; authClients: number; webhooks: number };
  /** Keys no stored value uses any more: removed from the key file, or safe to drop from TOKENWARDEN_MASTER_KEYS. */
  retired: string[];
}

/** Longer than KeyringHolder's check interval: running vaults pick up the new key first. */
const PICKUP_WAIT_MS = 6_000;

/**
 * Re-encrypts every secret under a new key while vaults keep running:
 * 1. with a key file, a new key is put first in it (the environment's first key otherwise);
 * 2. we wait until running vaults have reread the file, so they encrypt with it too
 *    (until then they still decrypt both: no request fails);
 * 3. every row is re-encrypted with compare-and-set (a concurrent refresh wins);
 * 4. keys no row uses any more are retired.
 */
export async function rotateKeys(
  config: VaultConfig,
  options: { pickupWaitMs?: number } = {},
): Promise<RotationResult> {
  const catalog = await loadProviderCatalog();
  const fromFile = config.masterKeys === undefined;
  const loaded = await loadKeyring({ masterKeys: config.masterKeys, dataDir: config.dataDir });
  const keyring = fromFile ? await addKeyToFile(config.dataDir) : loaded.keyring;
  if (fromFile) await sleep(options.pickupWaitMs ?? PICKUP_WAIT_MS);
  const holder = new KeyringHolder(
    keyring,
    fromFile ? join(config.dataDir, KEY_FILE_NAME) : undefined,
  );
  const database = await openDatabase({
    dataDir: config.dataDir,
    databaseUrl: config.databaseUrl,
    databaseSchema: config.databaseSchema,
  });
  try {
    const store = new VaultStore(database.db, holder, catalog);
    const credentials = await store.credentials.reencryptAll();
    const authClients = await store.authClients.reencryptAll();
    const webhooks = await store.webhooks.reencryptAll();
    const used = new Set<string>();
    for (const row of await database.db.selectFrom('credentials').select('token_enc').execute()) {
      const kid = Keyring.kidOf(row.token_enc);
      if (kid !== undefined) used.add(kid);
    }
    for (const row of await database.db
      .selectFrom('auth_clients')
      .select('client_secret_enc')
      .execute()) {
      const kid = Keyring.kidOf(row.client_secret_enc);
      if (kid !== undefined) used.add(kid);
    }
    for (const kid of await store.webhooks.keyIdsInUse()) used.add(kid);
    // Connect flows under way keep their key until they end (ten minutes at most).
    for (const row of await database.db
      .selectFrom('connect_sessions')
      .select('verifier_enc')
      .where('verifier_enc', 'is not', null)
      .execute()) {
      const kid = row.verifier_enc === null ? undefined : Keyring.kidOf(row.verifier_enc);
      if (kid !== undefined) used.add(kid);
    }
    const retired = keyring.kids.filter((kid) => kid !== keyring.activeKid && !used.has(kid));
    if (fromFile)
      await retireKeysInFile(
        config.dataDir,
        new Set(keyring.kids.filter((kid) => !retired.includes(kid))),
      );
    return {
      newKeyId: keyring.activeKid,
      reencrypted: { credentials, authClients, webhooks },
      retired,
    };
  } finally {
    await database.close();
  }
}
