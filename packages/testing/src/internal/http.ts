import type { IncomingMessage, ServerResponse } from 'node:http';

/** An answer computed by an endpoint, sent later so a fault can still replace it. */
export interface Reply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Form and control bodies are small; anything bigger is a misbehaving client. */
export const MAX_FORM_BYTES = 64 * 1024;

export class RequestError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'RequestError';
    this.status = status;
  }
}

export async function readBody(req: IncomingMessage, limit = MAX_FORM_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    length += chunk.length;
    if (length > limit) throw new RequestError(413, `request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The media type of a request, lower-cased, without parameters. */
export function mediaType(req: IncomingMessage): string {
  const header = req.headers['content-type'];
  if (header === undefined) return '';
  const semicolon = header.indexOf(';');
  return (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
}

export type FormParams = ReadonlyMap<string, string>;

/**
 * Parses an application/x-www-form-urlencoded body. RFC 6749 §3.1 and §3.2:
 * parameters sent without a value are treated as omitted, and a parameter must
 * not appear more than once.
 */
export function parseForm(text: string): { params: FormParams; duplicate: string | null } {
  const params = new Map<string, string>();
  let duplicate: string | null = null;
  for (const [key, value] of new URLSearchParams(text)) {
    if (value === '') continue;
    if (params.has(key)) duplicate ??= key;
    params.set(key, value);
  }
  return { params, duplicate };
}

/** Splits a request target into its path and query without building a URL object (hot path). */
export function splitTarget(target: string | undefined): { path: string; query: string } {
  const raw = target ?? '/';
  const mark = raw.indexOf('?');
  return mark === -1
    ? { path: raw, query: '' }
    : { path: raw.slice(0, mark), query: raw.slice(mark + 1) };
}

export function jsonReply(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Reply {
  return {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
    body: JSON.stringify(body),
  };
}

export function htmlReply(
  status: number,
  html: string,
  headers: Record<string, string> = {},
): Reply {
  return {
    status,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      // The pages have no scripts and must not be framed (clickjacking the consent buttons).
      'content-security-policy':
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
      'x-frame-options': 'DENY',
      'cache-control': 'no-store',
      ...headers,
    },
    body: html,
  };
}

export function redirectReply(location: string): Reply {
  return { status: 302, headers: { location, 'cache-control': 'no-store' }, body: '' };
}

export function emptyReply(status: number, headers: Record<string, string> = {}): Reply {
  return { status, headers, body: '' };
}

export function sendReply(res: ServerResponse, reply: Reply): void {
  if (res.headersSent || res.destroyed) return;
  res.statusCode = reply.status;
  for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(reply.body));
  res.end(reply.body);
}

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}
