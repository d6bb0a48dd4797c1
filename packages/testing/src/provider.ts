import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { authorizationDecision, authorizationRequest } from './internal/authorize.ts';
import type { ProviderContext, ProviderUrls } from './internal/context.ts';
import { CONTROL_PREFIX, type ControlOperations, controlRequest } from './internal/control.ts';
import { copyCounters, resetCounters, zeroCounters } from './internal/counters.ts';
import { FaultRegistry, faultReply } from './internal/faults.ts';
import {
  jsonReply,
  mediaType,
  parseForm,
  type Reply,
  RequestError,
  readBody,
  sendReply,
  splitTarget,
} from './internal/http.ts';
import { mintGrants, refreshTokenStatus } from './internal/mint.ts';
import { resolveOptions } from './internal/options.ts';
import { findResourceRoute, resourceRequest } from './internal/resource.ts';
import { revocationRequest } from './internal/revoke.ts';
import { TokenStore } from './internal/store.ts';
import { type TokenRequestInput, tokenRequest } from './internal/token.ts';
import { PERSONALITY_PROFILES } from './personalities.ts';
import type { FakeProvider, FakeProviderOptions, FaultEndpoint } from './types.ts';

/**
 * Starts a fake OAuth2 authorization server and protected resource on
 * `host:port` (127.0.0.1 and an ephemeral port by default). Throws a TypeError
 * listing every problem when the options are invalid.
 */
export async function startFakeProvider(options?: FakeProviderOptions): Promise<FakeProvider> {
  const resolved = resolveOptions(options);
  const counters = zeroCounters();
  const store = new TokenStore(resolved.recordIssuedSecrets);
  const faults = new FaultRegistry(() => counters);
  // Aborted by close(): pending latency faults must not keep the process alive.
  const closing = new AbortController();

  const operations: ControlOperations = {
    counters: () => copyCounters(counters),
    resetCounters: () => resetCounters(counters),
    faults,
    revokeAccessTokens: () => store.revokeAllAccessTokens(Date.now()),
    expireAccessTokens: () => store.expireAllAccessTokens(Date.now()),
    revokeGrant: (refreshToken: string) => {
      const record = store.refreshTokens.get(refreshToken);
      if (record === undefined || !store.revokeGrant(record.grant)) return false;
      counters.revokedGrants++;
      return true;
    },
    mintGrants: (mintOptions) => mintGrants(started(), mintOptions),
    refreshTokenStatus: (refreshTokens) => refreshTokenStatus(started(), refreshTokens),
  };

  let ctx: ProviderContext | undefined;
  const started = (): ProviderContext => {
    if (ctx === undefined) throw new Error('the fake provider is not listening yet');
    return ctx;
  };
  const server = createServer((req, res) => {
    if (ctx === undefined) {
      res.destroy();
      return;
    }
    dispatch(ctx, faults, operations, closing.signal, req, res).catch((error: unknown) => {
      if (closing.signal.aborted || res.headersSent) {
        res.destroy();
        return;
      }
      const reply =
        error instanceof RequestError
          ? jsonReply(error.status, { error: 'invalid_request', error_description: error.message })
          : jsonReply(500, {
              error: 'server_error',
              // Our own messages carry no secrets; the stack stays inside.
              error_description: `fake provider failure: ${error instanceof Error ? error.message : 'unknown'}`,
            });
      sendReply(res, reply);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(resolved.port, resolved.host, () => {
      server.off('error', reject);
      resolve();
    });
  });

  const { port } = server.address() as AddressInfo;
  const url = `http://${urlHost(resolved.host)}:${port}`;
  const urls: ProviderUrls = Object.freeze({
    url,
    issuer: url,
    authorizationEndpoint: `${url}/authorize`,
    tokenEndpoint: `${url}/token`,
    revocationEndpoint: `${url}/revoke`,
    resourceUrl: `${url}/api/me`,
    instanceUrl: `${url}/sf`,
  });
  ctx = {
    options: resolved,
    profile: PERSONALITY_PROFILES[resolved.personality],
    store,
    counters,
    urls,
  };

  const pruner = setInterval(() => store.prune(Date.now()), resolved.pruneIntervalMs);
  pruner.unref();

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      clearInterval(pruner);
      closing.abort();
      server.close(() => resolve());
      // Idle keep-alive connections would otherwise hold close() open for seconds.
      server.closeAllConnections();
    });
    return closed;
  };

  return Object.freeze({
    url: urls.url,
    issuer: urls.issuer,
    authorizationEndpoint: urls.authorizationEndpoint,
    tokenEndpoint: urls.tokenEndpoint,
    revocationEndpoint: urls.revocationEndpoint,
    resourceUrl: urls.resourceUrl,
    personality: resolved.personality,
    ...operations,
    issuedSecrets: () => {
      if (store.issued === undefined) {
        throw new Error(
          'start the fake provider with recordIssuedSecrets: true to list issued secrets',
        );
      }
      return [
        ...store.issued,
        ...[...resolved.clients.values()].map((client) => client.clientSecret),
      ];
    },
    close,
  });
}

