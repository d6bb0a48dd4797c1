import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SingleFlight } from '../src/single-flight.ts';

/** A promise the test settles by hand, to hold an operation in flight. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('SingleFlight', () => {
  it('lets concurrent callers of one key share one run', async () => {
    const flights = new SingleFlight<string>();
    const gate = deferred<string>();
    let runs = 0;
    const operation = () => {
      runs++;
      return gate.promise;
    };

    const callers = Array.from({ length: 10 }, () => flights.run('k', operation));
    assert.equal(flights.has('k'), true);
    gate.resolve('value');
    assert.deepEqual(await Promise.all(callers), Array(10).fill('value'));
    assert.equal(runs, 1);
    assert.equal(flights.has('k'), false);
  });

  it('ignores a joining caller’s own operation', async () => {
    const flights = new SingleFlight<string>();
    const gate = deferred<string>();
    let secondRan = false;
    const first = flights.run('k', () => gate.promise);
    const second = flights.run('k', async () => {
      secondRan = true;
      return 'second';
    });
    gate.resolve('first');
    assert.equal(await second, 'first');
    assert.equal(await first, 'first');
    assert.equal(secondRan, false);
  });

  it('shares a failure with every caller, then frees the key', async () => {
    const flights = new SingleFlight<string>();
    const gate = deferred<string>();
    const failure = new Error('refresh failed');
    let runs = 0;
    const callers = Array.from({ length: 5 }, () =>
      flights.run('k', () => {
        runs++;
        return gate.promise;
      }),
    );
    gate.reject(failure);
    const outcomes = await Promise.allSettled(callers);
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.equal(outcome.status === 'rejected' && outcome.reason, failure);
    }
    assert.equal(runs, 1);
    assert.equal(flights.has('k'), false);

    // The next caller runs afresh instead of getting the old failure.
    assert.equal(
      await flights.run('k', async () => {
        runs++;
        return 'recovered';
      }),
      'recovered',
    );
    assert.equal(runs, 2);
  });

  it('runs different keys independently', async () => {
    const flights = new SingleFlight<string>();
    const slow = deferred<string>();
    const order: string[] = [];
    const a = flights
      .run('a', () => slow.promise)
      .then((value) => {
        order.push(value);
        return value;
      });
    const b = flights
      .run('b', async () => 'b-value')
      .then((value) => {
        order.push(value);
        return value;
      });
    assert.equal(await b, 'b-value');
    assert.equal(flights.has('a'), true, 'a is still in flight while b finished');
    slow.resolve('a-value');
    assert.equal(await a, 'a-value');
    assert.deepEqual(order, ['b-value', 'a-value']);
  });

  it('does not cache results: a call after the flight ended runs again', async () => {
    const flights = new SingleFlight<number>();
    let runs = 0;
    const operation = async () => ++runs;
    assert.equal(await flights.run('k', operation), 1);
    assert.equal(await flights.run('k', operation), 2);
  });

  // Regression: an operation that threw before returning its promise left its
  // rejected flight under the key for good, so the key never ran again.
  it('frees the key when the operation throws synchronously', async () => {
    const flights = new SingleFlight<string>();
    const failure = new Error('thrown before any await');
    await assert.rejects(
      flights.run('k', () => {
        throw failure;
      }),
      failure,
    );
    assert.equal(flights.has('k'), false);
    assert.equal(await flights.run('k', async () => 'runs again'), 'runs again');
  });
});
