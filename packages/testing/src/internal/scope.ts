/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), space-delimited. */
const SCOPE_TOKEN = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

export const DEFAULT_SCOPES: readonly string[] = Object.freeze(['profile']);

/** Splits a scope parameter; `null` when it is malformed. Duplicates are dropped. */
export function parseScope(value: string): string[] | null {
  const tokens = value.split(' ').filter((t) => t !== '');
  if (tokens.length === 0 || !tokens.every((t) => SCOPE_TOKEN.test(t))) return null;
  return [...new Set(tokens)];
}
