// `tokenwarden run` and `tokenwarden verify` end to end: the command spawned as a
// user would, the example components, a key file, and the fake provider from
// @tokenwarden/testing on 127.0.0.1 (strict: single-use refresh tokens).
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  codeExchangeRequest,
  createAuthorizationRequest,
  processCodeExchangeResponse,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import { createComponentAuthClient, FileKeyStore, loadComponent } from '@tokenwarden/runtime';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import { EXIT } from '../src/errors.ts';
import { type CliResult, runCli } from '../test/support/run-cli.ts';
import { tempFolder } from './support/folders.ts';

const EXAMPLES = fileURLToPath(new URL('../../../examples/', import.meta.url));
const OUTLOOK = join(EXAMPLES, 'outlook');
const SALESFORCE = join(EXAMPLES, 'salesforce');

let provider: FakeProvider;
let env: Record<string, string>;

before(async () => {
  provider = await startFakeProvider({
    personality: 'strict',
    autoApprove: true,
    recordIssuedSecrets: true,
  });
  env = {
    MSAPP_CLIENT_ID: 'demo-client',
    MSAPP_CLIENT_SECRET: 'demo-secret',
    MSAPP_AUTH_URI: provider.authorizationEndpoint,
    MSAPP_TOKEN_URI: provider.tokenEndpoint,
    MSGRAPH_URL: provider.url,
    SALESFORCE_KEY: 'demo-client',
    SALESFORCE_SECRET: 'demo-secret',
    SALESFORCE_AUTH_URI: provider.authorizationEndpoint,
    SALESFORCE_TOKEN_URI: provider.tokenEndpoint,
  };
});
after(() => provider.close());

/** Connects an account (authorization code + PKCE) and writes its tokens to a new key file. */
async function connectedKeyFile(componentDir: string, extra: Record<string, unknown> = {}) {
  const component = await loadComponent(componentDir, { env });
  const client = await createComponentAuthClient(component);
  const pending = await createAuthorizationRequest(client, {
    redirectUri: 'http://127.0.0.1:1/callback',
  });
  const redirect = await fetch(pending.url, { redirect: 'manual' });
  const location = new URL(redirect.headers.get('location') ?? '');
  const parameters = validateAuthorizationResponse(client, location, pending.state);
  const tokenSet = await processCodeExchangeResponse(
    client,
    await codeExchangeRequest(client, parameters, pending),
  );
  const path = join(await tempFolder(), 'keys.json');
  const keys = await FileKeyStore.open(path);
  await keys.importKeys({ ...tokenSet.toStored().tokens, ...extra });
  await keys.close();
  return path;
}

async function storedKeys(path: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path, 'utf8')).credentials.default.tokenSet.tokens;
}

function newestRefreshToken(): string | undefined {
  return provider
    .issuedSecrets()
    .filter((secret) => secret.startsWith('rt_'))
    .at(-1);
}

interface EventLine {
  seq: number;
  event: string;
  data?: unknown;
  origin: string;
  at: string;
}

/** stdout as the events it printed: every line one JSON object. */
function eventLines(result: CliResult): EventLine[] {
  const lines = result.stdout.split('\n').filter((line) => line !== '');
  return lines.map((line) => JSON.parse(line) as EventLine);
}

/** Neither stdout nor stderr holds a code, a token or the client secret. */
function assertNoSecrets(result: CliResult): void {
  const printed = `${result.stdout}\n${result.stderr}`;
  for (const secret of provider.issuedSecrets())
    assert.ok(!printed.includes(secret), 'a provider-issued token was printed');
  assert.ok(!printed.includes('demo-secret'), 'the client secret was printed');
}

