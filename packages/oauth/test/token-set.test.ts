import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { format, inspect } from 'node:util';
import { type StoredTokenSet, type TokenResponse, TokenSet } from '../src/index.ts';

// 2023-11-14T22:13:20.500Z: half a second past a whole second, so rounding shows.
const RECEIVED_MS = 1_700_000_000_500;

const ACCESS = 'AT-marker-7f3a91c2';
const REFRESH = 'RT-marker-0b44de19';
const ID_TOKEN = 'IDT-marker-55aa01ff';
const NESTED_ACCESS = 'xoxp-nested-marker-c0ffee';
const NESTED_REFRESH = 'xoxe-nested-marker-decade';
const MARKERS = [ACCESS, REFRESH, ID_TOKEN, NESTED_ACCESS, NESTED_REFRESH];

/** A Slack-like response: secrets at the top and nested under authed_user. */
function slackLikeResponse(): TokenResponse {
  return {
    ok: true,
    access_token: ACCESS,
    token_type: 'bot',
    expires_in: 43_200,
    refresh_token: REFRESH,
    id_token: ID_TOKEN,
    scope: 'chat:write,channels:read',
    bot_user_id: 'U0BOT',
    team: { id: 'T123', name: 'Acme' },
    authed_user: {
      id: 'U1',
      scope: 'identify',
      access_token: NESTED_ACCESS,
      refresh_token: NESTED_REFRESH,
      token_type: 'user',
    },
  };
}

function assertNoSecret(text: string, where: string): void {
  for (const marker of MARKERS) {
    assert.ok(!text.includes(marker), `${where} leaks ${marker}: ${text}`);
  }
}

describe('TokenSet.fromResponse', () => {
  it('computes an absolute expiry from expires_in and the arrival time', () => {
    const ts = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer', expires_in: 3600 },
      RECEIVED_MS,
    );
    assert.equal(ts.receivedAtMs, RECEIVED_MS);
    assert.equal(ts.expiresAtMs, RECEIVED_MS + 3_600_000);
    assert.equal(ts.toStored().expires_at_ms, RECEIVED_MS + 3_600_000);
    // whole seconds, rounded down
    assert.equal(ts.expiresAt, 1_700_003_600);
  });

  it('keeps a sub-second lifetime (a one-second token is not expired on arrival)', () => {
    const ts = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer', expires_in: 1 },
      RECEIVED_MS,
    );
    assert.equal(ts.expiresAtMs, RECEIVED_MS + 1000);
    assert.equal(ts.secondsLeft(RECEIVED_MS), 1);
    const fractional = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer', expires_in: 3599.9 },
      RECEIVED_MS,
    );
    assert.equal(fractional.expiresAtMs, RECEIVED_MS + 3_599_900);
  });

  it('uses the profile default lifetime when expires_in is absent (Salesforce)', () => {
    const ts = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer' },
      RECEIVED_MS,
      7200,
    );
    assert.equal(ts.expiresAtMs, RECEIVED_MS + 7_200_000);
    assert.equal(ts.lifetimeSeconds, 7200);
  });

  it('prefers the response expires_in over the default, even expires_in 0', () => {
    const ts = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer', expires_in: 0 },
      RECEIVED_MS,
      7200,
    );
    assert.equal(ts.expiresAtMs, RECEIVED_MS);
  });

  it('leaves the expiry unknown when neither the response nor the profile says', () => {
    const ts = TokenSet.fromResponse({ access_token: ACCESS, token_type: 'Bearer' }, RECEIVED_MS);
    assert.equal(ts.expiresAt, undefined);
    assert.equal(ts.expiresAtMs, undefined);
    assert.equal(ts.toStored().expires_at_ms, null);
    assert.equal(ts.lifetimeSeconds, undefined);
    assert.equal(ts.secondsLeft(RECEIVED_MS + 1000), undefined);
  });

  it('keeps every member of the response, unknown ones included', () => {
    const response = slackLikeResponse();
    const ts = TokenSet.fromResponse(response, RECEIVED_MS);
    assert.deepEqual(ts.toStored().tokens, response);
    assert.deepEqual(ts.get('team'), { id: 'T123', name: 'Acme' });
  });

  it('copies the response, so later changes to it do not reach the token set', () => {
    const response: TokenResponse = { access_token: ACCESS, token_type: 'Bearer' };
    const ts = TokenSet.fromResponse(response, RECEIVED_MS);
    response.access_token = 'changed';
    assert.equal(ts.accessToken, ACCESS);
  });
});

