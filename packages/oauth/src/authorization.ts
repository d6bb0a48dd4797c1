import * as oauth from 'oauth4webapi';
import type { AuthClient } from './auth-client.ts';
import { TokenwardenError } from './errors.ts';
import { protocolOptions, type RequestOptions, send } from './internal/http.ts';
import { processTokenResponse } from './internal/token-response.ts';
import { TokenSet } from './token-set.ts';

/** What a connect flow must keep (server side, encrypted) until the provider redirects back. */
export interface PendingAuthorization {
  /** Where to send the user. */
  url: URL;
  /** RFC 6749 §10.12 CSRF protection; compared on the callback. */
  state: string;
  /** RFC 7636 PKCE verifier: a secret, never logged, sent only in the code exchange. */
  codeVerifier: string;
  redirectUri: string;
}

export interface AuthorizationUrlOptions {
  redirectUri: string;
  /** Replaces the auth client's scopes for this flow. */
  scopes?: readonly string[];
  /** Extra query parameters for this flow only (`login_hint`). */
  parameters?: Readonly<Record<string, string>>;
}

/**
 * Builds the authorization request with a fresh `state` and a PKCE S256 challenge
 * (sent unless the profile turns PKCE off), plus the profile's extra parameters
 * (Google `access_type=offline&prompt=consent`, Dropbox `token_access_type=offline`).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.3
 */
export async function createAuthorizationRequest(
  client: AuthClient,
  options: AuthorizationUrlOptions,
): Promise<PendingAuthorization> {
  const state = oauth.generateRandomState();
  const codeVerifier = oauth.generateRandomCodeVerifier();
  const url = new URL(client.authorizationUrl);
  const scopes = options.scopes ?? client.scopes;
  const params: Record<string, string> = {
    ...client.profile.parameters.authorization,
    ...options.parameters,
    response_type: 'code',
    client_id: client.clientId,
    redirect_uri: options.redirectUri,
    state,
  };
  if (scopes.length > 0) params.scope = scopes.join(client.profile.scopes.separator);
  if (client.profile.pkce) {
    params.code_challenge = await oauth.calculatePKCECodeChallenge(codeVerifier);
    params.code_challenge_method = 'S256';
  }
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  return { url, state, codeVerifier, redirectUri: options.redirectUri };
}

/**
 * Checks the redirect back from the provider: `state` must match, and an `error`
 * (the user pressed Deny: `access_denied`) becomes a TokenwardenError carrying it.
 * Returns the parameters to hand to {@link codeExchangeRequest}.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2
 */
export function validateAuthorizationResponse(
  client: AuthClient,
  callback: URL | URLSearchParams,
  expectedState: string,
): URLSearchParams {
  const params = callback instanceof URL ? callback.searchParams : callback;
  try {
    return oauth.validateAuthResponse(client.as, client.client, params, expectedState);
  } catch (error) {
    if (error instanceof oauth.AuthorizationResponseError) {
      const description =
        error.error_description === undefined ? '' : `: ${error.error_description}`;
      throw new TokenwardenError(
        'invalid_authorization_response',
        `the provider returned ${error.error}${description}`,
        { cause: { error: error.error, error_description: error.error_description } },
      );
    }
    throw new TokenwardenError(
      'invalid_authorization_response',
      `the redirect from the provider is not valid: ${(error as Error).message}`,
    );
  }
}

/**
 * Exchanges an authorization code, with the PKCE verifier when the profile uses PKCE.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.3
 */
export function codeExchangeRequest(
  client: AuthClient,
  callbackParameters: URLSearchParams,
  pending: Pick<PendingAuthorization, 'codeVerifier' | 'redirectUri'>,
  options: RequestOptions = {},
): Promise<Response> {
  const extra = new URLSearchParams(client.profile.parameters.codeExchange);
  return send('token endpoint', () =>
    oauth.authorizationCodeGrantRequest(
      client.as,
      client.client,
      client.clientAuth,
      callbackParameters,
      pending.redirectUri,
      client.profile.pkce ? pending.codeVerifier : oauth.nopkce,
      protocolOptions(client, options, extra),
    ),
  );
}

/**
 * Validates the code exchange's Response into a token set.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.4
 */
export async function processCodeExchangeResponse(
  client: AuthClient,
  response: Response,
  receivedAt: number = Date.now(),
): Promise<TokenSet> {
  const tokens = await processTokenResponse(client, response, 'code exchange');
  return TokenSet.fromResponse(
    tokens,
    receivedAt,
    client.profile.defaultAccessTokenLifetimeSeconds,
  );
}
