import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from './errors.ts';

/** Options every command that talks to the vault accepts. */
export const CONNECTION_OPTIONS = {
  url: { type: 'string' },
  'api-key': { type: 'string' },
} as const;

export const CONNECTION_HELP = `Connection:
  --url <url>             the vault (env TOKENWARDEN_URL, default http://127.0.0.1:8080)
  --api-key <key>         API key (env TOKENWARDEN_API_KEY; prefer the variable: a flag
                          value lands in shell history and the process list)`;

export const DEFAULT_URL = 'http://127.0.0.1:8080';

export type ConnectionValues = { url?: string | undefined; 'api-key'?: string | undefined };

/** True when the arguments ask for help (`-h`/`--help` before any `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '-h' || arg === '--help') return true;
  }
  return false;
}

/** `parseArgs` in strict mode, with its errors turned into usage errors (exit 2). */
export function parseCommandArgs<const T extends ParseArgsConfig>(
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs<T>({ strict: true, ...config });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'))
      throw new UsageError((error as Error).message);
    throw error;
  }
}

/** Exactly the named positional arguments, or a usage error naming what is missing or extra. */
export function expectPositionals(
  positionals: readonly string[],
  names: readonly string[],
): string[] {
  if (positionals.length < names.length) {
    throw new UsageError(
      `missing ${names
        .slice(positionals.length)
        .map((n) => `<${n}>`)
        .join(' ')}`,
    );
  }
  if (positionals.length > names.length) {
    const extra = positionals.slice(names.length);
    throw new UsageError(
      `unexpected argument${extra.length > 1 ? 's' : ''}: ${extra.map((a) => JSON.stringify(a)).join(' ')}`,
    );
  }
  return [...positionals];
}

/** A whole number of seconds ≥ min. */
export function parseSeconds(option: string, value: string, min = 0): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isInteger(number) || number < min) {
    throw new UsageError(
      `--${option} must be a whole number of seconds${min > 0 ? ` (at least ${min})` : ''}, got ${JSON.stringify(value)}`,
    );
  }
  return number;
}
