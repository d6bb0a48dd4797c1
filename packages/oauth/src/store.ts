import type { StoredTokenSet } from './token-set.ts';

/** A stored credential's token set and the version that compare-and-set checks. */
export interface StoredCredential {
  tokenSet: StoredTokenSet;
  /** Grows by one on every save. */
  version: number;
}

/**
 * Where token sets live. Every save is a compare-and-set: it applies only when the
 * stored version is still the one the writer read, so two writers can never
 * silently overwrite each other's refresh tokens.
 *
 * Implementations: {@link MemoryTokenStore}, {@link JsonFileTokenStore}. (The vault
 * keeps its own SQL storage, with a cross-process refresh lease.)
 */
export interface TokenStore {
  load(credentialId: string): Promise<StoredCredential | undefined>;
  /**
   * Saves `tokenSet` if the stored version equals `expectedVersion` (`null`: the
   * credential must not exist yet). Resolves to the new version, or `undefined`
   * when another writer got there first; then nothing was written.
   * Resolves only once the data is durable.
   */
  compareAndSet(
    credentialId: string,
    expectedVersion: number | null,
    tokenSet: StoredTokenSet,
  ): Promise<number | undefined>;
  delete(credentialId: string): Promise<boolean>;
  /**
   * Optional fast path: the stored version alone, without copying the token set.
   * Lets a reader that already holds that version skip the load.
   */
  version?(credentialId: string): Promise<number | undefined>;
}

/** A store that keeps everything in this process's memory: tests, short-lived scripts. */
export class MemoryTokenStore implements TokenStore {
  readonly #records = new Map<string, StoredCredential>();

  async load(credentialId: string): Promise<StoredCredential | undefined> {
    const record = this.#records.get(credentialId);
    return record === undefined ? undefined : structuredClone(record);
  }

  async compareAndSet(
    credentialId: string,
    expectedVersion: number | null,
    tokenSet: StoredTokenSet,
  ): Promise<number | undefined> {
    const current = this.#records.get(credentialId);
    if ((current?.version ?? null) !== expectedVersion) return undefined;
    const version = (current?.version ?? 0) + 1;
    this.#records.set(credentialId, { tokenSet: structuredClone(tokenSet), version });
    return version;
  }

  async delete(credentialId: string): Promise<boolean> {
    return this.#records.delete(credentialId);
  }

  async version(credentialId: string): Promise<number | undefined> {
    return this.#records.get(credentialId)?.version;
  }
}
