import {
  createCipheriv,
  createDecipheriv,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * Envelope format: `tw1.<kid>.<iv>.<ciphertext>.<tag>` (base64url parts).
 * AES-256-GCM with a random 96-bit IV per value; the associated data binds a
 * ciphertext to the row it belongs to (`credential:<id>`), so a value copied to
 * another row fails to decrypt instead of handing out someone else's tokens.
 */
const PREFIX = 'tw1';
const TAG_LENGTH = 16;
/** A key id must survive the `.`-separated envelope (same rule as TOKENWARDEN_MASTER_KEYS). */
const KID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/;

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export interface KeyEntry {
  readonly kid: string;
  readonly key: Buffer;
}

export class Keyring {
  /** KeyObjects, made once: a raw Buffer key costs a KeyObject per call (S2 profile). */
  readonly #keys: Map<string, KeyObject>;
  readonly activeKid: string;

  /** The first entry encrypts; every entry decrypts. */
  constructor(entries: readonly KeyEntry[]) {
    const first = entries[0];
    if (first === undefined) throw new KeyringError('a keyring needs at least one key');
    for (const entry of entries) {
      if (entry.key.length !== 32)
        throw new KeyringError(`key ${entry.kid} must be 32 bytes, got ${entry.key.length}`);
    }
    this.#keys = new Map(entries.map((entry) => [entry.kid, createSecretKey(entry.key)]));
    this.activeKid = first.kid;
  }

  get kids(): readonly string[] {
    return [...this.#keys.keys()];
  }

  encrypt(plaintext: string, associatedData: string): string {
    const key = this.#keys.get(this.activeKid) as KeyObject;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(associatedData, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    const tag = cipher.getAuthTag();
    return [
      PREFIX,
      this.activeKid,
      iv.toString('base64url'),
      ciphertext.toString('base64url'),
      tag.toString('base64url'),
    ].join('.');
  }

  decrypt(envelope: string, associatedData: string): string {
    const parts = envelope.split('.');
    if (parts.length !== 5 || parts[0] !== PREFIX) throw new KeyringError('not an encrypted value');
    const [, kid, iv, ciphertext, tag] = parts as [string, string, string, string, string];
    const key = this.#keys.get(kid);
    if (key === undefined) {
      throw new KeyringError(
        `value is encrypted with key "${kid}", which this vault does not have (known: ${this.kids.join(', ')})`,
      );
    }
    try {
      // A fixed 16-byte tag: GCM would otherwise accept a truncated tag (down to 4 bytes),
      // making a forgery a 2^-32 guess instead of 2^-128.
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), {
        authTagLength: TAG_LENGTH,
      });
      decipher.setAAD(Buffer.from(associatedData, 'utf8'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      return Buffer.concat([
        decipher.update(Buffer.from(ciphertext, 'base64url')),
        decipher.final(),
      ]).toString('utf8');
    } catch {
      throw new KeyringError(
        `value failed authentication with key "${kid}" (tampered, or stored under another row)`,
      );
    }
  }

  /** The key id a stored value was encrypted with. */
  static kidOf(envelope: string): string | undefined {
    const parts = envelope.split('.');
    return parts.length === 5 && parts[0] === PREFIX ? parts[1] : undefined;
  }
}

export function parseKeyList(text: string): KeyEntry[] {
  return text
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter((item) => item.length > 0 && !item.startsWith('#'))
    .map((item) => {
      const separator = item.indexOf(':');
      // Without a separator the whole entry may be key material: never echo it.
      const kid = separator > 0 ? item.slice(0, separator) : '';
      if (kid.length > 0 && !KID_PATTERN.test(kid))
        throw new KeyringError(
          'a key entry\'s kid must be 1-32 letters, digits, "_" or "-" (a "." would break the envelope)',
        );
      const key = Buffer.from(item.slice(separator + 1), 'base64');
      if (separator <= 0 || key.length !== 32)
        throw new KeyringError(`key entry "${kid || '?'}" must be kid:base64 of 32 bytes`);
      return { kid, key };
    });
}

export function newKeyEntry(): KeyEntry {
  return {
    kid: `k${Date.now().toString(36)}${randomBytes(2).toString('hex')}`,
    key: randomBytes(32),
  };
}

function formatKeyList(entries: readonly KeyEntry[]): string {
  return `${entries.map((entry) => `${entry.kid}:${entry.key.toString('base64')}`).join('\n')}\n`;
}

export const KEY_FILE_NAME = 'master.keys';

/**
 * The keyring: from `TOKENWARDEN_MASTER_KEYS` when set, else from
 * `<dataDir>/master.keys` (mode 0600), generated on first use.
 */
export async function loadKeyring(options: {
  masterKeys: string | undefined;
  dataDir: string;
}): Promise<{ keyring: Keyring; source: 'environment' | 'file'; generated: boolean }> {
  if (options.masterKeys !== undefined) {
    return {
      keyring: new Keyring(parseKeyList(options.masterKeys)),
      source: 'environment',
      generated: false,
    };
  }
  const path = join(options.dataDir, KEY_FILE_NAME);
  let text: string | undefined;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  if (text !== undefined) {
    await chmod(path, 0o600);
    return { keyring: new Keyring(parseKeyList(text)), source: 'file', generated: false };
  }
  const entries = [newKeyEntry()];
  await writeKeyFile(path, entries);
  return { keyring: new Keyring(entries), source: 'file', generated: true };
}

/** Adds a new active key in front of the key file's keys (rotation step one). */
export async function addKeyToFile(dataDir: string): Promise<Keyring> {
  const path = join(dataDir, KEY_FILE_NAME);
  const current = parseKeyList(await readFile(path, 'utf8'));
  const entries = [newKeyEntry(), ...current];
  await writeKeyFile(path, entries);
  return new Keyring(entries);
}

/** Drops keys no value uses any more (rotation's last step). */
export async function retireKeysInFile(dataDir: string, keep: ReadonlySet<string>): Promise<void> {
  const path = join(dataDir, KEY_FILE_NAME);
  const current = parseKeyList(await readFile(path, 'utf8'));
  await writeKeyFile(
    path,
    current.filter((entry, index) => index === 0 || keep.has(entry.kid)),
  );
}

async function writeKeyFile(path: string, entries: readonly KeyEntry[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  const file = await open(temporary, 'wx', 0o600);
  try {
    await file.writeFile(formatKeyList(entries));
    await file.sync();
  } finally {
    await file.close();
  }
  await rename(temporary, path);
}

/**
 * The keyring a running vault uses. With a key file, the file is checked at most
 * every `checkMs` and reloaded when it changed, so `tokenwarden keys rotate` in
 * another process takes effect here without a restart; an unknown key id also
 * triggers a reload at once.
 */
export class KeyringHolder implements Cipher {
  #keyring: Keyring;
  readonly #path: string | undefined;
  readonly #checkMs: number;
  #checkedAt = 0;
  #mtimeMs = 0;

  constructor(keyring: Keyring, path: string | undefined, checkMs = 5_000) {
    this.#keyring = keyring;
    this.#path = path;
    this.#checkMs = checkMs;
    if (path !== undefined) this.#mtimeMs = statSync(path).mtimeMs;
  }

  get(): Keyring {
    if (this.#path !== undefined && Date.now() - this.#checkedAt > this.#checkMs)
      this.reload(false);
    return this.#keyring;
  }

  /** Rereads the key file (when there is one). */
  reload(force = true): void {
    if (this.#path === undefined) return;
    this.#checkedAt = Date.now();
    const mtimeMs = statSync(this.#path).mtimeMs;
    if (!force && mtimeMs === this.#mtimeMs) return;
    this.#mtimeMs = mtimeMs;
    this.#keyring = new Keyring(parseKeyList(readFileSync(this.#path, 'utf8')));
  }

  encrypt(plaintext: string, associatedData: string): string {
    return this.get().encrypt(plaintext, associatedData);
  }

  /** Decrypts, reloading the key file once when the value names a key not loaded yet. */
  decrypt(envelope: string, associatedData: string): string {
    const kid = Keyring.kidOf(envelope);
    if (kid !== undefined && !this.get().kids.includes(kid)) this.reload();
    return this.get().decrypt(envelope, associatedData);
  }
}

/** What repositories need: encryption bound to a row. */
export interface Cipher {
  encrypt(plaintext: string, associatedData: string): string;
  decrypt(envelope: string, associatedData: string): string;
}
