import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isSecretKey, REDACTED, redact } from '../src/index.ts';

describe('isSecretKey', () => {
  const secret = [
    'access_token',
    'refresh_token',
    'id_token',
    'token',
    'ACCESS_TOKEN',
    'bot_access_token',
    'client_secret',
    'code_verifier',
    'signature',
    'password',
    'client_assertion',
    'code',
    'authorization',
    'Authorization',
    'cookie',
  ];
  for (const key of secret) {
    it(`treats ${key} as a secret`, () => {
      assert.equal(isSecretKey(key), true);
    });
  }

  const notSecret = [
    'token_type',
    'expires_in',
    'refresh_token_expires_in',
    'x_refresh_token_expires_in',
    'scope',
    'instance_url',
    'issued_at',
    'error_code',
    'codes',
    'tokens',
    'token_count',
    'id',
  ];
  for (const key of notSecret) {
    it(`does not treat ${key} as a secret`, () => {
      assert.equal(isSecretKey(key), false);
    });
  }
});

describe('redact', () => {
  it('replaces secret members in nested objects and arrays, keeping everything else', () => {
    const input = {
      access_token: 'a-secret',
      token_type: 'bearer',
      expires_in: 3600,
      instance_url: 'https://acme.my.salesforce.com',
      authed_user: { id: 'U1', access_token: 'nested-secret', token_type: 'user' },
      accounts: [
        { name: 'first', refresh_token: 'array-secret' },
        'plain string',
        42,
        null,
        [{ client_secret: 'deep-array-secret', keep: true }],
      ],
    };
    assert.deepEqual(redact(input), {
      access_token: REDACTED,
      token_type: 'bearer',
      expires_in: 3600,
      instance_url: 'https://acme.my.salesforce.com',
      authed_user: { id: 'U1', access_token: REDACTED, token_type: 'user' },
      accounts: [
        { name: 'first', refresh_token: REDACTED },
        'plain string',
        42,
        null,
        [{ client_secret: REDACTED, keep: true }],
      ],
    });
  });

  it('redacts a secret member whole, even when its value is an object', () => {
    assert.deepEqual(redact({ authorization: { user: 'u', pass: 'p' } }), {
      authorization: REDACTED,
    });
  });

  it('does not change its input', () => {
    const input = { refresh_token: 'r', nested: { id_token: 'i' } };
    redact(input);
    assert.deepEqual(input, { refresh_token: 'r', nested: { id_token: 'i' } });
  });

  it('returns primitives unchanged', () => {
    assert.equal(redact('text'), 'text');
    assert.equal(redact(7), 7);
    assert.equal(redact(null), null);
    assert.equal(redact(undefined), undefined);
    assert.equal(redact(false), false);
  });

  it('cuts off very deep values instead of printing them', () => {
    let deep: unknown = { leaf: 'deep-value-marker' };
    for (let i = 0; i < 12; i++) deep = { next: deep };
    const text = JSON.stringify(redact(deep));
    assert.ok(!text.includes('deep-value-marker'), text);
    assert.ok(text.includes(REDACTED));
  });
});
