import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TokenSet } from '@tokenwarden/oauth';
import type { CredentialWithTokens } from '../src/store/credentials.ts';
import { type ChangeFeed, type ChangeSink, TokenCache } from '../src/store/token-cache.ts';

function row(id: string, tenantId = 'tn_a', accessToken = `at-${id}`): CredentialWithTokens {
  return {
    record: {
      id,
      tenantId,
      authClientId: 'ac_1',
      status: 'active',
      statusReason: null,
      expiresAt: null,
      lastRefreshAt: null,
      refreshCount: 0,
      lastError: null,
      flags: {},
      scope: null,
      nextRefreshAt: null,
      failureCount: 0,
      lastDecision: null,
      createdAt: 0,
      updatedAt: 0,
    },
    tokenSet: TokenSet.fromResponse({ access_token: accessToken, token_type: 'Bearer' }, 0),
    version: 1,
    leaseOwner: null,
    leaseUntil: null,
  };
}

/** A feed under the test's control. */
class ManualFeed implements ChangeFeed {
  live = true;
  polls = 0;
  sink: ChangeSink | undefined;
  start(sink: ChangeSink) {
    this.sink = sink;
  }
  poll() {
    this.polls++;
  }
  async stop() {}
}

/** Reads through the cache the way CredentialRepository.getServing does. */
function read(cache: TokenCache, tenantId: string, id: string, fromDatabase: CredentialWithTokens) {
  const found = cache.lookup(tenantId, id);
  if (found.generation === undefined) return { value: found.value, from: 'cache' as const };
  cache.fill(fromDatabase, found.generation);
  return { value: fromDatabase, from: 'database' as const };
}

