import assert from 'node:assert/strict';
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { TokenwardenError } from '../src/errors.ts';
import { JsonFileTokenStore } from '../src/file-store.ts';
import { storeContract, tokenSet } from './support/store-contract.ts';

const folders: string[] = [];

async function tempFolder(): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'tokenwarden-file-store-'));
  folders.push(folder);
  return folder;
}

after(async () => {
  await Promise.all(folders.map((folder) => rm(folder, { recursive: true, force: true })));
});

storeContract('JsonFileTokenStore', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'tokenwarden-file-store-'));
  return {
    store: await JsonFileTokenStore.open(join(folder, 'tokens.json')),
    cleanup: () => rm(folder, { recursive: true, force: true }),
  };
});

// The contract run once more, but every operation after the first goes to a
// freshly reopened store: what the contract promises must hold on disk too.
storeContract('JsonFileTokenStore, reopened before every operation', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'tokenwarden-file-store-'));
  const path = join(folder, 'tokens.json');
  const reopen = () => JsonFileTokenStore.open(path);
  return {
    store: {
      load: async (id) => (await reopen()).load(id),
      compareAndSet: async (id, expected, set) => (await reopen()).compareAndSet(id, expected, set),
      delete: async (id) => (await reopen()).delete(id),
    },
    cleanup: () => rm(folder, { recursive: true, force: true }),
  };
});

async function assertRefused(path: string, expected: RegExp): Promise<void> {
  const before = await readFile(path);
  await assert.rejects(JsonFileTokenStore.open(path), (error: unknown) => {
    assert.ok(error instanceof TokenwardenError);
    assert.equal(error.code, 'invalid_configuration');
    assert.match(error.message, expected);
    assert.ok(error.message.includes(path), 'the message names the file');
    assert.match(error.message, /left untouched/);
    return true;
  });
  assert.deepEqual(await readFile(path), before, 'the file is byte-for-byte unchanged');
}

