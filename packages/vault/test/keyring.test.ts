/**
 * The keyring: AES-256-GCM envelopes bound to their row, several keys (the first
 * encrypts, all decrypt), the key list format, the generated key file (mode 0600)
 * and the holder a running vault uses to pick up a rotated key file. No network.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  addKeyToFile,
  KEY_FILE_NAME,
  type KeyEntry,
  Keyring,
  KeyringError,
  KeyringHolder,
  loadKeyring,
  newKeyEntry,
  parseKeyList,
  retireKeysInFile,
} from '../src/crypto/keyring.ts';

const PLAINTEXT = `{"access_token":"at-${randomBytes(12).toString('hex')}","refresh_token":"rt-secret"}`;
const AAD = 'credential:cr_one';

const temporaryDirs: string[] = [];
after(async () => {
  for (const dir of temporaryDirs) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tw-keyring-'));
  temporaryDirs.push(dir);
  return dir;
}

function entry(kid: string): KeyEntry {
  return { kid, key: randomBytes(32) };
}

/** Splits an envelope into its five parts. */
function parts(envelope: string): [string, string, string, string, string] {
  const split = envelope.split('.');
  assert.equal(split.length, 5, `an envelope has five parts: ${envelope}`);
  return split as [string, string, string, string, string];
}

/** Flips one bit of a base64url part. */
function flip(part: string): string {
  const bytes = Buffer.from(part, 'base64url');
  bytes[0] = (bytes[0] ?? 0) ^ 0x01;
  return bytes.toString('base64url');
}

function truncate(part: string, bytes: number): string {
  return Buffer.from(part, 'base64url').subarray(0, bytes).toString('base64url');
}

function extend(part: string): string {
  return Buffer.concat([Buffer.from(part, 'base64url'), Buffer.from([0])]).toString('base64url');
}

/** Asserts `fn` throws a KeyringError whose message passes `check` and holds no plaintext. */
function assertKeyringError(fn: () => unknown, check: RegExp, secrets: readonly string[] = []) {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof KeyringError, `expected a KeyringError, got ${String(caught)}`);
  assert.match(caught.message, check);
  for (const secret of [PLAINTEXT, 'rt-secret', ...secrets]) {
    assert.ok(!caught.message.includes(secret), `the message leaks a secret: ${caught.message}`);
    assert.ok(!String(caught.stack).includes(secret), 'the stack leaks a secret');
  }
  return caught;
}