describe('TokenSet.merge', () => {
  const current = TokenSet.fromResponse(
    {
      access_token: 'old-access',
      token_type: 'Bearer',
      expires_in: 3600,
      refresh_token: 'old-refresh',
      instance_url: 'https://acme.my.salesforce.com',
      scope: 'api refresh_token',
    },
    RECEIVED_MS,
  );
  const later = RECEIVED_MS + 3_000_000;

  it('keeps the refresh token when the response omits it', () => {
    const next = current.merge(
      { access_token: 'new-access', token_type: 'Bearer', expires_in: 3600 },
      later,
    );
    assert.equal(next.accessToken, 'new-access');
    assert.equal(next.refreshToken, 'old-refresh');
  });

  it('replaces the refresh token when the response carries a new one (rotation)', () => {
    const next = current.merge(
      {
        access_token: 'new-access',
        token_type: 'Bearer',
        expires_in: 3600,
        refresh_token: 'new-refresh',
      },
      later,
    );
    assert.equal(next.refreshToken, 'new-refresh');
  });

  it('preserves unknown members such as instance_url, and replaces those the response sends', () => {
    const next = current.merge(
      { access_token: 'new-access', token_type: 'Bearer', scope: 'api' },
      later,
    );
    assert.equal(next.get('instance_url'), 'https://acme.my.salesforce.com');
    assert.equal(next.scope, 'api');
  });

  it('drops a stale expires_in and recomputes the expiry from the profile default', () => {
    const next = current.merge({ access_token: 'new-access', token_type: 'Bearer' }, later, 7200);
    assert.equal('expires_in' in next.toStored().tokens, false);
    assert.equal(next.expiresAtMs, later + 7_200_000);
    assert.equal(next.receivedAtMs, later);
  });

  it('leaves the expiry unknown when the new response has none and there is no default', () => {
    const next = current.merge({ access_token: 'new-access', token_type: 'Bearer' }, later);
    assert.equal(next.expiresAt, undefined);
    assert.equal('expires_in' in next.toStored().tokens, false);
  });

  it('recomputes the expiry from the new expires_in and the new arrival time', () => {
    const next = current.merge(
      { access_token: 'new-access', token_type: 'Bearer', expires_in: 60 },
      later,
    );
    assert.equal(next.expiresAtMs, later + 60_000);
    assert.equal(next.toStored().tokens.expires_in, 60);
  });

  it('does not change the token set it was called on', () => {
    const before = current.toStored();
    current.merge(
      { access_token: 'new-access', token_type: 'Bearer', refresh_token: 'new-refresh' },
      later,
    );
    assert.deepEqual(current.toStored(), before);
  });
});