describe('JsonFileTokenStore', () => {
  it('writes the file with mode 0600, even over a file that was more open', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    await store.compareAndSet('c1', null, tokenSet('a1'));
    assert.equal((await stat(path)).mode & 0o777, 0o600);

    await chmod(path, 0o644);
    const reopened = await JsonFileTokenStore.open(path);
    await reopened.compareAndSet('c1', 1, tokenSet('a2'));
    assert.equal((await stat(path)).mode & 0o777, 0o600);
  });

  it('does not create the file until the first save', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    assert.equal(await store.load('c1'), undefined);
    assert.deepEqual(await readdir(folder), []);
  });

  it('creates missing folders on the first save', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'a', 'b', 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    assert.equal(await store.compareAndSet('c1', null, tokenSet('a1')), 1);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal((await stat(join(folder, 'a', 'b'))).mode & 0o077, 0, 'the folder is private');
  });

  it('keeps everything, versions included, across a reopen', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    await store.compareAndSet('c1', null, tokenSet('a1', { instance_url: 'https://x.example' }));
    await store.compareAndSet('c1', 1, tokenSet('a2', { instance_url: 'https://x.example' }));
    await store.compareAndSet('c2', null, tokenSet('b1'));
    await store.compareAndSet('gone', null, tokenSet('g1'));
    await store.delete('gone');

    const reopened = await JsonFileTokenStore.open(path);
    assert.deepEqual(await reopened.load('c1'), {
      tokenSet: tokenSet('a2', { instance_url: 'https://x.example' }),
      version: 2,
    });
    assert.deepEqual(await reopened.load('c2'), { tokenSet: tokenSet('b1'), version: 1 });
    assert.equal(await reopened.load('gone'), undefined);
    // Compare-and-set goes on from the stored version.
    assert.equal(await reopened.compareAndSet('c1', 1, tokenSet('stale')), undefined);
    assert.equal(await reopened.compareAndSet('c1', 2, tokenSet('a3')), 3);
  });

  it('leaves no temporary files behind', async () => {
    const folder = await tempFolder();
    const store = await JsonFileTokenStore.open(join(folder, 'tokens.json'));
    let version: number | null = null;
    for (let i = 0; i < 10; i++) {
      version = (await store.compareAndSet('c1', version, tokenSet(`a${i}`))) ?? null;
      await store.compareAndSet(`other-${i}`, null, tokenSet(`o${i}`));
    }
    await store.delete('other-3');
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => store.compareAndSet('c1', version, tokenSet(`r${i}`))),
    );
    assert.deepEqual(await readdir(folder), ['tokens.json']);
  });

  it('cleans up its temporary file and keeps its state when the rename fails', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    // A folder where the file should be: the rename over it fails.
    await mkdir(path);
    await assert.rejects(store.compareAndSet('c1', null, tokenSet('a1')));
    assert.deepEqual(await readdir(folder), ['tokens.json']);
    assert.equal(await store.load('c1'), undefined, 'a failed save is not visible');

    await rmdir(path);
    assert.equal(await store.compareAndSet('c1', null, tokenSet('a1')), 1);
  });

  it('refuses a file that is not JSON and leaves it untouched', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    await writeFile(path, 'access_token=abc\nrefresh_token=def {', { mode: 0o644 });
    await assertRefused(path, /is not JSON/);
  });

  it('refuses JSON that is not a token file and leaves it untouched', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const foreign = [
      '{"hello": "world"}\n',
      '[]',
      'null',
      '42',
      '"tokenwarden.tokens.v1"',
      '{"format": "tokenwarden.tokens.v1"}',
      '{"format": "tokenwarden.tokens.v1", "credentials": null}',
      '{"format": "tokenwarden.tokens.v1", "credentials": "none"}',
      '{"format": "tokenwarden.tokens.v2", "credentials": {}}',
      '{"credentials": {}}',
    ];
    for (const text of foreign) {
      await writeFile(path, text);
      await assertRefused(path, /is not a tokenwarden token file/);
    }
  });

  it('lets exactly one of 50 concurrent compare-and-sets from one version win', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);
    await store.compareAndSet('c1', null, tokenSet('a0'));

    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.compareAndSet('c1', 1, tokenSet(`writer-${i}`))),
    );
    const winners = results.flatMap((result, i) => (result === undefined ? [] : [{ result, i }]));
    assert.equal(winners.length, 1);
    const [winner] = winners;
    assert.ok(winner);
    assert.equal(winner.result, 2);

    const expected = { tokenSet: tokenSet(`writer-${winner.i}`), version: 2 };
    assert.deepEqual(await store.load('c1'), expected);
    assert.deepEqual(await (await JsonFileTokenStore.open(path)).load('c1'), expected);
  });

  it('leaves a complete JSON file after every save, also as seen by a concurrent reader', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'tokens.json');
    const store = await JsonFileTokenStore.open(path);

    let writing = true;
    let reads = 0;
    const reader = (async () => {
      while (writing) {
        let text: string;
        try {
          text = await readFile(path, 'utf8');
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw error;
        }
        const parsed = JSON.parse(text) as { format: unknown };
        assert.equal(parsed.format, 'tokenwarden.tokens.v1');
        reads++;
      }
    })();

    let version: number | null = null;
    try {
      for (let i = 1; i <= 40; i++) {
        const saved: number | undefined = await store.compareAndSet(
          'c1',
          version,
          tokenSet(`a${i}`, { note: 'x'.repeat(i * 100) }),
        );
        assert.equal(saved, i);
        version = saved;
        const onDisk = JSON.parse(await readFile(path, 'utf8')) as {
          format: string;
          credentials: Record<string, { version: number; tokenSet: unknown }>;
        };
        assert.equal(onDisk.format, 'tokenwarden.tokens.v1');
        assert.equal(onDisk.credentials.c1?.version, i);
        assert.deepEqual(
          onDisk.credentials.c1?.tokenSet,
          tokenSet(`a${i}`, { note: 'x'.repeat(i * 100) }),
        );
      }
    } finally {
      writing = false;
      await reader;
    }
    assert.ok(reads > 0, 'the concurrent reader read the file at least once');
  });
});
