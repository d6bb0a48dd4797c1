import * as oauth from 'oauth4webapi';
import { TokenwardenError } from './errors.ts';
import { endpointProblem, isLoopbackHost, type ProviderProfile } from './profile.ts';

/**
 * An auth client: a provider profile plus the operator's registration with that
 * provider (elastic.io's `oauth2` block in component.json is one way to declare it).
 */
export interface AuthClientConfig {
  profile: ProviderProfile;
  clientId: string;
  clientSecret: string;
  /** Scopes to request; the profile's defaults when absent. The profile's required scopes are always added. */
  scopes?: readonly string[];
  /** Values for the profile's placeholders (`{tenant}`, `{shop}`, …). */
  placeholders?: Readonly<Record<string, string>>;
  /** Endpoints that replace the profile's (required for the generic `oauth2` profile). */
  endpoints?: {
    authorizationUrl?: string;
    tokenUrl?: string;
    revocationUrl?: string;
    /**
     * The server's issuer identifier (RFC 8414), compared verbatim with the `iss`
     * of the redirect back (RFC 9207) and of id_tokens. Replaces the profile's.
     * Without either, the token URL's origin is assumed, which is wrong for a
     * server whose issuer has a path (a Keycloak realm, an Okta authorization server).
     */
    issuer?: string;
  };
}

/** An auth client checked and turned into what the protocol functions need. */
export interface AuthClient {
  readonly profile: ProviderProfile;
  readonly clientId: string;
  readonly scopes: readonly string[];
  readonly authorizationUrl: URL;
  readonly tokenUrl: URL;
  readonly revocationUrl: URL | undefined;
  /** @internal oauth4webapi's view of the provider. */
  readonly as: oauth.AuthorizationServer;
  /** @internal oauth4webapi's view of the client. */
  readonly client: oauth.Client;
  /** @internal client authentication, holding the secret in a closure. */
  readonly clientAuth: oauth.ClientAuth;
  /** @internal true only when every endpoint is plain http on a loopback host. */
  readonly loopbackHttp: boolean;
}

/**
 * Resolves placeholders and overrides, checks every endpoint (https, or http on
 * loopback only), and lists every problem at once.
 */
export function createAuthClient(config: AuthClientConfig): AuthClient {
  const { profile } = config;
  const problems: string[] = [];
  if (typeof config.clientId !== 'string' || config.clientId.length === 0)
    problems.push('clientId: required');
  if (typeof config.clientSecret !== 'string' || config.clientSecret.length === 0) {
    problems.push('clientSecret: required');
  }

  const values: Record<string, string> = {};
  for (const [name, spec] of Object.entries(profile.placeholders)) {
    const value = config.placeholders?.[name] ?? spec.default;
    if (value === undefined) {
      problems.push(`placeholders.${name}: required (${spec.description})`);
    } else if (!new RegExp(`^(?:${spec.pattern})$`).test(value)) {
      problems.push(
        `placeholders.${name}: "${value}" does not match ${spec.pattern} (${spec.description})`,
      );
    } else {
      values[name] = value;
    }
  }
  for (const name of Object.keys(config.placeholders ?? {})) {
    if (!Object.hasOwn(profile.placeholders, name))
      problems.push(`placeholders.${name}: profile ${profile.id} has no such placeholder`);
  }

  const endpoint = (
    key: 'authorizationUrl' | 'tokenUrl' | 'revocationUrl',
    required: boolean,
  ): URL | undefined => {
    const template = config.endpoints?.[key] ?? profile[key];
    if (template === undefined) {
      if (required)
        problems.push(`endpoints.${key}: required, profile ${profile.id} does not define it`);
      return undefined;
    }
    const value = template.replace(
      /\{([A-Za-z0-9_]+)\}/g,
      (_, name: string) => values[name] ?? `{${name}}`,
    );
    const problem = endpointProblem(value);
    if (problem !== undefined) {
      problems.push(`endpoints.${key}: ${problem}`);
      return undefined;
    }
    return new URL(value);
  };
  const authorizationUrl = endpoint('authorizationUrl', true);
  const tokenUrl = endpoint('tokenUrl', true);
  const revocationUrl = endpoint('revocationUrl', false);
  // Compared as a string, never fetched: kept exactly as given (no URL normalization).
  const issuerTemplate = config.endpoints?.issuer ?? profile.issuer;
  const issuer = issuerTemplate?.replace(
    /\{([A-Za-z0-9_]+)\}/g,
    (_, name: string) => values[name] ?? `{${name}}`,
  );
  const issuerProblem = issuer === undefined ? undefined : endpointProblem(issuer);
  if (issuerProblem !== undefined) problems.push(`endpoints.issuer: ${issuerProblem}`);

  if (problems.length > 0 || authorizationUrl === undefined || tokenUrl === undefined) {
    throw new TokenwardenError(
      'invalid_configuration',
      `auth client for ${profile.id} is invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );
  }

  const urls = [authorizationUrl, tokenUrl, revocationUrl].filter((u): u is URL => u !== undefined);
  const as: oauth.AuthorizationServer = {
    issuer: issuer ?? tokenUrl.origin,
    authorization_endpoint: authorizationUrl.href,
    token_endpoint: tokenUrl.href,
    ...(revocationUrl === undefined ? {} : { revocation_endpoint: revocationUrl.href }),
  };
  return Object.freeze({
    profile,
    clientId: config.clientId,
    scopes: Object.freeze([
      ...new Set([...profile.scopes.required, ...(config.scopes ?? profile.scopes.default)]),
    ]),
    authorizationUrl,
    tokenUrl,
    revocationUrl,
    as,
    client: { client_id: config.clientId },
    clientAuth:
      profile.clientAuthentication === 'client_secret_basic'
        ? oauth.ClientSecretBasic(config.clientSecret)
        : oauth.ClientSecretPost(config.clientSecret),
    loopbackHttp: urls.some((u) => u.protocol === 'http:' && isLoopbackHost(u.hostname)),
  });
}
