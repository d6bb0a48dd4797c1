// The Salesforce example against the fake provider from @tokenwarden/testing (on
// 127.0.0.1), with a key file and one-second tokens: the component refreshes on
// demand after a 401 (the seed's second method), emits the whole refresh response
// with updateKeys, keeps instance_url, and retries once. Many messages in one run
// session, through many expiries; after every message the key file must hold the
// newest refresh token the provider issued.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  codeExchangeRequest,
  createAuthorizationRequest,
  processCodeExchangeResponse,
  type TokenResponse,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import {
  type Component,
  createComponentAuthClient,
  FileKeyStore,
  type LogRecord,
  loadComponent,
  RunSession,
} from '@tokenwarden/runtime';
import { type FakeProvider, type Personality, startFakeProvider } from '@tokenwarden/testing';

const SALESFORCE = fileURLToPath(new URL('..', import.meta.url));
const REDIRECT = 'http://127.0.0.1:1/callback';
const ENV_NAMES = [
  'SALESFORCE_KEY',
  'SALESFORCE_SECRET',
  'SALESFORCE_AUTH_URI',
  'SALESFORCE_TOKEN_URI',
];
/** How long each personality's run session lasts; tokens live one second. */
const RUN_MS = 4000;
const QUERY = { body: { query: 'SELECT Id, Name FROM Account' } };

let folder: string;
const savedEnv = new Map(ENV_NAMES.map((name) => [name, process.env[name]]));
before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'tokenwarden-salesforce-'));
});
after(async () => {
  for (const [name, value] of savedEnv) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  await rm(folder, { recursive: true, force: true });
});

/** The component's environment (what sailor gets from the platform), pointed at the fake provider. */
function pointAt(provider: FakeProvider): void {
  process.env.SALESFORCE_KEY = 'demo-client';
  process.env.SALESFORCE_SECRET = 'demo-secret';
  process.env.SALESFORCE_AUTH_URI = provider.authorizationEndpoint;
  process.env.SALESFORCE_TOKEN_URI = provider.tokenEndpoint;
}

/**
 * Connects once (authorization code + PKCE) with the auth client component.json
 * declares, and stores the token response in a key file. A provider that is not
 * Salesforce sends no instance_url: the connection gets the fake's Salesforce-like
 * instance, as a Salesforce connect would.
 */
async function connectedKeyFile(
  component: Component,
  provider: FakeProvider,
  path: string,
  extra: Partial<TokenResponse> = {},
): Promise<FileKeyStore> {
  const client = await createComponentAuthClient(component);
  const pending = await createAuthorizationRequest(client, { redirectUri: REDIRECT });
  const redirect = await fetch(pending.url, { redirect: 'manual' });
  const location = new URL(redirect.headers.get('location') ?? '');
  const parameters = validateAuthorizationResponse(client, location, pending.state);
  const tokenSet = await processCodeExchangeResponse(
    client,
    await codeExchangeRequest(client, parameters, pending),
  );
  const keys = await FileKeyStore.open(path);
  await keys.importKeys({
    instance_url: `${provider.url}/sf`,
    ...tokenSet.toStored().tokens,
    ...extra,
  });
  return keys;
}

function keysOnDisk(path: string): Record<string, unknown> {
  const contents = JSON.parse(readFileSync(path, 'utf8'));
  return contents.credentials.default.tokenSet.tokens;
}

/** The provider's own view: the refresh token it issued last (one grant per provider here). */
function newestRefreshToken(provider: FakeProvider): string | undefined {
  return provider
    .issuedSecrets()
    .filter((secret) => secret.startsWith('rt_'))
    .at(-1);
}

async function startProvider(personality: Personality): Promise<FakeProvider> {
  return startFakeProvider({
    personality,
    autoApprove: true,
    accessTokenLifetimeSeconds: 1,
    recordIssuedSecrets: true,
  });
}

