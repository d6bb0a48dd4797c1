import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { VaultMetrics } from '../http/metrics.ts';
import { presentEvent } from '../http/present.ts';
import type { VaultEvent } from '../store/events.ts';
import type { VaultStore } from '../store/store.ts';
import type { AttemptResult, ClaimedDelivery } from '../store/webhooks.ts';
import { retryDelay } from './retry.ts';
import { SIGNATURE_HEADER, signatureHeader } from './signature.ts';
import { checkWebhookUrl, type WebhookUrlPolicy } from './url-policy.ts';

export interface WebhookDispatcherOptions {
  store: VaultStore;
  logger: Logger;
  metrics: VaultMetrics;
  /** Names this process in claims (`lease_owner`). */
  instanceId: string;
  /** How often due deliveries are looked for. */
  intervalMs: number;
  /** Timeout of one delivery request. */
  timeoutMs: number;
  /** Delays before the 2nd, 3rd, … attempt; after the last, the delivery is given up. */
  retryScheduleMs: readonly number[];
  /** Deliveries sent at once by this process. */
  concurrency: number;
  /** How long a claim holds: longer than the timeout, so only a dead process loses one. */
  leaseMs: number;
  /** Delivered and given-up rows older than this are deleted (checked hourly). */
  retentionMs: number;
  urlPolicy: WebhookUrlPolicy;
  fetch?: typeof fetch;
  now?: () => number;
  random?: () => number;
}

export const WEBHOOK_USER_AGENT = 'tokenwarden-webhooks/1';
const PRUNE_EVERY_MS = 3_600_000;
const MAX_ERROR_LENGTH = 300;

/** The JSON body of a delivery: the same for every attempt, so receivers may dedupe on `id`. */
export function deliveryBody(deliveryId: string, event: VaultEvent): string {
  return JSON.stringify({ id: deliveryId, event: presentEvent(event) });
}

/** The headers of one attempt; the signature covers the timestamp and the raw body. */
export function deliveryHeaders(
  delivery: { id: string; eventId: number; eventType: string; attempt: number },
  secret: string,
  body: string,
  timestampSeconds: number,
): Record<string, string> {
  return {
    'content-type': 'application/json',
    'user-agent': WEBHOOK_USER_AGENT,
    'tokenwarden-event-id': String(delivery.eventId),
    'tokenwarden-event-type': delivery.eventType,
    'tokenwarden-delivery-id': delivery.id,
    'tokenwarden-delivery-attempt': String(delivery.attempt),
    [SIGNATURE_HEADER]: signatureHeader(secret, timestampSeconds, body),
  };
}

/**
 * The outbox worker: claims due deliveries from the database (a lease on each
 * row, so replicas never send one twice at once and a dead replica's claims
 * expire), POSTs them signed, and records each attempt: a 2xx answer delivers,
 * anything else is retried on the schedule with jitter and finally given up.
 * A delivery is at least once: a process killed between the receiver's answer
 * and the commit sends it again after the claim expires.
 */
