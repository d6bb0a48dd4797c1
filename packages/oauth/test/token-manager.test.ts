import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { TokenEndpointError, TokenwardenError } from '../src/errors.ts';
import type { ProviderProfile } from '../src/profile.ts';
import type { RetryPolicy } from '../src/retry.ts';
import type { TokenStore } from '../src/store.ts';
import { MemoryTokenStore } from '../src/store.ts';
import type { TokenChangeReason, TokensChangedEvent } from '../src/token-manager.ts';
import { TokenManager } from '../src/token-manager.ts';
import { TokenSet } from '../src/token-set.ts';
import {
  type FakeTokenEndpoint,
  fakeTokenEndpoint,
  jsonResponse,
  rotatingTokens,
  sleep,
  storedTokens,
  type TokenEndpointAnswer,
  type TokenEndpointCall,
  type TokenFields,
  testClient,
  testProfile,
} from './support/runtime-fakes.ts';

/** The fixed start of the manager's clock, in ms. Far from the real time on purpose. */
const T0 = Date.UTC(2031, 0, 1);
const CREDENTIAL = 'cred-A';

interface SetupOptions {
  /** The stored credential's token response (received at T0); default access-0 / refresh-0, one hour. */
  tokens?: TokenFields;
  answer?: TokenEndpointAnswer;
  delayMs?: number;
  onCall?: (call: TokenEndpointCall) => void;
  onTokens?: (event: TokensChangedEvent) => void | Promise<void>;
  wrapStore?: (inner: MemoryTokenStore) => TokenStore;
  profile?: ProviderProfile;
  clientSecret?: string;
  retry?: RetryPolicy;
}

interface Setup {
  manager: TokenManager;
  store: MemoryTokenStore;
  endpoint: FakeTokenEndpoint;
  clock: { now: number };
  /** Every onTokens event, in order. */
  events: TokensChangedEvent[];
  /** Every backoff the retry loop waited for (it never really sleeps). */
  sleeps: number[];
}

async function setup(options: SetupOptions = {}): Promise<Setup> {
  const store = new MemoryTokenStore();
  await store.compareAndSet(
    CREDENTIAL,
    null,
    storedTokens(options.tokens ?? { access_token: 'access-0', refresh_token: 'refresh-0' }, T0),
  );
  const clock = { now: T0 };
  const events: TokensChangedEvent[] = [];
  const sleeps: number[] = [];
  const endpoint = fakeTokenEndpoint(options.answer ?? rotatingTokens(), {
    ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }),
    ...(options.onCall === undefined ? {} : { onCall: options.onCall }),
  });
  const manager = new TokenManager({
    store: options.wrapStore?.(store) ?? store,
    authClient: testClient(options.profile ?? testProfile(), options.clientSecret),
    now: () => clock.now,
    refresh: {
      fetch: endpoint.fetch,
      retry: {
        random: () => 0.5,
        sleep: async (ms) => {
          sleeps.push(ms);
        },
        ...options.retry,
      },
    },
    onTokens: async (event) => {
      events.push(event);
      await options.onTokens?.(event);
    },
  });
  return { manager, store, endpoint, clock, events, sleeps };
}

async function storedAccessToken(store: TokenStore, id = CREDENTIAL): Promise<string | undefined> {
  return (await store.load(id))?.tokenSet.tokens.access_token;
}

/** A store that delegates to `inner` except where `overrides` say otherwise. */
function wrappedStore(inner: TokenStore, overrides: Partial<TokenStore>): TokenStore {
  return {
    load: overrides.load ?? ((id) => inner.load(id)),
    compareAndSet:
      overrides.compareAndSet ?? ((id, expected, set) => inner.compareAndSet(id, expected, set)),
    delete: overrides.delete ?? ((id) => inner.delete(id)),
  };
}

function isCode(code: TokenwardenError['code'], credentialId?: string) {
  return (error: unknown) => {
    assert.ok(error instanceof TokenwardenError, `expected a TokenwardenError, got ${error}`);
    assert.equal(error.code, code);
    if (credentialId !== undefined) {
      assert.equal(error.credentialId, credentialId);
      assert.ok(error.message.includes(credentialId), `the message names ${credentialId}`);
    }
    return true;
  };
}

