import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

/**
 * Loads a component module the way sailor does: `require()` for CommonJS
 * (`module.exports`, `exports.process`). Node 24's `require()` also loads
 * synchronous ES modules; one with top-level await goes through `import()`.
 */
export async function loadModule(file: string): Promise<unknown> {
  const require = createRequire(file);
  try {
    return require(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_REQUIRE_ASYNC_MODULE' || code === 'ERR_REQUIRE_ESM') {
      return import(pathToFileURL(file).href);
    }
    throw error;
  }
}

/** `exports.x`, or `export default {x}` / an ES module's named `x`. */
export function exportedMember(module: unknown, name: string): unknown {
  if (typeof module !== 'object' && typeof module !== 'function') return undefined;
  if (module === null) return undefined;
  const direct = (module as Record<string, unknown>)[name];
  if (direct !== undefined) return direct;
  const fallback = (module as { default?: unknown }).default;
  if ((typeof fallback === 'object' || typeof fallback === 'function') && fallback !== null) {
    return (fallback as Record<string, unknown>)[name];
  }
  return undefined;
}

/** `module.exports = fn`, `export default fn`, or a named `verify` / `verifyCredentials`. */
export function exportedFunction(module: unknown, names: readonly string[]): unknown {
  if (typeof module === 'function') return module;
  const fallback = (module as { default?: unknown } | null)?.default;
  if (typeof fallback === 'function') return fallback;
  for (const name of names) {
    const member = exportedMember(module, name);
    if (typeof member === 'function') return member;
  }
  return undefined;
}

export function isGeneratorFunction(value: unknown): boolean {
  return (
    typeof value === 'function' &&
    (value.constructor?.name === 'GeneratorFunction' ||
      value.constructor?.name === 'AsyncGeneratorFunction')
  );
}
