/**
 * The retry schedule of webhook deliveries: the delays before the 2nd, 3rd, …
 * attempt. After the last one fails the delivery is given up. Each delay gets
 * ±20 % jitter so that a receiver coming back is not hit by every replica's
 * backlog in the same second.
 */
export const DEFAULT_RETRY_SCHEDULE = '10s,30s,2m,10m,30m,1h,3h,6h,12h';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const MAX_DELAY_MS = 7 * 24 * 3_600_000;
const JITTER = 0.2;

/**
 * Parses `10s,30s,2m,1h` (units ms, s, m, h) into milliseconds. Throws an Error
 * naming the bad item; at most 20 delays, each above 0 and at most 7 days.
 */
export function parseRetrySchedule(text: string): number[] {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item.length > 0);
  if (items.length === 0) throw new Error('needs at least one delay, e.g. "10s,1m,10m"');
  if (items.length > 20) throw new Error('at most 20 delays');
  return items.map((item) => {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(item);
    const unit = match?.[2] === undefined ? undefined : UNIT_MS[match[2]];
    if (match?.[1] === undefined || unit === undefined)
      throw new Error(`"${item}" is not a duration like 500ms, 10s, 2m or 1h`);
    const ms = Math.round(Number(match[1]) * unit);
    if (ms <= 0 || ms > MAX_DELAY_MS)
      throw new Error(`"${item}" must be above 0 and at most 7 days`);
    return ms;
  });
}

/**
 * The delay before the next attempt after `attempts` failed ones, or undefined
 * when the schedule is used up (give up). `random` is in [0, 1).
 */
export function retryDelay(
  schedule: readonly number[],
  attempts: number,
  random: () => number = Math.random,
): number | undefined {
  const base = schedule[attempts - 1];
  if (base === undefined) return undefined;
  return Math.round(base * (1 - JITTER + 2 * JITTER * random()));
}
