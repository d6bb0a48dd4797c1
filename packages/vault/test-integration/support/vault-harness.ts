/**
 * A vault and a fake provider in this process, for the vault's integration tests.
 *
 * `startTestVault()` starts
 *
 * - the fake provider from `@tokenwarden/testing` on 127.0.0.1 with
 *   `recordIssuedSecrets: true`, one confidential client with a random secret
 *   (any loopback redirect URI is accepted), the personality and auto-approve
 *   setting you ask for;
 * - the vault, through `startVault(loadConfig(env), {logDestination})`, on
 *   127.0.0.1 with port 0, SQLite in a fresh temp folder (or PostgreSQL on
 *   127.0.0.1:5432 in a schema of its own), a generated admin key and master
 *   key, `LOG_LEVEL=debug`, `TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS=1` (the fake
 *   provider is on loopback), every log line captured in memory;
 * - an auth client for the fake provider, registered through the API (the
 *   generic `oauth2` profile unless told otherwise, with endpoint overrides).
 *
 * Helpers drive the API (`api`), the browser side of the connect flow with
 * plain `fetch` (`connectAccount`, or step by step: `startConnect`,
 * `authorizeAtProvider`, `callback`), and reach into the database for what a
 * test must arrange or check there (`tokensOf`, `rewriteTokens`,
 * `connectSessionRow`).
 *
 * Secrets are watched throughout:
 *
 * - every `/v1` answer is checked: an error has the `{error: {code, message}}`
 *   shape, and no answer holds a provider-issued code or token (the
 *   `/access-token` answer excepted), a client secret, or an API key (except the
 *   answer that creates that key);
 * - `close()` checks that no captured log line holds any provider-issued code or
 *   token, client secret, API key, master key, PKCE verifier, `state`, browser
 *   cookie, or value given to `rememberSecret` — raw, base64, base64url,
 *   URL-encoded, or as an HTTP Basic credential — and fails the test if one does.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { StoredTokenSet } from '@tokenwarden/oauth';
import { TokenSet } from '@tokenwarden/oauth';
import { type FakeProvider, type Personality, startFakeProvider } from '@tokenwarden/testing';
import pg from 'pg';
import { loadConfig } from '../../src/config.ts';
import { Keyring, parseKeyList } from '../../src/crypto/keyring.ts';
import type { ConnectSessionsTable } from '../../src/db/schema.ts';
import { type RunningVault, startVault } from '../../src/server.ts';

/** The PostgreSQL server integration tests use (DESIGN.md: each test its own schema). */
export const POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * A parsed JSON answer. Typed loosely on purpose: tests check answers field by
 * field with `assert`, and a wrong guess fails there.
 */
// biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field with assert
export type Json = any;

export interface TestVaultOptions {
  /** The fake provider's personality. Default `'generic'`. */
  personality?: Personality;
  /** Default true: the fake provider skips its consent page. False: `authorizeAtProvider` submits the form. */
  autoApprove?: boolean;
  /** The fake provider's access-token lifetime. Default 3600. */
  accessTokenLifetimeSeconds?: number;
  /** The provider profile of the registered auth client (any catalog id). Default `'oauth2'`. */
  profile?: string;
  /** Scopes of the registered auth client. Default: the profile's. */
  scopes?: string[];
  /** Default `'sqlite'` (a fresh temp folder). `'postgres'`: {@link POSTGRES_URL}, a schema of its own, dropped on close. */
  database?: 'sqlite' | 'postgres';
  /** More environment for `loadConfig` (e.g. `TOKENWARDEN_RETURN_TO_ALLOWLIST`); wins over the harness's values. */
  env?: Record<string, string>;
}

export interface ApiOptions {
  /** The API key to send. Default: the admin key. `null`: no Authorization header. */
  key?: string | null;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent verbatim as `application/json` (for malformed bodies). */
  rawBody?: string;
  /** Replaces the Authorization header entirely (for malformed ones). */
  authorization?: string;
}

export interface ApiResponse {
  status: number;
  /** The parsed body, or undefined when it is not JSON. */
  json: Json;
  text: string;
  headers: Headers;
}

