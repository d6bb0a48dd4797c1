import {
  type AuthClient,
  type TokenResponse,
  TokenSet,
  TokenwardenError,
} from '@tokenwarden/oauth';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { endpointPolicyViolation } from '../endpoint-policy.ts';
import { VaultError } from '../errors.ts';
import type { AuthClientEndpoints } from '../store/auth-clients.ts';
import type { AppDependencies } from './app.ts';
import {
  presentAuthClient,
  presentConnectSession,
  presentCredential,
  presentEvent,
} from './present.ts';

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

const stringArray = {
  type: 'array',
  items: { type: 'string', minLength: 1, maxLength: 512 },
  maxItems: 100,
} as const;
const stringMap = {
  type: 'object',
  additionalProperties: { type: 'string', maxLength: 512 },
  maxProperties: 32,
} as const;
const endpoints = {
  type: 'object',
  additionalProperties: false,
  properties: {
    authorizationUrl: { type: 'string', maxLength: 2048 },
    tokenUrl: { type: 'string', maxLength: 2048 },
    revocationUrl: { type: 'string', maxLength: 2048 },
    issuer: { type: 'string', maxLength: 2048 },
  },
} as const;
const tokenResponseSchema = {
  type: 'object',
  required: ['access_token'],
  properties: {
    access_token: { type: 'string', minLength: 1 },
    token_type: { type: 'string', minLength: 1 },
    refresh_token: { type: 'string', minLength: 1 },
    expires_in: { type: ['number', 'string'] },
    scope: { type: 'string' },
  },
} as const;

interface AuthClientBody {
  name: string;
  providerId: string;
  clientId: string;
  clientSecret: string;
  scopes?: string[];
  placeholders?: Record<string, string>;
  endpoints?: AuthClientEndpoints;
}

type IdRequest = FastifyRequest<{ Params: { id: string } }>;

const JSON_UTF8 = 'application/json; charset=utf-8';
/** The token endpoint's answer per token set: a cached token set is answered without serializing again. */
const answers = new WeakMap<TokenSet, string>();

/**
 * `POST /v1/credentials/:id/access-token`'s answer (the 200 schema above), as
 * JSON text. Token sets are immutable, so it is made once per token set and
 * lives as long as it does.
 */
export function accessTokenAnswer(tokenSet: TokenSet): string {
  let answer = answers.get(tokenSet);
  if (answer === undefined) {
    answer = JSON.stringify({
      access_token: tokenSet.accessToken,
      token_type: tokenSet.authorizationScheme,
      expires_at: tokenSet.expiresAt ?? null,
      extra: tokenSet.extra,
    });
    answers.set(tokenSet, answer);
  }
  return answer;
}

/** A token response, from a bare object or `{oauth: {...}}` (any one key holding one). */
function unwrapTokenResponse(body: unknown): TokenResponse {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new VaultError(
      'validation_failed',
      'body must be a token response object, or {"<field>": {token response}}',
    );
  }
  const record = body as Record<string, unknown>;
  const keys = Object.keys(record);
  const inner = keys.length === 1 && keys[0] !== undefined ? record[keys[0]] : undefined;
  const candidate =
    typeof record.access_token === 'string'
      ? record
      : typeof inner === 'object' && inner !== null
        ? (inner as Record<string, unknown>)
        : undefined;
  if (
    candidate === undefined ||
    typeof candidate.access_token !== 'string' ||
    candidate.access_token.length === 0
  ) {
    throw new VaultError('validation_failed', 'the token response has no access_token');
  }
  const response: Record<string, unknown> = { token_type: 'Bearer', ...candidate };
  if (typeof response.expires_in === 'string' && /^\d+$/.test(response.expires_in))
    response.expires_in = Number(response.expires_in);
  if (
    response.expires_in !== undefined &&
    (typeof response.expires_in !== 'number' || response.expires_in < 0)
  ) {
    throw new VaultError(
      'validation_failed',
      'expires_in must be a non-negative number of seconds',
    );
  }
  if (response.refresh_token !== undefined && typeof response.refresh_token !== 'string') {
    throw new VaultError('validation_failed', 'refresh_token must be a string');
  }
  // A stored token set with a non-string token_type cannot be read back (TokenSet.fromStored):
  // the credential would answer 500 to every later call, DELETE included.
  if (typeof response.token_type !== 'string' || response.token_type.length === 0) {
    throw new VaultError('validation_failed', 'token_type must be a non-empty string');
  }
  if (response.scope !== undefined && typeof response.scope !== 'string') {
    throw new VaultError('validation_failed', 'scope must be a string');
  }
  return response as TokenResponse;
}

