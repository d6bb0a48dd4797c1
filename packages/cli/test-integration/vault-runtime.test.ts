// Components run against a REAL vault (the vault harness: the vault and a fake
// provider in this process, SQLite) with the `strict` personality: single-use
// refresh tokens, and a reused one revokes the whole grant. Ten runs of the
// outlook example's this.fetch action share ONE credential through several
// expiries; the vault must be the only refresher, once per expiry.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  type Component,
  type LogRecord,
  loadComponent,
  RunSession,
  VaultKeyStore,
} from '@tokenwarden/runtime';
import {
  startTestVault,
  type TestVault,
} from '../../vault/test-integration/support/vault-harness.ts';
import { EXIT } from '../src/errors.ts';
import { BAD_COMPONENTS, brokenComponent, OUTLOOK } from '../test/support/bad-components.ts';
import { type CliResult, runCli } from '../test/support/run-cli.ts';

const WORKERS = 10;
/** How long the ten runs go on; tokens live one second. */
const RUN_MS = 4000;
/** Besides the natural expiries, every access token is expired this often (a 401 nobody saw coming). */
const FORCED_EXPIRY_MS = 900;

let tv: TestVault;
let credentialId: string;
let env: Record<string, string>;
let component: Component;
let folder: string;
const saved = new Map<string, string | undefined>();

before(async () => {
  tv = await startTestVault({ personality: 'strict', accessTokenLifetimeSeconds: 1 });
  credentialId = await tv.connectAccount();
  env = {
    MSAPP_CLIENT_ID: tv.clientId,
    MSAPP_CLIENT_SECRET: tv.clientSecret,
    MSAPP_AUTH_URI: tv.provider.authorizationEndpoint,
    MSAPP_TOKEN_URI: tv.provider.tokenEndpoint,
    MSGRAPH_URL: tv.provider.url,
  };
  for (const [name, value] of Object.entries(env)) {
    saved.set(name, process.env[name]);
    process.env[name] = value;
  }
  component = await loadComponent(OUTLOOK);
  folder = await mkdtemp(join(tmpdir(), 'tokenwarden-cli-vault-'));
});
after(async () => {
  for (const [name, value] of saved) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(folder, { recursive: true, force: true });
  await tv.close(); // also fails when a vault log line holds a secret
});

/** The provider's own view: the refresh token it issued last (one grant here). */
function newestRefreshToken(): string | undefined {
  return tv.provider
    .issuedSecrets()
    .filter((secret) => secret.startsWith('rt_'))
    .at(-1);
}

function assertNoSecrets(text: string): void {
  for (const secret of tv.provider.issuedSecrets())
    assert.ok(!text.includes(secret), 'a provider-issued token was printed');
  assert.ok(!text.includes(tv.adminKey), 'the API key was printed');
  assert.ok(!text.includes(tv.clientSecret), 'the client secret was printed');
}

