// this.fetch and updateKeys against the fake provider from @tokenwarden/testing,
// which listens on 127.0.0.1 only: the offline path end to end (key file,
// component.json's oauth2 block, a TokenManager) with single-use refresh tokens.
import assert from 'node:assert/strict';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  codeExchangeRequest,
  createAuthorizationRequest,
  processCodeExchangeResponse,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import { createComponentAuthClient } from '../src/auth-client.ts';
import { type Component, loadComponent } from '../src/component.ts';
import { FileKeyStore } from '../src/file-key-store.ts';
import { runStep } from '../src/run.ts';
import { RunSession } from '../src/session.ts';
import { contract, dataAt, FIXTURES, memorySink, tempFolder } from './support/helpers.ts';

const REDIRECT = 'http://127.0.0.1:1/callback';

let provider: FakeProvider;
let component: Component;

before(async () => {
  provider = await startFakeProvider({ personality: 'strict', autoApprove: true });
  component = await contract({
    FIXTURE_CLIENT_ID: 'demo-client',
    FIXTURE_CLIENT_SECRET: 'demo-secret',
    FIXTURE_PROVIDER: provider.url,
  });
});
after(() => provider.close());

/** Connects once (authorization code + PKCE) with the auth client component.json declares. */
async function connectedKeyFile(from: Component = component): Promise<FileKeyStore> {
  const client = await createComponentAuthClient(from);
  const pending = await createAuthorizationRequest(client, { redirectUri: REDIRECT });
  const redirect = await fetch(pending.url, { redirect: 'manual' });
  const location = new URL(redirect.headers.get('location') ?? '');
  const parameters = validateAuthorizationResponse(client, location, pending.state);
  const tokenSet = await processCodeExchangeResponse(
    client,
    await codeExchangeRequest(client, parameters, pending),
  );
  const keys = await FileKeyStore.open(join(await tempFolder(), 'keys.json'));
  await keys.importKeys(tokenSet.toStored().tokens);
  return keys;
}