export interface ConnectOptions {
  /** Default: the harness's auth client. */
  authClientId?: string;
  returnTo?: string;
  scopes?: string[];
  /** Which API key creates the connect session. Default: the admin key. */
  key?: string;
}

/** A connect flow after the browser opened the connect link. */
export interface StartedConnect {
  sessionId: string;
  /** `<vault>/connect/cs_…`. */
  connectUrl: string;
  /** The `tw_connect` cookie the vault set: what binds the flow to this browser. */
  cookie: string;
  /** Where the vault sent the browser: the provider's authorization request. */
  authorizationUrl: URL;
  state: string;
}

/** The provider sent the browser back to the vault. */
export interface BrowserAnswer {
  status: number;
  /** The `location` header, when the answer redirects. */
  location: string | undefined;
  /** The page, when it is one. */
  html: string;
}

export interface TestVault {
  readonly vault: RunningVault;
  /** Where the vault listens (also its public URL). */
  readonly url: string;
  readonly provider: FakeProvider;
  readonly adminKey: string;
  /** The auth client registered for the fake provider, in the default tenant. */
  readonly authClientId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** The vault's keyring (from the generated `TOKENWARDEN_MASTER_KEYS`), to read or forge encrypted columns. */
  readonly cipher: Keyring;
  /** SQLite's folder; undefined with PostgreSQL. */
  readonly dataDir: string | undefined;
  /** Every log line so far, raw JSON text. */
  readonly logs: readonly string[];

  /** Calls the vault; `/v1` answers are checked for the error shape and for secrets (see the file's comment). */
  api(method: string, path: string, options?: ApiOptions): Promise<ApiResponse>;
  /**
   * A value no log line may contain (an imported token, another client secret);
   * unless `allowedInAnswers`, no API answer but `/access-token` may contain it either.
   * Returns the value.
   */
  rememberSecret(value: string, options?: { allowedInAnswers?: boolean }): string;
  /** A new tenant and an API key for it (created with the admin key). */
  createTenant(name?: string): Promise<{ tenantId: string; key: string; keyId: string }>;
  /** Registers another auth client for the fake provider; returns its id. */
  registerAuthClient(options?: {
    key?: string;
    profile?: string;
    name?: string;
    scopes?: string[];
    clientSecret?: string;
  }): Promise<string>;

  /** The whole browser side of the connect flow, approving at the provider. Returns the credential id. */
  connectAccount(options?: ConnectOptions): Promise<string>;
  /** POST /v1/connect-sessions, then open the connect link like a browser (keeping the cookie). */
  startConnect(options?: ConnectOptions): Promise<StartedConnect>;
  /** GET a connect link without following the redirect. */
  openConnectLink(
    connectUrl: string,
    cookie?: string,
  ): Promise<BrowserAnswer & { cookie?: string }>;
  /**
   * At the provider: follows the authorization request (approving or denying on the
   * consent page when it is shown) and returns the URL the provider sends the browser back to.
   */
  authorizeAtProvider(authorizationUrl: URL, decision?: 'approve' | 'deny'): Promise<string>;
  /** GET the vault's callback URL with the given `tw_connect` cookie (or none). */
  callback(callbackUrl: string, cookie?: string): Promise<BrowserAnswer>;

  /** A credential's current token set, from the database. Default tenant unless told. */
  tokensOf(credentialId: string, tenantId?: string): Promise<TokenSet>;
  /** Rewrites a credential's stored token set (encrypted with the vault's key); `version` moves on. */
  rewriteTokens(
    credentialId: string,
    edit: (stored: StoredTokenSet) => StoredTokenSet,
  ): Promise<void>;
  connectSessionRow(id: string): Promise<ConnectSessionsTable | undefined>;
  /** The credential ids of a tenant, from the database. */
  credentialIds(tenantId?: string): Promise<string[]>;

  /** Fails when a captured log line holds a secret (also done by `close`). */
  assertNoSecretsInLogs(): void;
  /** Stops the vault and the provider, removes their data, then checks the logs for secrets. */
  close(): Promise<void>;
}

const DEFAULT_TENANT = 'default';

