/**
 * Per-provider limits: the TOKENWARDEN_PROVIDER_LIMITS grammar (every problem
 * listed), and the limiter's concurrency, token bucket and priorities, on real
 * timers with small numbers. No network, no database.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, loadConfig } from '../../src/config.ts';
import {
  DEFAULT_PROVIDER_LIMIT,
  type LimitSlot,
  LimitWaitAborted,
  ProviderLimiter,
  parseProviderLimits,
  unknownProviders,
} from '../../src/refresher/provider-limits.ts';

describe('parseProviderLimits', () => {
  test('concurrency/rate[/burst] per provider, and a default for the others', () => {
    const parsed = parseProviderLimits(' microsoft=20/50 , google=5/0.5/3,default=8/16 ');
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.limits.byProvider, {
      microsoft: { concurrency: 20, ratePerSecond: 50, burst: 1 },
      google: { concurrency: 5, ratePerSecond: 0.5, burst: 3 },
    });
    assert.deepEqual(parsed.limits.default, { concurrency: 8, ratePerSecond: 16, burst: 1 });
    const limiter = new ProviderLimiter(parsed.limits);
    assert.deepEqual(limiter.limitFor('microsoft'), parsed.limits.byProvider.microsoft);
    assert.deepEqual(limiter.limitFor('box'), parsed.limits.default);
  });

  test('without a default entry the built-in one applies', () => {
    const parsed = parseProviderLimits('slack=1/1');
    assert.ok(parsed.ok);
    assert.deepEqual(parsed.limits.default, DEFAULT_PROVIDER_LIMIT);
  });

  test('every problem is listed, naming its entry', () => {
    const parsed = parseProviderLimits(
      'microsoft=0/50,google=5,xero=2/-1,box=2/1/0,zoom=x/1,Bad=1/1,slack=1/1,slack=2/2,hubspot=1/1/1/1',
    );
    assert.equal(parsed.ok, false);
    assert.ok(!parsed.ok);
    const text = parsed.problems.join('\n');
    for (const expected of [
      /microsoft: concurrency "0"/,
      /google: "5" must be <concurrency>\/<rate per second>/,
      /xero: rate "-1"/,
      /box: burst "0"/,
      /zoom: concurrency "x"/,
      /"Bad=1\/1" is not/,
      /"slack" is given more than once/,
      /hubspot: "1\/1\/1\/1"/,
    ]) {
      assert.match(text, expected);
    }
    assert.equal(parsed.problems.length, 8, text);
  });

  test('provider ids the catalog does not know are reported', () => {
    const parsed = parseProviderLimits('microsoft=1/1,micrsoft=1/1,default=1/1');
    assert.ok(parsed.ok);
    assert.deepEqual(
      unknownProviders(parsed.limits, (id) => id === 'microsoft'),
      ['micrsoft'],
    );
  });

  test('loadConfig: defaults, a good value, and bad ones listed with the other problems', () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.providerLimits.default, DEFAULT_PROVIDER_LIMIT);
    assert.equal(defaults.refreshClaimSize, 100);
    assert.equal(defaults.refreshBackoffMs, 5_000);
    assert.equal(defaults.refreshBackoffMaxMs, 300_000);
    const set = loadConfig({
      TOKENWARDEN_PROVIDER_LIMITS: 'microsoft=20/50',
      TOKENWARDEN_REFRESH_CLAIM_SIZE: '250',
      TOKENWARDEN_REFRESH_BACKOFF_MS: '200',
      TOKENWARDEN_REFRESH_BACKOFF_MAX_MS: '1000',
    });
    assert.deepEqual(set.providerLimits.byProvider.microsoft, {
      concurrency: 20,
      ratePerSecond: 50,
      burst: 1,
    });
    assert.equal(set.refreshClaimSize, 250);
    assert.equal(set.refreshBackoffMaxMs, 1000);
    try {
      loadConfig({
        TOKENWARDEN_PROVIDER_LIMITS: 'microsoft=0/50,google=1',
        TOKENWARDEN_REFRESH_CLAIM_SIZE: '0',
        PORT: 'x',
      });
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 4, error.problems.join('\n'));
      assert.ok(error.problems.some((p) => p.startsWith('TOKENWARDEN_PROVIDER_LIMITS: microsoft')));
      assert.ok(error.problems.some((p) => p.startsWith('TOKENWARDEN_PROVIDER_LIMITS: google')));
    }
  });
});

function limiter(text: string): ProviderLimiter {
  const parsed = parseProviderLimits(text);
  assert.ok(parsed.ok);
  return new ProviderLimiter(parsed.limits);
}

describe('ProviderLimiter', () => {
  test('concurrency: at most N slots at once, the next one when one is released', async () => {
    const limits = limiter('p=2/1000/1000');
    const slots: LimitSlot[] = [];
    const pending = Array.from({ length: 5 }, () =>
      limits.acquire('p', 'background').then((slot) => {
        slots.push(slot);
        return slot;
      }),
    );
    await sleep(20);
    assert.equal(slots.length, 2);
    assert.deepEqual(limits.usage('p'), { active: 2, waiting: 3 });
    slots[0]?.release();
    slots[0]?.release(); // twice is harmless
    await sleep(5);
    assert.equal(slots.length, 3);
    for (const slot of slots) slot.release();
    await sleep(5);
    for (const slot of slots) slot.release();
    await Promise.all(pending);
    for (const slot of slots) slot.release();
    assert.deepEqual(limits.usage('p'), { active: 0, waiting: 0 });
  });

  test('rate: background calls start no faster than the bucket refills', async () => {
    const limits = limiter('p=100/20'); // 20 per second, burst 1: one every 50 ms
    const started: number[] = [];
    const t0 = Date.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        const slot = await limits.acquire('p', 'background');
        started.push(Date.now() - t0);
        slot.release();
      }),
    );
    const elapsed = Date.now() - t0;
    // 1 at once, then 7 more at 50 ms intervals: about 350 ms.
    assert.ok(elapsed >= 330, `8 calls at 20/s took only ${elapsed} ms: ${started.join(', ')}`);
    assert.ok(elapsed < 1000, `took ${elapsed} ms`);
  });

  test('interactive calls go first and do not wait for the rate, but spend from it', async () => {
    const limits = limiter('p=1/10'); // one at a time, one every 100 ms
    const order: string[] = [];
    const first = await limits.acquire('p', 'background');
    const background = limits.acquire('p', 'background').then((slot) => {
      order.push('background');
      slot.release();
    });
    const interactive = limits.acquire('p', 'interactive').then((slot) => {
      order.push('interactive');
      return slot;
    });
    await sleep(5);
    assert.deepEqual(order, []);
    first.release();
    const slot = await interactive;
    assert.ok(slot.waitedMs < 50, `the interactive call waited ${slot.waitedMs} ms`);
    slot.release();
    await background;
    assert.deepEqual(order, ['interactive', 'background']);
  });

  test('a promoted background waiter is served before older background waiters', async () => {
    const limits = limiter('p=1/1000/1000');
    const order: number[] = [];
    const first = await limits.acquire('p', 'background');
    let promote: (() => void) | undefined;
    const waiters = [1, 2, 3].map((n) =>
      limits
        .acquire(
          'p',
          'background',
          n === 3 ? { ticket: (ticket) => (promote = ticket.promote) } : {},
        )
        .then((slot) => {
          order.push(n);
          slot.release();
        }),
    );
    promote?.();
    first.release();
    await Promise.all(waiters);
    assert.deepEqual(order, [3, 1, 2]);
  });

  test('an aborted wait rejects and leaves the line', async () => {
    const limits = limiter('p=1/1000');
    const first = await limits.acquire('p', 'background');
    const stop = new AbortController();
    const waiting = limits.acquire('p', 'background', { signal: stop.signal });
    stop.abort();
    await assert.rejects(waiting, LimitWaitAborted);
    assert.deepEqual(limits.usage('p'), { active: 1, waiting: 0 });
    first.release();
    await assert.rejects(
      limits.acquire('p', 'background', { signal: stop.signal }),
      LimitWaitAborted,
    );
  });

  test('providers have separate gates, unnamed ones each their own default', async () => {
    const limits = limiter('default=1/1000');
    const a = await limits.acquire('a', 'background');
    const b = await limits.acquire('b', 'background');
    a.release();
    b.release();
  });
});
