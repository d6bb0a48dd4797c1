/**
 * Cross-process single-flight of the vault's token endpoint (DESIGN.md
 * Behaviour 3–4), shared by test-integration/cross-process.test.ts and
 * bench/v1-cross-process.ts.
 *
 * It runs, each in a child process of its own: the fake provider (`strict`
 * personality: single-use refresh tokens, a reused one revokes the grant) with
 * short access tokens, and N vault processes (support/vault-process.ts) on one
 * SQLite file (one shared data folder: vault.sqlite and master.keys) or one
 * PostgreSQL schema (a fresh one per run, dropped afterwards; one master key
 * given to all through TOKENWARDEN_MASTER_KEYS). One credential is connected
 * through vault 1's real connect flow. Then C clients in this process, spread
 * round-robin over the vaults, loop for D seconds: call the provider's resource
 * with the token they hold; on a 401, ask their vault for a token with
 * `staleAccessToken` set to the rejected one and retry the resource once.
 *
 * Expiries are the distinct access tokens the resource rejected (SHA-256 of
 * each in a Set). No client refreshes before a rejection, so with one refresh
 * per expired token across all processes, the provider's successful refreshes
 * equal the expiries; a duplicated refresh would also reuse a single-use
 * refresh token, which the provider answers with invalid_grant and a revoked
 * grant.
 *
 * Every child is killed when the run ends, fails, or this process exits.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import {
  assertPostgresReachable,
  baseEnvironment,
  type Child,
  dropSchema,
  EXIT_WITH_PARENT,
  PROVIDER_CLI,
  SHARED_DATABASE_URL,
  spawnReady,
  stopChild,
  VAULT_PROCESS,
} from './children.ts';

export type Backend = 'sqlite' | 'postgres';

export interface CrossProcessOptions {
  backend: Backend;
  /** Vault processes sharing the database. */
  processes: number;
  /** Concurrent clients, spread round-robin over the vault processes. */
  clients: number;
  /** How long the clients run. */
  seconds: number;
  /** The provider's access-token lifetime (default 1). */
  tokenLifetimeSeconds?: number;
  /** PostgreSQL server (default SHARED_DATABASE_URL). */
  databaseUrl?: string;
  /** Progress lines (default: none). */
  progress?: (line: string) => void;
}

