import { z } from 'zod';
import { ProfileError } from './errors.ts';

/**
 * A provider profile: everything tokenwarden must know about one OAuth2 provider's
 * quirks, as data. A quirk the schema cannot express becomes a new field here,
 * never a provider name tested in code.
 */

const parameterMap = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.-]+$/, 'parameter names are letters, digits, _ . -'),
    z.string(),
  )
  .describe('extra form or query parameters, sent as given');

const placeholderName = z.string().regex(/^[a-z][A-Za-z0-9_]*$/, 'placeholder names are camelCase');

const placeholder = z
  .object({
    description: z.string().min(1),
    default: z.string().optional(),
    /** A regular expression the per-connection value must match in full. */
    pattern: z.string().min(1),
  })
  .strict();

const urlTemplate = z.string().min(1);

const tokenResponse = z
  .object({
    /** token_type to assume when the response omits it (Shopify sends none). */
    defaultTokenType: z.string().min(1).optional(),
    /** token_type values accepted besides bearer (Slack answers `bot` and `user`). */
    extraTokenTypes: z.array(z.string().min(1)).default([]),
    /** Provider error codes that mean a standard RFC 6749 §5.2 code (GitHub `bad_refresh_token`). */
    errorAliases: z
      .record(
        z.string().min(1),
        z.enum([
          'invalid_grant',
          'invalid_client',
          'unauthorized_client',
          'invalid_request',
          'invalid_scope',
        ]),
      )
      .default({}),
    /**
     * `validate`: check an id_token's claims against `issuer` (OpenID providers).
     * `ignore`: keep the id_token as data but do not validate it (providers whose
     * id_token issuer is per-instance, or that are not OpenID providers).
     */
    idToken: z.enum(['validate', 'ignore']).default('ignore'),
  })
  .strict();

export const providerProfileSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, 'ids are lowercase letters, digits and dashes'),
    displayName: z.string().min(1),
    /** Links to the provider's own documentation for the quirks this profile encodes. */
    docs: z.array(z.url()).min(1),
    /** OpenID issuer, used to validate id_tokens when tokenResponse.idToken is `validate`. */
    issuer: z.string().min(1).optional(),
    /** Absent in the generic profile: the auth client supplies them. */
    authorizationUrl: urlTemplate.optional(),
    tokenUrl: urlTemplate.optional(),
    /** RFC 7009 revocation endpoint, where the provider has one. */
    revocationUrl: urlTemplate.optional(),
    placeholders: z.record(placeholderName, placeholder).default({}),
    scopes: z
      .object({
        default: z.array(z.string().min(1)).default([]),
        /**
         * Always requested, whatever scopes the auth client chooses: without them the
         * provider issues no refresh token (`offline_access`, Salesforce `refresh_token`).
         */
        required: z.array(z.string().min(1)).default([]),
        separator: z.string().min(1).default(' '),
      })
      .strict()
      .default({ default: [], required: [], separator: ' ' }),
    clientAuthentication: z
      .enum(['client_secret_post', 'client_secret_basic'])
      .default('client_secret_post'),
    pkce: z.boolean().default(true),
    parameters: z
      .object({
        authorization: parameterMap.default({}),
        codeExchange: parameterMap.default({}),
        refresh: parameterMap.default({}),
      })
      .strict()
      .default({ authorization: {}, codeExchange: {}, refresh: {} }),
    /** Send the auth client's scopes with every refresh grant (Microsoft identity platform). */
    sendScopeOnRefresh: z.boolean().default(false),
    /**
     * `none`: the refresh token stays the same. `rotating`: a new one may come with
     * every refresh, the old one lives on for a while. `single-use`: the old one dies
     * at once, and presenting it again may revoke the whole grant (RFC 9700 §4.14.2).
     */
    rotation: z.enum(['none', 'rotating', 'single-use']),
    /** Whether a successful code exchange should return a refresh token. */
    refreshTokenExpected: z.boolean().default(true),
    /** Access-token lifetime to assume when the response has no expires_in. */
    defaultAccessTokenLifetimeSeconds: z.number().int().positive().optional(),
    /** Resource-server status codes that mean "the access token expired". */
    expiredStatuses: z.array(z.number().int().min(400).max(499)).min(1).default([401]),
    /** Refresh this long before expiry (capped at half the token's lifetime). */
    expiryMarginSeconds: z.number().int().nonnegative().default(300),
    /** Providers that revoke idle grants: refresh at least this often to keep them alive. */
    keepAliveIntervalSeconds: z.number().int().positive().optional(),
    tokenResponse: tokenResponse.default({
      extraTokenTypes: [],
      errorAliases: {},
      idToken: 'ignore',
    }),
  })
  .strict();

export type ProviderProfile = Readonly<z.output<typeof providerProfileSchema>>;
export type ProviderProfileInput = z.input<typeof providerProfileSchema>;

const placeholderRef = /\{([A-Za-z0-9_]+)\}/g;

function placeholdersIn(template: string | undefined): string[] {
  return template === undefined
    ? []
    : [...template.matchAll(placeholderRef)].map((m) => m[1] ?? '');
}

/**
 * Validates one profile. Every problem is listed, each with its path, so a
 * catalog author fixes them all in one go.
 */
export function parseProviderProfile(data: unknown, source: string): ProviderProfile {
  const result = providerProfileSchema.safeParse(data);
  const problems: string[] = [];
  if (!result.success) {
    for (const issue of result.error.issues) {
      problems.push(`${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`);
    }
    throw new ProfileError(source, problems);
  }
  const profile = result.data;
  for (const key of ['authorizationUrl', 'tokenUrl', 'revocationUrl'] as const) {
    const template = profile[key];
    for (const name of placeholdersIn(template)) {
      if (!Object.hasOwn(profile.placeholders, name)) {
        problems.push(`${key}: uses {${name}}, which placeholders does not declare`);
      }
    }
    if (template !== undefined) {
      const sample = template.replace(placeholderRef, 'x');
      const problem = endpointProblem(sample);
      if (problem !== undefined) problems.push(`${key}: ${problem}`);
    }
  }
  for (const [name, spec] of Object.entries(profile.placeholders)) {
    try {
      new RegExp(spec.pattern);
    } catch {
      problems.push(`placeholders.${name}.pattern: not a valid regular expression`);
    }
  }
  if (profile.tokenResponse.idToken === 'validate' && profile.issuer === undefined) {
    problems.push('issuer: required when tokenResponse.idToken is "validate"');
  }
  if ((profile.authorizationUrl === undefined) !== (profile.tokenUrl === undefined)) {
    problems.push(
      'authorizationUrl and tokenUrl: give both, or neither (the auth client then supplies them)',
    );
  }
  if (problems.length > 0) throw new ProfileError(source, problems);
  return Object.freeze(profile);
}

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** True for 127.0.0.0/8, localhost and [::1]: the only hosts where plain http is allowed. */
export function isLoopbackHost(hostname: string): boolean {
  return loopbackHosts.has(hostname) || /^127(\.\d{1,3}){3}$/.test(hostname);
}

/**
 * Token and authorization endpoints must be https, except on loopback
 * addresses (the demo provider, tests). Returns a problem, or undefined.
 */
export function endpointProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `"${value}" is not an absolute URL`;
  }
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return undefined;
  return `"${url.origin}" must use https (plain http is allowed only on loopback addresses)`;
}
