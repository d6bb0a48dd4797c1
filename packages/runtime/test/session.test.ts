import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Component } from '../src/component.ts';
import { RuntimeError } from '../src/errors.ts';
import { RunSession } from '../src/session.ts';
import {
  ACCESS,
  contract,
  dataAt,
  MemoryKeyStore,
  memorySink,
  REFRESH,
  tokens,
} from './support/helpers.ts';

let component: Component;
before(async () => {
  component = await contract();
});

function quiet() {
  return memorySink().sink;
}

describe('RunSession: updateKeys and the cfg of later messages', () => {
  it('fills the credential field from the key store, over what cfg had', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({
      component,
      keys,
      cfg: { oauth: { access_token: 'stale-from-cfg' }, other: 'kept' },
      logger: quiet(),
    });
    const result = await session.runStep('readCfg', { body: {} });
    assert.deepEqual(result.events[0]?.data, { body: { oauth: tokens(), other: 'kept' } });
  });

  it('keys from updateKeys are merged into the cfg of the next message (sailor does not do this)', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({ component, keys, logger: quiet() });
    const newToken = { access_token: 'rotated-access-2', refresh_token: 'rotated-refresh-2' };
    await session.runStep('updateKeysThenData', { body: { newToken } });
    const next = await session.runStep('readCfg', { body: {} });
    const oauth = dataAt<{ body: { oauth: Record<string, unknown> } }>(next, 0).body.oauth;
    assert.equal(oauth.access_token, 'rotated-access-2');
    assert.equal(oauth.refresh_token, 'rotated-refresh-2');
    assert.equal(oauth.scope, 'profile', 'members the response omits are kept');
    assert.equal(oauth.expires_in, undefined, 'an old expires_in says nothing of the new token');
    assert.equal(
      session.cfg.oauth && (session.cfg.oauth as { token_type: string }).token_type,
      'Bearer',
    );
  });

  it('a response without refresh_token keeps the stored one, in the store and in cfg', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({ component, keys, logger: quiet() });
    await session.runStep('updateKeysThenData', {
      body: { newToken: { access_token: 'only-access-3', token_type: 'bearer', expires_in: 10 } },
    });
    assert.equal(keys.keys.refresh_token, REFRESH);
    assert.equal((session.cfg.oauth as { refresh_token: string }).refresh_token, REFRESH);
    assert.equal((session.cfg.oauth as { expires_in: number }).expires_in, 10);
  });

  it('accepts a bare token response, and the whole configuration (the Salesforce example emits cfg)', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({ component, keys, logger: quiet() });
    const bare = await session.runStep('updateKeysAwaited', {
      body: { payload: { access_token: 'bare-access-4', instance_url: 'https://eu1.example' } },
    });
    assert.deepEqual(
      bare.events.map((e) => e.name),
      ['updateKeys', 'data', 'end'],
    );
    assert.equal(keys.keys.instance_url, 'https://eu1.example');
    const whole = await session.runStep('updateKeysAwaited', {
      body: {
        payload: { oauth: { access_token: 'whole-access-5' }, other: 'changed', _account: 'a1' },
      },
    });
    assert.equal(whole.ok, true);
    assert.equal(keys.keys.access_token, 'whole-access-5');
    assert.equal(keys.keys.other, undefined, 'only the credential is stored');
    assert.equal(session.cfg.other, 'changed', 'other members update the session cfg');
    assert.equal(
      (session.cfg.oauth as { instance_url: string }).instance_url,
      'https://eu1.example',
    );
  });

  it('a failure to store is an error event, the emit promise rejects, and the keys are stored before the next message', async () => {
    const keys = new MemoryKeyStore();
    keys.failures = 1;
    const session = new RunSession({ component, keys, logger: quiet() });
    const result = await session.runStep('updateKeysAwaited', {
      body: {
        payload: { oauth: { access_token: 'unsaved-access-6', refresh_token: 'unsaved-rt-6' } },
      },
    });
    assert.deepEqual(
      result.events.map((e) => e.name),
      ['updateKeys', 'error', 'data', 'end'],
    );
    const error = result.events[1]?.data;
    assert.ok(error instanceof RuntimeError);
    assert.equal(error.code, 'keys_not_stored');
    assert.match(error.message, /memory key store/);
    assert.match(error.message, /disk full/);
    assert.equal(error.credentialId, 'cr_memory');
    // the component saw the rejection
    assert.deepEqual(result.events[2]?.data, { body: { stored: false, code: 'keys_not_stored' } });
    assert.equal(result.ok, false);
    assert.equal(session.hasUnsavedKeys, true);
    // the keys are not dropped: cfg has them, and the next message stores them first
    assert.equal((session.cfg.oauth as { refresh_token: string }).refresh_token, 'unsaved-rt-6');
    const next = await session.runStep('readCfg', { body: {} });
    assert.equal(next.ok, true);
    assert.equal(keys.keys.refresh_token, 'unsaved-rt-6');
    assert.equal(session.hasUnsavedKeys, false);
    const oauth = dataAt<{ body: { oauth: { access_token: string } } }>(next, 0).body.oauth;
    assert.equal(oauth.access_token, 'unsaved-access-6');
  });

  it('a store that keeps failing: the next step is not run, and says why', async () => {
    const keys = new MemoryKeyStore();
    keys.failures = 2;
    const session = new RunSession({ component, keys, logger: quiet() });
    await session.runStep('updateKeysThenData', {
      body: { newToken: { access_token: 'unsaved-access-7' } },
    });
    const next = await session.runStep('returnValue', { body: {} });
    assert.deepEqual(
      next.events.map((e) => e.name),
      ['error', 'end'],
    );
    const error = next.events[0]?.data as RuntimeError;
    assert.equal(error.code, 'keys_not_stored');
    assert.match(error.message, /earlier message/);
    assert.equal(next.ok, false);
    const third = await session.runStep('readCfg', { body: {} });
    assert.equal(third.ok, true);
    assert.equal(keys.keys.access_token, 'unsaved-access-7');
  });

  it('the un-awaited updateKeys of a callback component fails as an error event, never an unhandled rejection', async () => {
    const keys = new MemoryKeyStore();
    keys.failures = 1;
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const session = new RunSession({ component, keys, logger: quiet() });
      const result = await session.runStep('updateKeysThenData', {
        body: { newToken: { access_token: 'lost-access-8' } },
      });
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        result.events.map((e) => e.name),
        ['updateKeys', 'error', 'data', 'end'],
      );
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('without a key store, updateKeys is a no_key_store error (the keys would be lost)', async () => {
    const session = new RunSession({
      component,
      cfg: { oauth: tokens() },
      logger: quiet(),
    });
    const result = await session.runStep('updateKeysAwaited', {
      body: { payload: { oauth: { access_token: 'nowhere-to-go-9' } } },
    });
    assert.deepEqual(
      result.events.map((e) => e.name),
      ['updateKeys', 'error', 'data', 'end'],
    );
    assert.equal(dataAt<RuntimeError>(result, 1).code, 'no_key_store');
    // still in this session's cfg
    assert.equal((session.cfg.oauth as { access_token: string }).access_token, 'nowhere-to-go-9');
  });

  it('updateKeys emitted after the step finished is not recorded, but its keys are still stored', async () => {
    const keys = new MemoryKeyStore();
    const logs = memorySink();
    const session = new RunSession({ component, keys, logger: logs.sink });
    const result = await session.runStep('lateUpdateKeys', { body: { late: 'late-access-token' } });
    assert.deepEqual(
      result.events.map((e) => e.name),
      ['data', 'end'],
    );
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(keys.keys.access_token, 'late-access-token');
    assert.equal((session.cfg.oauth as { access_token: string }).access_token, 'late-access-token');
    assert.equal(result.events.length, 2);
    assert.ok(logs.records.some((r) => /updateKeys emitted after the step finished/.test(r.msg)));
  });

  it('a payload that is not a token response is an invalid_keys_payload error; nothing is stored', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({ component, keys, logger: quiet() });
    for (const payload of [
      'a string',
      { oauth: { refresh_token: 'no-access-token' } },
      { oauth: { access_token: 'x', expires_in: 'soon' } },
      { oauth: { access_token: 'x', refresh_token: 42 } },
      { a: 1, b: 2 },
    ]) {
      const result = await session.runStep('updateKeysAwaited', { body: { payload } });
      assert.deepEqual(
        result.events.map((e) => e.name),
        ['error', 'data', 'end'],
        JSON.stringify(payload),
      );
      assert.equal(dataAt<RuntimeError>(result, 0).code, 'invalid_keys_payload');
    }
    assert.equal(keys.attempts.length, 0);
    assert.equal(keys.keys.access_token, ACCESS);
  });

  it('expires_in as a numeric string is coerced before it is stored', async () => {
    const keys = new MemoryKeyStore();
    const session = new RunSession({ component, keys, logger: quiet() });
    await session.runStep('updateKeysAwaited', {
      body: { payload: { oauth: { access_token: 'coerced-access-10', expires_in: '3599' } } },
    });
    assert.equal(keys.keys.expires_in, 3599);
    assert.equal(keys.keys.token_type, 'Bearer');
  });

  it('the snapshot carries from one message to the next, as in sailor', async () => {
    const session = new RunSession({ component, logger: quiet() });
    for (const expected of [0, 1, 2]) {
      const result = await session.runStep('poll', { body: {} });
      assert.deepEqual(result.events[1]?.data, { body: { polledSince: expected } });
    }
    assert.deepEqual(session.snapshot, { since: 3 });
  });

  it('serial (default): concurrent calls run one after another; parallel: side by side', async () => {
    const order = async (concurrency: 'serial' | 'parallel') => {
      const keys = new MemoryKeyStore();
      const seen: string[] = [];
      const read = keys.readKeys.bind(keys);
      let reads = 0;
      keys.readKeys = () => {
        seen.push(`start${++reads}`);
        return read();
      };
      const session = new RunSession({ component, keys, concurrency, logger: quiet() });
      await Promise.all(
        [1, 2].map((n) =>
          session.runStep(
            'callback',
            { body: n },
            { onEvent: (event) => seen.push(`${n}:${event.name}`) },
          ),
        ),
      );
      return seen;
    };
    assert.deepEqual(await order('serial'), [
      'start1',
      '1:data',
      '1:end',
      'start2',
      '2:data',
      '2:end',
    ]);
    const parallel = await order('parallel');
    assert.deepEqual(parallel.slice(0, 2), ['start1', 'start2']);
  });

  it('a key store that cannot be read fails the step with its error; the component does not run', async () => {
    const keys = new MemoryKeyStore();
    keys.readKeys = async () => {
      throw new RuntimeError('vault_unavailable', 'credential cr_memory: vault down');
    };
    const session = new RunSession({ component, keys, logger: quiet() });
    const result = await session.runStep('returnValue', { body: {} });
    assert.deepEqual(
      result.events.map((e) => e.name),
      ['error', 'end'],
    );
    assert.equal(dataAt<RuntimeError>(result, 0).code, 'vault_unavailable');
    assert.equal(result.ok, false);
  });
});