export interface LatencySummary {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface CrossProcessResult {
  backend: Backend;
  processes: number;
  clients: number;
  tokenLifetimeSeconds: number;
  /** Measured duration of the client phase. */
  seconds: number;
  /** Resource calls answered 200. */
  resourceOk: number;
  /** Every resource call (first tries and retries). */
  resourceCalls: number;
  /** Every call of POST /v1/credentials/:id/access-token during the run. */
  tokenCalls: number;
  /** Token-endpoint calls per vault process, in process order. */
  tokenCallsByProcess: number[];
  /** Latency of the token-endpoint calls, milliseconds. */
  tokenLatencyMs: LatencySummary;
  /** The same per vault process, in process order. */
  tokenLatencyMsByProcess: LatencySummary[];
  failures: number;
  failuresByReason: Record<string, number>;
  /** Successful refresh grants at the provider. */
  refreshes: number;
  /** Distinct access tokens the resource rejected. */
  expiries: number;
  /** Refresh-grant requests at the provider, whatever their outcome. */
  refreshRequests: number;
  invalidGrants: number;
  reusedRefreshTokens: number;
  revokedGrants: number;
  /** Replaced tokens the resource still accepted: a refresh nobody needed (should be 0). */
  replacedWhileValid: number;
  /** `refreshed` events per vault instance id. */
  refreshesByProcess: Record<string, number>;
  /** The credential's status after the run. */
  credentialStatus: string;
  /** Log lines (warn and above) the vault processes wrote. */
  vaultLogLines: number;
  /** A few of those lines, for a failure message. */
  vaultLogSample: string[];
}

export function summarize(values: number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted.length === 0
      ? 0
      : Math.round((sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) * 10) /
        10;
  return {
    count: sorted.length,
    p50: at(0.5),
    p95: at(0.95),
    p99: at(0.99),
    max: Math.round((sorted.at(-1) ?? 0) * 10) / 10,
  };
}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

export async function runCrossProcess(options: CrossProcessOptions): Promise<CrossProcessResult> {
  const lifetime = options.tokenLifetimeSeconds ?? 1;
  const databaseUrl = options.databaseUrl ?? SHARED_DATABASE_URL;
  const progress = options.progress ?? (() => undefined);
  const label = `${options.backend}×${options.processes}`;
  if (options.backend === 'postgres')
    await assertPostgresReachable(databaseUrl, 'the cross-process PostgreSQL case');

  const children: Child[] = [];
  const dataDir = await mkdtemp(join(tmpdir(), 'tokenwarden-xp-'));
  const schema = `tw_xp_${randomBytes(6).toString('hex')}`;
  const agent = new Agent({ connections: options.clients + 10, pipelining: 1 });
  try {
    const provider = await spawnReady(
      'fake provider',
      [
        '--import',
        EXIT_WITH_PARENT,
        PROVIDER_CLI,
        '--personality',
        'strict',
        '--token-lifetime',
        String(lifetime),
        '--port',
        '0',
        '--auto-approve',
      ],
      baseEnvironment(),
    );
    children.push(provider);
    const providerUrl = String(provider.info.url);
    const control = async (path: string, method = 'GET'): Promise<Record<string, unknown>> => {
      const response = await request(`${providerUrl}/_control/${path}`, {
        method: method as 'GET' | 'POST',
        dispatcher: agent,
        ...(method === 'POST'
          ? { body: '{}', headers: { 'content-type': 'application/json' } }
          : {}),
      });
      const text = await response.body.text();
      if (response.statusCode >= 300) throw new Error(`control ${path}: ${response.statusCode}`);
      return JSON.parse(text) as Record<string, unknown>;
    };

    const adminKey = `twk_${randomBytes(4).toString('hex')}_${randomBytes(32).toString('base64url')}`;
    const env: NodeJS.ProcessEnv = {
      ...baseEnvironment(),
      TOKENWARDEN_DATA_DIR: dataDir,
      TOKENWARDEN_ADMIN_KEY: adminKey,
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: '0',
      // The fake provider listens on 127.0.0.1.
      TOKENWARDEN_ALLOW_LOOPBACK_ENDPOINTS: '1',
      // What is under test is the token endpoint's single-flight: every refresh must
      // come from a caller's staleAccessToken, not from the background refresher.
      TOKENWARDEN_BACKGROUND_REFRESH: '0',
    };
    if (options.backend === 'postgres') {
      env.DATABASE_URL = databaseUrl;
      env.TOKENWARDEN_DATABASE_SCHEMA = schema;
      env.TOKENWARDEN_MASTER_KEYS = `xp:${randomBytes(32).toString('base64')}`;
    }
    // The first one creates the schema (and, for SQLite, the file and the master key); then the rest.
    const startVault = (index: number) =>
      spawnReady(`vault ${index + 1}`, [VAULT_PROCESS], {
        ...env,
        TOKENWARDEN_INSTANCE_ID: `vault-${index + 1}`,
      });
    children.push(await startVault(0));
    const others = await Promise.allSettled(
      Array.from({ length: options.processes - 1 }, (_, i) => startVault(i + 1)),
    );
    for (const other of others) if (other.status === 'fulfilled') children.push(other.value);
    for (const other of others) if (other.status === 'rejected') throw other.reason;
    const vaults = children.slice(1).map((child) => ({
      url: String(child.info.url),
      instance: String(child.info.instance),
    }));
    const vault1 = vaults[0];
    if (vault1 === undefined) throw new Error('no vault process');
    progress(`${label}: provider ${providerUrl}, vaults ${vaults.map((v) => v.url).join(' ')}`);

    const api = async (
      base: string,
      method: 'GET' | 'POST',
      path: string,
      body?: unknown,
    ): Promise<{ status: number; json: Record<string, unknown> }> => {
      const response = await request(`${base}${path}`, {
        method,
        dispatcher: agent,
        headers: {
          authorization: `Bearer ${adminKey}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.body.text();
      return {
        status: response.statusCode,
        json: text.length === 0 ? {} : (JSON.parse(text) as Record<string, unknown>),
      };
    };
    const must = async (
      what: string,
      call: Promise<{ status: number; json: Record<string, unknown> }>,
    ) => {
      const { status, json } = await call;
      if (status >= 300) throw new Error(`${what}: HTTP ${status} ${JSON.stringify(json)}`);
      return json;
    };

    // An auth client for the fake provider, and one credential through the real connect flow.
    const authClient = await must(
      'POST /v1/auth-clients',
      api(vault1.url, 'POST', '/v1/auth-clients', {
        name: 'Fake provider (strict)',
        providerId: 'oauth2',
        clientId: 'demo-client',
        clientSecret: 'demo-secret',
        endpoints: {
          authorizationUrl: String(provider.info.authorizationEndpoint),
          tokenUrl: String(provider.info.tokenEndpoint),
          revocationUrl: String(provider.info.revocationEndpoint),
        },
      }),
    );
    const session = await must(
      'POST /v1/connect-sessions',
      api(vault1.url, 'POST', '/v1/connect-sessions', { authClientId: authClient.id }),
    );
    await connectThroughBrowserFlow(String(session.url), agent);
    const completed = await must(
      'GET /v1/connect-sessions/:id',
      api(vault1.url, 'GET', `/v1/connect-sessions/${String(session.id)}`),
    );
    if (completed.status !== 'completed' || typeof completed.credentialId !== 'string')
      throw new Error(`the connect session did not complete: ${JSON.stringify(completed)}`);
    const credentialId = completed.credentialId;
    progress(`${label}: connected credential ${credentialId}`);

    // Every client takes its first token from its own vault (a warm-up: not measured).
    const tokenPath = `/v1/credentials/${credentialId}/access-token`;
    const held: string[] = new Array<string>(options.clients).fill('');
    await Promise.all(
      held.map(async (_, i) => {
        const vault = vaults[i % vaults.length] ?? vault1;
        const json = await must(
          `${vault.instance} ${tokenPath}`,
          api(vault.url, 'POST', tokenPath, {}),
        );
        held[i] = String(json.access_token);
      }),
    );
    // Tokens the warm-up replaced (their refresh happened before the counters were reset):
    // a client holding one will see a 401 for it that is not an expiry of this run.
    const current = String(
      (await must('access-token', api(vault1.url, 'POST', tokenPath, {}))).access_token,
    );
    const warmupReplaced = new Set(held.filter((token) => token !== current).map(hash));
    await control('reset-counters', 'POST');
    const eventsBefore = await readEvents(api, vault1.url, undefined);
    const eventMarker = eventsBefore.last;

    // The run.
    const rejected = new Set<string>();
    const failuresByReason = new Map<string, number>();
    const fail = (reason: string) =>
      failuresByReason.set(reason, (failuresByReason.get(reason) ?? 0) + 1);
    const tokenLatencies: number[][] = vaults.map(() => []);
    const tokenCallsByProcess = vaults.map(() => 0);
    let resourceOk = 0;
    let resourceCalls = 0;
    const probe = async (token: string): Promise<number | string> => {
      try {
        const response = await request(`${providerUrl}/api/me`, {
          dispatcher: agent,
          headers: { authorization: `Bearer ${token}` },
        });
        await response.body.dump();
        return response.statusCode;
      } catch (error) {
        return (error as { code?: string }).code ?? 'error';
      }
    };
    const resource = (token: string): Promise<number | string> => {
      resourceCalls++;
      return probe(token);
    };
    const tokenCall = async (index: number, stale: string): Promise<string | undefined> => {
      const vault = vaults[index] ?? vault1;
      tokenCallsByProcess[index] = (tokenCallsByProcess[index] ?? 0) + 1;
      const started = performance.now();
      try {
        const response = await request(`${vault.url}${tokenPath}`, {
          method: 'POST',
          dispatcher: agent,
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ staleAccessToken: stale }),
        });
        const text = await response.body.text();
        tokenLatencies[index]?.push(performance.now() - started);
        if (response.statusCode !== 200) {
          let code = '';
          try {
            code = String((JSON.parse(text) as { error?: { code?: string } }).error?.code ?? '');
          } catch {}
          fail(`token endpoint ${response.statusCode} ${code}`.trim());
          return undefined;
        }
        return String((JSON.parse(text) as { access_token: string }).access_token);
      } catch (error) {
        fail(`token endpoint ${(error as { code?: string }).code ?? 'error'}`);
        return undefined;
      }
    };
    const seen401 = (token: string) => {
      const digest = hash(token);
      if (!warmupReplaced.has(digest)) rejected.add(digest);
    };

    progress(`${label}: ${options.clients} clients for ${options.seconds} s`);
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    await Promise.all(
      held.map(async (_, i) => {
        const vaultIndex = i % vaults.length;
        while (performance.now() < deadline) {
          const token = held[i] ?? '';
          const first = await resource(token);
          if (first === 200) {
            resourceOk++;
            continue;
          }
          if (first !== 401) {
            fail(`resource ${first}`);
            await sleep(20);
            continue;
          }
          seen401(token);
          const next = await tokenCall(vaultIndex, token);
          if (next === undefined) {
            await sleep(20);
            continue;
          }
          held[i] = next;
          const retry = await resource(next);
          if (retry === 200) {
            resourceOk++;
          } else {
            fail(`resource after a new token ${retry}`);
            if (retry === 401) seen401(next);
          }
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;

    // Tokens replaced at the very end may not have met the resource yet: probe every token
    // still held that is no longer the vault's current one (an expired replaced token answers
    // 401, an expiry; a replaced token the resource still accepts was refreshed for nothing).
    const final = String(
      (await must('access-token', api(vault1.url, 'POST', tokenPath, {}))).access_token,
    );
    let replacedWhileValid = 0;
    for (const token of new Set(held)) {
      if (token === final || warmupReplaced.has(hash(token))) continue;
      const status = await probe(token);
      if (status === 401) seen401(token);
      else replacedWhileValid++;
    }

    const counters = (await control('counters')) as unknown as {
      refreshes: number;
      invalidGrants: number;
      reusedRefreshTokens: number;
      revokedGrants: number;
      tokenRequests: { refresh_token: number };
    };
    const events = await readEvents(api, vault1.url, eventMarker);
    const refreshesByProcess: Record<string, number> = Object.fromEntries(
      vaults.map((v) => [v.instance, 0]),
    );
    for (const event of events.events) {
      if (event.type !== 'refreshed' || event.credentialId !== credentialId) continue;
      const instance = String((event.data as { instance?: unknown } | undefined)?.instance);
      refreshesByProcess[instance] = (refreshesByProcess[instance] ?? 0) + 1;
    }
    const credential = await must(
      'GET /v1/credentials/:id',
      api(vault1.url, 'GET', `/v1/credentials/${credentialId}`),
    );
    const vaultChildren = children.slice(1);
    return {
      backend: options.backend,
      processes: options.processes,
      clients: options.clients,
      tokenLifetimeSeconds: lifetime,
      seconds: Math.round(elapsed * 10) / 10,
      resourceOk,
      resourceCalls,
      tokenCalls: tokenCallsByProcess.reduce((a, b) => a + b, 0),
      tokenCallsByProcess,
      tokenLatencyMs: summarize(tokenLatencies.flat()),
      tokenLatencyMsByProcess: tokenLatencies.map(summarize),
      failures: [...failuresByReason.values()].reduce((a, b) => a + b, 0),
      failuresByReason: Object.fromEntries(failuresByReason),
      refreshes: counters.refreshes,
      expiries: rejected.size,
      refreshRequests: counters.tokenRequests.refresh_token,
      invalidGrants: counters.invalidGrants,
      reusedRefreshTokens: counters.reusedRefreshTokens,
      revokedGrants: counters.revokedGrants,
      replacedWhileValid,
      refreshesByProcess,
      credentialStatus: String(credential.status),
      vaultLogLines: vaultChildren.reduce((n, c) => n + c.stderrLines, 0),
      vaultLogSample: vaultChildren.flatMap((c) =>
        c.stderr.slice(-3).map((l) => `${c.name}: ${l}`),
      ),
    };
  } finally {
    await agent.close().catch(() => undefined);
    // Vaults first (they hold the database), then the provider.
    for (const child of children.slice(1).reverse()) await stopChild(child);
    for (const child of children.slice(0, 1)) await stopChild(child);
    if (options.backend === 'postgres')
      await dropSchema(databaseUrl, schema).catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
  }
}

type Api = (
  base: string,
  method: 'GET' | 'POST',
  path: string,
) => Promise<{ status: number; json: Record<string, unknown> }>;

interface EventPage {
  events: Array<{ id: string; type: string; credentialId: string | null; data?: unknown }>;
  last: string | undefined;
}

/** Every event after `after`, following the pages. */
async function readEvents(api: Api, base: string, after: string | undefined): Promise<EventPage> {
  const events: EventPage['events'] = [];
  let cursor = after;
  for (;;) {
    const query = `?limit=500${cursor === undefined ? '' : `&after=${cursor}`}`;
    const { status, json } = await api(base, 'GET', `/v1/events${query}`);
    if (status !== 200) throw new Error(`GET /v1/events: HTTP ${status}`);
    const page = json.events as EventPage['events'];
    events.push(...page);
    const last = page.at(-1);
    if (last !== undefined) cursor = last.id;
    if (json.next === null || page.length === 0) break;
  }
  return { events, last: cursor };
}

/**
 * A browser's part of the connect flow: open the vault's connect URL (it sets the
 * `tw_connect` cookie and redirects to the provider), follow the provider's
 * auto-approve redirect, and bring the code back to the callback with the cookie.
 */
async function connectThroughBrowserFlow(connectUrl: string, agent: Agent): Promise<void> {
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

/** One markdown table row per result (bench/README.md). */
export function markdownRow(result: CrossProcessResult): string {
  const perProcess = Object.values(result.refreshesByProcess).join(' / ');
  return `| ${result.backend} | ${result.processes} | ${result.clients} | ${result.seconds} | ${result.refreshes} | ${result.expiries} | ${result.invalidGrants} | ${result.failures} | ${perProcess} | ${Math.round(result.tokenCalls / result.seconds)} | ${Math.round(result.resourceOk / result.seconds)} | ${result.tokenLatencyMs.p50} / ${result.tokenLatencyMs.p99} |`;
}

export const MARKDOWN_HEADER = [
  '| database | vault processes | clients | seconds | refreshes | expiries | invalid_grant | failures | refreshes per process | token calls/s | resource calls/s (200) | token call p50 / p99 ms |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
].join('\n');
