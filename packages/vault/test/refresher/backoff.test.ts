/** The refresh backoff: capped exponential ceilings, equal jitter, Retry-After honoured. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { failureBackoffMs } from '../../src/refresher/backoff.ts';

const policy = { baseMs: 1000, maxMs: 8000 };

test('the ceiling doubles per failure up to the max; the wait lies in its upper half', () => {
  const low = (n: number) => failureBackoffMs(n, policy, undefined, () => 0);
  const high = (n: number) => failureBackoffMs(n, policy, undefined, () => 0.999999);
  assert.deepEqual([1, 2, 3, 4, 5, 50].map(low), [500, 1000, 2000, 4000, 4000, 4000]);
  assert.deepEqual([1, 2, 3, 4, 5, 50].map(high), [1000, 2000, 4000, 8000, 8000, 8000]);
  assert.equal(
    failureBackoffMs(0, policy, undefined, () => 0),
    500,
    'never below the first',
  );
});

test("a provider's Retry-After wins when it asks for longer", () => {
  assert.equal(
    failureBackoffMs(1, policy, 30, () => 0),
    30_000,
  );
  assert.equal(
    failureBackoffMs(4, policy, 1, () => 0),
    4000,
  );
});