describe('TokenManager.getToken', () => {
  it('regression: a caller joining a flight that began from an older token does not get its own rejected token back', async () => {
    const { manager, endpoint } = await setup();
    // B started from a token older than the stored one: its flight returns the stored access-0 unrefreshed.
    const b = manager.refresh(CREDENTIAL, { expectedAccessToken: 'older-than-stored' });
    // A saw access-0 rejected and joins B's flight while it runs.
    const a = manager.refresh(CREDENTIAL, { expectedAccessToken: 'access-0' });
    assert.equal((await b).accessToken, 'access-0');
    const fromA = await a;
    assert.notEqual(fromA.accessToken, 'access-0');
    assert.equal(endpoint.calls.length, 1);
  });

  it('returns the stored token without refreshing while it is valid', async () => {
    const { manager, endpoint, clock } = await setup();
    clock.now = T0 + 60_000;
    for (const request of [undefined, {}, { minValiditySeconds: 300 }]) {
      const tokenSet = await manager.getToken(CREDENTIAL, request);
      assert.equal(tokenSet.accessToken, 'access-0');
      assert.equal(tokenSet.refreshToken, 'refresh-0');
    }
    assert.equal(endpoint.calls.length, 0);
  });

  it('sees a token set another writer stored, though it reuses the parsed one while the version holds', async () => {
    const { manager, store } = await setup();
    const first = await manager.getToken(CREDENTIAL);
    assert.equal(
      await manager.getToken(CREDENTIAL),
      first,
      'same version: the parsed set is reused',
    );
    const version = (await store.load(CREDENTIAL))?.version ?? 0;
    await store.compareAndSet(
      CREDENTIAL,
      version,
      storedTokens({ access_token: 'written-elsewhere', refresh_token: 'r' }, T0),
    );
    assert.equal((await manager.getToken(CREDENTIAL)).accessToken, 'written-elsewhere');
  });

  it('returns an expired token as it is when the request asks for no validity (on-demand)', async () => {
    const { manager, endpoint, clock } = await setup();
    clock.now = T0 + 7_200_000;
    assert.equal((await manager.getToken(CREDENTIAL)).accessToken, 'access-0');
    assert.equal(endpoint.calls.length, 0);
  });

  it('does not refresh a token of unknown lifetime for minValiditySeconds', async () => {
    const { manager, endpoint, clock } = await setup({
      tokens: { access_token: 'forever', refresh_token: 'r', expires_in: null },
    });
    clock.now = T0 + 365 * 86_400_000;
    assert.equal(
      (await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 })).accessToken,
      'forever',
    );
    assert.equal(endpoint.calls.length, 0);
  });

  it('refreshes when fewer than minValiditySeconds are left', async () => {
    const { manager, endpoint, clock, events, store } = await setup();
    clock.now = T0 + (3600 - 301) * 1000;
    assert.equal(
      (await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 })).accessToken,
      'access-0',
    );
    assert.equal(endpoint.calls.length, 0);

    clock.now = T0 + (3600 - 299) * 1000;
    const refreshed = await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 });
    assert.equal(refreshed.accessToken, 'access-1');
    assert.equal(endpoint.calls.length, 1);
    assert.equal(endpoint.calls[0]?.form.get('grant_type'), 'refresh_token');
    assert.equal(endpoint.calls[0]?.form.get('refresh_token'), 'refresh-0');
    assert.equal(await storedAccessToken(store), 'access-1');
    assert.equal(events[0]?.trigger, 'expiring');

    clock.now = T0 + 3601 * 1000;
    await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 });
    assert.equal(endpoint.calls.length, 1, 'the refreshed token is valid for an hour');
  });

  it('caps minValiditySeconds at half the token’s lifetime', async () => {
    // A 60-second token with a 300-second margin: refreshed only when < 30 s are left.
    const { manager, endpoint, clock, events } = await setup({
      tokens: { access_token: 'short-0', refresh_token: 'refresh-0', expires_in: 60 },
    });
    clock.now = T0 + 29_000;
    assert.equal(
      (await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 })).accessToken,
      'short-0',
    );
    assert.equal(endpoint.calls.length, 0, 'no refresh with 31 s left');

    clock.now = T0 + 31_000;
    assert.equal(
      (await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 })).accessToken,
      'access-1',
    );
    assert.equal(endpoint.calls.length, 1, 'a refresh with 29 s left');
    assert.equal(events[0]?.trigger, 'expiring');
  });

  it('names an expired token’s refresh "expired"', async () => {
    const { manager, clock, events } = await setup();
    clock.now = T0 + 3_601_000;
    await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 });
    assert.equal(events[0]?.trigger, 'expired');
  });

  it('refreshes when forceRefresh asks, even for a valid token', async () => {
    const { manager, endpoint, events } = await setup();
    assert.equal(
      (await manager.getToken(CREDENTIAL, { forceRefresh: true })).accessToken,
      'access-1',
    );
    assert.equal(
      (await manager.getToken(CREDENTIAL, { forceRefresh: true })).accessToken,
      'access-2',
    );
    assert.equal(endpoint.calls.length, 2);
    assert.equal(
      endpoint.calls[1]?.form.get('refresh_token'),
      'refresh-1',
      'the rotated token is used',
    );
    assert.deepEqual(
      events.map((e) => [e.reason, e.trigger]),
      [
        ['refreshed', 'forced'],
        ['refreshed', 'forced'],
      ],
    );
  });

  it('gives 100 concurrent callers with the same stale token one refresh', async () => {
    const { manager, endpoint, events } = await setup({ delayMs: 20 });
    const results = await Promise.all(
      Array.from({ length: 100 }, () =>
        manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' }),
      ),
    );
    assert.equal(endpoint.calls.length, 1);
    assert.deepEqual(new Set(results.map((t) => t.accessToken)), new Set(['access-1']));
    assert.equal(events.length, 1);
    assert.equal(events[0]?.trigger, 'stale-token');
  });

  it('compare-and-refresh: a caller with an older stale token gets the newer token, no second refresh', async () => {
    const { manager, endpoint } = await setup();
    await manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' });
    assert.equal(endpoint.calls.length, 1);

    // A slower caller saw access-0 rejected too, and asks only now.
    const late = await manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' });
    assert.equal(late.accessToken, 'access-1');
    assert.equal(endpoint.calls.length, 1);

    // The current token rejected: that is a new refresh.
    const next = await manager.getToken(CREDENTIAL, { staleAccessToken: 'access-1' });
    assert.equal(next.accessToken, 'access-2');
    assert.equal(endpoint.calls.length, 2);
  });

  it('compare-and-refresh also holds for a caller that joins after the refresh was stored', async () => {
    // The caller's own read happened before the refresh; it reaches refresh() afterwards.
    const { manager, endpoint } = await setup();
    await manager.refresh(CREDENTIAL, { expectedAccessToken: 'access-0' });
    const again = await manager.refresh(CREDENTIAL, { expectedAccessToken: 'access-0' });
    assert.equal(again.accessToken, 'access-1');
    assert.equal(endpoint.calls.length, 1);
  });
});

