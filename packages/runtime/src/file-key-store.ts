import { resolve } from 'node:path';
import {
  JsonFileTokenStore,
  TokenManager,
  type TokenResponse,
  TokenSet,
  type TokenSource,
  type TokenStore,
} from '@tokenwarden/oauth';
import { RuntimeError } from './errors.ts';
import { acquireFileLock } from './internal/file-lock.ts';
import { parseKeysPayload } from './internal/keys-payload.ts';
import type { KeyStore, TokenSourceContext } from './key-store.ts';

export interface FileKeyStoreOptions {
  /** The credential's id inside the file. Default `default`. */
  credentialId?: string;
  /** How long to wait for another process to release the key file. Default 10 000 ms. */
  lockTimeoutMs?: number;
  /** Lifetime to assume for a token response without `expires_in` (Salesforce). */
  defaultAccessTokenLifetimeSeconds?: number;
  now?: () => number;
}

interface SharedFile {
  store: JsonFileTokenStore;
  release: () => Promise<void>;
  refs: number;
}

/**
 * Key files open in this process, by absolute path: every FileKeyStore on one
 * file shares one JsonFileTokenStore (writes serialized, compare-and-set
 * versions in step) and one lock.
 */
const openFiles = new Map<string, Promise<SharedFile>>();

/** How many times a merge is retried when a refresh landed between read and write. */
const MAX_SAVE_CONFLICTS = 5;

/**
 * Keys in a local JSON file, for offline work: `@tokenwarden/oauth`'s
 * JsonFileTokenStore format (`{"format": "tokenwarden.tokens.v1", "credentials": {…}}`),
 * written atomically (temporary file with mode 0600, fsync, rename, fsync of the
 * folder). The file is locked (`<file>.lock`) while a store is open, so two
 * processes never refresh from the same refresh token; in one process, stores
 * on the same file share it.
 */
export class FileKeyStore implements KeyStore {
  readonly path: string;
  readonly credentialId: string;
  readonly description: string;
  readonly #shared: SharedFile;
  readonly #options: FileKeyStoreOptions;
  #closed = false;
  #manager: TokenManager | undefined;
  #context: TokenSourceContext | undefined;

  private constructor(path: string, shared: SharedFile, options: FileKeyStoreOptions) {
    this.path = path;
    this.credentialId = options.credentialId ?? 'default';
    this.description = `key file ${path} (credential ${this.credentialId})`;
    this.#shared = shared;
    this.#options = options;
  }

  /** Opens (or starts) a key file and takes its lock. Call {@link close} when done. */
  static async open(path: string, options: FileKeyStoreOptions = {}): Promise<FileKeyStore> {
    const absolute = resolve(path);
    let pending = openFiles.get(absolute);
    if (pending === undefined) {
      pending = openShared(absolute, options.lockTimeoutMs ?? 10_000);
      openFiles.set(absolute, pending);
      pending.catch(() => openFiles.delete(absolute));
    }
    const shared = await pending;
    shared.refs++;
    return new FileKeyStore(absolute, shared, options);
  }

  /** The underlying token store (shared by every FileKeyStore on this file in this process). */
  get tokenStore(): TokenStore {
    return this.#shared.store;
  }

  async readKeys(): Promise<TokenResponse> {
    this.#assertOpen();
    const record = await this.#shared.store.load(this.credentialId);
    if (record === undefined) {
      throw new RuntimeError(
        'key_file_invalid',
        `${this.path} has no keys for credential "${this.credentialId}"; store a token response first (FileKeyStore#importKeys)`,
        { credentialId: this.credentialId },
      );
    }
    return TokenSet.fromStored(record.tokenSet).toStored().tokens;
  }

  async updateKeys(response: TokenResponse): Promise<void> {
    this.#assertOpen();
    const now = (this.#options.now ?? Date.now)();
    const lifetime = this.#options.defaultAccessTokenLifetimeSeconds;
    const { store } = this.#shared;
    // Merged onto the latest record on every attempt: a refresh that landed
    // meanwhile may have rotated the refresh token, and the response may not carry one.
    for (let attempt = 0; attempt < MAX_SAVE_CONFLICTS; attempt++) {
      const record = await store.load(this.credentialId);
      const next =
        record === undefined
          ? TokenSet.fromResponse(response, now, lifetime)
          : TokenSet.fromStored(record.tokenSet).merge(response, now, lifetime);
      const saved = await store.compareAndSet(
        this.credentialId,
        record?.version ?? null,
        next.toStored(),
      );
      if (saved !== undefined) return;
    }
    throw new RuntimeError(
      'keys_not_stored',
      `${this.path}: credential "${this.credentialId}" kept changing while updated keys were being saved`,
      { credentialId: this.credentialId },
    );
  }

  /**
   * Stores a token response as the credential's keys, replacing what was there
   * (a response from a code exchange done elsewhere). Accepts what updateKeys
   * accepts: a bare response or `{oauth: {…}}`.
   */
  async importKeys(payload: unknown): Promise<void> {
    this.#assertOpen();
    const { response } = parseKeysPayload(payload, 'oauth');
    const tokenSet = TokenSet.fromResponse(
      response,
      (this.#options.now ?? Date.now)(),
      this.#options.defaultAccessTokenLifetimeSeconds,
    );
    const { store } = this.#shared;
    for (let attempt = 0; attempt < MAX_SAVE_CONFLICTS; attempt++) {
      const current = await store.load(this.credentialId);
      const saved = await store.compareAndSet(
        this.credentialId,
        current?.version ?? null,
        tokenSet.toStored(),
      );
      if (saved !== undefined) return;
    }
    throw new RuntimeError(
      'keys_not_stored',
      `${this.path}: credential "${this.credentialId}" kept changing during the import`,
      { credentialId: this.credentialId },
    );
  }

  /**
   * A TokenManager over the key file: refreshes with the auth client from the
   * context (component.json's oauth2 block), one refresh at a time per
   * credential in this process, stored before it is handed out.
   */
  tokenSource(context: TokenSourceContext): TokenSource {
    this.#assertOpen();
    this.#context = context;
    this.#manager ??= new TokenManager({
      store: this.#shared.store,
      authClient: () => {
        const current = this.#context;
        if (current === undefined) throw new Error('unreachable: no token source context');
        return current.authClient();
      },
      ...(this.#options.now === undefined ? {} : { now: this.#options.now }),
    });
    return this.#manager.source(this.credentialId);
  }

  /** Releases this store; the lock goes when the last store on the file closes. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#shared.refs--;
    if (this.#shared.refs === 0) {
      openFiles.delete(this.path);
      await this.#shared.release();
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error(`${this.description} is closed`);
  }
}

async function openShared(path: string, lockTimeoutMs: number): Promise<SharedFile> {
  const release = await acquireFileLock(path, lockTimeoutMs);
  try {
    const store = await JsonFileTokenStore.open(path);
    return { store, release, refs: 0 };
  } catch (error) {
    await release();
    throw new RuntimeError(
      'key_file_invalid',
      error instanceof Error ? error.message : `${path} cannot be opened`,
      { cause: error },
    );
  }
}
