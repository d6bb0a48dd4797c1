/**
 * Webhooks end to end: subscriptions per tenant, the outbox written with each
 * event, signed deliveries to a receiver on 127.0.0.1 (node:http) that checks
 * every signature, retries with backoff, the outbox surviving a restart, claims
 * shared by two vaults on one database (SQLite and PostgreSQL), the claim
 * protocol at the repository level on both engines, and the web UI's Webhooks
 * section in chromium.
 *
 * Events come from real actions through the harness (`startTestVault`): a
 * connect flow, a forced refresh, a refresh after the fake provider revoked the
 * grant, a delete. Signing secrets are registered with `rememberSecret`, so the
 * harness fails a test when one reaches a log line or a later API answer.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadProviderCatalog } from '@tokenwarden/oauth';
import { chromium } from 'playwright-core';
import { loadConfig } from '../src/config.ts';
import { Keyring, parseKeyList } from '../src/crypto/keyring.ts';
import { type RunningVault, startVault } from '../src/server.ts';
import { VaultStore } from '../src/store/store.ts';
import { WEBHOOK_EVENT_TYPES } from '../src/store/webhooks.ts';
import { verifySignature } from '../src/webhooks/signature.ts';
import {
  assertPostgresReachable,
  dropSchema,
  engines,
  POSTGRES_URL,
  randomSchemaName,
} from './support/databases.ts';
import { assertError, type Json, startTestVault, type TestVault } from './support/vault-harness.ts';

// ------------------------------------------------------------------- helpers

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  json: Json;
  at: number;
}

interface Receiver {
  url: string;
  port: number;
  received: Received[];
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1. `answer` gives the status for the n-th
 * request (1-based); 0 never answers (a hung receiver). Default 200.
 */
