import * as oauth from 'oauth4webapi';
import type { AuthClient } from '../auth-client.ts';
import { type ErrorCode, TokenEndpointError } from '../errors.ts';
import type { TokenResponse } from '../token-set.ts';
import { parseRetryAfter } from './http.ts';

/** Token responses larger than this are not read (a misbehaving endpoint). */
const MAX_BODY_BYTES = 256 * 1024;

type Grant = 'refresh' | 'code exchange';

/**
 * Classifies and validates a token endpoint response (RFC 6749 §5.1 / §5.2).
 *
 * Tolerated provider quirks are coerced here, in this one place, then
 * oauth4webapi validates the result like any other response:
 * - an error object in a 2xx body (GitHub, Slack) is an error response;
 * - provider-specific error codes map to RFC codes (`tokenResponse.errorAliases`);
 * - a missing `token_type` takes the profile's `defaultTokenType`;
 * - extra token types (`bot`, `user`) are accepted when the profile lists them;
 * - an `id_token` is validated only when the profile says the provider is an
 *   OpenID issuer; otherwise it is kept as data;
 * - `expires_in` as a numeric string becomes a number.
 */
export async function processTokenResponse(
  client: AuthClient,
  response: Response,
  grant: Grant,
  now: number = Date.now(),
): Promise<TokenResponse> {
  const { profile } = client;
  const status = response.status;
  const body = await readBody(response, grant);
  const json = parseJsonObject(body);

  const rawError = json?.error;
  if (typeof rawError === 'string' && rawError.length > 0) {
    // Own members only: an `error` of "constructor" must not pick up Object.prototype's.
    const aliases = profile.tokenResponse.errorAliases;
    const oauthError = Object.hasOwn(aliases, rawError)
      ? (aliases[rawError] ?? rawError)
      : rawError;
    const description =
      typeof json?.error_description === 'string' ? json.error_description : undefined;
    throw classifiedError(oauthError, rawError, description, response, grant, now);
  }
  if (status === 429 || status >= 500) {
    throw new TokenEndpointError(
      'token_endpoint_unavailable',
      `token endpoint answered HTTP ${status} to the ${grant}`,
      { status, ...retryAfter(response, now), response },
    );
  }
  if (status === 401) {
    throw new TokenEndpointError(
      'client_misconfigured',
      `token endpoint rejected the client (HTTP 401) during the ${grant}`,
      {
        status,
        response,
      },
    );
  }
  if (status !== 200) {
    throw new TokenEndpointError(
      'invalid_token_response',
      `token endpoint answered HTTP ${status} without an OAuth error to the ${grant}`,
      { status, response },
    );
  }
  if (json === undefined) {
    throw new TokenEndpointError(
      'invalid_token_response',
      `token endpoint answered the ${grant} with a body that is not a JSON object`,
      {
        status,
        response,
      },
    );
  }

  const coerced: Record<string, unknown> = { ...json };
  if (coerced.token_type === undefined && profile.tokenResponse.defaultTokenType !== undefined) {
    coerced.token_type = profile.tokenResponse.defaultTokenType;
  }
  if (typeof coerced.expires_in === 'string' && /^\d+(\.\d+)?$/.test(coerced.expires_in.trim())) {
    coerced.expires_in = Number(coerced.expires_in);
  }
  const forValidation: Record<string, unknown> = { ...coerced };
  // An ignored id_token is kept as data, but must still be a string like every other member.
  if (profile.tokenResponse.idToken === 'ignore' && typeof forValidation.id_token === 'string') {
    delete forValidation.id_token;
  }

  // No prototype: oauth4webapi looks the token_type up here, and "constructor" must not match.
  const recognizedTokenTypes: Record<string, () => void> = Object.create(null);
  for (const type of profile.tokenResponse.extraTokenTypes)
    recognizedTokenTypes[type.toLowerCase()] = () => {};
  const replay = new Response(JSON.stringify(forValidation), {
    status: 200,
    headers: { 'content-type': 'application/json' },
  });
  try {
    if (grant === 'refresh') {
      await oauth.processRefreshTokenResponse(client.as, client.client, replay, {
        recognizedTokenTypes,
      });
    } else {
      await oauth.processAuthorizationCodeResponse(client.as, client.client, replay, {
        recognizedTokenTypes,
      });
    }
  } catch (error) {
    // oauth4webapi's own message names the member at fault; its `cause` holds the
    // body (tokens included), so it is deliberately not chained.
    const reason = error instanceof Error ? error.message : 'validation failed';
    throw new TokenEndpointError(
      'invalid_token_response',
      `invalid token response to the ${grant}: ${reason}`,
      {
        status,
        response,
      },
    );
  }
  if (
    coerced.expires_in !== undefined &&
    (typeof coerced.expires_in !== 'number' || coerced.expires_in < 0)
  ) {
    throw new TokenEndpointError(
      'invalid_token_response',
      `invalid token response to the ${grant}: expires_in must be a non-negative number`,
      {
        status,
        response,
      },
    );
  }
  return coerced as TokenResponse;
}

function classifiedError(
  oauthError: string,
  rawError: string,
  description: string | undefined,
  response: Response,
  grant: Grant,
  now: number,
): TokenEndpointError {
  const code: ErrorCode =
    oauthError === 'invalid_grant'
      ? 'reauth_required'
      : oauthError === 'invalid_client' || oauthError === 'unauthorized_client'
        ? 'client_misconfigured'
        : oauthError === 'temporarily_unavailable' ||
            oauthError === 'server_error' ||
            // a gateway's JSON error ({"error":"Service Unavailable"}) is still an outage
            response.status === 429 ||
            response.status >= 500
          ? 'token_endpoint_unavailable'
          : 'token_request_rejected';
  const named = rawError === oauthError ? oauthError : `${rawError} (${oauthError})`;
  const detail = description === undefined ? '' : `: ${description}`;
  return new TokenEndpointError(code, `token endpoint answered ${named} to the ${grant}${detail}`, {
    oauthError,
    ...(description === undefined ? {} : { errorDescription: description }),
    status: response.status,
    ...retryAfter(response, now),
    response,
  });
}

function retryAfter(response: Response, now: number): { retryAfterSeconds?: number } {
  const seconds = parseRetryAfter(response.headers.get('retry-after'), now);
  return seconds === undefined ? {} : { retryAfterSeconds: seconds };
}

async function readBody(response: Response, grant: Grant): Promise<string> {
  const length = Number(response.headers.get('content-length'));
  if (Number.isFinite(length) && length > MAX_BODY_BYTES) {
    await response.body?.cancel();
    throw new TokenEndpointError(
      'invalid_token_response',
      `token endpoint answer to the ${grant} is too large (${length} bytes)`,
      {
        status: response.status,
      },
    );
  }
  try {
    const text = await response.text();
    if (text.length > MAX_BODY_BYTES) {
      throw new TokenEndpointError(
        'invalid_token_response',
        `token endpoint answer to the ${grant} is too large`,
        {
          status: response.status,
        },
      );
    }
    return text;
  } catch (error) {
    if (error instanceof TokenEndpointError) throw error;
    // The connection broke while the body was arriving: an outage, not a bad answer.
    throw new TokenEndpointError(
      'token_endpoint_unavailable',
      `token endpoint connection failed while reading the answer to the ${grant}`,
      {
        status: response.status,
        cause: error,
        inDoubt: true,
      },
    );
  }
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
