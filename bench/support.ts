/**
 * Shared by the benchmarks: a fake provider in a child process (so that client and
 * server each get a core), its control API, and the code flow to get a credential.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  type AuthClient,
  codeExchangeRequest,
  createAuthClient,
  createAuthorizationRequest,
  loadProviderCatalog,
  processCodeExchangeResponse,
  type TokenSet,
  validateAuthorizationResponse,
} from '@tokenwarden/oauth';
import type { Counters } from '@tokenwarden/testing';

const CLI = fileURLToPath(new URL('../packages/testing/src/cli.ts', import.meta.url));

export interface ProviderProcess {
  url: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  revocationEndpoint: string;
  resourceUrl: string;
  counters(): Promise<Counters>;
  control(path: string, body?: unknown): Promise<unknown>;
  close(): Promise<void>;
}

export async function spawnFakeProvider(args: string[]): Promise<ProviderProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [CLI, '--port', '0', '--auto-approve', ...args],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  if (child.stdout === null) throw new Error('no stdout from the fake provider');
  const lines = createInterface({ input: child.stdout });
  const [line] = (await once(lines, 'line')) as [string];
  const info = JSON.parse(line) as Record<string, string>;
  const url = info.url ?? '';
  const control = async (path: string, body?: unknown) => {
    const response = await fetch(`${url}/_control/${path}`, {
      method: body === undefined && path === 'counters' ? 'GET' : 'POST',
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`control ${path}: HTTP ${response.status} ${text}`);
    return text.length > 0 ? (JSON.parse(text) as unknown) : undefined;
  };
  return {
    url,
    authorizationEndpoint: info.authorizationEndpoint ?? `${url}/authorize`,
    tokenEndpoint: info.tokenEndpoint ?? `${url}/token`,
    revocationEndpoint: info.revocationEndpoint ?? `${url}/revoke`,
    resourceUrl: info.resourceUrl ?? `${url}/api/me`,
    counters: async () => (await control('counters')) as Counters,
    control,
    close: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

export async function authClientFor(
  provider: Pick<ProviderProcess, 'authorizationEndpoint' | 'tokenEndpoint' | 'revocationEndpoint'>,
  profileId: string,
): Promise<AuthClient> {
  const profile = (await loadProviderCatalog()).get(profileId);
  if (profile === undefined) throw new Error(`no provider profile ${profileId}`);
  return createAuthClient({
    profile,
    clientId: 'demo-client',
    clientSecret: 'demo-secret',
    endpoints: {
      authorizationUrl: provider.authorizationEndpoint,
      tokenUrl: provider.tokenEndpoint,
      revocationUrl: provider.revocationEndpoint,
    },
  });
}

/** The authorization-code flow, the provider's auto-approve mode standing in for the user. */
export async function connect(client: AuthClient, callbackBase: string): Promise<TokenSet> {
  const pending = await createAuthorizationRequest(client, {
    redirectUri: `${callbackBase}/callback`,
  });
  const response = await fetch(pending.url, { redirect: 'manual' });
  const location = response.headers.get('location');
  await response.body?.cancel();
  if (location === null) throw new Error(`no redirect from the provider (HTTP ${response.status})`);
  const params = validateAuthorizationResponse(client, new URL(location), pending.state);
  return processCodeExchangeResponse(client, await codeExchangeRequest(client, params, pending));
}

/** Writes a result file under bench/results/ and prints it. */
export async function report(name: string, result: Record<string, unknown>): Promise<void> {
  const file = fileURLToPath(new URL(`./results/${name}.json`, import.meta.url));
  const full = {
    benchmark: name,
    date: new Date().toISOString(),
    node: process.version,
    ...result,
  };
  // A fresh clone has no results folder: it is not committed.
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(full, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(full, null, 2)}\n`);
}

export function numberArg(name: string, fallback: number): number {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`--${name} must be a positive number`);
  return value;
}

/** `--name value`, or the fallback. */
export function stringArg(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  if (index === -1) return fallback;
  const value = process.argv[index + 1];
  if (value === undefined || value.startsWith('--')) throw new Error(`--${name} needs a value`);
  return value;
}

export const round = (value: number, digits = 1): number => {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
};

/** The `q` quantile of values sorted in ascending order. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}
