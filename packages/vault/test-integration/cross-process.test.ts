/**
 * Cross-process single-flight of the token endpoint (DESIGN.md Behaviour 3–4):
 * two vault processes on one SQLite file, then three on one PostgreSQL schema,
 * against the fake provider in its own process with the `strict` personality
 * (single-use refresh tokens; a reused one gets invalid_grant and revokes the
 * grant) and 1-second access tokens. 300 clients spread over the processes call
 * the provider's resource and, on a 401, ask their vault for a token with
 * `staleAccessToken` and retry once, for 12 s per case.
 *
 * Each expired token must be replaced exactly once across all processes
 * (provider refreshes == distinct tokens the resource rejected), with no
 * invalid_grant and no failed call, and the refreshes must really be shared
 * (more than one process did some). bench/v1-cross-process.ts runs the same for
 * 60 s. PostgreSQL missing makes the second test fail, not skip.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertPostgresReachable } from './support/children.ts';
import { type Backend, type CrossProcessResult, runCrossProcess } from './support/cross-process.ts';

const CLIENTS = 300;
const SECONDS = Number(process.env.TOKENWARDEN_XP_SECONDS ?? 12);
const MIN_EXPIRIES = 5;

function check(result: CrossProcessResult): void {
  const summary = JSON.stringify(result, null, 2);
  assert.equal(
    result.refreshes,
    result.expiries,
    `refreshes must equal expiries (each expired token replaced once):\n${summary}`,
  );
  assert.ok(result.expiries >= MIN_EXPIRIES, `expected ≥ ${MIN_EXPIRIES} expiries:\n${summary}`);
  assert.equal(result.invalidGrants, 0, `invalid_grant from the provider:\n${summary}`);
  assert.equal(result.reusedRefreshTokens, 0, `a refresh token was used twice:\n${summary}`);
  assert.equal(result.revokedGrants, 0, `the provider revoked the grant:\n${summary}`);
  assert.equal(result.failures, 0, `failed calls:\n${summary}`);
  assert.equal(result.replacedWhileValid, 0, `tokens refreshed while still valid:\n${summary}`);
  assert.equal(result.credentialStatus, 'active', summary);
  const byProcess = Object.values(result.refreshesByProcess);
  assert.equal(
    byProcess.reduce((a, b) => a + b, 0),
    result.refreshes,
    `the vaults' refreshed events must match the provider's refreshes:\n${summary}`,
  );
  assert.ok(
    byProcess.filter((n) => n > 0).length > 1,
    `the refreshes must be shared by more than one process:\n${summary}`,
  );
  assert.ok(
    result.tokenCallsByProcess.every((n) => n > 0),
    `every process must have served token calls:\n${summary}`,
  );
}

async function run(backend: Backend, processes: number): Promise<void> {
  const result = await runCrossProcess({
    backend,
    processes,
    clients: CLIENTS,
    seconds: SECONDS,
    tokenLifetimeSeconds: 1,
  });
  check(result);
}

describe('cross-process single-flight, strict provider, 1-second tokens', {
  timeout: 120_000,
}, () => {
  test(`2 vault processes on one SQLite file, ${CLIENTS} clients for ${SECONDS} s`, async () => {
    await run('sqlite', 2);
  });

  test(`3 vault processes on one PostgreSQL schema, ${CLIENTS} clients for ${SECONDS} s`, async () => {
    await assertPostgresReachable();
    await run('postgres', 3);
  });
});
