import { readFile } from 'node:fs/promises';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AppDependencies } from './app.ts';
import { resultPage } from './pages.ts';

const UI_DIR = new URL('../ui/', import.meta.url);
const BROWSER_COOKIE = 'tw_connect';
const UI_FILES: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'styles.css': 'text/css; charset=utf-8',
};
const CSP =
  "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

function secureHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY');
}

/** The pages a browser sees: the web UI, the start of a connect flow, the provider's redirect back. */
export async function registerBrowserRoutes(
  app: FastifyInstance,
  deps: AppDependencies,
): Promise<void> {
  const secureCookie = deps.publicUrl.startsWith('https://');

  app.get('/', { schema: { hide: true } }, async (_request, reply) => {
    const html = await readFile(new URL('index.html', UI_DIR), 'utf8');
    return secureHeaders(reply).type('text/html; charset=utf-8').send(html);
  });
  app.get<{ Params: { file: string } }>(
    '/ui/:file',
    { schema: { hide: true } },
    async (request, reply) => {
      const type = Object.hasOwn(UI_FILES, request.params.file)
        ? UI_FILES[request.params.file]
        : undefined;
      if (type === undefined)
        return reply.status(404).send({ error: { code: 'not_found', message: 'no such file' } });
      const body = await readFile(new URL(request.params.file, UI_DIR), 'utf8');
      return secureHeaders(reply).type(type).header('cache-control', 'no-cache').send(body);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/connect/:id',
    { schema: { hide: true } },
    async (request, reply) => {
      const result = await deps.connect.start(request.params.id, request.cookies[BROWSER_COOKIE]);
      if ('error' in result) {
        return secureHeaders(reply)
          .status(400)
          .type('text/html; charset=utf-8')
          .send(resultPage('Cannot connect', result.error, false));
      }
      // One binding secret per browser, sent to /connect too so that a second flow
      // started in the same browser reuses it instead of breaking the first one.
      void reply.setCookie(BROWSER_COOKIE, result.browserSecret, {
        path: '/',
        httpOnly: true,
        // Lax: the provider's redirect back is a top-level GET navigation, which Lax allows.
        sameSite: 'lax',
        secure: secureCookie,
        maxAge: 15 * 60,
      });
      return reply.header('cache-control', 'no-store').redirect(result.providerUrl, 302);
    },
  );

  app.get('/oauth/callback', { schema: { hide: true } }, async (request, reply) => {
    const query = new URLSearchParams(
      request.url.slice(request.url.indexOf('?') + 1 || request.url.length),
    );
    const outcome = await deps.connect.callback(query, request.cookies[BROWSER_COOKIE]);
    // The cookie is not cleared: another flow of this browser may still be under way.
    void reply.header('cache-control', 'no-store');
    const returnTo = outcome.session?.returnTo ?? null;
    if (returnTo !== null) {
      const target = new URL(returnTo);
      if (outcome.ok) {
        target.searchParams.set('credentialId', outcome.credentialId);
        target.searchParams.set('status', 'connected');
      } else {
        target.searchParams.set('error', outcome.code);
        target.searchParams.set('error_description', outcome.message);
      }
      return reply.redirect(target.href, 302);
    }
    if (outcome.ok) {
      return secureHeaders(reply)
        .type('text/html; charset=utf-8')
        .send(
          resultPage(
            'Account connected',
            `The account is connected as credential ${outcome.credentialId}. You can close this window.`,
            true,
          ),
        );
    }
    return secureHeaders(reply)
      .status(400)
      .type('text/html; charset=utf-8')
      .send(resultPage(outcome.title, outcome.message, false));
  });
}
