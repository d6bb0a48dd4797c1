import { isPersonality, PERSONALITIES } from '../personalities.ts';
import type { FakeProviderOptions, Personality } from '../types.ts';

export interface RegisteredClient {
  readonly clientId: string;
  readonly clientSecret: string;
  /** `null`: any http(s) redirect URI on a loopback host. */
  readonly redirectUris: ReadonlySet<string> | null;
}

export interface ResolvedOptions {
  readonly personality: Personality;
  readonly accessTokenLifetimeMs: number;
  readonly refreshGraceMs: number;
  readonly clients: ReadonlyMap<string, RegisteredClient>;
  readonly autoApprove: boolean;
  readonly host: string;
  readonly port: number;
  readonly requirePkce: boolean;
  readonly pruneIntervalMs: number;
  readonly recordIssuedSecrets: boolean;
}

const KNOWN_OPTIONS = new Set<string>([
  'personality',
  'accessTokenLifetimeSeconds',
  'refreshGraceSeconds',
  'clients',
  'autoApprove',
  'host',
  'port',
  'requirePkce',
  'pruneIntervalMs',
  'recordIssuedSecrets',
]);

export const DEFAULT_CLIENT: RegisteredClient = Object.freeze({
  clientId: 'demo-client',
  clientSecret: 'demo-secret',
  redirectUris: null,
});

/**
 * Validates the options once, applies defaults and freezes the result. A bad
 * option fails start-up with every problem listed, not just the first.
 */
export function resolveOptions(input: FakeProviderOptions = {}): ResolvedOptions {
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null) {
    throw new TypeError('fake provider options must be an object');
  }
  for (const key of Object.keys(input)) {
    if (!KNOWN_OPTIONS.has(key)) problems.push(`unknown option "${key}"`);
  }

  const personality = input.personality ?? 'generic';
  if (!isPersonality(personality)) {
    problems.push(`personality must be one of ${PERSONALITIES.join(', ')}`);
  }

  const lifetime = input.accessTokenLifetimeSeconds ?? 3600;
  if (typeof lifetime !== 'number' || !Number.isFinite(lifetime) || lifetime <= 0) {
    problems.push('accessTokenLifetimeSeconds must be a positive number of seconds');
  }

  const grace = input.refreshGraceSeconds ?? 10;
  if (typeof grace !== 'number' || !Number.isFinite(grace) || grace < 0) {
    problems.push('refreshGraceSeconds must be a number of seconds, 0 or more');
  }

  const clients = resolveClients(input.clients, problems);

  const host = input.host ?? '127.0.0.1';
  if (typeof host !== 'string' || host.length === 0)
    problems.push('host must be a non-empty string');

  const port = input.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    problems.push('port must be an integer from 0 to 65535');
  }

  const pruneIntervalMs = input.pruneIntervalMs ?? 10_000;
  if (!Number.isFinite(pruneIntervalMs) || pruneIntervalMs < 1) {
    problems.push('pruneIntervalMs must be a positive number of milliseconds');
  }

  for (const key of ['autoApprove', 'requirePkce', 'recordIssuedSecrets'] as const) {
    const value = input[key];
    if (value !== undefined && typeof value !== 'boolean')
      problems.push(`${key} must be a boolean`);
  }

  if (problems.length > 0) {
    throw new TypeError(`invalid fake provider options:\n- ${problems.join('\n- ')}`);
  }
  return Object.freeze({
    personality: personality as Personality,
    accessTokenLifetimeMs: lifetime * 1000,
    refreshGraceMs: grace * 1000,
    clients,
    autoApprove: input.autoApprove ?? false,
    host,
    port,
    requirePkce: input.requirePkce ?? true,
    pruneIntervalMs,
    recordIssuedSecrets: input.recordIssuedSecrets ?? false,
  });
}

function resolveClients(
  input: FakeProviderOptions['clients'],
  problems: string[],
): ReadonlyMap<string, RegisteredClient> {
  const clients = new Map<string, RegisteredClient>();
  if (input === undefined) {
    clients.set(DEFAULT_CLIENT.clientId, DEFAULT_CLIENT);
    return clients;
  }
  if (!Array.isArray(input) || input.length === 0) {
    problems.push('clients must be a non-empty array');
    return clients;
  }
  input.forEach((client, index) => {
    const where = `clients[${index}]`;
    if (typeof client?.clientId !== 'string' || client.clientId.length === 0) {
      problems.push(`${where}.clientId must be a non-empty string`);
      return;
    }
    if (typeof client.clientSecret !== 'string' || client.clientSecret.length === 0) {
      problems.push(`${where}.clientSecret must be a non-empty string`);
    }
    if (clients.has(client.clientId))
      problems.push(`${where}.clientId "${client.clientId}" is registered twice`);
    let redirectUris: Set<string> | null = null;
    if (client.redirectUris !== undefined) {
      redirectUris = new Set();
      if (!Array.isArray(client.redirectUris) || client.redirectUris.length === 0) {
        problems.push(`${where}.redirectUris must be a non-empty array when given`);
      } else {
        for (const uri of client.redirectUris) {
          const problem = redirectUriProblem(uri);
          if (problem === null) redirectUris.add(uri);
          else problems.push(`${where}.redirectUris: ${problem}`);
        }
      }
    }
    clients.set(
      client.clientId,
      Object.freeze({ clientId: client.clientId, clientSecret: client.clientSecret, redirectUris }),
    );
  });
  return clients;
}

/** RFC 6749 §3.1.2: an absolute URI without a fragment. */
function redirectUriProblem(uri: unknown): string | null {
  if (typeof uri !== 'string') return 'every entry must be a string';
  if (!URL.canParse(uri)) return `"${uri}" is not an absolute URL`;
  if (new URL(uri).hash !== '' || uri.includes('#')) return `"${uri}" must not have a fragment`;
  return null;
}
