/**
 * Per-provider limits on calls to token endpoints, per process: a concurrency
 * limit and a token bucket, so that a burst of expiries never floods a
 * provider. Two priorities share them: `interactive` (a caller is waiting for a
 * token) goes first and never waits for the rate, only for a free slot; it still
 * spends from the bucket, so background work slows down to make room.
 * `background` (the refresher) waits for a slot and a token.
 *
 * With N replicas the provider sees up to N times these limits.
 */

/** The limits of one provider, per process. */
export interface ProviderLimit {
  /** Token-endpoint calls in flight at once. */
  readonly concurrency: number;
  /** Calls started per second, on average (the bucket's refill rate). */
  readonly ratePerSecond: number;
  /** Calls that may start back to back after a quiet spell (the bucket's size). */
  readonly burst: number;
}

export interface ProviderLimits {
  /** For every provider not named in `byProvider`; each such provider gets its own bucket. */
  readonly default: ProviderLimit;
  readonly byProvider: Readonly<Record<string, ProviderLimit>>;
}

export const DEFAULT_PROVIDER_LIMIT: ProviderLimit = Object.freeze({
  concurrency: 10,
  ratePerSecond: 20,
  burst: 1,
});

/** The grammar, for messages and docs. */
export const PROVIDER_LIMITS_FORMAT =
  '<provider id or "default">=<concurrency>/<rate per second>[/<burst>], comma-separated (e.g. "microsoft=20/50,default=10/20")';

const ENTRY = /^([a-z0-9][a-z0-9_-]*)=(.*)$/;
const INTEGER = /^[1-9][0-9]*$/;
const DECIMAL = /^(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)$/;
const MAX_CONCURRENCY = 10_000;
const MAX_RATE = 100_000;

/**
 * Parses `TOKENWARDEN_PROVIDER_LIMITS`. Every problem is listed, each naming the
 * entry it is about. Whether the provider ids exist is checked later, against
 * the catalog ({@link unknownProviders}).
 */
export function parseProviderLimits(
  text: string,
): { ok: true; limits: ProviderLimits } | { ok: false; problems: string[] } {
  const problems: string[] = [];
  const byProvider: Record<string, ProviderLimit> = {};
  let fallback: ProviderLimit = DEFAULT_PROVIDER_LIMIT;
  const seen = new Set<string>();
  const entries = text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  for (const entry of entries) {
    const match = ENTRY.exec(entry);
    if (match === null) {
      problems.push(`"${entry}" is not ${PROVIDER_LIMITS_FORMAT}`);
      continue;
    }
    const id = match[1] as string;
    const parts = (match[2] as string).split('/').map((part) => part.trim());
    if (seen.has(id)) problems.push(`"${id}" is given more than once`);
    seen.add(id);
    if (parts.length < 2 || parts.length > 3) {
      problems.push(`${id}: "${match[2]}" must be <concurrency>/<rate per second>[/<burst>]`);
      continue;
    }
    const [concurrencyText, rateText, burstText] = parts as [string, string, string | undefined];
    const before = problems.length;
    const concurrency = Number(concurrencyText);
    if (!INTEGER.test(concurrencyText) || concurrency > MAX_CONCURRENCY) {
      problems.push(
        `${id}: concurrency "${concurrencyText}" must be a whole number from 1 to ${MAX_CONCURRENCY}`,
      );
    }
    const rate = Number(rateText);
    if (!DECIMAL.test(rateText) || !(rate > 0) || rate > MAX_RATE) {
      problems.push(
        `${id}: rate "${rateText}" must be a number of calls per second above 0 and at most ${MAX_RATE}`,
      );
    }
    const burst = burstText === undefined ? 1 : Number(burstText);
    if (burstText !== undefined && (!INTEGER.test(burstText) || burst > MAX_RATE)) {
      problems.push(`${id}: burst "${burstText}" must be a whole number from 1 to ${MAX_RATE}`);
    }
    if (problems.length > before) continue;
    const limit = Object.freeze({ concurrency, ratePerSecond: rate, burst });
    if (id === 'default') fallback = limit;
    else byProvider[id] = limit;
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    limits: Object.freeze({ default: fallback, byProvider: Object.freeze(byProvider) }),
  };
}

/** Provider ids named in the limits that the catalog does not know (a typo would silently fall back to the default). */
export function unknownProviders(limits: ProviderLimits, known: (id: string) => boolean): string[] {
  return Object.keys(limits.byProvider).filter((id) => !known(id));
}

export type LimitPriority = 'interactive' | 'background';

/** A granted slot: call `release()` exactly once when the call to the provider is over. */
export interface LimitSlot {
  release(): void;
  /** Milliseconds spent waiting for the slot. */
  readonly waitedMs: number;
}

