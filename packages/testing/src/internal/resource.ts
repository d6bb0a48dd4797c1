import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ProviderContext } from './context.ts';
import { jsonReply, type Reply } from './http.ts';
import { FAKE_USER, SALESFORCE_ORG_ID, SALESFORCE_USER_ID } from './identity.ts';
import type { AccessTokenRecord } from './store.ts';

/** How a route words its error bodies, so API clients see the shapes real APIs send. */
type ErrorStyle = 'generic' | 'salesforce' | 'graph';

interface ResourceRoute {
  readonly methods: readonly string[];
  readonly style: ErrorStyle;
  readonly requiredScope?: string;
  readonly respond: (
    ctx: ProviderContext,
    req: IncomingMessage,
    token: AccessTokenRecord,
    query: string,
  ) => Reply | Promise<Reply>;
}

/** RFC 6750 §2.1: b64token. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
const GET = ['GET', 'HEAD'];

const ROUTES = new Map<string, ResourceRoute>([
  [
    '/api/me',
    {
      methods: GET,
      style: 'generic',
      respond: (_ctx, _req, token) =>
        jsonReply(200, { sub: token.grant.sub, name: FAKE_USER.name, scope: token.scope }),
    },
  ],
  [
    '/api/admin',
    {
      methods: GET,
      style: 'generic',
      requiredScope: 'admin',
      respond: (_ctx, _req, token) =>
        jsonReply(200, { sub: token.grant.sub, scope: token.scope, admin: true }),
    },
  ],
  ['/api/echo', { methods: ['POST', 'PUT'], style: 'generic', respond: (_ctx, req) => echo(req) }],
  [
    '/sf/services/data/v59.0/query',
    {
      methods: GET,
      style: 'salesforce',
      respond: (_ctx, _req, _token, query) => {
        if (!new URLSearchParams(query).get('q')) {
          return jsonReply(400, [
            { message: 'A query string (q) is required', errorCode: 'MALFORMED_QUERY' },
          ]);
        }
        return jsonReply(200, {
          totalSize: 1,
          done: true,
          records: [
            {
              attributes: {
                type: 'Account',
                url: '/services/data/v59.0/sobjects/Account/001fake0000000001AAA',
              },
              Id: '001fake0000000001AAA',
              Name: 'Acme',
            },
          ],
        });
      },
    },
  ],
  [
    '/v1.0/me/messages',
    {
      methods: GET,
      style: 'graph',
      respond: () =>
        jsonReply(200, {
          value: [
            { id: 'AAMkAGfake-message-1', subject: 'Quarterly report' },
            { id: 'AAMkAGfake-message-2', subject: 'Lunch on Friday?' },
          ],
        }),
    },
  ],
  [
    `/id/${SALESFORCE_ORG_ID}/${SALESFORCE_USER_ID}`,
    {
      methods: GET,
      style: 'salesforce',
      respond: (ctx, req, token) =>
        jsonReply(200, {
          id: `${ctx.urls.url}${req.url ?? ''}`,
          user_id: SALESFORCE_USER_ID,
          organization_id: SALESFORCE_ORG_ID,
          username: 'fake.user@example.com',
          display_name: FAKE_USER.name,
          scope: token.scope,
        }),
    },
  ],
]);

export function findResourceRoute(path: string): ResourceRoute | undefined {
  return ROUTES.get(path);
}

/**
 * A protected resource request: one Map lookup for the token, then the route.
 *
 * @see https://www.rfc-editor.org/rfc/rfc6750#section-3
 */
export function resourceRequest(
  ctx: ProviderContext,
  req: IncomingMessage,
  route: ResourceRoute,
  query: string,
): Reply | Promise<Reply> {
  const method = req.method ?? 'GET';
  if (!route.methods.includes(method)) {
    return jsonReply(405, { error: 'method_not_allowed' }, { allow: route.methods.join(', ') });
  }
  const header = req.headers.authorization;
  if (header === undefined || !/^bearer /i.test(header)) {
    // §3.1: a request without credentials gets a challenge but no error code.
    return unauthorized(ctx, route.style, null, 'a bearer token is required');
  }
  const token = header.slice(7).trim();
  if (!B64TOKEN.test(token)) {
    return jsonReply(
      400,
      { error: 'invalid_request', error_description: 'malformed bearer token' },
      {
        'www-authenticate':
          'Bearer realm="fake", error="invalid_request", error_description="malformed bearer token"',
      },
    );
  }
  const record = ctx.store.accessTokens.get(token);
  if (record === undefined)
    return unauthorized(ctx, route.style, 'invalid_token', 'the access token is unknown');
  if (record.revoked || record.grant.revoked) {
    return unauthorized(ctx, route.style, 'invalid_token', 'the access token has been revoked');
  }
  if (record.expiresAt <= Date.now())
    return unauthorized(ctx, route.style, 'invalid_token', 'the access token expired');

  if (route.requiredScope !== undefined && !record.scope.split(' ').includes(route.requiredScope)) {
    ctx.counters.forbidden++;
    const description = `the access token lacks the ${route.requiredScope} scope`;
    return jsonReply(
      403,
      { error: 'insufficient_scope', error_description: description, scope: route.requiredScope },
      {
        'www-authenticate': `Bearer realm="fake", error="insufficient_scope", error_description="${description}", scope="${route.requiredScope}"`,
      },
    );
  }
  return route.respond(ctx, req, record, query);
}

function unauthorized(
  ctx: ProviderContext,
  style: ErrorStyle,
  error: 'invalid_token' | null,
  description: string,
): Reply {
  ctx.counters.unauthorized++;
  const challenge =
    error === null
      ? 'Bearer realm="fake"'
      : `Bearer realm="fake", error="${error}", error_description="${description}"`;
  const headers = { 'www-authenticate': challenge };
  switch (style) {
    case 'salesforce':
      return jsonReply(
        401,
        [{ message: 'Session expired or invalid', errorCode: 'INVALID_SESSION_ID' }],
        headers,
      );
    case 'graph':
      return jsonReply(
        401,
        {
          error: {
            code: 'InvalidAuthenticationToken',
            message: `Access token is empty or invalid: ${description}.`,
          },
        },
        headers,
      );
    case 'generic':
      return jsonReply(
        401,
        error === null
          ? { error_description: description }
          : { error, error_description: description },
        headers,
      );
  }
}

/** Hashes the body as it streams in, so replayed bodies of any size can be compared. */
async function echo(req: IncomingMessage): Promise<Reply> {
  const hash = createHash('sha256');
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    hash.update(chunk);
    length += chunk.length;
  }
  return jsonReply(200, {
    method: req.method ?? '',
    contentType: req.headers['content-type'] ?? null,
    length,
    sha256: hash.digest('hex'),
  });
}
