import { CliError, EXIT, UsageError } from './errors.ts';

/** The vault package, for the commands that run it in this process (`serve`, `keys rotate`). */
export type VaultModule = typeof import('@tokenwarden/vault');

/**
 * Imports `@tokenwarden/vault` on demand, so that the commands that only talk
 * HTTP start without loading fastify, SQLite and the rest.
 */
export async function loadVault(): Promise<VaultModule> {
  try {
    return await import('@tokenwarden/vault');
  } catch (error) {
    throw new CliError(
      `cannot load @tokenwarden/vault: ${error instanceof Error ? error.message : String(error)}`,
      EXIT.failure,
    );
  }
}

/**
 * Every problem of the vault's ConfigError as one usage error (exit 2), each
 * environment name followed by the flag that sets it. Anything else is rethrown.
 */
export function rethrowConfigError(
  vault: VaultModule,
  error: unknown,
  flagFor: Readonly<Record<string, string>>,
): never {
  if (!(error instanceof vault.ConfigError)) throw error;
  const lines = error.problems.map((problem) => {
    const name = /^([A-Z_]+):/.exec(problem)?.[1];
    const flag = name === undefined ? undefined : flagFor[name];
    return `  - ${flag === undefined ? problem : problem.replace(`${name}:`, `${name} (${flag}):`)}`;
  });
  throw new UsageError(`invalid configuration:\n${lines.join('\n')}`);
}
