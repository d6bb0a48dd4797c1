import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryTokenStore } from '../src/store.ts';
import { storeContract, tokenSet } from './support/store-contract.ts';

storeContract('MemoryTokenStore', async () => ({
  store: new MemoryTokenStore(),
  cleanup: async () => {},
}));

describe('MemoryTokenStore', () => {
  it('keeps separate instances separate', async () => {
    const a = new MemoryTokenStore();
    const b = new MemoryTokenStore();
    await a.compareAndSet('c1', null, tokenSet('a1'));
    assert.equal(await b.load('c1'), undefined);
  });

  it('lets exactly one of many concurrent writers from one version win', async () => {
    const store = new MemoryTokenStore();
    await store.compareAndSet('c1', null, tokenSet('a0'));
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.compareAndSet('c1', 1, tokenSet(`a${i + 1}`))),
    );
    assert.deepEqual(
      results.filter((r) => r !== undefined),
      [2],
    );
    const winner = results.indexOf(2);
    assert.deepEqual(await store.load('c1'), { tokenSet: tokenSet(`a${winner + 1}`), version: 2 });
  });
});
