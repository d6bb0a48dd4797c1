import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { inspect } from 'node:util';
import type { Component } from '../src/component.ts';
import { RuntimeError } from '../src/errors.ts';
import { createLogger, jsonLineLogSink } from '../src/logger.ts';
import { Redactor } from '../src/redaction.ts';
import { RunSession } from '../src/session.ts';
import {
  ACCESS,
  contract,
  dataAt,
  MemoryKeyStore,
  memorySink,
  REFRESH,
} from './support/helpers.ts';

let component: Component;
before(async () => {
  component = await contract();
});

const SECRETS = [ACCESS, REFRESH, 'demo-secret-value'];

function assertClean(text: string): void {
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `${secret} leaked in:\n${text}`);
}

describe('redaction of what a run prints', () => {
  it('events printed as JSON lines never show a token, under any name; in-process data is intact', async () => {
    const logs = memorySink();
    const session = new RunSession({ component, keys: new MemoryKeyStore(), logger: logs.sink });
    const result = await session.runStep('logs', { body: {} });
    assert.deepEqual(
      result.events.map((e) => e.name),
      ['data', 'error', 'end'],
    );
    const lines = result.events.map((event) => event.toJsonLine());
    assertClean(lines.join('\n'));
    assertClean(result.events.map((event) => inspect(event)).join('\n'));
    assertClean(result.events.map((event) => String(event)).join('\n'));
    const data = JSON.parse(lines[0] ?? '{}') as {
      data: { body: { note: string; copy: Record<string, unknown> } };
    };
    assert.equal(data.data.body.note, 'used [redacted]');
    assert.equal(data.data.body.copy.access_token, '[redacted]');
    assert.equal(data.data.body.copy.refresh_token, '[redacted]');
    assert.equal(data.data.body.copy.scope, 'profile');
    const error = JSON.parse(lines[1] ?? '{}') as { data: { message: string; stack: string } };
    assert.equal(error.data.message, 'the API refused [redacted]');
    assert.ok(!error.data.stack.includes(ACCESS));
    // the caller in this process still gets what the component emitted
    assert.match(dataAt<{ body: { note: string } }>(result, 0).body.note, new RegExp(ACCESS));
  });

  it("the component's log lines are redacted: format arguments, fields, errors", async () => {
    const logs = memorySink();
    const session = new RunSession({ component, keys: new MemoryKeyStore(), logger: logs.sink });
    await session.runStep('logs', { body: {} });
    const component_ = logs.records.filter((r) => r.source === 'component');
    assert.equal(component_.length, 3);
    assertClean(logs.text());
    assert.equal(component_[0]?.msg, 'calling the API with [redacted]');
    assert.deepEqual(component_[1]?.headers, { authorization: '[redacted]' });
    assert.equal(component_[1]?.access_token, '[redacted]');
    assert.deepEqual(
      (component_[2]?.err as { message?: string } | undefined)?.message,
      'rejected [redacted]',
    );
    assert.equal(component_[2]?.step, 'logs');
  });

  it('an updateKeys event shows which members came, not their values', async () => {
    const session = new RunSession({
      component,
      keys: new MemoryKeyStore(),
      logger: memorySink().sink,
    });
    const result = await session.runStep('updateKeysThenData', {
      body: {
        newToken: {
          access_token: 'new-access-token-value',
          refresh_token: 'new-refresh-token-value',
          instance_url: 'https://eu1.example',
        },
      },
    });
    const line = result.events[0]?.toJsonLine() ?? '';
    assert.ok(
      !line.includes('new-access-token-value') && !line.includes('new-refresh-token-value'),
    );
    assert.deepEqual((JSON.parse(line) as { data: unknown }).data, {
      oauth: {
        access_token: '[redacted]',
        refresh_token: '[redacted]',
        instance_url: 'https://eu1.example',
      },
    });
    // and a token the session learned from updateKeys is redacted wherever it shows up later
    const later = await session.runStep('logs', { body: {} });
    const text = later.events.map((e) => e.toJsonLine()).join('\n');
    assert.ok(!text.includes('new-access-token-value'), text);
  });

  it("the runtime's errors never contain a token, even when the store's error does", async () => {
    const keys = new MemoryKeyStore();
    keys.updateKeys = async (response) => {
      throw new Error(`could not write ${String(response.access_token)}`);
    };
    const session = new RunSession({ component, keys, logger: memorySink().sink });
    const result = await session.runStep('updateKeysThenData', {
      body: { newToken: { access_token: 'unwritten-access-token' } },
    });
    const error = result.events[1]?.data;
    assert.ok(error instanceof RuntimeError);
    assert.equal(error.code, 'keys_not_stored');
    assert.ok(!error.message.includes('unwritten-access-token'), error.message);
    assert.match(error.message, /could not write \[redacted\]/);
    assert.ok(!JSON.stringify(error).includes('unwritten-access-token'));
  });

  it('Redactor: key-based and value-based, short values left alone', () => {
    const redactor = new Redactor();
    redactor.addSecret('abc');
    redactor.addSecretsOf({
      nested: { client_secret: 'client-secret-1234', label: 'label-text-1234' },
    });
    assert.deepEqual(
      redactor.redact({ text: 'abc client-secret-1234 label-text-1234', refresh_token: 'x' }),
      { text: 'abc [redacted] label-text-1234', refresh_token: '[redacted]' },
    );
    const error = redactor.redact(new Error('with client-secret-1234')) as Record<string, string>;
    assert.equal(error.name, 'Error');
    assert.equal(error.message, 'with [redacted]');
    assert.match(error.stack ?? '', /^Error: with \[redacted\]\n/);
  });

  it("regression: an error's code is printed (reauth_required is not an authorization code); a code member elsewhere is still redacted", () => {
    const redactor = new Redactor();
    redactor.addSecret(ACCESS);
    const error = Object.assign(new Error('grant revoked'), { code: 'reauth_required' });
    assert.deepEqual((redactor.redact(error) as Record<string, unknown>).code, 'reauth_required');
    const runtimeError = redactor.redact(new RuntimeError('keys_not_stored', 'disk full'));
    assert.equal((runtimeError as Record<string, unknown>).code, 'keys_not_stored');
    // an authorization code in a body, and a secret value inside an error's code
    assert.deepEqual(redactor.redact({ body: { code: 'authorization-code-123' } }), {
      body: { code: '[redacted]' },
    });
    const odd = Object.assign(new Error('x'), { code: `E_${ACCESS}` });
    assert.equal((redactor.redact(odd) as Record<string, unknown>).code, 'E_[redacted]');
  });

  it('jsonLineLogSink writes one JSON line per record at or above its level', () => {
    const lines: string[] = [];
    const redactor = new Redactor();
    redactor.addSecret(ACCESS);
    const logger = createLogger(
      jsonLineLogSink({ write: (line) => lines.push(line), level: 'info' }),
      redactor,
      'component',
    );
    logger.debug('dropped');
    logger.child({ requestId: 7 }).warn('token %s', ACCESS);
    assert.equal(lines.length, 1);
    const record = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
    assert.equal(record.msg, 'token [redacted]');
    assert.equal(record.level, 'warn');
    assert.equal(record.requestId, 7);
    assert.ok(lines[0]?.endsWith('\n'));
  });
});
