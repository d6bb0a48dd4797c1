import type { FastifyInstance } from 'fastify';
import type { AppDependencies } from './app.ts';

export async function registerOpsRoutes(
  app: FastifyInstance,
  deps: AppDependencies,
): Promise<void> {
  app.get('/healthz', { schema: { tags: ['operations'], security: [] } }, async () => ({
    status: 'ok',
  }));
  app.get(
    '/readyz',
    { schema: { tags: ['operations'], security: [] } },
    async (_request, reply) => {
      try {
        await deps.ready();
        return { status: 'ready' };
      } catch (error) {
        return reply
          .status(503)
          .send({ status: 'unavailable', reason: `database: ${(error as Error).message}` });
      }
    },
  );
  app.get(
    '/metrics',
    { schema: { tags: ['operations'], security: [] } },
    async (_request, reply) => {
      const body = await deps.metrics.registry.metrics();
      return reply.type(deps.metrics.registry.contentType).send(body);
    },
  );
}
