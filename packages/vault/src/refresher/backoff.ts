/**
 * How long a credential waits after failed refreshes before the background
 * refresher tries again: capped exponential backoff with "equal jitter" (half
 * the ceiling fixed, half random), so a provider outage is neither hammered nor
 * answered by every replica at the same instant, and never retried at once.
 */
export interface BackoffPolicy {
  /** The ceiling after the first failure; it doubles with each further one. */
  readonly baseMs: number;
  /** The largest ceiling. */
  readonly maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({ baseMs: 5_000, maxMs: 300_000 });

/**
 * The wait after `failures` consecutive failures (1 for the first). A provider's
 * `Retry-After` is honoured when it asks for longer.
 */
export function failureBackoffMs(
  failures: number,
  policy: BackoffPolicy,
  retryAfterSeconds?: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(failures, 1) - 1, 30);
  const ceiling = Math.min(policy.maxMs, policy.baseMs * 2 ** exponent);
  const jittered = Math.round(ceiling / 2 + (random() * ceiling) / 2);
  return retryAfterSeconds === undefined
    ? jittered
    : Math.max(jittered, Math.round(retryAfterSeconds * 1000));
}
