/**
 * panva's oidc-provider (v9), in process on 127.0.0.1 with an ephemeral port: a
 * real authorization server nobody here wrote, configured to make refresh races
 * visible.
 *
 * - one confidential client (client_secret_basic unless told otherwise), PKCE
 *   S256 required, grant types authorization_code + refresh_token;
 * - refresh-token rotation on: presenting a consumed refresh token again makes
 *   the provider revoke the whole grant (lib/actions/grants/refresh_token.js);
 * - opaque access tokens living `accessTokenTtlSeconds` (default 2), usable at
 *   the userinfo endpoint (scope `openid offline_access profile`, which needs
 *   `prompt=consent` in the authorization request, OIDC Core §11);
 * - `clockTolerance: 0`: the default of 15 s would keep 2-second tokens valid for
 *   17 s;
 * - its own adapter instead of the built-in development adapter, whose LRU holds
 *   only 1000 entries (the every-access run issues thousands of tokens);
 * - login and consent answered programmatically by {@link OidcServer.authorize}.
 *
 * The provider's events feed counters, globally and per grant.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type Adapter,
  type AdapterPayload,
  type KoaContextWithOIDC,
  type ModelEventPayload,
  Provider,
} from 'oidc-provider';

export interface OidcServerOptions {
  /** `ttl.AccessToken` in whole seconds (oidc-provider requires an integer). Default 2. */
  accessTokenTtlSeconds?: number;
  /** How the client authenticates at the token and revocation endpoints. Default client_secret_basic. */
  tokenEndpointAuthMethod?: 'client_secret_basic' | 'client_secret_post';
  /** A path for the issuer (`/realms/acme`); the provider then serves every endpoint under it. */
  issuerPath?: string;
}

/** What happened at the provider, counted from its events. */
export interface Counters {
  /** Successful authorization_code grants. */
  codeGrants: number;
  /** Successful refresh_token grants. */
  refreshGrants: number;
  /** Every error answer of the token endpoint. */
  grantErrors: number;
  /** Token endpoint answers with `invalid_grant`. */
  invalidGrant: number;
  /** Grants the provider revoked, for any reason. */
  grantsRevoked: number;
  /** Grants revoked by the token endpoint: a consumed refresh token or a used code came back. */
  grantsRevokedOnReuse: number;
  /** Grants revoked through the revocation endpoint (RFC 7009). */
  grantsRevokedByRevocation: number;
  refreshTokensConsumed: number;
  /** `server_error` events: bugs in the provider or in this harness. */
  serverErrors: number;
  /** Failures of the interaction handler in this file. */
  interactionErrors: number;
  userinfoOk: number;
  userinfoUnauthorized: number;
  userinfoOther: number;
}

/** The same, for one grant, plus the refresh tokens in the order the provider issued and consumed them. */
export interface GrantCounters {
  refreshGrants: number;
  invalidGrant: number;
  revoked: number;
  /** Every refresh token issued for the grant, oldest first (code exchange, then each rotation). */
  refreshTokensIssued: string[];
  /** Refresh tokens consumed by a rotation, oldest first. */
  refreshTokensConsumed: string[];
  userinfoOk: number;
  userinfoUnauthorized: number;
}

export interface OidcServer {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUri: string;
  readonly accountId: string;
  readonly accessTokenTtlSeconds: number;
  readonly endpoints: {
    readonly authorizationUrl: string;
    readonly tokenUrl: string;
    readonly revocationUrl: string;
    readonly userinfoUrl: string;
  };
  /** Live counters (read them, or take a {@link OidcServer.snapshot}). */
  readonly counters: Readonly<Counters>;
  snapshot(): Counters;
  /** Counters of one grant (a copy). */
  grant(grantId: string): GrantCounters;
  /** The grant a token (access, refresh, code) belongs to; remembered after the token is gone. */
  grantIdOf(token: string): string | undefined;
  /**
   * Plays the user's browser: follows the provider's redirects from the
   * authorization URL through login and consent (answered by this server's
   * interaction handler with a fixed account) with its own cookie jar, and
   * returns the redirect back to the client (`redirectUri?code=…&state=…`).
   */
  authorize(authorizationUrl: URL | string): Promise<URL>;
  close(): Promise<void>;
}

