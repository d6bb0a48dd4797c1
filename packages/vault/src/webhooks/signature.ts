import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Webhook signatures, Stripe-style: `tokenwarden-signature: t=<unix seconds>,v1=<hex>`
 * where `<hex>` is HMAC-SHA256 keyed with the whole signing secret (`whsec_…`, as
 * UTF-8) over `<t>.<raw body>`. The timestamp inside the signed text lets a
 * receiver refuse replays older than its tolerance. docs/webhooks.md shows how
 * to check it.
 */
export const SIGNATURE_HEADER = 'tokenwarden-signature';

/** Five minutes, the tolerance docs/webhooks.md recommends to receivers. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** A new signing secret: `whsec_` + 32 random bytes, base64url. Shown once, stored encrypted. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64url')}`;
}

/** The hex HMAC-SHA256 of `<timestamp>.<body>` under the secret. */
export function computeSignature(secret: string, timestampSeconds: number, body: string): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.${body}`, 'utf8').digest('hex');
}

/** The header value for a body sent at `timestampSeconds`. */
export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  return `t=${timestampSeconds},v1=${computeSignature(secret, timestampSeconds, body)}`;
}

export type SignatureCheck =
  | { valid: true; timestamp: number }
  | { valid: false; reason: 'malformed' | 'mismatch' | 'expired' };

/**
 * Checks a `tokenwarden-signature` header against the raw body as received.
 * Several `v1=` entries are accepted (any match counts), which leaves room for
 * signing with two secrets while one is rotated. Compares in constant time.
 */
export function verifySignature(
  secret: string,
  body: string,
  header: string | undefined,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): SignatureCheck {
  if (header === undefined) return { valid: false, reason: 'malformed' };
  let timestamp: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const index = part.indexOf('=');
    if (index <= 0) return { valid: false, reason: 'malformed' };
    const name = part.slice(0, index).trim();
    const value = part.slice(index + 1).trim();
    if (name === 't') {
      if (!/^\d{1,12}$/.test(value) || timestamp !== undefined)
        return { valid: false, reason: 'malformed' };
      timestamp = Number(value);
    } else if (name === 'v1') {
      if (/^[0-9a-f]{64}$/.test(value)) candidates.push(value);
    }
  }
  if (timestamp === undefined || candidates.length === 0)
    return { valid: false, reason: 'malformed' };
  const expected = Buffer.from(computeSignature(secret, timestamp, body), 'hex');
  const matches = candidates.some((candidate) =>
    timingSafeEqual(Buffer.from(candidate, 'hex'), expected),
  );
  if (!matches) return { valid: false, reason: 'mismatch' };
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (Math.abs(now - timestamp) > tolerance) return { valid: false, reason: 'expired' };
  return { valid: true, timestamp };
}
