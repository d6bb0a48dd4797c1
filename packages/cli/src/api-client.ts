import { type ConnectionValues, DEFAULT_URL } from './args.ts';
import { CliError, EXIT, exitCodeForApiError, UsageError } from './errors.ts';
import { displayUrl } from './output.ts';

/**
 * A small typed client of the vault's HTTP API v1 (docs/api.md). Error answers
 * (`{error: {code, message}}`) become a CliError carrying the code and the exit
 * code scripts rely on; the API key is sent in the header and nowhere else.
 */

export interface AuthClient {
  id: string;
  name: string;
  providerId: string;
  clientId: string;
  hasClientSecret: boolean;
  scopes: string[];
  placeholders: Record<string, string>;
  endpoints: { authorizationUrl?: string; tokenUrl?: string; revocationUrl?: string };
  status: 'ok' | 'misconfigured';
  statusReason: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface NewAuthClient {
  name: string;
  providerId: string;
  clientId: string;
  clientSecret?: string;
  scopes?: string[];
  placeholders?: Record<string, string>;
  endpoints?: { authorizationUrl?: string; tokenUrl?: string; revocationUrl?: string };
}

export type CredentialStatus = 'active' | 'reauth_required' | 'revoked';
export const CREDENTIAL_STATUSES: readonly CredentialStatus[] = [
  'active',
  'reauth_required',
  'revoked',
];

export interface Credential {
  id: string;
  authClientId: string;
  providerId: string;
  status: CredentialStatus;
  statusReason: string | null;
  expiresAt: string | null;
  lastRefreshAt: string | null;
  refreshCount: number;
  lastError: { code: string; message: string; at: string } | null;
  flags: Record<string, boolean>;
  scope: string | null;
  createdAt: string;
  updatedAt: string;
}

export type ConnectSessionStatus = 'pending' | 'completed' | 'failed' | 'expired';

export interface ConnectSession {
  id: string;
  status: ConnectSessionStatus;
  url?: string;
  credentialId?: string;
  error?: { code: string; message: string };
  expiresAt: string;
}

export interface AccessToken {
  access_token: string;
  token_type: string;
  expires_at: number | null;
  extra: Record<string, unknown>;
}

/** How long one API request may take; an access-token request may wait on a refresh with retries. */
const REQUEST_TIMEOUT_MS = 60_000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalidAnswer(what: string): CliError {
  return new CliError(`the vault sent an unexpected answer (${what})`, EXIT.failure);
}

/** Checks that an answer is an object with a string `id`; the CLI prints the other fields as they come. */
function expectResource<T>(value: unknown, what: string): T {
  if (!isObject(value) || typeof value.id !== 'string')
    throw invalidAnswer(`${what} without an id`);
  return value as T;
}

function expectList<T>(value: unknown, key: string): T[] {
  if (!isObject(value) || !Array.isArray(value[key])) throw invalidAnswer(`no "${key}" list`);
  return (value[key] as unknown[]).map((item) => expectResource<T>(item, key));
}

/** Resolves `--url` / `--api-key` against the environment. */
export function resolveConnection(
  values: ConnectionValues,
  env: Readonly<Record<string, string | undefined>>,
): { baseUrl: string; apiKey: string | undefined } {
  const rawUrl = values.url ?? nonEmpty(env.TOKENWARDEN_URL) ?? DEFAULT_URL;
  let parsed: URL;
  try {
    parsed = new URL(rawUrl);
  } catch {
    throw new UsageError(`--url / TOKENWARDEN_URL must be an absolute http(s) URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw new UsageError(`--url / TOKENWARDEN_URL must be an http or https URL`);
  const apiKey = (values['api-key'] ?? nonEmpty(env.TOKENWARDEN_API_KEY))?.trim();
  // A key with a line break or other odd characters would make fetch throw an error that quotes the header.
  if (apiKey !== undefined && apiKey !== '' && !/^[\x21-\x7e]+$/.test(apiKey))
    throw new UsageError('the API key contains characters an API key cannot have');
  return {
    baseUrl: parsed.toString().replace(/\/+$/, ''),
    apiKey: apiKey === '' ? undefined : apiKey,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export class ApiClient {
  readonly baseUrl: string;
  readonly #apiKey: string;

  constructor(baseUrl: string, apiKey: string | undefined) {
    if (apiKey === undefined) {
      throw new CliError(
        'no API key: set TOKENWARDEN_API_KEY (or pass --api-key)',
        EXIT.unauthorized,
        {
          hint: '"tokenwarden serve" prints the admin key when it starts for the first time.',
        },
      );
    }
    this.baseUrl = baseUrl;
    this.#apiKey = apiKey;
  }

  listAuthClients(): Promise<AuthClient[]> {
    return this.#request('GET', '/v1/auth-clients').then((v) =>
      expectList<AuthClient>(v, 'authClients'),
    );
  }

  getAuthClient(id: string): Promise<AuthClient> {
    return this.#request('GET', `/v1/auth-clients/${encodeURIComponent(id)}`).then((v) =>
      expectResource<AuthClient>(v, 'auth client'),
    );
  }

  createAuthClient(body: NewAuthClient): Promise<AuthClient> {
    return this.#request('POST', '/v1/auth-clients', body).then((v) =>
      expectResource<AuthClient>(v, 'auth client'),
    );
  }

  async deleteAuthClient(id: string): Promise<void> {
    await this.#request('DELETE', `/v1/auth-clients/${encodeURIComponent(id)}`);
  }

  async createConnectSession(body: {
    authClientId: string;
    returnTo?: string;
    scopes?: string[];
  }): Promise<ConnectSession & { url: string }> {
    const session = expectSession(await this.#request('POST', '/v1/connect-sessions', body));
    if (typeof session.url !== 'string') throw invalidAnswer('connect session without a url');
    return session as ConnectSession & { url: string };
  }

  async getConnectSession(id: string): Promise<ConnectSession> {
    return expectSession(
      await this.#request('GET', `/v1/connect-sessions/${encodeURIComponent(id)}`),
    );
  }

  listCredentials(filter: { status?: string; authClientId?: string }): Promise<Credential[]> {
    const query = new URLSearchParams();
    if (filter.authClientId !== undefined) query.set('authClientId', filter.authClientId);
    if (filter.status !== undefined) query.set('status', filter.status);
    const search = query.size > 0 ? `?${query}` : '';
    return this.#request('GET', `/v1/credentials${search}`).then((v) =>
      expectList<Credential>(v, 'credentials'),
    );
  }

  getCredential(id: string): Promise<Credential> {
    return this.#request('GET', `/v1/credentials/${encodeURIComponent(id)}`).then((v) =>
      expectResource<Credential>(v, 'credential'),
    );
  }

  refreshCredential(id: string): Promise<Credential> {
    return this.#request('POST', `/v1/credentials/${encodeURIComponent(id)}/refresh`, {}).then(
      (v) => expectResource<Credential>(v, 'credential'),
    );
  }

  async deleteCredential(id: string): Promise<void> {
    await this.#request('DELETE', `/v1/credentials/${encodeURIComponent(id)}`);
  }

  async accessToken(id: string, body: { minValiditySeconds?: number }): Promise<AccessToken> {
    const answer = await this.#request(
      'POST',
      `/v1/credentials/${encodeURIComponent(id)}/access-token`,
      body,
    );
    if (
      !isObject(answer) ||
      typeof answer.access_token !== 'string' ||
      answer.access_token === '' ||
      /\s/.test(answer.access_token)
    ) {
      throw invalidAnswer('no usable access_token');
    }
    return answer as unknown as AccessToken;
  }

  async #request(method: string, path: string, body?: unknown): Promise<unknown> {
    const headers: Record<string, string> = {
      accept: 'application/json',
      authorization: `Bearer ${this.#apiKey}`,
    };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        redirect: 'error',
      });
    } catch (error) {
      throw new CliError(
        `cannot reach the vault at ${displayUrl(this.baseUrl)} (${networkReason(error)})`,
        EXIT.unavailable,
        { hint: 'Is "tokenwarden serve" running? Check --url / TOKENWARDEN_URL.' },
      );
    }
    const text = await response.text().catch(() => '');
    if (response.ok) {
      if (response.status === 204 || text === '') return undefined;
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw invalidAnswer(`HTTP ${response.status}, not JSON`);
      }
    }
    throw apiError(response.status, text);
  }
}

