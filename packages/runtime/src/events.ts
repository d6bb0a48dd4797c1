import { inspect } from 'node:util';
import type { Redactor } from './redaction.ts';

/** The events of sailor's contract, all accepted by `this.emit`. */
export const EVENT_NAMES = [
  'data',
  'error',
  'end',
  'snapshot',
  'updateSnapshot',
  'updateKeys',
  'rebound',
  'httpReply',
] as const;

export type EventName = (typeof EVENT_NAMES)[number];

export function isEventName(name: unknown): name is EventName {
  return (EVENT_NAMES as readonly unknown[]).includes(name);
}

/**
 * One event of a step, in the order it was emitted. `data` is the value as it
 * was emitted (an Error for `error`), for callers in this process; printing the
 * event (`JSON.stringify`, `console.log`, `util.inspect`) shows it redacted, so
 * a token never reaches a terminal or a log by accident.
 */
export class EmittedEvent {
  /** 1, 2, 3… within the step. */
  readonly seq: number;
  readonly name: EventName;
  readonly data: unknown;
  /** Milliseconds since the epoch. */
  readonly at: number;
  /** `runtime`: made by the runtime (a returned value, a thrown error, the closing end, a failed store). */
  readonly origin: 'component' | 'runtime';
  /** Emitted after the step's `end` but before the step finished (sailor delivers these too). */
  readonly afterEnd: boolean;
  readonly #redactor: Redactor;

  constructor(init: {
    seq: number;
    name: EventName;
    data: unknown;
    at: number;
    origin: 'component' | 'runtime';
    afterEnd: boolean;
    redactor: Redactor;
  }) {
    this.seq = init.seq;
    this.name = init.name;
    this.data = init.data;
    this.at = init.at;
    this.origin = init.origin;
    this.afterEnd = init.afterEnd;
    this.#redactor = init.redactor;
  }

  /** The printable form: `{seq, event, data?, origin, at, afterEnd?}`, redacted. */
  toJSON(): Record<string, unknown> {
    const json: Record<string, unknown> = { seq: this.seq, event: this.name };
    if (this.data !== undefined) json.data = this.#redactor.redact(this.data);
    json.origin = this.origin;
    json.at = new Date(this.at).toISOString();
    if (this.afterEnd) json.afterEnd = true;
    return json;
  }

  /** One JSON line, as `tokenwarden run` prints it. */
  toJsonLine(): string {
    return JSON.stringify(this);
  }

  toString(): string {
    return this.toJsonLine();
  }

  [inspect.custom](): string {
    return `EmittedEvent ${inspect(this.toJSON(), { depth: 6 })}`;
  }
}
