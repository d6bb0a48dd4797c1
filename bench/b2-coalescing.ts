/**
 * B2: 1,000 concurrent requests whose token the resource server has just revoked.
 * Every one gets a 401; compare-and-refresh must turn that into exactly one token
 * request, and every request must succeed on its retry.
 *   node bench/b2-coalescing.ts [--requests 1000]
 */
import { MemoryTokenStore, TokenManager } from '@tokenwarden/oauth';
import { Agent, setGlobalDispatcher } from 'undici';
import { authClientFor, connect, numberArg, report, spawnFakeProvider } from './support.ts';

const requests = numberArg('requests', 1000);
// Room for every request at once: the point is 1,000 requests in flight together.
setGlobalDispatcher(new Agent({ connections: requests + 10, pipelining: 1 }));

const provider = await spawnFakeProvider(['--personality', 'strict', '--token-lifetime', '3600']);
try {
  const client = await authClientFor(provider, 'oauth2');
  const manager = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
  await manager.save('b2', await connect(client, provider.url));
  const authorizedFetch = manager.authorizedFetch('b2', { strategy: 'before-expiry' });

  await provider.control('revoke-access-tokens', {});
  await provider.control('reset-counters', {});
  const started = performance.now();
  const outcomes = await Promise.allSettled(
    Array.from({ length: requests }, async () => {
      const response = await authorizedFetch(provider.resourceUrl);
      await response.arrayBuffer();
      return response.status;
    }),
  );
  const elapsedMs = performance.now() - started;
  const successes = outcomes.filter((o) => o.status === 'fulfilled' && o.value === 200).length;
  const counters = await provider.counters();
  await report('b2-coalescing', {
    requests,
    successes,
    failures: requests - successes,
    tokenRequests: counters.tokenRequests.refresh_token,
    invalidGrants: counters.invalidGrants,
    unauthorizedServed: counters.unauthorized,
    elapsedMs: Math.round(elapsedMs),
    goal: 'exactly 1 token request, every request succeeds',
    pass: counters.tokenRequests.refresh_token === 1 && successes === requests,
  });
} finally {
  await provider.close();
}
