/**
 * Encryption at rest, checked from the outside: two vaults (SQLite in a temp
 * folder, PostgreSQL in a schema of its own) connect accounts at the fake
 * provider through the real browser flow, refresh them again and again, take
 * updateKeys writes, import a token set, fail a refresh and revoke a credential.
 * Then every byte of the SQLite files (vault.sqlite, -wal, -shm) and every
 * column of every row in the PostgreSQL schema is searched for every secret
 * involved (authorization codes, access and refresh tokens, the client secret,
 * the tokens we sent in ourselves, the API key, the connect state and browser
 * cookie) in raw, base64, base64url (at each 3-byte alignment), hex and UTF-16
 * form. A positive control writes one token in clear and must be caught.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type FakeProvider, startFakeProvider } from '@tokenwarden/testing';
import SQLite from 'better-sqlite3';
import { loadConfig } from '../src/config.ts';
import { type RunningVault, startVault } from '../src/server.ts';
import {
  engines,
  postgresRows,
  sqliteFiles,
  type TestDatabase,
  withPostgresClient,
} from './support/databases.ts';

const CLIENT_ID = 'demo-client';
/** Distinctive, so finding it means finding a leak. */
const CLIENT_SECRET = randomBytes(30).toString('base64url');
const CONNECTED_PER_VAULT = 3;
const REFRESH_ROUNDS = 3;

let provider: FakeProvider;
before(async () => {
  assert.equal(CLIENT_SECRET.length, 40);
  provider = await startFakeProvider({
    personality: 'microsoft',
    accessTokenLifetimeSeconds: 1,
    autoApprove: true,
    recordIssuedSecrets: true,
    clients: [{ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }],
  });
});
after(async () => {
  await provider?.close();
});

// ---------------------------------------------------------------------------
// The scanner

interface Needle {
  /** Which secret (an index into the list: the secret itself is never printed). */
  secret: number;
  form: string;
  bytes: Buffer;
}

/**
 * Every form a secret could be stored in by mistake. Base64 of a value that
 * holds the secret somewhere inside encodes it differently depending on the
 * secret's offset modulo 3, so the base64 of the secret from offsets 0, 1 and 2
 * is searched, cut to whole 3-byte groups (the chars that depend on the
 * neighbouring bytes are left out).
 */
function needles(secrets: readonly string[]): Needle[] {
  const result: Needle[] = [];
  for (const [index, secret] of secrets.entries()) {
    assert.ok(secret.length >= 16, `secret #${index} is too short for a meaningful search`);
    const bytes = Buffer.from(secret, 'utf8');
    const add = (form: string, text: string | Buffer) =>
      result.push({
        secret: index,
        form,
        bytes: typeof text === 'string' ? Buffer.from(text, 'latin1') : text,
      });
    add('raw', bytes);
    add('utf16le', Buffer.from(secret, 'utf16le'));
    add('hex', bytes.toString('hex'));
    add('HEX', bytes.toString('hex').toUpperCase());
    for (const offset of [0, 1, 2]) {
      const slice = bytes.subarray(offset);
      const whole = slice.subarray(0, slice.length - (slice.length % 3));
      add(`base64@${offset}`, whole.toString('base64'));
      add(`base64url@${offset}`, whole.toString('base64url'));
    }
  }
  return result;
}

interface Leak {
  where: string;
  secret: number;
  form: string;
}

function findLeaks(where: string, haystack: Buffer, search: readonly Needle[]): Leak[] {
  return search
    .filter((needle) => haystack.includes(needle.bytes))
    .map((needle) => ({ where, secret: needle.secret, form: needle.form }));
}

async function scanSqliteFiles(dataDir: string, search: readonly Needle[]) {
  const files = await sqliteFiles(dataDir);
  const leaks: Leak[] = [];
  const contents: Buffer[] = [];
  for (const file of files) {
    const bytes = await readFile(file);
    contents.push(bytes);
    leaks.push(...findLeaks(file, bytes, search));
  }
  return { files, leaks, all: Buffer.concat(contents) };
}

