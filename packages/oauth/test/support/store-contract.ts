// The compare-and-set contract every TokenStore keeps (see src/store.ts). Each
// store's test file runs it against its own store.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TokenStore } from '../../src/store.ts';
import type { StoredTokenSet } from '../../src/token-set.ts';

export interface StoreUnderTest {
  store: TokenStore;
  /** Removes whatever the store left behind (temp folders). */
  cleanup(): Promise<void>;
}

export function tokenSet(accessToken: string, extra: Record<string, unknown> = {}): StoredTokenSet {
  return {
    tokens: {
      access_token: accessToken,
      token_type: 'Bearer',
      refresh_token: `refresh-of-${accessToken}`,
      expires_in: 3600,
      ...extra,
    },
    expires_at_ms: 1_700_000_000_000 + 3_600_000,
    received_at_ms: 1_700_000_000_000,
  };
}

export function storeContract(name: string, open: () => Promise<StoreUnderTest>): void {
  describe(`${name}: the TokenStore compare-and-set contract`, () => {
    const withStore = (test: (store: TokenStore) => Promise<void>) => async () => {
      const { store, cleanup } = await open();
      try {
        await test(store);
      } finally {
        await cleanup();
      }
    };

    it(
      'loads an unknown credential as undefined',
      withStore(async (store) => {
        assert.equal(await store.load('nobody'), undefined);
      }),
    );

    it(
      'creates a credential with expectedVersion null, at version 1',
      withStore(async (store) => {
        assert.equal(await store.compareAndSet('c1', null, tokenSet('a1')), 1);
        assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet('a1'), version: 1 });
      }),
    );

    it(
      'refuses expectedVersion null for a credential that exists, writing nothing',
      withStore(async (store) => {
        await store.compareAndSet('c1', null, tokenSet('a1'));
        assert.equal(await store.compareAndSet('c1', null, tokenSet('intruder')), undefined);
        assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet('a1'), version: 1 });
      }),
    );

    it(
      'refuses a wrong expected version, writing nothing',
      withStore(async (store) => {
        await store.compareAndSet('c1', null, tokenSet('a1'));
        await store.compareAndSet('c1', 1, tokenSet('a2'));
        for (const stale of [0, 1, 3, 42]) {
          assert.equal(
            await store.compareAndSet('c1', stale, tokenSet(`wrong-${stale}`)),
            undefined,
          );
        }
        assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet('a2'), version: 2 });
      }),
    );

    it(
      'refuses a numeric expected version for a credential that does not exist',
      withStore(async (store) => {
        assert.equal(await store.compareAndSet('c1', 1, tokenSet('a1')), undefined);
        assert.equal(await store.load('c1'), undefined);
      }),
    );

    it(
      'grows the version by one on every save',
      withStore(async (store) => {
        let version: number | null = null;
        for (let i = 1; i <= 5; i++) {
          const next: number | undefined = await store.compareAndSet(
            'c1',
            version,
            tokenSet(`a${i}`),
          );
          assert.equal(next, i);
          version = next ?? null;
        }
        assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet('a5'), version: 5 });
      }),
    );

    it(
      'keeps credentials apart',
      withStore(async (store) => {
        await store.compareAndSet('c1', null, tokenSet('one'));
        await store.compareAndSet('c2', null, tokenSet('two'));
        await store.compareAndSet('c2', 1, tokenSet('two-b'));
        assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet('one'), version: 1 });
        assert.deepEqual(await store.load('c2'), { tokenSet: tokenSet('two-b'), version: 2 });
      }),
    );

    it(
      'hands out copies: mutating a loaded record or a saved token set changes nothing stored',
      withStore(async (store) => {
        const saved = tokenSet('a1', { instance_url: 'https://one.example' });
        await store.compareAndSet('c1', null, saved);
        saved.tokens.access_token = 'mutated-after-save';
        saved.expires_at_ms = 0;

        const loaded = await store.load('c1');
        assert.ok(loaded);
        loaded.version = 99;
        loaded.tokenSet.tokens.access_token = 'mutated-after-load';
        loaded.tokenSet.tokens.instance_url = 'https://evil.example';
        delete loaded.tokenSet.tokens.refresh_token;

        assert.deepEqual(await store.load('c1'), {
          tokenSet: tokenSet('a1', { instance_url: 'https://one.example' }),
          version: 1,
        });
      }),
    );

    it(
      'deletes a credential, and reports whether there was one',
      withStore(async (store) => {
        await store.compareAndSet('c1', null, tokenSet('a1'));
        await store.compareAndSet('c2', null, tokenSet('b1'));
        assert.equal(await store.delete('c1'), true);
        assert.equal(await store.load('c1'), undefined);
        assert.equal(await store.delete('c1'), false);
        assert.equal(await store.delete('never-existed'), false);
        assert.deepEqual(await store.load('c2'), { tokenSet: tokenSet('b1'), version: 1 });
        // Deleted means absent: only expectedVersion null creates it again.
        assert.equal(await store.compareAndSet('c1', 1, tokenSet('a2')), undefined);
        assert.equal(await store.compareAndSet('c1', null, tokenSet('a2')), 1);
      }),
    );

    // Regression: a store that keeps credentials in a plain object found
    // Object.prototype's members under these ids.
    it(
      'treats credential ids named after Object.prototype members like any other id',
      withStore(async (store) => {
        const ids = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf'];
        for (const id of ids) {
          assert.equal(await store.load(id), undefined, `load(${id})`);
          assert.equal(await store.delete(id), false, `delete(${id})`);
          assert.equal(await store.compareAndSet(id, 1, tokenSet(id)), undefined, `CAS(${id}, 1)`);
        }
        for (const id of ids) {
          assert.equal(await store.compareAndSet(id, null, tokenSet(`t-${id}`)), 1, `CAS(${id})`);
        }
        for (const id of ids) {
          assert.deepEqual(await store.load(id), { tokenSet: tokenSet(`t-${id}`), version: 1 });
        }
        assert.equal(await store.delete('__proto__'), true);
        assert.equal(await store.load('__proto__'), undefined);
        assert.deepEqual(await store.load('constructor'), {
          tokenSet: tokenSet('t-constructor'),
          version: 1,
        });
      }),
    );
  });
}
