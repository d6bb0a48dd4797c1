import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenSet } from '@tokenwarden/oauth';
import { bearerKey } from '../src/http/app.ts';
import { accessTokenAnswer } from '../src/http/routes-api.ts';
import { sameAsciiBytes } from '../src/store/tenants.ts';

test('bearerKey: the usual spelling and every other the expression accepts', () => {
  const key = 'twk_0a1b2c_abcdefghijklmnopqrstuvwxyz0123456789-_AB';
  assert.equal(bearerKey(`Bearer ${key}`), key);
  assert.equal(bearerKey(`bearer ${key}`), key);
  assert.equal(bearerKey(`BEARER ${key}`), key);
  assert.equal(bearerKey(`Bearer  ${key}`), key, 'more than one space');
  assert.equal(bearerKey(`Bearer\t${key}`), key);
  assert.equal(bearerKey(undefined), undefined);
  assert.equal(bearerKey(''), undefined);
  assert.equal(bearerKey('Bearer '), undefined);
  assert.equal(bearerKey('Bearer'), undefined);
  assert.equal(bearerKey(`Basic ${key}`), undefined);
  assert.equal(bearerKey(`Bearer ${key} trailing`), undefined);
  assert.equal(bearerKey(`Bearer ${key}\tx`), undefined);
  assert.equal(bearerKey(`Bearer ${key} `), undefined);
  assert.equal(bearerKey(`Bearer${key}`), undefined);
});

test('sameAsciiBytes: equal only for the same bytes and length', () => {
  const bytes = Buffer.from('twk_ab_secret', 'utf8');
  assert.equal(sameAsciiBytes(bytes, 'twk_ab_secret'), true);
  assert.equal(sameAsciiBytes(bytes, 'twk_ab_secreT'), false);
  assert.equal(sameAsciiBytes(bytes, 'Twk_ab_secret'), false);
  assert.equal(sameAsciiBytes(bytes, 'twk_ab_secre'), false);
  assert.equal(sameAsciiBytes(bytes, 'twk_ab_secrett'), false);
  assert.equal(sameAsciiBytes(bytes, ''), false);
  assert.equal(sameAsciiBytes(Buffer.alloc(0), ''), true);
  // Zeroed bytes (an evicted entry) match nothing printable.
  assert.equal(sameAsciiBytes(Buffer.alloc(bytes.length), 'twk_ab_secret'), false);
});

test('accessTokenAnswer: the documented members, made once per token set', () => {
  const tokenSet = TokenSet.fromResponse(
    {
      access_token: 'at-1',
      token_type: 'bearer',
      expires_in: 3600,
      refresh_token: 'rt-1',
      scope: 'a b',
      instance_url: 'https://example.my.salesforce.com',
    },
    1_700_000_000_000,
  );
  const answer = accessTokenAnswer(tokenSet);
  assert.deepEqual(JSON.parse(answer), {
    access_token: 'at-1',
    token_type: 'Bearer',
    expires_at: 1_700_003_600,
    extra: { scope: 'a b', instance_url: 'https://example.my.salesforce.com' },
  });
  assert.equal(answer.includes('rt-1'), false, 'no refresh token');
  assert.equal(accessTokenAnswer(tokenSet), answer);

  const noLifetime = TokenSet.fromResponse({ access_token: 'at-2', token_type: 'Bearer' }, 0);
  assert.equal(JSON.parse(accessTokenAnswer(noLifetime)).expires_at, null);
});
