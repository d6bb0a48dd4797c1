/**
 * Public types of the fake provider. Other packages, benchmarks and the demo
 * code against these names; change them only together with their users.
 */

/** Which real provider's token-endpoint behaviour the fake imitates. */
export type Personality = 'microsoft' | 'salesforce' | 'google' | 'strict' | 'generic';

/** A confidential client registered at the fake provider. */
export interface ClientRegistration {
  clientId: string;
  clientSecret: string;
  /**
   * Exact redirect URIs this client may use. Omitted: any http(s) redirect URI
   * on a loopback host (127.0.0.1, localhost, [::1]), as RFC 8252 §7.3 allows
   * for native apps, so tests can use ephemeral ports.
   */
  redirectUris?: string[] | undefined;
}

export interface FakeProviderOptions {
  /** Default `'generic'`. */
  personality?: Personality | undefined;
  /** Default 3600. Any positive number; fractions are honoured internally. */
  accessTokenLifetimeSeconds?: number | undefined;
  /** `microsoft` only: how long a rotated-away refresh token stays usable. Default 10. */
  refreshGraceSeconds?: number | undefined;
  /** Default: one client `demo-client` / `demo-secret` accepting any loopback redirect URI. */
  clients?: ClientRegistration[] | undefined;
  /** Skip the consent page and redirect with a code at once. Default false. */
  autoApprove?: boolean | undefined;
  /** Default `'127.0.0.1'`. The server listens only here. */
  host?: string | undefined;
  /** Default 0 (an ephemeral port). */
  port?: number | undefined;
  /** Require PKCE S256 on every authorization request. Default true. */
  requirePkce?: boolean | undefined;
  /** How often expired codes and access tokens are dropped. Default 10000. */
  pruneIntervalMs?: number | undefined;
  /**
   * Remember every code and token issued (never pruned), for tests that check no
   * secret reached a log, a database file or an answer. Default false.
   */
  recordIssuedSecrets?: boolean | undefined;
}

export interface TokenRequestCounters {
  authorization_code: number;
  refresh_token: number;
  other: number;
}

export interface Counters {
  /** Every POST /token, by `grant_type`, whatever the outcome (faulted ones too). */
  tokenRequests: TokenRequestCounters;
  /** Successful refresh grants. */
  refreshes: number;
  /** Successful authorization-code exchanges. */
  codeExchanges: number;
  /** `invalid_grant` answers from the token endpoint. */
  invalidGrants: number;
  /** Refresh tokens presented again after they had been rotated away. */
  reusedRefreshTokens: number;
  /** Grants revoked, whatever the cause (reuse, code replay, RFC 7009, revokeGrant()). */
  revokedGrants: number;
  /** Every POST /revoke. */
  revocationRequests: number;
  /** Every request to a protected resource, whatever the outcome. */
  resourceRequests: number;
  /** 401 answers from the protected resources. */
  unauthorized: number;
  /** 403 answers from the protected resources. */
  forbidden: number;
  /** Faults that fired. */
  faultsInjected: number;
}

/** A failure the fake provider can be told to produce instead of (or before) a normal answer. */
export type Fault =
  /** Wait, then answer normally. */
  | { kind: 'latency'; ms: number }
  /** An HTTP 5xx answer (default 503) with a JSON error body. */
  | { kind: 'status'; status?: number | undefined }
  /** 429 with `Retry-After`. */
  | { kind: 'rate-limit'; retryAfterSeconds: number }
  /** Destroy the socket without answering. */
  | { kind: 'reset' }
  /** 200, `application/json`, a truncated body. */
  | { kind: 'invalid-json' }
  /** 502 with an HTML error page, as a proxy in front of the provider would send. */
  | { kind: 'html' }
  /** HTTP 200 whose JSON body is an OAuth error (GitHub and Slack do this). */
  | { kind: 'ok-error'; error?: string | undefined; description?: string | undefined };

export type FaultKind = Fault['kind'];