export async function registerApiRoutes(
  api: FastifyInstance,
  deps: AppDependencies,
): Promise<void> {
  const { store, service, connect, catalog } = deps;
  const now = deps.now ?? Date.now;
  const tenantOf = (request: FastifyRequest) => request.principal.tenantId;
  const requireAdmin = async (request: FastifyRequest) => {
    if (!request.principal.admin)
      throw new VaultError('forbidden', 'this route needs the admin key');
  };
  const providerOf = async (tenantId: string, authClientId: string) =>
    (await store.authClients.get(tenantId, authClientId))?.providerId;
  const endpointPolicy = deps.endpointPolicy ?? { allowLoopback: false };
  // The vault sends the client secret and refresh tokens to these endpoints: a tenant
  // must not aim them at services on the vault's own machine unless the operator allows it.
  const checkEndpoints = (client: AuthClient): void => {
    const violation = endpointPolicyViolation(client, endpointPolicy);
    if (violation !== undefined) throw new VaultError('validation_failed', violation);
  };

  api.get(
    '/providers',
    { schema: { tags: ['providers'], summary: 'The provider catalog' } },
    async () => ({
      providers: [...catalog.values()].map((profile) => ({
        id: profile.id,
        displayName: profile.displayName,
        rotation: profile.rotation,
        placeholders: profile.placeholders,
        defaultScopes: profile.scopes.default,
        needsEndpoints: profile.tokenUrl === undefined,
        docs: profile.docs,
      })),
    }),
  );

  // Auth clients
  api.post<{ Body: AuthClientBody }>(
    '/auth-clients',
    {
      schema: {
        tags: ['auth clients'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'providerId', 'clientId', 'clientSecret'],
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            providerId: { type: 'string', minLength: 1, maxLength: 64 },
            clientId: { type: 'string', minLength: 1, maxLength: 1024 },
            clientSecret: { type: 'string', minLength: 1, maxLength: 4096 },
            scopes: stringArray,
            placeholders: stringMap,
            endpoints,
          },
        },
      },
    },
    async (request, reply) => {
      checkEndpoints(store.authClients.validate(request.body));
      const record = await store.authClients.create(tenantOf(request), request.body, now());
      return reply.status(201).send(presentAuthClient(record));
    },
  );
  api.get('/auth-clients', { schema: { tags: ['auth clients'] } }, async (request) => ({
    authClients: (await store.authClients.list(tenantOf(request))).map(presentAuthClient),
  }));
  api.get(
    '/auth-clients/:id',
    { schema: { tags: ['auth clients'], params: idParams } },
    async (request: IdRequest) => {
      const record = await store.authClients.get(tenantOf(request), request.params.id);
      if (record === undefined)
        throw new VaultError('not_found', `auth client ${request.params.id} does not exist`);
      return presentAuthClient(record);
    },
  );
  api.patch<{ Params: { id: string }; Body: Partial<Omit<AuthClientBody, 'providerId'>> }>(
    '/auth-clients/:id',
    {
      schema: {
        tags: ['auth clients'],
        params: idParams,
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            clientId: { type: 'string', minLength: 1, maxLength: 1024 },
            clientSecret: { type: 'string', minLength: 1, maxLength: 4096 },
            scopes: stringArray,
            placeholders: stringMap,
            endpoints,
          },
        },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const current = await store.authClients.get(tenantId, request.params.id);
      if (current === undefined)
        throw new VaultError('not_found', `auth client ${request.params.id} does not exist`);
      const { endpoints, placeholders, clientSecret } = request.body;
      const movesHosts =
        (endpoints !== undefined &&
          JSON.stringify(endpoints) !== JSON.stringify(current.endpoints)) ||
        (placeholders !== undefined &&
          JSON.stringify(placeholders) !== JSON.stringify(current.placeholders));
      if (movesHosts) {
        // Endpoints and placeholders decide which host receives the client secret and the
        // refresh tokens: the stored ones are never sent to a host chosen afterwards.
        if (clientSecret === undefined) {
          throw new VaultError(
            'validation_failed',
            'changing endpoints or placeholders needs clientSecret in the same request',
          );
        }
        const inUse = await store.credentials.countByAuthClient(tenantId, current.id);
        if (inUse > 0) {
          throw new VaultError(
            'conflict',
            `auth client ${current.id} has ${inUse} credential(s) whose refresh tokens belong to its current provider; create a new auth client for other endpoints`,
          );
        }
      }
      const record = await store.authClients.update(
        tenantId,
        current.id,
        request.body,
        now(),
        checkEndpoints,
      );
      if (record === undefined)
        throw new VaultError('not_found', `auth client ${request.params.id} does not exist`);
      return presentAuthClient(record);
    },
  );
  api.delete(
    '/auth-clients/:id',
    { schema: { tags: ['auth clients'], params: idParams } },
    async (request: IdRequest, reply) => {
      const tenantId = tenantOf(request);
      if ((await store.authClients.get(tenantId, request.params.id)) === undefined) {
        throw new VaultError('not_found', `auth client ${request.params.id} does not exist`);
      }
      const inUse = await store.credentials.countByAuthClient(tenantId, request.params.id);
      if (inUse > 0)
        throw new VaultError(
          'conflict',
          `auth client ${request.params.id} is used by ${inUse} credential(s); delete them first`,
        );
      await store.authClients.delete(tenantId, request.params.id);
      return reply.status(204).send();
    },
  );

  // Connect sessions
  api.post<{ Body: { authClientId: string; returnTo?: string; scopes?: string[] } }>(
    '/connect-sessions',
    {
      schema: {
        tags: ['connect'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['authClientId'],
          properties: {
            authClientId: { type: 'string', minLength: 1 },
            returnTo: { type: 'string', maxLength: 2048 },
            scopes: stringArray,
          },
        },
      },
    },
    async (request, reply) => {
      const { session, url } = await connect.createSession(tenantOf(request), request.body);
      return reply.status(201).send({ ...presentConnectSession(session, now()), url });
    },
  );
  api.get(
    '/connect-sessions/:id',
    { schema: { tags: ['connect'], params: idParams } },
    async (request: IdRequest) => {
      const session = await store.connectSessions.get(request.params.id);
      if (session === undefined || session.tenantId !== tenantOf(request)) {
        throw new VaultError('not_found', `connect session ${request.params.id} does not exist`);
      }
      return presentConnectSession(session, now());
    },
  );

  // Credentials
  api.post<{ Body: { authClientId: string; tokens: Record<string, unknown> } }>(
    '/credentials',
    {
      schema: {
        tags: ['credentials'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['authClientId', 'tokens'],
          properties: {
            authClientId: { type: 'string', minLength: 1 },
            tokens: tokenResponseSchema,
          },
        },
      },
    },
    async (request, reply) => {
      const tenantId = tenantOf(request);
      const resolved = await store.authClients.resolve(tenantId, request.body.authClientId);
      if (resolved === undefined)
        throw new VaultError(
          'not_found',
          `auth client ${request.body.authClientId} does not exist`,
        );
      const tokens = unwrapTokenResponse(request.body.tokens);
      const tokenSet = TokenSet.fromResponse(
        tokens,
        now(),
        resolved.client.profile.defaultAccessTokenLifetimeSeconds,
      );
      const record = await service.createCredential(tenantId, resolved, tokenSet, 'import');
      return reply.status(201).send(presentCredential(record, resolved.record.providerId));
    },
  );
  api.get<{
    Querystring: { authClientId?: string; status?: 'active' | 'reauth_required' | 'revoked' };
  }>(
    '/credentials',
    {
      schema: {
        tags: ['credentials'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            authClientId: { type: 'string' },
            status: { type: 'string', enum: ['active', 'reauth_required', 'revoked'] },
          },
        },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const providers = new Map(
        (await store.authClients.list(tenantId)).map((client) => [client.id, client.providerId]),
      );
      const filter = {
        ...(request.query.authClientId === undefined
          ? {}
          : { authClientId: request.query.authClientId }),
        ...(request.query.status === undefined ? {} : { status: request.query.status }),
      };
      const records = await store.credentials.list(tenantId, filter);
      return {
        credentials: records.map((record) =>
          presentCredential(record, providers.get(record.authClientId)),
        ),
      };
    },
  );
  api.get(
    '/credentials/:id',
    { schema: { tags: ['credentials'], params: idParams } },
    async (request: IdRequest) => {
      const tenantId = tenantOf(request);
      const record = await store.credentials.get(tenantId, request.params.id);
      if (record === undefined)
        throw new TokenwardenError(
          'credential_not_found',
          `credential ${request.params.id} does not exist`,
        );
      return presentCredential(record, await providerOf(tenantId, record.authClientId));
    },
  );
  api.post<{
    Params: { id: string };
    Body: { minValiditySeconds?: number; staleAccessToken?: string } | undefined;
  }>(
    '/credentials/:id/access-token',
    {
      schema: {
        tags: ['credentials'],
        summary: 'A valid access token, refreshed first when needed',
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: {
            minValiditySeconds: { type: 'number', minimum: 0, maximum: 86_400 },
            staleAccessToken: { type: 'string', minLength: 1, maxLength: 16_384 },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['access_token', 'token_type', 'expires_at', 'extra'],
            properties: {
              access_token: { type: 'string' },
              token_type: { type: 'string', description: 'The scheme to send it with' },
              expires_at: {
                type: ['number', 'null'],
                description: 'Seconds since the epoch; null when the provider gave no lifetime',
              },
              extra: {
                type: 'object',
                additionalProperties: true,
                description: 'The rest of the token response (scope, instance_url, id_token…)',
              },
            },
          },
        },
      },
    },
    // Not async: a token from the cache is sent at once, without a promise; anything
    // else returns the promise of the answer (fastify sends what it resolves to).
    (request, reply) => {
      const tenantId = tenantOf(request);
      const options = request.body ?? {};
      void reply.header('cache-control', 'no-store').type(JSON_UTF8);
      const cached = service.cachedAccessToken(tenantId, request.params.id, options);
      if (cached !== undefined) {
        void reply.send(accessTokenAnswer(cached));
        return;
      }
      return service.accessToken(tenantId, request.params.id, options).then(accessTokenAnswer);
    },
  );
  api.put<{ Params: { id: string }; Body: Record<string, unknown> }>(
    '/credentials/:id/keys',
    {
      schema: {
        tags: ['credentials'],
        summary: 'updateKeys: merge a token response',
        params: idParams,
        body: { type: 'object' },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      const record = await service.updateKeys(
        tenantId,
        request.params.id,
        unwrapTokenResponse(request.body),
      );
      return presentCredential(record, await providerOf(tenantId, record.authClientId));
    },
  );
  api.post(
    '/credentials/:id/refresh',
    { schema: { tags: ['credentials'], params: idParams } },
    async (request: IdRequest) => {
      const tenantId = tenantOf(request);
      const record = await service.forceRefresh(tenantId, request.params.id);
      return presentCredential(record, await providerOf(tenantId, record.authClientId));
    },
  );
  api.delete(
    '/credentials/:id',
    { schema: { tags: ['credentials'], params: idParams } },
    async (request: IdRequest, reply) => {
      // Under the credential's refresh lease: see CredentialService.deleteCredential.
      await service.deleteCredential(tenantOf(request), request.params.id);
      return reply.status(204).send();
    },
  );

  // Events
  api.get<{ Querystring: { after?: string; limit?: number; credentialId?: string } }>(
    '/events',
    {
      schema: {
        tags: ['events'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            after: { type: 'string', pattern: '^[0-9]{1,18}$' },
            limit: { type: 'integer', minimum: 1, maximum: 500, default: 100 },
            credentialId: { type: 'string' },
          },
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const events = await store.events.list(tenantOf(request), {
        limit,
        ...(request.query.after === undefined ? {} : { after: Number(request.query.after) }),
        ...(request.query.credentialId === undefined
          ? {}
          : { credentialId: request.query.credentialId }),
      });
      const last = events.at(-1);
      return {
        events: events.map(presentEvent),
        next: events.length === limit && last !== undefined ? String(last.id) : null,
      };
    },
  );

  // Tenants and API keys
  api.post<{ Body: { name: string } }>(
    '/tenants',
    {
      preHandler: requireAdmin,
      schema: {
        tags: ['tenants'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: { name: { type: 'string', minLength: 1, maxLength: 200 } },
        },
      },
    },
    async (request, reply) => {
      const tenant = await store.tenants.create(request.body.name, now());
      return reply.status(201).send({
        id: tenant.id,
        name: tenant.name,
        createdAt: new Date(tenant.createdAt).toISOString(),
      });
    },
  );
  api.get('/tenants', { preHandler: requireAdmin, schema: { tags: ['tenants'] } }, async () => ({
    tenants: (await store.tenants.list()).map((tenant) => ({
      id: tenant.id,
      name: tenant.name,
      createdAt: new Date(tenant.createdAt).toISOString(),
    })),
  }));
  api.post<{ Params: { id: string }; Body: { label?: string } | undefined }>(
    '/tenants/:id/api-keys',
    {
      preHandler: requireAdmin,
      schema: {
        tags: ['tenants'],
        params: idParams,
        body: {
          type: ['object', 'null'],
          additionalProperties: false,
          properties: { label: { type: 'string', maxLength: 200 } },
        },
      },
    },
    async (request, reply) => {
      if (!(await store.tenants.exists(request.params.id)))
        throw new VaultError('not_found', `tenant ${request.params.id} does not exist`);
      const created = await store.tenants.createApiKey(
        request.params.id,
        request.body?.label ?? '',
        false,
        now(),
      );
      void reply.header('cache-control', 'no-store');
      return reply.status(201).send({
        id: created.id,
        key: created.key,
        label: created.label,
        createdAt: new Date(created.createdAt).toISOString(),
      });
    },
  );
  api.get('/api-keys', { schema: { tags: ['tenants'] } }, async (request) => ({
    apiKeys: (await store.tenants.listApiKeys(tenantOf(request))).map((key) => ({
      id: key.id,
      label: key.label,
      admin: key.admin,
      createdAt: new Date(key.createdAt).toISOString(),
      lastUsedAt: key.lastUsedAt === null ? null : new Date(key.lastUsedAt).toISOString(),
    })),
  }));
  api.delete(
    '/api-keys/:id',
    { schema: { tags: ['tenants'], params: idParams } },
    async (request: IdRequest, reply) => {
      // A tenant key reaches its own tenant's keys; the admin key manages every tenant's
      // (docs/api.md), and only the admin key may revoke an admin key.
      const { principal } = request;
      const target = await store.db
        .selectFrom('api_keys')
        .select(['tenant_id', 'is_admin'])
        .where('id', '=', request.params.id)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      if (target === undefined || (!principal.admin && target.tenant_id !== principal.tenantId)) {
        throw new VaultError('not_found', `API key ${request.params.id} does not exist`);
      }
      if (target.is_admin === 1 && !principal.admin)
        throw new VaultError('forbidden', 'only the admin key may revoke an admin key');
      if (!(await store.tenants.revokeApiKey(target.tenant_id, request.params.id, now()))) {
        throw new VaultError('not_found', `API key ${request.params.id} does not exist`);
      }
      return reply.status(204).send();
    },
  );
}