/** A value as text, whatever its type (a Buffer both as its bytes and as hex). */
function stringify(value: unknown): string {
  if (Buffer.isBuffer(value)) return `${value.toString('latin1')} ${value.toString('hex')}`;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object' && value !== null) return JSON.stringify(value);
  return String(value);
}

async function scanPostgres(schema: string, search: readonly Needle[]) {
  const dump = await postgresRows(schema);
  const leaks: Leak[] = [];
  const texts: string[] = [];
  for (const { table, rows } of dump) {
    for (const [index, row] of rows.entries()) {
      for (const [column, value] of Object.entries(row)) {
        const text = stringify(value);
        texts.push(text);
        leaks.push(...findLeaks(`${table}[${index}].${column}`, Buffer.from(text, 'utf8'), search));
      }
    }
  }
  return { tables: dump.map((entry) => entry.table), leaks, all: texts.join('\n') };
}

function describeLeaks(leaks: readonly Leak[]): string {
  return leaks.map((leak) => `secret #${leak.secret} as ${leak.form} in ${leak.where}`).join('\n');
}

// ---------------------------------------------------------------------------
// Driving a vault through the API and the browser flow

interface Scenario {
  /** Secrets that are not in provider.issuedSecrets(): ours, the vault's. */
  ownSecrets: string[];
  credentialIds: string[];
}

function vaultClient(vault: RunningVault, apiKey: string) {
  return async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${vault.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${apiKey}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    const json = text === '' ? undefined : (JSON.parse(text) as Record<string, unknown>);
    return { status: response.status, json };
  };
}

async function runScenario(vault: RunningVault, apiKey: string): Promise<Scenario> {
  const call = vaultClient(vault, apiKey);
  const ownSecrets = [apiKey];
  const mine = (label: string) => {
    const value = `${label}-${randomBytes(24).toString('base64url')}`;
    ownSecrets.push(value);
    return value;
  };

  const created = await call('POST', '/v1/auth-clients', {
    name: 'Fake Microsoft',
    providerId: 'microsoft',
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    scopes: ['offline_access', 'User.Read'],
    endpoints: {
      authorizationUrl: provider.authorizationEndpoint,
      tokenUrl: provider.tokenEndpoint,
      revocationUrl: provider.revocationEndpoint,
    },
  });
  assert.equal(created.status, 201, JSON.stringify(created.json));
  const authClientId = created.json?.id as string;

  // Connect accounts through the real flow, as a browser would.
  const credentialIds: string[] = [];
  for (let i = 0; i < CONNECTED_PER_VAULT; i++) {
    const session = await call('POST', '/v1/connect-sessions', { authClientId });
    assert.equal(session.status, 201, JSON.stringify(session.json));
    const start = await fetch(session.json?.url as string, { redirect: 'manual' });
    assert.equal(start.status, 302, await start.text());
    const cookie = start.headers
      .getSetCookie()
      .map((header) => header.split(';')[0] ?? '')
      .find((pair) => pair.startsWith('tw_connect='));
    assert.ok(cookie, 'the connect page sets the browser-binding cookie');
    ownSecrets.push(decodeURIComponent(cookie.slice('tw_connect='.length)));
    const authorize = await fetch(start.headers.get('location') as string, { redirect: 'manual' });
    assert.equal(authorize.status, 302, 'the fake provider approves at once');
    const callback = new URL(authorize.headers.get('location') as string);
    assert.equal(`${callback.origin}${callback.pathname}`, `${vault.publicUrl}/oauth/callback`);
    ownSecrets.push(callback.searchParams.get('state') as string);
    const done = await fetch(callback, { redirect: 'manual', headers: { cookie } });
    const page = await done.text();
    assert.equal(done.status, 200, page);
    const id = /credential (cr_[A-Za-z0-9_-]+)/.exec(page)?.[1];
    assert.ok(id, `the result page names the credential: ${page}`);
    credentialIds.push(id);
  }

  // Refresh them several times, in every way the API offers.
  for (const id of credentialIds) {
    let current = (await call('POST', `/v1/credentials/${id}/access-token`, {})).json
      ?.access_token as string;
    assert.ok(current);
    for (let round = 0; round < REFRESH_ROUNDS; round++) {
      const stale = await call('POST', `/v1/credentials/${id}/access-token`, {
        staleAccessToken: current,
      });
      assert.equal(stale.status, 200, JSON.stringify(stale.json));
      assert.notEqual(stale.json?.access_token, current, 'a stale token is refreshed');

      const keys = await call('PUT', `/v1/credentials/${id}/keys`, {
        oauth: { access_token: mine('updatekeys-at'), expires_in: 3600, token_type: 'Bearer' },
      });
      assert.equal(keys.status, 200, JSON.stringify(keys.json));

      const forced = await call('POST', `/v1/credentials/${id}/refresh`);
      assert.equal(forced.status, 200, JSON.stringify(forced.json));
      assert.equal(forced.json?.status, 'active');

      current = (await call('POST', `/v1/credentials/${id}/access-token`, {})).json
        ?.access_token as string;
    }
  }

  // A token set obtained elsewhere; the provider does not know it, so its refresh fails
  // and the failure (code, message) is stored: without the token.
  const imported = await call('POST', '/v1/credentials', {
    authClientId,
    tokens: {
      access_token: mine('imported-at'),
      refresh_token: mine('imported-rt'),
      expires_in: 3600,
      token_type: 'Bearer',
      id_token: mine('imported-idt'),
    },
  });
  assert.equal(imported.status, 201, JSON.stringify(imported.json));
  const importedId = imported.json?.id as string;
  credentialIds.push(importedId);
  const failed = await call('POST', `/v1/credentials/${importedId}/refresh`);
  assert.ok(failed.status >= 400, `refreshing an unknown grant fails: ${failed.status}`);
  const afterFailure = await call('GET', `/v1/credentials/${importedId}`);
  assert.equal(afterFailure.json?.status, 'reauth_required', JSON.stringify(afterFailure.json));

  // Revoke one connected credential (RFC 7009 at the provider, then delete).
  const revoked = await call('DELETE', `/v1/credentials/${credentialIds[0]}`);
  assert.equal(revoked.status, 204);

  const events = await call('GET', '/v1/events?limit=500');
  assert.equal(events.status, 200);
  return { ownSecrets, credentialIds };
}

