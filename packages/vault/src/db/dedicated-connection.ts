import type pg from 'pg';

/**
 * What the vault's long-lived connections of their own (the change feed's
 * listener, db/change-feed.ts; the liveness lock, db/holder-liveness.ts) share.
 */

/** Runs a callback from inside pg's event handlers: a throw must not break the reconnect logic. */
export function guarded(fn: () => void): void {
  try {
    fn();
  } catch {
    // The callbacks (the cache, log lines, a metric) do not throw in practice; if one
    // did, dropping that call beats an exception inside pg's socket handling.
  }
}

/** Ends a connection on purpose: its own 'end' and 'error' handlers (the reconnect) are removed first. */
export async function endQuietly(client: pg.Client): Promise<void> {
  client.removeAllListeners('end');
  client.removeAllListeners('error');
  client.on('error', () => undefined);
  await client.end().catch(() => undefined);
}
