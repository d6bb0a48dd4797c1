import { TokenwardenError } from './errors.ts';
import { bufferBody, type ReplayableBody } from './internal/replayable-body.ts';
import type { TokenRequest, TokenSource } from './token-manager.ts';
import type { TokenSet } from './token-set.ts';
import { bearerError, parseWwwAuthenticate } from './www-authenticate.ts';

/**
 * - `before-expiry` (default): refresh when less than the margin is left.
 * - `every-access`: refresh before every request (elastic.io's Outlook component).
 * - `on-demand`: refresh only after the resource says the token expired
 *   (elastic.io's Salesforce component).
 *
 * Every strategy recovers from an expired-token answer the same way: one
 * compare-and-refresh, the original request sent once more, and a second
 * rejection is an error that names the credential.
 */
export type RefreshStrategy = 'before-expiry' | 'every-access' | 'on-demand';

export interface AuthorizedFetchOptions {
  strategy?: RefreshStrategy;
  /** `before-expiry` margin in seconds; never more than half the token's lifetime. Default 300. */
  marginSeconds?: number;
  /** Resource statuses that mean "token expired" (the profile's `expiredStatuses`). Default [401]. */
  expiredStatuses?: readonly number[];
  /**
   * Streamed bodies are buffered up to this many bytes so they can be sent again
   * after a refresh. A larger stream is sent once, unbuffered, and if it then
   * needs a retry the call fails with `body_not_replayable`. Default 1 MiB.
   */
  maxReplayBodyBytes?: number;
  /** The fetch that sends requests. Default: the global fetch. */
  fetch?: typeof fetch;
}

const DEFAULT_MARGIN_SECONDS = 300;
const DEFAULT_MAX_REPLAY_BYTES = 1024 * 1024;

/**
 * A `fetch` with the global signature that authorizes every request for one
 * credential and refreshes its token as the strategy says.
 */
export function createAuthorizedFetch(
  source: TokenSource,
  options: AuthorizedFetchOptions = {},
): typeof fetch {
  const strategy = options.strategy ?? 'before-expiry';
  const expiredStatuses = new Set(options.expiredStatuses ?? [401]);
  const maxReplayBytes = options.maxReplayBodyBytes ?? DEFAULT_MAX_REPLAY_BYTES;
  const send = options.fetch ?? globalThis.fetch;
  const firstRequest: TokenRequest =
    strategy === 'every-access'
      ? { forceRefresh: true }
      : strategy === 'before-expiry'
        ? { minValiditySeconds: options.marginSeconds ?? DEFAULT_MARGIN_SECONDS }
        : {};

  const authorizedFetch = async (
    input: Parameters<typeof fetch>[0],
    init?: RequestInit,
  ): Promise<Response> => {
    const request = new Request(input, init);
    const body: ReplayableBody | undefined =
      request.body === null ? undefined : await bufferBody(request.body, maxReplayBytes);

    const attempt = (tokenSet: TokenSet, replay: boolean): Promise<Response> => {
      const headers = new Headers(request.headers);
      headers.set('authorization', `${tokenSet.authorizationScheme} ${tokenSet.accessToken}`);
      const sent: RequestInit & { duplex?: 'half' } = {
        method: request.method,
        headers,
        signal: request.signal,
        redirect: request.redirect,
      };
      if (body !== undefined) {
        sent.body = replay ? body.replay() : body.first();
        if (body.streaming) sent.duplex = 'half';
      }
      return send(request.url, sent);
    };

    const tokenSet = await source.getToken(firstRequest);
    const response = await attempt(tokenSet, false);
    if (!expiredStatuses.has(response.status)) return response;
    // RFC 6750 §3.1: insufficient_scope is a permission problem, not an expired token.
    if (
      bearerError(parseWwwAuthenticate(response.headers.get('www-authenticate'))) ===
      'insufficient_scope'
    ) {
      return response;
    }
    if (body !== undefined && !body.replayable) {
      await response.body?.cancel();
      throw new TokenwardenError(
        'body_not_replayable',
        `credential ${source.credentialId}: ${request.method} ${redactedUrl(request.url)} was rejected with HTTP ${response.status} and must be sent again after a refresh, but its streamed body was larger than maxReplayBodyBytes (${maxReplayBytes}); pass the body as a string, Blob or ArrayBuffer, or raise the limit`,
        { credentialId: source.credentialId },
      );
    }
    await response.body?.cancel();
    const refreshed = await source.getToken({ staleAccessToken: tokenSet.accessToken });
    const retried = await attempt(refreshed, true);
    if (expiredStatuses.has(retried.status)) {
      await retried.body?.cancel();
      throw new TokenwardenError(
        'unauthorized_after_refresh',
        `credential ${source.credentialId}: ${request.method} ${redactedUrl(request.url)} was rejected with HTTP ${retried.status} again after the token was refreshed; the grant may lack the rights this call needs, or the provider revoked it`,
        { credentialId: source.credentialId },
      );
    }
    return retried;
  };
  return authorizedFetch as typeof fetch;
}

/** A URL for error messages: no query string (it may carry secrets) and no credentials. */
function redactedUrl(href: string): string {
  const url = new URL(href);
  return `${url.origin}${url.pathname}`;
}
