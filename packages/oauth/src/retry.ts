import { TokenEndpointError } from './errors.ts';

/** How transient token-endpoint failures are retried. */
export interface RetryPolicy {
  /** Attempts in all, the first included. Default 4. */
  maxAttempts?: number;
  /** First backoff ceiling in milliseconds; doubles each attempt. Default 250. */
  baseDelayMs?: number;
  /** Backoff ceiling in milliseconds. Default 8 000. */
  maxDelayMs?: number;
  /** A `Retry-After` longer than this is not waited for: the error is thrown at once. Default 30 000. */
  maxRetryAfterMs?: number;
  /** Random source in [0, 1) for jitter (tests make it deterministic). */
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /**
   * Retry failures whose outcome is unknown (`inDoubt`: a timeout or reset after
   * the request went out). Default true. Set false for providers with single-use
   * refresh tokens: presenting a token the provider may already have spent makes
   * it revoke the whole grant (RFC 9700 §4.14.2).
   */
  retryInDoubt?: boolean;
  /** Called before each wait, for logging and metrics. */
  onRetry?: (info: { attempt: number; delayMs: number; error: TokenEndpointError }) => void;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The wait before retry number `attempt` (1-based): full jitter under a capped exponential ceiling, or Retry-After. */
export function retryDelayMs(
  attempt: number,
  error: TokenEndpointError,
  policy: RetryPolicy = {},
): number | undefined {
  const base = policy.baseDelayMs ?? 250;
  const cap = policy.maxDelayMs ?? 8_000;
  const random = policy.random ?? Math.random;
  if (error.retryAfterSeconds !== undefined) {
    const wait = error.retryAfterSeconds * 1000;
    if (wait > (policy.maxRetryAfterMs ?? 30_000)) return undefined;
    // A little jitter on top keeps a crowd of clients from returning at the same instant.
    return wait + Math.floor(random() * base);
  }
  const ceiling = Math.min(cap, base * 2 ** (attempt - 1));
  return Math.floor(random() * ceiling);
}

/**
 * Runs `operation`, retrying only failures classified `token_endpoint_unavailable`
 * (network, timeout, 5xx, 429). `invalid_grant` and every other answer from the
 * provider are final and thrown at once.
 */
export async function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  policy: RetryPolicy = {},
): Promise<T> {
  const maxAttempts = Math.max(1, policy.maxAttempts ?? 4);
  const sleep = policy.sleep ?? defaultSleep;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (
        !(error instanceof TokenEndpointError) ||
        error.code !== 'token_endpoint_unavailable' ||
        (error.inDoubt && policy.retryInDoubt === false) ||
        attempt >= maxAttempts
      ) {
        throw error;
      }
      const delayMs = retryDelayMs(attempt, error, policy);
      if (delayMs === undefined) throw error;
      policy.onRetry?.({ attempt, delayMs, error });
      await sleep(delayMs);
    }
  }
}
