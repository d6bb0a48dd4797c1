import { randomBytes } from 'node:crypto';
import { type Agent, request } from 'undici';
import {
  baseEnvironment,
  type Child,
  dropSchema,
  EXIT_WITH_PARENT,
  onCleanup,
  PROVIDER_CLI,
  spawnReady,
  VAULT_PROCESS,
} from '../packages/vault/test-integration/support/children.ts';

export * from '../packages/vault/test-integration/support/children.ts';

export const newAdminKey = () =>
  `twk_${randomBytes(4).toString('hex')}_${randomBytes(32).toString('base64url')}`;
export const newMasterKeys = () => `bench:${randomBytes(32).toString('base64')}`;
export const newSchema = (prefix: string) => `${prefix}_${randomBytes(6).toString('hex')}`;

// ---------------------------------------------------------------- the fake provider

export interface ProviderChild {
  child: Child;
  url: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint: string;
  resourceUrl: string;
  control(path: string, method?: 'GET' | 'POST' | 'DELETE', body?: unknown): Promise<unknown>;
  counters(): Promise<ProviderCounters>;
}

export interface ProviderCounters {
  tokenRequests: { authorization_code: number; refresh_token: number; other: number };
  refreshes: number;
  codeExchanges: number;
  invalidGrants: number;
  reusedRefreshTokens: number;
  revokedGrants: number;
  faultsInjected: number;
  resourceRequests: number;
  unauthorized: number;
}

export async function startProvider(
  options: { personality: string; tokenLifetimeSeconds: number; graceSeconds?: number },
  agent: Agent,
): Promise<ProviderChild> {
  const child = await spawnReady(
    'fake provider',
    [
      '--import',
      EXIT_WITH_PARENT,
      PROVIDER_CLI,
      '--personality',
      options.personality,
      '--token-lifetime',
      String(options.tokenLifetimeSeconds),
      ...(options.graceSeconds === undefined ? [] : ['--grace', String(options.graceSeconds)]),
      '--port',
      '0',
      '--auto-approve',
    ],
    baseEnvironment(),
  );
  const url = String(child.info.url);
  const control = async (
    path: string,
    method: 'GET' | 'POST' | 'DELETE' = 'GET',
    body?: unknown,
  ): Promise<unknown> => {
    const response = await request(`${url}/_control/${path}`, {
      method,
      dispatcher: agent,
      ...(method === 'POST'
        ? {
            body: JSON.stringify(body ?? {}),
            headers: { 'content-type': 'application/json' },
          }
        : {}),
    });
    const text = await response.body.text();
    if (response.statusCode >= 300)
      throw new Error(`control ${method} ${path}: ${response.statusCode} ${text}`);
    return text.length === 0 ? undefined : (JSON.parse(text) as unknown);
  };
  return {
    child,
    url,
    authorizationEndpoint: String(child.info.authorizationEndpoint),
    tokenEndpoint: String(child.info.tokenEndpoint),
    revocationEndpoint: String(child.info.revocationEndpoint),
    resourceUrl: String(child.info.resourceUrl),
    control,
    counters: async () => (await control('counters')) as ProviderCounters,
  };
}

// ---------------------------------------------------------------- vault processes

export interface VaultChild {
  child: Child;
  url: string;
  instance: string;
}

export interface VaultSetup {
  /** SQLite: the shared data folder; PostgreSQL: still needed for nothing but is set. */
  dataDir: string;
  adminKey: string;
  /** PostgreSQL URL; SQLite when absent. */
  databaseUrl?: string;
  schema?: string;
  masterKeys?: string;
  /** More environment (TOKENWARDEN_TOKEN_TIMEOUT_MS, …). */
  env?: NodeJS.ProcessEnv;
  logLevel?: string;
}

export function vaultEnvironment(setup: VaultSetup, index: number): NodeJS.ProcessEnv {
  return {
    ...baseEnvironment(),
    TOKENWARDEN_DATA_DIR: setup.dataDir,
    TOKENWARDEN_ADMIN_KEY: setup.adminKey,
    LOG_LEVEL: setup.logLevel ?? 'warn',
    HOST: '127.0.0.1',
    PORT: '0',
    TOKENWARDEN_INSTANCE_ID: `vault-${index + 1}`,
    // The fake providers listen on 127.0.0.1.
    TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
    ...(setup.databaseUrl === undefined
      ? {}
      : {
          DATABASE_URL: setup.databaseUrl,
          TOKENWARDEN_DATABASE_SCHEMA: setup.schema ?? 'public',
          TOKENWARDEN_MASTER_KEYS: setup.masterKeys ?? newMasterKeys(),
        }),
    ...setup.env,
  };
}

