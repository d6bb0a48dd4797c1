import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { WebhookEventType } from '../db/schema.ts';
import { VaultError } from '../errors.ts';
import {
  type DeliveryRecord,
  MAX_WEBHOOKS_PER_TENANT,
  WEBHOOK_EVENT_TYPES,
  type WebhookRecord,
} from '../store/webhooks.ts';
import { checkWebhookUrl, type WebhookUrlPolicy } from '../webhooks/url-policy.ts';
import type { AppDependencies } from './app.ts';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 128 } },
} as const;

/** A delivery as the API shows it (docs/api.md). */
export function presentDelivery(delivery: DeliveryRecord) {
  return {
    id: delivery.id,
    eventId: String(delivery.eventId),
    eventType: delivery.eventType,
    status: delivery.status,
    attempts: delivery.attempts,
    httpStatus: delivery.lastHttpStatus,
    error: delivery.lastError,
    createdAt: iso(delivery.createdAt),
    lastAttemptAt: iso(delivery.lastAttemptAt),
    nextAttemptAt: iso(delivery.nextAttemptAt),
    deliveredAt: iso(delivery.deliveredAt),
  };
}

/** A webhook as the API shows it: never its signing secret. */
export function presentWebhook(record: WebhookRecord) {
  const last = record.lastDelivery;
  return {
    id: record.id,
    url: record.url,
    events: record.events,
    createdAt: iso(record.createdAt),
    updatedAt: iso(record.updatedAt),
    lastDelivery:
      last === null
        ? null
        : {
            id: last.id,
            eventId: String(last.eventId),
            eventType: last.eventType,
            status: last.status,
            at: iso(last.lastAttemptAt),
            httpStatus: last.lastHttpStatus,
            attempts: last.attempts,
            error: last.lastError,
            nextAttemptAt: iso(last.nextAttemptAt),
          },
  };
}

/**
 * `/v1/webhooks`: a tenant's subscriptions to credential events. The signing
 * secret is in the creation answer only; another tenant's webhook answers 404.
 */
export async function registerWebhookRoutes(
  api: FastifyInstance,
  deps: AppDependencies,
  policy: WebhookUrlPolicy,
): Promise<void> {
  const { store } = deps;
  const now = deps.now ?? Date.now;
  const tenantOf = (request: FastifyRequest) => request.principal.tenantId;

  api.post<{ Body: { url: string; events?: WebhookEventType[] } }>(
    '/webhooks',
    {
      schema: {
        tags: ['webhooks'],
        summary: 'Subscribe a URL to credential events; the answer shows the signing secret once',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['url'],
          properties: {
            url: { type: 'string', minLength: 1, maxLength: 2048 },
            events: {
              type: 'array',
              items: { type: 'string', enum: [...WEBHOOK_EVENT_TYPES] },
              minItems: 1,
              maxItems: WEBHOOK_EVENT_TYPES.length,
              uniqueItems: true,
            },
          },
        },
      },
    },
    async (request, reply) => {
      const tenantId = tenantOf(request);
      const checked = checkWebhookUrl(request.body.url, policy);
      if ('problem' in checked) throw new VaultError('validation_failed', checked.problem);
      if ((await store.webhooks.count(tenantId)) >= MAX_WEBHOOKS_PER_TENANT)
        throw new VaultError(
          'conflict',
          `a tenant may have at most ${MAX_WEBHOOKS_PER_TENANT} webhooks; delete one first`,
        );
      const { record, secret } = await store.webhooks.create(
        tenantId,
        { url: checked.url, events: request.body.events ?? WEBHOOK_EVENT_TYPES },
        now(),
      );
      void reply.header('cache-control', 'no-store');
      return reply.status(201).send({ ...presentWebhook(record), secret });
    },
  );

  api.get('/webhooks', { schema: { tags: ['webhooks'] } }, async (request) => ({
    webhooks: (await store.webhooks.list(tenantOf(request))).map(presentWebhook),
  }));

  api.get(
    '/webhooks/:id',
    { schema: { tags: ['webhooks'], params: idParams } },
    async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const record = await store.webhooks.get(tenantOf(request), request.params.id);
      if (record === undefined)
        throw new VaultError('not_found', `webhook ${request.params.id} does not exist`);
      return presentWebhook(record);
    },
  );

  api.get<{ Params: { id: string }; Querystring: { limit?: number } }>(
    '/webhooks/:id/deliveries',
    {
      schema: {
        tags: ['webhooks'],
        summary: "A webhook's recent deliveries, newest event first",
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 } },
        },
      },
    },
    async (request) => {
      const tenantId = tenantOf(request);
      if ((await store.webhooks.get(tenantId, request.params.id)) === undefined)
        throw new VaultError('not_found', `webhook ${request.params.id} does not exist`);
      const deliveries = await store.webhooks.deliveries(
        tenantId,
        request.params.id,
        request.query.limit ?? 20,
      );
      return { deliveries: deliveries.map(presentDelivery) };
    },
  );

  api.delete(
    '/webhooks/:id',
    { schema: { tags: ['webhooks'], params: idParams } },
    async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
      if (!(await store.webhooks.delete(tenantOf(request), request.params.id)))
        throw new VaultError('not_found', `webhook ${request.params.id} does not exist`);
      return reply.status(204).send();
    },
  );
}