describe('TokenManager: storing and announcing refreshed tokens', () => {
  it('stores the refreshed set before onTokens runs and before callers get it', async () => {
    const order: string[] = [];
    let store!: TokenStore;
    const { manager } = await setup({
      onCall: () => {
        order.push('token endpoint');
      },
      wrapStore: (inner) => {
        store = wrappedStore(inner, {
          compareAndSet: async (id, expected, set) => {
            const version = await inner.compareAndSet(id, expected, set);
            order.push(`stored ${set.tokens.access_token}`);
            return version;
          },
        });
        return store;
      },
      onTokens: async (event) => {
        order.push(`onTokens sees ${await storedAccessToken(store)} in the store`);
        assert.equal(event.tokenSet.accessToken, 'access-1');
      },
    });
    const callers = [1, 2, 3].map((n) =>
      manager.getToken(CREDENTIAL, { forceRefresh: true }).then((tokenSet) => {
        order.push(`caller ${n} gets ${tokenSet.accessToken}`);
      }),
    );
    await Promise.all(callers);
    assert.deepEqual(order, [
      'token endpoint',
      'stored access-1',
      'onTokens sees access-1 in the store',
      'caller 1 gets access-1',
      'caller 2 gets access-1',
      'caller 3 gets access-1',
    ]);
  });

  it('hands onTokens the whole merged set: rotated refresh token, unknown members, kept members', async () => {
    // Salesforce-like: no expires_in (the profile assumes two hours), instance_url changes.
    const { manager, events, store, clock } = await setup({
      profile: testProfile({ defaultAccessTokenLifetimeSeconds: 7200 }),
      tokens: {
        access_token: 'access-0',
        refresh_token: 'refresh-0',
        instance_url: 'https://old.my.salesforce.com',
        id: 'https://login.salesforce.com/id/00D/005',
      },
      answer: () =>
        jsonResponse({
          access_token: 'access-1',
          refresh_token: 'refresh-1',
          token_type: 'Bearer',
          instance_url: 'https://new.my.salesforce.com',
          issued_at: '1700000000000',
          signature: 'c2lnbmF0dXJl',
          nested: { team: { id: 'T1' } },
        }),
    });
    clock.now = T0 + 5000;
    await manager.getToken(CREDENTIAL, { forceRefresh: true });
    assert.equal(events.length, 1);
    const event = events[0];
    assert.ok(event);
    assert.equal(event.credentialId, CREDENTIAL);
    assert.equal(event.reason, 'refreshed');
    const expected = {
      tokens: {
        access_token: 'access-1',
        refresh_token: 'refresh-1',
        token_type: 'Bearer',
        instance_url: 'https://new.my.salesforce.com',
        id: 'https://login.salesforce.com/id/00D/005',
        issued_at: '1700000000000',
        signature: 'c2lnbmF0dXJl',
        nested: { team: { id: 'T1' } },
      },
      expires_at_ms: T0 + 5000 + 7_200_000,
      received_at_ms: T0 + 5000,
    };
    assert.deepEqual(event.tokenSet.toStored(), expected);
    assert.deepEqual((await store.load(CREDENTIAL))?.tokenSet, expected);
  });

  it('keeps the old refresh token when the response omits it', async () => {
    const { manager, store, events } = await setup({
      answer: () =>
        jsonResponse({ access_token: 'access-1', token_type: 'bearer', expires_in: 600 }),
    });
    const tokenSet = await manager.getToken(CREDENTIAL, { forceRefresh: true });
    assert.equal(tokenSet.refreshToken, 'refresh-0');
    assert.equal(events[0]?.tokenSet.refreshToken, 'refresh-0');
    assert.equal((await store.load(CREDENTIAL))?.tokenSet.tokens.refresh_token, 'refresh-0');
  });

  it('awaits onTokens: a slow onTokens delays every caller', async () => {
    let announced = false;
    const { manager } = await setup({
      onTokens: async () => {
        await sleep(50);
        announced = true;
      },
    });
    const seen = await Promise.all(
      [1, 2, 3].map(() =>
        manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' }).then(() => announced),
      ),
    );
    assert.deepEqual(seen, [true, true, true]);
  });

  it('gives callers the error of an onTokens that throws, and keeps the new set stored', async () => {
    const failure = new Error('could not emit updateKeys');
    const { manager, store, endpoint } = await setup({
      delayMs: 10,
      onTokens: () => {
        throw failure;
      },
    });
    const outcomes = await Promise.allSettled(
      [1, 2, 3].map(() => manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' })),
    );
    for (const outcome of outcomes) {
      assert.equal(outcome.status, 'rejected');
      assert.equal(outcome.status === 'rejected' && outcome.reason, failure);
    }
    assert.equal(endpoint.calls.length, 1);
    assert.deepEqual(
      { access: await storedAccessToken(store), version: (await store.load(CREDENTIAL))?.version },
      { access: 'access-1', version: 2 },
    );
    // The stored set is the current one: no refresh, no second use of refresh-0.
    assert.equal((await manager.getToken(CREDENTIAL)).accessToken, 'access-1');
    assert.equal(endpoint.calls.length, 1);
  });

  it('saves the just-refreshed set when another writer changed the record meanwhile', async () => {
    let conflicts = 0;
    const { manager, store, endpoint, events } = await setup({
      wrapStore: (inner) =>
        wrappedStore(inner, {
          compareAndSet: async (id, expected, set) => {
            if (conflicts === 0) {
              conflicts++;
              // Another writer (an updateKeys elsewhere) gets in first.
              const current = await inner.load(id);
              await inner.compareAndSet(
                id,
                current?.version ?? null,
                storedTokens({ access_token: 'interloper', refresh_token: 'refresh-x' }, T0),
              );
              return undefined;
            }
            return inner.compareAndSet(id, expected, set);
          },
        }),
    });
    const tokenSet = await manager.getToken(CREDENTIAL, { forceRefresh: true });
    assert.equal(conflicts, 1);
    assert.equal(tokenSet.accessToken, 'access-1');
    const stored = await store.load(CREDENTIAL);
    assert.equal(stored?.version, 3, 'version 2 was the other writer, 3 the refreshed set');
    assert.equal(stored?.tokenSet.tokens.access_token, 'access-1');
    assert.equal(stored?.tokenSet.tokens.refresh_token, 'refresh-1');
    assert.equal(endpoint.calls.length, 1);
    assert.equal(events.length, 1);
  });

  it('fails with store_conflict, naming the credential, when every save conflicts', async () => {
    let attempts = 0;
    const { manager, events } = await setup({
      wrapStore: (inner) =>
        wrappedStore(inner, {
          compareAndSet: async () => {
            attempts++;
            return undefined;
          },
        }),
    });
    await assert.rejects(
      manager.getToken(CREDENTIAL, { forceRefresh: true }),
      isCode('store_conflict', CREDENTIAL),
    );
    assert.equal(attempts, 5);
    assert.equal(events.length, 0, 'nothing announced that was not stored');
  });

  it('fails with credential_not_found when the credential is deleted during the refresh', async () => {
    let store!: MemoryTokenStore;
    const { manager, events } = await setup({
      wrapStore: (inner) => {
        store = inner;
        return inner;
      },
      onCall: () => {
        void store.delete(CREDENTIAL);
      },
    });
    await assert.rejects(
      manager.getToken(CREDENTIAL, { forceRefresh: true }),
      isCode('credential_not_found', CREDENTIAL),
    );
    assert.equal(await store.load(CREDENTIAL), undefined, 'not resurrected');
    assert.equal(events.length, 0);
  });

  // Regression: refreshed tokens were dated by Date.now(), not by the manager's
  // clock, so a manager whose clock differs judged them expired at once.
  it('dates refreshed tokens by the manager’s own clock', async () => {
    const { manager, endpoint, clock } = await setup();
    clock.now = T0 + 3_601_000;
    const refreshed = await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 });
    assert.equal(refreshed.receivedAtMs, T0 + 3_601_000);
    assert.equal(refreshed.expiresAtMs, T0 + 3_601_000 + 3_600_000);
    await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 });
    assert.equal(endpoint.calls.length, 1);
  });
});

