/**
 * B3: the `strict` personality (single-use refresh tokens: a reused one revokes
 * the grant), 1-second access tokens, 200 concurrent callers for 60 s.
 * Runs the `on-demand` strategy (every caller hits the expiry at the same instant,
 * the hardest case), then `before-expiry`.
 *   node bench/b3-rotation-storm.ts [--seconds 60] [--callers 200]
 *
 * Expiries are counted where they are seen: each distinct access token the
 * resource rejected. Refreshes are the provider's successful refresh grants.
 */
import { createHash } from 'node:crypto';
import { MemoryTokenStore, type RefreshStrategy, TokenManager } from '@tokenwarden/oauth';
import { Agent, setGlobalDispatcher } from 'undici';
import { authClientFor, connect, numberArg, report, spawnFakeProvider } from './support.ts';

const seconds = numberArg('seconds', 60);
const callers = numberArg('callers', 200);
setGlobalDispatcher(new Agent({ connections: callers + 10 }));

const results: Record<string, unknown> = {};
for (const strategy of ['on-demand', 'before-expiry'] as RefreshStrategy[]) {
  const provider = await spawnFakeProvider(['--personality', 'strict', '--token-lifetime', '1']);
  try {
    const client = await authClientFor(provider, 'oauth2');
    const manager = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
    await manager.save('b3', await connect(client, provider.url));
    await provider.control('reset-counters', {});

    const rejected = new Set<string>();
    const observingFetch: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      if (response.status === 401) {
        const header = new Headers(init?.headers).get('authorization') ?? '';
        rejected.add(createHash('sha256').update(header).digest('hex'));
      }
      return response;
    };
    const authorizedFetch = manager.authorizedFetch('b3', { strategy, fetch: observingFetch });
    let ok = 0;
    let failed = 0;
    const errors = new Map<string, number>();
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: callers }, async () => {
        while (performance.now() < deadline) {
          try {
            const response = await authorizedFetch(provider.resourceUrl);
            await response.arrayBuffer();
            if (response.status === 200) ok++;
            else failed++;
          } catch (error) {
            failed++;
            const code = (error as { code?: string }).code ?? String(error);
            errors.set(code, (errors.get(code) ?? 0) + 1);
          }
        }
      }),
    );
    const counters = await provider.counters();
    results[strategy] = {
      requests: ok + failed,
      failures: failed,
      errors: Object.fromEntries(errors),
      refreshes: counters.refreshes,
      expiriesSeen: rejected.size,
      invalidGrants: counters.invalidGrants,
      reusedRefreshTokens: counters.reusedRefreshTokens,
      revokedGrants: counters.revokedGrants,
      requestsPerSecond: Math.round((ok + failed) / seconds),
    };
    process.stderr.write(`${strategy}: ${JSON.stringify(results[strategy])}\n`);
  } finally {
    await provider.close();
  }
}
const onDemand = results['on-demand'] as {
  refreshes: number;
  expiriesSeen: number;
  failures: number;
  invalidGrants: number;
};
const beforeExpiry = results['before-expiry'] as { failures: number; invalidGrants: number };
await report('b3-rotation-storm', {
  seconds,
  callers,
  tokenLifetimeSeconds: 1,
  personality: 'strict',
  ...results,
  goal: 'on-demand: refreshes == expiries; zero invalid_grant and zero failures in both',
  pass:
    onDemand.refreshes === onDemand.expiriesSeen &&
    onDemand.failures === 0 &&
    onDemand.invalidGrants === 0 &&
    beforeExpiry.failures === 0 &&
    beforeExpiry.invalidGrants === 0,
});
