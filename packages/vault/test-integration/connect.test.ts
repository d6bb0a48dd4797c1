/**
 * The connect flow (authorization code + PKCE) end to end, browser side driven
 * with fetch against a vault and the fake provider in this process: the happy
 * paths, then every way a callback must be refused without storing anything
 * (forged, replayed, expired state; another browser; a wrong PKCE verifier; the
 * user saying no), `returnTo` and its allowlist, connect links that cannot be
 * reused, what `GET /v1/connect-sessions/:id` reports, and a provider that
 * leaves out the refresh token. Every vault's log is checked for secrets when
 * it closes (support/vault-harness.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { assertError, startTestVault, type TestVault } from './support/vault-harness.ts';

const ALLOWED_ORIGIN = 'https://app.example.test';

/** Nothing was stored: no credential, and the provider exchanged no code. */
async function assertNothingStored(
  t: TestVault,
  credentialsBefore: number,
  exchangesBefore: number,
) {
  assert.equal((await t.credentialIds()).length, credentialsBefore, 'no credential was stored');
  assert.equal(t.provider.counters().codeExchanges, exchangesBefore, 'no code was exchanged');
}

/** The vault's result page, for a refused callback. */
function assertErrorPage(answer: { status: number; html: string }, title: RegExp | string) {
  assert.equal(answer.status, 400, `a refused callback answers 400: ${answer.html.slice(0, 300)}`);
  assert.match(answer.html, /data-testid="connect-result"/);
  assert.match(answer.html, /result-error/);
  assert.match(answer.html, typeof title === 'string' ? new RegExp(`<h1>${title}</h1>`) : title);
}

describe('connect flow: happy paths', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ autoApprove: true });
  });
  after(async () => {
    await t?.close();
  });

  test('auto-approve: the callback stores a credential and shows a result page', async () => {
    const started = await t.startConnect();
    assert.match(started.sessionId, /^cs_/);
    assert.equal(started.authorizationUrl.origin, t.provider.url);
    assert.equal(started.authorizationUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.match(started.authorizationUrl.searchParams.get('code_challenge') ?? '', /^[\w-]{43}$/);
    assert.equal(
      started.authorizationUrl.searchParams.get('redirect_uri'),
      `${t.url}/oauth/callback`,
    );
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const answer = await t.callback(back, started.cookie);
    assert.equal(answer.status, 200);
    assert.match(answer.html, /<h1>Account connected<\/h1>/);
    const credentialId = /credential (cr_[\w-]+)/.exec(answer.html)?.[1];
    assert.ok(credentialId !== undefined, 'the page names the credential');

    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.status, 200);
    assert.equal(session.json.status, 'completed');
    assert.equal(session.json.credentialId, credentialId);
    assert.equal(session.json.error, null);

    const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
    assert.equal(credential.status, 200);
    assert.equal(credential.json.status, 'active');
    assert.equal(credential.json.authClientId, t.authClientId);
    assert.equal(credential.json.flags.missingRefreshToken, false);

    const token = await t.api('POST', `/v1/credentials/${credentialId}/access-token`);
    assert.equal(token.status, 200);
    assert.ok(t.provider.issuedSecrets().includes(token.json.access_token));
    const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
    assert.deepEqual(
      events.json.events.map((e: { type: string }) => e.type),
      ['connected'],
    );
    assert.equal(events.json.events[0].data.source, 'connect');
    assert.equal(t.provider.counters().codeExchanges, 1);
  });

  test('the cookie binding the flow is HttpOnly and SameSite=Lax', async () => {
    const created = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId },
    });
    const response = await fetch(created.json.url, { redirect: 'manual' });
    await response.arrayBuffer();
    const cookie = response.headers.getSetCookie().find((c) => c.startsWith('tw_connect='));
    assert.ok(cookie !== undefined);
    assert.match(cookie, /HttpOnly/i);
    assert.match(cookie, /SameSite=Lax/i);
    assert.match(cookie, /Path=\//i);
    assert.equal(response.headers.get('cache-control'), 'no-store');
  });

  test('the PKCE verifier is stored encrypted while the flow runs, and dropped after', async () => {
    const started = await t.startConnect();
    const row = await t.connectSessionRow(started.sessionId);
    assert.ok(row !== undefined);
    assert.equal(row.status, 'started');
    assert.ok(row.verifier_enc !== null);
    assert.ok(row.verifier_enc.startsWith('tw1.'), 'verifier_enc is an encrypted envelope');
    const verifier = t.cipher.decrypt(row.verifier_enc, `connect_session:${row.id}`);
    assert.match(verifier, /^[\w.~-]{43,128}$/);
    assert.ok(!row.verifier_enc.includes(verifier));
    // Neither the state nor the browser cookie is stored as such: only their hashes.
    assert.match(row.state_hash ?? '', /^[0-9a-f]{64}$/);
    assert.match(row.browser_hash ?? '', /^[0-9a-f]{64}$/);
    assert.notEqual(row.state_hash, started.state);

    const back = await t.authorizeAtProvider(started.authorizationUrl);
    assert.equal((await t.callback(back, started.cookie)).status, 200);
    const done = await t.connectSessionRow(started.sessionId);
    assert.equal(done?.verifier_enc, null, 'the verifier is not kept after the exchange');

    // Nowhere in the database files in clear: not the verifier, the state, the cookie or a token.
    assert.ok(t.dataDir !== undefined);
    const files = (await readdir(t.dataDir)).filter((name) => name.startsWith('vault.sqlite'));
    assert.ok(files.length > 0);
    const contents = Buffer.concat(
      await Promise.all(files.map((name) => readFile(join(t.dataDir as string, name)))),
    ).toString('latin1');
    for (const secret of [verifier, started.state, started.cookie, ...t.provider.issuedSecrets()])
      assert.ok(!contents.includes(secret), 'no secret in clear in the database files');
  });
});