describe('TokenManager: refresh failures', () => {
  it('turns invalid_grant into reauth_required naming the credential, without a retry', async () => {
    const { manager, endpoint, sleeps, store, events } = await setup({
      answer: () =>
        jsonResponse(
          { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' },
          400,
        ),
    });
    await assert.rejects(manager.getToken(CREDENTIAL, { forceRefresh: true }), (error: unknown) => {
      assert.ok(error instanceof TokenEndpointError);
      assert.equal(error.code, 'reauth_required');
      assert.equal(error.oauthError, 'invalid_grant');
      assert.equal(error.transient, false);
      assert.equal(error.credentialId, CREDENTIAL);
      assert.match(error.message, new RegExp(`credential ${CREDENTIAL}\\b`));
      return true;
    });
    assert.equal(endpoint.calls.length, 1);
    assert.deepEqual(sleeps, []);
    assert.equal(await storedAccessToken(store), 'access-0', 'the stored set is left alone');
    assert.equal(events.length, 0);
  });

  it('shares one invalid_grant with every concurrent caller (one request)', async () => {
    const { manager, endpoint } = await setup({
      delayMs: 10,
      answer: () => jsonResponse({ error: 'invalid_grant' }, 400),
    });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        manager.getToken(CREDENTIAL, { staleAccessToken: 'access-0' }),
      ),
    );
    assert.ok(
      outcomes.every((o) => o.status === 'rejected' && isCode('reauth_required')(o.reason)),
    );
    assert.equal(endpoint.calls.length, 1);
  });

  it('retries a 503 and succeeds on the next answer', async () => {
    const { manager, endpoint, sleeps, store } = await setup({
      answer: (call) =>
        call.number === 1
          ? new Response('down for maintenance', { status: 503 })
          : rotatingTokens()(call),
    });
    const tokenSet = await manager.getToken(CREDENTIAL, { forceRefresh: true });
    assert.equal(tokenSet.accessToken, 'access-2');
    assert.equal(endpoint.calls.length, 2);
    assert.equal(endpoint.calls[1]?.form.get('refresh_token'), 'refresh-0');
    assert.equal(sleeps.length, 1);
    assert.equal(await storedAccessToken(store), 'access-2');
  });

  it('gives up on a token endpoint that stays down with token_endpoint_unavailable', async () => {
    const { manager, endpoint, sleeps } = await setup({
      answer: () => new Response('no', { status: 503 }),
    });
    await assert.rejects(manager.getToken(CREDENTIAL, { forceRefresh: true }), (error: unknown) => {
      assert.ok(isCode('token_endpoint_unavailable', CREDENTIAL)(error));
      assert.equal((error as TokenwardenError).transient, true);
      return true;
    });
    assert.equal(endpoint.calls.length, 4);
    assert.equal(sleeps.length, 3);
  });

  it('asks for reauthorization, without a request, when there is no refresh token', async () => {
    const { manager, endpoint } = await setup({ tokens: { access_token: 'lonely' } });
    await assert.rejects(
      manager.getToken(CREDENTIAL, { forceRefresh: true }),
      isCode('reauth_required', CREDENTIAL),
    );
    assert.equal(endpoint.calls.length, 0);
  });

  it('answers credential_not_found for an unknown credential', async () => {
    const { manager, endpoint } = await setup();
    await assert.rejects(
      manager.getToken('cred-unknown'),
      isCode('credential_not_found', 'cred-unknown'),
    );
    await assert.rejects(
      manager.getToken('cred-unknown', { forceRefresh: true }),
      isCode('credential_not_found', 'cred-unknown'),
    );
    await assert.rejects(
      manager.refresh('cred-unknown'),
      isCode('credential_not_found', 'cred-unknown'),
    );
    await assert.rejects(
      manager.updateKeys('cred-unknown', { access_token: 'x', token_type: 'Bearer' }),
      isCode('credential_not_found', 'cred-unknown'),
    );
    assert.equal(endpoint.calls.length, 0);
  });
});

