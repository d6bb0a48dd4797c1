import { isIP } from 'node:net';

export interface WebhookUrlPolicy {
  /**
   * Allow `http://` to hosts other than loopback. Off by default: deliveries
   * carry signed but readable event data, and plain http lets anyone on the path
   * read and replay them.
   */
  readonly allowInsecureHttp: boolean;
}

const MAX_URL_LENGTH = 2048;

function isLoopback(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  if (isIP(host) === 6) return host === '::1';
  return false;
}

/**
 * Checks a webhook URL: absolute http(s), no user name or password in it (they
 * would be stored and shown in clear), no fragment, https unless the host is
 * loopback or `allowInsecureHttp`. Returns the normalized URL or a problem.
 * This is no SSRF defence: where tenants are not trusted, operators filter the
 * vault's egress (docs/webhooks.md).
 */
export function checkWebhookUrl(
  value: string,
  policy: WebhookUrlPolicy,
): { url: string } | { problem: string } {
  if (value.length > MAX_URL_LENGTH)
    return { problem: `url must be at most ${MAX_URL_LENGTH} characters` };
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { problem: 'url must be an absolute http(s) URL' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    return { problem: `url must use https (got ${url.protocol.replace(/:$/, '')})` };
  if (url.username !== '' || url.password !== '')
    return { problem: 'url must not contain a user name or password' };
  if (url.hash !== '') return { problem: 'url must not contain a fragment' };
  if (url.protocol === 'http:' && !policy.allowInsecureHttp && !isLoopback(url.hostname))
    return {
      problem:
        'url must use https (http is allowed only to loopback hosts unless TOKENWARDEN_WEBHOOK_ALLOW_INSECURE_HTTP is set)',
    };
  return { url: url.href };
}