/** A place in line that can move to the front, when a caller comes to wait for the same credential. */
export interface LimitTicket {
  promote(): void;
}

/** Thrown to a waiter whose signal aborted (the refresher is stopping). */
export class LimitWaitAborted extends Error {
  constructor() {
    super('stopped while waiting for a provider limit');
    this.name = 'LimitWaitAborted';
  }
}

interface Waiter {
  priority: LimitPriority;
  enqueuedAt: number;
  grant(slot: LimitSlot): void;
}

/** One provider's gate: a concurrency count and a token bucket. */
class Gate {
  readonly limit: ProviderLimit;
  readonly #now: () => number;
  #active = 0;
  #tokens: number;
  #refilledAt: number;
  readonly #interactive: Waiter[] = [];
  readonly #background: Waiter[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(limit: ProviderLimit, now: () => number) {
    this.limit = limit;
    this.#now = now;
    this.#tokens = limit.burst;
    this.#refilledAt = now();
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#interactive.length + this.#background.length;
  }

  enqueue(waiter: Waiter): void {
    (waiter.priority === 'interactive' ? this.#interactive : this.#background).push(waiter);
    this.#pump();
  }

  remove(waiter: Waiter): boolean {
    for (const queue of [this.#interactive, this.#background]) {
      const index = queue.indexOf(waiter);
      if (index >= 0) {
        queue.splice(index, 1);
        return true;
      }
    }
    return false;
  }

  promote(waiter: Waiter): void {
    const index = this.#background.indexOf(waiter);
    if (index < 0) return;
    this.#background.splice(index, 1);
    waiter.priority = 'interactive';
    this.#interactive.push(waiter);
    this.#pump();
  }

  #refill(now: number): void {
    const { ratePerSecond, burst } = this.limit;
    this.#tokens = Math.min(
      burst,
      this.#tokens + ((now - this.#refilledAt) / 1000) * ratePerSecond,
    );
    this.#refilledAt = now;
  }

  #pump(): void {
    const now = this.#now();
    this.#refill(now);
    while (this.#active < this.limit.concurrency) {
      const interactive = this.#interactive.shift();
      if (interactive !== undefined) {
        // Interactive calls never wait for the rate; the debt (at most a second's worth)
        // is paid back by background work.
        this.#tokens = Math.max(-this.limit.ratePerSecond, this.#tokens - 1);
        this.#grant(interactive, now);
        continue;
      }
      if (this.#background.length === 0 || this.#tokens < 1) break;
      this.#tokens -= 1;
      this.#grant(this.#background.shift() as Waiter, now);
    }
    if (
      this.#timer === undefined &&
      this.#background.length > 0 &&
      this.#active < this.limit.concurrency
    ) {
      const wait = Math.max(1, Math.ceil(((1 - this.#tokens) / this.limit.ratePerSecond) * 1000));
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, wait);
    }
  }

  #grant(waiter: Waiter, now: number): void {
    this.#active++;
    let released = false;
    waiter.grant({
      waitedMs: now - waiter.enqueuedAt,
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        this.#pump();
      },
    });
  }
}

/** Every provider's gate in this process, created on first use. */
export class ProviderLimiter {
  readonly #limits: ProviderLimits;
  readonly #now: () => number;
  readonly #gates = new Map<string, Gate>();

  constructor(limits: ProviderLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  limitFor(providerId: string): ProviderLimit {
    return this.#limits.byProvider[providerId] ?? this.#limits.default;
  }

  /** Calls in flight and waiting, for tests and logs. */
  usage(providerId: string): { active: number; waiting: number } {
    const gate = this.#gates.get(providerId);
    return { active: gate?.active ?? 0, waiting: gate?.waiting ?? 0 };
  }

  /**
   * Waits for a slot to call `providerId`'s token endpoint. `ticket` receives a
   * handle that moves a background waiter to the front (see {@link LimitTicket}).
   */
  acquire(
    providerId: string,
    priority: LimitPriority,
    options: { signal?: AbortSignal | undefined; ticket?: (ticket: LimitTicket) => void } = {},
  ): Promise<LimitSlot> {
    let gate = this.#gates.get(providerId);
    if (gate === undefined) {
      gate = new Gate(this.limitFor(providerId), this.#now);
      this.#gates.set(providerId, gate);
    }
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(new LimitWaitAborted());
    const target = gate;
    return new Promise<LimitSlot>((resolve, reject) => {
      const onAbort = () => {
        if (target.remove(waiter)) reject(new LimitWaitAborted());
      };
      const waiter: Waiter = {
        priority,
        enqueuedAt: this.#now(),
        grant: (slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      options.ticket?.({ promote: () => target.promote(waiter) });
      target.enqueue(waiter);
    });
  }
}
