/**
 * Every error the runtime raises carries one of these stable codes (errors from
 * @tokenwarden/oauth keep their own, `ERROR_CODES`). The registry is the single
 * source of truth; docs/runtime.md repeats it and a test keeps the two in step.
 * `exitCode` is what a command line should exit with when the error ends it.
 */
export const RUNTIME_ERROR_CODES = {
  invalid_component: {
    exitCode: 2,
    summary:
      'component.json or a module it names is invalid; the error lists every problem with its file and field.',
  },
  unknown_step: {
    exitCode: 2,
    summary: 'No action or trigger of that name in component.json.',
  },
  missing_env_variable: {
    exitCode: 2,
    summary: 'A {{VARIABLE}} in component.json has no value in the environment.',
  },
  invalid_keys_payload: {
    exitCode: 1,
    summary:
      'An updateKeys payload is not a token response (no access_token, a non-string refresh_token, a bad expires_in).',
  },
  keys_not_stored: {
    exitCode: 1,
    summary:
      'The key store (vault or key file) did not store updated keys; they are kept in memory and stored again before the next message.',
  },
  no_key_store: {
    exitCode: 1,
    summary: 'The step emitted updateKeys, but the run has no key store to keep them in.',
  },
  no_credential: {
    exitCode: 1,
    summary:
      'this.fetch or this.getAccessToken was called, but the run has no credential (no key store, no token source).',
  },
  no_oauth2_client: {
    exitCode: 2,
    summary:
      'An offline refresh needs component.json credentials.oauth2 (client_id, client_secret, token_uri), and it is missing or incomplete.',
  },
  key_file_invalid: {
    exitCode: 2,
    summary: 'The key file is not a tokenwarden key file, or it has no keys for the credential.',
  },
  key_file_locked: {
    exitCode: 1,
    summary: 'Another process holds the key file; only one process may use a key file at a time.',
  },
  invalid_options: {
    exitCode: 2,
    summary: 'An option given to the runtime (vault URL, API key, …) is missing or malformed.',
  },
  vault_unavailable: {
    exitCode: 1,
    summary: 'The vault could not be reached, or did not answer in time.',
  },
  vault_request_failed: {
    exitCode: 1,
    summary: 'The vault refused a request (bad API key, unknown credential, invalid body, …).',
  },
  step_timeout: {
    exitCode: 1,
    summary: 'The step did not emit end (or settle its promise) within the time allowed.',
  },
} as const satisfies Record<string, { exitCode: number; summary: string }>;

export type RuntimeErrorCode = keyof typeof RUNTIME_ERROR_CODES;

export interface RuntimeErrorOptions {
  cause?: unknown;
  credentialId?: string;
}

/** The runtime's errors. No message or enumerable field holds a token or a client secret. */
export class RuntimeError extends Error {
  readonly code: RuntimeErrorCode;
  readonly credentialId: string | undefined;

  constructor(code: RuntimeErrorCode, message: string, options: RuntimeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RuntimeError';
    this.code = code;
    this.credentialId = options.credentialId;
  }

  /** What a command line should exit with. */
  get exitCode(): number {
    return RUNTIME_ERROR_CODES[this.code].exitCode;
  }
}

/**
 * A component folder that failed validation, with every problem found. Each
 * problem starts with the file it concerns, then the field:
 * `/path/component.json: actions.send.main: required`.
 */
export class ComponentError extends RuntimeError {
  readonly dir: string;
  readonly problems: readonly string[];

  constructor(dir: string, problems: readonly string[]) {
    super(
      'invalid_component',
      `component ${dir} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
    this.name = 'ComponentError';
    this.dir = dir;
    this.problems = Object.freeze([...problems]);
  }
}

export function isRuntimeError(value: unknown): value is RuntimeError {
  return value instanceof RuntimeError;
}