describe('offline: a key file and component.json oauth2 block, strict single-use refresh tokens', () => {
  it('this.fetch refreshes after each expiry, once for ten concurrent steps; no invalid_grant; the rotated keys are stored and in cfg', async () => {
    const keys = await connectedKeyFile();
    provider.resetCounters();
    const session = new RunSession({
      component,
      keys,
      strategy: 'on-demand',
      concurrency: 'parallel',
      logger: memorySink().sink,
    });
    const msg = { body: { url: provider.resourceUrl } };
    try {
      for (let expiry = 1; expiry <= 3; expiry++) {
        provider.expireAccessTokens();
        const results = await Promise.all(
          Array.from({ length: 10 }, () => session.runStep('fetch', msg)),
        );
        for (const result of results) {
          assert.equal(result.ok, true, JSON.stringify(result.events));
          assert.equal(dataAt<{ body: { status: number } }>(result, 0).body.status, 200);
        }
        assert.equal(provider.counters().refreshes, expiry);
      }
      assert.equal(provider.counters().invalidGrants, 0);
      assert.equal(provider.counters().revokedGrants, 0);
      const stored = await keys.readKeys();
      const cfg = session.cfg.oauth as Record<string, unknown>;
      assert.equal(cfg.refresh_token, stored.refresh_token);
      assert.equal(cfg.access_token, stored.access_token);
    } finally {
      await keys.close();
    }
  });

  it('a component that refreshes by itself: each updateKeys is stored and in the next cfg, so the single-use token is never reused', async () => {
    const keys = await connectedKeyFile();
    provider.resetCounters();
    const session = new RunSession({ component, keys, logger: memorySink().sink });
    const msg = {
      body: {
        tokenUrl: provider.tokenEndpoint,
        clientId: 'demo-client',
        clientSecret: 'demo-secret',
        resourceUrl: provider.resourceUrl,
      },
    };
    try {
      // concurrent calls on one session run one at a time (serial, the default)
      const results = await Promise.all(
        Array.from({ length: 5 }, () => session.runStep('selfRefresh', msg)),
      );
      for (const result of results) {
        assert.deepEqual(
          result.events.map((e) => e.name),
          ['updateKeys', 'data', 'end'],
          JSON.stringify(result.events),
        );
        assert.deepEqual(result.events[1]?.data, { body: { status: 200 } });
      }
      assert.equal(provider.counters().refreshes, 5);
      assert.equal(provider.counters().invalidGrants, 0);
      const stored = await keys.readKeys();
      assert.equal(
        (session.cfg.oauth as { refresh_token: string }).refresh_token,
        stored.refresh_token,
      );
    } finally {
      await keys.close();
    }
  });

  it("regression, sailor's stale cfg: the same cfg for the next message reuses a spent refresh token and the grant is revoked", async () => {
    const keys = await connectedKeyFile();
    const cfg = { oauth: await keys.readKeys() };
    await keys.close();
    provider.resetCounters();
    const msg = {
      body: {
        tokenUrl: provider.tokenEndpoint,
        clientId: 'demo-client',
        clientSecret: 'demo-secret',
        resourceUrl: provider.resourceUrl,
      },
    };
    const logger = memorySink().sink;
    // what sailor does: every message starts from the step's configuration as first stored
    const first = await runStep({ component, step: 'selfRefresh', msg, cfg, logger });
    const second = await runStep({ component, step: 'selfRefresh', msg, cfg, logger });
    assert.equal(first.events.filter((e) => e.name === 'data').length, 1);
    assert.match(String(dataAt<Error>(second, 0).message), /invalid_grant/);
    assert.equal(provider.counters().reusedRefreshTokens, 1);
    assert.equal(provider.counters().revokedGrants, 1);
  });

  it('the provider named in the oauth2 block applies its quirks: Microsoft wants scope on refresh', async () => {
    const microsoft = await startFakeProvider({ personality: 'microsoft', autoApprove: true });
    const dir = await tempFolder();
    await writeFile(join(dir, 'package.json'), '{"private": true}');
    await copyFile(join(FIXTURES, 'contract/lib/actions/fetch.js'), join(dir, 'fetch.js'));
    const oauth2 = {
      client_id: 'demo-client',
      client_secret: 'demo-secret',
      auth_uri: `${microsoft.url}/authorize`,
      token_uri: `${microsoft.url}/token`,
      scopes: ['profile'],
    };
    const write = (block: Record<string, unknown>) =>
      writeFile(
        join(dir, 'component.json'),
        JSON.stringify({
          title: 'Graph-like',
          description: 'd',
          credentials: {
            fields: { oauth: { label: 'Account', viewClass: 'OAuthFieldView' } },
            oauth2: block,
          },
          actions: { fetch: { title: 'fetch', main: './fetch.js' } },
        }),
      );
    const run = async (block: Record<string, unknown>) => {
      await write(block);
      const graph = await loadComponent(dir);
      const keys = await connectedKeyFile(graph);
      try {
        microsoft.expireAccessTokens();
        return await runStep({
          component: graph,
          step: 'fetch',
          msg: { body: { url: microsoft.resourceUrl } },
          keys,
          logger: memorySink().sink,
        });
      } finally {
        await keys.close();
      }
    };
    try {
      const generic = await run(oauth2);
      assert.equal(generic.ok, false, 'the generic profile sends no scope, and Microsoft refuses');
      assert.match(dataAt<Error>(generic, 0).message, /invalid_request|rejected/);
      const withProvider = await run({ ...oauth2, provider: 'microsoft' });
      assert.equal(withProvider.ok, true, JSON.stringify(withProvider.events));
      assert.equal(dataAt<{ body: { status: number } }>(withProvider, 0).body.status, 200);
    } finally {
      await microsoft.close();
    }
  });
});