function expectSession(value: unknown): ConnectSession {
  const session = expectResource<ConnectSession>(value, 'connect session');
  if (!['pending', 'completed', 'failed', 'expired'].includes(session.status))
    throw invalidAnswer('connect session with an unknown status');
  return session;
}

function networkReason(error: unknown): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError'))
    return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = (error as { cause?: { code?: unknown; message?: unknown } }).cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return error instanceof Error ? error.message : String(error);
}

/** Turns an error answer into a CliError; the vault's message never holds a secret (docs/api.md). */
export function apiError(status: number, text: string): CliError {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const body = JSON.parse(text) as unknown;
    if (isObject(body) && isObject(body.error)) {
      if (typeof body.error.code === 'string') code = body.error.code;
      if (typeof body.error.message === 'string') message = body.error.message;
    }
  } catch {
    // Not a vault error body (a proxy's page): the status alone decides.
  }
  const exitCode = exitCodeForApiError(status, code);
  const summary = `${message ?? `the vault answered HTTP ${status}`}${code === undefined ? '' : ` (${code})`}`;
  return new CliError(summary, exitCode, { code, hint: hintFor(status, code, exitCode) });
}

function hintFor(status: number, code: string | undefined, exitCode: number): string | undefined {
  if (code === 'reauth_required')
    return 'The user must connect the account again: tokenwarden connect <auth-client-id>';
  if (status === 401) return 'Check the API key (TOKENWARDEN_API_KEY or --api-key).';
  if (status === 403) return 'This API key may not do that (some operations need the admin key).';
  if (code === 'token_endpoint_unavailable')
    return "The provider's token endpoint failed; the credential itself is fine. Try again later.";
  if (exitCode === EXIT.unavailable) return 'The vault is not ready; try again later.';
  if (code === 'client_misconfigured')
    return 'The provider rejected the auth client: check its client id and secret.';
  return undefined;
}
