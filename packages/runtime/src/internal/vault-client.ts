import { ERROR_CODES, endpointProblem, TokenwardenError } from '@tokenwarden/oauth';
import { RuntimeError } from '../errors.ts';

export interface VaultClientOptions {
  /** The vault's base URL (https, or http on a loopback address). */
  url: string | URL;
  /** A tenant API key (`twk_…`). Sent as a bearer token; never printed. */
  apiKey: string;
  /** Per-request timeout. Default 30 000 ms. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * The few calls of the vault's HTTP API (docs/api.md) the runtime makes. Errors:
 * the vault's `{error: {code, message}}` becomes a TokenwardenError when the code
 * is one of @tokenwarden/oauth's (`reauth_required`, `credential_not_found`, …),
 * else `vault_request_failed`; no answer at all is `vault_unavailable`.
 */
export class VaultClient {
  readonly baseUrl: URL;
  readonly #apiKey: string;
  readonly #timeoutMs: number;
  readonly #fetch: typeof fetch;

  constructor(options: VaultClientOptions) {
    const problem = endpointProblem(String(options.url));
    if (problem !== undefined) {
      throw new RuntimeError('invalid_options', `vault URL: ${problem}`);
    }
    if (typeof options.apiKey !== 'string' || options.apiKey === '') {
      throw new RuntimeError('invalid_options', 'vault API key: required');
    }
    const base = new URL(String(options.url));
    if (!base.pathname.endsWith('/')) base.pathname += '/';
    this.baseUrl = base;
    this.#apiKey = options.apiKey;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /** Sends one JSON request and returns the parsed JSON answer of a 2xx. */
  async request(
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    body: unknown,
    credentialId: string,
  ): Promise<unknown> {
    const url = new URL(path.replace(/^\//, ''), this.baseUrl);
    const what = `${method} ${url.origin}${url.pathname}`;
    let response: Response;
    try {
      response = await this.#fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#apiKey}`,
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      const reason =
        (error as Error)?.name === 'TimeoutError'
          ? `no answer within ${this.#timeoutMs} ms`
          : describeNetworkError(error);
      throw new RuntimeError(
        'vault_unavailable',
        `credential ${credentialId}: ${what}: ${reason}`,
        {
          cause: error,
          credentialId,
        },
      );
    }
    let parsed: unknown;
    const text = await response.text().catch(() => '');
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (response.ok) {
      if (parsed === undefined && response.status !== 204) {
        throw new RuntimeError(
          'vault_request_failed',
          `credential ${credentialId}: ${what} answered HTTP ${response.status} without a JSON body`,
          { credentialId },
        );
      }
      return parsed;
    }
    const error = (parsed as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const code = typeof error?.code === 'string' ? error.code : undefined;
    const message = typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`;
    if (code !== undefined && Object.hasOwn(ERROR_CODES, code)) {
      const failure = new TokenwardenError(code as keyof typeof ERROR_CODES, message, {
        credentialId,
      });
      throw failure;
    }
    if (response.status >= 500 && code === undefined) {
      throw new RuntimeError(
        'vault_unavailable',
        `credential ${credentialId}: ${what} answered HTTP ${response.status}`,
        { credentialId },
      );
    }
    throw new RuntimeError(
      'vault_request_failed',
      `credential ${credentialId}: ${what} answered HTTP ${response.status}${code === undefined ? '' : ` ${code}`}: ${message}`,
      { credentialId },
    );
  }
}

function describeNetworkError(error: unknown): string {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } })?.cause;
  if (typeof cause?.code === 'string') return `network error (${cause.code})`;
  return `network error (${(error as Error)?.message ?? String(error)})`;
}
