import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, LazyChildLogger } from '../src/logger.ts';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n'))
        if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger(level, destination);
  let children = 0;
  const child = logger.child;
  // Children inherit this from the root logger: `this` is whichever logger is asked.
  logger.child = function (this: typeof logger, ...args: Parameters<typeof child>) {
    children++;
    return child.apply(this, args);
  } as typeof logger.child;
  return { logger, lines, children: () => children };
}

test('no child logger is made for a request that logs nothing at an enabled level', () => {
  const { logger, lines, children } = capture('warn');
  const request = new LazyChildLogger(logger, { reqId: 'req-1' }, {});
  request.info({ res: { statusCode: 200 } }, 'request completed');
  request.debug('detail');
  assert.equal(children(), 0);
  assert.equal(lines.length, 0);
  assert.equal(request.level, 'warn');
  assert.equal(request.isLevelEnabled('info'), false);
});

test('the first line at an enabled level makes the child, with its bindings and the redaction', async () => {
  const { logger, lines, children } = capture('info');
  const request = new LazyChildLogger(logger, { reqId: 'req-2' }, {});
  request.info({ client_secret: 'cs-should-not-appear' }, 'first');
  request.warn('second');
  request.child({ step: 'x' }).info('third');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(children(), 2, "the request's child, once, and the child asked of it");
  assert.deepEqual(
    lines.map((line) => [line.reqId, line.msg, line.client_secret, line.step]),
    [
      ['req-2', 'first', '[redacted]', undefined],
      ['req-2', 'second', undefined, undefined],
      ['req-2', 'third', undefined, 'x'],
    ],
  );
});

test("a route's own log level gets a real child at once, and its level decides", async () => {
  const { logger, lines, children } = capture('warn');
  const request = new LazyChildLogger(logger, { reqId: 'req-3' }, { level: 'debug' });
  assert.equal(children(), 1);
  assert.equal(request.level, 'debug');
  request.debug('kept');
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    lines.map((line) => line.msg),
    ['kept'],
  );
});
