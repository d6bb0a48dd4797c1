import type { IncomingMessage } from 'node:http';
import { authenticateClient } from './client-auth.ts';
import type { ProviderContext } from './context.ts';
import { emptyReply, jsonReply, type Reply } from './http.ts';
import type { TokenRequestInput } from './token.ts';

/**
 * `POST /revoke`: token revocation. Revoking a refresh token ends its whole
 * grant; revoking an access token ends only that token. Unknown tokens, and
 * tokens of another client, get the same 200 so the endpoint is no oracle.
 *
 * @see https://www.rfc-editor.org/rfc/rfc7009#section-2
 */
export function revocationRequest(
  ctx: ProviderContext,
  req: IncomingMessage,
  input: TokenRequestInput,
): Reply {
  if (input.form === null)
    return revokeError(
      400,
      'invalid_request',
      'the body must be application/x-www-form-urlencoded',
    );
  const { params, duplicate } = input.form;
  if (duplicate !== null)
    return revokeError(
      400,
      'invalid_request',
      `the parameter ${duplicate} was sent more than once`,
    );
  const auth = authenticateClient(req, params, ctx.options.clients);
  if (!auth.ok) {
    const headers: Record<string, string> = auth.basicTried
      ? { 'www-authenticate': 'Basic realm="fake"' }
      : {};
    return revokeError(
      auth.error === 'invalid_client' ? 401 : 400,
      auth.error,
      auth.description,
      headers,
    );
  }
  const token = params.get('token');
  if (token === undefined) return revokeError(400, 'invalid_request', 'token is required');

  // token_type_hint only speeds up the lookup (§2.1); both maps are checked anyway.
  const clientId = auth.client.clientId;
  const access = ctx.store.accessTokens.get(token);
  if (access !== undefined && access.grant.clientId === clientId) access.revoked = true;
  const refresh = ctx.store.refreshTokens.get(token);
  if (
    refresh !== undefined &&
    refresh.grant.clientId === clientId &&
    ctx.store.revokeGrant(refresh.grant)
  ) {
    ctx.counters.revokedGrants++;
  }
  return emptyReply(200, { 'cache-control': 'no-store' });
}

function revokeError(
  status: number,
  error: string,
  description: string,
  headers: Record<string, string> = {},
): Reply {
  return jsonReply(
    status,
    { error, error_description: description },
    { 'cache-control': 'no-store', ...headers },
  );
}
