import { EmittedEvent, type EventName, isEventName } from '../events.ts';
import type { ComponentLogger } from '../logger.ts';
import type { Redactor } from '../redaction.ts';

export interface StepRunHandlers {
  /** `snapshot`: replace the session's snapshot. */
  snapshot(data: unknown): void;
  /** `updateSnapshot` with a plain object: merge it into the session's snapshot. */
  updateSnapshot(data: Record<string, unknown>): void;
  /** `updateKeys`: records its own events (updateKeys, and error on failure); rejects on failure. */
  updateKeys(data: unknown, run: StepRun): Promise<void>;
}

export interface StepRunOptions {
  redactor: Redactor;
  /** The runtime's own logger (warnings about the contract). */
  logger: ComponentLogger;
  handlers: StepRunHandlers;
  onEvent: ((event: EmittedEvent) => void) | undefined;
}

const noop = () => undefined;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/**
 * The event pipeline of one step. `emit` is queued: handlers run one after
 * another in the order of the calls, so a `data` emitted right after an
 * `updateKeys` (without awaiting it) is recorded after the keys were stored,
 * and the step's `end` is processed only once every earlier event is.
 */
export class StepRun {
  readonly events: EmittedEvent[] = [];
  readonly endReached: Promise<void>;
  readonly #options: StepRunOptions;
  #queue: Promise<void> = Promise.resolve();
  #ended = false;
  #finished = false;
  #signalEnd: () => void = noop;

  constructor(options: StepRunOptions) {
    this.#options = options;
    this.endReached = new Promise((resolve) => {
      this.#signalEnd = resolve;
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  get finished(): boolean {
    return this.#finished;
  }

  get ok(): boolean {
    return !this.events.some((event) => event.name === 'error');
  }

  /**
   * Queues an event. The promise settles when its handler is done; a rejected
   * one is already marked handled, so a component that does not await `emit`
   * never causes an unhandled rejection.
   */
  emit(name: unknown, data: unknown, origin: 'component' | 'runtime' = 'component'): Promise<void> {
    const task = this.#queue.then(() => this.#dispatch(name, data, origin));
    this.#queue = task.then(noop, noop);
    task.catch(noop);
    return task;
  }

  /** Records an event (or, once the step finished, logs that it came too late). */
  record(name: EventName, data: unknown, origin: 'component' | 'runtime'): void {
    if (this.#finished) {
      this.#options.logger.warn(
        { event: name },
        '%s emitted after the step finished: not recorded',
        name,
      );
      return;
    }
    if (this.#ended && name !== 'end') {
      this.#options.logger.warn({ event: name }, '%s emitted after end', name);
    }
    const event = new EmittedEvent({
      seq: this.events.length + 1,
      name,
      data,
      at: Date.now(),
      origin,
      afterEnd: this.#ended && name !== 'end',
      redactor: this.#options.redactor,
    });
    this.events.push(event);
    try {
      this.#options.onEvent?.(event);
    } catch (error) {
      this.#options.logger.error(error, 'onEvent threw');
    }
  }

  /** Waits for every queued event, then closes the record. */
  async finish(): Promise<void> {
    await this.#queue;
    this.#finished = true;
  }

  async #dispatch(name: unknown, data: unknown, origin: 'component' | 'runtime'): Promise<void> {
    const { logger, handlers } = this.#options;
    if (!isEventName(name)) {
      logger.warn({ event: String(name) }, 'unknown event "%s" ignored', String(name));
      return;
    }
    if (this.#finished && name !== 'updateKeys') {
      this.record(name, data, origin);
      return;
    }
    switch (name) {
      case 'end':
        if (this.#ended) {
          // The runtime's closing end after a component's own is not a fault of the component.
          if (origin === 'component') logger.warn('end emitted more than once: ignored');
          return;
        }
        this.#ended = true;
        this.record('end', undefined, origin);
        this.#signalEnd();
        return;
      case 'snapshot':
        handlers.snapshot(data);
        this.record(name, data, origin);
        return;
      case 'updateSnapshot':
        if (!isPlainObject(data)) {
          logger.error('updateSnapshot needs a plain object: ignored');
          return;
        }
        if (Object.hasOwn(data, '$set')) {
          logger.warn('updateSnapshot with $set is not supported (as in sailor): ignored');
          return;
        }
        handlers.updateSnapshot(data);
        this.record(name, data, origin);
        return;
      case 'updateKeys':
        await handlers.updateKeys(data, this);
        return;
      default:
        this.record(name, data, origin);
    }
  }
}
