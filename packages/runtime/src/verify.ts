import type { VerifyFunction } from './component.ts';
import type { Redactor } from './redaction.ts';

/** What `tokenwarden verify` reports. */
export interface VerifyResult {
  verified: boolean;
  /** Why not (or, with `skipped`, why nothing was checked). Redacted. */
  reason?: string;
  /** The component has no verifyCredentials.js: accepted, as elastic.io does. */
  skipped?: true;
}

export interface CallVerifyOptions {
  /** Give up (`verified: false`) after this long. Default: wait. */
  timeoutMs?: number | undefined;
  redactor?: Redactor | undefined;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

/**
 * Calls a component's verifyCredentials with sailor's rules:
 * - `verify.call(ctx, credentials, cb)`; the first answer counts: `cb(err, result)`,
 *   the returned promise, or a returned value.
 * - A result with `verified` is taken as it is (`verified` coerced to boolean,
 *   `reason` kept); a result without `verified` (undefined, `true`, `{}`) counts
 *   as verified.
 * - A throw, a rejection or `cb(err)` is `{verified: false, reason: err.message}`.
 * - A function that returns a promise is judged when it settles, as sailor does,
 *   even if it also calls `cb` later.
 * - A function that returns nothing (or another falsy value) is waited for
 *   until it calls `cb` (or `timeoutMs` passes).
 */
export function callVerifyCredentials(
  verify: VerifyFunction,
  thisArg: unknown,
  credentials: Record<string, unknown>,
  options: CallVerifyOptions = {},
): Promise<VerifyResult> {
  const reasonOf = (error: unknown): string => {
    const text =
      error instanceof Error
        ? error.message
        : typeof (error as { message?: unknown })?.message === 'string'
          ? (error as { message: string }).message
          : String(error);
    return options.redactor?.redactText(text) ?? text;
  };
  const normalize = (value: unknown): VerifyResult => {
    if (typeof value === 'object' && value !== null && 'verified' in value) {
      const { verified, reason } = value as { verified: unknown; reason?: unknown };
      const result: VerifyResult = { verified: Boolean(verified) };
      if (reason !== undefined && reason !== null) result.reason = reasonOf(reason);
      return result;
    }
    return { verified: true };
  };

  return new Promise((resolve) => {
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const finish = (result: VerifyResult) => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      resolve(result);
    };
    const fail = (error: unknown) => finish({ verified: false, reason: reasonOf(error) });
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(
        () => fail(new Error(`verifyCredentials did not answer within ${options.timeoutMs} ms`)),
        options.timeoutMs,
      );
    }
    const callback = (error?: unknown, result?: unknown) => {
      if (error !== undefined && error !== null) fail(error);
      else finish(normalize(result));
    };
    let returned: unknown;
    try {
      returned = verify.call(thisArg, credentials, callback);
    } catch (error) {
      fail(error);
      return;
    }
    if (isThenable(returned)) {
      Promise.resolve(returned).then((value) => finish(normalize(value)), fail);
    } else if (returned) {
      // As sailor: only a truthy value counts; a falsy one waits for the callback.
      finish(normalize(returned));
    }
  });
}
