// The Outlook example against the fake provider from @tokenwarden/testing (on
// 127.0.0.1), through many expiries of one-second tokens, with a key file:
// readMail refreshes on every access and emits updateKeys (the seed's first
// method), readMailWithFetch lets this.fetch refresh. Both run on ONE credential
// in one session, interleaved, so each picks up the refresh token the other one
// rotated. After every message the key file must hold the newest refresh token
// the provider issued, and the provider must never see a spent one.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  codeExchangeRequest,
  createAuthorizationRequest,
  processCodeExchangeResponse,
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

const OUTLOOK = fileURLToPath(new URL('..', import.meta.url));
const REDIRECT = 'http://127.0.0.1:1/callback';
const ENV_NAMES = [
  'MSAPP_CLIENT_ID',
  'MSAPP_CLIENT_SECRET',
  'MSAPP_AUTH_URI',
  'MSAPP_TOKEN_URI',
  'MSGRAPH_URL',
];
/** How long each personality's run session lasts; tokens live one second. */
const RUN_MS = 4000;
/** Every this often, two readMail messages; this.fetch alone in between (two token lifetimes). */
const WINDOW_MS = 2000;

let folder: string;
const savedEnv = new Map(ENV_NAMES.map((name) => [name, process.env[name]]));
before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'tokenwarden-outlook-'));
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
  process.env.MSAPP_CLIENT_ID = 'demo-client';
  process.env.MSAPP_CLIENT_SECRET = 'demo-secret';
  process.env.MSAPP_AUTH_URI = provider.authorizationEndpoint;
  process.env.MSAPP_TOKEN_URI = provider.tokenEndpoint;
  process.env.MSGRAPH_URL = provider.url;
}

/** Connects once (authorization code + PKCE) with the auth client component.json declares. */
async function connectedKeyFile(component: Component, path: string): Promise<FileKeyStore> {
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
  await keys.importKeys(tokenSet.toStored().tokens);
  return keys;
}

/** The keys as the file on disk holds them now (not the store's memory). */
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

describe('outlook example: many expiries, one credential, a key file', () => {
  const personalities: Personality[] = ['microsoft', 'salesforce', 'strict'];
  for (const personality of personalities) {
    it(`${personality}: readMail and readMailWithFetch interleaved — no failed message, keys stored before the next one, no refresh token lost`, async (t) => {
      const provider = await startFakeProvider({
        personality,
        autoApprove: true,
        accessTokenLifetimeSeconds: 1,
        // Microsoft keeps a rotated-away refresh token usable for a while; none here,
        // so a reuse would show as invalid_grant.
        refreshGraceSeconds: 0,
        recordIssuedSecrets: true,
      });
      const keyFile = join(folder, `${personality}.json`);
      const logs: LogRecord[] = [];
      try {
        pointAt(provider);
        const component = await loadComponent(OUTLOOK);
        const keys = await connectedKeyFile(component, keyFile);
        provider.resetCounters();
        const problems: string[] = [];
        const session = new RunSession({
          component,
          keys,
          logger: (record) => logs.push(record),
          onEvent: (event) => {
            // `end` is handled only after the step's updateKeys were stored, and
            // before the next message starts: the file must be current by now.
            if (event.name !== 'end') return;
            const onDisk = keysOnDisk(keyFile);
            if (onDisk.refresh_token !== newestRefreshToken(provider))
              problems.push(
                `after message ${messages + 1}: the key file's refresh token is not the newest`,
              );
          },
        });
        let messages = 0;
        let selfRefreshing = 0;
        let forced = 0;
        const failed: string[] = [];
        const started = Date.now();
        try {
          let window = -1;
          let inWindow = 0;
          while (Date.now() - started < RUN_MS) {
            // Two messages that refresh by themselves, then two token lifetimes of
            // messages that leave it to this.fetch: the two ways alternate on one credential.
            const current = Math.floor((Date.now() - started) / WINDOW_MS);
            if (current !== window) {
              window = current;
              inWindow = 0;
            }
            const step = inWindow++ < 2 ? 'readMail' : 'readMailWithFetch';
            // Tokens expire by themselves every second; every seventh message of
            // this.fetch also finds its token expired early (a 401 it did not see
            // coming, unless it was about to refresh anyway), for more expiries.
            if (step === 'readMailWithFetch' && inWindow % 7 === 0) {
              provider.expireAccessTokens();
              forced++;
            }
            const result = await session.runStep(step, { body: { top: 2 } });
            messages++;
            if (step === 'readMail') selfRefreshing++;
            if (!result.ok) failed.push(`${step}: ${result.events.map(String).join(' ')}`);
            const data = result.events.find((e) => e.name === 'data')?.data as
              | { body: { count: number } }
              | undefined;
            if (result.ok) assert.equal(data?.body.count, 2);
            if (step === 'readMail' && result.ok) {
              const update = result.events.find((e) => e.name === 'updateKeys');
              const { oauth } = (update?.data ?? {}) as { oauth: Record<string, unknown> };
              // the whole token response, as the provider sent it
              assert.equal(typeof oauth.access_token, 'string');
              assert.equal(typeof oauth.scope, 'string');
              if (personality === 'salesforce') assert.equal(typeof oauth.instance_url, 'string');
              else assert.equal(typeof oauth.refresh_token, 'string');
            }
            await delay(100);
          }
        } finally {
          await keys.close();
        }

        const counters = provider.counters();
        t.diagnostic(
          `${personality}: ${messages} messages (${selfRefreshing} readMail), ${counters.refreshes} refreshes (${counters.refreshes - selfRefreshing} by this.fetch), ${counters.unauthorized} 401s (${forced} forced expiries), ${counters.invalidGrants} invalid_grant, ${counters.reusedRefreshTokens} reused refresh tokens`,
        );
        assert.deepEqual(failed, [], 'zero failed messages');
        assert.deepEqual(problems, []);
        assert.equal(counters.invalidGrants, 0);
        assert.equal(counters.reusedRefreshTokens, 0);
        assert.equal(counters.revokedGrants, 0);
        assert.ok(messages >= 25, `${messages} messages`);
        // every readMail refreshed; this.fetch refreshed across the expiries in between
        // (before expiry, or after a 401 where the answers carry no expires_in)
        assert.ok(counters.refreshes >= selfRefreshing + 4, `${counters.refreshes} refreshes`);
        // a 401 is answered by one refresh and a retry that succeeded
        assert.ok(counters.unauthorized <= counters.refreshes - selfRefreshing);

        // The stored keys still work: a last refresh with them succeeds.
        const stored = keysOnDisk(keyFile);
        assert.equal(stored.refresh_token, newestRefreshToken(provider));
        const last = await fetch(provider.tokenEndpoint, {
          method: 'POST',
          body: new URLSearchParams({
            grant_type: 'refresh_token',
            refresh_token: String(stored.refresh_token),
            scope: String(stored.scope),
            client_id: 'demo-client',
            client_secret: 'demo-secret',
          }),
        });
        assert.equal(last.status, 200, await last.text());
        // no token in any log line
        const printed = JSON.stringify(logs);
        for (const secret of provider.issuedSecrets())
          assert.ok(!printed.includes(secret), 'a token reached a log line');
      } finally {
        await provider.close();
      }
    });
  }
});