describe('tokenwarden run', () => {
  it('prints every event as one JSON line with no token, exit 0; this.fetch refreshes an expired token into the key file', async () => {
    const keyFile = await connectedKeyFile(OUTLOOK);
    provider.expireAccessTokens();
    const before = provider.counters().refreshes;
    const result = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--keys', keyFile], {
      env,
    });
    assert.equal(result.code, EXIT.ok, result.stderr);
    const events = eventLines(result);
    assert.deepEqual(
      events.map((e) => [e.seq, e.event, e.origin]),
      [
        [1, 'data', 'runtime'],
        [2, 'end', 'runtime'],
      ],
    );
    const data = events[0]?.data as { body: { count: number; messages: { subject: string }[] } };
    assert.equal(data.body.count, 2);
    assert.equal(data.body.messages[0]?.subject, 'Quarterly report');
    assert.equal(provider.counters().refreshes, before + 1);
    assert.equal(provider.counters().invalidGrants, 0);
    assert.equal((await storedKeys(keyFile)).refresh_token, newestRefreshToken());
    assertNoSecrets(result);
  });

  it('a component that refreshes by itself: updateKeys is printed redacted and stored in the key file; --msg - reads stdin', async () => {
    const keyFile = await connectedKeyFile(OUTLOOK);
    const result = await runCli(['run', OUTLOOK, 'readMail', '--keys', keyFile, '--msg', '-'], {
      env,
      stdin: JSON.stringify({ body: { top: 1 } }),
    });
    assert.equal(result.code, EXIT.ok, result.stderr);
    const events = eventLines(result);
    assert.deepEqual(
      events.map((e) => e.event),
      ['updateKeys', 'data', 'end'],
    );
    const { oauth } = (events[0]?.data ?? {}) as { oauth: Record<string, unknown> };
    assert.equal(oauth.access_token, '[redacted]');
    assert.equal(oauth.refresh_token, '[redacted]');
    assert.equal(oauth.token_type, 'Bearer');
    assert.equal((await storedKeys(keyFile)).refresh_token, newestRefreshToken());
    // the component's log lines went to stderr, as JSON lines
    assert.match(result.stderr, /"msg":"Refreshing an OAuth Token"/);
    assertNoSecrets(result);

    // the next run starts from the stored keys: the single-use token is never reused
    const again = await runCli(['run', OUTLOOK, 'readMail', '--keys', keyFile], { env });
    assert.equal(again.code, EXIT.ok, again.stderr);
    assert.equal(provider.counters().reusedRefreshTokens, 0);
    assertNoSecrets(again);
  });

  it('salesforce: --cfg and --snapshot files; refresh after a 401 keeps instance_url', async () => {
    const keyFile = await connectedKeyFile(SALESFORCE, { instance_url: `${provider.url}/sf` });
    const folder = await tempFolder();
    const cfg = join(folder, 'cfg.json');
    const snapshot = join(folder, 'snapshot.json');
    await writeFile(cfg, JSON.stringify({ query: 'SELECT Name FROM Account', apiVersion: '59.0' }));
    await writeFile(snapshot, JSON.stringify({ lastRun: 'never' }));
    provider.expireAccessTokens();
    const result = await runCli(
      ['run', SALESFORCE, 'query', '--keys', keyFile, '--cfg', cfg, '--snapshot', snapshot],
      { env },
    );
    assert.equal(result.code, EXIT.ok, result.stderr);
    const events = eventLines(result);
    assert.deepEqual(
      events.map((e) => e.event),
      ['updateKeys', 'data', 'end'],
    );
    const data = events[1]?.data as { body: { records: { Name: string }[] } };
    assert.equal(data.body.records[0]?.Name, 'Acme');
    const stored = await storedKeys(keyFile);
    assert.equal(stored.instance_url, `${provider.url}/sf`);
    assert.equal(stored.refresh_token, newestRefreshToken());
    assertNoSecrets(result);
  });

  it('exit 5 when the grant is gone and this.fetch cannot refresh (reauth_required); exit 1 when the component itself fails', async () => {
    const keyFile = await connectedKeyFile(OUTLOOK);
    const { refresh_token } = await storedKeys(keyFile);
    assert.ok(provider.revokeGrant(String(refresh_token)));
    const before = await readFile(keyFile);

    const viaFetch = await runCli(['run', OUTLOOK, 'readMailWithFetch', '--keys', keyFile], {
      env,
    });
    assert.equal(viaFetch.code, EXIT.reauthRequired, viaFetch.stderr);
    const events = eventLines(viaFetch);
    assert.deepEqual(
      events.map((e) => e.event),
      ['error', 'end'],
    );
    assert.equal((events[0]?.data as { code?: string } | undefined)?.code, 'reauth_required');
    assert.match(viaFetch.stderr, /the step emitted an error \(reauth_required\)/);
    assertNoSecrets(viaFetch);

    const selfRefreshing = await runCli(['run', OUTLOOK, 'readMail', '--keys', keyFile], { env });
    assert.equal(selfRefreshing.code, EXIT.failure, selfRefreshing.stderr);
    assert.deepEqual(
      eventLines(selfRefreshing).map((e) => e.event),
      ['error', 'end'],
    );
    assert.match(selfRefreshing.stderr, /refreshing the token failed: HTTP 400: invalid_grant/);
    assertNoSecrets(selfRefreshing);
    assert.deepEqual(await readFile(keyFile), before, 'nothing was stored');
  });

  it('usage errors exit 2 before the key file is opened', async () => {
    const keyFile = await connectedKeyFile(OUTLOOK);
    const before = await readFile(keyFile);
    const cases: [string[], RegExp][] = [
      [
        ['run', OUTLOOK, 'sendMail', '--keys', keyFile],
        /declares no action or trigger "sendMail"; it has: readMail, readMailWithFetch/,
      ],
      [['run', OUTLOOK, 'readMail', '--keys', keyFile, '--credential', 'cr_1'], /not both/],
      [
        ['run', OUTLOOK, 'readMail', '--keys', keyFile, '--strategy', 'sometimes'],
        /--strategy must be one of/,
      ],
      [
        ['run', OUTLOOK, 'readMail', '--keys', keyFile, '--msg', join(OUTLOOK, 'nope.json')],
        /--msg: cannot read/,
      ],
      [['run', OUTLOOK], /missing <action-or-trigger>/],
      [['verify', OUTLOOK], /give --credential <id> .* or --keys <file>/],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args, { env })));
    for (const [index, result] of results.entries()) {
      const [args, pattern] = cases[index] as [string[], RegExp];
      assert.equal(result.code, EXIT.usage, `${args.join(' ')}: ${result.stderr}`);
      assert.equal(result.stdout, '');
      assert.match(result.stderr, pattern);
    }
    assert.deepEqual(await readFile(keyFile), before);
  });
});

describe('tokenwarden verify', () => {
  it('exit 0 and {"verified":true} for a working credential, refreshing it after a 401; exit 1 once the grant is gone', async () => {
    const keyFile = await connectedKeyFile(SALESFORCE, { instance_url: `${provider.url}/sf` });
    provider.expireAccessTokens();
    const verified = await runCli(['verify', SALESFORCE, '--keys', keyFile], { env });
    assert.equal(verified.code, EXIT.ok, verified.stderr);
    assert.deepEqual(JSON.parse(verified.stdout), { verified: true });
    assert.equal((await storedKeys(keyFile)).refresh_token, newestRefreshToken());
    assertNoSecrets(verified);

    assert.ok(provider.revokeGrant(String((await storedKeys(keyFile)).refresh_token)));
    const refused = await runCli(['verify', OUTLOOK, '--keys', keyFile], { env });
    assert.equal(refused.code, EXIT.failure, refused.stderr);
    const answer = JSON.parse(refused.stdout) as { verified: boolean; reason: string };
    assert.equal(answer.verified, false);
    assert.match(answer.reason, /reauthori|invalid_grant|revoked/i);
    assert.match(refused.stderr, /not verified/);
    assertNoSecrets(refused);
  });
});
