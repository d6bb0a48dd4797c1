/**
 * Webhook signing (src/webhooks/signature.ts) against an HMAC computed here by
 * hand, the receiver-side check with its failure reasons, and the two small
 * pure helpers deliveries depend on: the retry schedule and the URL policy.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { parseRetrySchedule, retryDelay } from '../src/webhooks/retry.ts';
import {
  computeSignature,
  newWebhookSecret,
  signatureHeader,
  verifySignature,
} from '../src/webhooks/signature.ts';
import { checkWebhookUrl } from '../src/webhooks/url-policy.ts';

const SECRET = 'whsec_test-secret-0123456789abcdefghijklmnopqrstu';
const BODY = '{"id":"whd_1","event":{"id":"7","type":"refreshed"}}';
const T = 1_763_780_000;

describe('webhook signature', () => {
  it('is HMAC-SHA256 keyed with the whole secret over "<t>.<raw body>", hex', () => {
    const expected = createHmac('sha256', SECRET).update(`${T}.${BODY}`).digest('hex');
    assert.equal(computeSignature(SECRET, T, BODY), expected);
    assert.equal(signatureHeader(SECRET, T, BODY), `t=${T},v1=${expected}`);
  });

  it('verifies its own header within the tolerance', () => {
    const header = signatureHeader(SECRET, T, BODY);
    assert.deepEqual(verifySignature(SECRET, BODY, header, { nowSeconds: T + 299 }), {
      valid: true,
      timestamp: T,
    });
    assert.deepEqual(verifySignature(SECRET, BODY, header, { nowSeconds: T - 10 }), {
      valid: true,
      timestamp: T,
    });
  });

  it('refuses another body, another secret, or a replay older than the tolerance', () => {
    const header = signatureHeader(SECRET, T, BODY);
    const at = { nowSeconds: T };
    assert.deepEqual(verifySignature(SECRET, `${BODY} `, header, at), {
      valid: false,
      reason: 'mismatch',
    });
    assert.deepEqual(verifySignature(`${SECRET}x`, BODY, header, at), {
      valid: false,
      reason: 'mismatch',
    });
    // The timestamp is signed: moving it breaks the signature rather than the window.
    const moved = header.replace(`t=${T}`, `t=${T + 1}`);
    assert.deepEqual(verifySignature(SECRET, BODY, moved, at), {
      valid: false,
      reason: 'mismatch',
    });
    assert.deepEqual(verifySignature(SECRET, BODY, header, { nowSeconds: T + 301 }), {
      valid: false,
      reason: 'expired',
    });
    assert.deepEqual(
      verifySignature(SECRET, BODY, header, { nowSeconds: T + 1000, toleranceSeconds: 2000 }),
      { valid: true, timestamp: T },
    );
  });

  it('accepts any of several v1 entries (room for a secret rotation)', () => {
    const good = computeSignature(SECRET, T, BODY);
    const other = computeSignature('whsec_other', T, BODY);
    assert.equal(
      verifySignature(SECRET, BODY, `t=${T},v1=${other},v1=${good}`, { nowSeconds: T }).valid,
      true,
    );
    assert.equal(
      verifySignature(SECRET, BODY, `t=${T},v0=abc,v1=${good}`, { nowSeconds: T }).valid,
      true,
      'unknown schemes are ignored',
    );
  });

  it('calls a malformed header malformed', () => {
    const good = computeSignature(SECRET, T, BODY);
    for (const header of [
      undefined,
      '',
      `v1=${good}`,
      `t=${T}`,
      `t=abc,v1=${good}`,
      `t=${T},t=${T},v1=${good}`,
      `t=${T},v1=${good.slice(2)}`,
      `t=${T},v1=${good.toUpperCase()}`,
      `${T},${good}`,
    ]) {
      assert.deepEqual(
        verifySignature(SECRET, BODY, header, { nowSeconds: T }),
        { valid: false, reason: 'malformed' },
        `header ${String(header)}`,
      );
    }
  });

  it('makes secrets of 32 random bytes with a recognizable prefix', () => {
    const a = newWebhookSecret();
    const b = newWebhookSecret();
    assert.match(a, /^whsec_[A-Za-z0-9_-]{43}$/);
    assert.notEqual(a, b);
    assert.equal(Buffer.from(a.slice(6), 'base64url').length, 32);
  });
});

describe('webhook retry schedule', () => {
  it('parses durations with units and refuses anything else, naming the item', () => {
    assert.deepEqual(parseRetrySchedule('10s,30s,2m,1h'), [10_000, 30_000, 120_000, 3_600_000]);
    assert.deepEqual(parseRetrySchedule(' 250ms , 1.5s '), [250, 1500]);
    for (const bad of ['', '10', '10x', '-1s', '0s', '8d', '10s,,abc', '200h']) {
      assert.throws(() => parseRetrySchedule(bad), Error, bad);
    }
    assert.throws(() => parseRetrySchedule('10x'), /"10x"/);
    assert.throws(() => parseRetrySchedule(Array(21).fill('1s').join(',')), /at most 20/);
  });

  it('gives the delay after the n-th failed attempt with ±20 % jitter, then undefined', () => {
    const schedule = [1000, 5000];
    assert.equal(
      retryDelay(schedule, 1, () => 0),
      800,
    );
    assert.equal(
      retryDelay(schedule, 1, () => 0.5),
      1000,
    );
    assert.equal(
      retryDelay(schedule, 1, () => 0.999_999),
      1200,
    );
    assert.equal(
      retryDelay(schedule, 2, () => 0.5),
      5000,
    );
    assert.equal(
      retryDelay(schedule, 3, () => 0.5),
      undefined,
      'the schedule is used up: give up',
    );
  });
});

describe('webhook URL policy', () => {
  const strict = { allowInsecureHttp: false };
  it('accepts https anywhere and http to loopback only', () => {
    assert.deepEqual(checkWebhookUrl('https://hooks.example.com/tw?x=1', strict), {
      url: 'https://hooks.example.com/tw?x=1',
    });
    for (const url of [
      'http://127.0.0.1:9000/hook',
      'http://localhost:8080/',
      'http://[::1]:8080/',
      'http://app.localhost/',
    ])
      assert.ok('url' in checkWebhookUrl(url, strict), url);
    const plain = checkWebhookUrl('http://hooks.example.com/', strict);
    assert.ok('problem' in plain && /https/.test(plain.problem));
    assert.ok('url' in checkWebhookUrl('http://hooks.example.com/', { allowInsecureHttp: true }));
  });

  it('refuses other schemes, credentials, fragments, relative and overlong URLs', () => {
    for (const url of [
      'ftp://example.com/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'https://user:pass@example.com/',
      'https://token@example.com/',
      'https://example.com/#frag',
      '/relative',
      'not a url',
      `https://example.com/${'a'.repeat(2048)}`,
    ]) {
      const checked = checkWebhookUrl(url, { allowInsecureHttp: true });
      assert.ok('problem' in checked, url);
      if ('problem' in checked)
        assert.ok(!checked.problem.includes('user:pass'), 'no credential echoed');
    }
  });
});
