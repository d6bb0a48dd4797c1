/** Shared steps of the fake provider's tests: PKCE, the code flow, token requests. */
import { createHash, randomBytes } from 'node:crypto';
import type { FakeProvider } from '../src/index.ts';

export const CLIENT_ID = 'demo-client';
export const CLIENT_SECRET = 'demo-secret';
/** Nothing listens there: the tests read the redirect's Location instead of following it. */
export const REDIRECT_URI = 'http://127.0.0.1:9/callback';

export interface TokenBody {
  access_token?: string;
  refresh_token?: string;
  token_type?: string;
  expires_in?: number;
  scope?: string;
  error?: string;
  error_description?: string;
  [key: string]: unknown;
}

export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export function basicAuth(id: string, secret: string): string {
  const encode = (s: string) => encodeURIComponent(s).replaceAll('%20', '+');
  return `Basic ${Buffer.from(`${encode(id)}:${encode(secret)}`).toString('base64')}`;
}

/** Sends an authorization request; the answer is not followed. */
export function authorize(
  provider: FakeProvider,
  params: Record<string, string>,
): Promise<Response> {
  const url = new URL(provider.authorizationEndpoint);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return fetch(url, { redirect: 'manual' });
}

/** The standard authorization request parameters with a fresh PKCE pair. */
export function authorizationParams(extra: Record<string, string> = {}): {
  params: Record<string, string>;
  verifier: string;
} {
  const { verifier, challenge } = pkcePair();
  return {
    verifier,
    params: {
      response_type: 'code',
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT_URI,
      state: randomBytes(8).toString('hex'),
      scope: 'profile email',
      code_challenge: challenge,
      code_challenge_method: 'S256',
      ...extra,
    },
  };
}

/** Runs the authorization request against an auto-approving provider and returns the code. */
export async function obtainCode(
  provider: FakeProvider,
  extra: Record<string, string> = {},
): Promise<{ code: string; verifier: string }> {
  const { params, verifier } = authorizationParams(extra);
  const res = await authorize(provider, params);
  if (res.status !== 302) throw new Error(`authorization answered ${res.status}`);
  const location = new URL(res.headers.get('location') ?? '');
  const code = location.searchParams.get('code');
  if (code === null)
    throw new Error(`no code in the redirect: ${location.searchParams.get('error')}`);
  return { code, verifier };
}

export type ClientAuthMethod = 'post' | 'basic' | 'none';

export function tokenRequest(
  provider: FakeProvider,
  params: Record<string, string>,
  auth: ClientAuthMethod = 'post',
): Promise<Response> {
  const body = new URLSearchParams(params);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
  if (auth === 'post') {
    body.set('client_id', CLIENT_ID);
    body.set('client_secret', CLIENT_SECRET);
  } else if (auth === 'basic') {
    headers.authorization = basicAuth(CLIENT_ID, CLIENT_SECRET);
  }
  return fetch(provider.tokenEndpoint, { method: 'POST', headers, body });
}

export async function tokenJson(res: Response): Promise<TokenBody> {
  return (await res.json()) as TokenBody;
}

/** The whole code flow: authorization (auto-approved) and code exchange. */
export async function connect(
  provider: FakeProvider,
  extra: Record<string, string> = {},
): Promise<TokenBody> {
  const { code, verifier } = await obtainCode(provider, extra);
  const res = await tokenRequest(provider, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: REDIRECT_URI,
    code_verifier: verifier,
  });
  const body = await tokenJson(res);
  if (res.status !== 200) throw new Error(`code exchange answered ${res.status} ${body.error}`);
  return body;
}

export function refresh(
  provider: FakeProvider,
  refreshToken: string,
  extra: Record<string, string> = {},
): Promise<Response> {
  return tokenRequest(provider, {
    grant_type: 'refresh_token',
    refresh_token: refreshToken,
    ...extra,
  });
}

export function callResource(
  url: string,
  accessToken?: string,
  init: RequestInit = {},
): Promise<Response> {
  const headers = new Headers(init.headers);
  if (accessToken !== undefined) headers.set('authorization', `Bearer ${accessToken}`);
  return fetch(url, { ...init, headers });
}

export function must<T>(value: T | undefined | null, what: string): T {
  if (value === undefined || value === null) throw new Error(`${what} is missing`);
  return value;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