describe('connect flow: the consent page', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ autoApprove: false });
  });
  after(async () => {
    await t?.close();
  });

  test('approving on the consent page connects the account', async () => {
    const credentialId = await t.connectAccount();
    assert.match(credentialId, /^cr_/);
    const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
    assert.equal(credential.json.status, 'active');
  });

  test('denying on the consent page: "Access denied", the session failed, nothing stored', async () => {
    const credentials = (await t.credentialIds()).length;
    const exchanges = t.provider.counters().codeExchanges;
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl, 'deny');
    assert.equal(new URL(back).searchParams.get('error'), 'access_denied');
    const answer = await t.callback(back, started.cookie);
    assertErrorPage(answer, 'Access denied');
    assert.match(answer.html, /declined access/);
    await assertNothingStored(t, credentials, exchanges);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'failed');
    assert.equal(session.json.credentialId, null);
    assert.equal(session.json.error.code, 'invalid_authorization_response');
    assert.equal(typeof session.json.error.message, 'string');
  });
});

describe('connect flow: refused callbacks', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ autoApprove: true });
  });
  after(async () => {
    await t?.close();
  });

  test('a forged (random) state is refused and changes nothing', async () => {
    const credentials = (await t.credentialIds()).length;
    const started = await t.startConnect();
    const back = new URL(await t.authorizeAtProvider(started.authorizationUrl));
    const exchanges = t.provider.counters().codeExchanges;
    back.searchParams.set('state', randomBytes(32).toString('base64url'));
    const answer = await t.callback(back.href, started.cookie);
    assertErrorPage(answer, 'Unknown sign-in');
    await assertNothingStored(t, credentials, exchanges);
    // The real flow is untouched by the forgery.
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'pending');
  });

  test('a callback without state is refused', async () => {
    const credentials = (await t.credentialIds()).length;
    const exchanges = t.provider.counters().codeExchanges;
    const started = await t.startConnect();
    const back = new URL(await t.authorizeAtProvider(started.authorizationUrl));
    back.searchParams.delete('state');
    assertErrorPage(await t.callback(back.href, started.cookie), 'Missing state');
    await assertNothingStored(t, credentials, exchanges);
  });

  test('a replayed callback is refused; still exactly one credential', async () => {
    const credentials = (await t.credentialIds()).length;
    const exchanges = t.provider.counters().codeExchanges;
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const first = await t.callback(back, started.cookie);
    assert.equal(first.status, 200);
    const second = await t.callback(back, started.cookie);
    assertErrorPage(second, 'Already used');
    assert.equal((await t.credentialIds()).length, credentials + 1, 'exactly one credential');
    assert.equal(t.provider.counters().codeExchanges, exchanges + 1, 'the code was exchanged once');
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(
      session.json.status,
      'completed',
      'the replay did not spoil the completed session',
    );
  });

  test('the same callback sent five times at once: one credential, four refusals', async () => {
    const credentials = (await t.credentialIds()).length;
    const exchanges = t.provider.counters().codeExchanges;
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => t.callback(back, started.cookie)),
    );
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 400, 400, 400, 400]);
    for (const answer of answers.filter((a) => a.status === 400))
      assertErrorPage(answer, 'Already used');
    assert.equal((await t.credentialIds()).length, credentials + 1);
    assert.equal(t.provider.counters().codeExchanges, exchanges + 1);
  });

  test('an expired connect session is refused at the callback', async () => {
    const credentials = (await t.credentialIds()).length;
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const exchanges = t.provider.counters().codeExchanges;
    await t.vault.store.db
      .updateTable('connect_sessions')
      .set({ expires_at: Date.now() - 1000 })
      .where('id', '=', started.sessionId)
      .execute();
    assertErrorPage(await t.callback(back, started.cookie), 'Expired');
    await assertNothingStored(t, credentials, exchanges);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'failed');
    assert.match(session.json.error.message, /expired/);
  });

  test('the callback without the browser cookie is refused, and burns the state', async () => {
    const credentials = (await t.credentialIds()).length;
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const exchanges = t.provider.counters().codeExchanges;
    assertErrorPage(await t.callback(back), 'Different browser');
    await assertNothingStored(t, credentials, exchanges);
    // The state is single use: the right browser cannot use it afterwards either.
    assertErrorPage(await t.callback(back, started.cookie), 'Already used');
    await assertNothingStored(t, credentials, exchanges);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'failed');
  });

  test("the callback with another browser's cookie is refused", async () => {
    const credentials = (await t.credentialIds()).length;
    const mine = await t.startConnect();
    const theirs = await t.startConnect();
    const back = await t.authorizeAtProvider(mine.authorizationUrl);
    const exchanges = t.provider.counters().codeExchanges;
    assertErrorPage(await t.callback(back, theirs.cookie), 'Different browser');
    assertErrorPage(
      await t.callback(back, randomBytes(32).toString('base64url')),
      /Already used|Different browser/,
    );
    await assertNothingStored(t, credentials, exchanges);
  });

  test('a wrong PKCE verifier: the provider refuses the exchange, nothing stored', async () => {
    const credentials = (await t.credentialIds()).length;
    const started = await t.startConnect();
    // Tamper with the stored verifier: a valid envelope (same key, same row) of another verifier.
    const forged = randomBytes(32).toString('base64url');
    await t.vault.store.db
      .updateTable('connect_sessions')
      .set({ verifier_enc: t.cipher.encrypt(forged, `connect_session:${started.sessionId}`) })
      .where('id', '=', started.sessionId)
      .execute();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const before = t.provider.counters();
    const answer = await t.callback(back, started.cookie);
    assertErrorPage(answer, 'Could not connect');
    const after = t.provider.counters();
    assert.equal(
      after.tokenRequests.authorization_code,
      before.tokenRequests.authorization_code + 1,
    );
    assert.equal(after.invalidGrants, before.invalidGrants + 1, 'the provider said invalid_grant');
    await assertNothingStored(t, credentials, before.codeExchanges);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'failed');
    assert.equal(typeof session.json.error.code, 'string');
    const row = await t.connectSessionRow(started.sessionId);
    assert.equal(row?.verifier_enc, null);
  });

  test('an unknown connect session id answers a 400 page', async () => {
    const answer = await t.openConnectLink(
      `${t.url}/connect/cs_${randomBytes(16).toString('base64url')}`,
    );
    assert.equal(answer.status, 400);
    assert.match(answer.html, /not valid/);
    assert.equal(answer.location, undefined);
    assert.equal(answer.cookie, undefined);
  });

  test('regression: a second flow started in the same browser does not break the first', async () => {
    const first = await t.startConnect();
    const created = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId },
    });
    // The same browser opens the second link, sending the cookie it already holds.
    const second = await t.openConnectLink(created.json.url, first.cookie);
    assert.equal(second.status, 302);
    assert.ok(second.location !== undefined);
    const secondBack = await t.authorizeAtProvider(new URL(second.location));
    const firstBack = await t.authorizeAtProvider(first.authorizationUrl);
    assert.equal((await t.callback(firstBack, first.cookie)).status, 200);
    assert.equal((await t.callback(secondBack, first.cookie)).status, 200);
    const sessions = await Promise.all(
      [first.sessionId, created.json.id].map((id) => t.api('GET', `/v1/connect-sessions/${id}`)),
    );
    assert.deepEqual(
      sessions.map((s) => s.json.status),
      ['completed', 'completed'],
    );
  });

  test('a used connect link cannot be restarted', async () => {
    const started = await t.startConnect();
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    assert.equal((await t.callback(back, started.cookie)).status, 200);
    const again = await t.openConnectLink(started.connectUrl);
    assert.equal(again.status, 400);
    assert.match(again.html, /already used/);
    assert.equal(again.location, undefined);

    // A failed flow's link cannot be restarted either.
    const failed = await t.startConnect();
    assertErrorPage(
      await t.callback(await t.authorizeAtProvider(failed.authorizationUrl)),
      'Different browser',
    );
    assert.equal((await t.openConnectLink(failed.connectUrl)).status, 400);

    // Nor an expired one.
    const created = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId },
    });
    await t.vault.store.db
      .updateTable('connect_sessions')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', created.json.id)
      .execute();
    const expired = await t.openConnectLink(created.json.url);
    assert.equal(expired.status, 400);
    assert.match(expired.html, /expired/);
  });

  test('reopening a link before the callback starts over: the earlier state is dead', async () => {
    const credentials = (await t.credentialIds()).length;
    const first = await t.startConnect();
    const second = await t.openConnectLink(first.connectUrl);
    assert.equal(second.status, 302);
    assert.ok(second.location !== undefined && second.cookie !== undefined);
    const secondUrl = new URL(second.location);
    assert.notEqual(secondUrl.searchParams.get('state'), first.state);
    t.rememberSecret(secondUrl.searchParams.get('state') ?? '', { allowedInAnswers: true });

    const staleBack = await t.authorizeAtProvider(first.authorizationUrl);
    assertErrorPage(await t.callback(staleBack, first.cookie), 'Unknown sign-in');
    const back = await t.authorizeAtProvider(secondUrl);
    assert.equal((await t.callback(back, second.cookie)).status, 200);
    assert.equal((await t.credentialIds()).length, credentials + 1);
  });
});

