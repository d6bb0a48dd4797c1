/** One challenge of a `WWW-Authenticate` header. */
export interface AuthenticateChallenge {
  /** Lowercased auth scheme (`bearer`, `basic`, `dpop`). */
  scheme: string;
  /** Parameters with lowercased names and unquoted values. */
  parameters: Record<string, string>;
  token68?: string;
}

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const schemeRe = new RegExp(`^[\\s,]*(${TOKEN})`);
const quotedParamRe = new RegExp(
  `^(${TOKEN})\\s*=\\s*"((?:[^"\\\\]|\\\\[\\s\\S])*)"\\s*(?:,\\s*|$)`,
);
const tokenParamRe = new RegExp(`^(${TOKEN})\\s*=\\s*(${TOKEN})\\s*(?:,\\s*|$)`);
const token68Re = /^([A-Za-z0-9\-._~+/]+=*)\s*(?:,\s*|$)/;

/**
 * Parses a `WWW-Authenticate` header into its challenges (RFC 9110 §11.6.1,
 * RFC 6750 §3). Returns `undefined` for a header it cannot read: arbitrary input
 * never throws, so a malformed header from a resource server is just "no hint".
 *
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-11.6.1
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 */
export function parseWwwAuthenticate(
  header: string | null | undefined,
): AuthenticateChallenge[] | undefined {
  if (typeof header !== 'string') return undefined;
  const challenges: AuthenticateChallenge[] = [];
  let rest = header.trim();
  while (rest.length > 0) {
    const scheme = schemeRe.exec(rest);
    if (scheme === null) return undefined;
    rest = rest.slice(scheme[0].length);
    const challenge: AuthenticateChallenge = {
      scheme: (scheme[1] ?? '').toLowerCase(),
      parameters: Object.create(null),
    };
    challenges.push(challenge);
    if (rest.length === 0) break;
    if (rest.startsWith(',')) {
      rest = rest.slice(1).trimStart();
      continue;
    }
    if (!/^\s/.test(rest)) return undefined;
    rest = rest.trimStart();
    // auth-params, or one token68, until the next scheme begins.
    let first = true;
    while (rest.length > 0) {
      const quoted = quotedParamRe.exec(rest);
      const plain = quoted === null ? tokenParamRe.exec(rest) : null;
      const param = quoted ?? plain;
      if (param !== null) {
        const name = (param[1] ?? '').toLowerCase();
        const raw = param[2] ?? '';
        challenge.parameters[name] = quoted === null ? raw : raw.replace(/\\([\s\S])/g, '$1');
        rest = rest.slice(param[0].length);
        first = false;
        continue;
      }
      if (first) {
        const t68 = token68Re.exec(rest);
        // token68Re demands a comma or the end right after the padding, so an
        // auth-param (`name=value`) can never match it: no further check needed.
        if (t68 !== null) {
          challenge.token68 = t68[1] ?? '';
          rest = rest.slice(t68[0].length);
        }
      }
      break;
    }
  }
  return challenges.length > 0 ? challenges : undefined;
}

/** The `error` a Bearer (or DPoP) challenge names: `invalid_token`, `insufficient_scope`, … */
export function bearerError(
  challenges: readonly AuthenticateChallenge[] | undefined,
): string | undefined {
  for (const challenge of challenges ?? []) {
    if (challenge.scheme === 'bearer' || challenge.scheme === 'dpop') {
      const error = challenge.parameters.error;
      if (error !== undefined) return error;
    }
  }
  return undefined;
}
