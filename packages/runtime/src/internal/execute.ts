import type { ProcessFunction } from '../component.ts';
import type { StepContext } from '../context.ts';
import { RuntimeError } from '../errors.ts';
import type { ComponentLogger } from '../logger.ts';
import type { StepRun } from './step-run.ts';

export interface ExecuteOptions {
  /** Give up on the step after this long: `error` (step_timeout) then `end`. Undefined: wait. */
  timeoutMs: number | undefined;
  /** How long a promise still pending after `end` is waited for. */
  settleAfterEndMs: number;
  logger: ComponentLogger;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/** A promise that resolves to 'timeout' after `ms` (never, when `ms` is undefined), and its cancel. */
function deadline(ms: number | undefined): { expired: Promise<'timeout'>; cancel: () => void } {
  if (ms === undefined) return { expired: new Promise(() => undefined), cancel: () => undefined };
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), Math.max(0, ms));
  });
  return { expired, cancel: () => clearTimeout(timer) };
}

/**
 * Runs `process.call(ctx, msg, cfg, snapshot)` with sailor's rules
 * (elastic.io sailor's TaskExec), and waits for the step to finish:
 *
 * - `process` throws → `error`, then `end`.
 * - It returns a promise (async function, `co(function* …)`, a promise chain):
 *   when it fulfils with a truthy value → `data` with that value, then `end`;
 *   with a falsy value → `end`; when it rejects → `error`, then `end`.
 * - It returns a truthy non-promise value → `data`, then `end`.
 * - It returns nothing (callback style): the component emits `end` itself.
 *
 * The runtime's closing `end` is skipped when the component already emitted
 * one; a component's own second `end` is ignored with a warning.
 *
 * The step finishes when `end` was emitted and the promise returned by
 * `process`, if any, has settled (waited for at most `settleAfterEndMs` after
 * `end`), and every emitted event was handled. Events emitted after `end` but
 * before the step finished are recorded with `afterEnd: true` (sailor delivers
 * them too); events after it finished are logged, not recorded — except
 * `updateKeys`, whose keys are still stored.
 */
export async function executeProcess(
  processFunction: ProcessFunction,
  ctx: StepContext,
  run: StepRun,
  args: [msg: unknown, cfg: Record<string, unknown>, snapshot: Record<string, unknown>],
  options: ExecuteOptions,
): Promise<void> {
  const limit = deadline(options.timeoutMs);
  try {
    let returned: unknown;
    try {
      returned = processFunction.call(ctx, ...args);
    } catch (error) {
      await run.emit('error', error, 'runtime');
      await run.emit('end', undefined, 'runtime');
      return;
    }
    let settled: Promise<void> | undefined;
    if (isThenable(returned)) {
      settled = Promise.resolve(returned).then(
        async (value) => {
          if (value) await run.emit('data', value, 'runtime');
          await run.emit('end', undefined, 'runtime');
        },
        async (error: unknown) => {
          await run.emit(
            'error',
            error ?? new Error('process rejected without a reason'),
            'runtime',
          );
          await run.emit('end', undefined, 'runtime');
        },
      );
    } else if (returned) {
      void run.emit('data', returned, 'runtime');
      void run.emit('end', undefined, 'runtime');
    }

    const first = await Promise.race([run.endReached.then(() => 'end' as const), limit.expired]);
    if (first === 'timeout') {
      if (!run.ended) {
        await run.emit(
          'error',
          new RuntimeError(
            'step_timeout',
            `the step did not emit end within ${options.timeoutMs} ms${settled === undefined ? ' (process returned no promise, so it must emit end itself)' : ''}`,
          ),
          'runtime',
        );
        await run.emit('end', undefined, 'runtime');
      }
      return;
    }
    if (settled !== undefined) {
      const grace = deadline(options.settleAfterEndMs);
      const outcome = await Promise.race([
        settled.then(() => 'settled' as const),
        grace.expired,
        limit.expired,
      ]);
      grace.cancel();
      if (outcome === 'timeout') {
        options.logger.warn(
          'process emitted end, but the promise it returned had not settled %d ms later: not waited for',
          options.settleAfterEndMs,
        );
      }
    }
  } finally {
    limit.cancel();
    await run.finish();
  }
}
