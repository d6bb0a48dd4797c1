import cookie from '@fastify/cookie';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { ProviderCatalog } from '@tokenwarden/oauth';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import type { ConnectFlow } from '../connect-flow.ts';
import type { CredentialService } from '../credential-service.ts';
import { toHttpError, VaultError } from '../errors.ts';
import { pathOf } from '../logger.ts';
import type { VaultStore } from '../store/store.ts';
import type { ApiKeyInfo } from '../store/tenants.ts';
import type { WebhookUrlPolicy } from '../webhooks/url-policy.ts';
import type { VaultMetrics } from './metrics.ts';
import { registerApiRoutes } from './routes-api.ts';
import { registerBrowserRoutes } from './routes-browser.ts';
import { registerOpsRoutes } from './routes-ops.ts';
import { registerWebhookRoutes } from './routes-webhooks.ts';

export interface AppDependencies {
  store: VaultStore;
  service: CredentialService;
  connect: ConnectFlow;
  catalog: ProviderCatalog;
  logger: Logger;
  metrics: VaultMetrics;
  publicUrl: string;
  /** Checks the database for /readyz. */
  ready: () => Promise<void>;
  now?: () => number;
  /** Which webhook URLs are accepted. Default: https, or http to loopback. */
  webhookUrlPolicy?: WebhookUrlPolicy;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The API key's owner; set on every /v1 route. */
    principal: ApiKeyInfo;
  }
}

export async function buildApp(deps: AppDependencies): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    trustProxy: false,
    bodyLimit: 256 * 1024,
    ajv: {
      customOptions: {
        removeAdditional: false,
        coerceTypes: 'array',
        allErrors: true,
        allowUnionTypes: true,
      },
    },
  });
  app.decorateRequest('principal');

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'tokenwarden vault API',
        version: '1',
        description: 'Keeps OAuth2 credentials alive. See docs/api.md.',
      },
      components: {
        securitySchemes: {
          apiKey: { type: 'http', scheme: 'bearer', description: 'twk_… API key' },
        },
      },
      security: [{ apiKey: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.setErrorHandler((error, request, reply) => {
    const http = toHttpError(error);
    if (http.status >= 500) request.log.error({ err: error, code: http.code }, 'request failed');
    void reply.status(http.status).send({ error: { code: http.code, message: http.message } });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${pathOf(request.url)}` },
    });
  });

  const now = deps.now ?? Date.now;
  const authenticate = async (request: FastifyRequest) => {
    const header = request.headers.authorization;
    const match = header === undefined ? null : /^Bearer\s+(\S+)$/i.exec(header);
    if (match?.[1] === undefined) {
      throw new VaultError('unauthorized', 'send an API key: Authorization: Bearer <key>');
    }
    const principal = await deps.store.tenants.authenticate(match[1], now());
    if (principal === undefined) throw new VaultError('unauthorized', 'unknown or revoked API key');
    request.principal = principal;
  };

  await app.register(
    async (api) => {
      api.addHook('onRequest', authenticate);
      await registerApiRoutes(api, deps);
      await registerWebhookRoutes(api, deps, deps.webhookUrlPolicy ?? { allowInsecureHttp: false });
    },
    { prefix: '/v1' },
  );
  await registerBrowserRoutes(app, deps);
  await registerOpsRoutes(app, deps);
  return app;
}
