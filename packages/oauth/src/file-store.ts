import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { TokenwardenError } from './errors.ts';
import type { StoredCredential, TokenStore } from './store.ts';
import type { StoredTokenSet } from './token-set.ts';

interface FileContents {
  format: 'tokenwarden.tokens.v1';
  credentials: Record<string, StoredCredential>;
}

/** Own members only: ids such as `constructor` or `__proto__` are ordinary credential ids. */
function recordOf(contents: FileContents, credentialId: string): StoredCredential | undefined {
  return Object.hasOwn(contents.credentials, credentialId)
    ? contents.credentials[credentialId]
    : undefined;
}

/**
 * A token store in one JSON file, for a single process (a component run offline,
 * a script). Every save writes a temporary file with mode 0600, fsyncs it,
 * renames it over the old one and fsyncs the folder, so a crash leaves either the
 * old file or the new one, never half of either. It is not shared safely between
 * processes: use the vault for that.
 */
export class JsonFileTokenStore implements TokenStore {
  readonly path: string;
  #contents: FileContents;
  /** Saves run one after another so that each writes a complete, current file. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(path: string, contents: FileContents) {
    this.path = path;
    this.#contents = contents;
  }

  /** Opens (or starts) the file. A file that is not a token store is an error, never overwritten. */
  static async open(path: string): Promise<JsonFileTokenStore> {
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    if (text === undefined)
      return new JsonFileTokenStore(path, { format: 'tokenwarden.tokens.v1', credentials: {} });
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new TokenwardenError(
        'invalid_configuration',
        `${path} is not JSON; it was left untouched. Move it away or fix it.`,
      );
    }
    const contents = parsed as Partial<FileContents>;
    if (
      contents?.format !== 'tokenwarden.tokens.v1' ||
      typeof contents.credentials !== 'object' ||
      contents.credentials === null
    ) {
      throw new TokenwardenError(
        'invalid_configuration',
        `${path} is not a tokenwarden token file (expected "format": "tokenwarden.tokens.v1"); it was left untouched`,
      );
    }
    return new JsonFileTokenStore(path, contents as FileContents);
  }

  async load(credentialId: string): Promise<StoredCredential | undefined> {
    const record = recordOf(this.#contents, credentialId);
    return record === undefined ? undefined : structuredClone(record);
  }

  async version(credentialId: string): Promise<number | undefined> {
    return recordOf(this.#contents, credentialId)?.version;
  }

  compareAndSet(
    credentialId: string,
    expectedVersion: number | null,
    tokenSet: StoredTokenSet,
  ): Promise<number | undefined> {
    return this.#serialized(async () => {
      const current = recordOf(this.#contents, credentialId);
      if ((current?.version ?? null) !== expectedVersion) return undefined;
      const version = (current?.version ?? 0) + 1;
      const next: FileContents = {
        ...this.#contents,
        credentials: {
          ...this.#contents.credentials,
          [credentialId]: { tokenSet: structuredClone(tokenSet), version },
        },
      };
      await this.#write(next);
      this.#contents = next;
      return version;
    });
  }

  delete(credentialId: string): Promise<boolean> {
    return this.#serialized(async () => {
      if (recordOf(this.#contents, credentialId) === undefined) return false;
      const credentials = { ...this.#contents.credentials };
      delete credentials[credentialId];
      const next = { ...this.#contents, credentials };
      await this.#write(next);
      this.#contents = next;
      return true;
    });
  }

  #serialized<T>(operation: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(operation, operation);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #write(contents: FileContents): Promise<void> {
    const folder = dirname(this.path);
    await mkdir(folder, { recursive: true, mode: 0o700 });
    const temporary = join(folder, `.${basename(this.path)}.${randomBytes(6).toString('hex')}.tmp`);
    const file = await open(temporary, 'wx', 0o600);
    try {
      await file.writeFile(`${JSON.stringify(contents, null, 2)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    try {
      await rename(temporary, this.path);
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    const dir = await open(folder, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
