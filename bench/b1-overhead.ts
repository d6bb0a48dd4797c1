/**
 * B1: the cost of the authorized fetch on the hot path (valid token, no refresh),
 * against plain fetch with the same header, same local server, same run.
 * Rounds alternate plain / authorized so that drift hits both alike.
 *   node bench/b1-overhead.ts [--rounds 8] [--seconds 3] [--concurrency 16]
 */
import { MemoryTokenStore, TokenManager } from '@tokenwarden/oauth';
import { authClientFor, connect, numberArg, report, spawnFakeProvider } from './support.ts';

const rounds = numberArg('rounds', 8);
const seconds = numberArg('seconds', 3);
const concurrency = numberArg('concurrency', 16);

const provider = await spawnFakeProvider(['--personality', 'generic', '--token-lifetime', '86400']);
try {
  const client = await authClientFor(provider, 'oauth2');
  const tokenSet = await connect(client, provider.url);
  const manager = new TokenManager({ store: new MemoryTokenStore(), authClient: client });
  await manager.save('b1', tokenSet);
  const authorizedFetch = manager.authorizedFetch('b1');
  const header = `Bearer ${tokenSet.accessToken}`;
  const plainFetch = (url: string) => fetch(url, { headers: { authorization: header } });

  const measure = async (send: (url: string) => Promise<Response>): Promise<number> => {
    let count = 0;
    let failures = 0;
    const deadline = performance.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < deadline) {
          const response = await send(provider.resourceUrl);
          await response.arrayBuffer();
          if (response.status === 200) count++;
          else failures++;
        }
      }),
    );
    if (failures > 0) throw new Error(`${failures} requests failed`);
    return count / seconds;
  };

  await measure(plainFetch); // warm-up: JIT, sockets
  await measure(authorizedFetch);
  const plain: number[] = [];
  const authorized: number[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      plain.push(await measure(plainFetch));
      authorized.push(await measure(authorizedFetch));
    } else {
      authorized.push(await measure(authorizedFetch));
      plain.push(await measure(plainFetch));
    }
  }
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? 0;
  };
  const pairRatios = plain.map((p, i) => (authorized[i] ?? 0) / p);
  const refreshes = (await provider.counters()).refreshes;
  await report('b1-overhead', {
    rounds,
    secondsPerRound: seconds,
    concurrency,
    plainRequestsPerSecond: Math.round(sum(plain) / rounds),
    authorizedRequestsPerSecond: Math.round(sum(authorized) / rounds),
    ratio: Number((sum(authorized) / sum(plain)).toFixed(3)),
    medianPairRatio: Number(median(pairRatios).toFixed(3)),
    refreshesDuringRun: refreshes,
    goal: 'ratio >= 0.97',
  });
} finally {
  await provider.close();
}
