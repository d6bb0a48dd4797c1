import { isSecretKey, REDACTED } from '@tokenwarden/oauth';

/** Shorter values are too likely to occur in ordinary text to be replaced everywhere. */
const MIN_SECRET_LENGTH = 8;

/**
 * Redacts what a run prints. Two passes: oauth's `redact` replaces every member
 * whose name says it is a secret (`access_token`, `refresh_token`,
 * `client_secret`, …), and every string is searched for the secret values this
 * run has seen (the tokens of its credential, the client secret), so that a
 * token a component copied into a message body, an error message or a log line
 * under an innocent name is replaced too.
 */
export class Redactor {
  readonly #secrets = new Set<string>();
  #pattern: RegExp | undefined;

  /** Remembers a secret value. Short values are ignored. */
  addSecret(value: unknown): void {
    if (typeof value !== 'string' || value.length < MIN_SECRET_LENGTH) return;
    if (this.#secrets.has(value)) return;
    this.#secrets.add(value);
    this.#pattern = undefined;
  }

  /** Remembers the values of every secret-named member of a JSON-like value. */
  addSecretsOf(value: unknown, depth = 0): void {
    if (depth > 8 || typeof value !== 'object' || value === null) return;
    for (const [key, member] of Object.entries(value)) {
      if (isSecretKey(key)) this.addSecret(member);
      else this.addSecretsOf(member, depth + 1);
    }
  }

  /** A string with every known secret replaced by `[redacted]`. */
  redactText(text: string): string {
    if (this.#secrets.size === 0) return text;
    this.#pattern ??= new RegExp(
      [...this.#secrets]
        .sort((a, b) => b.length - a.length)
        .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('|'),
      'g',
    );
    return text.replace(this.#pattern, REDACTED);
  }

  /** A redacted deep copy of a JSON-like value; Errors become `{name, message, code?, stack}`. */
  redact(value: unknown): unknown {
    return this.#values(redactKeys(toPlain(value), 0), 0);
  }

  #values(value: unknown, depth: number): unknown {
    if (typeof value === 'string') return this.redactText(value);
    if (depth > 8 || typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) return value.map((item) => this.#values(item, depth + 1));
    const copy: Record<string, unknown> = {};
    for (const [key, member] of Object.entries(value)) copy[key] = this.#values(member, depth + 1);
    return copy;
  }
}

/** The objects {@link errorToPlain} made: their `code` is an error code, not an OAuth code. */
const plainErrors = new WeakSet<object>();

/**
 * oauth's `redact`, except for an error's `code` (`reauth_required`,
 * `ECONNREFUSED`), which `isSecretKey` would take for an authorization code.
 * The value pass still replaces any known secret inside it.
 */
function redactKeys(value: unknown, depth: number): unknown {
  if (depth > 8) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactKeys(item, depth + 1));
  if (typeof value !== 'object' || value === null) return value;
  const isError = plainErrors.has(value);
  const copy: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) {
    const errorCode = isError && key === 'code' && typeof member !== 'object';
    copy[key] = isSecretKey(key) && !errorCode ? REDACTED : redactKeys(member, depth + 1);
  }
  return copy;
}

/** What an Error or another non-JSON value looks like once printed. */
export function toPlain(value: unknown, depth = 0): unknown {
  if (value instanceof Error) return errorToPlain(value);
  if (depth > 8 || typeof value !== 'object' || value === null) {
    return typeof value === 'bigint' ? value.toString() : value;
  }
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return toPlain((value as { toJSON: () => unknown }).toJSON(), depth + 1);
  }
  if (Array.isArray(value)) return value.map((item) => toPlain(item, depth + 1));
  const copy: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) copy[key] = toPlain(member, depth + 1);
  return copy;
}

/** Sailor's `formatError`, plus the error's `code` when it has one. */
export function errorToPlain(error: unknown): Record<string, unknown> {
  if (
    error instanceof Error ||
    (typeof error === 'object' && error !== null && 'message' in error)
  ) {
    const { name, message, stack, code } = error as {
      name?: unknown;
      message?: unknown;
      stack?: unknown;
      code?: unknown;
    };
    const plain: Record<string, unknown> = {
      name: typeof name === 'string' ? name : 'Error',
      message: String(message),
    };
    if (typeof code === 'string' || typeof code === 'number') plain.code = code;
    if (typeof stack === 'string') plain.stack = stack;
    plainErrors.add(plain);
    return plain;
  }
  return { name: 'Error', message: error === undefined ? 'Not Available' : String(error) };
}