describe('Keyring', () => {
  test('encrypt then decrypt gives the plaintext back; envelopes are tw1.<kid>.… and never repeat', () => {
    const keyring = new Keyring([entry('k1')]);
    const first = keyring.encrypt(PLAINTEXT, AAD);
    const second = keyring.encrypt(PLAINTEXT, AAD);
    const [prefix, kid, iv, ciphertext, tag] = parts(first);
    assert.equal(prefix, 'tw1');
    assert.equal(kid, 'k1');
    assert.equal(Buffer.from(iv, 'base64url').length, 12);
    assert.equal(Buffer.from(tag, 'base64url').length, 16);
    assert.equal(Buffer.from(ciphertext, 'base64url').length, Buffer.byteLength(PLAINTEXT));
    assert.ok(!first.includes('rt-secret'));
    assert.notEqual(first, second, 'a fresh IV per value');
    assert.equal(keyring.decrypt(first, AAD), PLAINTEXT);
    assert.equal(keyring.decrypt(second, AAD), PLAINTEXT);
    assert.equal(Keyring.kidOf(first), 'k1');
    assert.equal(Keyring.kidOf('plain text'), undefined);
  });

  test('round-trips the empty string and non-ASCII text', () => {
    const keyring = new Keyring([entry('k1')]);
    for (const value of ['', 'Grüße, 東京 🔑', 'x'.repeat(100_000)]) {
      assert.equal(keyring.decrypt(keyring.encrypt(value, AAD), AAD), value);
    }
  });

  test('a value moved to another row (other associated data) does not decrypt', () => {
    const keyring = new Keyring([entry('k1')]);
    const envelope = keyring.encrypt(PLAINTEXT, 'credential:cr_alice');
    assertKeyringError(
      () => keyring.decrypt(envelope, 'credential:cr_mallory'),
      /failed authentication with key "k1"/,
    );
    assertKeyringError(
      () => keyring.decrypt(envelope, 'auth_client:cr_alice'),
      /failed authentication/,
    );
  });

  test('a tampered ciphertext, tag or IV fails with a KeyringError that holds no plaintext', () => {
    const keyring = new Keyring([entry('k1')]);
    const envelope = keyring.encrypt(PLAINTEXT, AAD);
    const [prefix, kid, iv, ciphertext, tag] = parts(envelope);
    const tampered = {
      iv: [prefix, kid, flip(iv), ciphertext, tag],
      ciphertext: [prefix, kid, iv, flip(ciphertext), tag],
      tag: [prefix, kid, iv, ciphertext, flip(tag)],
      'short tag': [prefix, kid, iv, ciphertext, Buffer.alloc(4).toString('base64url')],
      // GCM accepts truncated tags unless told the length: 4 bytes would be a 2^-32 forgery.
      'tag truncated to 4 bytes': [prefix, kid, iv, ciphertext, truncate(tag, 4)],
      'tag truncated to 8 bytes': [prefix, kid, iv, ciphertext, truncate(tag, 8)],
      'tag truncated to 12 bytes': [prefix, kid, iv, ciphertext, truncate(tag, 12)],
      'tag with an extra byte': [prefix, kid, iv, ciphertext, extend(tag)],
      'empty tag': [prefix, kid, iv, ciphertext, ''],
      'empty iv': [prefix, kid, '', ciphertext, tag],
      'truncated ciphertext': [prefix, kid, iv, ciphertext.slice(0, -4), tag],
    };
    for (const [what, pieces] of Object.entries(tampered)) {
      const error = assertKeyringError(
        () => keyring.decrypt(pieces.join('.'), AAD),
        /failed authentication/,
      );
      assert.ok(error instanceof KeyringError, what);
    }
  });

  test('something that is not an envelope is refused', () => {
    const keyring = new Keyring([entry('k1')]);
    for (const value of [PLAINTEXT, 'tw1.k1.a.b', 'tw2.k1.a.b.c', '']) {
      assertKeyringError(() => keyring.decrypt(value, AAD), /not an encrypted value/);
    }
  });

  test('an unknown key id is named, with the known ones, and no key material', () => {
    const old = new Keyring([entry('old-key')]);
    const envelope = old.encrypt(PLAINTEXT, AAD);
    const keys = [entry('k2'), entry('k3')];
    const current = new Keyring(keys);
    assertKeyringError(
      () => current.decrypt(envelope, AAD),
      /"old-key".*known: k2, k3/,
      keys.map((key) => key.key.toString('base64')),
    );
  });

  test('with several keys the first encrypts and every one decrypts', () => {
    const [a, b, c] = [entry('a'), entry('b'), entry('c')];
    const fromA = new Keyring([a]).encrypt('from a', AAD);
    const fromB = new Keyring([b]).encrypt('from b', AAD);
    const fromC = new Keyring([c]).encrypt('from c', AAD);
    const keyring = new Keyring([b, a, c]);
    assert.equal(keyring.activeKid, 'b');
    assert.deepEqual(keyring.kids, ['b', 'a', 'c']);
    assert.equal(Keyring.kidOf(keyring.encrypt('new', AAD)), 'b');
    assert.equal(keyring.decrypt(fromA, AAD), 'from a');
    assert.equal(keyring.decrypt(fromB, AAD), 'from b');
    assert.equal(keyring.decrypt(fromC, AAD), 'from c');
  });

  test('a keyring needs at least one key, each of 32 bytes', () => {
    assert.throws(() => new Keyring([]), KeyringError);
    const short = { kid: 'short', key: randomBytes(16) };
    assertKeyringError(() => new Keyring([short]), /short must be 32 bytes, got 16/, [
      short.key.toString('base64'),
    ]);
  });
});

