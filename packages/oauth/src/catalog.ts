import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ProfileError, TokenwardenError } from './errors.ts';
import { type ProviderProfile, parseProviderProfile } from './profile.ts';

/** The catalog shipped in the repository's `providers/` folder. */
export const DEFAULT_PROVIDERS_DIR = fileURLToPath(new URL('../../../providers/', import.meta.url));

export type ProviderCatalog = ReadonlyMap<string, ProviderProfile>;

/**
 * Loads and validates every `*.json` profile in a folder. Any invalid file fails
 * the whole load, and the error lists every problem in every file: a catalog is
 * never half loaded.
 */
export async function loadProviderCatalog(
  dir: string = DEFAULT_PROVIDERS_DIR,
): Promise<ProviderCatalog> {
  const names = (await readdir(dir)).filter((name) => name.endsWith('.json')).sort();
  const catalog = new Map<string, ProviderProfile>();
  const problems: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    let data: unknown;
    try {
      data = JSON.parse(await readFile(path, 'utf8'));
    } catch (error) {
      problems.push(`${name}: not valid JSON (${(error as Error).message})`);
      continue;
    }
    try {
      const profile = parseProviderProfile(data, name);
      if (`${profile.id}.json` !== name) {
        problems.push(`${name}: id "${profile.id}" must match the file name`);
      } else {
        catalog.set(profile.id, profile);
      }
    } catch (error) {
      if (!(error instanceof ProfileError)) throw error;
      problems.push(...error.problems.map((p) => `${name}: ${p}`));
    }
  }
  if (problems.length > 0) throw new ProfileError(dir, problems);
  if (catalog.size === 0) {
    throw new TokenwardenError('invalid_profile', `no provider profiles (*.json) found in ${dir}`);
  }
  return catalog;
}