async function startTestVault(database: TestDatabase) {
  const apiKey = `twk_atrest_${randomBytes(32).toString('base64url')}`;
  const vault = await startVault(
    loadConfig({
      ...database.env,
      PORT: '0',
      LOG_LEVEL: 'silent',
      TOKENWARDEN_ADMIN_KEY: apiKey,
      // The fake provider listens on 127.0.0.1.
      TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
    }),
  );
  return { vault, apiKey };
}

function allSecrets(scenario: Scenario): string[] {
  const issued = provider.issuedSecrets();
  assert.ok(issued.includes(CLIENT_SECRET), 'the client secret is among the secrets searched');
  return [...new Set([...issued, ...scenario.ownSecrets])];
}

/** The base64 of a value holding `secret` at each alignment, plus its hex and raw forms. */
function planted(secret: string): Record<string, string> {
  return {
    raw: `note: ${secret}`,
    hex: Buffer.from(secret).toString('hex'),
    base64a: Buffer.from(`{"refresh_token":"${secret}"}`).toString('base64'),
    base64b: Buffer.from(`x{"refresh_token":"${secret}"}`).toString('base64'),
    base64c: Buffer.from(`xy{"refresh_token":"${secret}"}`).toString('base64url'),
  };
}

function assertPlantedFound(leaks: readonly Leak[], secretIndex: number): void {
  const forms = new Set(
    leaks.filter((leak) => leak.secret === secretIndex).map((leak) => leak.form),
  );
  assert.ok(forms.has('raw'), `raw found: ${[...forms].join(', ')}`);
  assert.ok(forms.has('hex'), `hex found: ${[...forms].join(', ')}`);
  const alignments = new Set(
    [...forms].flatMap((form) => (/^base64(url)?@(\d)$/.exec(form)?.[2] ?? []) as string[]),
  );
  assert.deepEqual([...alignments].sort(), ['0', '1', '2'], 'base64 found at every alignment');
}

// ---------------------------------------------------------------------------

