/**
 * The small part of panva's oidc-provider (v9) that the integration suite uses.
 * The package ships no types and @types/oidc-provider is not installed; this
 * declares only what support/oidc-server.ts touches, from lib/provider.js,
 * lib/models/*.js and lib/helpers/defaults.js of 9.13.
 */
declare module 'oidc-provider' {
  import type { EventEmitter } from 'node:events';
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export type AdapterPayload = Record<string, unknown> & {
    jti?: string;
    grantId?: string;
    uid?: string;
    userCode?: string;
    consumed?: number;
    exp?: number;
  };

  /** lib/adapters/memory_adapter.js shows the contract. */
  export interface Adapter {
    upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void>;
    find(id: string): Promise<AdapterPayload | undefined>;
    findByUid(uid: string): Promise<AdapterPayload | undefined>;
    findByUserCode(userCode: string): Promise<AdapterPayload | undefined>;
    consume(id: string): Promise<void>;
    destroy(id: string): Promise<void>;
    revokeByGrantId(grantId: string): Promise<void>;
  }

  export interface ClientMetadata {
    client_id: string;
    client_secret?: string;
    redirect_uris: string[];
    grant_types?: string[];
    response_types?: string[];
    token_endpoint_auth_method?: 'client_secret_basic' | 'client_secret_post' | 'none';
    [key: string]: unknown;
  }

  export interface Client {
    readonly clientId: string;
    grantTypeAllowed(grantType: string): boolean;
  }

  /** What findAccount resolves to. */
  export interface Account {
    accountId: string;
    claims(
      use: string,
      scope: string,
      claims: unknown,
      rejected: string[],
    ): Promise<Record<string, unknown> & { sub: string }>;
  }

  /** The Koa context oidc-provider hands to events and configuration callbacks. */
  export interface KoaContextWithOIDC {
    readonly oidc?: {
      readonly route?: string;
      readonly params?: Readonly<Record<string, unknown>>;
      readonly client?: Client;
      readonly entities?: Readonly<Record<string, { readonly grantId?: string } | undefined>>;
    };
  }

  export interface JWK {
    kty: string;
    [key: string]: unknown;
  }

  export interface Configuration {
    adapter?: (model: string) => Adapter;
    clients?: ClientMetadata[];
    jwks?: { keys: JWK[] };
    cookies?: { keys?: string[] };
    claims?: Record<string, string[] | null>;
    scopes?: string[];
    clockTolerance?: number;
    findAccount?: (ctx: KoaContextWithOIDC, sub: string) => Promise<Account | undefined>;
    interactions?: {
      url?: (ctx: KoaContextWithOIDC, interaction: { uid: string }) => string | Promise<string>;
    };
    features?: {
      devInteractions?: { enabled: boolean };
      revocation?: {
        enabled: boolean;
        allowedPolicy?: (
          ctx: KoaContextWithOIDC,
          client: Client,
          token: { readonly clientId?: string },
        ) => Promise<boolean>;
      };
      userinfo?: { enabled: boolean };
      introspection?: { enabled: boolean };
    };
    pkce?: { required?: (ctx: KoaContextWithOIDC, client: Client) => boolean };
    rotateRefreshToken?: boolean | ((ctx: KoaContextWithOIDC) => boolean);
    issueRefreshToken?: (
      ctx: KoaContextWithOIDC,
      client: Client,
      code: unknown,
    ) => boolean | Promise<boolean>;
    ttl?: Record<string, number>;
    renderError?: (
      ctx: KoaContextWithOIDC & { type: string; body: unknown },
      out: Record<string, string>,
      error: Error,
    ) => void | Promise<void>;
  }

  export interface InteractionResult {
    login?: { accountId: string };
    consent?: { grantId: string };
    error?: string;
    error_description?: string;
  }

  export interface Interaction {
    readonly uid: string;
    readonly prompt: {
      readonly name: string;
      readonly reasons: string[];
      readonly details: {
        readonly missingOIDCScope?: string[];
        readonly missingOIDCClaims?: string[];
        readonly missingResourceScopes?: Readonly<Record<string, string[]>>;
      };
    };
    readonly params: Readonly<Record<string, unknown>> & { readonly client_id: string };
    readonly session?: { readonly accountId: string; readonly uid: string };
    readonly grantId?: string;
  }

  export interface Grant {
    readonly jti: string;
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  export interface GrantConstructor {
    new (init: { accountId: string; clientId: string }): Grant;
    find(id: string): Promise<Grant | undefined>;
  }

  /** Model instances passed to `<model>.saved` / `.consumed` / `.destroyed` events. */
  export interface ModelEventPayload {
    readonly jti: string;
    readonly grantId?: string;
    readonly kind: string;
  }

  export class Provider extends EventEmitter {
    constructor(issuer: string, configuration?: Configuration);
    readonly issuer: string;
    /** Koa's: a Node request listener. */
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    /** Koa's: when true, errors are not printed to stderr. */
    silent: boolean;
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<Interaction>;
    interactionFinished(
      req: IncomingMessage,
      res: ServerResponse,
      result: InteractionResult,
      options?: { mergeWithLastSubmission?: boolean },
    ): Promise<void>;
    readonly Grant: GrantConstructor;
  }

  export default Provider;
}