const CLIENT_ID = 'tokenwarden-it';
const ACCOUNT_ID = 'ada';

function emptyCounters(): Counters {
  return {
    codeGrants: 0,
    refreshGrants: 0,
    grantErrors: 0,
    invalidGrant: 0,
    grantsRevoked: 0,
    grantsRevokedOnReuse: 0,
    grantsRevokedByRevocation: 0,
    refreshTokensConsumed: 0,
    serverErrors: 0,
    interactionErrors: 0,
    userinfoOk: 0,
    userinfoUnauthorized: 0,
    userinfoOther: 0,
  };
}

function emptyGrantCounters(): GrantCounters {
  return {
    refreshGrants: 0,
    invalidGrant: 0,
    revoked: 0,
    refreshTokensIssued: [],
    refreshTokensConsumed: [],
    userinfoOk: 0,
    userinfoUnauthorized: 0,
  };
}

/**
 * Storage for every model of one provider. Unlike the built-in development
 * adapter it never evicts, and it remembers which grant each token belonged to
 * (for per-grant counters). Expiry is left to the provider, which checks `exp`
 * on every find.
 */
class Storage {
  readonly entries = new Map<string, AdapterPayload>();
  readonly grantMembers = new Map<string, Set<string>>();
  readonly sessionsByUid = new Map<string, string>();
  /** token value (jti) → grantId, kept after the token is destroyed. */
  readonly tokenGrant = new Map<string, string>();

  adapter(model: string): Adapter {
    const key = (id: string) => `${model}:${id}`;
    return {
      upsert: async (id, payload, _expiresIn) => {
        this.entries.set(key(id), structuredClone(payload));
        if (typeof payload.grantId === 'string') {
          const members = this.grantMembers.get(payload.grantId) ?? new Set<string>();
          members.add(key(id));
          this.grantMembers.set(payload.grantId, members);
          this.tokenGrant.set(id, payload.grantId);
        }
        if (model === 'Grant') this.tokenGrant.set(id, id);
        if (model === 'Session' && typeof payload.uid === 'string')
          this.sessionsByUid.set(payload.uid, id);
      },
      find: async (id) => {
        const payload = this.entries.get(key(id));
        return payload === undefined ? undefined : structuredClone(payload);
      },
      findByUid: async (uid) => {
        const id = this.sessionsByUid.get(uid);
        const payload = id === undefined ? undefined : this.entries.get(key(id));
        return payload === undefined ? undefined : structuredClone(payload);
      },
      findByUserCode: async () => undefined,
      consume: async (id) => {
        const payload = this.entries.get(key(id));
        if (payload !== undefined) payload.consumed = Math.floor(Date.now() / 1000);
      },
      destroy: async (id) => {
        this.entries.delete(key(id));
      },
      revokeByGrantId: async (grantId) => {
        for (const member of this.grantMembers.get(grantId) ?? []) this.entries.delete(member);
        this.grantMembers.delete(grantId);
      },
    };
  }
}

/** A cookie jar for one simulated browser: enough for oidc-provider's cookies on one host. */
class CookieJar {
  readonly #cookies = new Map<string, string>();

  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attributes.some((attribute) => {
        const [rawKey = '', rawValue = ''] = attribute.split('=');
        const key = rawKey.trim().toLowerCase();
        if (key === 'max-age') return Number(rawValue) <= 0;
        if (key === 'expires') return Date.parse(rawValue) <= Date.now();
        return false;
      });
      if (expired || value === '') this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }

  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

