/**
 * Members whose values are secrets wherever they appear in a token response or a
 * request: `access_token`, `refresh_token`, `id_token`, Slack's nested
 * `authed_user.access_token`, `client_secret`, `code_verifier`, Salesforce's
 * `signature`. `token_type` is the one `*_token`-like name that is not a secret.
 */
const SECRET_KEY =
  /(^|_)(token|secret|verifier|signature|password|assertion)$|^(code|authorization|cookie)$/i;

export function isSecretKey(key: string): boolean {
  return key !== 'token_type' && SECRET_KEY.test(key);
}

export const REDACTED = '[redacted]';

/** A deep copy of a JSON-like value with every secret member replaced by `[redacted]`. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  if (typeof value === 'object' && value !== null) {
    const copy: Record<string, unknown> = {};
    for (const [key, member] of Object.entries(value)) {
      copy[key] = isSecretKey(key) ? REDACTED : redact(member, depth + 1);
    }
    return copy;
  }
  return value;
}