describe('ten concurrent runs on one credential through the vault (strict personality)', () => {
  it('in-process: ten run sessions, each with its own vault client, through several expiries — every message succeeds, zero invalid_grant, one refresh per expiry', async (t) => {
    tv.provider.resetCounters();
    const logs: LogRecord[] = [];
    const failed: string[] = [];
    const started = Date.now();
    let forced = 0;
    const forcing = setInterval(() => {
      tv.provider.expireAccessTokens();
      forced++;
    }, FORCED_EXPIRY_MS);
    let counts: number[];
    try {
      counts = await Promise.all(
        Array.from({ length: WORKERS }, async (_, worker) => {
          const session = new RunSession({
            component,
            keys: new VaultKeyStore({ url: tv.url, apiKey: tv.adminKey, credentialId }),
            logger: (record) => logs.push(record),
          });
          let messages = 0;
          while (Date.now() - started < RUN_MS) {
            const result = await session.runStep('readMailWithFetch', { body: { top: 2 } });
            messages++;
            if (!result.ok) failed.push(`worker ${worker}: ${result.events.map(String).join(' ')}`);
            else {
              const data = result.events[0]?.data as { body: { count: number } } | undefined;
              assert.equal(data?.body.count, 2);
            }
            await delay(50);
          }
          return messages;
        }),
      );
    } finally {
      clearInterval(forcing);
    }
    const messages = counts.reduce((sum, count) => sum + count, 0);
    const counters = tv.provider.counters();
    t.diagnostic(
      `${WORKERS} runs, ${messages} messages in ${Date.now() - started} ms, ${forced} forced expiries besides the 1-s ones: ${counters.refreshes} refreshes, ${counters.unauthorized} 401s, ${counters.invalidGrants} invalid_grant, ${counters.reusedRefreshTokens} reused refresh tokens`,
    );
    assert.deepEqual(failed, [], 'every run succeeded');
    assert.equal(counters.invalidGrants, 0);
    assert.equal(counters.reusedRefreshTokens, 0);
    assert.equal(counters.revokedGrants, 0);
    assert.ok(
      counts.every((count) => count >= 5),
      `messages per run: ${counts.join(', ')}`,
    );
    assert.ok(counters.refreshes >= 4, `${counters.refreshes} refreshes: several expiries`);
    // single-flight: ten runs share each refresh (about two per token lifetime, as
    // the vault caps the margin at half of it, plus the forced expiries)
    const ceiling = Math.ceil(RUN_MS / 500) + forced + 3;
    assert.ok(counters.refreshes <= ceiling, `${counters.refreshes} refreshes > ${ceiling}`);
    // the vault holds the newest refresh token the provider issued, and the grant is alive
    assert.equal((await tv.tokensOf(credentialId)).refreshToken, newestRefreshToken());
    const answer = await tv.api('GET', `/v1/credentials/${credentialId}`);
    assert.equal(answer.json.status, 'active');
    assertNoSecrets(JSON.stringify(logs));
  });

  it('spawned: ten "tokenwarden run … --credential" processes at once after an expiry — all exit 0, no token printed, zero invalid_grant', async (t) => {
    tv.provider.expireAccessTokens();
    tv.provider.resetCounters();
    const cliEnv = { ...env, TOKENWARDEN_URL: tv.url, TOKENWARDEN_API_KEY: tv.adminKey };
    const results = await Promise.all(
      Array.from({ length: WORKERS }, () =>
        runCli(['run', OUTLOOK, 'readMailWithFetch', '--credential', credentialId], {
          env: cliEnv,
          timeoutMs: 60_000,
        }),
      ),
    );
    for (const result of results) {
      assert.equal(result.code, EXIT.ok, result.stderr);
      const events = result.stdout
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as { event: string });
      assert.deepEqual(
        events.map((e) => e.event),
        ['data', 'end'],
      );
      assertNoSecrets(`${result.stdout}\n${result.stderr}`);
    }
    const counters = tv.provider.counters();
    t.diagnostic(
      `${WORKERS} processes: ${counters.refreshes} refreshes, ${counters.invalidGrants} invalid_grant`,
    );
    assert.equal(counters.invalidGrants, 0);
    assert.equal(counters.reusedRefreshTokens, 0);
    assert.ok(counters.refreshes >= 1);
    assert.equal((await tv.tokensOf(credentialId)).refreshToken, newestRefreshToken());
  });

  it('the self-refreshing action cannot race through the vault: it gets no refresh token, fails clearly, and the grant survives', async () => {
    tv.provider.resetCounters();
    const result: CliResult = await runCli(
      ['run', OUTLOOK, 'readMail', '--credential', credentialId],
      { env: { ...env, TOKENWARDEN_URL: tv.url, TOKENWARDEN_API_KEY: tv.adminKey } },
    );
    assert.equal(result.code, EXIT.failure, result.stderr);
    assert.match(result.stderr, /cfg\.oauth has no refresh_token/);
    // (the vault may have refreshed for the run's fresh access token; the component could not)
    assert.equal(tv.provider.counters().invalidGrants, 0);
    assert.equal((await tv.api('GET', `/v1/credentials/${credentialId}`)).json.status, 'active');
    assertNoSecrets(`${result.stdout}\n${result.stderr}`);
  });
});

describe('bad components against the vault: exit 2, the credential untouched', () => {
  // A vault of its own with hour-long tokens, so that its background refresher
  // has nothing to do and any change to the credential would be the run's.
  let quiet: TestVault;
  let quietCredential: string;
  before(async () => {
    quiet = await startTestVault({ personality: 'strict' });
    quietCredential = await quiet.connectAccount();
  });
  after(() => quiet.close());

  it('each validation problem: "tokenwarden run … --credential" exits 2 naming the file and field; the vault credential and the provider see nothing', async () => {
    const before = (await quiet.tokensOf(quietCredential)).toStored();
    const metadata = (await quiet.api('GET', `/v1/credentials/${quietCredential}`)).json;
    const counters = quiet.provider.counters();
    const dirs = await Promise.all(
      BAD_COMPONENTS.map(([name, edit]) => brokenComponent(folder, name, edit)),
    );
    const results = await Promise.all(
      dirs.map((dir) =>
        runCli(['run', dir, 'readMailWithFetch', '--credential', quietCredential], {
          env: {
            ...env,
            MSAPP_CLIENT_ID: quiet.clientId,
            MSAPP_CLIENT_SECRET: quiet.clientSecret,
            TOKENWARDEN_URL: quiet.url,
            TOKENWARDEN_API_KEY: quiet.adminKey,
          },
        }),
      ),
    );
    for (const [index, result] of results.entries()) {
      const [name, , problem] = BAD_COMPONENTS[index] as (typeof BAD_COMPONENTS)[number];
      assert.equal(result.code, EXIT.usage, `${name}: ${result.stderr}`);
      assert.match(result.stderr, problem, name);
      assert.ok(result.stderr.includes(`${dirs[index]}/component.json: `), name);
      assert.equal(result.stdout, '');
    }
    assert.deepEqual((await quiet.tokensOf(quietCredential)).toStored(), before);
    const after = (await quiet.api('GET', `/v1/credentials/${quietCredential}`)).json;
    assert.equal(after.updatedAt, metadata.updatedAt);
    assert.equal(after.refreshCount, metadata.refreshCount);
    assert.deepEqual(quiet.provider.counters(), counters, 'the provider saw no request');
  });
});
