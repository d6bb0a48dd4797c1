/**
 * V1: cross-process single-flight of the vault's token endpoint. Two vault
 * processes on one SQLite file, then three on one PostgreSQL schema; the fake
 * provider in its own process with the `strict` personality (single-use refresh
 * tokens: a reused one revokes the grant) and 1-second access tokens; N clients
 * spread round-robin over the vaults call the provider's resource and, on a 401,
 * ask their vault for a token with `staleAccessToken` and retry once.
 *   node bench/v1-cross-process.ts [--seconds 60] [--clients 300]
 *
 * Expiries are the distinct access tokens the resource rejected; refreshes are
 * the provider's successful refresh grants. Goal: refreshes == expiries, zero
 * invalid_grant, zero failed calls, and the refreshes shared by the processes.
 * How it runs: packages/vault/test-integration/support/cross-process.ts.
 */
import {
  type CrossProcessResult,
  MARKDOWN_HEADER,
  markdownRow,
  runCrossProcess,
} from '../packages/vault/test-integration/support/cross-process.ts';
import { numberArg, report } from './support.ts';

const seconds = numberArg('seconds', 60);
const clients = numberArg('clients', 300);

const cases = [
  { backend: 'sqlite', processes: 2 },
  { backend: 'postgres', processes: 3 },
] as const;

const results: CrossProcessResult[] = [];
for (const { backend, processes } of cases) {
  const result = await runCrossProcess({
    backend,
    processes,
    clients,
    seconds,
    tokenLifetimeSeconds: 1,
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stderr.write(`${backend}: ${JSON.stringify(result)}\n`);
  results.push(result);
}

const passes = (r: CrossProcessResult) =>
  r.refreshes === r.expiries &&
  r.invalidGrants === 0 &&
  r.reusedRefreshTokens === 0 &&
  r.revokedGrants === 0 &&
  r.failures === 0 &&
  Object.values(r.refreshesByProcess).filter((n) => n > 0).length > 1;

await report('v1-cross-process', {
  seconds,
  clients,
  tokenLifetimeSeconds: 1,
  personality: 'strict',
  cases: Object.fromEntries(results.map((r) => [`${r.backend}-${r.processes}`, r])),
  goal: 'per case: refreshes == expiries, zero invalid_grant, zero failed calls, refreshes done by more than one process',
  pass: results.every(passes),
});
process.stdout.write(`\n${MARKDOWN_HEADER}\n${results.map(markdownRow).join('\n')}\n`);
process.exitCode = results.every(passes) ? 0 : 1;
