import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';

/** The API key the stub accepts; any other answers 401 like the vault. */
export const API_KEY = 'twk_test1_0123456789abcdefghijklmnopqrstuv';

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  body: unknown;
}

export interface StubAnswer {
  status: number;
  body?: unknown;
  /** Sent as is instead of JSON (a proxy's error page). */
  text?: string;
}

export type StubRoute = (request: RecordedRequest) => StubAnswer | Promise<StubAnswer>;

export interface StubVault {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export function apiError(status: number, code: string, message: string): StubAnswer {
  return { status, body: { error: { code, message } } };
}

/**
 * A stand-in for the vault's HTTP API on 127.0.0.1 (docs/api.md), answering only
 * the routes a test declares, keyed `"METHOD /path"` (path without the query).
 */
export async function startStubVault(routes: Record<string, StubRoute>): Promise<StubVault> {
  const requests: RecordedRequest[] = [];
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://stub');
    const text = await readBody(req);
    const request: RecordedRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      authorization: req.headers.authorization,
      body: text === '' ? undefined : JSON.parse(text),
    };
    requests.push(request);
    let answer: StubAnswer;
    if (request.authorization !== `Bearer ${API_KEY}`) {
      answer = apiError(401, 'unauthorized', 'missing or unknown API key');
    } else {
      const route = routes[`${request.method} ${request.path}`];
      answer =
        route === undefined
          ? apiError(404, 'not_found', `no route ${request.method} ${request.path}`)
          : await route(request);
    }
    if (answer.text !== undefined) {
      res.writeHead(answer.status, { 'content-type': 'text/html' }).end(answer.text);
    } else if (answer.body === undefined) {
      res.writeHead(answer.status).end();
    } else {
      res
        .writeHead(answer.status, { 'content-type': 'application/json' })
        .end(JSON.stringify(answer.body));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export function credential(id: string, overrides: Record<string, unknown> = {}) {
  return {
    id,
    authClientId: 'ac_1',
    providerId: 'microsoft',
    status: 'active',
    statusReason: null,
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    lastRefreshAt: new Date(Date.now() - 60_000).toISOString(),
    refreshCount: 3,
    lastError: null,
    flags: { missingRefreshToken: false },
    scope: 'offline_access Mail.Read',
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-02T00:00:00.000Z',
    ...overrides,
  };
}

export function authClient(id: string, overrides: Record<string, unknown> = {}) {
  return {
    id,
    name: 'Outlook',
    providerId: 'microsoft',
    clientId: 'client-123',
    hasClientSecret: true,
    scopes: ['offline_access', 'Mail.Read'],
    placeholders: { tenant: 'common' },
    endpoints: {},
    status: 'ok',
    statusReason: null,
    createdAt: '2025-01-01T00:00:00.000Z',
    updatedAt: '2025-01-01T00:00:00.000Z',
    ...overrides,
  };
}
