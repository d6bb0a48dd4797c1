import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type ErrorCode,
  type RetryPolicy,
  retryDelayMs,
  TokenEndpointError,
  TokenwardenError,
  withRetry,
} from '../src/index.ts';

const unavailable = (retryAfterSeconds?: number) =>
  new TokenEndpointError(
    'token_endpoint_unavailable',
    'token endpoint answered HTTP 503',
    retryAfterSeconds === undefined ? { status: 503 } : { status: 503, retryAfterSeconds },
  );

/** A sleep that records the waits and returns at once. */
function fakeSleep() {
  const waits: number[] = [];
  return {
    waits,
    sleep: async (ms: number) => {
      waits.push(ms);
    },
  };
}

/** An operation that fails with the given errors in turn, then returns 'done'. */
function failing(...errors: Error[]) {
  const attempts: number[] = [];
  return {
    attempts,
    operation: async (attempt: number) => {
      attempts.push(attempt);
      const error = errors[attempts.length - 1];
      if (error !== undefined) throw error;
      return 'done';
    },
  };
}

describe('retryDelayMs', () => {
  const almostOne = () => 0.999_999;

  it('is full jitter under an exponential ceiling that doubles from 250 ms', () => {
    assert.equal(retryDelayMs(1, unavailable(), { random: almostOne }), 249);
    assert.equal(retryDelayMs(2, unavailable(), { random: almostOne }), 499);
    assert.equal(retryDelayMs(3, unavailable(), { random: almostOne }), 999);
    assert.equal(retryDelayMs(5, unavailable(), { random: almostOne }), 3999);
    assert.equal(retryDelayMs(1, unavailable(), { random: () => 0.5 }), 125);
    assert.equal(retryDelayMs(3, unavailable(), { random: () => 0 }), 0);
  });

  it('caps the ceiling at 8 s by default', () => {
    assert.equal(retryDelayMs(6, unavailable(), { random: almostOne }), 7999);
    assert.equal(retryDelayMs(20, unavailable(), { random: almostOne }), 7999);
    assert.equal(retryDelayMs(5000, unavailable(), { random: almostOne }), 7999);
  });

  it('honours baseDelayMs and maxDelayMs', () => {
    const policy: RetryPolicy = { baseDelayMs: 100, maxDelayMs: 1000, random: almostOne };
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((attempt) => retryDelayMs(attempt, unavailable(), policy)),
      [99, 199, 399, 799, 999, 999],
    );
  });

  it('property: always within [0, min(cap, base·2^(attempt−1)))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        (attempt, r, baseDelayMs, maxDelayMs) => {
          const delay = retryDelayMs(attempt, unavailable(), {
            random: () => r,
            baseDelayMs,
            maxDelayMs,
          });
          const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
          assert.ok(delay !== undefined && Number.isInteger(delay));
          assert.ok(delay >= 0 && delay < ceiling, `${delay} vs ceiling ${ceiling}`);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('waits for Retry-After, plus a little jitter under the base delay', () => {
    assert.equal(retryDelayMs(1, unavailable(3), { random: () => 0 }), 3000);
    assert.equal(retryDelayMs(1, unavailable(3), { random: () => 0.5 }), 3125);
    assert.equal(retryDelayMs(4, unavailable(3), { random: () => 0 }), 3000);
    assert.equal(retryDelayMs(1, unavailable(0), { random: () => 0 }), 0);
  });

  it('gives up (undefined) on a Retry-After longer than maxRetryAfterMs', () => {
    assert.equal(retryDelayMs(1, unavailable(31), { random: () => 0 }), undefined);
    assert.equal(retryDelayMs(1, unavailable(30), { random: () => 0 }), 30_000);
    assert.equal(
      retryDelayMs(1, unavailable(31), { random: () => 0, maxRetryAfterMs: 60_000 }),
      31_000,
    );
    assert.equal(
      retryDelayMs(1, unavailable(2), { random: () => 0, maxRetryAfterMs: 1000 }),
      undefined,
    );
  });
});

