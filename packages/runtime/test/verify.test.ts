import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { type Component, loadComponent, type VerifyFunction } from '../src/component.ts';
import { Redactor } from '../src/redaction.ts';
import { RunSession } from '../src/session.ts';
import { callVerifyCredentials } from '../src/verify.ts';
import {
  ACCESS,
  contract,
  MemoryKeyStore,
  memorySink,
  tempFolder,
  tokens,
} from './support/helpers.ts';

let component: Component;
before(async () => {
  component = await contract();
});

function verifyWith(mode: string, options: { timeoutMs?: number } = {}) {
  const session = new RunSession({
    component,
    cfg: { mode },
    keys: new MemoryKeyStore(),
    logger: memorySink().sink,
  });
  return session.verifyCredentials(options);
}

describe('verifyCredentials: the result rules', () => {
  it('cb(null, {verified: true})', async () => {
    assert.deepEqual(await verifyWith('callback-ok'), { verified: true });
  });

  it('cb(err) is {verified: false, reason: err.message}', async () => {
    assert.deepEqual(await verifyWith('callback-error'), {
      verified: false,
      reason: 'the API said no',
    });
  });

  it('a result without verified counts as verified (callback and promise)', async () => {
    assert.deepEqual(await verifyWith('callback-no-verified'), { verified: true });
    assert.deepEqual(await verifyWith('promise-no-verified'), { verified: true });
    assert.deepEqual(await verifyWith('promise-undefined'), { verified: true });
  });

  it('a promise of {verified: false, reason} is taken as it is', async () => {
    assert.deepEqual(await verifyWith('promise-false'), {
      verified: false,
      reason: 'scope missing',
    });
  });

  it('a throw and a rejection are {verified: false, reason}; the reason never shows a token', async () => {
    const thrown = await verifyWith('throws');
    assert.equal(thrown.verified, false);
    assert.equal(thrown.reason, 'bad token [redacted]');
    assert.ok(!JSON.stringify(thrown).includes(ACCESS));
    assert.deepEqual(await verifyWith('rejects'), { verified: false, reason: 'network down' });
  });

  it('a verify that never answers is {verified: false} after timeoutMs', async () => {
    const result = await verifyWith('never', { timeoutMs: 30 });
    assert.equal(result.verified, false);
    assert.match(result.reason ?? '', /did not answer within 30 ms/);
  });

  it('the credentials are the cfg with the keys from the store; this.getAccessToken works', async () => {
    assert.deepEqual(await verifyWith('fetch'), { verified: true });
  });

  it('a component without verifyCredentials.js is accepted unchecked, and says so', async () => {
    const dir = await tempFolder();
    await writeFile(
      join(dir, 'component.json'),
      JSON.stringify({
        title: 't',
        description: 'd',
        actions: { a: { title: 'a', main: 'a.js' } },
      }),
    );
    await writeFile(join(dir, 'package.json'), '{"private": true}');
    await writeFile(join(dir, 'a.js'), 'exports.process = async () => undefined;\n');
    const withoutFile = await loadComponent(dir);
    const session = new RunSession({ component: withoutFile, logger: memorySink().sink });
    const result = await session.verifyCredentials();
    assert.equal(result.verified, true);
    assert.equal(result.skipped, true);
    assert.match(result.reason ?? '', /no verifyCredentials\.js/);
  });

  it('keys that cannot be read make the credentials unverified, with the reason', async () => {
    const keys = new MemoryKeyStore();
    keys.readKeys = async () => {
      throw new Error('credential cr_memory: reauthorization required');
    };
    const session = new RunSession({ component, keys, logger: memorySink().sink });
    assert.deepEqual(await session.verifyCredentials(), {
      verified: false,
      reason: 'credential cr_memory: reauthorization required',
    });
  });
});

describe('callVerifyCredentials', () => {
  const call = (fn: VerifyFunction, options = {}) =>
    callVerifyCredentials(fn, {}, { oauth: tokens() }, options);

  it('the first answer counts: a callback after a returned promise is ignored', async () => {
    const result = await call(function verify(_credentials, cb) {
      setImmediate(() => cb(null, { verified: false }));
      return Promise.resolve({ verified: true });
    });
    assert.deepEqual(result, { verified: true });
  });

  it('verified is coerced to a boolean; a non-string reason is stringified', async () => {
    assert.deepEqual(await call(async () => ({ verified: 0, reason: 42 })), {
      verified: false,
      reason: '42',
    });
    assert.deepEqual(await call(async () => ({ verified: 'yes' })), { verified: true });
  });

  it('a truthy non-promise return value is the answer; a falsy one waits for the callback', async () => {
    assert.deepEqual(await call(() => ({ verified: false, reason: 'sync' })), {
      verified: false,
      reason: 'sync',
    });
    assert.deepEqual(
      await call((_c, cb) => {
        setImmediate(() => cb(undefined, { verified: false, reason: 'from cb' }));
        return false;
      }),
      { verified: false, reason: 'from cb' },
    );
  });

  it('a thrown non-Error and a rejected string still give a reason', async () => {
    assert.deepEqual(
      await call(() => {
        throw 'plain string';
      }),
      { verified: false, reason: 'plain string' },
    );
    assert.deepEqual(await call(() => Promise.reject({ message: 'object with message' })), {
      verified: false,
      reason: 'object with message',
    });
  });

  it('reasons are redacted with the redactor it is given', async () => {
    const redactor = new Redactor();
    redactor.addSecret('super-secret-refresh');
    const result = await call(
      async () => ({ verified: false, reason: 'refresh super-secret-refresh failed' }),
      { redactor },
    );
    assert.deepEqual(result, { verified: false, reason: 'refresh [redacted] failed' });
  });
});