async function dispatch(
  ctx: ProviderContext,
  faults: FaultRegistry,
  operations: ControlOperations,
  signal: AbortSignal,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { path, query } = splitTarget(req.url);
  const method = req.method ?? 'GET';

  // The resource routes come first: they are the benchmarks' hot path.
  const route = findResourceRoute(path);
  if (route !== undefined) {
    ctx.counters.resourceRequests++;
    return serve(faults, 'resource', signal, req, res, () =>
      resourceRequest(ctx, req, route, query),
    );
  }
  switch (path) {
    case '/token': {
      if (method !== 'POST') return sendReply(res, methodNotAllowed('POST'));
      const input = await readForm(req);
      const grantType = input.form?.params.get('grant_type');
      const kind =
        grantType === 'authorization_code' || grantType === 'refresh_token' ? grantType : 'other';
      ctx.counters.tokenRequests[kind]++;
      return serve(faults, 'token', signal, req, res, () => tokenRequest(ctx, req, input));
    }
    case '/revoke': {
      if (method !== 'POST') return sendReply(res, methodNotAllowed('POST'));
      const input = await readForm(req);
      ctx.counters.revocationRequests++;
      return serve(faults, 'revoke', signal, req, res, () => revocationRequest(ctx, req, input));
    }
    case '/authorize':
      if (method !== 'GET' && method !== 'HEAD') return sendReply(res, methodNotAllowed('GET'));
      return serve(faults, 'authorize', signal, req, res, () => authorizationRequest(ctx, query));
    case '/authorize/decision':
      if (method !== 'POST') return sendReply(res, methodNotAllowed('POST'));
      return serve(faults, 'authorize', signal, req, res, () => authorizationDecision(ctx, req));
    case '/.well-known/oauth-authorization-server':
      return sendReply(res, metadata(ctx.urls));
  }
  if (path.startsWith(CONTROL_PREFIX)) {
    return sendReply(res, await controlRequest(operations, ctx.urls.url, req, path));
  }
  sendReply(
    res,
    jsonReply(404, { error: 'not_found', error_description: `nothing at ${method} ${path}` }),
  );
}

/** Runs an endpoint between the `before` and `after-processing` fault checks. */
async function serve(
  faults: FaultRegistry,
  endpoint: Exclude<FaultEndpoint, 'any'>,
  signal: AbortSignal,
  req: IncomingMessage,
  res: ServerResponse,
  process: () => Reply | Promise<Reply>,
): Promise<void> {
  const before = faults.take(endpoint, 'before');
  if (before !== null) {
    if (before.kind !== 'latency') return answerWithFault(before, req, res);
    await sleep(before.ms, undefined, { signal });
  }
  const reply = await process();
  const after = faults.take(endpoint, 'after-processing');
  if (after !== null) {
    if (after.kind !== 'latency') return answerWithFault(after, req, res);
    await sleep(after.ms, undefined, { signal });
  }
  sendReply(res, reply);
}

function answerWithFault(
  fault: Exclude<ReturnType<FaultRegistry['take']>, null | { kind: 'latency' }>,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  if (fault.kind === 'reset') {
    req.socket.destroy();
    return;
  }
  sendReply(res, faultReply(fault));
}

async function readForm(req: IncomingMessage): Promise<TokenRequestInput> {
  const body = await readBody(req);
  return { form: mediaType(req) === 'application/x-www-form-urlencoded' ? parseForm(body) : null };
}

function methodNotAllowed(allow: string): Reply {
  return jsonReply(405, { error: 'method_not_allowed' }, { allow });
}

/** @see https://www.rfc-editor.org/rfc/rfc8414#section-2 */
function metadata(urls: ProviderUrls): Reply {
  return jsonReply(200, {
    issuer: urls.issuer,
    authorization_endpoint: urls.authorizationEndpoint,
    token_endpoint: urls.tokenEndpoint,
    revocation_endpoint: urls.revocationEndpoint,
    response_types_supported: ['code'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    authorization_response_iss_parameter_supported: false,
  });
}

/** The host as it goes into a URL: IPv6 in brackets, the unspecified address as loopback. */
function urlHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '[::1]';
  if (host.includes(':') && !host.startsWith('[')) return `[${host}]`;
  return host;
}