describe('parseKeyList', () => {
  test('reads kid:base64 entries separated by commas or lines, skipping blanks and comments', () => {
    const [a, b, c] = [entry('a'), entry('b-2'), entry('c_3')];
    const text = `# rotated 2025-01\n${a.kid}:${a.key.toString('base64')}, ${b.kid}:${b.key.toString('base64')}\n\n  ${c.kid}:${c.key.toString('base64')}  \n`;
    const parsed = parseKeyList(text);
    assert.deepEqual(
      parsed.map((item) => item.kid),
      ['a', 'b-2', 'c_3'],
    );
    assert.ok(parsed[0]?.key.equals(a.key));
    assert.ok(parsed[2]?.key.equals(c.key));
    assert.deepEqual(parseKeyList(''), []);
  });

  test('refuses malformed entries without echoing key material', () => {
    const marker = randomBytes(32).toString('base64');
    const cases: Array<[string, RegExp]> = [
      [`k1:${randomBytes(16).toString('base64')}`, /"k1" must be kid:base64 of 32 bytes/],
      [`k1:${randomBytes(33).toString('base64')}`, /"k1"/],
      [`:${marker}`, /"\?" must be kid:base64/],
      // A key without its kid: the whole entry is key material and must not be echoed.
      [marker, /"\?" must be kid:base64/],
      [`ok:${randomBytes(32).toString('base64')},${marker}`, /"\?"/],
      // A kid with a dot could never be read back out of a `tw1.<kid>.…` envelope.
      [`k.1:${randomBytes(32).toString('base64')}`, /kid/],
      [`k 1:${randomBytes(32).toString('base64')}`, /kid/],
    ];
    for (const [text, expected] of cases) {
      const error = assertKeyringError(() => parseKeyList(text), expected, [
        marker,
        marker.slice(0, 20),
        marker.slice(4, 24),
      ]);
      assert.ok(error instanceof KeyringError);
    }
  });

  test('a generated entry parses back', () => {
    const generated = newKeyEntry();
    assert.match(generated.kid, /^[A-Za-z0-9_-]{1,32}$/);
    const [parsed] = parseKeyList(`${generated.kid}:${generated.key.toString('base64')}`);
    assert.equal(parsed?.kid, generated.kid);
    assert.ok(parsed?.key.equals(generated.key));
  });
});

describe('loadKeyring', () => {
  test('from the environment: parsed, first key active, no file written', async () => {
    const dir = await tempDir();
    const [a, b] = [entry('new'), entry('old')];
    const loaded = await loadKeyring({
      masterKeys: `${a.kid}:${a.key.toString('base64')},${b.kid}:${b.key.toString('base64')}`,
      dataDir: dir,
    });
    assert.equal(loaded.source, 'environment');
    assert.equal(loaded.generated, false);
    assert.equal(loaded.keyring.activeKid, 'new');
    assert.deepEqual(loaded.keyring.kids, ['new', 'old']);
    await assert.rejects(stat(join(dir, KEY_FILE_NAME)), { code: 'ENOENT' });
  });

  test('bad environment keys are a KeyringError', async () => {
    const dir = await tempDir();
    await assert.rejects(
      loadKeyring({ masterKeys: 'k1:dG9vIHNob3J0', dataDir: dir }),
      KeyringError,
    );
  });

  test('generates master.keys with mode 0600 (in a 0700 folder), then reuses it', async () => {
    const dir = join(await tempDir(), 'nested', 'data');
    const first = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    assert.equal(first.source, 'file');
    assert.equal(first.generated, true);
    const path = join(dir, KEY_FILE_NAME);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o077, 0, 'the data folder is not open to others');
    const text = await readFile(path, 'utf8');
    assert.match(text, /^[A-Za-z0-9_-]+:[A-Za-z0-9+/]{43}=\n$/);

    const envelope = first.keyring.encrypt(PLAINTEXT, AAD);
    const second = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    assert.equal(second.generated, false);
    assert.equal(second.source, 'file');
    assert.equal(second.keyring.activeKid, first.keyring.activeKid);
    assert.equal(second.keyring.decrypt(envelope, AAD), PLAINTEXT);
    assert.equal(await readFile(path, 'utf8'), text, 'the file is not rewritten');
  });

  test('a key file readable by others is set back to 0600', async () => {
    const dir = await tempDir();
    await loadKeyring({ masterKeys: undefined, dataDir: dir });
    const path = join(dir, KEY_FILE_NAME);
    await chmod(path, 0o644);
    const again = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    assert.equal(again.generated, false);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  test('a damaged key file is an error, not silently replaced', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, KEY_FILE_NAME), 'garbage\n', { mode: 0o600 });
    await assert.rejects(loadKeyring({ masterKeys: undefined, dataDir: dir }), KeyringError);
    assert.equal(await readFile(join(dir, KEY_FILE_NAME), 'utf8'), 'garbage\n');
  });

  test('addKeyToFile puts a new active key first; retireKeysInFile keeps the active and the listed', async () => {
    const dir = await tempDir();
    const original = (await loadKeyring({ masterKeys: undefined, dataDir: dir })).keyring;
    const rotated = await addKeyToFile(dir);
    assert.notEqual(rotated.activeKid, original.activeKid);
    assert.deepEqual(rotated.kids, [rotated.activeKid, original.activeKid]);
    const path = join(dir, KEY_FILE_NAME);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const reloaded = (await loadKeyring({ masterKeys: undefined, dataDir: dir })).keyring;
    assert.deepEqual(reloaded.kids, rotated.kids);

    await retireKeysInFile(dir, new Set([original.activeKid]));
    assert.deepEqual(
      (await loadKeyring({ masterKeys: undefined, dataDir: dir })).keyring.kids,
      rotated.kids,
    );
    await retireKeysInFile(dir, new Set());
    assert.deepEqual((await loadKeyring({ masterKeys: undefined, dataDir: dir })).keyring.kids, [
      rotated.activeKid,
    ]);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });
});