/** Starts one vault (it creates the schema and admin key), then the others side by side. */
export async function startVaults(
  setup: VaultSetup,
  count: number,
  /** Another vault-process.ts (e.g. a copy of an older src, to compare). */
  vaultProcess = VAULT_PROCESS,
): Promise<VaultChild[]> {
  const start = async (index: number): Promise<VaultChild> => {
    const child = await spawnReady(
      `vault ${index + 1}`,
      [vaultProcess],
      vaultEnvironment(setup, index),
    );
    return { child, url: String(child.info.url), instance: String(child.info.instance) };
  };
  const first = await start(0);
  const rest = await Promise.allSettled(Array.from({ length: count - 1 }, (_, i) => start(i + 1)));
  const vaults = [first];
  for (const r of rest) if (r.status === 'fulfilled') vaults.push(r.value);
  for (const r of rest) if (r.status === 'rejected') throw r.reason;
  return vaults;
}

// ---------------------------------------------------------------- the vault's API

export interface ApiAnswer {
  status: number;
  json: Record<string, unknown>;
}

export class VaultApi {
  readonly base: string;
  readonly #key: string;
  readonly #agent: Agent;

  constructor(base: string, key: string, agent: Agent) {
    this.base = base;
    this.#key = key;
    this.#agent = agent;
  }

