import type {
  Counters,
  Fault,
  FaultController,
  FaultEndpoint,
  FaultTiming,
  InjectedFault,
  InjectOptions,
} from '../types.ts';
import { jsonReply, type Reply } from './http.ts';

const ENDPOINTS: readonly FaultEndpoint[] = ['token', 'authorize', 'revoke', 'resource', 'any'];
const TIMINGS: readonly FaultTiming[] = ['before', 'after-processing'];

interface ActiveFault {
  readonly id: string;
  readonly fault: Fault;
  readonly endpoint: FaultEndpoint;
  readonly after: FaultTiming;
  remaining: number | null;
}

/** The fault list behind `provider.faults` and the control API. */
export class FaultRegistry implements FaultController {
  readonly #faults: ActiveFault[] = [];
  readonly #counters: () => Counters;
  #nextId = 1;

  constructor(counters: () => Counters) {
    this.#counters = counters;
  }

  inject(fault: Fault, opts: InjectOptions = {}): string {
    const problems = faultProblems(fault, opts);
    if (problems.length > 0) throw new TypeError(`invalid fault:\n- ${problems.join('\n- ')}`);
    const id = `fault-${this.#nextId++}`;
    this.#faults.push({
      id,
      fault: Object.freeze({ ...fault }),
      endpoint: opts.endpoint ?? 'token',
      after: opts.after ?? 'before',
      remaining: opts.times ?? null,
    });
    return id;
  }

  clear(id?: string): number {
    if (id === undefined) return this.#faults.splice(0).length;
    const index = this.#faults.findIndex((f) => f.id === id);
    if (index === -1) return 0;
    this.#faults.splice(index, 1);
    return 1;
  }

  list(): InjectedFault[] {
    return this.#faults.map((f) => ({ ...f }));
  }

  /**
   * The first fault that applies to this request, consumed once. Cheap when no
   * fault is set: the resource hot path calls it on every request.
   */
  take(endpoint: Exclude<FaultEndpoint, 'any'>, timing: FaultTiming): Fault | null {
    if (this.#faults.length === 0) return null;
    const index = this.#faults.findIndex(
      (f) => f.after === timing && (f.endpoint === endpoint || f.endpoint === 'any'),
    );
    const active = this.#faults[index];
    if (active === undefined) return null;
    if (active.remaining !== null && --active.remaining <= 0) this.#faults.splice(index, 1);
    this.#counters().faultsInjected++;
    return active.fault;
  }
}

function faultProblems(fault: unknown, opts: unknown): string[] {
  const problems: string[] = [];
  if (typeof fault !== 'object' || fault === null) return ['fault must be an object with a kind'];
  const f = fault as Record<string, unknown>;
  switch (f.kind) {
    case 'latency':
      if (!isNonNegative(f.ms)) problems.push('latency: ms must be a number, 0 or more');
      break;
    case 'status':
      if (
        f.status !== undefined &&
        !(Number.isInteger(f.status) && (f.status as number) >= 500 && (f.status as number) <= 599)
      ) {
        problems.push('status: status must be an integer from 500 to 599');
      }
      break;
    case 'rate-limit':
      if (!Number.isInteger(f.retryAfterSeconds) || (f.retryAfterSeconds as number) < 0) {
        problems.push('rate-limit: retryAfterSeconds must be an integer, 0 or more');
      }
      break;
    case 'ok-error':
      if (f.error !== undefined && !isOAuthErrorCode(f.error)) {
        problems.push(
          'ok-error: error must be an OAuth error code (printable ASCII, no quote or backslash)',
        );
      }
      if (f.description !== undefined && typeof f.description !== 'string') {
        problems.push('ok-error: description must be a string');
      }
      break;
    case 'reset':
    case 'invalid-json':
    case 'html':
      break;
    default:
      problems.push(
        'kind must be one of latency, status, rate-limit, reset, invalid-json, html, ok-error',
      );
  }
  if (typeof opts !== 'object' || opts === null) return [...problems, 'options must be an object'];
  const o = opts as Record<string, unknown>;
  if (o.endpoint !== undefined && !ENDPOINTS.includes(o.endpoint as FaultEndpoint)) {
    problems.push(`endpoint must be one of ${ENDPOINTS.join(', ')}`);
  }
  if (o.after !== undefined && !TIMINGS.includes(o.after as FaultTiming)) {
    problems.push(`after must be one of ${TIMINGS.join(', ')}`);
  }
  if (o.times !== undefined && !(Number.isInteger(o.times) && (o.times as number) >= 1)) {
    problems.push('times must be a positive integer');
  }
  return problems;
}

function isNonNegative(value: unknown): boolean {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}

/** RFC 6749 §5.2: error codes are %x20-21 / %x23-5B / %x5D-7E. */
function isOAuthErrorCode(value: unknown): boolean {
  return typeof value === 'string' && /^[\x20\x21\x23-\x5B\x5D-\x7E]+$/.test(value);
}

/**
 * The answer a fault sends instead of the real one. `latency` and `reset`
 * have none: the caller waits, or destroys the socket.
 */
export function faultReply(fault: Exclude<Fault, { kind: 'latency' } | { kind: 'reset' }>): Reply {
  switch (fault.kind) {
    case 'status': {
      const status = fault.status ?? 503;
      return jsonReply(
        status,
        {
          error: status === 503 ? 'temporarily_unavailable' : 'server_error',
          error_description: `injected fault: HTTP ${status}`,
        },
        { 'cache-control': 'no-store' },
      );
    }
    case 'rate-limit':
      return jsonReply(
        429,
        { error: 'temporarily_unavailable', error_description: 'injected fault: rate limited' },
        { 'retry-after': String(fault.retryAfterSeconds), 'cache-control': 'no-store' },
      );
    case 'invalid-json':
      // A body cut short mid-value, as when a proxy drops the end of an answer.
      return {
        status: 200,
        headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
        body: '{"token_type":"Bearer","access_tok',
      };
    case 'html':
      return {
        status: 502,
        headers: { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' },
        body: '<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><p>The upstream server sent an invalid response (injected fault).</p></body></html>\n',
      };
    case 'ok-error':
      return jsonReply(
        200,
        {
          error: fault.error ?? 'server_error',
          error_description: fault.description ?? 'injected fault: an error in a 200 answer',
        },
        { 'cache-control': 'no-store' },
      );
  }
}