describe('TokenManager.updateKeys', () => {
  it('merges a token response, keeping the old refresh token when it is omitted', async () => {
    const { manager, store, events, clock, endpoint } = await setup({
      tokens: {
        access_token: 'access-0',
        refresh_token: 'refresh-0',
        instance_url: 'https://x.my.salesforce.com',
      },
    });
    clock.now = T0 + 10_000;
    const merged = await manager.updateKeys(CREDENTIAL, {
      access_token: 'from-component',
      token_type: 'Bearer',
      expires_in: 1800,
    });
    const expected = {
      tokens: {
        access_token: 'from-component',
        refresh_token: 'refresh-0',
        token_type: 'Bearer',
        expires_in: 1800,
        instance_url: 'https://x.my.salesforce.com',
      },
      expires_at_ms: T0 + 10_000 + 1_800_000,
      received_at_ms: T0 + 10_000,
    };
    assert.deepEqual(merged.toStored(), expected);
    assert.deepEqual(await store.load(CREDENTIAL), { tokenSet: expected, version: 2 });
    assert.equal(events.length, 1);
    assert.equal(events[0]?.reason satisfies TokenChangeReason | undefined, 'updated-keys');
    assert.equal(events[0]?.credentialId, CREDENTIAL);
    assert.deepEqual(events[0]?.tokenSet.toStored(), expected);

    // Later readers get the component's token, and no refresh happens.
    assert.equal(
      (await manager.getToken(CREDENTIAL, { minValiditySeconds: 300 })).accessToken,
      'from-component',
    );
    assert.equal(endpoint.calls.length, 0);
  });

  // Regression: on a compare-and-set conflict updateKeys wrote its merge over the
  // record it had read first, so a refresh token rotated meanwhile (by a refresh
  // in another worker) was replaced by the old, already used one.
  it('merges onto the latest record when another writer changed it meanwhile', async () => {
    let conflicts = 0;
    const { manager, store, events } = await setup({
      wrapStore: (inner) =>
        wrappedStore(inner, {
          compareAndSet: async (id, expected, set) => {
            if (conflicts === 0) {
              conflicts++;
              const current = await inner.load(id);
              await inner.compareAndSet(
                id,
                current?.version ?? null,
                storedTokens(
                  {
                    access_token: 'refreshed-elsewhere',
                    refresh_token: 'rotated-elsewhere',
                    instance_url: 'https://new.example',
                  },
                  T0,
                ),
              );
              return undefined;
            }
            return inner.compareAndSet(id, expected, set);
          },
        }),
    });
    const merged = await manager.updateKeys(CREDENTIAL, {
      access_token: 'from-component',
      token_type: 'Bearer',
    });
    assert.equal(conflicts, 1);
    const stored = await store.load(CREDENTIAL);
    assert.equal(stored?.version, 3);
    assert.equal(stored?.tokenSet.tokens.access_token, 'from-component');
    assert.equal(stored?.tokenSet.tokens.refresh_token, 'rotated-elsewhere');
    assert.equal(stored?.tokenSet.tokens.instance_url, 'https://new.example');
    assert.deepEqual(merged.toStored(), stored?.tokenSet);
    assert.deepEqual(events[0]?.tokenSet.toStored(), stored?.tokenSet);
  });

  it('fails with store_conflict, announcing nothing, when every save conflicts', async () => {
    const { manager, events } = await setup({
      wrapStore: (inner) => wrappedStore(inner, { compareAndSet: async () => undefined }),
    });
    await assert.rejects(
      manager.updateKeys(CREDENTIAL, { access_token: 'x', token_type: 'Bearer' }),
      isCode('store_conflict', CREDENTIAL),
    );
    assert.equal(events.length, 0);
  });

  it('takes a rotated refresh token from the response', async () => {
    const { manager, store } = await setup();
    await manager.updateKeys(CREDENTIAL, {
      access_token: 'a',
      token_type: 'Bearer',
      refresh_token: 'rotated-by-component',
    });
    assert.equal(
      (await store.load(CREDENTIAL))?.tokenSet.tokens.refresh_token,
      'rotated-by-component',
    );
  });
});