describe('connect flow: returnTo', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ env: { TOKENWARDEN_RETURN_TO_ALLOWLIST: ALLOWED_ORIGIN } });
  });
  after(async () => {
    await t?.close();
  });

  test('returnTo outside the allowlist is refused at session creation', async () => {
    for (const returnTo of [
      'https://evil.example.test/done',
      'https://app.example.test.evil.test/done',
      'https://app.example.test@evil.example.test/done',
      'http://app.example.test/done',
      'https://app.example.test:8443/done',
      'javascript:alert(1)',
      '//evil.example.test/done',
      'not a url',
    ]) {
      const answer = await t.api('POST', '/v1/connect-sessions', {
        body: { authClientId: t.authClientId, returnTo },
      });
      assertError(answer, 400, 'validation_failed');
    }
    assert.equal(
      (await t.vault.store.db.selectFrom('connect_sessions').select('id').execute()).length,
      0,
      'no session was created',
    );
  });

  test('an allowlisted returnTo gets a redirect with credentialId', async () => {
    const started = await t.startConnect({ returnTo: `${ALLOWED_ORIGIN}/done?from=test` });
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const answer = await t.callback(back, started.cookie);
    assert.equal(answer.status, 302);
    assert.ok(answer.location !== undefined);
    const target = new URL(answer.location);
    assert.equal(target.origin, ALLOWED_ORIGIN);
    assert.equal(target.pathname, '/done');
    assert.equal(target.searchParams.get('from'), 'test');
    assert.equal(target.searchParams.get('status'), 'connected');
    const credentialId = target.searchParams.get('credentialId');
    assert.match(credentialId ?? '', /^cr_/);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.credentialId, credentialId);
    assert.equal(target.searchParams.get('code'), null, 'the code does not travel on');
    assert.equal(target.searchParams.get('state'), null, 'the state does not travel on');
  });

  test("the vault's own URL is always allowed; a failure redirects with error", async () => {
    const credentials = (await t.credentialIds()).length;
    const started = await t.startConnect({ returnTo: `${t.url}/` });
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    const answer = await t.callback(back); // no cookie: refused
    assert.equal(answer.status, 302);
    const target = new URL(answer.location ?? '');
    assert.equal(target.origin, t.url);
    assert.equal(target.searchParams.get('error'), 'invalid_authorization_response');
    assert.equal(target.searchParams.get('credentialId'), null);
    assert.equal((await t.credentialIds()).length, credentials);
  });
});

