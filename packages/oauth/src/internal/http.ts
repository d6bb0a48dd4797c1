import * as oauth from 'oauth4webapi';
import type { AuthClient } from '../auth-client.ts';
import { TokenEndpointError } from '../errors.ts';

/** Options every protocol request accepts. */
export interface RequestOptions {
  /** Replaces the global fetch (tests hand in canned Responses; no network). */
  fetch?: typeof fetch;
  /** Aborts the request after this many milliseconds. Default 10 000. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export const DEFAULT_TIMEOUT_MS = 10_000;

/** oauth4webapi options for a request to this client's provider. */
export function protocolOptions(
  client: AuthClient,
  options: RequestOptions,
  extra?: URLSearchParams,
) {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  return {
    signal: options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]),
    ...(options.fetch === undefined ? {} : { [oauth.customFetch]: options.fetch }),
    // Plain http is reachable only for loopback endpoints, which createAuthClient
    // checked; every other endpoint must be https.
    ...(client.loopbackHttp ? { [oauth.allowInsecureRequests]: true } : {}),
    ...(extra === undefined ? {} : { additionalParameters: extra }),
  };
}

/** Runs a protocol request, turning a network failure or timeout into a classified error. */
export async function send(endpoint: string, request: () => Promise<Response>): Promise<Response> {
  try {
    return await request();
  } catch (error) {
    if (error instanceof TokenEndpointError) throw error;
    const name = (error as Error)?.name;
    const what =
      name === 'TimeoutError' ? 'timed out' : name === 'AbortError' ? 'was aborted' : 'failed';
    const code = networkErrorCode(error);
    throw new TokenEndpointError(
      'token_endpoint_unavailable',
      `request to the ${endpoint} ${what}${code === undefined ? '' : ` (${code})`}`,
      { cause: error, inDoubt: !(code !== undefined && NOT_SENT.has(code)) },
    );
  }
}

/** Failures that prove the request never reached the provider. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

function networkErrorCode(error: unknown): string | undefined {
  const cause = (error as { cause?: { code?: unknown } })?.cause;
  return typeof cause?.code === 'string' ? cause.code : undefined;
}

/** Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. */
export function parseRetryAfter(
  value: string | null,
  now: number = Date.now(),
): number | undefined {
  if (value === null) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}
