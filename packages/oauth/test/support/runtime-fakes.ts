// Fakes for the runtime-side unit tests (token manager, authorized fetch):
// a token endpoint and a resource server that are plain functions with the
// `fetch` signature, returning hand-built Responses. Nothing here opens a socket.
import type { AuthClient } from '../../src/auth-client.ts';
import { createAuthClient } from '../../src/auth-client.ts';
import type { ProviderProfile, ProviderProfileInput } from '../../src/profile.ts';
import { parseProviderProfile } from '../../src/profile.ts';
import type { StoredTokenSet, TokenResponse } from '../../src/token-set.ts';
import { TokenSet } from '../../src/token-set.ts';

/** Loopback endpoints: allowed in plain http, and never really fetched. */
export const TOKEN_URL = 'http://127.0.0.1:1/token';
export const RESOURCE_URL = 'http://127.0.0.1:1/api/things';

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function testProfile(overrides: Partial<ProviderProfileInput> = {}): ProviderProfile {
  return parseProviderProfile(
    {
      id: 'test',
      displayName: 'Test provider',
      docs: ['https://example.com/docs'],
      authorizationUrl: 'http://127.0.0.1:1/authorize',
      tokenUrl: TOKEN_URL,
      rotation: 'rotating',
      ...overrides,
    },
    'test',
  );
}

export function testClient(
  profile: ProviderProfile = testProfile(),
  clientSecret = 'client-secret',
): AuthClient {
  return createAuthClient({ profile, clientId: 'client-id', clientSecret });
}

export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

/** Members of a token response for {@link storedTokens}. */
export interface TokenFields {
  access_token: string;
  /** Default `Bearer`. */
  token_type?: string;
  refresh_token?: string;
  /** Default 3600; null for a response without `expires_in`. */
  expires_in?: number | null;
  [member: string]: unknown;
}

/** A stored token set as a provider's response received at `receivedAtMs` would give. */
export function storedTokens(fields: TokenFields, receivedAtMs: number): StoredTokenSet {
  const { expires_in = 3600, ...rest } = fields;
  const response: TokenResponse = {
    token_type: 'Bearer',
    ...rest,
    ...(expires_in === null ? {} : { expires_in }),
  };
  return TokenSet.fromResponse(response, receivedAtMs).toStored();
}

export interface TokenEndpointCall {
  /** 1-based. */
  number: number;
  form: URLSearchParams;
}

export interface FakeTokenEndpoint {
  fetch: typeof fetch;
  readonly calls: TokenEndpointCall[];
}

export type TokenEndpointAnswer = (call: TokenEndpointCall) => Response | Promise<Response>;

/**
 * A fake token endpoint. By default every refresh rotates both tokens:
 * call n answers `access-n` / `refresh-n`, valid for an hour.
 */
export function fakeTokenEndpoint(
  answer: TokenEndpointAnswer = rotatingTokens(),
  options: { delayMs?: number; onCall?: (call: TokenEndpointCall) => void } = {},
): FakeTokenEndpoint {
  const calls: TokenEndpointCall[] = [];
  const send = async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (url !== TOKEN_URL) throw new Error(`unexpected token endpoint request to ${url}`);
    const call = { number: calls.length + 1, form: new URLSearchParams(String(init?.body ?? '')) };
    calls.push(call);
    options.onCall?.(call);
    if (options.delayMs !== undefined) await sleep(options.delayMs);
    return answer(call);
  };
  return { fetch: send as typeof fetch, calls };
}

export function rotatingTokens(
  extra: Record<string, unknown> = {},
  prefix = '',
): TokenEndpointAnswer {
  return ({ number }) =>
    jsonResponse({
      access_token: `${prefix}access-${number}`,
      refresh_token: `${prefix}refresh-${number}`,
      token_type: 'Bearer',
      expires_in: 3600,
      ...extra,
    });
}

export interface ResourceRequest {
  url: string;
  method: string;
  headers: Headers;
  /** The body bytes as they arrived, or undefined for none. */
  body: Uint8Array | undefined;
}

export interface FakeResource {
  fetch: typeof fetch;
  readonly requests: ResourceRequest[];
}

/**
 * A fake resource server. `answer` sees every request with its body already read
 * (streams included), so tests can compare what arrived on each attempt.
 */
export function fakeResource(
  answer: (request: ResourceRequest, index: number) => Response | Promise<Response>,
  options: { delayMs?: number } = {},
): FakeResource {
  const requests: ResourceRequest[] = [];
  const send = async (input: Parameters<typeof fetch>[0], init?: RequestInit) => {
    // What the real fetch would put on the wire: its Request derives default
    // headers (a string body's content-type) and reads the body.
    const sent = new Request(input, init);
    const request: ResourceRequest = {
      url: sent.url,
      method: sent.method,
      headers: sent.headers,
      body: sent.body === null ? undefined : new Uint8Array(await sent.arrayBuffer()),
    };
    const index = requests.length;
    requests.push(request);
    if (options.delayMs !== undefined) await sleep(options.delayMs);
    return answer(request, index);
  };
  return { fetch: send as typeof fetch, requests };
}

/**
 * A resource that accepts exactly the access tokens in `valid` (the set may be
 * changed as the test goes) and rejects others with `rejectStatus` (default 401).
 */
export function tokenCheckingResource(
  valid: Set<string>,
  options: {
    delayMs?: number;
    rejectStatus?: number;
    onRequest?: (token: string, status: number) => void;
  } = {},
): FakeResource {
  return fakeResource(
    (request) => {
      const token = request.headers.get('authorization')?.replace(/^Bearer /, '') ?? '';
      const status = valid.has(token) ? 200 : (options.rejectStatus ?? 401);
      options.onRequest?.(token, status);
      return status === 200
        ? jsonResponse({ ok: true, token })
        : new Response('expired', {
            status,
            headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
          });
    },
    options.delayMs === undefined ? {} : { delayMs: options.delayMs },
  );
}
