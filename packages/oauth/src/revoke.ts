import * as oauth from 'oauth4webapi';
import type { AuthClient } from './auth-client.ts';
import { TokenEndpointError, TokenwardenError } from './errors.ts';
import { parseRetryAfter, protocolOptions, type RequestOptions, send } from './internal/http.ts';

/**
 * Sends a token revocation request.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2.1
 */
export async function revocationRequest(
  client: AuthClient,
  token: string,
  tokenTypeHint: 'refresh_token' | 'access_token',
  options: RequestOptions = {},
): Promise<Response> {
  // async: a missing endpoint is a rejection like every other failure, not a synchronous throw
  if (client.revocationUrl === undefined) {
    throw new TokenwardenError(
      'invalid_configuration',
      `provider ${client.profile.id} has no revocation endpoint`,
    );
  }
  const params = new URLSearchParams({ token_type_hint: tokenTypeHint });
  return send('revocation endpoint', () =>
    oauth.revocationRequest(
      client.as,
      client.client,
      client.clientAuth,
      token,
      protocolOptions(client, options, params),
    ),
  );
}

/**
 * Checks a revocation response: 200 is success, also for a token the server did
 * not know (RFC 7009 §2.2); 503 is retryable; anything else is classified.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2.2
 */
export async function processRevocationResponse(response: Response): Promise<void> {
  if (response.status === 200) {
    await response.body?.cancel();
    return;
  }
  const retryAfterSeconds = parseRetryAfter(response.headers.get('retry-after'));
  let oauthError: string | undefined;
  try {
    const body: unknown = await response.json();
    if (
      typeof body === 'object' &&
      body !== null &&
      typeof (body as { error?: unknown }).error === 'string'
    ) {
      oauthError = (body as { error: string }).error;
    }
  } catch {
    // not JSON: classified by status alone
  }
  const unavailable = response.status === 429 || response.status >= 500;
  throw new TokenEndpointError(
    unavailable
      ? 'token_endpoint_unavailable'
      : oauthError === 'invalid_client'
        ? 'client_misconfigured'
        : 'token_request_rejected',
    `revocation endpoint answered HTTP ${response.status}${oauthError === undefined ? '' : ` (${oauthError})`}`,
    {
      status: response.status,
      ...(oauthError === undefined ? {} : { oauthError }),
      ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
    },
  );
}
