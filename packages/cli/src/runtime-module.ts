import { readFile } from 'node:fs/promises';
import type { Component, KeyStore } from '@tokenwarden/runtime';
import { resolveConnection } from './api-client.ts';
import type { ConnectionValues } from './args.ts';
import { apiClient, type Context } from './command.ts';
import { CliError, EXIT, type ExitCode, UsageError } from './errors.ts';
import { readStdin } from './prompt.ts';

/** The runtime package, for the commands that run components (`run`, `verify`, `component`). */
export type RuntimeModule = typeof import('@tokenwarden/runtime');

/**
 * Imports `@tokenwarden/runtime` on demand, so that the commands that only talk
 * to the vault start without it.
 */
export async function loadRuntime(): Promise<RuntimeModule> {
  try {
    return await import('@tokenwarden/runtime');
  } catch (error) {
    throw new CliError(
      `cannot load @tokenwarden/runtime: ${error instanceof Error ? error.message : String(error)}`,
      EXIT.failure,
    );
  }
}

/**
 * The exit code for an error code of the runtime or of @tokenwarden/oauth
 * (docs/runtime.md, docs/errors.md), the same table as for the vault's answers.
 */
export function exitCodeForErrorCode(code: unknown): ExitCode {
  switch (code) {
    case 'reauth_required':
      return EXIT.reauthRequired;
    case 'token_endpoint_unavailable':
    case 'vault_unavailable':
      return EXIT.unavailable;
    case 'credential_not_found':
      return EXIT.notFound;
    case 'invalid_component':
    case 'unknown_step':
    case 'missing_env_variable':
    case 'key_file_invalid':
    case 'no_oauth2_client':
    case 'invalid_options':
      return EXIT.usage;
    default:
      return EXIT.failure;
  }
}

/** A runtime error that ends a command, as a CliError with its code and exit code. */
export function cliErrorFromRuntime(runtime: RuntimeModule, error: unknown): unknown {
  if (!runtime.isRuntimeError(error)) return error;
  return new CliError(error.message, exitCodeForErrorCode(error.code), { code: error.code });
}

/**
 * Loads and validates a component folder. An invalid component is exit 2 with
 * every problem listed, each naming its file and field.
 */
export async function loadComponentOrFail(
  runtime: RuntimeModule,
  dir: string,
  context: Context,
  options: { requireEnv?: boolean } = {},
): Promise<Component> {
  try {
    return await runtime.loadComponent(dir, {
      env: context.env,
      requireEnv: options.requireEnv ?? true,
    });
  } catch (error) {
    throw cliErrorFromRuntime(runtime, error);
  }
}

/** A JSON object from a file, or from stdin for `-` (`--msg`, `--cfg`, `--snapshot`). */
export async function readJsonObject(
  option: string,
  source: string,
): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = source === '-' ? await readStdin() : await readFile(source, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new UsageError(`--${option}: cannot read ${JSON.stringify(source)} (${code})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(
      `--${option}: ${source === '-' ? 'stdin' : JSON.stringify(source)} is not JSON (${(error as Error).message})`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError(
      `--${option}: ${source === '-' ? 'stdin' : JSON.stringify(source)} must hold a JSON object`,
    );
  }
  return value as Record<string, unknown>;
}

export interface KeyStoreValues extends ConnectionValues {
  credential?: string | undefined;
  keys?: string | undefined;
  'keys-credential'?: string | undefined;
}

export const KEY_STORE_OPTIONS = {
  credential: { type: 'string' },
  keys: { type: 'string' },
  'keys-credential': { type: 'string' },
} as const;

export const KEY_STORE_HELP = `Keys (the credential the step's cfg.oauth and this.fetch use):
  --credential <id>         a credential in the vault (TOKENWARDEN_URL,
                            TOKENWARDEN_API_KEY): cfg gets a fresh access token,
                            never the refresh token; updateKeys is stored there
  --keys <file>             a local key file instead (plaintext JSON, mode 0600,
                            one process at a time): cfg gets the whole token set;
                            updateKeys and refreshes are written back to it
  --keys-credential <id>    the credential inside the key file (default "default")`;

/** Checks that at most one (or, with `required`, exactly one) key store was named. */
export function checkKeyStoreOptions(values: KeyStoreValues, required: boolean): void {
  if (values.credential !== undefined && values.keys !== undefined)
    throw new UsageError('give --credential or --keys, not both');
  if (required && values.credential === undefined && values.keys === undefined)
    throw new UsageError(
      'give --credential <id> (a vault credential) or --keys <file> (a key file)',
    );
  if (values['keys-credential'] !== undefined && values.keys === undefined)
    throw new UsageError('--keys-credential needs --keys');
  for (const name of ['credential', 'keys', 'keys-credential'] as const) {
    if (values[name] === '') throw new UsageError(`--${name} must not be empty`);
  }
}

/**
 * Opens the key store the options name, after checking that the vault knows the
 * credential and accepts the API key (exit 3, 4 or 6 before anything runs).
 * Returns undefined when none was named.
 */
export async function openKeyStore(
  runtime: RuntimeModule,
  values: KeyStoreValues,
  context: Context,
): Promise<(KeyStore & { close?: () => Promise<void> }) | undefined> {
  if (values.credential !== undefined) {
    const client = apiClient(values, context);
    await client.getCredential(values.credential);
    const { baseUrl, apiKey } = resolveConnection(values, context.env);
    try {
      return new runtime.VaultKeyStore({
        url: baseUrl,
        apiKey: apiKey ?? '',
        credentialId: values.credential,
      });
    } catch (error) {
      throw cliErrorFromRuntime(runtime, error);
    }
  }
  if (values.keys !== undefined) {
    try {
      return await runtime.FileKeyStore.open(values.keys, {
        ...(values['keys-credential'] === undefined
          ? {}
          : { credentialId: values['keys-credential'] }),
      });
    } catch (error) {
      throw cliErrorFromRuntime(runtime, error);
    }
  }
  return undefined;
}