describe('TokenSet redaction', () => {
  const ts = TokenSet.fromResponse(slackLikeResponse(), RECEIVED_MS);

  it('JSON.stringify shows which members exist, never a secret value', () => {
    const json = JSON.stringify(ts);
    assertNoSecret(json, 'JSON.stringify');
    const parsed = JSON.parse(json) as { tokens: Record<string, unknown>; expires_at_ms: number };
    assert.equal(parsed.tokens.access_token, '[redacted]');
    assert.equal(parsed.tokens.refresh_token, '[redacted]');
    assert.equal(parsed.tokens.id_token, '[redacted]');
    assert.equal(parsed.tokens.token_type, 'bot');
    assert.deepEqual(parsed.tokens.team, { id: 'T123', name: 'Acme' });
    assert.equal(parsed.expires_at_ms, RECEIVED_MS + 43_200_000);
  });

  it('JSON.stringify of an object holding the token set is redacted too', () => {
    assertNoSecret(JSON.stringify({ credential: { oauth: ts } }), 'nested JSON.stringify');
  });

  it('util.inspect (console.log) is redacted, with and without hidden members', () => {
    assertNoSecret(inspect(ts), 'inspect');
    assertNoSecret(inspect(ts, { showHidden: true, depth: Number.POSITIVE_INFINITY }), 'inspect');
    assertNoSecret(inspect({ wrapped: [ts] }, { depth: Number.POSITIVE_INFINITY }), 'inspect');
    assert.match(inspect(ts), /^TokenSet /);
    assert.match(inspect(ts), /\[redacted\]/);
  });

  it('String() and template strings give a summary without secrets', () => {
    assertNoSecret(String(ts), 'String()');
    assertNoSecret(`${ts}`, 'template string');
    assert.match(String(ts), /^TokenSet\(bot, expires 2023-11-15T10:13:20\.500Z\)$/);
    const noExpiry = TokenSet.fromResponse({ access_token: ACCESS, token_type: 'Bearer' }, 0);
    assert.match(String(noExpiry), /^TokenSet\(Bearer, expires unknown\)$/);
  });

  it('console-style formatting (%o, %O, %s, %j) is redacted', () => {
    for (const directive of ['%o', '%O', '%s', '%j', '%d']) {
      assertNoSecret(format(directive, ts), `util.format('${directive}')`);
    }
    assertNoSecret(format('token set:', ts), 'util.format with trailing argument');
  });

  it('spreading or listing keys exposes nothing', () => {
    assert.deepEqual(Object.keys(ts), []);
    assertNoSecret(JSON.stringify({ ...ts }), 'spread');
  });

  it('extra holds the non-secret members only, nested secrets redacted', () => {
    const extra = ts.extra;
    assertNoSecret(JSON.stringify(extra), 'extra');
    assertNoSecret(inspect(extra, { depth: Number.POSITIVE_INFINITY }), 'extra');
    assert.deepEqual(Object.keys(extra).sort(), [
      'authed_user',
      'bot_user_id',
      'ok',
      'scope',
      'team',
    ]);
    assert.deepEqual(extra.authed_user, {
      id: 'U1',
      scope: 'identify',
      access_token: '[redacted]',
      refresh_token: '[redacted]',
      token_type: 'user',
    });
  });

  it('the explicit accessors still return the secrets', () => {
    assert.equal(ts.accessToken, ACCESS);
    assert.equal(ts.refreshToken, REFRESH);
    assert.equal(ts.get('id_token'), ID_TOKEN);
  });
});

