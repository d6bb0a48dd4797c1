import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import type { Component } from '../src/component.ts';
import { RuntimeError } from '../src/errors.ts';
import type { EmittedEvent } from '../src/events.ts';
import { runStep } from '../src/run.ts';
import type { StepResult } from '../src/session.ts';
import { contract, dataAt, MemoryKeyStore, memorySink } from './support/helpers.ts';

let component: Component;
before(async () => {
  component = await contract();
});

function names(result: StepResult): string[] {
  return result.events.map((event) => event.name);
}

function byName(result: StepResult, name: string): EmittedEvent[] {
  return result.events.filter((event) => event.name === name);
}

describe('the sailor contract, event by event', () => {
  it('a truthy value returned by an async function is data, then end', async () => {
    const result = await runStep({ component, step: 'returnValue', msg: { body: { a: 1 } } });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.deepEqual(result.events[0]?.data, { body: { echo: { a: 1 } } });
    assert.deepEqual(
      result.events.map((e) => e.origin),
      ['runtime', 'runtime'],
    );
    assert.deepEqual(
      result.events.map((e) => e.seq),
      [1, 2],
    );
    assert.equal(result.ok, true);
  });

  it('a truthy value returned by a plain function is data, then end', async () => {
    const result = await runStep({ component, step: 'syncReturn', msg: { body: { b: 2 } } });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.deepEqual(result.events[0]?.data, { body: { sync: true, echo: { b: 2 } } });
    assert.equal(result.ok, true);
  });

  it('an async function that emits by itself and returns nothing gets end when its promise settles', async () => {
    const result = await runStep({ component, step: 'returnFalsy', msg: { body: 'x' } });
    assert.deepEqual(names(result), ['data', 'data', 'end']);
    assert.deepEqual(
      result.events.map((e) => e.origin),
      ['component', 'component', 'runtime'],
    );
    assert.equal(result.ok, true);
  });

  it('a synchronous throw is error, then end, and the step is not ok', async () => {
    const result = await runStep({ component, step: 'throws' });
    assert.deepEqual(names(result), ['error', 'end']);
    assert.ok(result.events[0]?.data instanceof Error);
    assert.equal(dataAt<Error>(result, 0).message, 'thrown synchronously');
    assert.equal(result.ok, false);
  });

  it('a rejection is error, then end', async () => {
    const result = await runStep({ component, step: 'rejects' });
    assert.deepEqual(names(result), ['error', 'end']);
    assert.equal(dataAt<Error>(result, 0).message, 'rejected later');
    assert.equal(result.ok, false);
  });

  it('a callback-style component that emits end itself', async () => {
    const result = await runStep({ component, step: 'callback', msg: { body: { c: 3 } } });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.deepEqual(
      result.events.map((e) => e.origin),
      ['component', 'component'],
    );
    assert.deepEqual(result.events[0]?.data, { body: { callback: { c: 3 } } });
    assert.equal(result.ok, true);
  });

  it('a second end is ignored with a warning', async () => {
    const logs = memorySink();
    const result = await runStep({ component, step: 'doubleEnd', logger: logs.sink });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.equal(result.ok, true);
    const warnings = logs.records.filter((r) => r.level === 'warn' && r.source === 'runtime');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]?.msg ?? '', /end emitted more than once/);
    assert.equal(warnings[0]?.step, 'doubleEnd');
  });

  it('a generator wrapped in co: what it emits, then what it returns, then end', async () => {
    const result = await runStep({ component, step: 'coGenerator', msg: { body: { n: 21 } } });
    assert.deepEqual(names(result), ['data', 'data', 'end']);
    assert.deepEqual(result.events[0]?.data, { body: { fromGenerator: 42 } });
    assert.deepEqual(result.events[1]?.data, { body: { returned: 43, account: 'absent' } });
    assert.equal(result.ok, true);
  });

  it('emit returns a promise the component can await', async () => {
    const result = await runStep({ component, step: 'emitPromise' });
    assert.deepEqual(names(result), ['data', 'data', 'end']);
    assert.deepEqual(result.events[1]?.data, { body: { emitReturnedPromise: true } });
  });

  it('data returned after the component emitted end is recorded as afterEnd; no second end', async () => {
    const logs = memorySink();
    const result = await runStep({ component, step: 'endThenReturn', logger: logs.sink });
    assert.deepEqual(names(result), ['end', 'data']);
    assert.equal(result.events[1]?.afterEnd, true);
    assert.equal(result.events[0]?.afterEnd, false);
    assert.ok(logs.records.some((r) => /data emitted after end/.test(r.msg)));
    assert.ok(!logs.records.some((r) => /more than once/.test(r.msg)));
  });

  it('rebound is recorded and is not an error', async () => {
    const result = await runStep({ component, step: 'rebound' });
    assert.deepEqual(names(result), ['rebound', 'end']);
    assert.equal(dataAt<Error>(result, 0).message, 'try again later');
    assert.equal(result.ok, true);
    assert.deepEqual((JSON.parse(JSON.stringify(result.events[0])) as { data: unknown }).data, {
      name: 'Error',
      message: 'try again later',
      stack: dataAt<Error>(result, 0).stack,
    });
  });

  it('httpReply is recorded as emitted', async () => {
    const result = await runStep({ component, step: 'httpReply' });
    assert.deepEqual(names(result), ['httpReply', 'data', 'end']);
    assert.deepEqual(result.events[0]?.data, {
      statusCode: 202,
      body: 'accepted',
      headers: { 'x-a': '1' },
    });
  });

  it('snapshot replaces, updateSnapshot merges a plain object, $set and non-objects are ignored', async () => {
    const logs = memorySink();
    const result = await runStep({
      component,
      step: 'snapshot',
      msg: { body: { cursor: 7 } },
      snapshot: { before: true },
      logger: logs.sink,
    });
    assert.deepEqual(names(result), ['snapshot', 'updateSnapshot', 'data', 'end']);
    assert.deepEqual(byName(result, 'data')[0]?.data, { body: { seen: { before: true } } });
    assert.deepEqual(result.snapshot, { cursor: 7, extra: 'kept' });
    assert.ok(logs.records.some((r) => r.level === 'warn' && /\$set/.test(r.msg)));
    assert.ok(logs.records.some((r) => r.level === 'error' && /plain object/.test(r.msg)));
  });

  it('an unknown event is ignored with a warning', async () => {
    const logs = memorySink();
    const result = await runStep({ component, step: 'unknownEvent', logger: logs.sink });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.ok(logs.records.some((r) => /unknown event "frobnicate"/.test(r.msg)));
  });

  it('a step that never emits end is ended by timeoutMs with a step_timeout error', async () => {
    const result = await runStep({ component, step: 'neverEnds', timeoutMs: 50 });
    assert.deepEqual(names(result), ['data', 'error', 'end']);
    const error = result.events[1]?.data;
    assert.ok(error instanceof RuntimeError);
    assert.equal(error.code, 'step_timeout');
    assert.match(error.message, /must emit end itself/);
    assert.equal(result.ok, false);
  });

  it('triggers run like actions', async () => {
    const result = await runStep({ component, step: 'poll', snapshot: { since: 4 } });
    assert.deepEqual(names(result), ['snapshot', 'data', 'end']);
    assert.deepEqual(result.events[1]?.data, { body: { polledSince: 4 } });
    assert.deepEqual(result.snapshot, { since: 5 });
  });

  it('an ES module action', async () => {
    const result = await runStep({ component, step: 'esm', msg: { body: 1 } });
    assert.deepEqual(names(result), ['data', 'end']);
    assert.deepEqual(result.events[0]?.data, { body: { esm: true, echo: 1 } });
  });

  it('the message defaults to {body: {}}, and the step gets copies it cannot change for the caller', async () => {
    const msg = { body: { a: 1 } };
    const result = await runStep({ component, step: 'returnValue', msg });
    assert.deepEqual(result.events[0]?.data, { body: { echo: { a: 1 } } });
    const empty = await runStep({ component, step: 'returnValue' });
    assert.deepEqual(empty.events[0]?.data, { body: { echo: {} } });
  });

  it('an unknown step rejects with unknown_step naming the steps that exist', async () => {
    await assert.rejects(runStep({ component, step: 'nope' }), (error: unknown) => {
      assert.ok(error instanceof RuntimeError);
      assert.equal(error.code, 'unknown_step');
      assert.match(error.message, /"nope"/);
      assert.match(error.message, /returnValue/);
      return true;
    });
  });

  it('onEvent sees every event as it is recorded, in order', async () => {
    const seen: string[] = [];
    const result = await runStep({
      component,
      step: 'coGenerator',
      msg: { body: { n: 1 } },
      onEvent: (event) => seen.push(`${event.seq}:${event.name}`),
    });
    assert.deepEqual(seen, ['1:data', '2:data', '3:end']);
    assert.equal(result.events.length, 3);
  });

  it('updateKeys then data in the same call: both recorded in order, keys stored before end', async () => {
    const keys = new MemoryKeyStore();
    keys.writeDelayMs = 20;
    const newToken = { access_token: 'fresh-access-token-1', token_type: 'Bearer', expires_in: 60 };
    const result = await runStep({
      component,
      step: 'updateKeysThenData',
      msg: { body: { newToken } },
      keys,
    });
    assert.deepEqual(names(result), ['updateKeys', 'data', 'end']);
    assert.equal(result.ok, true);
    assert.equal(keys.attempts.length, 1);
    assert.equal(keys.keys.access_token, 'fresh-access-token-1');
    // omitted members are kept: the refresh token above all
    assert.equal(keys.keys.refresh_token, 'rt-0123456789-abcdef');
    // the data event came after the store finished: its timestamp is not before the write's end
    const [update, data] = result.events;
    assert.ok(update !== undefined && data !== undefined);
    assert.ok(data.at - update.at >= 15, `data at +${data.at - update.at} ms`);
  });
});
