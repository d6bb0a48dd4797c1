/**
 * Every error tokenwarden raises carries one of these stable codes. The registry
 * is the single source of truth: HTTP status for the vault's API, whether the
 * failure is worth retrying, and a one-line meaning that docs/errors.md repeats
 * (a test keeps the two in step).
 */
export const ERROR_CODES = {
  reauth_required: {
    status: 409,
    transient: false,
    summary:
      'The grant is gone (invalid_grant, or no refresh token left): the user must connect again.',
  },
  client_misconfigured: {
    status: 502,
    transient: false,
    summary:
      'The provider rejected the client itself (invalid_client, unauthorized_client): fix the auth client.',
  },
  token_endpoint_unavailable: {
    status: 503,
    transient: true,
    summary:
      'The token endpoint could not be reached or failed (network, timeout, 5xx, 429); retried with backoff.',
  },
  invalid_token_response: {
    status: 502,
    transient: false,
    summary: 'The token endpoint answered, but not with a valid RFC 6749 §5.1 response.',
  },
  token_request_rejected: {
    status: 502,
    transient: false,
    summary:
      'The token endpoint refused the request for another reason (invalid_request, invalid_scope, …).',
  },
  unauthorized_after_refresh: {
    status: 502,
    transient: false,
    summary: 'The resource still answered "expired" with a freshly refreshed token.',
  },
  body_not_replayable: {
    status: 500,
    transient: false,
    summary:
      'A request had to be sent again after a refresh, but its streamed body was too large to buffer.',
  },
  invalid_authorization_response: {
    status: 400,
    transient: false,
    summary:
      'The redirect back from the provider was an error, or did not match the flow that was started.',
  },
  invalid_profile: {
    status: 500,
    transient: false,
    summary: 'A provider profile failed validation.',
  },
  invalid_configuration: {
    status: 400,
    transient: false,
    summary: 'An auth client, placeholder value or option is missing or malformed.',
  },
  credential_not_found: {
    status: 404,
    transient: false,
    summary: 'No credential with that id exists (in this tenant).',
  },
  store_conflict: {
    status: 409,
    transient: true,
    summary: 'The stored credential changed between read and write; the operation was not applied.',
  },
} as const satisfies Record<string, { status: number; transient: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface TokenwardenErrorOptions {
  cause?: unknown;
  credentialId?: string;
}

/** The base of every error tokenwarden throws. Holds no secret in any enumerable field. */
export class TokenwardenError extends Error {
  readonly code: ErrorCode;
  readonly credentialId: string | undefined;

  constructor(code: ErrorCode, message: string, options: TokenwardenErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TokenwardenError';
    this.code = code;
    this.credentialId = options.credentialId;
  }

  /** Names the credential this error concerns (once), in the field and the message. */
  forCredential(credentialId: string): this {
    if (this.credentialId === undefined) {
      (this as { credentialId: string | undefined }).credentialId = credentialId;
      this.message = `credential ${credentialId}: ${this.message}`;
    }
    return this;
  }

  /** Whether trying the same operation again later may succeed. */
  get transient(): boolean {
    return ERROR_CODES[this.code].transient;
  }
}

export interface TokenEndpointErrorOptions extends TokenwardenErrorOptions {
  /** RFC 6749 §5.2 `error`, after profile aliases were applied. */
  oauthError?: string;
  /** The provider's own `error_description`, kept for operators. */
  errorDescription?: string;
  status?: number;
  retryAfterSeconds?: number;
  /** The raw Response, kept non-enumerable so that logging the error never prints a body. */
  response?: Response;
  /**
   * The request went out and no answer came back (a timeout, a reset): the
   * provider may have processed it, and spent a single-use refresh token.
   */
  inDoubt?: boolean;
}

/** A failed call to a token or revocation endpoint, classified. */
export class TokenEndpointError extends TokenwardenError {
  readonly oauthError: string | undefined;
  readonly errorDescription: string | undefined;
  readonly status: number | undefined;
  readonly retryAfterSeconds: number | undefined;
  readonly inDoubt: boolean;
  declare readonly response: Response | undefined;

  constructor(code: ErrorCode, message: string, options: TokenEndpointErrorOptions = {}) {
    super(code, message, options);
    this.name = 'TokenEndpointError';
    this.oauthError = options.oauthError;
    this.errorDescription = options.errorDescription;
    this.status = options.status;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.inDoubt = options.inDoubt ?? false;
    Object.defineProperty(this, 'response', { value: options.response, enumerable: false });
  }
}

/** A provider profile that failed validation, with every problem found. */
export class ProfileError extends TokenwardenError {
  readonly source: string;
  readonly problems: readonly string[];

  constructor(source: string, problems: readonly string[]) {
    super(
      'invalid_profile',
      `provider profile ${source} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'ProfileError';
    this.source = source;
    this.problems = Object.freeze([...problems]);
  }
}

export function isTokenwardenError(value: unknown): value is TokenwardenError {
  return value instanceof TokenwardenError;
}
