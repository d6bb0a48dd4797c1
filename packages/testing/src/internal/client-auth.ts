import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FormParams } from './http.ts';
import type { RegisteredClient } from './options.ts';

export type ClientAuthResult =
  | { ok: true; client: RegisteredClient }
  | {
      ok: false;
      error: 'invalid_client' | 'invalid_request';
      description: string;
      basicTried: boolean;
    };

/**
 * Authenticates a confidential client with `client_secret_basic` or
 * `client_secret_post`.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1
 */
export function authenticateClient(
  req: IncomingMessage,
  params: FormParams,
  clients: ReadonlyMap<string, RegisteredClient>,
): ClientAuthResult {
  const header = req.headers.authorization;
  const basic = header !== undefined && /^basic\s/i.test(header);
  const bodySecret = params.get('client_secret');
  const bodyId = params.get('client_id');

  let clientId: string | undefined;
  let secret: string | undefined;
  if (basic) {
    // §2.3.1: "MUST NOT use more than one authentication method in each request".
    if (bodySecret !== undefined) {
      return failure(
        'invalid_request',
        'the client authenticated with both client_secret_basic and client_secret_post',
        true,
      );
    }
    const decoded = decodeBasic(header.slice(6).trim());
    if (decoded === null) return failure('invalid_client', 'malformed Basic credentials', true);
    [clientId, secret] = decoded;
    if (bodyId !== undefined && bodyId !== clientId) {
      return failure(
        'invalid_request',
        'client_id in the body differs from the Basic credentials',
        true,
      );
    }
  } else {
    clientId = bodyId;
    secret = bodySecret;
    if (clientId === undefined)
      return failure('invalid_client', 'client authentication is required', false);
    if (secret === undefined) return failure('invalid_client', 'client_secret is required', false);
  }

  const client = clients.get(clientId);
  // Compare even for an unknown client so timing does not tell which ids exist.
  const expected = client?.clientSecret ?? 'unknown-client';
  if (!secretsEqual(secret, expected) || client === undefined) {
    return failure('invalid_client', 'client authentication failed', basic);
  }
  return { ok: true, client };
}

/**
 * The id and secret inside Basic credentials are each
 * application/x-www-form-urlencoded (§2.3.1), so a secret with `:` or `%` must
 * arrive encoded; clients that skip the encoding are caught here.
 */
function decodeBasic(encoded: string): [string, string] | null {
  if (!/^[A-Za-z0-9+/]+=*$/.test(encoded)) return null;
  const text = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon === -1) return null;
  try {
    const id = decodeURIComponent(text.slice(0, colon).replaceAll('+', ' '));
    const secret = decodeURIComponent(text.slice(colon + 1).replaceAll('+', ' '));
    return id === '' ? null : [id, secret];
  } catch {
    return null;
  }
}

function secretsEqual(given: string, expected: string): boolean {
  // Hashing first gives equal lengths, so timingSafeEqual never throws and length does not leak.
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

function failure(
  error: 'invalid_client' | 'invalid_request',
  description: string,
  basicTried: boolean,
): ClientAuthResult {
  return { ok: false, error, description, basicTried };
}
