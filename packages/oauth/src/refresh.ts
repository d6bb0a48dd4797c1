import * as oauth from 'oauth4webapi';
import type { AuthClient } from './auth-client.ts';
import { TokenwardenError } from './errors.ts';
import { protocolOptions, type RequestOptions, send } from './internal/http.ts';
import { processTokenResponse } from './internal/token-response.ts';
import { type RetryPolicy, withRetry } from './retry.ts';
import type { TokenResponse, TokenSet } from './token-set.ts';

/**
 * Sends a refresh grant and returns the raw Response. Adds the profile's extra
 * refresh parameters (Salesforce `format=json`) and, where the profile says so,
 * the client's scopes (Microsoft identity platform).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-6
 */
export function refreshGrantRequest(
  client: AuthClient,
  refreshToken: string,
  options: RequestOptions = {},
): Promise<Response> {
  const params = new URLSearchParams(client.profile.parameters.refresh);
  if (client.profile.sendScopeOnRefresh && client.scopes.length > 0) {
    params.set('scope', client.scopes.join(client.profile.scopes.separator));
  }
  return send('token endpoint', () =>
    oauth.refreshTokenGrantRequest(
      client.as,
      client.client,
      client.clientAuth,
      refreshToken,
      protocolOptions(client, options, params),
    ),
  );
}

/**
 * Validates a refresh grant's Response and classifies its errors.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.1
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-5.2
 */
export function processRefreshResponse(
  client: AuthClient,
  response: Response,
): Promise<TokenResponse> {
  return processTokenResponse(client, response, 'refresh');
}

export interface RefreshOptions extends RequestOptions {
  retry?: RetryPolicy;
  now?: () => number;
}

/**
 * Refreshes a token set: request, validation, and the merge that keeps members the
 * response omits (above all the refresh token). Transient failures are retried.
 */
export async function refreshTokenSet(
  client: AuthClient,
  current: TokenSet,
  options: RefreshOptions = {},
): Promise<TokenSet> {
  const refreshToken = current.refreshToken;
  if (refreshToken === undefined) {
    throw new TokenwardenError(
      'reauth_required',
      'the credential has no refresh token: the user must connect again',
    );
  }
  const now = options.now ?? Date.now;
  let inDoubt = false;
  try {
    return await withRetry(
      async () => {
        const response = await refreshGrantRequest(client, refreshToken, options);
        const tokens = await processRefreshResponse(client, response);
        return current.merge(tokens, now(), client.profile.defaultAccessTokenLifetimeSeconds);
      },
      {
        ...retryPolicyFor(client),
        ...options.retry,
        onRetry: (info) => {
          inDoubt ||= info.error.inDoubt;
          options.retry?.onRetry?.(info);
        },
      },
    );
  } catch (error) {
    if (inDoubt && error instanceof TokenwardenError && error.code === 'reauth_required') {
      error.message +=
        '; an earlier attempt got no answer, and the provider may have spent the refresh token then';
    }
    throw error;
  }
}

/**
 * The retry policy a provider's rotation allows: with single-use refresh tokens,
 * a failure whose outcome is unknown is not retried (the token may be spent).
 */
export function retryPolicyFor(client: AuthClient): RetryPolicy {
  return { retryInDoubt: client.profile.rotation !== 'single-use' };
}