describe('connect flow: GET /v1/connect-sessions/:id', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault();
  });
  after(async () => {
    await t?.close();
  });

  test('pending, then expired', async () => {
    const created = await t.api('POST', '/v1/connect-sessions', {
      body: { authClientId: t.authClientId },
    });
    assert.equal(created.status, 201);
    assert.match(created.json.id, /^cs_/);
    assert.equal(created.json.url, `${t.url}/connect/${created.json.id}`);
    assert.equal(created.json.status, 'pending');
    const expiresIn = Date.parse(created.json.expiresAt) - Date.now();
    assert.ok(expiresIn > 9 * 60_000 && expiresIn <= 10 * 60_000, 'a session lives ten minutes');

    const pending = await t.api('GET', `/v1/connect-sessions/${created.json.id}`);
    assert.equal(pending.status, 200);
    assert.equal(pending.json.status, 'pending');
    assert.equal(pending.json.credentialId, null);
    assert.equal(pending.json.error, null);
    assert.equal(pending.json.expiresAt, created.json.expiresAt);

    await t.vault.store.db
      .updateTable('connect_sessions')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', created.json.id)
      .execute();
    const expired = await t.api('GET', `/v1/connect-sessions/${created.json.id}`);
    assert.equal(expired.json.status, 'expired');
  });

  test('completed with the credential id; failed with the error', async () => {
    const ok = await t.startConnect();
    await t.callback(await t.authorizeAtProvider(ok.authorizationUrl), ok.cookie);
    const completed = await t.api('GET', `/v1/connect-sessions/${ok.sessionId}`);
    assert.equal(completed.json.status, 'completed');
    assert.match(completed.json.credentialId, /^cr_/);

    const bad = await t.startConnect();
    await t.callback(await t.authorizeAtProvider(bad.authorizationUrl));
    const failed = await t.api('GET', `/v1/connect-sessions/${bad.sessionId}`);
    assert.equal(failed.json.status, 'failed');
    assert.equal(failed.json.credentialId, null);
    assert.deepEqual(Object.keys(failed.json.error).sort(), ['code', 'message']);
  });

  test('an unknown session id, or an unknown auth client, answers 404', async () => {
    assertError(await t.api('GET', '/v1/connect-sessions/cs_nope'), 404, 'not_found');
    assertError(
      await t.api('POST', '/v1/connect-sessions', { body: { authClientId: 'ac_nope' } }),
      404,
      'not_found',
    );
    assertError(
      await t.api('POST', '/v1/connect-sessions', { body: {} }),
      400,
      'validation_failed',
    );
  });
});