describe('encryption at rest', () => {
  for (const engine of engines()) {
    test(`no secret is stored in clear or merely encoded (${engine.name})`, async (t) => {
      const database = await engine.create(t);
      const { vault, apiKey } = await startTestVault(database);
      let scenario: Scenario;
      let liveScan: Awaited<ReturnType<typeof scanSqliteFiles>> | undefined;
      try {
        scenario = await runScenario(vault, apiKey);
        if (engine.name === 'sqlite') {
          // While the vault runs, recent writes sit in the WAL: search that state too.
          liveScan = await scanSqliteFiles(database.dataDir, needles(allSecrets(scenario)));
        }
      } finally {
        await vault.close();
      }
      const secrets = allSecrets(scenario);
      const counters = provider.counters();
      assert.ok(counters.codeExchanges >= CONNECTED_PER_VAULT, JSON.stringify(counters));
      assert.ok(counters.refreshes >= CONNECTED_PER_VAULT * REFRESH_ROUNDS * 2);
      assert.ok(secrets.length >= 40, `searching ${secrets.length} secrets`);
      const search = needles(secrets);

      if (engine.name === 'sqlite') {
        assert.ok(liveScan);
        assert.ok(
          liveScan.files.some((file) => file.endsWith('-wal')),
          `the WAL was there while running: ${liveScan.files.join(', ')}`,
        );
        assert.deepEqual(liveScan.leaks, [], describeLeaks(liveScan.leaks));

        const closedScan = await scanSqliteFiles(database.dataDir, search);
        assert.ok(closedScan.files.some((file) => file.endsWith('vault.sqlite')));
        // The scan saw the real data: ciphertexts and credential ids are there.
        assert.ok(closedScan.all.includes('tw1.'), 'encrypted values are in the file');
        for (const id of scenario.credentialIds.slice(1))
          assert.ok(closedScan.all.includes(id), `credential ${id} is in the file`);
        assert.deepEqual(closedScan.leaks, [], describeLeaks(closedScan.leaks));

        // Positive control: a token written in clear (and encoded) into the same file is caught.
        const token = secrets.find((secret) => secret !== CLIENT_SECRET) as string;
        const sqlite = new SQLite(join(database.dataDir, 'vault.sqlite'));
        try {
          sqlite.exec('CREATE TABLE scratch (note TEXT)');
          const insert = sqlite.prepare('INSERT INTO scratch (note) VALUES (?)');
          for (const value of Object.values(planted(token))) insert.run(value);
        } finally {
          sqlite.close();
        }
        const control = await scanSqliteFiles(database.dataDir, search);
        assertPlantedFound(control.leaks, secrets.indexOf(token));
      } else {
        const scan = await scanPostgres(database.databaseSchema, search);
        for (const table of [
          'api_keys',
          'auth_clients',
          'connect_sessions',
          'credentials',
          'events',
        ])
          assert.ok(scan.tables.includes(table), `table ${table} was searched`);
        assert.ok(scan.all.includes('tw1.'), 'encrypted values are in the rows');
        for (const id of scenario.credentialIds.slice(1))
          assert.ok(scan.all.includes(id), `credential ${id} is in the rows`);
        assert.deepEqual(scan.leaks, [], describeLeaks(scan.leaks));

        // Positive control: a scratch table with a token in clear (and encoded) is caught.
        const token = secrets.find((secret) => secret !== CLIENT_SECRET) as string;
        await withPostgresClient(async (client) => {
          await client.query(
            `CREATE TABLE "${database.databaseSchema}".scratch (note text, blob bytea)`,
          );
          for (const value of Object.values(planted(token)))
            await client.query(
              `INSERT INTO "${database.databaseSchema}".scratch (note) VALUES ($1)`,
              [value],
            );
          await client.query(
            `INSERT INTO "${database.databaseSchema}".scratch (blob) VALUES ($1)`,
            [Buffer.from(`bin:${token}`)],
          );
        });
        const control = await scanPostgres(database.databaseSchema, search);
        assertPlantedFound(control.leaks, secrets.indexOf(token));
        assert.ok(
          control.leaks.some(
            (leak) => leak.where.startsWith('scratch') && leak.where.endsWith('.blob'),
          ),
          'a bytea column is searched too',
        );
      }
    });
  }
});
