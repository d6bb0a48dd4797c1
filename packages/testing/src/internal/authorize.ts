import type { IncomingMessage } from 'node:http';
import type { ProviderContext } from './context.ts';
import { htmlReply, mediaType, parseForm, type Reply, readBody, redirectReply } from './http.ts';
import { FAKE_USER } from './identity.ts';
import type { RegisteredClient } from './options.ts';
import { consentPage, errorPage } from './pages.ts';
import { DEFAULT_SCOPES, parseScope } from './scope.ts';
import { CODE_LIFETIME_MS, CONSENT_LIFETIME_MS, type PendingAuthorization } from './store.ts';

/** RFC 7636 §4.2: an S256 challenge is the base64url SHA-256 of the verifier, 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * `GET /authorize`: the authorization request of the code flow with PKCE.
 * Until the client and redirect URI are known to be good, errors are shown as a
 * page, never redirected (RFC 6749 §4.1.2.1, no open redirect).
 *
 * @see https://www.rfc-editor.org/rfc/rfc6749#section-4.1.1
 * @see https://www.rfc-editor.org/rfc/rfc7636#section-4.3
 */
export function authorizationRequest(ctx: ProviderContext, query: string): Reply {
  const { params, duplicate } = parseForm(query);
  if (duplicate === 'client_id' || duplicate === 'redirect_uri') {
    return badRequestPage(`The parameter ${duplicate} was sent more than once.`);
  }
  const clientId = params.get('client_id');
  if (clientId === undefined) return badRequestPage('The request has no client_id.');
  const client = ctx.options.clients.get(clientId);
  if (client === undefined)
    return badRequestPage(`No client is registered with the id "${clientId}".`);

  const sentRedirectUri = params.get('redirect_uri');
  let redirectUri: string;
  if (sentRedirectUri === undefined) {
    // §3.1.2.3: the redirect URI may be omitted only when exactly one is registered.
    const only = client.redirectUris?.size === 1 ? [...client.redirectUris][0] : undefined;
    if (only === undefined) return badRequestPage('The request has no redirect_uri.');
    redirectUri = only;
  } else if (redirectUriAllowed(client, sentRedirectUri)) {
    redirectUri = sentRedirectUri;
  } else {
    return badRequestPage(
      `The redirect_uri "${sentRedirectUri}" is not registered for the client "${clientId}".`,
    );
  }

  const state = params.get('state') ?? null;
  const fail = (error: string, description: string): Reply =>
    redirectReply(errorLocation(redirectUri, error, description, state));

  if (duplicate !== null)
    return fail('invalid_request', `the parameter ${duplicate} was sent more than once`);
  const responseType = params.get('response_type');
  if (responseType === undefined) return fail('invalid_request', 'response_type is required');
  if (responseType !== 'code')
    return fail('unsupported_response_type', 'only response_type=code is supported');

  const scopeParam = params.get('scope');
  const scopes = scopeParam === undefined ? DEFAULT_SCOPES : parseScope(scopeParam);
  if (scopes === null) return fail('invalid_scope', 'the scope parameter is malformed');

  const challenge = params.get('code_challenge');
  const method = params.get('code_challenge_method');
  if (challenge === undefined) {
    if (method !== undefined)
      return fail('invalid_request', 'code_challenge_method was sent without code_challenge');
    if (ctx.options.requirePkce)
      return fail('invalid_request', 'code_challenge is required (PKCE with S256)');
  } else {
    // A missing method means `plain` (RFC 7636 §4.3), which RFC 9700 §2.1.1 advises against.
    if (method !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256');
    if (!S256_CHALLENGE.test(challenge))
      return fail('invalid_request', 'code_challenge is not a base64url SHA-256 digest');
  }

  const prompts = (params.get('prompt') ?? '').split(' ');
  const request: PendingAuthorization = {
    clientId,
    redirectUri,
    redirectUriSent: sentRedirectUri !== undefined,
    state,
    scopes,
    codeChallenge: challenge ?? null,
    offlineConsent: params.get('access_type') === 'offline' && prompts.includes('consent'),
    expiresAt: Date.now() + CONSENT_LIFETIME_MS,
  };
  if (ctx.options.autoApprove) return approve(ctx, request);
  const requestId = ctx.store.savePending(request);
  return htmlReply(
    200,
    consentPage({
      requestId,
      clientId,
      scopes,
      redirectUri,
      personality: ctx.profile.personality,
    }),
  );
}

/** `POST /authorize/decision`: the consent page's Approve / Deny buttons. */
export async function authorizationDecision(
  ctx: ProviderContext,
  req: IncomingMessage,
): Promise<Reply> {
  const body = await readBody(req);
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    return badRequestPage('The decision must be posted as a form.');
  }
  const { params } = parseForm(body);
  const decision = params.get('decision');
  if (decision !== 'approve' && decision !== 'deny') {
    return badRequestPage('The decision must be "approve" or "deny".');
  }
  const request = ctx.store.takePending(params.get('request_id') ?? '', Date.now());
  if (request === undefined) {
    return badRequestPage(
      'This authorization request has expired or was already answered. Start again from the application.',
    );
  }
  if (decision === 'deny') {
    return redirectReply(
      errorLocation(
        request.redirectUri,
        'access_denied',
        'the user denied the request',
        request.state,
      ),
    );
  }
  return approve(ctx, request);
}

function approve(ctx: ProviderContext, request: PendingAuthorization): Reply {
  const code = ctx.store.createCode({
    clientId: request.clientId,
    redirectUri: request.redirectUri,
    redirectUriSent: request.redirectUriSent,
    codeChallenge: request.codeChallenge,
    scopes: request.scopes,
    sub: FAKE_USER.sub,
    offlineConsent: request.offlineConsent,
    expiresAt: Date.now() + CODE_LIFETIME_MS,
  });
  const location = new URL(request.redirectUri);
  location.searchParams.set('code', code);
  if (request.state !== null) location.searchParams.set('state', request.state);
  return redirectReply(location.href);
}

function errorLocation(
  redirectUri: string,
  error: string,
  description: string,
  state: string | null,
): string {
  const location = new URL(redirectUri);
  location.searchParams.set('error', error);
  location.searchParams.set('error_description', description);
  if (state !== null) location.searchParams.set('state', state);
  return location.href;
}

function redirectUriAllowed(client: RegisteredClient, uri: string): boolean {
  if (client.redirectUris !== null) return client.redirectUris.has(uri);
  if (!URL.canParse(uri) || uri.includes('#')) return false;
  const url = new URL(uri);
  return (
    (url.protocol === 'http:' || url.protocol === 'https:') && LOOPBACK_HOSTS.has(url.hostname)
  );
}

function badRequestPage(message: string): Reply {
  return htmlReply(400, errorPage('Invalid authorization request', message));
}
