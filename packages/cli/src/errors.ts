/**
 * Exit codes scripts can rely on. They are part of the CLI's contract: the table
 * in `tokenwarden --help` and docs/cli.md lists the same values.
 */
export const EXIT = {
  ok: 0,
  /** Anything not covered below: the vault rejected the request (400, 409 conflict, 5xx), a bug. */
  failure: 1,
  /** Unknown command or option, missing or malformed argument, bad configuration. */
  usage: 2,
  /** No API key, or the vault answered 401 / 403. */
  unauthorized: 3,
  /** The vault answered 404: no such auth client, credential or connect session. */
  notFound: 4,
  /** The credential needs the user to connect again (`reauth_required`). */
  reauthRequired: 5,
  /** The provider or the vault cannot be reached (`token_endpoint_unavailable`, 503, connection refused). */
  unavailable: 6,
  /** The connect flow failed, expired or timed out. */
  connectFailed: 7,
  /** Interrupted with Ctrl-C while waiting (the shell's convention, 128 + SIGINT). */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit-code table, as printed by `tokenwarden --help`. */
export const EXIT_CODE_HELP = `Exit codes:
  0    success
  1    unexpected failure (the vault refused the request for another reason, a bug)
  2    usage error: unknown command or option, missing or malformed argument,
       invalid configuration
  3    not authenticated or forbidden: no API key, or the vault answered 401/403
  4    not found: the vault answered 404
  5    the credential needs the user to reconnect (reauth_required)
  6    the provider or the vault is unavailable (token_endpoint_unavailable,
       connection refused, timeout, 503)
  7    the connect flow failed, expired or timed out
  130  interrupted (Ctrl-C) while waiting for input or for the connect flow
`;

/**
 * An error the CLI reports in one line on stderr and turns into an exit code.
 * `code` is the vault's error code when the vault sent one.
 */
export class CliError extends Error {
  readonly exitCode: ExitCode;
  readonly code: string | undefined;
  readonly hint: string | undefined;
  constructor(
    message: string,
    exitCode: ExitCode,
    options: { code?: string | undefined; hint?: string | undefined } = {},
  ) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
    this.code = options.code;
    this.hint = options.hint;
  }
}

/** Wrong invocation: the message is followed by a pointer to the command's help. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.usage);
    this.name = 'UsageError';
  }
}

/** The exit code for an error answer of the vault (HTTP status and error code). */
export function exitCodeForApiError(status: number, code: string | undefined): ExitCode {
  if (code === 'reauth_required') return EXIT.reauthRequired;
  if (status === 401 || status === 403 || code === 'unauthorized' || code === 'forbidden')
    return EXIT.unauthorized;
  if (status === 404 || code === 'not_found' || code === 'credential_not_found')
    return EXIT.notFound;
  if (code === 'token_endpoint_unavailable' || status === 503) return EXIT.unavailable;
  // A 502/504 without a vault error body comes from a proxy in front of a vault that is down.
  if ((status === 502 || status === 504) && code === undefined) return EXIT.unavailable;
  return EXIT.failure;
}
