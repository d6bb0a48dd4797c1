import type { FastifyInstance } from 'fastify';
import type { AppDependencies } from './app.ts';

export async function registerOpsRoutes(
  app: FastifyInstance,
  deps: AppDependencies,
): Promise<void> {
  app.get('/healthz', { schema: { tags: ['operations'], security: [] } }, async () => ({
    status: 'ok',
  }));
  app.get('/readyz', { schema: { tags: ['operations'], security: [] } }, async (request, reply) => {
    try {
      await deps.ready();
      return { status: 'ready' };
    } catch (error) {
      // Details (hosts, driver messages) go to the log, not to an unauthenticated answer.
      request.log.warn({ err: error }, 'readiness check failed: the database does not answer');
      return reply.status(503).send({ status: 'unavailable', reason: 'database unavailable' });
    }
  });
  app.get(
    '/metrics',
    { schema: { tags: ['operations'], security: [] } },
    async (_request, reply) => {
      const body = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(body);
    },
  );
}