  async call(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
    timeoutMs = 60_000,
  ): Promise<ApiAnswer> {
    const response = await request(`${this.base}${path}`, {
      method,
      dispatcher: this.#agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      headers: {
        authorization: `Bearer ${this.#key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.body.text();
    let json: Record<string, unknown> = {};
    try {
      json = text.length === 0 ? {} : (JSON.parse(text) as Record<string, unknown>);
    } catch {
      json = { text };
    }
    return { status: response.statusCode, json };
  }

  async must(
    method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
    path: string,
    body?: unknown,
  ): Promise<Record<string, unknown>> {
    const { status, json } = await this.call(method, path, body);
    if (status >= 300) throw new Error(`${method} ${path}: HTTP ${status} ${JSON.stringify(json)}`);
    return json;
  }

  /** Every event after `after`, following the pages. */
  async events(after?: string): Promise<{ events: VaultEvent[]; last: string | undefined }> {
    const events: VaultEvent[] = [];
    let cursor = after;
    for (;;) {
      const query = `?limit=500${cursor === undefined ? '' : `&after=${cursor}`}`;
      const json = await this.must('GET', `/v1/events${query}`);
      const page = json.events as VaultEvent[];
      events.push(...page);
      const last = page.at(-1);
      if (last !== undefined) cursor = last.id;
      if (json.next === null || page.length === 0) break;
    }
    return { events, last: cursor };
  }

  async credentials(): Promise<CredentialView[]> {
    return (await this.must('GET', '/v1/credentials')).credentials as CredentialView[];
  }

  /** GET /metrics parsed into `name{labels}` → value. */
  async metrics(): Promise<Map<string, number>> {
    const response = await request(`${this.base}/metrics`, { dispatcher: this.#agent });
    return parseMetrics(await response.body.text());
  }
}

export interface VaultEvent {
  id: string;
  type: string;
  credentialId: string | null;
  at: string;
  data?: Record<string, unknown>;
}

export interface CredentialView {
  id: string;
  status: string;
  statusReason: string | null;
  expiresAt: string | null;
  lastRefreshAt: string | null;
  refreshCount: number;
  lastError: { code: string; message: string; at: string } | null;
}

export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

/** Sums the samples of one metric whose labels contain every `label="value"` given. */
export function metricSum(
  metrics: Map<string, number>,
  name: string,
  labels: Record<string, string> = {},
): number {
  let sum = 0;
  for (const [key, value] of metrics) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) sum += value;
  }
  return sum;
}

/** Label values of one metric with a non-zero sample: `code=…` → value. */
export function metricByLabel(
  metrics: Map<string, number>,
  name: string,
  label: string,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [key, value] of metrics) {
    if (!key.startsWith(`${name}{`) || value === 0) continue;
    const match = new RegExp(`${label}="([^"]*)"`).exec(key);
    if (match?.[1] === undefined) continue;
    out[match[1]] = (out[match[1]] ?? 0) + value;
  }
  return out;
}

/**
 * An auth client for the fake provider, with the profile that matches its
 * personality: `microsoft` (rotating with a grace period; `scope` on refresh),
 * `strict` as `zoom` (single-use refresh tokens: the vault does not present one
 * again after an attempt that got no answer), anything else the generic `oauth2`.
 */
export async function createAuthClient(
  api: VaultApi,
  provider: ProviderChild,
  personality = 'generic',
): Promise<string> {
  const authClient = await api.must('POST', '/v1/auth-clients', {
    name: `Fake provider (${personality})`,
    ...(personality === 'microsoft'
      ? { providerId: 'microsoft', scopes: ['offline_access', 'User.Read'] }
      : personality === 'strict'
        ? { providerId: 'zoom' }
        : { providerId: 'oauth2' }),
    clientId: 'demo-client',
    clientSecret: 'demo-secret',
    endpoints: {
      authorizationUrl: provider.authorizationEndpoint,
      tokenUrl: provider.tokenEndpoint,
      revocationUrl: provider.revocationEndpoint,
    },
  });
  return String(authClient.id);
}

/** One credential through the vault's real connect flow (the provider auto-approves). */
export async function connectCredential(
  api: VaultApi,
  authClientId: string,
  agent: Agent,
): Promise<string> {
  const session = await api.must('POST', '/v1/connect-sessions', { authClientId });
  await browserFlow(String(session.url), agent);
  const completed = await api.must('GET', `/v1/connect-sessions/${String(session.id)}`);
  if (completed.status !== 'completed' || typeof completed.credentialId !== 'string')
    throw new Error(`the connect session did not complete: ${JSON.stringify(completed)}`);
  return completed.credentialId;
}

/**
 * A browser's part of the connect flow: the vault's connect URL (sets the
 * `tw_connect` cookie, redirects to the provider), the provider's auto-approve
 * redirect, and the callback with the cookie.
 */
async function browserFlow(connectUrl: string, agent: Agent): Promise<void> {
  const step = async (url: string, cookie?: string) => {
    const response = await request(url, {
      dispatcher: agent,
      ...(cookie === undefined ? {} : { headers: { cookie } }),
    });
    const body = await response.body.text();
    return { status: response.statusCode, headers: response.headers, body };
  };
  const start = await step(connectUrl);
  const location = start.headers.location;
  const setCookie = start.headers['set-cookie'];
  const cookies = (Array.isArray(setCookie) ? setCookie : [setCookie ?? '']).map(
    (line) => line.split(';')[0] ?? '',
  );
  const cookie = cookies.find((c) => c.startsWith('tw_connect='));
  if (start.status !== 302 || typeof location !== 'string' || cookie === undefined)
    throw new Error(`GET ${connectUrl}: HTTP ${start.status} without a redirect and a cookie`);
  const approved = await step(location);
  const back = approved.headers.location;
  if (approved.status !== 302 || typeof back !== 'string')
    throw new Error(`the provider did not redirect back (HTTP ${approved.status})`);
  const callback = await step(back, cookie);
  if (callback.status !== 200)
    throw new Error(
      `the callback failed (HTTP ${callback.status}): ${callback.body.slice(0, 300)}`,
    );
}

/** A bearer call to the provider's resource: the status, or the network error's code. */
export async function callResource(
  resourceUrl: string,
  token: string,
  agent: Agent,
): Promise<number | string> {
  try {
    const response = await request(resourceUrl, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}` },
    });
    await response.body.dump();
    return response.statusCode;
  } catch (error) {
    return (error as { code?: string }).code ?? 'error';
  }
}

/** A fresh schema on the shared PostgreSQL server, dropped at clean-up. */
export async function dropSchemaLater(databaseUrl: string, schema: string): Promise<void> {
  onCleanup(() => dropSchema(databaseUrl, schema));
}