describe('salesforce example: refresh after a 401, many expiries, a key file', () => {
  // Not `microsoft`: its token endpoint wants `scope` on every refresh, which
  // Salesforce's refresh request does not send (the outlook example covers it).
  const personalities: Personality[] = ['salesforce', 'strict'];
  for (const personality of personalities) {
    it(`${personality}: zero failed messages, one refresh per expiry, keys stored before the next message, no refresh token lost`, async (t) => {
      const provider = await startProvider(personality);
      const keyFile = join(folder, `${personality}.json`);
      const logs: LogRecord[] = [];
      try {
        pointAt(provider);
        const component = await loadComponent(SALESFORCE);
        const keys = await connectedKeyFile(component, provider, keyFile);
        const instanceUrl = keysOnDisk(keyFile).instance_url;
        provider.resetCounters();
        const problems: string[] = [];
        let messages = 0;
        const session = new RunSession({
          component,
          keys,
          logger: (record) => logs.push(record),
          onEvent: (event) => {
            if (event.name !== 'end') return;
            // handled after the step's updateKeys were stored, before the next message
            const onDisk = keysOnDisk(keyFile);
            if (onDisk.refresh_token !== newestRefreshToken(provider))
              problems.push(
                `message ${messages + 1}: the key file's refresh token is not the newest`,
              );
            if (onDisk.instance_url !== instanceUrl)
              problems.push(`message ${messages + 1}: instance_url changed or was lost`);
          },
        });
        const failed: string[] = [];
        let refreshingMessages = 0;
        let forced = 0;
        const started = Date.now();
        try {
          while (Date.now() - started < RUN_MS) {
            // Tokens expire by themselves every second; every twelfth message also
            // finds its token expired early (as after a password change), for more expiries.
            if (messages % 12 === 11) {
              provider.expireAccessTokens();
              forced++;
            }
            const result = await session.runStep('query', QUERY);
            messages++;
            const names = result.events.map((e) => e.name);
            if (!result.ok) failed.push(result.events.map(String).join(' '));
            else if (names.includes('updateKeys')) {
              refreshingMessages++;
              assert.deepEqual(names, ['updateKeys', 'data', 'end']);
              const { oauth } = (result.events[0]?.data ?? {}) as {
                oauth: Record<string, unknown>;
              };
              // the whole refresh response, as the provider sent it
              assert.equal(typeof oauth.access_token, 'string');
              if (personality === 'salesforce') {
                for (const member of ['instance_url', 'id', 'issued_at', 'signature'])
                  assert.equal(typeof oauth[member], 'string', member);
              } else {
                assert.equal(typeof oauth.refresh_token, 'string');
              }
            } else assert.deepEqual(names, ['data', 'end']);
            if (result.ok) {
              const data = result.events.find((e) => e.name === 'data')?.data as {
                body: { totalSize: number; records: { Name: string }[] };
              };
              assert.equal(data.body.records[0]?.Name, 'Acme');
            }
            await delay(100);
          }
        } finally {
          await keys.close();
        }

        const counters = provider.counters();
        t.diagnostic(
          `${personality}: ${messages} messages, ${refreshingMessages} expiries (${forced} forced) each refreshed after a 401, ${counters.refreshes} refreshes, ${counters.unauthorized} 401s, ${counters.invalidGrants} invalid_grant, ${counters.reusedRefreshTokens} reused refresh tokens`,
        );
        assert.deepEqual(failed, [], 'zero failed messages');
        assert.deepEqual(problems, []);
        assert.ok(messages >= 25, `${messages} messages`);
        assert.ok(refreshingMessages >= forced + 2, `${refreshingMessages} expiries`);
        // one 401 and one refresh per expiry; the retry never saw a 401
        assert.equal(counters.refreshes, refreshingMessages);
        assert.equal(counters.unauthorized, refreshingMessages);
        assert.equal(counters.invalidGrants, 0);
        assert.equal(counters.reusedRefreshTokens, 0);
        assert.equal(counters.revokedGrants, 0);
        assert.equal(keysOnDisk(keyFile).refresh_token, newestRefreshToken(provider));
        const printed = JSON.stringify(logs);
        for (const secret of provider.issuedSecrets())
          assert.ok(!printed.includes(secret), 'a token reached a log line');
      } finally {
        await provider.close();
      }
    });
  }

  it('retries once: a second 401 after the refresh is an error, and the new keys are stored anyway', async () => {
    const provider = await startProvider('strict');
    // An instance that answers 401 to everything; the strict provider's refresh
    // answer has no instance_url, so the retry goes there too.
    let instanceRequests = 0;
    const instance = createServer((_request, response) => {
      instanceRequests++;
      response.writeHead(401, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify([{ message: 'Session expired', errorCode: 'INVALID_SESSION_ID' }]),
      );
    });
    await new Promise<void>((resolve) => instance.listen(0, '127.0.0.1', resolve));
    const keyFile = join(folder, 'second-401.json');
    try {
      pointAt(provider);
      const component = await loadComponent(SALESFORCE);
      const keys = await connectedKeyFile(component, provider, keyFile, {
        instance_url: `http://127.0.0.1:${(instance.address() as AddressInfo).port}`,
      });
      provider.resetCounters();
      const session = new RunSession({ component, keys, logger: () => undefined });
      try {
        const result = await session.runStep('query', QUERY);
        assert.equal(result.ok, false);
        assert.deepEqual(
          result.events.map((e) => e.name),
          ['updateKeys', 'error', 'end'],
        );
        assert.match(
          String((result.events[1]?.data as Error | undefined)?.message),
          /401 .*again after the token was refreshed/,
        );
        assert.equal(instanceRequests, 2, 'the original request and one retry');
        assert.equal(provider.counters().refreshes, 1);
        assert.equal(keysOnDisk(keyFile).refresh_token, newestRefreshToken(provider));
      } finally {
        await keys.close();
      }
    } finally {
      instance.closeAllConnections();
      await new Promise((resolve) => instance.close(resolve));
      await provider.close();
    }
  });
});