describe('TokenCache', () => {
  test('a miss is filled, then hit; counts both', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    const a = row('cr_a');
    assert.equal(read(cache, 'tn_a', 'cr_a', a).from, 'database');
    assert.equal(read(cache, 'tn_a', 'cr_a', row('cr_a', 'tn_a', 'other')).value, a);
    assert.deepEqual(cache.lookups, { hit: 1, miss: 1, bypass: 0 });
  });

  test('a read that began before an invalidation does not store what it read', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    const started = cache.lookup('tn_a', 'cr_a');
    assert.equal(started.generation, 0);
    // Meanwhile the credential (or any other) changes: the old row must not be kept.
    cache.changed('cr_b');
    cache.fill(row('cr_a'), started.generation);
    assert.equal(cache.size, 0);
    const again = cache.lookup('tn_a', 'cr_a');
    assert.ok(again.generation !== undefined);
    cache.fill(row('cr_a'), again.generation);
    assert.equal(cache.size, 1);
  });

  test('changed(id) and reset() drop entries', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    read(cache, 'tn_a', 'cr_b', row('cr_b'));
    cache.changed('cr_a');
    assert.equal(cache.lookup('tn_a', 'cr_a').generation !== undefined, true);
    assert.equal(cache.lookup('tn_a', 'cr_b').generation, undefined);
    cache.reset();
    assert.equal(cache.size, 0);
  });

  test('entries expire after maxAgeMs (a monotonic clock) whatever the feed says', () => {
    let now = 0;
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000, now: () => now });
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    now = 999;
    assert.equal(cache.lookup('tn_a', 'cr_a').generation, undefined);
    now = 1_000;
    assert.notEqual(cache.lookup('tn_a', 'cr_a').generation, undefined);
    assert.equal(cache.size, 0);
  });

  test('the oldest filled entry goes first when full', () => {
    const cache = new TokenCache({ maxEntries: 2, maxAgeMs: 1_000 });
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    read(cache, 'tn_a', 'cr_b', row('cr_b'));
    read(cache, 'tn_a', 'cr_c', row('cr_c'));
    assert.equal(cache.size, 2);
    assert.notEqual(cache.lookup('tn_a', 'cr_a').generation, undefined, 'a evicted');
    assert.equal(cache.lookup('tn_a', 'cr_b').generation, undefined, 'b kept');
    assert.equal(cache.lookup('tn_a', 'cr_c').generation, undefined, 'c kept');
  });

  test('peek serves hits without waiting and counts no miss', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    const feed = new ManualFeed();
    cache.attach(feed);
    assert.equal(cache.peek('tn_a', 'cr_a'), undefined);
    const a = row('cr_a');
    read(cache, 'tn_a', 'cr_a', a);
    assert.equal(cache.peek('tn_a', 'cr_a'), a);
    assert.equal(cache.peek('tn_b', 'cr_a'), undefined, 'not to another tenant');
    assert.deepEqual(cache.lookups, { hit: 1, miss: 1, bypass: 0 });
    feed.live = false;
    assert.equal(cache.peek('tn_a', 'cr_a'), undefined, 'nothing while the feed is down');
    assert.equal(feed.polls, 5);
  });

  test('another tenant misses, and does not evict the entry', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    assert.notEqual(cache.lookup('tn_b', 'cr_a').generation, undefined);
    assert.equal(cache.lookup('tn_a', 'cr_a').generation, undefined);
  });

  test('the feed is polled before every lookup; while it is not live everything bypasses', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    const feed = new ManualFeed();
    cache.attach(feed);
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    assert.equal(feed.polls, 1);
    feed.live = false;
    const during = cache.lookup('tn_a', 'cr_a');
    assert.deepEqual(during, { result: 'bypass', generation: -1 });
    assert.equal(cache.lookups.bypass, 1);
    // A read that began while the feed was live and ends while it is down is not stored,
    // even with the generation it saw (no reset in between).
    feed.live = true;
    const started = cache.lookup('tn_a', 'cr_b');
    assert.ok(started.generation !== undefined);
    feed.live = false;
    cache.fill(row('cr_b'), started.generation);
    feed.live = true;
    assert.notEqual(cache.lookup('tn_a', 'cr_b').generation, undefined, 'cr_b was not stored');
    // The feed going down resets the cache (it calls reset()).
    feed.sink?.reset();
    assert.equal(cache.size, 0);
    assert.equal(read(cache, 'tn_a', 'cr_a', row('cr_a')).from, 'database');
  });

  test("this process's write keeps the credential out for the write window", () => {
    let now = 0;
    const cache = new TokenCache({
      maxEntries: 10,
      maxAgeMs: 60_000,
      writeWindowMs: 2_000,
      now: () => now,
    });
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    cache.written('cr_a');
    // A read on another connection before the commit sees the old row: it must not stay.
    const during = cache.lookup('tn_a', 'cr_a');
    assert.ok(during.generation !== undefined, 'not served');
    cache.fill(row('cr_a', 'tn_a', 'old'), during.generation);
    now = 1_999;
    assert.notEqual(cache.lookup('tn_a', 'cr_a').generation, undefined, 'still not cached');
    assert.equal(cache.peek('tn_a', 'cr_a'), undefined);
    now = 2_000;
    const after = read(cache, 'tn_a', 'cr_a', row('cr_a', 'tn_a', 'new'));
    assert.equal(after.from, 'database');
    assert.equal(read(cache, 'tn_a', 'cr_a', row('cr_a')).value.tokenSet.accessToken, 'new');
    // Other credentials are not affected by the window.
    read(cache, 'tn_a', 'cr_b', row('cr_b'));
    assert.equal(read(cache, 'tn_a', 'cr_b', row('cr_b')).from, 'cache');
  });

  test('changes from the feed drop their entry', () => {
    const cache = new TokenCache({ maxEntries: 10, maxAgeMs: 1_000 });
    const feed = new ManualFeed();
    cache.attach(feed);
    read(cache, 'tn_a', 'cr_a', row('cr_a'));
    feed.sink?.changed('cr_a');
    assert.equal(
      read(cache, 'tn_a', 'cr_a', row('cr_a', 'tn_a', 'new')).value.tokenSet.accessToken,
      'new',
    );
  });
});