describe('withRetry', () => {
  it('returns the first success without waiting', async () => {
    const { sleep, waits } = fakeSleep();
    const op = failing();
    assert.equal(await withRetry(op.operation, { sleep }), 'done');
    assert.deepEqual(op.attempts, [1]);
    assert.deepEqual(waits, []);
  });

  it('retries token_endpoint_unavailable, passing the attempt number, and calls onRetry before each wait', async () => {
    const { sleep, waits } = fakeSleep();
    const first = unavailable();
    const second = unavailable();
    const op = failing(first, second);
    const retries: Array<{ attempt: number; delayMs: number; error: TokenEndpointError }> = [];
    const result = await withRetry(op.operation, {
      sleep,
      random: () => 0.5,
      onRetry: (info) => retries.push(info),
    });
    assert.equal(result, 'done');
    assert.deepEqual(op.attempts, [1, 2, 3]);
    assert.deepEqual(waits, [125, 250]);
    assert.deepEqual(retries, [
      { attempt: 1, delayMs: 125, error: first },
      { attempt: 2, delayMs: 250, error: second },
    ]);
  });

  it('waits for Retry-After', async () => {
    const { sleep, waits } = fakeSleep();
    const op = failing(unavailable(2));
    assert.equal(await withRetry(op.operation, { sleep, random: () => 0 }), 'done');
    assert.deepEqual(waits, [2000]);
  });

  it('gives up at once on a too-long Retry-After', async () => {
    const { sleep, waits } = fakeSleep();
    const error = unavailable(3600);
    const op = failing(error);
    let retried = false;
    await assert.rejects(
      withRetry(op.operation, { sleep, onRetry: () => (retried = true) }),
      (thrown) => thrown === error,
    );
    assert.deepEqual(op.attempts, [1]);
    assert.deepEqual(waits, []);
    assert.equal(retried, false);
  });

  const final: ErrorCode[] = [
    'reauth_required',
    'client_misconfigured',
    'invalid_token_response',
    'token_request_rejected',
  ];
  for (const code of final) {
    it(`never retries ${code}: the operation runs exactly once`, async () => {
      const { sleep, waits } = fakeSleep();
      const error = new TokenEndpointError(code, `classified ${code}`, { status: 400 });
      const op = failing(error, error, error);
      await assert.rejects(withRetry(op.operation, { sleep }), (thrown) => thrown === error);
      assert.deepEqual(op.attempts, [1]);
      assert.deepEqual(waits, []);
    });
  }

  it('never retries errors that are not TokenEndpointErrors, even with the unavailable code', async () => {
    const { sleep } = fakeSleep();
    for (const error of [
      new TypeError('a bug'),
      new TokenwardenError('token_endpoint_unavailable', 'not from an endpoint'),
    ]) {
      const op = failing(error, error);
      await assert.rejects(withRetry(op.operation, { sleep }), (thrown) => thrown === error);
      assert.deepEqual(op.attempts, [1]);
    }
  });

  it('stops at maxAttempts and throws the last error', async () => {
    const { sleep, waits } = fakeSleep();
    const errors = [unavailable(), unavailable(), unavailable(), unavailable()];
    const op = failing(...errors);
    await assert.rejects(
      withRetry(op.operation, { sleep, maxAttempts: 3, random: () => 0 }),
      (thrown) => thrown === errors[2],
    );
    assert.deepEqual(op.attempts, [1, 2, 3]);
    assert.equal(waits.length, 2);
  });

  it('makes 4 attempts by default', async () => {
    const { sleep, waits } = fakeSleep();
    const op = failing(...Array.from({ length: 10 }, () => unavailable()));
    await assert.rejects(withRetry(op.operation, { sleep, random: () => 0 }), TokenEndpointError);
    assert.deepEqual(op.attempts, [1, 2, 3, 4]);
    assert.equal(waits.length, 3);
  });

  it('treats maxAttempts below 1 as a single attempt', async () => {
    const { sleep } = fakeSleep();
    const op = failing(unavailable());
    await assert.rejects(withRetry(op.operation, { sleep, maxAttempts: 0 }), TokenEndpointError);
    assert.deepEqual(op.attempts, [1]);
  });
});
