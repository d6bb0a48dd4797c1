import {
  ERROR_CODES,
  type ErrorCode,
  TokenEndpointError,
  TokenwardenError,
} from '@tokenwarden/oauth';

/**
 * The vault's own error codes, beside those of @tokenwarden/oauth (ERROR_CODES).
 * Every API error is `{error: {code, message}}` with the status listed here or there;
 * docs/errors.md lists both (a test keeps them in step).
 */
export const VAULT_ERROR_CODES = {
  unauthorized: { status: 401, summary: 'No API key, or an unknown or revoked one.' },
  forbidden: {
    status: 403,
    summary: 'The API key may not do this (an admin route with a tenant key).',
  },
  not_found: { status: 404, summary: 'No such resource in this tenant.' },
  validation_failed: {
    status: 400,
    summary: 'The request body, query or parameters are malformed; the message names each problem.',
  },
  conflict: { status: 409, summary: 'The resource is in use or in a state that forbids this.' },
  database_unavailable: { status: 503, summary: 'The database does not answer; retry later.' },
  internal_error: { status: 500, summary: 'An unexpected failure; the log has the details.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type VaultErrorCode = keyof typeof VAULT_ERROR_CODES;

export class VaultError extends Error {
  readonly code: VaultErrorCode;
  constructor(code: VaultErrorCode, message: string) {
    super(message);
    this.name = 'VaultError';
    this.code = code;
  }
}

export interface HttpError {
  status: number;
  code: string;
  message: string;
  /** For a 503 from a provider's trouble: when asking again may help (the `Retry-After` header). */
  retryAfterSeconds?: number;
}

/** Maps any thrown value to the API's error answer. Unknown errors say nothing of their insides. */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof VaultError)
    return {
      status: VAULT_ERROR_CODES[error.code].status,
      code: error.code,
      message: error.message,
    };
  if (error instanceof TokenwardenError) {
    const code: ErrorCode = error.code;
    const status = ERROR_CODES[code].status;
    const retryAfter = error instanceof TokenEndpointError ? error.retryAfterSeconds : undefined;
    return {
      status,
      code,
      message: error.message,
      ...(status === 503 && retryAfter !== undefined ? { retryAfterSeconds: retryAfter } : {}),
    };
  }
  const fastify = error as {
    validation?: unknown;
    statusCode?: number;
    message?: string;
    code?: string;
  };
  if (fastify?.validation !== undefined)
    return {
      status: 400,
      code: 'validation_failed',
      message: fastify.message ?? 'invalid request',
    };
  if (
    typeof fastify?.statusCode === 'number' &&
    fastify.statusCode >= 400 &&
    fastify.statusCode < 500
  ) {
    // Fastify's own 4xx: an unparsable or too large body, a wrong content type, …
    const code = fastify.statusCode === 404 ? 'not_found' : 'validation_failed';
    return { status: fastify.statusCode, code, message: fastify.message ?? 'bad request' };
  }
  if (isDatabaseDown(error))
    return {
      status: 503,
      code: 'database_unavailable',
      message: 'the database does not answer; retry later',
    };
  return { status: 500, code: 'internal_error', message: 'internal error; see the vault log' };
}

/** Connection-level failures of PostgreSQL or SQLite that mean "try again later". */
export function isDatabaseDown(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  // node-postgres has no code for a connection that died under a checked-out client
  // (what a transaction's rollback meets during a database restart), only these words.
  const message = (error as { message?: unknown })?.message;
  if (
    typeof message === 'string' &&
    /^(Connection terminated|Client has encountered a connection error)/.test(message)
  )
    return true;
  return (
    typeof code === 'string' &&
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'EPIPE',
      'ETIMEDOUT',
      '57P01',
      '57P02',
      '57P03',
      '08000',
      '08001',
      '08003',
      '08006',
      'SQLITE_BUSY',
    ].includes(code)
  );
}