/** Which requests a fault applies to. */
export type FaultEndpoint = 'token' | 'authorize' | 'revoke' | 'resource' | 'any';

/**
 * `before`: the request is not processed. `after-processing`: the request is
 * processed (a refresh token consumed or rotated) and then the answer is
 * replaced by the fault: the provider did the work, the client never heard.
 */
export type FaultTiming = 'before' | 'after-processing';

export interface InjectOptions {
  /** Default `'token'`. */
  endpoint?: FaultEndpoint | undefined;
  /** How many matching requests the fault applies to. Default: until cleared. */
  times?: number | undefined;
  /** Default `'before'`. */
  after?: FaultTiming | undefined;
}

export interface InjectedFault {
  readonly id: string;
  readonly fault: Fault;
  readonly endpoint: FaultEndpoint;
  readonly after: FaultTiming;
  /** Matching requests left before the fault is removed; `null`: until cleared. */
  readonly remaining: number | null;
}

export interface FaultController {
  /** Adds a fault; throws a TypeError listing every problem when it is malformed. Returns its id. */
  inject(fault: Fault, opts?: InjectOptions): string;
  /** Removes one fault (by id) or all of them; returns how many were removed. */
  clear(id?: string): number;
  /** The active faults, oldest (first to match) first. */
  list(): InjectedFault[];
}

/** `mintGrants`: grants as if the user had approved and the code had been exchanged. */
export interface MintGrantsOptions {
  /** How many grants, 1 to 10,000. */
  count: number;
  /** Default: the only registered client, or `demo-client`. */
  clientId?: string | undefined;
  /** Space-separated scopes granted. Default `profile`. */
  scope?: string | undefined;
}

/** One minted grant: the code exchange's answer, plus the grant's id. */
export interface MintedGrant {
  grant_id: string;
  access_token: string;
  token_type: 'Bearer';
  /** Absent for personalities that do not send it (salesforce). */
  expires_in?: number;
  refresh_token: string;
  scope: string;
}

/**
 * What the provider knows of a refresh token: `current` (usable), `in-grace`
 * (rotated away, still accepted: microsoft), `used` (rotated away, presenting it
 * fails), `unknown` (never issued, or dropped because its grant was revoked).
 */
export interface RefreshTokenStatus {
  state: 'current' | 'in-grace' | 'used' | 'unknown';
  /** null when unknown. */
  grantId: string | null;
  /** Whether the grant behind it is revoked; null when unknown. */
  grantRevoked: boolean | null;
}

export interface FakeProvider {
  /** Base URL, no trailing slash. */
  readonly url: string;
  readonly issuer: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly revocationEndpoint: string;
  /** `GET` → `{sub, name, scope}` with a valid bearer token. */
  readonly resourceUrl: string;
  readonly personality: Personality;
  /** A snapshot copy. */
  counters(): Counters;
  resetCounters(): void;
  readonly faults: FaultController;
  /** Makes every access token issued so far invalid (the resource answers 401); returns how many were valid. */
  revokeAccessTokens(): number;
  /** Makes every access token issued so far expired; returns how many were valid. */
  expireAccessTokens(): number;
  /** Revokes the grant the refresh token belongs to; false when unknown or already revoked. */
  revokeGrant(refreshToken: string): boolean;
  /**
   * Issues `count` grants at once, each with an access token and a refresh token,
   * as the authorization-code flow would (without PKCE, consent or a code: for
   * seeding benchmarks). Throws a TypeError on a bad count, client or scope. Not
   * counted in `codeExchanges`.
   */
  mintGrants(options: MintGrantsOptions): MintedGrant[];
  /** The state of each refresh token, in order, without using it. */
  refreshTokenStatus(refreshTokens: readonly string[]): RefreshTokenStatus[];
  /**
   * Every authorization code, access token and refresh token issued so far, plus
   * the registered client secrets. Needs `recordIssuedSecrets: true`; throws otherwise.
   */
  issuedSecrets(): string[];
  /** Stops listening and closes every connection, idle keep-alive ones included. */
  close(): Promise<void>;
}