export class WebhookDispatcher {
  readonly #options: WebhookDispatcherOptions;
  readonly #now: () => number;
  readonly #random: () => number;
  readonly #fetch: typeof fetch;
  readonly #inFlight = new Set<Promise<void>>();
  #abort = new AbortController();
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;
  #stopped = true;
  /** A pass was asked for while one ran: run again at once. */
  #again = false;
  /** The last pass filled every free slot: more may be due. */
  #backlog = false;
  #prunedAt = 0;
  /** A pass failed (database down): the next failures are logged at debug until one succeeds. */
  #failing = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
    this.#fetch = options.fetch ?? fetch;
  }

  start(): void {
    this.#stopped = false;
    this.#abort = new AbortController();
    this.#schedule(0);
  }

  /**
   * Stops claiming, aborts requests under way and gives their claims back
   * (without counting an attempt), then waits for them to settle.
   */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#abort.abort();
    await this.#pass;
    await Promise.allSettled([...this.#inFlight]);
  }

  /** Resolves when every delivery under way has settled (tests). */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  /** One pass: claims as many due deliveries as there are free slots and starts sending them. */
  async runOnce(): Promise<number> {
    const now = this.#now();
    if (now - this.#prunedAt >= PRUNE_EVERY_MS) {
      this.#prunedAt = now;
      const pruned = await this.#options.store.webhooks.pruneFinished(
        now - this.#options.retentionMs,
      );
      if (pruned > 0) this.#options.logger.info({ pruned }, 'old webhook deliveries deleted');
    }
    const free = this.#options.concurrency - this.#inFlight.size;
    if (free <= 0) {
      this.#backlog = true;
      return 0;
    }
    const owner = `${this.#options.instanceId}/${randomBytes(4).toString('hex')}`;
    const claimed = await this.#options.store.webhooks.claimDue(
      owner,
      free,
      this.#options.leaseMs,
      now,
    );
    this.#backlog = claimed.length === free;
    for (const delivery of claimed) this.#launch(delivery, owner);
    return claimed.length;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#fire, delayMs);
  }

  readonly #fire = (): void => {
    this.#timer = undefined;
    if (this.#stopped) return;
    if (this.#pass !== undefined) {
      this.#again = true;
      return;
    }
    this.#pass = this.runOnce()
      .then(
        () => {
          if (this.#failing) this.#options.logger.info('webhook deliveries resumed');
          this.#failing = false;
        },
        (error: unknown) => {
          const level = this.#failing ? 'debug' : 'warn';
          this.#failing = true;
          this.#options.logger[level]({ err: error }, 'webhook delivery pass failed; retrying');
        },
      )
      .finally(() => {
        this.#pass = undefined;
        const again = this.#again;
        this.#again = false;
        this.#schedule(again ? 0 : this.#options.intervalMs);
      });
  };

  #launch(delivery: ClaimedDelivery, owner: string): void {
    const task: Promise<void> = this.#deliver(delivery, owner)
      .catch((error: unknown) =>
        this.#options.logger.warn(
          { err: error, webhookId: delivery.webhookId, deliveryId: delivery.id },
          'webhook delivery could not be recorded; its claim expires and it is sent again',
        ),
      )
      .finally(() => {
        this.#inFlight.delete(task);
        if (this.#backlog) this.#schedule(0);
      });
    this.#inFlight.add(task);
  }

  async #deliver(delivery: ClaimedDelivery, owner: string): Promise<void> {
    const { store, logger, timeoutMs } = this.#options;
    const attempt = delivery.attempts + 1;
    const event = delivery.event;
    let httpStatus: number | null = null;
    let error: string | undefined;
    let host: string | undefined;

    const checked = checkWebhookUrl(delivery.url, this.#options.urlPolicy);
    let secret: string | undefined;
    if (event === undefined) error = 'not sent: the event no longer exists';
    else if ('problem' in checked) error = `not sent: ${checked.problem}`;
    else {
      host = new URL(checked.url).host;
      try {
        secret = store.webhooks.decryptSecret(delivery.webhookId, delivery.secretEnc);
      } catch {
        error = 'not sent: the signing secret cannot be decrypted (is its key still configured?)';
      }
    }

    if (event !== undefined && secret !== undefined && !('problem' in checked)) {
      const body = deliveryBody(delivery.id, event);
      const headers = deliveryHeaders(
        { id: delivery.id, eventId: event.id, eventType: event.type, attempt },
        secret,
        body,
        Math.floor(this.#now() / 1000),
      );
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const response = await this.#fetch(checked.url, {
          method: 'POST',
          headers,
          body,
          redirect: 'manual',
          signal: AbortSignal.any([timeout, this.#abort.signal]),
        });
        httpStatus = response.status;
        // Only the status counts; the body is neither read nor kept.
        await response.body?.cancel().catch(() => undefined);
        if (response.status < 200 || response.status > 299)
          error =
            response.status >= 300 && response.status < 400
              ? `HTTP ${response.status} (redirects are not followed)`
              : `HTTP ${response.status}`;
      } catch (thrown) {
        if (this.#abort.signal.aborted && !timeout.aborted) {
          // Stopping: not an attempt. The row is due again at once for the next process.
          await store.webhooks.release(delivery.id, owner);
          return;
        }
        error = timeout.aborted ? `no answer within ${timeoutMs} ms` : networkError(thrown);
      }
    }

    const now = this.#now();
    let result: AttemptResult;
    if (error === undefined) result = { outcome: 'delivered', httpStatus: httpStatus ?? 200 };
    else {
      const delay = retryDelay(this.#options.retryScheduleMs, attempt, this.#random);
      result =
        delay === undefined
          ? { outcome: 'gave_up', httpStatus, error: error.slice(0, MAX_ERROR_LENGTH) }
          : {
              outcome: 'failed',
              httpStatus,
              error: error.slice(0, MAX_ERROR_LENGTH),
              nextAttemptAt: now + delay,
            };
    }
    const recorded = await store.webhooks.recordAttempt(delivery.id, owner, result, now);
    this.#options.metrics.webhookDeliveries.inc({ outcome: result.outcome });
    const fields = {
      webhookId: delivery.webhookId,
      deliveryId: delivery.id,
      eventId: event?.id,
      eventType: event?.type,
      host,
      attempt,
      httpStatus,
      ...(recorded ? {} : { claimLost: true }),
    };
    if (result.outcome === 'delivered') logger.debug(fields, 'webhook delivered');
    else if (result.outcome === 'failed')
      logger.info(
        { ...fields, error: result.error, nextAttemptAt: new Date(result.nextAttemptAt) },
        'webhook delivery failed; will retry',
      );
    else logger.warn({ ...fields, error: result.error }, 'webhook delivery given up');
  }
}

/** `connect ECONNREFUSED 127.0.0.1:9` rather than fetch's bare "fetch failed". */
function networkError(thrown: unknown): string {
  const cause = (thrown as { cause?: { code?: unknown; message?: unknown } })?.cause;
  if (typeof cause?.message === 'string' && cause.message.length > 0) return cause.message;
  if (typeof cause?.code === 'string') return cause.code;
  return thrown instanceof Error ? thrown.message : String(thrown);
}
