import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A random id with a type prefix (`cr_…`, `ac_…`): unguessable, 128 bits. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBytes(16).toString('base64url')}`;
}

/** One-shot `hash` (hex): twice as fast as `createHash` for a short value (every API call hashes its key). */
export function sha256Hex(value: string): string {
  return hash('sha256', value, 'hex');
}

/** Compares two hex digests in constant time. */
export function digestsEqual(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** An API key: `twk_<id>_<secret>`. Only its SHA-256 is stored. */
export function newApiKey(): { id: string; key: string } {
  const id = randomBytes(6).toString('hex');
  return { id: `key_${id}`, key: `twk_${id}_${randomBytes(32).toString('base64url')}` };
}

/** The key id inside an API key, or undefined when it does not look like one. */
export function apiKeyId(key: string): string | undefined {
  const match = /^twk_([A-Za-z0-9]+)_[A-Za-z0-9_-]{32,}$/.exec(key);
  return match === null ? undefined : `key_${match[1]}`;
}