/** Starts the provider on 127.0.0.1 with an ephemeral port. */
export async function startOidcServer(options: OidcServerOptions = {}): Promise<OidcServer> {
  const ttl = options.accessTokenTtlSeconds ?? 2;
  const authMethod = options.tokenEndpointAuthMethod ?? 'client_secret_basic';
  const mount = (options.issuerPath ?? '').replace(/\/+$/, '');

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const issuer = `${origin}${mount}`;
  const redirectUri = `${origin}/cb`;
  const clientSecret = `it-secret-${port}-${Math.random().toString(36).slice(2)}`;

  const storage = new Storage();
  const counters = emptyCounters();
  const perGrant = new Map<string, GrantCounters>();
  const forGrant = (grantId: string | undefined): GrantCounters | undefined => {
    if (grantId === undefined) return undefined;
    let entry = perGrant.get(grantId);
    if (entry === undefined) {
      entry = emptyGrantCounters();
      perGrant.set(grantId, entry);
    }
    return entry;
  };

  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'jwk',
  });

  const provider = new Provider(issuer, {
    adapter: (model) => storage.adapter(model),
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: authMethod,
      },
    ],
    jwks: { keys: [{ ...signingKey, kty: 'RSA', use: 'sig', alg: 'RS256', kid: 'it-1' }] },
    cookies: { keys: [`cookie-key-${port}`] },
    claims: { openid: ['sub'], profile: ['name'] },
    scopes: ['openid', 'offline_access'],
    clockTolerance: 0,
    findAccount: async (_ctx, sub) =>
      sub === ACCOUNT_ID
        ? { accountId: sub, claims: async () => ({ sub, name: 'Ada Lovelace' }) }
        : undefined,
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
      },
      userinfo: { enabled: true },
      introspection: { enabled: false },
    },
    pkce: { required: () => true },
    rotateRefreshToken: true,
    issueRefreshToken: (_ctx, client) => client.clientId === CLIENT_ID,
    ttl: {
      AccessToken: ttl,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 86_400,
      Grant: 86_400,
      RefreshToken: 86_400,
    },
    renderError: (ctx, out) => {
      ctx.type = 'text';
      ctx.body = JSON.stringify(out);
    },
  });
  // Koa prints unexpected errors to stderr; the server_error counter reports them instead.
  provider.silent = true;

  const params = (ctx: KoaContextWithOIDC) => ctx.oidc?.params ?? {};
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const type = params(ctx).grant_type;
    if (type === 'authorization_code') counters.codeGrants++;
    if (type === 'refresh_token') {
      counters.refreshGrants++;
      const grant = forGrant(ctx.oidc?.entities?.RefreshToken?.grantId);
      if (grant !== undefined) grant.refreshGrants++;
    }
  });
  provider.on('grant.error', (ctx: KoaContextWithOIDC, error: { error?: string }) => {
    counters.grantErrors++;
    if (error.error !== 'invalid_grant') return;
    counters.invalidGrant++;
    const presented = params(ctx).refresh_token ?? params(ctx).code;
    const grant = forGrant(
      typeof presented === 'string' ? storage.tokenGrant.get(presented) : undefined,
    );
    if (grant !== undefined) grant.invalidGrant++;
  });
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    counters.grantsRevoked++;
    if (ctx.oidc?.route === 'revocation') counters.grantsRevokedByRevocation++;
    else counters.grantsRevokedOnReuse++;
    const grant = forGrant(grantId);
    if (grant !== undefined) grant.revoked++;
  });
  provider.on('refresh_token.saved', (token: ModelEventPayload) => {
    forGrant(token.grantId)?.refreshTokensIssued.push(token.jti);
  });
  provider.on('refresh_token.consumed', (token: ModelEventPayload) => {
    counters.refreshTokensConsumed++;
    forGrant(token.grantId)?.refreshTokensConsumed.push(token.jti);
  });
  provider.on('server_error', () => {
    counters.serverErrors++;
  });

  const providerCallback = provider.callback();
  const userinfoPath = `${mount}/me`;

  const interaction = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name === 'login') {
      await provider.interactionFinished(
        req,
        res,
        { login: { accountId: ACCOUNT_ID } },
        {
          mergeWithLastSubmission: false,
        },
      );
      return;
    }
    if (details.prompt.name === 'consent') {
      const accountId = details.session?.accountId ?? ACCOUNT_ID;
      const existing =
        details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId);
      const grant =
        existing ?? new provider.Grant({ accountId, clientId: details.params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
      if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims);
      for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) {
        grant.addResourceScope(resource, scopes.join(' '));
      }
      const grantId = await grant.save();
      await provider.interactionFinished(
        req,
        res,
        { consent: { grantId } },
        {
          mergeWithLastSubmission: true,
        },
      );
      return;
    }
    throw new Error(`unexpected prompt ${details.prompt.name}`);
  };

  handler = (req, res) => {
    const path = new URL(req.url ?? '/', origin).pathname;
    if (mount !== '' && path.startsWith(`${mount}/`)) {
      // Mounted like express's app.use(mount, …): the provider routes the rest and
      // finds its mount path from originalUrl (lib/helpers/oidc_context.js).
      const url = req.url ?? '/';
      (req as IncomingMessage & { originalUrl?: string }).originalUrl = url;
      req.url = url.slice(mount.length);
    }
    if (path.startsWith('/interaction/')) {
      interaction(req, res).catch((error: unknown) => {
        counters.interactionErrors++;
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`interaction failed: ${(error as Error).message}`);
      });
      return;
    }
    if (path === '/cb') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('the client would handle this redirect');
      return;
    }
    if (path === userinfoPath) {
      res.on('finish', () => {
        const bearer = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
        const grant = forGrant(bearer === undefined ? undefined : storage.tokenGrant.get(bearer));
        if (res.statusCode === 200) {
          counters.userinfoOk++;
          if (grant !== undefined) grant.userinfoOk++;
        } else if (res.statusCode === 401) {
          counters.userinfoUnauthorized++;
          if (grant !== undefined) grant.userinfoUnauthorized++;
        } else {
          counters.userinfoOther++;
        }
      });
    }
    providerCallback(req, res);
  };

  const authorize = async (authorizationUrl: URL | string): Promise<URL> => {
    const jar = new CookieJar();
    let url = new URL(authorizationUrl);
    for (let hop = 0; hop < 12; hop++) {
      const cookie = jar.header();
      const response = await fetch(url, {
        redirect: 'manual',
        headers: cookie === '' ? {} : { cookie },
      });
      jar.store(response);
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || location === null) {
        const body = await response.text();
        throw new Error(
          `authorization stopped at ${url.pathname} with HTTP ${response.status}: ${body.slice(0, 300)}`,
        );
      }
      await response.body?.cancel();
      const next = new URL(location, url);
      if (`${next.origin}${next.pathname}` === redirectUri) return next;
      url = next;
    }
    throw new Error('authorization did not come back to the redirect URI within 12 redirects');
  };

  return {
    issuer,
    clientId: CLIENT_ID,
    clientSecret,
    redirectUri,
    accountId: ACCOUNT_ID,
    accessTokenTtlSeconds: ttl,
    endpoints: {
      authorizationUrl: `${issuer}/auth`,
      tokenUrl: `${issuer}/token`,
      revocationUrl: `${issuer}/token/revocation`,
      userinfoUrl: `${issuer}/me`,
    },
    counters,
    snapshot: () => ({ ...counters }),
    grant: (grantId) => {
      const entry = perGrant.get(grantId) ?? emptyGrantCounters();
      return {
        ...entry,
        refreshTokensIssued: [...entry.refreshTokensIssued],
        refreshTokensConsumed: [...entry.refreshTokensConsumed],
      };
    },
    grantIdOf: (token) => storage.tokenGrant.get(token),
    authorize,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error === undefined ? resolve() : reject(error))),
      );
    },
  };
}

/** The difference of two counter snapshots: what happened in between. */
export function countersSince(before: Counters, after: Counters): Counters {
  const delta = emptyCounters();
  for (const key of Object.keys(delta) as (keyof Counters)[]) delta[key] = after[key] - before[key];
  return delta;
}
