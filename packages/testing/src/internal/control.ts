import type { IncomingMessage } from 'node:http';
import type { FakeProvider, Fault, InjectOptions } from '../types.ts';
import { emptyReply, jsonReply, mediaType, type Reply, readBody } from './http.ts';

/** What the control API drives: the same operations a test in-process calls. */
export type ControlOperations = Pick<
  FakeProvider,
  | 'counters'
  | 'resetCounters'
  | 'faults'
  | 'revokeAccessTokens'
  | 'expireAccessTokens'
  | 'revokeGrant'
  | 'mintGrants'
  | 'refreshTokenStatus'
>;

/** Bodies of the bulk actions (10,000 refresh tokens are about 600 kB). */
const MAX_CONTROL_BODY_BYTES = 4 * 1024 * 1024;

export const CONTROL_PREFIX = '/_control/';

/**
 * `/_control/*`: drives a provider running in another process (benchmarks, the
 * demo). It has no authentication, which is why the server only listens where
 * it is told (127.0.0.1 by default); a browser page from another origin is
 * refused so a web page cannot drive it through the user's browser.
 */
export async function controlRequest(
  operations: ControlOperations,
  ownOrigin: string,
  req: IncomingMessage,
  path: string,
): Promise<Reply> {
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== ownOrigin) {
    return jsonReply(403, {
      error: 'forbidden',
      error_description: 'cross-origin requests to the control API are refused',
    });
  }
  const method = req.method ?? 'GET';
  const action = path.slice(CONTROL_PREFIX.length);

  if (action === 'counters') {
    return method === 'GET' ? jsonReply(200, operations.counters()) : notAllowed('GET');
  }
  if (action === 'reset-counters') {
    if (method !== 'POST') return notAllowed('POST');
    operations.resetCounters();
    return jsonReply(200, { ok: true });
  }
  if (action === 'revoke-access-tokens') {
    return method === 'POST'
      ? jsonReply(200, { revoked: operations.revokeAccessTokens() })
      : notAllowed('POST');
  }
  if (action === 'expire-access-tokens') {
    return method === 'POST'
      ? jsonReply(200, { expired: operations.expireAccessTokens() })
      : notAllowed('POST');
  }
  if (action === 'revoke-grant') {
    if (method !== 'POST') return notAllowed('POST');
    const body = await jsonBody(req);
    if (!body.ok) return body.reply;
    const refreshToken = (body.value as { refresh_token?: unknown } | null)?.refresh_token;
    if (typeof refreshToken !== 'string') return invalid('the body must be {"refresh_token": "…"}');
    return jsonReply(200, { revoked: operations.revokeGrant(refreshToken) });
  }
  if (action === 'grants') {
    if (method !== 'POST') return notAllowed('POST');
    const body = await jsonBody(req);
    if (!body.ok) return body.reply;
    const { count, client_id: clientId, scope } = (body.value ?? {}) as Record<string, unknown>;
    try {
      const grants = operations.mintGrants({
        count: count as number,
        ...(clientId === undefined ? {} : { clientId: clientId as string }),
        ...(scope === undefined ? {} : { scope: scope as string }),
      });
      return jsonReply(201, { grants });
    } catch (error) {
      return invalid(error instanceof Error ? error.message : 'cannot mint grants');
    }
  }
  if (action === 'refresh-token-status') {
    if (method !== 'POST') return notAllowed('POST');
    const body = await jsonBody(req, MAX_CONTROL_BODY_BYTES);
    if (!body.ok) return body.reply;
    const tokens = (body.value as { refresh_tokens?: unknown } | null)?.refresh_tokens;
    if (!Array.isArray(tokens) || !tokens.every((t) => typeof t === 'string'))
      return invalid('the body must be {"refresh_tokens": ["…", …]}');
    return jsonReply(200, { statuses: operations.refreshTokenStatus(tokens as string[]) });
  }
  if (action === 'faults') {
    if (method === 'GET') return jsonReply(200, { faults: operations.faults.list() });
    if (method === 'DELETE') return jsonReply(200, { cleared: operations.faults.clear() });
    if (method !== 'POST') return notAllowed('GET, POST, DELETE');
    const body = await jsonBody(req);
    if (!body.ok) return body.reply;
    if (typeof body.value !== 'object' || body.value === null)
      return invalid('the body must be a JSON object');
    const { fault, endpoint, times, after } = body.value as Record<string, unknown>;
    try {
      const opts = { endpoint, times, after } as InjectOptions;
      return jsonReply(201, { id: operations.faults.inject(fault as Fault, opts) });
    } catch (error) {
      return invalid(error instanceof Error ? error.message : 'invalid fault');
    }
  }
  if (action.startsWith('faults/')) {
    if (method !== 'DELETE') return notAllowed('DELETE');
    const id = decodeURIComponent(action.slice('faults/'.length));
    return operations.faults.clear(id) === 1
      ? jsonReply(200, { cleared: 1 })
      : jsonReply(404, { error: 'not_found', error_description: `no fault with id ${id}` });
  }
  return jsonReply(404, { error: 'not_found', error_description: `no control action ${action}` });
}

type JsonBody = { ok: true; value: unknown } | { ok: false; reply: Reply };

/** Requiring application/json also makes a cross-site form post impossible (it would need a preflight). */
async function jsonBody(req: IncomingMessage, limit?: number): Promise<JsonBody> {
  const text = await readBody(req, limit);
  if (mediaType(req) !== 'application/json') {
    return {
      ok: false,
      reply: jsonReply(415, {
        error: 'invalid_request',
        error_description: 'the body must be application/json',
      }),
    };
  }
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false, reply: invalid('the body is not valid JSON') };
  }
}

function invalid(description: string): Reply {
  return jsonReply(400, { error: 'invalid_request', error_description: description });
}

function notAllowed(allow: string): Reply {
  return emptyReply(405, { allow });
}