async function startReceiver(
  options: { port?: number; answer?: (n: number) => number | Promise<number> } = {},
): Promise<Receiver> {
  const received: Received[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ headers: request.headers, body, json: JSON.parse(body), at: Date.now() });
      const status = (await options.answer?.(received.length)) ?? 200;
      if (status !== 0) response.writeHead(status, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hooks/tokenwarden?source=test`,
    port,
    received,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `probe` until it returns something other than undefined/false, or fails naming `what`. */
async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastSeen: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value;
      lastSeen = value;
    } catch (error) {
      lastSeen = error;
    }
    if (Date.now() > deadline)
      assert.fail(`expected ${what} within ${timeoutMs} ms (last seen: ${String(lastSeen)})`);
    await sleep(50);
  }
}

/** The delivery is signed with `secret`, and its headers agree with its body. */
function assertSigned(delivery: Received, secret: string): void {
  const header = delivery.headers['tokenwarden-signature'];
  assert.equal(typeof header, 'string', 'a tokenwarden-signature header');
  const check = verifySignature(secret, delivery.body, header as string);
  assert.deepEqual(check.valid, true, `signature: ${JSON.stringify(check)}`);
  assert.match(header as string, /^t=\d+,v1=[0-9a-f]{64}$/);
  assert.equal(delivery.headers['content-type'], 'application/json');
  assert.equal(delivery.headers['tokenwarden-delivery-id'], delivery.json.id);
  assert.equal(delivery.headers['tokenwarden-event-id'], delivery.json.event.id);
  assert.equal(delivery.headers['tokenwarden-event-type'], delivery.json.event.type);
  assert.match(String(delivery.headers['tokenwarden-delivery-attempt']), /^\d+$/);
  assert.deepEqual(Object.keys(delivery.json).sort(), ['event', 'id']);
  assert.deepEqual(Object.keys(delivery.json.event).sort(), [
    'at',
    'authClientId',
    'credentialId',
    'data',
    'id',
    'type',
  ]);
}

/** The webhook-delivery counter of one vault, by outcome. */
async function deliveryCount(vaultUrl: string, outcome: string): Promise<number> {
  const text = await (await fetch(`${vaultUrl}/metrics`)).text();
  const match = new RegExp(
    `^tokenwarden_webhook_deliveries_total\\{outcome="${outcome}"\\} (\\d+)$`,
    'm',
  ).exec(text);
  return match?.[1] === undefined ? 0 : Number(match[1]);
}

/** Creates a webhook; returns its id and secret (remembered: never in a log or a later answer). */
async function createWebhook(
  tv: TestVault,
  body: { url: string; events?: string[] },
  key?: string,
): Promise<{ id: string; secret: string; json: Json }> {
  const created = await tv.api('POST', '/v1/webhooks', {
    body,
    ...(key === undefined ? {} : { key }),
  });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.headers.get('cache-control'), 'no-store');
  assert.match(created.json.secret, /^whsec_[A-Za-z0-9_-]{43}$/);
  tv.rememberSecret(created.json.secret);
  return { id: created.json.id, secret: created.json.secret, json: created.json };
}

/** Imports a token set (a `connected` event); its tokens are remembered secrets. */
async function importCredential(
  tv: TestVault,
  options: { key?: string; authClientId?: string } = {},
): Promise<{ id: string; tokens: string[] }> {
  const access = tv.rememberSecret(`imported-at-${randomBytes(12).toString('base64url')}`);
  const refresh = tv.rememberSecret(`imported-rt-${randomBytes(12).toString('base64url')}`);
  const created = await tv.api('POST', '/v1/credentials', {
    ...(options.key === undefined ? {} : { key: options.key }),
    body: {
      authClientId: options.authClientId ?? tv.authClientId,
      tokens: {
        access_token: access,
        token_type: 'Bearer',
        refresh_token: refresh,
        expires_in: 3600,
      },
    },
  });
  assert.equal(created.status, 201, created.text);
  return { id: created.json.id, tokens: [access, refresh] };
}

function newMasterKeys(): string {
  return `wh:${randomBytes(32).toString('base64')}`;
}

/** Log lines captured in memory. */
function captureLogs(): { lines: string[]; destination: { write(line: string): void } } {
  const lines: string[] = [];
  return { lines, destination: { write: (line: string) => void lines.push(line) } };
}

const FAST = { TOKENWARDEN_WEBHOOK_INTERVAL_MS: '50' };

// --------------------------------------------------------------------- tests

describe('webhooks', { timeout: 120_000 }, () => {
  test('events of real actions arrive signed, in full, filtered by type', async (t) => {
    const tv = await startTestVault({ env: FAST });
    t.after(() => tv.close());
    const all = await startReceiver();
    const some = await startReceiver();
    t.after(() => all.close());
    t.after(() => some.close());

    const everything = await createWebhook(tv, { url: all.url });
    assert.deepEqual(everything.json.events, [...WEBHOOK_EVENT_TYPES], 'default: all five');
    assert.equal(everything.json.lastDelivery, null);
    assert.equal(everything.json.url, all.url);
    const few = await createWebhook(tv, { url: some.url, events: ['revoked', 'reauth_required'] });
    assert.deepEqual(few.json.events, ['reauth_required', 'revoked']);
    assert.notEqual(everything.secret, few.secret);

    // connected, refreshed, keys_updated (not a webhook event), refresh_failed + reauth_required, revoked
    const credentialId = await tv.connectAccount();
    const refreshed = await tv.api('POST', `/v1/credentials/${credentialId}/refresh`);
    assert.equal(refreshed.status, 200, refreshed.text);
    const newAccess = tv.rememberSecret(`updated-at-${randomBytes(12).toString('base64url')}`);
    const updated = await tv.api('PUT', `/v1/credentials/${credentialId}/keys`, {
      body: { access_token: newAccess, expires_in: 3600 },
    });
    assert.equal(updated.status, 200, updated.text);
    const refreshToken = (await tv.tokensOf(credentialId)).refreshToken;
    assert.ok(refreshToken !== undefined);
    assert.equal(tv.provider.revokeGrant(refreshToken), true);
    assertError(
      await tv.api('POST', `/v1/credentials/${credentialId}/refresh`),
      409,
      'reauth_required',
    );
    const deleted = await tv.api('DELETE', `/v1/credentials/${credentialId}`);
    assert.equal(deleted.status, 204);

    await eventually('five deliveries to the catch-all webhook', () => all.received.length >= 5);
    await eventually('two deliveries to the filtered webhook', () => some.received.length >= 2);
    await sleep(300);
    assert.equal(all.received.length, 5, 'nothing more, nothing twice');
    assert.equal(some.received.length, 2);

    const byEventId = (list: Received[]) =>
      [...list].sort((a, b) => Number(a.json.event.id) - Number(b.json.event.id));
    const allSorted = byEventId(all.received);
    assert.deepEqual(
      allSorted.map((delivery) => delivery.json.event.type),
      ['connected', 'refreshed', 'refresh_failed', 'reauth_required', 'revoked'],
    );
    assert.deepEqual(
      byEventId(some.received).map((delivery) => delivery.json.event.type),
      ['reauth_required', 'revoked'],
    );
    for (const delivery of all.received) {
      assertSigned(delivery, everything.secret);
      assert.equal(
        verifySignature(
          few.secret,
          delivery.body,
          delivery.headers['tokenwarden-signature'] as string,
        ).valid,
        false,
        "another webhook's secret does not verify it",
      );
      assert.equal(delivery.headers['tokenwarden-delivery-attempt'], '1');
      assert.equal(delivery.json.event.credentialId, credentialId);
      assert.equal(delivery.json.event.authClientId, tv.authClientId);
    }
    for (const delivery of some.received) assertSigned(delivery, few.secret);

    // The payload's event is the event as GET /v1/events shows it.
    const events = await tv.api('GET', '/v1/events?limit=100');
    const listed = (events.json.events as Json[]).filter((event) => event.type !== 'keys_updated');
    assert.ok(
      (events.json.events as Json[]).some((event) => event.type === 'keys_updated'),
      'keys_updated happened and was not sent',
    );
    assert.deepEqual(
      allSorted.map((delivery) => delivery.json.event),
      listed,
    );
    assert.equal(allSorted[3]?.json.event.data.reason !== undefined, true, 'the reason is in it');

    // One delivery id per (event, webhook); the same event to two webhooks has two ids.
    const ids = [...all.received, ...some.received].map((delivery) => delivery.json.id);
    assert.equal(new Set(ids).size, ids.length);
    assert.match(ids[0], /^whd_/);

    // Never a token or secret in a payload.
    const secrets = [
      ...tv.provider.issuedSecrets(),
      newAccess,
      tv.clientSecret,
      tv.adminKey,
      everything.secret,
      few.secret,
    ];
    for (const delivery of [...all.received, ...some.received])
      for (const secret of secrets)
        assert.ok(!delivery.body.includes(secret), 'no secret in a delivery body');

    // The list shows the last delivery, never the secret.
    const list = await tv.api('GET', '/v1/webhooks');
    assert.equal(list.status, 200);
    const shown = (list.json.webhooks as Json[]).find((webhook) => webhook.id === everything.id);
    assert.ok(shown !== undefined);
    assert.equal('secret' in shown, false);
    assert.equal(shown.lastDelivery.status, 'delivered');
    assert.equal(shown.lastDelivery.eventType, 'revoked');
    assert.equal(shown.lastDelivery.httpStatus, 200);
    assert.equal(shown.lastDelivery.attempts, 1);
    assert.equal(shown.lastDelivery.error, null);
    assert.ok(Date.parse(shown.lastDelivery.at) > 0);
    const one = await tv.api('GET', `/v1/webhooks/${few.id}`);
    assert.equal(one.json.lastDelivery.eventType, 'revoked');
    assert.equal('secret' in one.json, false);

    const deliveries = await tv.api('GET', `/v1/webhooks/${everything.id}/deliveries?limit=3`);
    assert.equal(deliveries.status, 200);
    assert.deepEqual(
      (deliveries.json.deliveries as Json[]).map((delivery) => delivery.eventType),
      ['revoked', 'reauth_required', 'refresh_failed'],
      'newest first, limited',
    );
    for (const delivery of deliveries.json.deliveries as Json[]) {
      assert.equal(delivery.status, 'delivered');
      assert.equal(delivery.attempts, 1);
      assert.equal(delivery.nextAttemptAt, null);
      assert.ok(delivery.deliveredAt !== null);
    }
    assert.equal(await deliveryCount(tv.url, 'delivered'), 7);
    assert.equal(await deliveryCount(tv.url, 'failed'), 0);
  });

  test('URLs and event lists are validated; tenants see only their own webhooks and events', async (t) => {
    const tv = await startTestVault({ env: FAST });
    t.after(() => tv.close());
    const receiverA = await startReceiver();
    const receiverB = await startReceiver();
    t.after(() => receiverA.close());
    t.after(() => receiverB.close());

    for (const [body, pattern] of [
      [{ url: 'ftp://example.com/hook' }, /https/],
      [{ url: 'https://user:pa55word@example.com/hook' }, /user name or password/],
      [{ url: 'http://hooks.example.com/hook' }, /https/],
      [{ url: 'https://example.com/hook#part' }, /fragment/],
      [{ url: '/relative' }, /absolute/],
      [{ url: 'https://example.com/', events: [] }, undefined],
      [{ url: 'https://example.com/', events: ['keys_updated'] }, undefined],
      [{ url: 'https://example.com/', events: ['refreshed', 'refreshed'] }, undefined],
      [{ url: 'https://example.com/', secret: 'mine' }, undefined],
      [{}, undefined],
    ] as Array<[Record<string, unknown>, RegExp | undefined]>) {
      const answer = await tv.api('POST', '/v1/webhooks', { body });
      assertError(answer, 400, 'validation_failed');
      if (pattern !== undefined) assert.match(answer.json.error.message, pattern);
      assert.ok(!answer.text.includes('pa55word'), 'a password in a URL is not echoed');
    }
    assert.deepEqual((await tv.api('GET', '/v1/webhooks')).json.webhooks, []);

    const mine = await createWebhook(tv, { url: receiverA.url });
    const other = await tv.createTenant('other');
    const otherClient = await tv.registerAuthClient({ key: other.key });
    const theirs = await createWebhook(
      tv,
      { url: receiverB.url, events: ['connected'] },
      other.key,
    );

    // Another tenant's webhook does not exist for this one, whatever the route.
    const listB = await tv.api('GET', '/v1/webhooks', { key: other.key });
    assert.deepEqual(
      (listB.json.webhooks as Json[]).map((webhook) => webhook.id),
      [theirs.id],
    );
    assertError(
      await tv.api('GET', `/v1/webhooks/${mine.id}`, { key: other.key }),
      404,
      'not_found',
    );
    assertError(
      await tv.api('GET', `/v1/webhooks/${mine.id}/deliveries`, { key: other.key }),
      404,
      'not_found',
    );
    assertError(
      await tv.api('DELETE', `/v1/webhooks/${mine.id}`, { key: other.key }),
      404,
      'not_found',
    );
    assertError(await tv.api('DELETE', `/v1/webhooks/${theirs.id}`), 404, 'not_found');
    assertError(await tv.api('GET', '/v1/webhooks', { key: null }), 401, 'unauthorized');

    // Each tenant's events go to its own webhooks only.
    const credentialA = await importCredential(tv);
    const credentialB = await importCredential(tv, { key: other.key, authClientId: otherClient });
    await eventually('a delivery to each tenant', () =>
      receiverA.received.length >= 1 && receiverB.received.length >= 1 ? true : undefined,
    );
    await sleep(300);
    assert.deepEqual(
      receiverA.received.map((delivery) => delivery.json.event.credentialId),
      [credentialA.id],
    );
    assert.deepEqual(
      receiverB.received.map((delivery) => delivery.json.event.credentialId),
      [credentialB.id],
    );
    assertSigned(receiverA.received[0] as Received, mine.secret);
    assertSigned(receiverB.received[0] as Received, theirs.secret);
    for (const delivery of [...receiverA.received, ...receiverB.received])
      for (const token of [...credentialA.tokens, ...credentialB.tokens])
        assert.ok(!delivery.body.includes(token), 'no imported token in a payload');

    // Deleting removes the subscription and its deliveries.
    const removed = await tv.api('DELETE', `/v1/webhooks/${mine.id}`);
    assert.equal(removed.status, 204);
    assertError(await tv.api('GET', `/v1/webhooks/${mine.id}`), 404, 'not_found');
    const rows = await tv.vault.store.db
      .selectFrom('webhook_deliveries')
      .select('id')
      .where('webhook_id', '=', mine.id)
      .execute();
    assert.deepEqual(rows, []);
    await importCredential(tv);
    await sleep(300);
    assert.equal(receiverA.received.length, 1, 'a deleted webhook gets nothing more');

    // A tenant has at most 25 webhooks.
    for (let i = 0; i < 24; i++)
      await createWebhook(tv, { url: `https://hooks.example.com/${i}` }, other.key);
    assertError(
      await tv.api('POST', '/v1/webhooks', {
        key: other.key,
        body: { url: 'https://example.com/' },
      }),
      409,
      'conflict',
    );
  });

  test('a failing receiver is retried with backoff until it answers 2xx; one that never does is given up', async (t) => {
    const tv = await startTestVault({
      env: {
        ...FAST,
        TOKENWARDEN_WEBHOOK_RETRY_SCHEDULE: '300ms,600ms',
        TOKENWARDEN_WEBHOOK_TIMEOUT_MS: '400',
      },
    });
    t.after(() => tv.close());
    const flaky = await startReceiver({ answer: (n) => (n <= 2 ? 500 : 200) });
    const broken = await startReceiver({ answer: () => 503 });
    const hung = await startReceiver({ answer: () => 0 });
    t.after(() => flaky.close());
    t.after(() => broken.close());
    t.after(() => hung.close());
    const flakyHook = await createWebhook(tv, { url: flaky.url, events: ['connected'] });
    const brokenHook = await createWebhook(tv, { url: broken.url, events: ['connected'] });
    const hungHook = await createWebhook(tv, { url: hung.url, events: ['connected'] });

    await importCredential(tv);
    await eventually('three attempts at the flaky receiver', () => flaky.received.length >= 3);
    await eventually('three attempts at the broken receiver', () => broken.received.length >= 3);
    await eventually('three attempts at the hung receiver', () => hung.received.length >= 3);
    const given = await eventually('the hung delivery to be given up', async () => {
      const answer = await tv.api('GET', `/v1/webhooks/${hungHook.id}`);
      return answer.json.lastDelivery?.status === 'gave_up' && answer.json.lastDelivery;
    });
    await sleep(800);
    assert.equal(flaky.received.length, 3, 'no attempt after the 2xx');
    assert.equal(broken.received.length, 3, 'no attempt after giving up');
    assert.equal(hung.received.length, 3);

    // The same delivery, the same body, every attempt freshly signed; the gaps grow.
    const [first, second, third] = flaky.received as [Received, Received, Received];
    for (const delivery of flaky.received) assertSigned(delivery, flakyHook.secret);
    assert.equal(second.json.id, first.json.id);
    assert.equal(third.body, first.body);
    assert.deepEqual(
      flaky.received.map((delivery) => delivery.headers['tokenwarden-delivery-attempt']),
      ['1', '2', '3'],
    );
    const gap1 = second.at - first.at;
    const gap2 = third.at - second.at;
    assert.ok(gap1 >= 230, `first retry after ~300 ms ±20 %, got ${gap1}`);
    assert.ok(gap2 >= 470, `second retry after ~600 ms ±20 %, got ${gap2}`);
    assert.ok(gap2 > gap1, 'backoff grows');

    const flakyState = (await tv.api('GET', `/v1/webhooks/${flakyHook.id}`)).json.lastDelivery;
    assert.equal(flakyState.status, 'delivered');
    assert.equal(flakyState.attempts, 3);
    assert.equal(flakyState.httpStatus, 200);
    assert.equal(flakyState.error, null);

    const brokenState = (await tv.api('GET', `/v1/webhooks/${brokenHook.id}`)).json.lastDelivery;
    assert.equal(brokenState.status, 'gave_up');
    assert.equal(brokenState.attempts, 3);
    assert.equal(brokenState.httpStatus, 503);
    assert.equal(brokenState.error, 'HTTP 503');
    assert.equal(brokenState.nextAttemptAt, null);

    assert.equal(given.attempts, 3);
    assert.equal(given.httpStatus, null);
    assert.equal(given.error, 'no answer within 400 ms');

    assert.equal(await deliveryCount(tv.url, 'delivered'), 1);
    assert.equal(await deliveryCount(tv.url, 'failed'), 6);
    assert.equal(await deliveryCount(tv.url, 'gave_up'), 2);
    assert.ok(
      tv.logs.some((line) => line.includes('webhook delivery given up')),
      'giving up is logged',
    );
  });

  test('the outbox survives a restart: a receiver down meanwhile gets the delivery afterwards', async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-webhooks-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const env = {
      ...FAST,
      TOKENWARDEN_DATA_DIR: dataDir,
      TOKENWARDEN_MASTER_KEYS: newMasterKeys(),
      TOKENWARDEN_WEBHOOK_RETRY_SCHEDULE: '1500ms,1500ms',
    };
    const tv = await startTestVault({ env });
    t.after(() => tv.close());
    // A port nobody listens on: the receiver is down.
    const placeholder = await startReceiver();
    const port = placeholder.port;
    await placeholder.close();

    const hook = await createWebhook(tv, { url: `http://127.0.0.1:${port}/down-for-now` });
    const credential = await importCredential(tv);
    const failed = await eventually('the first attempt to fail', async () => {
      const answer = await tv.api('GET', `/v1/webhooks/${hook.id}/deliveries`);
      const [delivery] = answer.json.deliveries as Json[];
      return delivery?.status === 'retrying' && delivery;
    });
    assert.equal(failed.attempts, 1);
    assert.equal(failed.httpStatus, null);
    assert.match(failed.error, /ECONNREFUSED/);
    await tv.vault.close();

    const receiver = await startReceiver({ port });
    t.after(() => receiver.close());
    const logs = captureLogs();
    let restarted: RunningVault | undefined;
    t.after(() => restarted?.close());
    restarted = await startVault(
      loadConfig({
        ...env,
        HOST: '127.0.0.1',
        PORT: '0',
        TOKENWARDEN_ADMIN_KEY: tv.adminKey,
        LOG_LEVEL: 'debug',
        // As the harness's vault: its auth client is on the fake provider's 127.0.0.1.
        TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
      }),
      { logDestination: logs.destination },
    );
    await eventually('the delivery after the restart', () => receiver.received.length >= 1, 8_000);
    const [delivery] = receiver.received as [Received];
    assertSigned(delivery, hook.secret);
    assert.equal(delivery.json.id, failed.id, 'the same delivery, from the database');
    assert.equal(delivery.json.event.credentialId, credential.id);
    assert.equal(delivery.headers['tokenwarden-delivery-attempt'], '2');

    const answer = await fetch(`${restarted.url}/v1/webhooks/${hook.id}/deliveries`, {
      headers: { authorization: `Bearer ${tv.adminKey}` },
    });
    const [state] = ((await answer.json()) as Json).deliveries as Json[];
    assert.equal(state.status, 'delivered');
    assert.equal(state.attempts, 2);
    assert.equal(state.httpStatus, 200);
    await restarted.close();
    for (const secret of [hook.secret, tv.adminKey, ...credential.tokens])
      assert.ok(!logs.lines.some((line) => line.includes(secret)), 'no secret in the second log');
  });

  for (const engine of ['sqlite', 'postgres'] as const) {
    test(`two vaults on one ${engine} database deliver each event once`, async (t) => {
      const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-webhooks-'));
      t.after(() => rm(dataDir, { recursive: true, force: true }));
      let database: Record<string, string> = {};
      if (engine === 'postgres') {
        await assertPostgresReachable();
        const schema = randomSchemaName();
        database = { DATABASE_URL: POSTGRES_URL, TOKENWARDEN_DATABASE_SCHEMA: schema };
        t.after(() => dropSchema(schema));
      }
      const shared = {
        ...FAST,
        ...database,
        TOKENWARDEN_DATA_DIR: dataDir,
        TOKENWARDEN_MASTER_KEYS: newMasterKeys(),
        TOKENWARDEN_WEBHOOK_CONCURRENCY: '2',
      };
      const tv = await startTestVault({ env: { ...shared, TOKENWARDEN_INSTANCE_ID: 'replica-a' } });
      t.after(() => tv.close());
      const logs = captureLogs();
      const second = await startVault(
        loadConfig({
          ...shared,
          HOST: '127.0.0.1',
          PORT: '0',
          TOKENWARDEN_ADMIN_KEY: tv.adminKey,
          TOKENWARDEN_INSTANCE_ID: 'replica-b',
          LOG_LEVEL: 'debug',
          // As the harness's vault: its auth client is on the fake provider's 127.0.0.1.
          TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
        }),
        { logDestination: logs.destination },
      );
      t.after(() => second.close());
      // The first four requests are held until all four arrived: a replica sends two at a
      // time, so the other must have claimed the others. Then answers are merely slow.
      const { promise: gate, resolve: open } = Promise.withResolvers<void>();
      const receiver = await startReceiver({
        answer: async (n) => {
          if (n === 4) open();
          if (n <= 4) await gate;
          await sleep(20);
          return 200;
        },
      });
      t.after(() => receiver.close());
      const hook = await createWebhook(tv, { url: receiver.url, events: ['connected'] });

      const count = 16;
      const credentials = new Set<string>();
      for (let i = 0; i < count; i++) credentials.add((await importCredential(tv)).id);
      await eventually(
        `${count} deliveries`,
        () => new Set(receiver.received.map((d) => d.json.id)).size >= count,
        15_000,
      );
      await sleep(500);
      assert.equal(receiver.received.length, count, 'each event delivered once, none twice');
      assert.deepEqual(
        new Set(receiver.received.map((delivery) => delivery.json.event.credentialId)),
        credentials,
      );
      for (const delivery of receiver.received) {
        assertSigned(delivery, hook.secret);
        assert.equal(delivery.headers['tokenwarden-delivery-attempt'], '1');
      }
      const byA = await deliveryCount(tv.url, 'delivered');
      const byB = await deliveryCount(second.url, 'delivered');
      assert.equal(byA + byB, count);
      assert.ok(byA > 0 && byB > 0, `both replicas delivered (a: ${byA}, b: ${byB})`);
      assert.ok(!logs.lines.some((line) => line.includes(hook.secret)), 'no secret in b’s log');
    });
  }

  for (const engine of engines()) {
    test(`claims on ${engine.name}: one event's outbox rows commit with it; a claim is exclusive until it expires`, async (t) => {
      const database = await engine.create(t);
      const handles = [await database.open(), await database.open(), await database.open()];
      const keyring = new Keyring(parseKeyList(newMasterKeys()));
      const catalog = await loadProviderCatalog();
      const stores = handles.map((handle) => new VaultStore(handle.db, keyring, catalog));
      const [store] = stores as [VaultStore];
      const T0 = 1_800_000_000_000;
      await store.tenants.ensureDefaultTenant(T0);
      const other = await store.tenants.create('other', T0);
      const { record } = await store.webhooks.create(
        'default',
        { url: 'https://hooks.example.com/tw', events: WEBHOOK_EVENT_TYPES },
        T0,
      );
      const outbox = async () =>
        store.db.selectFrom('webhook_deliveries').selectAll().orderBy('event_id').execute();
      const eventCount = async () =>
        Number(
          (
            await store.db
              .selectFrom('events')
              .select((eb) => eb.fn.countAll<number>().as('n'))
              .executeTakeFirstOrThrow()
          ).n,
        );

      // Rolled back with its event: never announced without being stored.
      await assert.rejects(
        store.db.transaction().execute(async (trx) => {
          await store.events.append({ type: 'connected', tenantId: 'default' }, T0, trx);
          assert.equal(
            (await trx.selectFrom('webhook_deliveries').select('id').execute()).length,
            1,
          );
          throw new Error('roll back');
        }),
        /roll back/,
      );
      assert.deepEqual(await outbox(), []);
      assert.equal(await eventCount(), 0);
      // Not a webhook event, or another tenant's: no delivery.
      await store.events.append({ type: 'keys_updated', tenantId: 'default' }, T0);
      await store.events.append({ type: 'revoked', tenantId: other.id }, T0);
      assert.deepEqual(await outbox(), []);

      await store.events.append({ type: 'revoked', tenantId: 'default', credentialId: 'cr_1' }, T0);
      const [row] = await outbox();
      assert.ok(row !== undefined);
      assert.equal(row.webhook_id, record.id);
      assert.equal(row.status, 'pending');
      assert.equal(row.next_attempt_at, T0);

      const [claimed] = await store.webhooks.claimDue('a', 10, 1000, T0);
      assert.equal(claimed?.id, row.id);
      assert.equal(claimed?.event?.type, 'revoked');
      assert.equal(claimed?.event?.credentialId, 'cr_1');
      assert.equal(claimed?.url, 'https://hooks.example.com/tw');
      assert.match(store.webhooks.decryptSecret(record.id, claimed?.secretEnc ?? ''), /^whsec_/);
      assert.deepEqual(await stores[1]?.webhooks.claimDue('b', 10, 1000, T0 + 999), [], 'held');
      // The owner died: its claim expires and another takes it over.
      const [takenOver] = (await stores[1]?.webhooks.claimDue('b', 10, 1000, T0 + 1000)) ?? [];
      assert.equal(takenOver?.id, row.id);
      const delivered = { outcome: 'delivered', httpStatus: 200 } as const;
      assert.equal(await store.webhooks.recordAttempt(row.id, 'a', delivered, T0 + 1001), false);
      assert.equal(
        await store.webhooks.recordAttempt(
          row.id,
          'b',
          { outcome: 'failed', httpStatus: 500, error: 'HTTP 500', nextAttemptAt: T0 + 5000 },
          T0 + 1001,
        ),
        true,
      );
      assert.deepEqual(await store.webhooks.claimDue('c', 10, 1000, T0 + 4999), [], 'not due yet');
      const [retry] = await store.webhooks.claimDue('c', 10, 1000, T0 + 5000);
      assert.equal(retry?.attempts, 1);
      assert.equal(await store.webhooks.recordAttempt(row.id, 'c', delivered, T0 + 5001), true);
      assert.deepEqual(await store.webhooks.claimDue('d', 10, 1000, T0 + 10 ** 9), [], 'final');
      const [final] = await outbox();
      assert.equal(final?.status, 'delivered');
      assert.equal(final?.attempts, 2);
      assert.equal(final?.lease_owner, null);

      // Many claimers at once over three connections: no row is claimed twice.
      const T1 = T0 + 10_000;
      for (let i = 0; i < 60; i++)
        await store.events.append({ type: 'connected', tenantId: 'default' }, T1);
      const round = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (stores[i % stores.length] as VaultStore).webhooks.claimDue(`w${i}`, 8, 60_000, T1),
        ),
      );
      for (const claimed of round) assert.ok(claimed.length <= 8, 'never more than the limit');
      const ids = round.flat().map((delivery) => delivery.id);
      assert.equal(new Set(ids).size, ids.length, 'no delivery claimed twice');
      for (;;) {
        const more = await store.webhooks.claimDue('late', 8, 60_000, T1);
        assert.ok(more.length <= 8);
        if (more.length === 0) break;
        ids.push(...more.map((delivery) => delivery.id));
      }
      assert.equal(new Set(ids).size, ids.length);
      assert.equal(ids.length, 60, 'every due delivery claimed once');

      assert.equal(await store.webhooks.pruneFinished(T0 + 1), 1, 'the old delivered row');
      assert.equal(await store.webhooks.reencryptAll(), 1);
      assert.deepEqual([...(await store.webhooks.keyIdsInUse())], ['wh']);
    });
  }

  test('the web UI lists, creates (showing the secret once) and deletes webhooks', async (t) => {
    const CHROMIUM = '/usr/bin/chromium';
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
    const tv = await startTestVault({ env: FAST });
    t.after(() => tv.close());
    const receiver = await startReceiver();
    t.after(() => receiver.close());
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
    });
    t.after(() => browser.close());
    const page = await (await browser.newContext()).newPage();
    page.setDefaultTimeout(15_000);
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('dialog', (dialog) => void dialog.accept());

    await page.goto(tv.url);
    await page.getByTestId('sign-in-key').fill(tv.adminKey);
    await page.getByTestId('sign-in-submit').click();
    const list = page.getByTestId('webhook-list');
    await list.getByText('No webhooks yet').waitFor();

    await page.locator('#add-webhook > summary').click();
    await page.getByTestId('webhook-url').fill(receiver.url);
    await page.getByTestId('webhook-event-refreshed').uncheck();
    await page.getByTestId('webhook-submit').click();
    const secretBox = page.getByTestId('webhook-secret');
    await secretBox.waitFor();
    const secret = ((await page.getByTestId('webhook-secret-value').textContent()) ?? '').trim();
    assert.match(secret, /^whsec_[A-Za-z0-9_-]{43}$/);
    tv.rememberSecret(secret);

    const row = page.getByTestId('webhook-row');
    await row.waitFor();
    assert.equal(await row.getByTestId('webhook-row-url').textContent(), receiver.url);
    assert.equal(
      await row.getByTestId('webhook-row-events').textContent(),
      'connected, refresh_failed, reauth_required, revoked',
    );
    await page.getByTestId('webhook-secret-done').click();
    assert.equal(await secretBox.isVisible(), false);
    assert.equal(await page.getByTestId('webhook-secret-value').textContent(), '');

    const credential = await importCredential(tv);
    await eventually('the delivery', () => receiver.received.length >= 1);
    assertSigned(receiver.received[0] as Received, secret);
    assert.equal(receiver.received[0]?.json.event.credentialId, credential.id);
    await page.reload();
    const status = page.getByTestId('webhook-last-delivery');
    await status.locator('[data-status="delivered"]').waitFor();
    assert.match((await status.textContent()) ?? '', /HTTP 200 · 1 attempt ·/);
    assert.equal(await page.content().then((html) => html.includes(secret)), false);

    await row.getByTestId('webhook-delete').click();
    await list.getByText('No webhooks yet').waitFor();
    assert.deepEqual((await tv.api('GET', '/v1/webhooks')).json.webhooks, []);
    assert.deepEqual(problems, [], 'no console error (CSP) on the page');
  });
});
