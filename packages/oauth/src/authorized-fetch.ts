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
    const prepared = prepare(input, init, maxReplayBytes);
    const request = prepared instanceof Promise ? await prepared : prepared;
    const { body } = request;

    const attempt = (tokenSet: TokenSet, replay: boolean): Promise<Response> => {
      const headers = new Headers(request.init.headers);
      headers.set('authorization', `${tokenSet.authorizationScheme} ${tokenSet.accessToken}`);
      const sent: RequestInit & { duplex?: 'half' } = { ...request.init, headers };
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

interface PreparedRequest {
  url: string | URL;
  method: string;
  /** Everything but the body and the authorization header. */
  init: RequestInit;
  body: ReplayableBody | undefined;
}

/**
 * The hot path builds no Request: a URL with no body, or a body fetch can read
 * again by itself (string, URLSearchParams, Blob, FormData, buffers), is sent as
 * given. Only a Request object or a streamed body goes through buffering.
 */
function prepare(
  input: Parameters<typeof fetch>[0],
  init: RequestInit | undefined,
  maxReplayBytes: number,
): PreparedRequest | Promise<PreparedRequest> {
  const given = init?.body;
  if (!(input instanceof Request) && (given === undefined || given === null || isReusable(given))) {
    const { body: _body, ...rest } = init ?? {};
    const method = (init?.method ?? 'GET').toUpperCase();
    return {
      url: input,
      method,
      init: rest,
      body: given === undefined || given === null ? undefined : reusableBody(given),
    };
  }
  return prepareRequest(new Request(input, init), maxReplayBytes);
}

async function prepareRequest(request: Request, maxReplayBytes: number): Promise<PreparedRequest> {
  return {
    url: request.url,
    method: request.method,
    init: {
      method: request.method,
      headers: request.headers,
      signal: request.signal,
      redirect: request.redirect,
    },
    body: request.body === null ? undefined : await bufferBody(request.body, maxReplayBytes),
  };
}

function isReusable(body: NonNullable<RequestInit['body']>): boolean {
  return (
    typeof body === 'string' ||
    body instanceof URLSearchParams ||
    body instanceof Blob ||
    body instanceof FormData ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body)
  );
}

/** A body fetch reads afresh on every send. */
function reusableBody(body: NonNullable<RequestInit['body']>): ReplayableBody {
  return { replayable: true, streaming: false, first: () => body, replay: () => body };
}

/** A URL for error messages: no query string (it may carry secrets) and no credentials. */
function redactedUrl(input: string | URL): string {
  const url = new URL(input);
  return `${url.origin}${url.pathname}`;
}