/** An API key in the vault's format: `twk_<hex id>_<43 base64url characters>`. */
export function newTestApiKey(): string {
  return `twk_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;
}

/** The `{error: {code, message}}` answer, with the status and code expected. */
export function assertError(response: ApiResponse, status: number, code?: string | string[]): void {
  assert.equal(
    response.status,
    status,
    `expected ${status}, got ${response.status}: ${response.text.slice(0, 300)}`,
  );
  assertErrorShape(response);
  if (code !== undefined) {
    const codes = Array.isArray(code) ? code : [code];
    assert.ok(
      codes.includes(response.json.error.code),
      `expected code ${codes.join('|')}, got ${response.json.error.code}`,
    );
  }
}

/** Every error answer is exactly `{error: {code, message}}` with non-empty strings. */
export function assertErrorShape(response: ApiResponse): void {
  const body = response.json;
  assert.ok(
    typeof body === 'object' && body !== null,
    `an error answer (${response.status}) must be JSON: ${response.text.slice(0, 200)}`,
  );
  assert.deepEqual(Object.keys(body), ['error'], 'an error answer has only the error member');
  assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message']);
  assert.equal(typeof body.error.code, 'string');
  assert.ok(body.error.code.length > 0);
  assert.equal(typeof body.error.message, 'string');
  assert.ok(body.error.message.length > 0);
}

/** The ways a secret could be spelled in a log line or an answer. */
function spellings(secret: string): string[] {
  const forms = new Set([
    secret,
    Buffer.from(secret).toString('base64'),
    Buffer.from(secret).toString('base64').replace(/=+$/, ''),
    Buffer.from(secret).toString('base64url'),
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
  ]);
  return [...forms];
}

function cookieValue(headers: Headers, name: string): string | undefined {
  for (const line of headers.getSetCookie()) {
    const [pair] = line.split(';');
    const index = pair?.indexOf('=') ?? -1;
    if (pair !== undefined && index > 0 && pair.slice(0, index).trim() === name) {
      const value = decodeURIComponent(pair.slice(index + 1).trim());
      return value.length === 0 ? undefined : value;
    }
  }
  return undefined;
}

/** Starts a fake provider and a vault wired to it; see the file's comment. Always `close()` it. */
export async function startTestVault(options: TestVaultOptions = {}): Promise<TestVault> {
  const clientId = `tw-test-${randomBytes(4).toString('hex')}`;
  const clientSecret = `cs-${randomBytes(24).toString('base64url')}`;
  const provider = await startFakeProvider({
    personality: options.personality ?? 'generic',
    autoApprove: options.autoApprove ?? true,
    recordIssuedSecrets: true,
    clients: [{ clientId, clientSecret }],
    ...(options.accessTokenLifetimeSeconds === undefined
      ? {}
      : { accessTokenLifetimeSeconds: options.accessTokenLifetimeSeconds }),
  });

  const adminKey = newTestApiKey();
  const masterKeys = `test:${randomBytes(32).toString('base64')}`;
  const cipher = new Keyring(parseKeyList(masterKeys));
  const lines: string[] = [];
  let partial = '';
  const logDestination = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      partial += chunk.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) if (line.length > 0) lines.push(line);
      done();
    },
  });

  const postgres = options.database === 'postgres';
  const schema = postgres ? `tw_test_${randomBytes(6).toString('hex')}` : undefined;
  const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-vault-test-'));
  const env: Record<string, string> = {
    TOKENWARDEN_DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    TOKENWARDEN_ADMIN_KEY: adminKey,
    TOKENWARDEN_MASTER_KEYS: masterKeys,
    LOG_LEVEL: 'debug',
    // The fake provider listens on 127.0.0.1.
    TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
    ...(postgres && schema !== undefined
      ? { DATABASE_URL: POSTGRES_URL, TOKENWARDEN_DATABASE_SCHEMA: schema }
      : {}),
    ...options.env,
  };

  let vault: RunningVault;
  try {
    vault = await startVault(loadConfig(env), { logDestination });
  } catch (error) {
    await provider.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  /** Never in an answer (but /access-token for tokens) and never in a log line. */
  const answerSecrets = new Set<string>([clientSecret]);
  /** Never in a log line (API keys, verifiers, states, cookies, the master key). */
  const logOnlySecrets = new Set<string>([adminKey, masterKeys.slice(masterKeys.indexOf(':') + 1)]);
  const apiKeys = new Set<string>([adminKey]);
  const clientSecrets = new Map<string, string>([[clientSecret, clientId]]);

  const remember = (value: string, allowedInAnswers = false): string => {
    assert.ok(value.length >= 8, 'a remembered secret must be at least 8 characters long');
    (allowedInAnswers ? logOnlySecrets : answerSecrets).add(value);
    return value;
  };

  const checkAnswer = (method: string, path: string, text: string): void => {
    const tokensAllowed = /\/access-token$/.test(path);
    const keyAllowed = method === 'POST' && /\/api-keys$/.test(path);
    for (const secret of provider.issuedSecrets()) {
      if (clientSecrets.has(secret)) continue;
      if (!tokensAllowed && text.includes(secret))
        assert.fail(`${method} ${path} answered with a provider-issued code or token`);
    }
    for (const secret of answerSecrets) {
      if (clientSecrets.has(secret)) {
        for (const form of spellings(secret))
          if (text.includes(form)) assert.fail(`${method} ${path} answered with a client secret`);
      } else if (!tokensAllowed && text.includes(secret)) {
        assert.fail(`${method} ${path} answered with a remembered secret`);
      }
    }
    if (!keyAllowed)
      for (const key of apiKeys)
        if (text.includes(key)) assert.fail(`${method} ${path} answered with an API key`);
  };

  const api = async (
    method: string,
    path: string,
    apiOptions: ApiOptions = {},
  ): Promise<ApiResponse> => {
    const headers: Record<string, string> = {};
    const key = apiOptions.key === undefined ? adminKey : apiOptions.key;
    if (apiOptions.authorization !== undefined) headers.authorization = apiOptions.authorization;
    else if (key !== null) headers.authorization = `Bearer ${key}`;
    let body: string | undefined;
    if (apiOptions.rawBody !== undefined) body = apiOptions.rawBody;
    else if (apiOptions.body !== undefined) body = JSON.stringify(apiOptions.body);
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(`${vault.url}${path}`, {
      method,
      headers,
      ...(body === undefined ? {} : { body }),
      redirect: 'manual',
    });
    const text = await response.text();
    let json: Json;
    try {
      json = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    const result: ApiResponse = { status: response.status, json, text, headers: response.headers };
    if (path.startsWith('/v1')) {
      if (response.status >= 400) assertErrorShape(result);
      checkAnswer(method, path.split('?')[0] ?? path, text);
      if (typeof json?.key === 'string' && json.key.startsWith('twk_')) {
        apiKeys.add(json.key);
        logOnlySecrets.add(json.key);
      }
    }
    return result;
  };

  const registerAuthClient: TestVault['registerAuthClient'] = async (register = {}) => {
    const secret = register.clientSecret ?? clientSecret;
    if (!clientSecrets.has(secret)) {
      clientSecrets.set(secret, clientId);
      answerSecrets.add(secret);
    }
    const created = await api('POST', '/v1/auth-clients', {
      ...(register.key === undefined ? {} : { key: register.key }),
      body: {
        name: register.name ?? 'Fake provider',
        providerId: register.profile ?? options.profile ?? 'oauth2',
        clientId,
        clientSecret: secret,
        ...((register.scopes ?? options.scopes) === undefined
          ? {}
          : { scopes: register.scopes ?? options.scopes }),
        endpoints: {
          authorizationUrl: provider.authorizationEndpoint,
          tokenUrl: provider.tokenEndpoint,
          revocationUrl: provider.revocationEndpoint,
        },
      },
    });
    assert.equal(created.status, 201, `auth client registration failed: ${created.text}`);
    return created.json.id as string;
  };

  let authClientId: string;
  try {
    authClientId = await registerAuthClient();
  } catch (error) {
    await vault.close();
    await provider.close();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  const browserGet = async (url: string, cookie?: string) => {
    const response = await fetch(url, {
      redirect: 'manual',
      ...(cookie === undefined ? {} : { headers: { cookie: `tw_connect=${cookie}` } }),
    });
    return {
      status: response.status,
      location: response.headers.get('location') ?? undefined,
      html: await response.text(),
      headers: response.headers,
    };
  };

  const openConnectLink: TestVault['openConnectLink'] = async (connectUrl, cookie) => {
    const answer = await browserGet(connectUrl, cookie);
    const set = cookieValue(answer.headers, 'tw_connect');
    if (set !== undefined) remember(set, true);
    return {
      status: answer.status,
      location: answer.location,
      html: answer.html,
      ...(set === undefined ? {} : { cookie: set }),
    };
  };

  const startConnect: TestVault['startConnect'] = async (connect = {}) => {
    const created = await api('POST', '/v1/connect-sessions', {
      ...(connect.key === undefined ? {} : { key: connect.key }),
      body: {
        authClientId: connect.authClientId ?? authClientId,
        ...(connect.returnTo === undefined ? {} : { returnTo: connect.returnTo }),
        ...(connect.scopes === undefined ? {} : { scopes: connect.scopes }),
      },
    });
    assert.equal(created.status, 201, `connect session: ${created.text}`);
    const opened = await openConnectLink(created.json.url);
    assert.equal(opened.status, 302, `the connect link should redirect: ${opened.html}`);
    assert.ok(opened.location !== undefined && opened.cookie !== undefined);
    const authorizationUrl = new URL(opened.location);
    const state = authorizationUrl.searchParams.get('state');
    assert.ok(state !== null, 'the authorization request carries a state');
    remember(state, true);
    const row = await connectSessionRow(created.json.id);
    if (row?.verifier_enc != null)
      remember(cipher.decrypt(row.verifier_enc, `connect_session:${row.id}`), true);
    return {
      sessionId: created.json.id,
      connectUrl: created.json.url,
      cookie: opened.cookie,
      authorizationUrl,
      state,
    };
  };

  const authorizeAtProvider: TestVault['authorizeAtProvider'] = async (
    authorizationUrl,
    decision = 'approve',
  ) => {
    const first = await browserGet(authorizationUrl.href);
    if (first.status === 302 && first.location !== undefined) {
      assert.equal(
        decision,
        'approve',
        'the provider approves by itself (autoApprove): cannot deny',
      );
      return first.location;
    }
    assert.equal(first.status, 200, `the provider's consent page: ${first.html.slice(0, 300)}`);
    const requestId = /name="request_id" value="([^"]+)"/.exec(first.html)?.[1];
    assert.ok(requestId !== undefined, 'the consent page has a request_id');
    const response = await fetch(`${provider.url}/authorize/decision`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ request_id: requestId, decision }).toString(),
    });
    await response.arrayBuffer();
    const location = response.headers.get('location');
    assert.equal(response.status, 302, 'the consent decision redirects back');
    assert.ok(location !== null);
    return location;
  };

  const callback: TestVault['callback'] = async (callbackUrl, cookie) => {
    const answer = await browserGet(callbackUrl, cookie);
    return { status: answer.status, location: answer.location, html: answer.html };
  };

  const connectSessionRow = (id: string) =>
    vault.store.db
      .selectFrom('connect_sessions')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();

  const connectAccount: TestVault['connectAccount'] = async (connect = {}) => {
    const started = await startConnect(connect);
    const back = await authorizeAtProvider(started.authorizationUrl);
    assert.ok(
      back.startsWith(`${vault.url}/oauth/callback?`),
      'the provider sends the browser back',
    );
    const answer = await callback(back, started.cookie);
    const session = await api('GET', `/v1/connect-sessions/${started.sessionId}`, {
      ...(connect.key === undefined ? {} : { key: connect.key }),
    });
    assert.equal(session.json.status, 'completed', `connect failed: ${answer.html}`);
    return session.json.credentialId as string;
  };

  const tokensOf = async (credentialId: string, tenantId = DEFAULT_TENANT) => {
    const current = await vault.store.credentials.getWithTokens(tenantId, credentialId);
    assert.ok(current !== undefined, `credential ${credentialId} exists`);
    return current.tokenSet;
  };

  const rewriteTokens: TestVault['rewriteTokens'] = async (credentialId, edit) => {
    const row = await vault.store.db
      .selectFrom('credentials')
      .select(['tenant_id', 'version'])
      .where('id', '=', credentialId)
      .executeTakeFirstOrThrow();
    const current = await tokensOf(credentialId, row.tenant_id);
    const next = TokenSet.fromStored(edit(current.toStored()));
    await vault.store.db
      .updateTable('credentials')
      .set({
        token_enc: vault.store.credentials.encryptTokens(credentialId, next),
        expires_at: next.expiresAtMs ?? null,
        version: row.version + 1,
      })
      .where('id', '=', credentialId)
      .execute();
    // A write behind the repository's back, on the vault's own connection: tell the
    // token cache, as every repository write does (other processes' writes it hears of).
    vault.store.tokenCache?.changed(credentialId);
  };

  const credentialIds = async (tenantId = DEFAULT_TENANT) =>
    (
      await vault.store.db
        .selectFrom('credentials')
        .select('id')
        .where('tenant_id', '=', tenantId)
        .execute()
    ).map((row) => row.id);

  const createTenant: TestVault['createTenant'] = async (name = 'tenant') => {
    const tenant = await api('POST', '/v1/tenants', { body: { name } });
    assert.equal(tenant.status, 201, tenant.text);
    const key = await api('POST', `/v1/tenants/${tenant.json.id}/api-keys`, {
      body: { label: `${name} key` },
    });
    assert.equal(key.status, 201, key.text);
    return { tenantId: tenant.json.id, key: key.json.key, keyId: key.json.id };
  };

  const assertNoSecretsInLogs = (issued: readonly string[] = provider.issuedSecrets()) => {
    assert.ok(
      lines.some((line) => line.includes('"vault listening"')),
      'the harness captures the vault log',
    );
    const watched: Array<[string, string]> = [];
    for (const secret of issued) watched.push(['a provider-issued code, token or secret', secret]);
    for (const secret of answerSecrets) watched.push(['a token or client secret', secret]);
    for (const secret of logOnlySecrets)
      watched.push(['an API key, master key, verifier, state or cookie', secret]);
    for (const [secret, id] of clientSecrets) {
      watched.push(['a client secret (HTTP Basic)', `${id}:${secret}`]);
      watched.push([
        'a client secret (HTTP Basic, form-encoded)',
        `${encodeURIComponent(id)}:${encodeURIComponent(secret)}`,
      ]);
    }
    const leaks: string[] = [];
    for (const [index, line] of lines.entries()) {
      for (const [kind, secret] of watched) {
        if (spellings(secret).some((form) => line.includes(form))) {
          let shown = line;
          for (const form of spellings(secret)) shown = shown.split(form).join('<SECRET>');
          leaks.push(`log line ${index} holds ${kind}: ${shown.slice(0, 400)}`);
        }
      }
    }
    assert.deepEqual(leaks, [], 'no secret in any log line');
  };

  let closed = false;
  return {
    vault,
    url: vault.url,
    provider,
    adminKey,
    authClientId,
    clientId,
    clientSecret,
    cipher,
    dataDir: postgres ? undefined : dataDir,
    logs: lines,
    api,
    rememberSecret: (value, rememberOptions) => remember(value, rememberOptions?.allowedInAnswers),
    createTenant,
    registerAuthClient,
    connectAccount,
    startConnect,
    openConnectLink,
    authorizeAtProvider,
    callback,
    tokensOf,
    rewriteTokens,
    connectSessionRow,
    credentialIds,
    assertNoSecretsInLogs: () => assertNoSecretsInLogs(),
    close: async () => {
      if (closed) return;
      closed = true;
      const issued = provider.issuedSecrets();
      try {
        await vault.close();
      } finally {
        await provider.close();
        if (schema !== undefined) {
          const client = new pg.Client({ connectionString: POSTGRES_URL });
          await client.connect();
          try {
            await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
          } finally {
            await client.end();
          }
        }
        await rm(dataDir, { recursive: true, force: true });
      }
      if (partial.length > 0) lines.push(partial);
      assertNoSecretsInLogs(issued);
    },
  };
}