describe('KeyringHolder', () => {
  test('picks up a rotated key file after checkMs', async () => {
    const dir = await tempDir();
    const loaded = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    const holder = new KeyringHolder(loaded.keyring, join(dir, KEY_FILE_NAME), 20);
    const before = holder.encrypt(PLAINTEXT, AAD);
    assert.equal(Keyring.kidOf(before), loaded.keyring.activeKid);

    const rotated = await addKeyToFile(dir);
    await sleep(60);
    assert.equal(holder.get().activeKid, rotated.activeKid);
    const afterRotation = holder.encrypt(PLAINTEXT, AAD);
    assert.equal(Keyring.kidOf(afterRotation), rotated.activeKid);
    assert.equal(holder.decrypt(before, AAD), PLAINTEXT, 'the old key still decrypts');
    assert.equal(holder.decrypt(afterRotation, AAD), PLAINTEXT);
  });

  test('does not reread the file before checkMs has passed', async () => {
    const dir = await tempDir();
    const loaded = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    const holder = new KeyringHolder(loaded.keyring, join(dir, KEY_FILE_NAME), 60_000);
    holder.get();
    await addKeyToFile(dir);
    assert.equal(holder.get().activeKid, loaded.keyring.activeKid);
  });

  test('reloads at once on a value encrypted with a key it has not loaded yet', async () => {
    const dir = await tempDir();
    const loaded = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    const holder = new KeyringHolder(loaded.keyring, join(dir, KEY_FILE_NAME), 60_000);
    holder.get();
    // Another process rotates and writes a value with the new key.
    const rotated = await addKeyToFile(dir);
    const envelope = rotated.encrypt(PLAINTEXT, AAD);
    assert.equal(holder.decrypt(envelope, AAD), PLAINTEXT);
    assert.equal(holder.get().activeKid, rotated.activeKid);
  });

  test('an unknown key id that is not in the file either stays an error naming it', async () => {
    const dir = await tempDir();
    const loaded = await loadKeyring({ masterKeys: undefined, dataDir: dir });
    const holder = new KeyringHolder(loaded.keyring, join(dir, KEY_FILE_NAME), 60_000);
    const stranger = new Keyring([entry('stranger')]).encrypt(PLAINTEXT, AAD);
    assertKeyringError(() => holder.decrypt(stranger, AAD), /"stranger"/);
  });

  test('without a file (keys from the environment) it just uses the keyring', () => {
    const keyring = new Keyring([entry('env')]);
    const holder = new KeyringHolder(keyring, undefined, 0);
    assert.equal(holder.get(), keyring);
    holder.reload();
    assert.equal(holder.decrypt(holder.encrypt(PLAINTEXT, AAD), AAD), PLAINTEXT);
    const stranger = new Keyring([entry('stranger')]).encrypt(PLAINTEXT, AAD);
    assertKeyringError(() => holder.decrypt(stranger, AAD), /"stranger"/);
  });
});