describe('TokenManager.save', () => {
  it('stores an imported set and announces it as imported', async () => {
    const { manager, store, events } = await setup();
    const imported = TokenSet.fromResponse(
      { access_token: 'imported', token_type: 'Bearer', refresh_token: 'r' },
      T0,
    );
    await manager.save('cred-new', imported);
    assert.equal(await storedAccessToken(store, 'cred-new'), 'imported');
    assert.deepEqual(
      events.map((e) => [e.credentialId, e.reason]),
      [['cred-new', 'imported']],
    );
  });
});

describe('TokenManager: no token value in any error', () => {
  const ACCESS = 'AT-SECRET-MARKER-1b7e';
  const REFRESH = 'RT-SECRET-MARKER-52c9';
  const CLIENT_SECRET = 'CS-SECRET-MARKER-9d03';
  const NEW_ACCESS = 'AT-SECRET-MARKER-new-77f1';
  const NEW_REFRESH = 'RT-SECRET-MARKER-new-3a08';
  const markers = [ACCESS, REFRESH, CLIENT_SECRET, NEW_ACCESS, NEW_REFRESH, 'SECRET-MARKER'];

  const failures: Record<string, Partial<SetupOptions>> = {
    invalid_grant: { answer: () => jsonResponse({ error: 'invalid_grant' }, 400) },
    invalid_client: { answer: () => jsonResponse({ error: 'invalid_client' }, 401) },
    'bare 401': { answer: () => new Response('', { status: 401 }) },
    invalid_request: { answer: () => jsonResponse({ error: 'invalid_request' }, 400) },
    '503 until giving up': { answer: () => new Response('', { status: 503 }) },
    'network failure': {
      answer: () => {
        throw new TypeError('fetch failed', { cause: { code: 'ECONNREFUSED' } });
      },
    },
    'unsupported token_type': {
      answer: () =>
        jsonResponse({ access_token: NEW_ACCESS, refresh_token: NEW_REFRESH, token_type: 'mac' }),
    },
    'expires_in not a number': {
      answer: () =>
        jsonResponse({
          access_token: NEW_ACCESS,
          refresh_token: NEW_REFRESH,
          token_type: 'Bearer',
          expires_in: 'later',
        }),
    },
    'negative expires_in': {
      answer: () =>
        jsonResponse({ access_token: NEW_ACCESS, token_type: 'Bearer', expires_in: -5 }),
    },
    'no access_token': {
      answer: () => jsonResponse({ refresh_token: NEW_REFRESH, token_type: 'Bearer' }),
    },
    'form-encoded body': {
      answer: () =>
        new Response(`access_token=${NEW_ACCESS}&refresh_token=${NEW_REFRESH}&token_type=bearer`, {
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        }),
    },
    'HTTP 302': {
      answer: () => new Response(JSON.stringify({ access_token: NEW_ACCESS }), { status: 302 }),
    },
    'store conflict': {
      wrapStore: (inner) => wrappedStore(inner, { compareAndSet: async () => undefined }),
    },
  };

  for (const [name, options] of Object.entries(failures)) {
    it(`keeps tokens out of the error for: ${name}`, async () => {
      const { manager } = await setup({
        tokens: { access_token: ACCESS, refresh_token: REFRESH },
        clientSecret: CLIENT_SECRET,
        ...options,
      });
      let caught: unknown;
      try {
        await manager.getToken(CREDENTIAL, { staleAccessToken: ACCESS });
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof TokenwardenError, `${name} failed with a TokenwardenError`);
      assert.equal(caught.credentialId, CREDENTIAL);
      const renderings = [
        caught.message,
        String(caught),
        caught.stack ?? '',
        JSON.stringify(caught),
        inspect(caught, { depth: Number.POSITIVE_INFINITY }),
      ];
      for (const text of renderings) {
        for (const marker of markers) {
          assert.ok(!text.includes(marker), `${name}: "${marker}" appears in ${text}`);
        }
      }
    });
  }

  it('keeps tokens out of credential_not_found and reauth_required (no refresh token)', async () => {
    const { manager } = await setup({ tokens: { access_token: ACCESS } });
    for (const attempt of [
      manager.getToken('missing', { staleAccessToken: ACCESS }),
      manager.getToken(CREDENTIAL, { staleAccessToken: ACCESS }),
    ]) {
      const error = await attempt.then(
        () => assert.fail('expected an error'),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TokenwardenError);
      assert.ok(!inspect(error).includes(ACCESS));
    }
  });
});

describe('TokenManager.source', () => {
  it('is a TokenSource for one credential', async () => {
    const { manager } = await setup();
    const source = manager.source(CREDENTIAL);
    assert.equal(source.credentialId, CREDENTIAL);
    assert.equal((await source.getToken()).accessToken, 'access-0');
    assert.equal((await source.getToken({ forceRefresh: true })).accessToken, 'access-1');
  });
});