describe('TokenSet.toStored / fromStored', () => {
  it('round-trips, also through JSON', () => {
    const ts = TokenSet.fromResponse(slackLikeResponse(), RECEIVED_MS);
    const stored = ts.toStored();
    assert.deepEqual(TokenSet.fromStored(stored).toStored(), stored);
    const viaJson = JSON.parse(JSON.stringify(stored)) as StoredTokenSet;
    const back = TokenSet.fromStored(viaJson);
    assert.deepEqual(back.toStored(), stored);
    assert.equal(back.accessToken, ACCESS);
    assert.equal(back.expiresAtMs, RECEIVED_MS + 43_200_000);
    assert.equal(back.receivedAtMs, RECEIVED_MS);
  });

  it('round-trips an unknown expiry as null', () => {
    const ts = TokenSet.fromResponse({ access_token: ACCESS, token_type: 'Bearer' }, RECEIVED_MS);
    const back = TokenSet.fromStored(ts.toStored());
    assert.equal(back.expiresAt, undefined);
    assert.equal(back.toStored().expires_at_ms, null);
  });

  it('hands out copies: changing the stored form does not change the token set', () => {
    const ts = TokenSet.fromResponse(
      { access_token: ACCESS, token_type: 'Bearer', refresh_token: REFRESH },
      RECEIVED_MS,
    );
    const stored = ts.toStored();
    stored.tokens.refresh_token = 'tampered';
    assert.equal(ts.refreshToken, REFRESH);
    const rebuilt = TokenSet.fromStored(stored);
    stored.tokens.access_token = 'tampered';
    assert.equal(rebuilt.accessToken, ACCESS);
  });

  const good = {
    tokens: { access_token: ACCESS, token_type: 'Bearer' },
    expires_at_ms: RECEIVED_MS + 60_000,
    received_at_ms: RECEIVED_MS,
  };
  const malformed: Array<[string, unknown]> = [
    ['null', null],
    ['undefined', undefined],
    ['a string', 'tokens'],
    ['no tokens', { expires_at_ms: null, received_at_ms: 1 }],
    ['tokens null', { ...good, tokens: null }],
    ['tokens an array', { ...good, tokens: [ACCESS] }],
    ['no access_token', { ...good, tokens: { token_type: 'Bearer' } }],
    ['access_token a number', { ...good, tokens: { access_token: 42, token_type: 'Bearer' } }],
    ['no token_type', { ...good, tokens: { access_token: ACCESS } }],
    [
      'refresh_token not a string',
      { ...good, tokens: { ...good.tokens, refresh_token: { value: REFRESH } } },
    ],
    ['expires_at_ms missing', { tokens: good.tokens, received_at_ms: RECEIVED_MS }],
    ['expires_at_ms a string', { ...good, expires_at_ms: '1700000060500' }],
    ['expires_at_ms NaN', { ...good, expires_at_ms: Number.NaN }],
    ['expires_at_ms Infinity', { ...good, expires_at_ms: Number.POSITIVE_INFINITY }],
    ['received_at_ms missing', { tokens: good.tokens, expires_at_ms: null }],
    ['received_at_ms a string', { ...good, received_at_ms: '1700000000500' }],
    [
      'the old seconds-based shape',
      { tokens: good.tokens, expires_at: 1_700_000_060, received_at: 1_700_000_000 },
    ],
  ];
  for (const [name, value] of malformed) {
    it(`rejects a malformed stored form: ${name}`, () => {
      assert.throws(
        () => TokenSet.fromStored(value as StoredTokenSet),
        (error: unknown) => {
          assert.ok(error instanceof TypeError);
          assert.match(error.message, /stored token set is malformed/);
          assertNoSecret(error.message, 'fromStored error');
          return true;
        },
      );
    });
  }

  it('accepts the well-formed control case', () => {
    assert.equal(TokenSet.fromStored(good).accessToken, ACCESS);
  });
});

describe('TokenSet accessors', () => {
  const ts = TokenSet.fromResponse(
    { access_token: ACCESS, token_type: 'bearer', expires_in: 3600, scope: 'a b' },
    RECEIVED_MS,
  );

  it('lifetimeSeconds is the lifetime as issued', () => {
    assert.equal(ts.lifetimeSeconds, 3600);
  });

  it('secondsLeft counts down from expiry and goes negative after it', () => {
    assert.equal(ts.secondsLeft(RECEIVED_MS), 3600);
    assert.equal(ts.secondsLeft(RECEIVED_MS + 600_000), 3000);
    assert.equal(ts.secondsLeft(RECEIVED_MS + 3_600_000), 0);
    assert.equal(ts.secondsLeft(RECEIVED_MS + 3_601_500), -1.5);
  });

  it('authorizationScheme spells any bearer as Bearer and keeps other types as sent', () => {
    assert.equal(ts.tokenType, 'bearer');
    assert.equal(ts.authorizationScheme, 'Bearer');
    for (const type of ['Bearer', 'BEARER', 'bEaReR']) {
      const other = TokenSet.fromResponse({ access_token: ACCESS, token_type: type }, RECEIVED_MS);
      assert.equal(other.authorizationScheme, 'Bearer');
      assert.equal(other.tokenType, type);
    }
    const mac = TokenSet.fromResponse({ access_token: ACCESS, token_type: 'MAC' }, RECEIVED_MS);
    assert.equal(mac.authorizationScheme, 'MAC');
  });

  it('scope and refreshToken reflect the response', () => {
    assert.equal(ts.scope, 'a b');
    assert.equal(ts.refreshToken, undefined);
  });
});