describe('connect flow: a provider that leaves out the refresh token', () => {
  test('microsoft profile against the google rule: credential flagged missingRefreshToken', async () => {
    // The fake's google personality issues a refresh token only for access_type=offline
    // with prompt=consent, which the microsoft profile (refresh token expected) does not send.
    const t = await startTestVault({ personality: 'google', profile: 'microsoft' });
    try {
      const credentialId = await t.connectAccount();
      const credential = await t.api('GET', `/v1/credentials/${credentialId}`);
      assert.equal(credential.json.flags.missingRefreshToken, true);
      assert.equal((await t.tokensOf(credentialId)).refreshToken, undefined);
      const events = await t.api('GET', `/v1/events?credentialId=${credentialId}`);
      assert.equal(events.json.events[0].data.missingRefreshToken, true);
    } finally {
      await t.close();
    }
  });

  test('google profile (access_type=offline, prompt=consent): a refresh token, no flag', async () => {
    const t = await startTestVault({ personality: 'google', profile: 'google' });
    try {
      const started = await t.startConnect();
      assert.equal(started.authorizationUrl.searchParams.get('access_type'), 'offline');
      assert.equal(started.authorizationUrl.searchParams.get('prompt'), 'consent');
      const answer = await t.callback(
        await t.authorizeAtProvider(started.authorizationUrl),
        started.cookie,
      );
      assert.equal(answer.status, 200, answer.html);
      const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
      const credential = await t.api('GET', `/v1/credentials/${session.json.credentialId}`);
      assert.equal(credential.json.flags.missingRefreshToken, false);
      assert.ok((await t.tokensOf(session.json.credentialId)).refreshToken !== undefined);
    } finally {
      await t.close();
    }
  });
});

describe('connect flow on PostgreSQL', () => {
  let t: TestVault;
  before(async () => {
    t = await startTestVault({ database: 'postgres', autoApprove: false });
  });
  after(async () => {
    await t?.close();
  });

  test('connects once; the verifier is encrypted; a replay is refused', async () => {
    const started = await t.startConnect();
    const row = await t.connectSessionRow(started.sessionId);
    assert.ok(row?.verifier_enc?.startsWith('tw1.'));
    const back = await t.authorizeAtProvider(started.authorizationUrl);
    assert.equal((await t.callback(back, started.cookie)).status, 200);
    assertErrorPage(await t.callback(back, started.cookie), 'Already used');
    assert.equal((await t.credentialIds()).length, 1);
    assert.equal(t.provider.counters().codeExchanges, 1);
    const session = await t.api('GET', `/v1/connect-sessions/${started.sessionId}`);
    assert.equal(session.json.status, 'completed');
    assert.equal((await t.connectSessionRow(started.sessionId))?.verifier_enc, null);
  });
});
