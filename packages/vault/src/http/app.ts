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
import { type CredentialService, ProviderCoolingDown } from '../credential-service.ts';
import type { EndpointPolicy } from '../endpoint-policy.ts';
import { toHttpError, VaultError } from '../errors.ts';
import { LazyChildLogger, pathOf } from '../logger.ts';
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
  /** Which auth-client endpoints are accepted. Default: none on a loopback host. */
  endpointPolicy?: EndpointPolicy;
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
    childLoggerFactory: (logger, bindings, options) =>
      new LazyChildLogger(logger as Logger, bindings, options) as unknown as FastifyBaseLogger,
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
    if (error instanceof ProviderCoolingDown) request.log.debug({ code: http.code }, http.message);
    else if (http.status >= 500)
      request.log.error({ err: error, code: http.code }, 'request failed');
    if (http.retryAfterSeconds !== undefined)
      void reply.header('retry-after', String(http.retryAfterSeconds));
    void reply.status(http.status).send({ error: { code: http.code, message: http.message } });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.status(404).send({
      error: { code: 'not_found', message: `no route ${request.method} ${pathOf(request.url)}` },
    });
  });

  const now = deps.now ?? Date.now;
  // Callback style, not async: a key found in the cache costs no promise (every /v1 call).
  const authenticate = (
    request: FastifyRequest,
    _reply: unknown,
    done: (error?: Error) => void,
  ): void => {
    const key = bearerKey(request.headers.authorization);
    if (key === undefined) {
      done(new VaultError('unauthorized', 'send an API key: Authorization: Bearer <key>'));
      return;
    }
    const cached = deps.store.tenants.cachedAuthentication(key, now());
    if (cached !== undefined) {
      request.principal = cached;
      done();
      return;
    }
    deps.store.tenants.authenticate(key, now()).then(
      (principal) => {
        if (principal === undefined) {
          done(new VaultError('unauthorized', 'unknown or revoked API key'));
          return;
        }
        request.principal = principal;
        done();
      },
      (error: unknown) => done(error instanceof Error ? error : new Error(String(error))),
    );
  };

  await app.register(
    async (api) => {
      api.addHook('onRequest', authenticate);
      await registerApiRoutes(api, deps);
      await registerWebhookRoutes(api, deps, deps.webhookUrlPolicy ?? { allowInsecureHttp: false });
    },
    { prefix: '/v1' },
  );
  // Cookies only where the browser flow uses them: their hooks stay off the API's hot path.
  await app.register(async (browser) => {
    await browser.register(cookie);
    await registerBrowserRoutes(browser, deps);
  });
  await registerOpsRoutes(app, deps);
  return app;
}

/** The credential of `Authorization: Bearer <key>` (scheme case-insensitive), or undefined. */
export function bearerKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  // The usual spelling without the capturing, case-insensitive expression; any other through it.
  if (header.startsWith('Bearer ')) {
    const key = header.slice(7);
    if (key !== '' && !/\s/.test(key)) return key;
  }
  return /^Bearer\s+(\S+)$/i.exec(header)?.[1];
}
