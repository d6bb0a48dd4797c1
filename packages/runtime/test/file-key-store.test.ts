import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { TokenSet } from '@tokenwarden/oauth';
import { RuntimeError } from '../src/errors.ts';
import { FileKeyStore } from '../src/file-key-store.ts';
import { RunSession } from '../src/session.ts';
import { contract, memorySink, tempFolder, tokens } from './support/helpers.ts';

const HAMMER = new URL('./support/hammer-key-file.ts', import.meta.url).pathname;

async function fresh(): Promise<{ path: string; store: FileKeyStore }> {
  const path = join(await tempFolder(), 'keys.json');
  const store = await FileKeyStore.open(path);
  await store.importKeys({ oauth: tokens() });
  return { path, store };
}

describe('FileKeyStore', () => {
  it('imports a token response and reads it back; the file is the oauth JsonFileTokenStore format, mode 0600', async () => {
    const { path, store } = await fresh();
    try {
      assert.deepEqual(await store.readKeys(), tokens());
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      const file = JSON.parse(await readFile(path, 'utf8')) as {
        format: string;
        credentials: Record<string, { version: number }>;
      };
      assert.equal(file.format, 'tokenwarden.tokens.v1');
      assert.equal(file.credentials.default?.version, 1);
    } finally {
      await store.close();
    }
  });

  it('updateKeys merges: omitted members kept (refresh_token), new ones replace, expires_in recomputed', async () => {
    const { path, store } = await fresh();
    await store.updateKeys({ access_token: 'second-access', token_type: 'Bearer', expires_in: 60 });
    await store.updateKeys({ access_token: 'third-access', token_type: 'Bearer', extra: 'x' });
    await store.close();
    const reopened = await FileKeyStore.open(path);
    try {
      const keys = await reopened.readKeys();
      assert.equal(keys.access_token, 'third-access');
      assert.equal(keys.refresh_token, tokens().refresh_token);
      assert.equal(keys.scope, 'profile');
      assert.equal(keys.extra, 'x');
      assert.equal(keys.expires_in, undefined);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
    } finally {
      await reopened.close();
    }
  });

  it('a credential the file does not hold is key_file_invalid, and a step says so', async () => {
    const path = join(await tempFolder(), 'keys.json');
    const store = await FileKeyStore.open(path, { credentialId: 'absent' });
    try {
      await assert.rejects(store.readKeys(), (error: unknown) => {
        assert.ok(error instanceof RuntimeError);
        assert.equal(error.code, 'key_file_invalid');
        assert.match(error.message, /no keys for credential "absent"/);
        return true;
      });
      const session = new RunSession({
        component: await contract(),
        keys: store,
        logger: memorySink().sink,
      });
      const result = await session.runStep('returnValue', { body: {} });
      assert.deepEqual(
        result.events.map((e) => e.name),
        ['error', 'end'],
      );
      assert.equal(result.ok, false);
    } finally {
      await store.close();
    }
  });

  it('a file that is not a key file is refused, untouched', async () => {
    const path = join(await tempFolder(), 'keys.json');
    await writeFile(path, '{"access_token": "not-a-key-file"}');
    await assert.rejects(FileKeyStore.open(path), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, 'key_file_invalid');
      return true;
    });
    assert.equal(await readFile(path, 'utf8'), '{"access_token": "not-a-key-file"}');
    // the lock was released: it opens once the file is fixed
    await rm(path);
    await (await FileKeyStore.open(path)).close();
  });

  it('stores on one file in one process share it; the lock goes with the last close', async () => {
    const { path, store } = await fresh();
    const second = await FileKeyStore.open(path, { credentialId: 'other' });
    await second.importKeys({ access_token: 'other-access-token' });
    assert.equal((await store.readKeys()).access_token, tokens().access_token);
    assert.equal((await second.readKeys()).access_token, 'other-access-token');
    await store.close();
    await stat(`${path}.lock`);
    await second.close();
    await assert.rejects(stat(`${path}.lock`), { code: 'ENOENT' });
  });

  it('another live process holding the file: key_file_locked after lockTimeoutMs', async () => {
    const path = join(await tempFolder(), 'keys.json');
    // our parent process is alive and is not us
    await writeFile(`${path}.lock`, JSON.stringify({ pid: process.ppid, host: hostname() }));
    const started = Date.now();
    await assert.rejects(FileKeyStore.open(path, { lockTimeoutMs: 120 }), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, 'key_file_locked');
      assert.match(error.message, new RegExp(`process ${process.ppid}`));
      return true;
    });
    assert.ok(Date.now() - started >= 100);
  });

  it('a lock left by a process that is gone is taken over', async () => {
    const path = join(await tempFolder(), 'keys.json');
    const child = spawn(process.execPath, ['-e', '0']);
    const pid = child.pid;
    await new Promise((resolve) => child.on('exit', resolve));
    await writeFile(`${path}.lock`, JSON.stringify({ pid, host: hostname() }));
    const store = await FileKeyStore.open(path, { lockTimeoutMs: 100 });
    const holder = JSON.parse(await readFile(`${path}.lock`, 'utf8')) as { pid: number };
    assert.equal(holder.pid, process.pid);
    await store.close();
  });

  it('atomic writes: a process killed mid-write leaves a complete key file every time', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'keys.json');
    for (let round = 0; round < 5; round++) {
      const child = spawn(process.execPath, [HAMMER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', () => resolve());
        child.on('exit', () => reject(new Error(`hammer exited early: ${stderr}`)));
      });
      await sleep(5 + round * 7);
      child.kill('SIGKILL');
      await new Promise((resolve) => child.on('exit', resolve));
      const file = JSON.parse(await readFile(path, 'utf8')) as {
        credentials: { default: { tokenSet: Parameters<typeof TokenSet.fromStored>[0] } };
      };
      const stored = TokenSet.fromStored(file.credentials.default.tokenSet).toStored().tokens;
      const n = stored.counter as number;
      assert.equal(stored.access_token, `access-${n}`);
      assert.equal(stored.refresh_token, `refresh-${n}`);
      assert.equal((await stat(path)).mode & 0o777, 0o600);
    }
    // leftovers of killed writes are temporary files only, never the key file half written
    for (const name of await readdir(folder)) {
      assert.ok(name === 'keys.json' || name === 'keys.json.lock' || name.endsWith('.tmp'), name);
    }
  });

  it('a write that fails is an error event in the step, never silent', async () => {
    const folder = await tempFolder();
    const path = join(folder, 'sub', 'keys.json');
    const store = await FileKeyStore.open(path);
    await store.importKeys({ oauth: tokens() });
    // the folder is replaced by a plain file: every later write fails
    await rm(join(folder, 'sub'), { recursive: true });
    await writeFile(join(folder, 'sub'), 'not a folder');
    const session = new RunSession({
      component: await contract(),
      cfg: {},
      keys: store,
      logger: memorySink().sink,
    });
    try {
      const result = await session.runStep('updateKeysThenData', {
        body: { newToken: { access_token: 'cannot-be-written' } },
      });
      assert.deepEqual(
        result.events.map((e) => e.name),
        ['updateKeys', 'error', 'data', 'end'],
      );
      const error = result.events[1]?.data as RuntimeError;
      assert.equal(error.code, 'keys_not_stored');
      assert.match(error.message, /key file .*keys\.json/);
      assert.equal(result.ok, false);
    } finally {
      await store.close();
    }
  });
});
